/* See nccl_stall.h. */
#include <cuda_runtime.h>
#include <stdint.h>

#include "nccl_stall.h"

/* One thread that sleeps until ns nanoseconds of the GPU's global timer
 * have passed. */
static __global__ void stall_kernel(uint64_t ns)
{
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        __nanosleep(1000000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}

extern "C" int test_stall_stream(void *stream, double seconds)
{
    stall_kernel<<<1, 1, 0, (cudaStream_t)stream>>>((uint64_t)(seconds * 1e9));
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
