/* Keep a GPU stream busy, for test_nccl --stall: a kernel that runs for
 * `seconds` stands in for a collective whose peers never come. 0, or -1
 * when the kernel could not start (always, in a build without CUDA:
 * nccl_stall_none.c). */
#ifndef DL_TEST_NCCL_STALL_H
#define DL_TEST_NCCL_STALL_H

#ifdef __cplusplus
extern "C" {
#endif

int test_stall_stream(void *stream, double seconds);

#ifdef __cplusplus
}
#endif

#endif
