#!/usr/bin/env bash
# Times MLP training steps at batch 128 on one rank and one BLAS thread and
# prints samples/s and achieved GFLOP/s next to the machine's sgemm peak.
# Figures only: nothing passes or fails on time.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target bench_mlp >/dev/null
build/bin/bench_mlp --batch 128 --threads 1 --steps 100 --reps 7 "$@"
