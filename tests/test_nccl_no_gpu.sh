#!/bin/sh
# The NCCL path where no GPU is visible (CTest sets CUDA_VISIBLE_DEVICES=-1),
# in every build (no CUDA: collectives/comm_nccl_none.c; CUDA:
# comm_nccl.c): test_nccl --no-gpu checks the API's errors, and
# bench_allreduce --nccl stops with status 2 and one sentence saying why,
# without a crash. Environment from CTest: TEST_NCCL, BENCH_ALLREDUCE.
. "$SRC/tests/lib.sh"
rm -rf nccl_no_gpu && mkdir -p nccl_no_gpu && cd nccl_no_gpu || exit 1
"$TEST_NCCL" --no-gpu >api.log 2>&1
status=$?
cat api.log
expect_status 0 "$status" "test_nccl --no-gpu"
"$BENCH_ALLREDUCE" --nccl --max-bytes 64 >bench.log 2>&1
status=$?
expect_status 2 "$status" "bench_allreduce --nccl without a GPU"
expect_in bench.log "bench_allreduce: error: bench_allreduce --nccl needs a GPU for each rank, and rank 0 has none: " \
    "the benchmark's message"
grep -q "MPI_ABORT\|Segmentation\|signal" bench.log && { fail "the benchmark did not stop cleanly:"; cat bench.log >&2; }
finish
