#!/bin/sh
# Bad input on 2 ranks: each case exits 2 with one clear message naming the
# file, line or dataset, before any work: no run directory, no summary.json,
# and an earlier run's files untouched.
. "$SRC/tests/lib.sh"
rm -rf errors && mkdir -p errors && cd errors || exit 1

# run_bad NAME EXPECTED_TEXT JOB [overrides...]
run_bad() {
    name=$1 text=$2 job=$3
    shift 3
    rm -rf "run-$name"
    $MPIRUN 2 "$DLTRAIN" "$job" $DATA "train.run_dir=run-$name" "$@" >"$name.out" 2>&1
    expect_status 2 $? "$name"
    expect_in "$name.out" "$text" "$name"
    n=$(grep -c "dltrain.*: error:" "$name.out")
    [ "$n" = 1 ] || fail "$name: the error was printed $n times, expected once"
    [ ! -e "run-$name/summary.json" ] || fail "$name: left a summary.json behind"
    [ ! -e "run-$name" ] || fail "$name: created the run directory before failing"
}

# A misspelt key, with its line and the accepted keys.
line=$(grep -n '^warmup_steps' "$JOB" | cut -d: -f1)
sed 's/^warmup_steps/warmup_step/' "$JOB" >misspelt.ini
run_bad misspelt "misspelt.ini:$line: unknown key 'warmup_step' in [schedule]; accepted: type, warmup_steps" misspelt.ini
expect_in misspelt.out "did you mean 'warmup_steps'" misspelt

# A malformed value and an out-of-range value.
line=$(grep -n '^momentum' "$JOB" | cut -d: -f1)
sed 's/^momentum = 0.9/momentum = lots/' "$JOB" >badvalue.ini
run_bad badvalue "badvalue.ini:$line: [optim] momentum = 'lots' is not a number" badvalue.ini
run_bad range "command line: [train] batch_size = -5 is out of range" "$JOB" train.batch_size=-5

# A missing job file, a missing data file.
run_bad nojob "nojob.ini: cannot open the job file" nojob.ini
run_bad nodata "/nonexistent/fashion.h5" "$JOB" data.train=/nonexistent/fashion.h5

# An HDF5 file that is not in dltrain's schema (only /labels copied over,
# without the schema attributes). The reader's own test covers each other
# schema error (missing /images, wrong type or rank, counts that differ).
rm -f labels-only.h5
h5copy -i "$TESTDATA/fashion-test.h5" -o labels-only.h5 -s /labels -d /labels ||
    fail "h5copy could not make the bad file"
run_bad schema "labels-only.h5: root attribute dltrain_schema is missing" "$JOB" data.test=labels-only.h5

# A model that does not fit the data, and a global batch that does not divide.
line=$(grep -n '^units = 10 ' "$JOB" | cut -d: -f1)
line=$((line - 1))
sed 's/^units = 10 /units = 12 /' "$JOB" >classes.ini
run_bad classes "classes.ini:$line: the last [dense] has 12 units but" classes.ini
expect_in classes.out "has 10 classes" classes
run_bad divide "global_batch_size = 63 does not divide among 2 ranks" "$JOB" train.global_batch_size=63

# A launch that does not match the allocation: Slurm's task count against
# the MPI world (srun without MPI support starts one-rank jobs), and the
# launcher's local rank against the shared-memory split.
export SLURM_NTASKS=4
run_bad ntasks "Slurm started 4 tasks (SLURM_NTASKS), but this MPI job has 2 rank(s)" "$JOB"
unset SLURM_NTASKS
rm -rf run-local
OMPI_COMM_WORLD_LOCAL_RANK=5 "$DLTRAIN" "$JOB" $DATA train.run_dir=run-local >local.out 2>&1
expect_status 2 $? "local rank"
expect_in local.out "mpirun says its local rank is 5 (OMPI_COMM_WORLD_LOCAL_RANK)" "local rank"
[ ! -e run-local ] || fail "local rank: created the run directory before failing"

# Nothing already saved is lost: an earlier run's files stay as they were.
mkdir -p run-keep && echo precious >run-keep/summary.json
$MPIRUN 2 "$DLTRAIN" "$JOB" $DATA train.run_dir=run-keep optim.lr=-1 >keep.out 2>&1
expect_status 2 $? keep
[ "$(cat run-keep/summary.json)" = precious ] || fail "keep: an earlier summary.json was changed"
finish
