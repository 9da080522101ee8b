#!/bin/sh
# Fault handling (issue 5), on 2 ranks:
# 1. NaN gradients injected on rank 1 (DLTRAIN_FAULT_NAN): one bad step is
#    skipped; three in a row roll back to the last checkpoint with a lower
#    learning rate; three in a row with no checkpoint stop with status 2. The
#    runs that finish report ranks_identical (every rank's parameter digest
#    is the same). The skip also holds with the gradients in 20 buckets and
#    in one all-reduce. A malformed DLTRAIN_FAULT_NAN is bad input.
# 2. A checkpoint that cannot be written (a real limit: rank 0 runs under a
#    file size limit smaller than the checkpoint, with SIGXFSZ ignored, so
#    the write fails with EFBIG as it would with ENOSPC on a full disk): the
#    job stops with status 1 and a message naming the step, the OS error and
#    the previous checkpoint; no temporary file is left, `latest` and the
#    previous checkpoint are untouched, and a resume continues from it.
. "$SRC/tests/lib.sh"
rm -rf faults && mkdir -p faults && cd faults || exit 1
common="$DATA train.global_batch_size=64 train.log_every=10 train.eval_every=0
optim.type=adamw optim.lr=0.002 train.progress=lines"

# 1a. One NaN step on rank 1: skipped by every rank, the run goes on.
DLTRAIN_FAULT_NAN=1:20 $MPIRUN 2 "$DLTRAIN" "$JOB" $common train.max_steps=60 \
    train.run_dir=skip >skip.log 2>&1
expect_status 0 $? "run with one NaN step"
expect_in skip.log "fault injection (DLTRAIN_FAULT_NAN): rank 1, step 20" "injection message"
expect_in skip.log "step 20: non-finite loss or gradient on some rank; update skipped (1 in a row" \
    "skip message"
[ "$(json_field skip/summary.json ranks_identical)" = true ] ||
    fail "one NaN step: ranks_identical is '$(json_field skip/summary.json ranks_identical)'"
[ "$(json_field skip/summary.json steps)" = 60 ] || fail "one NaN step: the run did not finish"
# The NaN goes into each gradient bucket before it is sent (above: one
# bucket; here 20), or before the one all-reduce with train.bucket_mb = 0.
for b in "0.05 train.first_bucket_mb=0.013" 0; do
    d=skip-${b%% *}
    DLTRAIN_FAULT_NAN=1:20 $MPIRUN 2 "$DLTRAIN" "$JOB" $common train.max_steps=30 \
        train.bucket_mb=$b train.run_dir=$d >$d.log 2>&1
    expect_status 0 $? "run with one NaN step, bucket_mb=$b"
    expect_in $d.log "step 20: non-finite loss or gradient on some rank; update skipped (1 in a row" \
        "skip message, bucket_mb=$b"
    [ "$(json_field $d/summary.json ranks_identical)" = true ] ||
        fail "one NaN step, bucket_mb=$b: ranks_identical is '$(json_field $d/summary.json ranks_identical)'"
done

# 1b. Three NaN steps in a row just after the checkpoint of step 50: the
#     third rolls back to it with the learning rate halved; the repeated
#     steps are not injected again and the run finishes.
DLTRAIN_FAULT_NAN=1:51,1:52,1:53 $MPIRUN 2 "$DLTRAIN" "$JOB" $common train.max_steps=100 \
    train.max_bad_steps=3 checkpoint.every_steps=50 train.run_dir=roll >roll.log 2>&1
expect_status 0 $? "run rolled back after three NaN steps"
expect_in roll.log "step 53: non-finite loss or gradient on some rank; update skipped (3 in a row" \
    "third skip"
expect_in roll.log "rolled back from step 53 to the checkpoint of step 50 (roll/checkpoints/ckpt-0000000050.h5); learning rate now x0.5" \
    "roll-back message"
[ "$(grep -c "fault injection" roll.log)" = 3 ] || fail "roll-back: expected 3 injections, got $(grep -c "fault injection" roll.log)"
[ "$(json_field roll/summary.json ranks_identical)" = true ] ||
    fail "roll-back: ranks_identical is '$(json_field roll/summary.json ranks_identical)'"
[ "$(json_field roll/summary.json steps)" = 100 ] || fail "roll-back: the run did not finish"

# 1c. The same without a checkpoint: nothing to roll back to, status 2.
DLTRAIN_FAULT_NAN=1:11,1:12,1:13 $MPIRUN 2 "$DLTRAIN" "$JOB" $common train.max_steps=60 \
    train.max_bad_steps=3 train.run_dir=stop >stop.log 2>&1
expect_status 2 $? "three NaN steps without a checkpoint"
expect_in stop.log "3 steps in a row up to step 13 had a non-finite loss or gradient and there is no checkpoint to roll back to" \
    "no-checkpoint message"
[ -f stop/summary.json ] && fail "a run stopped by NaN steps wrote summary.json"

# 1d. A malformed variable is bad input.
DLTRAIN_FAULT_NAN=1-20 $MPIRUN 2 "$DLTRAIN" "$JOB" $common train.max_steps=10 \
    train.run_dir=bad >bad.log 2>&1
expect_status 2 $? "malformed DLTRAIN_FAULT_NAN"
expect_in bad.log "DLTRAIN_FAULT_NAN=1-20: expected RANK:STEP[,RANK:STEP...]" "malformed-variable message"

# 2. A checkpoint too large to write. A wider MLP (784-1024-10, AdamW: about
#    9.8 MB per checkpoint) under a limit of 12000 blocks of 512 bytes (sh's
#    ulimit unit; 6.1 MB), which leaves room for Open MPI's 4 MiB
#    shared-memory segment. Only rank 0, the writer, gets the limit.
cat >wide.ini <<'EOF'
[train]
threads = 1
[optim]
type = adamw
lr = 0.001
[dense]
units = 1024
activation = relu
[dense]
units = 10
EOF
wide="$DATA train.global_batch_size=64 train.log_every=10 train.eval_every=0 train.progress=lines
checkpoint.every_steps=50 train.run_dir=full"
$MPIRUN 2 "$DLTRAIN" wide.ini $wide train.max_steps=100 >full1.log 2>&1
expect_status 0 $? "run saving the checkpoints of steps 50 and 100"
prev=full/checkpoints/ckpt-0000000100.h5
sum_before=$(cksum <"$prev")
[ "$(wc -c <"$prev")" -gt 6144000 ] || fail "the checkpoint is not larger than the file size limit"
$MPIRUN 2 sh -c 'trap "" XFSZ; [ "$OMPI_COMM_WORLD_RANK" != 0 ] || ulimit -f 12000; exec "$0" "$@"' \
    "$DLTRAIN" wide.ini $wide train.max_steps=200 >full2.log 2>&1
expect_status 1 $? "run whose checkpoint cannot be written"
expect_in full2.log "the checkpoint of step 150 could not be written: writing full/checkpoints/ckpt-0000000150.h5.tmp failed: File too large; the previous checkpoint $prev is intact" \
    "failed-checkpoint message"
grep -q "Segmentation\|signal 11" full2.log && fail "the failed write crashed a rank"
ls full/checkpoints/*.tmp >/dev/null 2>&1 && fail "a temporary file was left: $(ls full/checkpoints)"
[ "$(cat full/checkpoints/latest)" = ckpt-0000000100.h5 ] ||
    fail "latest names '$(cat full/checkpoints/latest)', not ckpt-0000000100.h5"
[ "$(cksum <"$prev")" = "$sum_before" ] || fail "the previous checkpoint changed"
[ "$(json_field full/summary.json steps)" = 100 ] || fail "the failed run wrote summary.json"
$MPIRUN 2 "$DLTRAIN" wide.ini $wide train.max_steps=200 >full3.log 2>&1
expect_status 0 $? "resume after the failed write"
expect_in full3.log "resumed from $prev at step 100 of 200" "resume from the previous checkpoint"
expect_in full3.log "checkpoint: step 150 saved" "the checkpoint of step 150 written without the limit"
[ "$(json_field full/summary.json steps)" = 200 ] || fail "the resumed run did not finish"
finish
