# Shared helpers for dltrain's shell tests (sourced). Environment from CTest:
# MPIRUN (ending in the process-count flag), DLTRAIN, DLTRAIN_DATA,
# COMPARE_PARAMS, SRC, TESTDATA.
set -u
failures=0
JOB="$SRC/docs/examples/fashion-mlp.ini"
DATA="data.train=$TESTDATA/fashion-train.h5 data.test=$TESTDATA/fashion-test.h5"

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect_status WANT GOT WHAT
expect_status() {
    [ "$1" = "$2" ] || fail "$3: exit status $2, expected $1"
}

# expect_in FILE TEXT WHAT: the file contains TEXT (fixed string)
expect_in() {
    grep -qF -- "$2" "$1" || { fail "$3: expected '$2' in:"; cat "$1" >&2; }
}

# json_field FILE KEY: a number or string field of summary.json
json_field() {
    sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1"
}

# children PID: the processes whose parent is PID (from /proc, no ps needed).
children() {
    awk -v p="$1" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null
}

# wait_rows FILE N: until FILE has N lines (at most 60 s).
wait_rows() {
    i=0
    while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 1200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
}

# bn_sync_job: a small CNN with synchronised batch norm (4018 parameters),
# 20 steps at global batch 32 on the test data (mpi.ranks_match_single_rank
# and mpi.buckets).
bn_sync_job() {
    cat <<EOT
[train]
max_steps = 20
global_batch_size = 32
threads = 1
eval_every = 0
log_every = 10
[data]
train = $TESTDATA/fashion-train.h5
test = $TESTDATA/fashion-test.h5
[optim]
lr = 0.05
momentum = 0.9
[conv]
filters = 8
bias = false
[batchnorm]
sync = true
[activation]
type = relu
[maxpool]
size = 4
[dense]
units = 10
EOT
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed" >&2
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
