#!/usr/bin/env bash
# Times MLP training steps at batch 128 on one rank and one BLAS thread and
# prints samples/s and achieved GFLOP/s next to the machine's sgemm peak.
# Figures only: nothing passes or fails on time. Extra arguments go to
# bench_train (benchmarks/compare_torch.sh compares all models with PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_train >/dev/null
"$build/bin/bench_train" --model mlp --batch 128 --threads 1 --steps 100 --reps 7 "$@"
