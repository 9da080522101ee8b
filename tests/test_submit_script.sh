#!/bin/sh
# The batch script dltrain-submit writes, run outside Slurm (issue 6): bash
# runs it with the SLURM_* variables a job would have and a stand-in
# scontrol that records its arguments, on 2 ranks.
# 1. SIGUSR1 to the batch shell reaches the ranks through mpirun; they save
#    their state, exit 75 and the script requeues the job; run again as the
#    requeued job, it resumes and ends with an uninterrupted run's digest.
# 2. No requeue when the run saved no newer checkpoint (a loop), after
#    SIGTERM (scancel), or for statuses other than 75, which it passes on.
# 3. GPU jobs: each rank sees only its own GPU of the node's list.
# tests/test_slurm.sh does the same under a real Slurm where it can run.
. "$SRC/tests/lib.sh"
rm -rf submit_script && mkdir -p submit_script/bin && cd submit_script || exit 1
here=$PWD
cat >bin/scontrol <<'EOF'
#!/bin/sh
echo "$*" >>"$SCONTROL_LOG"
EOF
chmod +x bin/scontrol
PATH=$here/bin:$PATH
export SCONTROL_LOG=$here/scontrol.log SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_JOB_NODELIST=localhost
common="$DATA train.max_steps=2000 train.global_batch_size=64 train.log_every=500
train.eval_every=0 train.progress=lines checkpoint.every_steps=200"
submit="$DLTRAIN_SUBMIT $JOB --nodes 1 --ntasks-per-node 2 --time 00:10:00 --mpirun-args --oversubscribe --dry-run"

# script NAME ARGS...: the batch script for the job with ARGS, in NAME.sbatch.
script() {
    name=$1
    shift
    $submit "$@" >$name.sbatch 2>$name.submit || { fail "dltrain-submit for $name"; cat $name.submit >&2; }
}

# wait_file PATTERN: until a file matches (at most 60 s).
wait_file() {
    i=0
    until ls $1 >/dev/null 2>&1 || [ $i -ge 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}

script a $common train.run_dir=a
bash a.sbatch >a.log 2>&1
expect_status 0 $? "uninterrupted run"
expect_in a.log "dltrain finished (exit status 0)" "uninterrupted run"
want=$(json_field a/summary.json params_digest)
[ -n "$want" ] || fail "no params_digest in a/summary.json"

# ---- 1. SIGUSR1 to the batch shell: checkpoint and requeue ------------------
script b $common train.run_dir=b
bash b.sbatch >b1.log 2>&1 &
pid=$!
wait_file "b/checkpoints/ckpt-*.h5"
kill -USR1 $pid
wait $pid
expect_status 0 $? "signalled run (requeued)"
expect_in b1.log "SIGUSR1 received: passing it to the ranks" "the shell passed the signal on"
expect_in b1.log "SIGUSR1 received; stopped after step" "the ranks stopped"
expect_in b1.log "(exit status 75): requeueing job 4242" "requeue message"
expect_in scontrol.log "requeue 4242" "scontrol requeue"
SLURM_RESTART_COUNT=1 bash b.sbatch >b2.log 2>&1
expect_status 0 $? "requeued run"
expect_in b2.log "run 2 on localhost" "second run"
expect_in b2.log "continuing from the newest checkpoint" "second run"
expect_in b2.log "resumed from" "resumed"
[ "$(json_field b/summary.json params_digest)" = "$want" ] ||
    fail "requeued run: params_digest $(json_field b/summary.json params_digest), uninterrupted $want"

# ---- 2. when it does not requeue --------------------------------------------
# A stand-in dltrain: the real one for --check, otherwise exit $FAKE_STATUS.
cat >fake-dltrain <<EOF
#!/bin/sh
[ "\$1" = --check ] && exec "$DLTRAIN" "\$@"
exit \$FAKE_STATUS
EOF
chmod +x fake-dltrain
script c --dltrain fake-dltrain $common train.run_dir=c
: >scontrol.log
FAKE_STATUS=75 bash c.sbatch >c.log 2>&1
expect_status 75 $? "75 without a new checkpoint"
expect_in c.log "wrote no newer checkpoint than at the start of this run (none); not requeueing" "loop guard"
FAKE_STATUS=3 bash c.sbatch >c.log 2>&1
expect_status 3 $? "status 3 passed on"
expect_in c.log "exit status 3 (the watchdog or a failed collective); not requeueing" "status 3"
FAKE_STATUS=2 bash c.sbatch >c.log 2>&1
expect_status 2 $? "status 2 passed on"
[ -s scontrol.log ] && fail "requeued after 75 without a checkpoint, 3 or 2: $(cat scontrol.log)"
# SIGTERM (scancel, the time limit): the ranks save, nothing is requeued.
script d $common train.run_dir=d
bash d.sbatch >d.log 2>&1 &
pid=$!
wait_file "d/checkpoints/ckpt-*.h5"
kill -TERM $pid
wait $pid
status=$?
[ $status -ne 0 ] || fail "SIGTERM: status 0"
expect_in d.log "SIGTERM received: passing it to mpirun" "SIGTERM passed on"
expect_in d.log "not requeueing" "no requeue after SIGTERM"
[ -s scontrol.log ] && fail "requeued after SIGTERM: $(cat scontrol.log)"

# ---- 3. one GPU per rank ----------------------------------------------------
cat >gpu-dltrain <<EOF
#!/bin/sh
[ "\$1" = --check ] && { "$DLTRAIN" "\$@" | sed 's/^device *= cpu /device             = cuda/'; exit; }
echo "rank \$OMPI_COMM_WORLD_RANK sees CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES"
EOF
chmod +x gpu-dltrain
script g --dltrain gpu-dltrain $common train.run_dir=g
CUDA_VISIBLE_DEVICES=4,6 bash g.sbatch >g.log 2>&1
expect_status 0 $? "GPU job"
expect_in g.log "rank 0 sees CUDA_VISIBLE_DEVICES=4" "rank 0's GPU"
expect_in g.log "rank 1 sees CUDA_VISIBLE_DEVICES=6" "rank 1's GPU"
env -u CUDA_VISIBLE_DEVICES bash g.sbatch >g.log 2>&1
expect_in g.log "rank 1 sees CUDA_VISIBLE_DEVICES=1" "rank 1's GPU without a list"
finish
