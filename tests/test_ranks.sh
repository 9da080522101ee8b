#!/bin/sh
# Runs on 1, 2 and 4 ranks with the same global batch end with the same
# parameters (within 1e-5 relative, max norm); a repeated run is bit-identical.
. "$SRC/tests/lib.sh"
rm -rf ranks && mkdir -p ranks && cd ranks || exit 1
common="$DATA train.global_batch_size=64 train.max_steps=60 train.eval_every=0 train.log_every=20
schedule.warmup_steps=10"

for opt in sgd adamw; do
    lr=0.05
    [ $opt = adamw ] && lr=0.002
    for n in 1 2 4; do
        $MPIRUN $n "$DLTRAIN" "$JOB" $common optim.type=$opt optim.lr=$lr \
            train.run_dir=$opt-$n >$opt-$n.out 2>&1
        expect_status 0 $? "$opt on $n rank(s)"
        [ "$(json_field $opt-$n/summary.json world_size)" = $n ] || fail "$opt-$n: world_size"
        [ "$(json_field $opt-$n/summary.json steps)" = 60 ] || fail "$opt-$n: steps"
    done
    for n in 2 4; do
        "$COMPARE_PARAMS" $opt-$n/params.bin $opt-1/params.bin 1e-5 ||
            fail "$opt: $n ranks differ from 1 rank"
    done
done

# Synchronised batch norm normalises over the global batch, so a CNN with it
# also matches across rank counts (per-rank statistics, the default, do not).
bn_sync_job >bn.ini
for n in 1 2 4; do
    $MPIRUN $n "$DLTRAIN" bn.ini train.run_dir=bn-$n >bn-$n.out 2>&1
    expect_status 0 $? "sync batchnorm on $n rank(s)"
done
for n in 2 4; do
    "$COMPARE_PARAMS" bn-$n/params.bin bn-1/params.bin 1e-5 ||
        fail "sync batchnorm: $n ranks differ from 1 rank"
done

# The training set as 8 shards trains exactly as the single file.
$MPIRUN 2 "$DLTRAIN" "$JOB" $common "data.train=$TESTDATA/shards/fashion-train-*.h5" \
    train.run_dir=sgd-2-shards >shards.out 2>&1
expect_status 0 $? "8 shards"
cmp -s sgd-2/params.bin sgd-2-shards/params.bin || fail "8 shards: parameters differ from 1 file"

# Same job, same ranks: the same parameters bit for bit.
$MPIRUN 2 "$DLTRAIN" "$JOB" $common train.run_dir=sgd-2-again >again.out 2>&1
expect_status 0 $? "repeat"
a=$(json_field sgd-2/summary.json params_digest)
b=$(json_field sgd-2-again/summary.json params_digest)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "repeated 2-rank run: params_digest $a then $b"
cmp -s sgd-2/params.bin sgd-2-again/params.bin || fail "repeated 2-rank run: params.bin differ"
finish
