#!/bin/sh
# Bucketed gradient all-reduce (issue 7): the same job trained with one
# all-reduce after the backward pass (train.bucket_mb = 0) and with buckets
# started during the backward pass ends with the same parameters.
# 1. 2 ranks, bit for bit (a sum of two values does not depend on the order
#    MPI adds them in): the CNN of docs/examples (convolutions that apply
#    their max pool) in 33 buckets of 0.05 MiB after an odd first bucket of
#    0.013 MiB, and in the default buckets (1 MiB, then 25 MiB: 2); a CNN with
#    synchronised batch norm, whose blocking all-reduces run in the backward
#    pass while buckets are pending.
# 2. 3 ranks, the MLP in 20 buckets: within 1e-5 relative (the tolerance of
#    mpi.ranks_match_single_rank). Three values can be added in different
#    orders, and MPI chooses its order by message size, so bit equality is
#    not guaranteed; the test says whether it held. Every run must end with
#    ranks_identical = true.
. "$SRC/tests/lib.sh"
rm -rf buckets && mkdir -p buckets && cd buckets || exit 1
small="train.bucket_mb=0.05 train.first_bucket_mb=0.013"

# run NAME RANKS JOB ARGS...: train, check the status and ranks_identical.
run() {
    name=$1 n=$2 job=$3
    shift 3
    $MPIRUN "$n" "$DLTRAIN" "$job" "$@" train.run_dir="$name" >"$name.log" 2>&1
    expect_status 0 $? "$name"
    [ "$(json_field "$name/summary.json" ranks_identical)" = true ] ||
        fail "$name: ranks_identical is '$(json_field "$name/summary.json" ranks_identical)'"
}

# 1. CNN on 2 ranks.
cnnjob="$SRC/docs/examples/fashion-cnn.ini"
cnn="$DATA train.global_batch_size=64 train.max_steps=30 train.eval_every=0 train.log_every=10"
run cnn-one 2 "$cnnjob" $cnn train.bucket_mb=0
run cnn-small 2 "$cnnjob" $cnn $small
run cnn-default 2 "$cnnjob" $cnn
expect_in cnn-small.log "gradient all-reduce: 33 bucket(s) of up to 0.05 MiB (the first 0.013 MiB)" \
    "the bucket count"
expect_in cnn-default.log "gradient all-reduce: 2 bucket(s)" "the default bucket count"
grep -q "gradient all-reduce:" cnn-one.log && fail "bucket_mb = 0 announced buckets"
for b in small default; do
    cmp -s cnn-one/params.bin cnn-$b/params.bin ||
        fail "cnn on 2 ranks: $b buckets end with other parameters than one all-reduce"
done

# Synchronised batch norm: 4018 parameters, in buckets of 0.002 MiB (524
# floats); the dense layer's buckets are pending while the batch-norm
# backward pass all-reduces its statistics.
bn_sync_job >bn.ini
run bn-one 2 bn.ini train.bucket_mb=0
run bn-small 2 bn.ini train.bucket_mb=0.002 train.first_bucket_mb=0.0005
expect_in bn-small.log "gradient all-reduce: 9 bucket(s)" "the batch-norm model's bucket count"
cmp -s bn-one/params.bin bn-small/params.bin ||
    fail "sync batch norm on 2 ranks: buckets end with other parameters than one all-reduce"

# 2. MLP on 3 ranks.
mlp="$DATA train.global_batch_size=96 train.max_steps=40 train.eval_every=0 train.log_every=20"
run mlp-one 3 "$JOB" $mlp train.bucket_mb=0
run mlp-small 3 "$JOB" $mlp $small
expect_in mlp-small.log "gradient all-reduce: 20 bucket(s)" "the MLP's bucket count"
"$COMPARE_PARAMS" mlp-small/params.bin mlp-one/params.bin 1e-5 ||
    fail "mlp on 3 ranks: buckets differ from one all-reduce by more than 1e-5"
if cmp -s mlp-one/params.bin mlp-small/params.bin; then
    echo "3 ranks: bucketed and one all-reduce are bit-identical here"
else
    echo "3 ranks: bucketed and one all-reduce differ by rounding here (allowed)"
fi
finish
