#!/bin/sh
# The CNN example (docs/examples/fashion-cnn.ini: the "2 Conv+pooling" model)
# on 2 ranks reaches at least 0.916 test accuracy on Fashion-MNIST, the
# published figure for that model.
. "$SRC/tests/lib.sh"
rm -rf cnn-accuracy
$MPIRUN 2 "$DLTRAIN" "$SRC/docs/examples/fashion-cnn.ini" $DATA train.run_dir=cnn-accuracy \
    >cnn-accuracy.out 2>&1
expect_status 0 $? "CNN run"
tail -n 3 cnn-accuracy.out
acc=$(json_field cnn-accuracy/summary.json test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.916) }' || fail "test accuracy $acc is below 0.916"
[ "$(json_field cnn-accuracy/summary.json steps)" = 7020 ] || fail "expected 7020 steps"
echo "test accuracy $acc"
finish
