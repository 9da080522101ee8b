#!/usr/bin/env bash
# Our collectives layer (dl_comm_allreduce_sum_f32) against raw MPI_Allreduce
# on the same buffer in the same run, nccl-tests style: sizes 8 B to 256 MiB,
# time, algorithm and bus bandwidth of both, and the ratio ours/raw (target:
# within 5% at 1 MiB and above); with --bucket-mb, the buffer in gradient
# buckets against one call too. --model cnn times training steps with the
# gradients in one all-reduce, in buckets, and without any. With --nccl,
# GPU buffers: our NCCL path (dl_comm_nccl_allreduce_sum_f32 +
# dl_comm_nccl_wait) against raw ncclAllReduce, one GPU per rank (a CUDA
# build; one rank per GPU of the node). Figures only: nothing passes or
# fails on time.
#
#   benchmarks/allreduce.sh [-np N] [--max-bytes B] [bench_allreduce options:
#                           --min-bytes B --factor 2|4 --reps N --target-ms MS
#                           --bucket-mb MB --first-bucket-mb MB | --nccl]
#   benchmarks/allreduce.sh [-np N] --model cnn [--batch 64 --steps 10 --reps 15
#                           --threads 1 --bucket-mb 25 --first-bucket-mb 1]
#
# -np: ranks (default 2; more than the cores oversubscribe them, which
# measures the scheduler more than MPI). B: bytes, or with K, M or G; MB:
# MiB. BUILD_DIR (default build/ at the repository root) is where
# bench_allreduce is built.
set -euo pipefail
cd "$(dirname "$0")/.."
np=2
nccl=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    -np|--np) np=$2; shift 2 ;;
    --nccl) nccl=1; args+=("$1"); shift ;;
    -h|--help)
        sed -n '2,22s/^# \{0,1\}//p' "$0"
        exit 0 ;;
    *) args+=("$1"); shift ;;
    esac
done
build=${BUILD_DIR:-build}
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_allreduce >/dev/null
. launch/mpirun-flags.sh
cores=$(nproc)
if [ "$nccl" = 0 ] && [ "$np" -gt "$cores" ]; then
    echo "warning: $np ranks on $cores cores: the ranks share cores (oversubscribed), so" \
         "times include waiting for the CPU" >&2
fi
# shellcheck disable=SC2086 # MPIRUN_FLAGS is a list of flags
exec mpirun $MPIRUN_FLAGS -np "$np" "$build/bin/bench_allreduce" "${args[@]+"${args[@]}"}"
