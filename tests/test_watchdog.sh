#!/bin/sh
# The watchdog (issue 5): a rank that stops (SIGSTOP, as a hung process
# looks to the others) ends the whole job within [train] timeout + 10 s with
# exit status 3 and a message naming the step and the rank that did not
# arrive. 3 ranks, so the message must single out the stopped one:
# 1. rank 2 stops: rank 0 names rank 2 (from the other ranks' heartbeats);
# 2. rank 0 stops: the other ranks end the job, naming rank 0.
. "$SRC/tests/lib.sh"
rm -rf watchdog && mkdir -p watchdog && cd watchdog || exit 1
timeout=4
common="$DATA train.max_steps=100000 train.log_every=20 train.eval_every=0 train.progress=lines
train.timeout=$timeout"

# stop_rank RANK NAME: start a run, SIGSTOP rank RANK once it trains, wait
# for the job to end; sets $status and $took (seconds from the stop).
stop_rank() {
    $MPIRUN 3 "$DLTRAIN" "$JOB" $common train.run_dir="$2" >"$2.log" 2>&1 &
    mpirun_pid=$!
    wait_rows "$2/metrics.csv" 3
    victim=""
    for p in $(children $mpirun_pid); do
        r=$(tr '\0' '\n' <"/proc/$p/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [ "$r" = "$1" ] && victim=$p
    done
    [ -n "$victim" ] || { fail "$2: rank $1's process not found"; kill $mpirun_pid; wait; return; }
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
finish
