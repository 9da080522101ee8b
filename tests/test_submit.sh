#!/bin/sh
# dltrain-submit without Slurm (issue 6): the batch script --dry-run prints
# (#SBATCH lines, signal forwarding and requeue, overrides, GPUs, sweeps as
# job arrays with one run directory per value), the errors that stop it with
# status 2 before anything is submitted, and a submission through a stand-in
# sbatch that writes RUN_DIR/submit.sbatch.
. "$SRC/tests/lib.sh"
rm -rf submit && mkdir -p submit && cd submit || exit 1
here=$PWD
out=out.txt err=err.txt
base="--nodes 2 --ntasks-per-node 2 --time 01:30:00"

# not_in FILE TEXT WHAT: the file does not contain TEXT.
not_in() {
    ! grep -qF -- "$2" "$1" || fail "$3: did not expect '$2' in $1"
}

# refused WHAT MESSAGE ARGS...: dltrain-submit ARGS exits 2 saying MESSAGE
# and writes nothing.
refused() {
    what=$1 msg=$2
    shift 2
    "$DLTRAIN_SUBMIT" "$@" >$out 2>$err
    expect_status 2 $? "$what"
    expect_in $err "$msg" "$what"
    [ -s $out ] && fail "$what: printed a script"
    [ -e runs ] && fail "$what: created runs/"
}

# ---- 1. a CPU job -----------------------------------------------------------
"$DLTRAIN_SUBMIT" "$JOB" $base --partition debug --account proj --signal-grace 300 --dry-run \
    --mpirun-args "--mca btl self,vader" $DATA optim.lr=0.01 checkpoint.every_steps=100 \
    train.run_dir=runs/cpu >$out 2>$err
expect_status 0 $? "dry run"
for line in "#!/bin/bash" "#SBATCH --job-name=dltrain-fashion-mlp" "#SBATCH --nodes=2" \
    "#SBATCH --ntasks-per-node=2" "#SBATCH --time=01:30:00" "#SBATCH --partition=debug" \
    "#SBATCH --account=proj" "#SBATCH --requeue" "#SBATCH --signal=B:USR1@300" \
    "#SBATCH --open-mode=append" "#SBATCH --output=$here/runs/cpu/slurm-%j.out" \
    "#SBATCH --chdir=$here"; do
    grep -qxF -- "$line" $out || fail "dry run: no line '$line'"
done
expect_in $out "dltrain=$(dirname "$DLTRAIN")/dltrain" "absolute dltrain path"
expect_in $out "job=$SRC/docs/examples/fashion-mlp.ini" "absolute job path"
expect_in $out "overrides=(data.train=$TESTDATA/fashion-train.h5 data.test=$TESTDATA/fashion-test.h5 optim.lr=0.01 checkpoint.every_steps=100 train.run_dir=runs/cpu)" "overrides"
expect_in $out "mpirun_args=(--mca btl self\\,vader)" "--mpirun-args"
expect_in $out "run_dir=$here/runs/cpu" "run directory"
expect_in $out "checkpoint_dir=$here/runs/cpu/checkpoints" "checkpoint directory"
# The signal and requeue handling.
expect_in $out "trap 'say \"SIGUSR1 received: passing it to the ranks" "USR1 trap"
expect_in $out '[ -n "$child" ] && kill -USR1 "$child"' "USR1 forwarded to mpirun"
expect_in $out 'mpirun -np "$SLURM_NTASKS" "${flags[@]}" "${mpirun_args[@]}" "${launch[@]}" "$job" "${overrides[@]}" &' "mpirun in the background"
expect_in $out 'wait "$child"' "the shell waits"
expect_in $out '75)' "status 75 handled"
expect_in $out 'scontrol requeue "$SLURM_JOB_ID"' "requeue"
expect_in $out "flags+=(--allow-run-as-root)" "root flag"
not_in $out "--gpus-per-node" "CPU job"
not_in $out "CUDA_VISIBLE_DEVICES" "CPU job"
not_in $out "--array" "single job"
not_in $out "--cpus-per-task" "no --cpus-per-task"
expect_in $err "dry run: would write $here/runs/cpu/submit.sbatch" "dry run message"
not_in $err "warning" "a job with checkpoints"
[ -e runs ] && fail "--dry-run created runs/"
bash -n $out || fail "the script is not valid bash"

# Options after '=', and a job without periodic checkpoints (warned about).
"$DLTRAIN_SUBMIT" "$JOB" --nodes=1 --ntasks-per-node=2 --time=100:00:00 --dry-run $DATA \
    train.run_dir=runs/x >$out 2>$err
expect_status 0 $? "--option=value"
expect_in $out "#SBATCH --time=100:00:00" "hours past 24"
expect_in $out "#SBATCH --signal=B:USR1@120" "default grace"
expect_in $err "warning: the job saves no periodic checkpoints" "no-checkpoint warning"

# --cpus-per-task: train.threads follows it unless the job sets it.
sed '/^threads/d' "$JOB" >nothreads.ini
"$DLTRAIN_SUBMIT" nothreads.ini $base --cpus-per-task 4 --dry-run $DATA train.run_dir=runs/t \
    checkpoint.every_steps=100 >$out 2>$err
expect_status 0 $? "--cpus-per-task"
expect_in $out "#SBATCH --cpus-per-task=4" "--cpus-per-task"
expect_in $out "checkpoint.every_steps=100 train.threads=4)" "threads from --cpus-per-task"
expect_in $out "flags+=(--map-by slot:PE=4)" "cores bound per rank"
"$DLTRAIN_SUBMIT" "$JOB" $base --cpus-per-task 4 --sbatch-args "--qos=long --exclusive" \
    --dry-run $DATA checkpoint.every_steps=100 >$out 2>$err
expect_status 0 $? "--cpus-per-task with threads set"
expect_in $err "the job sets train.threads = 1" "threads kept"
not_in $out "train.threads=4" "threads kept"
for line in "#SBATCH --qos=long" "#SBATCH --exclusive"; do
    grep -qxF -- "$line" $out || fail "--sbatch-args: no line '$line'"
done

# ---- 2. a GPU job: a stand-in dltrain whose --check says device = cuda -----
cat >cuda-dltrain <<EOF
#!/bin/sh
"$DLTRAIN" "\$@" | sed 's/^device *= cpu /device             = cuda/'
EOF
chmod +x cuda-dltrain
"$DLTRAIN_SUBMIT" "$JOB" $base --dltrain cuda-dltrain --dry-run $DATA checkpoint.every_steps=100 \
    >$out 2>$err
expect_status 0 $? "GPU job"
expect_in $out "#SBATCH --gpus-per-node=2" "GPUs per node = ranks per node"
expect_in $out 'cut -d, -f"$k"' "one GPU bound per rank"
expect_in $out 'launch=(sh -c "$bind" dltrain-gpu-bind "$dltrain")' "GPU binding wrapper"
expect_in $out "dltrain=$here/cuda-dltrain" "--dltrain made absolute"
refused "too few GPUs" "needs one GPU per rank: --gpus-per-node 1 is less than --ntasks-per-node 2" \
    "$JOB" $base --dltrain cuda-dltrain --gpus-per-node 1 --dry-run $DATA
"$DLTRAIN_SUBMIT" "$JOB" $base --gpus-per-node 1 --dry-run $DATA checkpoint.every_steps=100 \
    >$out 2>$err
expect_status 0 $? "GPUs for a CPU job"
expect_in $out "#SBATCH --gpus-per-node=1" "explicit --gpus-per-node"
expect_in $err "[train] device = cpu: the GPUs stay unused" "GPUs for a CPU job"

# ---- 3. a sweep: a job array, one run directory per value -------------------
"$DLTRAIN_SUBMIT" "$JOB" $base --sweep optim.lr=0.1,0.05,0.02 --dry-run $DATA \
    checkpoint.every_steps=100 train.run_dir=runs/sweep >$out 2>$err
expect_status 0 $? "sweep"
expect_in $out "#SBATCH --array=0-2" "array"
expect_in $out "#SBATCH --output=$here/runs/sweep/slurm-%A_%a.out" "array output"
expect_in $out "values=(0.1 0.05 0.02)" "sweep values"
expect_in $out "run_dirs=($here/runs/sweep/lr-0.1 $here/runs/sweep/lr-0.05 $here/runs/sweep/lr-0.02)" "run directories"
expect_in $out "checkpoint_dirs=($here/runs/sweep/lr-0.1/checkpoints" "checkpoint directories"
expect_in $out 'overrides+=(optim.lr="${values[i]}" train.run_dir="$run_dir")' "per-task overrides"
expect_in $out 'i=${SLURM_ARRAY_TASK_ID:?' "array index"
bash -n $out || fail "the sweep script is not valid bash"
# With [checkpoint] dir set, each value gets a directory under it.
"$DLTRAIN_SUBMIT" "$JOB" $base --sweep data.prefetch=1,4 --dry-run $DATA checkpoint.every_steps=100 \
    train.run_dir=runs/sweep checkpoint.dir=/scratch/ck >$out 2>$err
expect_status 0 $? "sweep with checkpoint.dir"
expect_in $out "checkpoint_dirs=(/scratch/ck/prefetch-1 /scratch/ck/prefetch-4)" "sweep checkpoint.dir"
expect_in $out 'overrides+=(checkpoint.dir="$checkpoint_dir")' "sweep checkpoint.dir override"
refused "sweep value dltrain refuses" "does not pass 'dltrain --check'" \
    "$JOB" $base --sweep optim.lr=0.1,fast --dry-run $DATA
expect_in $err "fast" "the bad value is named"
refused "sweep names collide" "two values give the run directory name 'lr-a_b'" \
    "$JOB" $base --sweep optim.lr=a/b,a:b --dry-run $DATA
refused "sweep over the run directory" "--sweep train.run_dir: dltrain-submit sets it" \
    "$JOB" $base --sweep train.run_dir=a,b --dry-run $DATA
refused "two sweeps" "--sweep given twice" \
    "$JOB" $base --sweep optim.lr=0.1 --sweep train.seed=1,2 --dry-run $DATA
refused "empty sweep value" "an empty value" "$JOB" $base --sweep optim.lr=0.1,,0.2 --dry-run $DATA
refused "malformed sweep" "--sweep needs section.key=V1,V2" "$JOB" $base --sweep lr --dry-run $DATA

# ---- 4. errors: status 2, a message, nothing written ------------------------
refused "no arguments" "no job file given"
refused "missing job file" "job file 'nope.ini' does not exist" nope.ini $base --dry-run
refused "no --nodes" "--nodes N is required" "$JOB" --ntasks-per-node 2 --time 1:00:00 --dry-run
refused "no --ntasks-per-node" "--ntasks-per-node G is required" "$JOB" --nodes 1 --time 1:00:00 --dry-run
refused "no --time" "--time HH:MM:SS is required" "$JOB" --nodes 1 --ntasks-per-node 2 --dry-run
refused "--time MM:SS" "--time needs HH:MM:SS" "$JOB" --nodes 1 --ntasks-per-node 2 --time 30:00 --dry-run
refused "--time minutes 61" "not '1:61:00'" "$JOB" --nodes 1 --ntasks-per-node 2 --time 1:61:00 --dry-run
refused "--time days" "--time needs HH:MM:SS" "$JOB" --nodes 1 --ntasks-per-node 2 --time 1-00:00:00 --dry-run
refused "--time zero" "--time must be longer than 00:00:00" "$JOB" --nodes 1 --ntasks-per-node 2 --time 0:00:00 --dry-run
refused "--nodes 0" "--nodes needs a number >= 1, not '0'" "$JOB" --nodes 0 --ntasks-per-node 2 --time 1:00:00 --dry-run
refused "--ntasks-per-node x" "--ntasks-per-node needs a number >= 1, not 'x'" "$JOB" --nodes 1 --ntasks-per-node x --time 1:00:00 --dry-run
refused "grace too long" "--signal-grace 600 s is not shorter than the time limit 00:10:00 (600 s)" \
    "$JOB" --nodes 1 --ntasks-per-node 2 --time 00:10:00 --signal-grace 600 --dry-run $DATA
refused "grace not a number" "--signal-grace needs a number of seconds" "$JOB" $base --signal-grace 2m --dry-run
refused "unknown option" "unknown option '--frobnicate'" "$JOB" $base --frobnicate --dry-run
refused "option without value" "--partition needs a value" "$JOB" $base --dry-run --partition
refused "stray argument" "unexpected argument 'extra'" "$JOB" extra $base --dry-run
refused "bad --sbatch-args" "--sbatch-args: 'long' is not an --option" "$JOB" $base --sbatch-args "--qos long" --dry-run $DATA
refused "bad override" "unknown key 'bogus' in [optim]" "$JOB" $base --dry-run $DATA optim.bogus=1
expect_in $err "the job does not pass 'dltrain --check' on 4 rank(s); nothing submitted" "bad override"
refused "missing data" "missing.h5" "$JOB" $base --dry-run data.train=missing.h5
refused "batch for the world size" "does not divide among 3 ranks" \
    "$JOB" --nodes 3 --ntasks-per-node 1 --time 1:00:00 --dry-run $DATA train.global_batch_size=64
refused "resume = never" "[checkpoint] resume = never: a requeued run would not continue" \
    "$JOB" $base --dry-run $DATA checkpoint.resume=never
refused "space in the run directory" "contains white space" "$JOB" $base --dry-run $DATA "train.run_dir=runs/a b"
refused "no dltrain" "--dltrain nowhere/dltrain: not an executable file" "$JOB" $base --dltrain nowhere/dltrain --dry-run

# ---- 5. submitting, through a stand-in sbatch ---------------------------------
mkdir -p bin
cat >bin/sbatch <<'EOF'
#!/bin/sh
echo "$*" >>"$SBATCH_LOG"
[ -n "${SBATCH_FAIL:-}" ] && { echo "sbatch: error: Invalid account or account/partition combination specified" >&2; exit 1; }
echo 4242
EOF
chmod +x bin/sbatch
export SBATCH_LOG=$here/sbatch.log
PATH=$here/bin:$PATH "$DLTRAIN_SUBMIT" "$JOB" $base $DATA checkpoint.every_steps=100 \
    train.run_dir=runs/real >$out 2>$err
expect_status 0 $? "submit"
expect_in $out "dltrain-submit: submitted job 4242 (2 node(s) x 2 rank(s), time limit 01:30:00); script $here/runs/real/submit.sbatch, output $here/runs/real/slurm-4242.out" "submit message"
expect_in sbatch.log "--parsable $here/runs/real/submit.sbatch" "sbatch arguments"
"$DLTRAIN_SUBMIT" "$JOB" $base $DATA checkpoint.every_steps=100 train.run_dir=runs/real \
    --dry-run >dry.txt 2>/dev/null
grep -v '^# Written by' runs/real/submit.sbatch >written.txt
grep -v '^# Written by' dry.txt | cmp -s - written.txt || fail "submit.sbatch differs from the --dry-run output"
PATH=$here/bin:$PATH "$DLTRAIN_SUBMIT" "$JOB" $base --sweep optim.lr=0.1,0.05 $DATA \
    checkpoint.every_steps=100 train.run_dir=runs/sw >$out 2>$err
expect_status 0 $? "submit a sweep"
expect_in $out "submitted job array 4242" "sweep message"
expect_in $out "task 1: optim.lr=0.05, run directory $here/runs/sw/lr-0.05, output $here/runs/sw/slurm-4242_1.out" "sweep task message"
SBATCH_FAIL=1 PATH=$here/bin:$PATH "$DLTRAIN_SUBMIT" "$JOB" $base $DATA checkpoint.every_steps=100 \
    train.run_dir=runs/fails >$out 2>$err
expect_status 1 $? "sbatch fails"
expect_in $err "Invalid account" "sbatch's message passed on"
expect_in $err "sbatch failed; the script is $here/runs/fails/submit.sbatch" "sbatch fails"
finish
