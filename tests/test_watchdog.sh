#!/bin/sh
# The watchdog (issue 5): a rank that stops (SIGSTOP, as a hung process
# looks to the others) ends the whole job within [train] timeout + 10 s with
# exit status 3 and a message naming the step and the rank that did not
# arrive. 3 ranks, so the message must single out the stopped one:
# 1. rank 2 stops: rank 0 names rank 2 (from the other ranks' heartbeats);
# 2. rank 0 stops: the other ranks end the job, naming rank 0;
# 3. the same as 1 for rank 1 with the gradients in one blocking all-reduce
#    (train.bucket_mb = 0; 1 and 2 use the default buckets, here one
#    non-blocking all-reduce per step) and for rank 2 with 20 buckets per
#    step, some of which may be in flight when the rank stops.
. "$SRC/tests/lib.sh"
rm -rf watchdog && mkdir -p watchdog && cd watchdog || exit 1
timeout=4
common="$DATA train.max_steps=100000 train.log_every=20 train.eval_every=0 train.progress=lines
train.timeout=$timeout"

# stop_rank RANK NAME [KEY=VALUE...]: start a run, SIGSTOP rank RANK once it
# trains, wait for the job to end; sets $status and $took (seconds from the
# stop).
stop_rank() {
    rank=$1 name=$2
    shift 2
    $MPIRUN 3 "$DLTRAIN" "$JOB" $common train.run_dir="$name" "$@" >"$name.log" 2>&1 &
    mpirun_pid=$!
    wait_rows "$name/metrics.csv" 3
    victim=""
    for p in $(children $mpirun_pid); do
        r=$(tr '\0' '\n' <"/proc/$p/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ "$r" = "$rank" ] && victim=$p
    done
    [ -n "$victim" ] || { fail "$name: rank $rank's process not found"; kill $mpirun_pid; wait; return; }
    kill -STOP "$victim"
    t0=$(date +%s)
    wait $mpirun_pid
    status=$?
    took=$(($(date +%s) - t0))
    kill -KILL "$victim" 2>/dev/null # in case the job did not end it
}

stop_rank 2 a
expect_status 3 "$status" "rank 2 stopped"
[ "$took" -le $((timeout + 10)) ] || fail "rank 2 stopped: the job took $took s to end (limit $((timeout + 10)))"
expect_in a.log "watchdog: step " "the step is named"
expect_in a.log "rank 2 did not reach the all-reduce within the timeout of $timeout s" "rank 2 is named"
grep -q "ranks 1\|rank 1 did" a.log && fail "rank 1, which was waiting, is named too"

stop_rank 0 b
expect_status 3 "$status" "rank 0 stopped"
[ "$took" -le $((timeout + 10)) ] || fail "rank 0 stopped: the job took $took s to end (limit $((timeout + 10)))"
expect_in b.log "so rank 0 itself has probably stopped" "rank 0 is named"

stop_rank 1 c train.bucket_mb=0
expect_status 3 "$status" "rank 1 stopped, one blocking all-reduce"
[ "$took" -le $((timeout + 10)) ] || fail "rank 1 stopped: the job took $took s to end (limit $((timeout + 10)))"
expect_in c.log "rank 1 did not reach the all-reduce within the timeout of $timeout s" "rank 1 is named"
grep -q "ranks 2\|rank 2 did" c.log && fail "rank 2, which was waiting, is named too"

stop_rank 2 d train.bucket_mb=0.05 train.first_bucket_mb=0.013
expect_status 3 "$status" "rank 2 stopped, 20 buckets"
[ "$took" -le $((timeout + 10)) ] || fail "rank 2 stopped with buckets: the job took $took s to end (limit $((timeout + 10)))"
expect_in d.log "rank 2 did not reach the all-reduce within the timeout of $timeout s" "rank 2 is named with buckets"
grep -q "ranks 1\|rank 1 did" d.log && fail "rank 1, which was waiting, is named too (buckets)"
finish
