/* See nccl_stall.h: no GPU kernels in a build without CUDA. */
#include "nccl_stall.h"

int test_stall_stream(void *stream, double seconds)
{
    return -1;
}
