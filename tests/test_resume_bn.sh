#!/bin/sh
# Exact resume with per-rank batch-norm statistics (issue 5), on 2 ranks: a
# small MLP with [batchnorm] (sync = false, each rank its own running
# statistics) stopped by SIGUSR1 and resumed ends with params.bin (parameters
# AND running statistics) byte for byte equal to the uninterrupted run's, and
# the same test accuracy and loss. params_digest alone would not show it: it
# covers the parameters only, which the running statistics never feed in
# training. The running statistics are linear in their past, so with the
# average restored they end mathematically the same and differ only in
# rounding; a slow momentum keeps the ranks' tracks apart until the end, so
# that rounding differs (with momentum 0.1 the tracks meet again within a few
# hundred steps and even the old average-only checkpoints end byte-equal).
# Then: a 2-rank checkpoint resumed on 1 rank, and one without
# /ranks/state (as older dltrain wrote), both take the ranks' average and say so.
. "$SRC/tests/lib.sh"
rm -rf resume_bn && mkdir -p resume_bn && cd resume_bn || exit 1
cat >bn.ini <<'INI'
[train]
max_steps = 2400
global_batch_size = 64
seed = 5
threads = 1
log_every = 25
eval_every = 0
progress = lines

[optim]
type = sgd
lr = 0.05
momentum = 0.9

[dense]
units = 128
bias = false

[batchnorm]
momentum = 0.0005            ; slow: the statistics at the stop still count at the end

[activation]
type = relu

[dense]
units = 10
INI
job=bn.ini

$MPIRUN 2 "$DLTRAIN" $job $DATA checkpoint.every_steps=1200 train.run_dir=a >a.log 2>&1
expect_status 0 $? "uninterrupted run"
[ -f a/params.bin ] || fail "no a/params.bin"

# Stop with SIGUSR1 once the first row of metrics is out (mpirun forwards
# it): early, as mpirun may forward it late on a busy machine.
$MPIRUN 2 "$DLTRAIN" $job $DATA checkpoint.every_steps=1200 train.run_dir=b >b1.log 2>&1 &
pid=$!
wait_rows b/metrics.csv 2
kill -USR1 $pid
wait $pid
expect_status 75 $? "run stopped by SIGUSR1"
expect_in b1.log "checkpoint: step" "checkpoint saved on the signal"
$MPIRUN 2 "$DLTRAIN" $job $DATA checkpoint.every_steps=1200 train.run_dir=b >b2.log 2>&1
expect_status 0 $? "resumed run"
expect_in b2.log "resumed from" "resume message"
grep -q "batch-norm statistics" b2.log && fail "same-rank resume fell back to the average"
[ "$(json_field b/summary.json params_digest)" = "$(json_field a/summary.json params_digest)" ] ||
    fail "params_digest differs after the resume"
cmp a/params.bin b/params.bin ||
    fail "params.bin (parameters and running statistics) differs after the resume"
for k in test_accuracy test_loss; do
    [ "$(json_field b/summary.json $k)" = "$(json_field a/summary.json $k)" ] ||
        fail "$k after the resume $(json_field b/summary.json $k), uninterrupted $(json_field a/summary.json $k)"
done

# The final 2-rank checkpoint resumed on 1 rank (nothing left to train): the
# average, said once.
ck=a/checkpoints/ckpt-0000002400.h5
$MPIRUN 1 "$DLTRAIN" $job $DATA train.run_dir=c checkpoint.resume=$ck >c.log 2>&1
expect_status 0 $? "resume on 1 rank"
expect_in c.log "holds the batch-norm statistics of 2 ranks and this run has 1; every rank starts from their average" \
    "note on another number of ranks"
[ "$(grep -c "batch-norm statistics" c.log)" = 1 ] || fail "the note is not said once"

# Without /ranks/state (an older checkpoint): loads, with the average.
cp $ck old.h5
/usr/bin/python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f["ranks"]' old.h5 ||
    fail "cannot remove /ranks from a copy of the checkpoint"
$MPIRUN 2 "$DLTRAIN" $job $DATA train.run_dir=d checkpoint.resume=old.h5 >d.log 2>&1
expect_status 0 $? "resume from a checkpoint without /ranks/state"
expect_in d.log "holds no per-rank batch-norm statistics (an older checkpoint)" "note on an older file"
finish
