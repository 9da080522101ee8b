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

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed" >&2
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
