#!/bin/sh
# Command-line test of dltrain-data: help, usage errors, a missing file, and a
# real conversion of the Fashion-MNIST test set. (The .npy, CSV and token
# converters are tested by test_convert.py.)
# Usage: test_dltrain_data_cli.sh PATH_TO_dltrain-data SCRATCH_DIR
set -u
BIN=$1
DIR=$2
FMNIST=/usr/share/datasets/fashion-mnist
mkdir -p "$DIR" || exit 1
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

"$BIN" --help >"$DIR/help.out" 2>&1 || fail "--help exited $?"
for cmd in idx npy csv tokens info verify; do
    grep -q "dltrain-data $cmd" "$DIR/help.out" || fail "--help does not describe '$cmd'"
done

"$BIN" >/dev/null 2>"$DIR/noargs.err"
rc=$?
[ "$rc" -eq 2 ] || fail "no arguments exited $rc, expected 2"
grep -q usage "$DIR/noargs.err" || fail "no arguments: no usage text on stderr"

"$BIN" --version | grep -q "^dltrain-data [0-9]" || fail "--version output"

"$BIN" info "$DIR/missing.h5" >/dev/null 2>"$DIR/missing.err"
rc=$?
[ "$rc" -eq 2 ] || fail "info of a missing file exited $rc, expected 2"
grep -q "missing.h5" "$DIR/missing.err" || fail "info of a missing file: file not named on stderr"

if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ] || [ ! -f "$FMNIST/t10k-labels-idx1-ubyte.gz" ]; then
    echo "FAIL: Fashion-MNIST not found under $FMNIST; install the Debian package" \
         "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)" >&2
    exit 1
fi
rm -f "$DIR/t10k.h5"
"$BIN" idx "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" \
    "$DIR/t10k.h5" >"$DIR/idx.out" 2>&1 || fail "idx conversion exited $?: $(cat "$DIR/idx.out")"
grep -q "^10000 samples" "$DIR/idx.out" || fail "idx summary: $(cat "$DIR/idx.out")"
"$BIN" info "$DIR/t10k.h5" >"$DIR/info.out" 2>&1 || fail "info exited $?: $(cat "$DIR/info.out")"
grep -q "total samples: 10000" "$DIR/info.out" || fail "info: sample count"
grep -q "1 x 28 x 28" "$DIR/info.out" || fail "info: image shape"
grep -q "classes: 10" "$DIR/info.out" || fail "info: classes"

# verify: every sample read, labels checked, checksums stored at conversion
# recomputed; a flipped byte and a truncated file are caught, naming the file.
"$BIN" verify "$DIR/t10k.h5" >"$DIR/verify.out" 2>&1 || fail "verify of a good file exited $?"
grep -q "t10k.h5: 10000 samples read, labels in range, checksums match" "$DIR/verify.out" ||
    fail "verify: $(cat "$DIR/verify.out")"
cp "$DIR/t10k.h5" "$DIR/flipped.h5"
printf 'U' | dd of="$DIR/flipped.h5" bs=1 seek=4000000 conv=notrunc 2>/dev/null
"$BIN" verify "$DIR/flipped.h5" >/dev/null 2>"$DIR/flipped.err"
[ $? -eq 2 ] || fail "verify of a corrupt file should exit 2"
grep -q "flipped.h5: dataset /images does not match its stored checksum" "$DIR/flipped.err" ||
    fail "verify of a corrupt file: $(cat "$DIR/flipped.err")"
head -c 5000000 "$DIR/t10k.h5" >"$DIR/cut.h5"
"$BIN" verify "$DIR/cut.h5" >/dev/null 2>"$DIR/cut.err"
[ $? -eq 2 ] || fail "verify of a truncated file should exit 2"
grep -q "cut.h5" "$DIR/cut.err" || fail "verify of a truncated file: $(cat "$DIR/cut.err")"

# --shards: balanced files named OUT-KKKKK-of-NNNNN.h5 that read as one dataset.
rm -f "$DIR"/t10k-*-of-*.h5*
"$BIN" idx "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" \
    "$DIR/t10k.h5" --shards 3 >"$DIR/shards.out" 2>&1 || fail "--shards 3 exited $?"
grep -q "^10000 samples.*(3 shards)" "$DIR/shards.out" || fail "--shards summary: $(cat "$DIR/shards.out")"
"$BIN" info "$DIR/t10k-*-of-00003.h5" >"$DIR/info3.out" 2>&1 || fail "info of 3 shards exited $?"
grep -q "^shards: 3" "$DIR/info3.out" || fail "info of 3 shards: shard count"
grep -q "t10k-00000-of-00003.h5: 3333 samples" "$DIR/info3.out" || fail "info: shard 0 size"
grep -q "t10k-00002-of-00003.h5: 3334 samples" "$DIR/info3.out" || fail "info: shard 2 size"
grep -q "total samples: 10000" "$DIR/info3.out" || fail "info of 3 shards: total"
[ -z "$(ls "$DIR"/*.tmp 2>/dev/null)" ] || fail "--shards left temporary files"
"$BIN" idx "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" \
    "$DIR/x.h5" --shards 0 >/dev/null 2>"$DIR/sh0.err"
[ $? -eq 2 ] || fail "--shards 0 should exit 2"
grep -q "whole number from 1" "$DIR/sh0.err" || fail "--shards 0: message"
"$BIN" idx "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" \
    "$DIR/x.h5" --shards 20000 >/dev/null 2>"$DIR/shbig.err"
[ $? -eq 2 ] || fail "--shards 20000 should exit 2"
grep -q "has only 10000 samples" "$DIR/shbig.err" || fail "--shards 20000: message"
[ -z "$(ls "$DIR"/x-* 2>/dev/null)" ] || fail "a refused --shards left files"

if [ "$fails" -ne 0 ]; then
    echo "test_dltrain_data_cli: $fails check(s) failed" >&2
    exit 1
fi
echo "test_dltrain_data_cli: all checks passed"
