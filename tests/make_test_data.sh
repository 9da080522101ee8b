#!/bin/sh
# Converts Debian's Fashion-MNIST (dataset-fashion-mnist) to HDF5 for the tests.
set -eu
src=/usr/share/datasets/fashion-mnist
if [ ! -d "$src" ]; then
    echo "FAIL: $src is missing; install the dataset-fashion-mnist package" >&2
    exit 1
fi
mkdir -p "$TESTDATA"
[ -f "$TESTDATA/fashion-train.h5" ] ||
    "$DLTRAIN_DATA" idx "$src/train-images-idx3-ubyte.gz" "$src/train-labels-idx1-ubyte.gz" \
        "$TESTDATA/fashion-train.h5"
[ -f "$TESTDATA/fashion-test.h5" ] ||
    "$DLTRAIN_DATA" idx "$src/t10k-images-idx3-ubyte.gz" "$src/t10k-labels-idx1-ubyte.gz" \
        "$TESTDATA/fashion-test.h5"
# The training set again as 8 shards, which must train exactly as the one file.
[ -f "$TESTDATA/shards/fashion-train-00007-of-00008.h5" ] || {
    mkdir -p "$TESTDATA/shards"
    "$DLTRAIN_DATA" idx "$src/train-images-idx3-ubyte.gz" "$src/train-labels-idx1-ubyte.gz" \
        "$TESTDATA/shards/fashion-train.h5" --shards 8
}
"$DLTRAIN_DATA" info "$TESTDATA/fashion-train.h5"
