#!/bin/sh
# The watchdog over an NCCL all-reduce that hangs in the GPU (one rank, GPU
# 0): test_nccl --stall queues the all-reduce behind a kernel that runs for
# 60 s and waits with a watchdog timeout of 2 s. The process must end with
# status 3 and the watchdog's message long before the kernel would have
# finished, the NCCL communicator aborted on the way (ncclCommAbort, or a
# note that it did not finish within 10 s). Exits 77 (skipped) without a
# GPU. Environment from CTest: TEST_NCCL.
. "$SRC/tests/lib.sh"
rm -rf nccl_watchdog && mkdir -p nccl_watchdog && cd nccl_watchdog || exit 1
t0=$(date +%s)
"$TEST_NCCL" --stall >stall.log 2>&1
status=$?
took=$(($(date +%s) - t0))
if [ $status = 77 ]; then
    cat stall.log
    exit 77
fi
cat stall.log
expect_status 3 "$status" "an all-reduce stuck behind a 60 s kernel"
expect_in stall.log "watchdog: stall test: the NCCL all-reduce has not completed in 2 s" \
    "the watchdog's message"
[ "$took" -le 30 ] || fail "the process took $took s to end (limit 30; the kernel runs 60 s)"
if grep -q "could not be aborted" stall.log; then
    echo "note: ncclCommAbort did not return within 10 s; the process ended without it"
fi
finish
