#!/bin/sh
# The quick-start job end to end on 2 ranks: the MLP 784-256-128-100-10 on
# Fashion-MNIST reaches at least 0.89 test accuracy, and the run directory
# holds what docs/user-guide.md promises.
. "$SRC/tests/lib.sh"
rm -rf quickstart
$MPIRUN 2 "$DLTRAIN" "$JOB" $DATA train.run_dir=quickstart >quickstart.out 2>&1
expect_status 0 $? "quick-start run"
tail -n 3 quickstart.out
s=quickstart/summary.json
for k in test_accuracy test_loss steps epochs world_size wall_s samples_per_s params_digest; do
    [ -n "$(json_field $s $k)" ] || fail "summary.json has no $k"
done
acc=$(json_field $s test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.89) }' || fail "test accuracy $acc is below 0.89"
[ "$(json_field $s steps)" = 9360 ] || fail "expected 9360 steps"
[ "$(json_field $s world_size)" = 2 ] || fail "expected world_size 2"
rows=$(($(wc -l <quickstart/metrics.csv) - 1))
[ "$rows" = 94 ] || fail "metrics.csv has $rows rows, expected 94 (every 100 steps and the last)"
evals=$(($(wc -l <quickstart/eval.csv) - 1))
[ "$evals" = 20 ] || fail "eval.csv has $evals rows, expected one per epoch"
[ -s quickstart/params.bin ] || fail "no params.bin"
echo "test accuracy $acc"
finish
