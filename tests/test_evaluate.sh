#!/bin/sh
# dltrain --evaluate (issue 5): a 2-rank run with checkpoints, then
# 1. --evaluate on 2 ranks takes the newest checkpoint and reproduces the
#    end of training: the same test accuracy (exactly), test loss (1e-5) and
#    params_digest, in evaluation.json; summary.json, params.bin and the
#    checkpoints are left untouched; on 3 ranks (the global batch does not
#    divide among them) it runs and comes close;
# 2. on 1 rank (and as a singleton, without mpirun) --checkpoint evaluates the
#    step-120 file;
# 3. errors, status 2: no checkpoint in the directory, a missing, truncated
#    or foreign-model checkpoint, a bad --checkpoint argument.
. "$SRC/tests/lib.sh"
rm -rf evaluate && mkdir -p evaluate && cd evaluate || exit 1
common="$DATA train.max_steps=240 train.global_batch_size=64 train.log_every=60
train.eval_every=0 checkpoint.every_steps=120 train.progress=lines train.run_dir=e"

$MPIRUN 2 "$DLTRAIN" "$JOB" $common >train.log 2>&1
expect_status 0 $? "training run"
ls e/checkpoints/ckpt-0000000120.h5 e/checkpoints/ckpt-0000000240.h5 >/dev/null ||
    fail "checkpoints of steps 120 and 240 missing"
sums() { cksum e/summary.json e/params.bin e/checkpoints/*; }
before=$(sums)

# 1. The newest checkpoint, on 2 ranks.
$MPIRUN 2 "$DLTRAIN" --evaluate "$JOB" $common >ev2.log 2>&1
expect_status 0 $? "--evaluate on 2 ranks"
expect_in ev2.log "evaluate: checkpoint e/checkpoints/ckpt-0000000240.h5 (step 240): test accuracy" \
    "result line"
grep -q "configuration digest" ev2.log && fail "the same job file was reported as another configuration"
j=e/evaluation.json
[ "$(json_field $j checkpoint)" = "e/checkpoints/ckpt-0000000240.h5" ] || fail "checkpoint in $j"
[ "$(json_field $j step)" = 240 ] || fail "step in $j: $(json_field $j step)"
[ "$(json_field $j world_size)" = 2 ] || fail "world_size in $j"
for k in test_accuracy params_digest config_digest dltrain_version; do
    [ "$(json_field $j $k)" = "$(json_field e/summary.json $k)" ] ||
        fail "$k: $(json_field $j $k) in $j, $(json_field e/summary.json $k) in summary.json"
done
awk -v a="$(json_field $j test_loss)" -v b="$(json_field e/summary.json test_loss)" \
    'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-5 * b) }' ||
    fail "test_loss: $(json_field $j test_loss) in $j, $(json_field e/summary.json test_loss) in summary.json"
[ "$(tail -n 1 e/eval.csv | cut -d, -f1)" = 240 ] || fail "no eval.csv row for step 240"
[ "$(sums)" = "$before" ] || fail "--evaluate changed summary.json, params.bin or a checkpoint"

# 3 ranks, among which the global batch of 64 does not divide: evaluation
# needs no training batch; the test set splits differently, so only close.
$MPIRUN 3 "$DLTRAIN" --evaluate "$JOB" $common >ev3.log 2>&1
expect_status 0 $? "--evaluate on 3 ranks"
[ "$(json_field $j world_size)" = 3 ] || fail "world_size in $j after the 3-rank evaluation"
awk -v a="$(json_field $j test_loss)" -v b="$(json_field e/summary.json test_loss)" \
    -v x="$(json_field $j test_accuracy)" -v y="$(json_field e/summary.json test_accuracy)" \
    'BEGIN { d = a - b; e = x - y; exit !(d * d <= 1e-8 * b * b && e * e <= 1e-6) }' ||
    fail "3 ranks: test loss $(json_field $j test_loss), accuracy $(json_field $j test_accuracy)"

# 2. A named checkpoint on 1 rank, and as a singleton.
$MPIRUN 1 "$DLTRAIN" --evaluate "$JOB" --checkpoint e/checkpoints/ckpt-0000000120.h5 $common \
    >ev1.log 2>&1
expect_status 0 $? "--evaluate --checkpoint on 1 rank"
expect_in ev1.log "evaluate: checkpoint e/checkpoints/ckpt-0000000120.h5 (step 120)" "step 120"
[ "$(json_field $j step)" = 120 ] || fail "step in $j after the 1-rank evaluation"
[ "$(json_field $j world_size)" = 1 ] || fail "world_size in $j after the 1-rank evaluation"
"$DLTRAIN" --evaluate "$JOB" $common --checkpoint e/checkpoints/ckpt-0000000120.h5 >ev0.log 2>&1
expect_status 0 $? "--evaluate as a singleton"
expect_in ev0.log "(step 120): test accuracy $(sed -n 's/.*(step 120): test accuracy \([0-9.]*\).*/\1/p' ev1.log)" \
    "singleton result"

# 3. Errors.
$MPIRUN 2 "$DLTRAIN" --evaluate "$JOB" $common train.run_dir=none >err1.log 2>&1
expect_status 2 $? "no checkpoint"
expect_in err1.log "no checkpoint to evaluate: none that verifies in none/checkpoints" "no checkpoint"
expect_in err1.log "--checkpoint PATH" "no checkpoint: how to name one"
"$DLTRAIN" --evaluate "$JOB" $common --checkpoint nosuch.h5 >err2.log 2>&1
expect_status 2 $? "missing checkpoint file"
expect_in err2.log "nosuch.h5: no such file" "missing checkpoint file"
f=e/checkpoints/ckpt-0000000240.h5
head -c $(($(wc -c <"$f") / 2)) "$f" >cut.h5
$MPIRUN 2 "$DLTRAIN" --evaluate "$JOB" $common --checkpoint cut.h5 >err3.log 2>&1
expect_status 2 $? "truncated checkpoint"
expect_in err3.log "cut.h5: cannot open the HDF5 file; it is truncated or damaged" "truncated checkpoint"
sed 's/^units = 256/units = 200/' "$JOB" >other.ini
$MPIRUN 2 "$DLTRAIN" --evaluate other.ini $common --checkpoint "$f" >err4.log 2>&1
expect_status 2 $? "checkpoint of another model"
expect_in err4.log "dataset /model/layer00.weight has shape (256, 784) but the model expects (200, 784)" \
    "tensor shape mismatch"
"$DLTRAIN" --evaluate "$JOB" $common --checkpoint >err5.log 2>&1
expect_status 2 $? "--checkpoint without a path"
expect_in err5.log "--checkpoint needs the path of a checkpoint file" "--checkpoint without a path"
"$DLTRAIN" --evaluate >err6.log 2>&1
expect_status 2 $? "--evaluate without a job file"
expect_in err6.log "dltrain --evaluate JOB.ini [--checkpoint PATH]" "usage"
"$DLTRAIN" --help | grep -q -- "--checkpoint PATH" || fail "--help does not describe --checkpoint"
[ "$(sums)" = "$before" ] || fail "a failed --evaluate changed the run directory's files"
finish
