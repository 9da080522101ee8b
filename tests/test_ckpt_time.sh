#!/bin/sh
# Checkpoints by time (issue 5), on 2 ranks: with [checkpoint] every_minutes
# a fraction of a minute (0.001: 60 ms) and every_steps unset, checkpoints
# are saved at the steps where rank 0's clock says so, every rank takes part
# (the run finishes), and the files are there. Which steps they fall on
# depends on the machine's speed; that some fall before the end does not
# (the run takes far longer than 60 ms).
. "$SRC/tests/lib.sh"
rm -rf ckpt_time && mkdir -p ckpt_time && cd ckpt_time || exit 1
$MPIRUN 2 "$DLTRAIN" "$JOB" $DATA train.max_steps=400 train.global_batch_size=64 \
    train.log_every=50 train.eval_every=0 train.progress=lines checkpoint.every_minutes=0.001 \
    checkpoint.keep_last=1000 train.run_dir=t >t.log 2>&1
expect_status 0 $? "run with checkpoints every 0.001 minutes"
grep -q "every_minutes *= 0.001" t/job.resolved.ini || fail "every_minutes = 0.001 not in job.resolved.ini"
steps=$(sed -n 's/^checkpoint: step \([0-9]*\) saved in .*/\1/p' t.log)
timed=0
for s in $steps; do
    f=$(printf 't/checkpoints/ckpt-%010d.h5' "$s")
    [ -f "$f" ] || fail "the log says step $s was saved, but $f is missing"
    [ "$s" -lt 400 ] && timed=$((timed + 1))
done
[ "$timed" -ge 1 ] || { fail "no checkpoint saved by time before the end (saved: $steps)"; cat t.log >&2; }
expect_in t.log "checkpoint: step 400 saved" "the checkpoint at the end of training"
[ "$(json_field t/summary.json ranks_identical)" = true ] || fail "ranks_identical is not true"
echo "checkpoints by time at steps:" $steps
finish
