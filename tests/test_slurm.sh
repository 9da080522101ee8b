#!/bin/sh
# dltrain-submit against a real Slurm (issue 6): starts a one-node cluster
# (munged, slurmctld and slurmd from Debian's slurm-wlm and munge, all
# configured in a temporary directory, on free ports), then
# 1. submits a 2-rank job with dltrain-submit: it trains to completion;
# 2. submits it again and, once a checkpoint exists, sends SIGUSR1 to the
#    batch shell (scancel --batch --signal=USR1, as --signal=B:USR1@GRACE
#    does before the time limit): the shell passes it to mpirun, the ranks
#    save their state and exit 75, the script requeues the job, and the second
#    run resumes and ends with the uninterrupted run's params_digest;
# 3. a 2-value sweep runs as a job array, one run directory per value.
# Without root or the packages, or if the daemons do not start, it says why
# and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE); with
# DLTRAIN_REQUIRE_SLURM=1 (tests/run.sh sets it as root) that is a failure.
. "$SRC/tests/lib.sh"
rm -rf slurm && mkdir -p slurm && cd slurm || exit 1
t0=$(date +%s)

skip() {
    echo "SKIPPED: $*"
    if [ "${DLTRAIN_REQUIRE_SLURM:-0}" = 1 ]; then
        echo "FAIL: DLTRAIN_REQUIRE_SLURM=1: this machine must run the Slurm tests" >&2
        exit 1
    fi
    exit 77
}

[ "$(id -u)" -eq 0 ] || skip "not root: slurmd must run as root to start jobs"
for cmd in munged munge slurmctld slurmd sbatch scontrol scancel sinfo; do
    command -v $cmd >/dev/null ||
        skip "$cmd is not installed (Debian: apt-get install slurm-wlm munge, or launch/install-deps.sh --tests)"
done

# ---- the cluster -----------------------------------------------------------
# A short directory: munged's socket path must fit in a sockaddr_un.
T=$(mktemp -d /tmp/dltrain-slurm.XXXXXX) || exit 1
chmod 755 "$T"
munge_pid='' ctld_pid='' slurmd_pid=''

# teardown: cancel what is left, stop the daemons this test started (by
# their PIDs), keep their logs in slurm/daemons, remove the directory.
teardown() {
    if [ -n "$ctld_pid" ]; then
        jobs=$(squeue -h -o %i 2>/dev/null)
        [ -n "$jobs" ] && scancel $jobs 2>/dev/null
        i=0
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $i -lt 40 ]; do
            sleep 0.5
            i=$((i + 1))
        done
    fi
    for pid in $slurmd_pid $ctld_pid $munge_pid; do
        kill "$pid" 2>/dev/null
    done
    for pid in $slurmd_pid $ctld_pid $munge_pid; do
        wait "$pid" 2>/dev/null
    done
    mkdir -p daemons && cp "$T"/*.log "$T"/slurm.conf daemons/ 2>/dev/null
    rm -rf "$T"
}
trap teardown EXIT
trap 'exit 1' INT TERM

# show_logs: the end of each daemon's log, after a failure.
show_logs() {
    for f in "$T"/*.log; do
        echo "---- $f (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
}

dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null && chmod 400 "$T/munge.key"
munged --foreground --force --socket="$T/munge.sock" --key-file="$T/munge.key" \
    --pid-file="$T/munged.pid" --log-file="$T/munged.log" --seed-file="$T/munged.seed" \
    >>"$T/munged.log" 2>&1 &
munge_pid=$!
i=0
while ! munge -n -S "$T/munge.sock" 2>/dev/null | unmunge -S "$T/munge.sock" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -ge 50 ] || ! kill -0 $munge_pid 2>/dev/null; then
        show_logs
        skip "munged did not start (log above)"
    fi
    sleep 0.2
done

# Two free TCP ports for slurmctld and slurmd (the defaults may be taken).
ports=$(/usr/bin/python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))' 2>/dev/null) ||
    ports="$((20000 + $$ % 20000)) $((20001 + $$ % 20000))"
set -- $ports
node=$(hostname -s)
cpus=$(nproc)
[ "$cpus" -ge 2 ] || cpus=2
mkdir -p "$T/state" "$T/spool"
# cred_expire is also how long a requeued job waits before it may start
# again (120 s by default); sched_interval makes the scheduler look every
# second rather than every minute.
cat >"$T/slurm.conf" <<EOF
ClusterName=dltraintest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock,cred_expire=10
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=10
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=$node Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"
slurmctld -D -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
ctld_pid=$!
slurmd -D -f "$SLURM_CONF" -N "$node" >>"$T/slurmd.log" 2>&1 &
slurmd_pid=$!
i=0
while [ "$(sinfo -h -N -o %T 2>/dev/null)" != idle ]; do
    i=$((i + 1))
    if [ $i -ge 60 ] || ! kill -0 $ctld_pid 2>/dev/null || ! kill -0 $slurmd_pid 2>/dev/null; then
        show_logs
        skip "slurmctld and slurmd did not bring node $node up within 30 s (logs above)"
    fi
    sleep 0.5
done
echo "cluster up: node $node, $cpus CPUs, ports $1 and $2, in $T ($(($(date +%s) - t0)) s)"

# ---- helpers ---------------------------------------------------------------
# states ID: the JobState of the job (of each task of an array), one a line.
states() {
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

# wait_done ID TASKS WHAT SECONDS: until all TASKS runs of the job are
# COMPLETED; a failed end or the time running out is a failure.
wait_done() {
    i=0
    while :; do
        s=$(states "$1")
        if [ "$(echo "$s" | grep -c '^COMPLETED$')" -eq "$2" ]; then
            return 0
        fi
        if echo "$s" | grep -qE '^(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)$'; then
            fail "$3: job $1 ended: $(echo "$s" | tr '\n' ' ')"
            return 1
        fi
        if [ $i -ge $(($4 * 2)) ]; then
            fail "$3: job $1 not done within $4 s (state: $(echo "$s" | tr '\n' ' '))"
            scancel "$1"
            return 1
        fi
        sleep 0.5
        i=$((i + 1))
    done
}

# submit OUTFILE ARGS...: dltrain-submit; prints the job id.
submit() {
    out=$1
    shift
    "$DLTRAIN_SUBMIT" "$JOB" --nodes 1 --ntasks-per-node 2 --time 00:10:00 "$@" >"$out" 2>&1 ||
        { fail "dltrain-submit $*: exit status $?"; cat "$out" >&2; }
    sed -n 's/^dltrain-submit: submitted job\( array\)\{0,1\} \([0-9][0-9]*\) .*/\2/p' "$out"
}

common="$DATA train.max_steps=2000 train.global_batch_size=64 train.log_every=500
train.eval_every=0 train.progress=lines checkpoint.every_steps=200"

# ---- 1. an uninterrupted run ---------------------------------------------------
id=$(submit a.submit $common train.run_dir=a)
[ -n "$id" ] || { show_logs; fail "no job id from dltrain-submit"; finish; }
expect_in a.submit "output $PWD/a/slurm-$id.out" "submit message names the output file"
wait_done "$id" 1 "uninterrupted run" 120
expect_in a/slurm-$id.out "dltrain finished (exit status 0)" "uninterrupted run"
want=$(json_field a/summary.json params_digest)
[ -n "$want" ] || { fail "no params_digest in a/summary.json"; cat a/slurm-$id.out >&2; }
[ "$(json_field a/summary.json world_size)" = 2 ] || fail "uninterrupted run: world_size is not 2"
echo "1. uninterrupted run: job $id done ($(($(date +%s) - t0)) s)"

# ---- 2. SIGUSR1 to the batch shell: checkpoint, requeue, resume --------------
id=$(submit b.submit $common train.run_dir=b)
[ -n "$id" ] || { fail "no job id from dltrain-submit"; finish; }
i=0
until ls b/checkpoints/ckpt-*.h5 >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -ge 600 ] || [ "$(states "$id")" = COMPLETED ]; then
        fail "no checkpoint in b/checkpoints within 60 s, or the job ended first (state $(states "$id"))"
        cat b/slurm-$id.out >&2
        finish
    fi
    sleep 0.1
done
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id: exit status $?"
wait_done "$id" 1 "signalled run" 120
log=b/slurm-$id.out
expect_in $log "SIGUSR1 received: passing it to the ranks" "the batch shell got the signal"
expect_in $log "SIGUSR1 received; stopped after step" "the ranks stopped"
expect_in $log "(exit status 75): requeueing job $id" "the script requeued the job"
expect_in $log "run 2 on $node" "the job ran again"
expect_in $log "resumed from" "the second run resumed"
grep -q "stopped after step 2000 of 2000" $log && fail "the signal came after the last step; raise train.max_steps"
scontrol show job "$id" | grep -q 'Restarts=1' || fail "Slurm does not count one restart for job $id"
got=$(json_field b/summary.json params_digest)
[ "$got" = "$want" ] || { fail "requeued run: params_digest '$got', uninterrupted '$want'"; cat $log >&2; }
echo "2. signalled run: job $id checkpointed, requeued and resumed ($(($(date +%s) - t0)) s)"

# ---- 3. a sweep: a job array with a run directory per value ----------------
short="$DATA train.max_steps=200 train.global_batch_size=64 train.eval_every=0
train.progress=lines checkpoint.every_steps=100 train.run_dir=s"
id=$(submit s.submit $short --sweep optim.lr=0.05,0.02)
[ -n "$id" ] || { fail "no job id from dltrain-submit --sweep"; finish; }
wait_done "$id" 2 "sweep" 120
for v in 0.05 0.02; do
    [ -f s/lr-$v/summary.json ] || fail "sweep: no s/lr-$v/summary.json"
    grep -q "^lr *= $v" s/lr-$v/job.resolved.ini || fail "sweep: s/lr-$v did not run with lr $v"
done
[ "$(json_field s/lr-0.05/summary.json params_digest)" != "$(json_field s/lr-0.02/summary.json params_digest)" ] ||
    fail "sweep: both values gave the same parameters"
echo "3. sweep: job array $id, 2 runs ($(($(date +%s) - t0)) s)"

if [ "$failures" -ne 0 ]; then
    show_logs
fi
finish
