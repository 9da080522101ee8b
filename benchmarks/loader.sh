#!/usr/bin/env bash
# Data loader throughput, in two parts. Figures only: nothing passes or fails
# on time.
#  1. bench_loader on Fashion-MNIST train (60000 x 1 x 28 x 28 uint8): the
#     loader and direct dl_dataset_read_stored, delivering samples as stored,
#     against a raw sequential read of the same file, in the same run
#     (target: loader >= 80% of raw), and what normalising costs the
#     consumer per batch; then, for datasets larger than memory, the loader
#     on evicted files against a raw read of evicted files (cold against
#     cold).
#  2. The CNN of docs/examples/fashion-cnn.ini for $STEPS steps on each rank
#     count of $RANKS, and the share of step time spent waiting for data,
#     from the run's metrics.csv (target: below 2%).
# Builds what it needs and makes data/fashion-{train,test}.h5 if missing.
#
#   benchmarks/loader.sh [bench_loader options: --batch N --epochs N
#                         --prefetch N --order shuffled|sequential --reps N
#                         --no-map]
#   SPEC=files   dataset to benchmark in part 1 (default data/fashion-train.h5)
#   STEPS=200 RANKS="1 2"  part 2; RANKS="" skips it
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
spec=${SPEC:-data/fashion-train.h5}
steps=${STEPS:-200}
ranks=${RANKS-1 2}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_loader dltrain dltrain-data >/dev/null

src=/usr/share/datasets/fashion-mnist
mkdir -p data
for set in train:train test:t10k; do
    out=data/fashion-${set%%:*}.h5 idx=${set#*:}
    if [ ! -f "$out" ]; then
        "$build/bin/dltrain-data" idx "$src/$idx-images-idx3-ubyte.gz" \
            "$src/$idx-labels-idx1-ubyte.gz" "$out"
    fi
done

echo "== 1. loader throughput: $spec"
"$build/bin/bench_loader" "$spec" "$@"
[ -n "$ranks" ] || exit 0

# data_wait_ms is per step (averaged over ranks); a row's step time is its
# global batch over its samples/s. Both are weighted by the steps in the row.
echo
echo "== 2. data wait of the CNN (docs/examples/fashion-cnn.ini, $steps steps)"
mkdir -p runs
mpirun=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
for np in $ranks; do
    run=runs/bench-loader-cnn-np$np
    rm -rf "$run"
    "${mpirun[@]}" -np "$np" "$build/bin/dltrain" docs/examples/fashion-cnn.ini \
        train.max_steps="$steps" train.log_every=20 train.progress=lines \
        train.run_dir="$run" >"$run.log" 2>&1 || { cat "$run.log"; exit 1; }
    g=$(sed -n 's/.*"global_batch_size": *\([0-9]*\).*/\1/p' "$run/summary.json")
    awk -F, -v g="$g" -v np="$np" 'NR > 1 {
            k = $1 - prev; prev = $1
            wait += k * $8; step += k * 1e3 * g / $6; n += k
        }
        END {
            printf "%d rank(s), global batch %d: mean step %.2f ms, mean data wait %.4f ms " \
                   "per step (metrics.csv rounds to 0.001 ms)\n", np, g, step / n, wait / n
            printf "data wait: %.4f%% of step time (target: below 2%%)\n", 100 * wait / step
        }' "$run/metrics.csv"
done
