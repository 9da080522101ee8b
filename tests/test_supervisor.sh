#!/bin/sh
# dltrain-run, the supervisor that restarts failed jobs (issue 5), on 2 ranks:
# 1. kill -9 of rank 1 mid-run: dltrain-run says so, restarts from the
#    newest checkpoint, and the job ends with the params_digest of an
#    uninterrupted run.
# 2. SIGUSR1 to dltrain-run reaches the ranks, which save their state: exit
#    75 and no restart. SIGTERM ends the job with no restart either.
# 3. Bad input (status 2) is not restarted; a job that keeps failing is
#    restarted --max-restarts times, then dltrain-run exits with its status;
#    a job without checkpoints is warned about.
. "$SRC/tests/lib.sh"
rm -rf supervisor && mkdir -p supervisor && cd supervisor || exit 1
common="$DATA train.max_steps=1200 train.global_batch_size=64 train.log_every=30
train.eval_every=0 schedule.type=cosine optim.type=adamw optim.lr=0.002 train.progress=lines
checkpoint.every_steps=100"
export DLTRAIN_RUN_DELAY=1
run="$DLTRAIN_RUN -np 2 --mpirun-args --oversubscribe --dltrain $DLTRAIN"

$MPIRUN 2 "$DLTRAIN" "$JOB" $common train.run_dir=a >a.log 2>&1
expect_status 0 $? "uninterrupted run"
want=$(json_field a/summary.json params_digest)
[ -n "$want" ] || fail "no params_digest in a/summary.json"

# 1. Once the metrics are past step 120 (after the checkpoint of step 100),
#    kill -9 the rank whose environment says OMPI_COMM_WORLD_RANK=1, a child
#    of this dltrain-run's mpirun.
$run "$JOB" $common train.run_dir=b >b.log 2>&1 &
sup=$!
wait_rows b/metrics.csv 5
victim=
for mp in $(children $sup); do
    for p in $(children "$mp"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
    done
done
if [ -n "$victim" ]; then
    kill -9 "$victim"
else
    fail "rank 1 of dltrain-run's mpirun not found"
fi
wait $sup
expect_status 0 $? "job restarted after kill -9 of rank 1"
expect_in b.log "attempt 1 of 4 ended with status 137 (a rank was killed by signal 9, SIGKILL); restarting from the newest checkpoint in 1 s" \
    "restart message"
expect_in b.log "resumed from b/checkpoints/ckpt-" "resume after the restart"
[ "$(json_field b/summary.json params_digest)" = "$want" ] ||
    fail "restarted job: params_digest $(json_field b/summary.json params_digest), uninterrupted $want"
[ "$(json_field b/summary.json ranks_identical)" = true ] || fail "restarted job: ranks differ"

# 2. SIGUSR1: forwarded, the state is saved, status 75, no restart.
$run "$JOB" $common train.run_dir=c >c.log 2>&1 &
sup=$!
wait_rows c/metrics.csv 3
kill -USR1 $sup
wait $sup
expect_status 75 $? "dltrain-run after SIGUSR1"
expect_in c.log "SIGUSR1 received; stopped after step" "the ranks got SIGUSR1"
expect_in c.log "saved its state after a signal (status 75): requeue the job" "requeue message"
grep -q "; restarting" c.log && fail "SIGUSR1 caused a restart"

# SIGTERM: the job ends (mpirun ends it on SIGTERM), and is not restarted.
$run "$JOB" $common train.run_dir=d >d.log 2>&1 &
sup=$!
wait_rows d/metrics.csv 3
kill -TERM $sup
wait $sup
status=$?
[ "$status" -ne 0 ] || fail "dltrain-run after SIGTERM: exit status 0"
grep -q "; restarting" d.log && fail "SIGTERM caused a restart"
expect_in d.log "after SIGTERM: not restarting" "SIGTERM message"
[ -f d/summary.json ] && fail "the job went on after SIGTERM"

# 3. Bad input: stopped before the first attempt, status 2.
$run "$JOB" $DATA train.bogus_key=1 >e.log 2>&1
expect_status 2 $? "bad override"
expect_in e.log "bogus_key" "the bad key is named"
expect_in e.log "dltrain-run: the job does not pass 'dltrain --check'; not starting it" "no-start message"
grep -q "attempt" e.log && fail "bad input was started"

# A job that fails every time (its run directory lies under a file: an I/O
# error, status 1) and saves no checkpoints: warned, restarted once, status 1.
touch afile
DLTRAIN_RUN_DELAY=0 $DLTRAIN_RUN -np 2 --max-restarts 1 --mpirun-args --oversubscribe \
    --dltrain "$DLTRAIN" "$JOB" $DATA train.max_steps=10 train.run_dir=afile/run >f.log 2>&1
expect_status 1 $? "job failing every time"
expect_in f.log "warning: the job saves no checkpoints" "no-checkpoint warning"
expect_in f.log "attempt 1 of 2 ended with status 1 (an error); restarting from scratch in 0 s" \
    "first failure restarted"
expect_in f.log "attempt 2 of 2 ended with status 1 (an error); no restarts left (--max-restarts 1)" \
    "gives up after the restarts"
[ "$(grep -c "cannot create directory afile/run" f.log)" = 2 ] || fail "expected two attempts"

# Usage errors.
$DLTRAIN_RUN --max-restarts x -np 2 "$JOB" >g.log 2>&1
expect_status 2 $? "bad --max-restarts"
expect_in g.log "--max-restarts needs a number >= 0, not 'x'" "--max-restarts message"
finish
