#!/bin/sh
# dltrain's command line: help, version, usage errors, and --check.
. "$SRC/tests/lib.sh"
out=cli.out

"$DLTRAIN" --help >$out 2>&1; expect_status 0 $? "--help"
expect_in $out "usage: mpirun -np N dltrain JOB.ini" "--help"
"$DLTRAIN" --version >$out 2>&1; expect_status 0 $? "--version"
expect_in $out "dltrain 0." "--version"
"$DLTRAIN" >$out 2>&1; expect_status 2 $? "no arguments"
expect_in $out "usage:" "no arguments"
"$DLTRAIN" --frobnicate job.ini >$out 2>&1; expect_status 2 $? "unknown option"
expect_in $out "unknown option '--frobnicate'" "unknown option"

# --check resolves the configuration, opens the data and prints the plan.
"$DLTRAIN" --check "$JOB" $DATA optim.lr=0.01 >$out 2>&1; expect_status 0 $? "--check"
expect_in $out "lr                 = 0.01                 ; command line" "--check override"
expect_in $out "epochs             = 20                   ; line 8" "--check origin"
expect_in $out "937 steps per epoch (32 samples dropped per epoch), 18740 steps in all" "--check plan"
expect_in $out "247766 parameters" "--check params"
expect_in $out "; ok" "--check"
# --check with the global batch: world size from the launcher's environment.
OMPI_COMM_WORLD_SIZE=4 "$DLTRAIN" --check "$JOB" $DATA train.global_batch_size=128 >$out 2>&1
expect_status 0 $? "--check 4 ranks"
expect_in $out "ranks 4, batch 32 per rank, global batch 128" "--check 4 ranks"
# --check finds errors too, without MPI.
"$DLTRAIN" --check "$JOB" data.train=missing.h5 >$out 2>&1; expect_status 2 $? "--check missing"
expect_in $out "missing.h5" "--check missing"
# device = cuda: an error in a build without CUDA; a build with it checks
# the GPUs when training starts (--check may run on a node without any).
if "$DLTRAIN" --version | grep -q "CUDA backends"; then
    "$DLTRAIN" --check "$JOB" $DATA train.device=cuda >$out 2>&1; expect_status 0 $? "--check cuda"
    # ... and a run on this machine without a GPU says why it cannot start
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
        "$DLTRAIN" "$JOB" $DATA train.device=cuda train.run_dir=cuda-run >$out 2>&1
        expect_status 2 $? "cuda without a GPU"
        expect_in $out "[train] device = cuda, but CUDA" "cuda without a GPU"
    fi
else
    "$DLTRAIN" --check "$JOB" $DATA train.device=cuda >$out 2>&1; expect_status 2 $? "--check cuda"
    expect_in $out "built without CUDA" "--check cuda"
fi

# --check prints the layer table of a CNN, and finds model errors with the line.
cat >cnn.ini <<EOT
[train]
epochs = 1
[data]
train = $TESTDATA/fashion-train.h5
test = $TESTDATA/fashion-test.h5
[conv]
filters = 8
activation = relu
[maxpool]
[conv]
name = second
filters = 4
[shortcut]
from = -3
[dense]
units = 10
EOT
"$DLTRAIN" --check cnn.ini >$out 2>&1; expect_status 2 $? "--check shortcut shapes"
expect_in $out "cnn.ini:13: [shortcut] cannot add an output of shape 8 x 28 x 28 to one of shape 4 x 14 x 14" "--check shortcut shapes"
sed -i 's/^from = -3/from = second/' cnn.ini
"$DLTRAIN" --check cnn.ini >$out 2>&1; expect_status 0 $? "--check cnn"
expect_in $out " 1  conv+relu       6  8 x 28 x 28              80         0.113" "--check layer table"
expect_in $out " 4  shortcut       13  4 x 14 x 14               0         0.001" "--check layer table"
expect_in $out "total                                     8222         0.249 forward, 0.633 training" "--check layer table"
printf '[conv]\nfilters = 10\n' >>cnn.ini
"$DLTRAIN" --check cnn.ini >$out 2>&1; expect_status 2 $? "--check last layer"
expect_in $out "cnn.ini:17: the last layer section is a [conv]; the last layer feeds softmax cross-entropy and must be a [dense]" "--check last layer"
"$DLTRAIN" --check "$JOB" $DATA model.preset=cnn2 >$out 2>&1; expect_status 2 $? "--check preset and layers"
expect_in $out "[model] preset = cnn2 and layer sections (the first at line 30) both describe the model" "--check preset and layers"
finish
