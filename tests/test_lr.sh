#!/bin/sh
# Learning-rate coordination across ranks (issue 5):
# 1. scale_lr = linear: the rate is lr x global batch / reference_batch, in
#    the start-up line and in metrics.csv's lr column, warm-up included.
# 2. A 2-rank checkpoint (batch_size 32 per rank) continued on 1 rank: the
#    global batch halves, the data position maps to this run's steps and the
#    rate is rescaled, which the log and metrics.csv show; without scale_lr
#    the resume is refused, and so is a position no step of the new global
#    batch starts at.
# 3. plateau, on 2 ranks, with a threshold no evaluation can meet: the rate
#    drops by gamma at every second evaluation (patience 1), rank 0 says so,
#    and resuming from a checkpoint before or after a cut ends with the
#    params_digest of the uninterrupted run; a checkpoint without plateau
#    state (older versions) starts a fresh one; eval_every = 0 is refused.
. "$SRC/tests/lib.sh"
rm -rf lr && mkdir -p lr && cd lr || exit 1
shard="$TESTDATA/shards/fashion-train"
small="data.train=$shard-00000-of-00008.h5 data.test=$shard-00007-of-00008.h5"

# lr_at FILE STEP: the lr column of metrics.csv at STEP
lr_at() {
    awk -F, -v s="$2" '$1 == s { print $5 }' "$1"
}

# 1. 2 ranks x 32 = 64 samples a step: 0.1 x 64/256 = 0.025; warm-up over 10
#    steps, so step 5 (the 5th step, index 4) uses half of it.
lin="$DATA train.batch_size=32 train.eval_every=0 train.progress=lines schedule.type=constant
optim.lr=0.1 optim.scale_lr=linear schedule.warmup_steps=0"
$MPIRUN 2 "$DLTRAIN" "$JOB" $lin train.max_steps=20 train.log_every=5 schedule.warmup_steps=10 \
    train.run_dir=lin >lin.log 2>&1
expect_status 0 $? "scale_lr = linear"
expect_in lin.log "learning rate: lr 0.1 x 64/256 = 0.025 (scale_lr = linear)" "start-up line"
[ "$(lr_at lin/metrics.csv 5)" = 0.0125 ] || fail "lr at step 5: $(lr_at lin/metrics.csv 5)"
[ "$(lr_at lin/metrics.csv 10)" = 0.025 ] || fail "lr at step 10: $(lr_at lin/metrics.csv 10)"
[ "$(lr_at lin/metrics.csv 20)" = 0.025 ] || fail "lr at step 20: $(lr_at lin/metrics.csv 20)"
OMPI_COMM_WORLD_SIZE=4 "$DLTRAIN" --check "$JOB" $lin >check.out 2>&1
expect_status 0 $? "--check with scale_lr"
expect_in check.out "learning rate: lr 0.1 x 128/256 = 0.05 (scale_lr = linear)" "--check"

# 2. Checkpoint of step 20 at global batch 64 = sample 1280 of epoch 0, which
#    is step 40 at global batch 32; the run then goes on to max_steps (60).
$MPIRUN 2 "$DLTRAIN" "$JOB" $lin train.max_steps=60 train.log_every=10 \
    checkpoint.every_steps=20 train.run_dir=two >two.log 2>&1
expect_status 0 $? "2-rank run with checkpoints"
ck=two/checkpoints/ckpt-0000000020.h5
$MPIRUN 1 "$DLTRAIN" "$JOB" $lin train.max_steps=60 train.log_every=10 \
    checkpoint.resume=$ck train.run_dir=one >one.log 2>&1
expect_status 0 $? "resume on 1 rank"
expect_in one.log "resumed with global batch 32 instead of 64: learning rate rescaled 0.025 -> 0.0125 (scale_lr = linear)" \
    "rescale message"
expect_in one.log "step 20 of the saved run is step 40 of this one (epoch 0, offset 1280)" "mapping"
expect_in one.log "at step 40 of 60" "resume position"
[ "$(lr_at one/metrics.csv 50)" = 0.0125 ] || fail "rescaled lr: $(lr_at one/metrics.csv 50)"
[ "$(json_field one/summary.json steps)" = 60 ] || fail "1-rank resume: steps"
# Without scale_lr the other global batch is refused, as before.
$MPIRUN 1 "$DLTRAIN" "$JOB" $lin optim.scale_lr=none train.max_steps=60 \
    checkpoint.resume=$ck train.run_dir=none >none.log 2>&1
expect_status 2 $? "resume without scale_lr"
expect_in none.log "was saved with global batch 64; this run has 32" "refusal without scale_lr"
# Global batch 96: sample 1280 is not the start of any of its steps.
$MPIRUN 1 "$DLTRAIN" "$JOB" $lin train.batch_size=96 train.max_steps=60 \
    checkpoint.resume=$ck train.run_dir=g96 >g96.log 2>&1
expect_status 2 $? "resume at a position off the new batches"
expect_in g96.log "offset 1280 of epoch 0's sample order, which is not a multiple of this run's global batch 96" \
    "refusal off the batches"

# 3. 7500 samples / 250 = 30 steps an epoch, 6 epochs. No evaluation is an
#    improvement (threshold 10), so with patience 1 the evaluations after
#    epochs 2, 4 and 6 cut: steps 0-59 at 0.05, 60-119 at 0.005, then 0.0005.
plat="$small train.global_batch_size=250 train.epochs=6 train.eval_every=1 train.log_every=30
train.progress=lines optim.lr=0.05 schedule.type=plateau schedule.warmup_steps=0
schedule.patience=1 schedule.threshold=10"
$MPIRUN 2 "$DLTRAIN" "$JOB" $plat checkpoint.every_steps=45 checkpoint.keep_last=10 \
    train.run_dir=plat >plat.log 2>&1
expect_status 0 $? "plateau run"
expect_in plat.log "plateau: test loss has not improved for 2 evaluations; learning rate 0.05 -> 0.005" \
    "first cut"
expect_in plat.log "learning rate 0.005 -> 0.0005" "second cut"
grep -q "0.0005 -> 5e-05" plat.log && fail "a cut after the last step"
for row in 30:0.05 60:0.05 90:0.005 120:0.005 150:0.0005 180:0.0005; do
    got=$(lr_at plat/metrics.csv ${row%:*})
    [ "$got" = "${row#*:}" ] || fail "plateau: lr at step ${row%:*} is '$got', expected ${row#*:}"
done
want=$(json_field plat/summary.json params_digest)
[ -n "$want" ] || fail "no params_digest in plat/summary.json"
# Step 90 ends epoch 3, whose evaluation comes after the save: the resumed
# run makes it first. Step 135 is mid-epoch, after the second cut.
for s in 90 135; do
    $MPIRUN 2 "$DLTRAIN" "$JOB" $plat train.run_dir=plat-$s \
        checkpoint.resume=plat/checkpoints/ckpt-$(printf %010d $s).h5 >plat-$s.log 2>&1
    expect_status 0 $? "plateau resumed at step $s"
    expect_in plat-$s.log "at step $s of 180" "plateau resume position ($s)"
    got=$(json_field plat-$s/summary.json params_digest)
    [ "$got" = "$want" ] || fail "plateau resumed at $s: params_digest $got, uninterrupted $want"
done
expect_in plat-90.log "learning rate 0.005 -> 0.0005" "cut after the resume at 90"
[ "$(lr_at plat-135/metrics.csv 150)" = 0.0005 ] || fail "plateau state not restored at 135"

# A checkpoint of an older version holds zeros after the first two values of
# /train/schedule_state: it resumes with a fresh plateau state (factor 1).
if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
    cp plat/checkpoints/ckpt-0000000135.h5 old.h5
    /usr/bin/python3 -c "import h5py; f = h5py.File('old.h5', 'r+'); f['train/schedule_state'][2:] = 0" ||
        fail "cannot edit old.h5"
    $MPIRUN 1 "$DLTRAIN" "$JOB" $plat train.run_dir=old checkpoint.resume=old.h5 >old.log 2>&1
    expect_status 0 $? "resume from a checkpoint without plateau state"
    [ "$(lr_at old/metrics.csv 150)" = 0.05 ] || fail "old checkpoint: lr $(lr_at old/metrics.csv 150)"
fi

# Plateau needs evaluations.
"$DLTRAIN" --check "$JOB" $plat train.eval_every=0 >noeval.out 2>&1
expect_status 2 $? "plateau with eval_every = 0"
expect_in noeval.out "[schedule] type = plateau decides from evaluations, but [train] eval_every = 0" \
    "plateau without evaluations"
finish
