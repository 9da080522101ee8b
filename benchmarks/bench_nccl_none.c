/* bench_allreduce --nccl in a build without CUDA: there is no NCCL; see
 * bench_nccl.h. bench_allreduce stops before it gets here (no GPU), but
 * says so here too. */
#include <stdio.h>

#include "bench_nccl.h"

#define NO_NCCL                                                                                    \
    "this build has no CUDA, so no NCCL (CMake found no CUDA toolkit, or DLTRAIN_CUDA=OFF)"

int bench_raw_nccl_open(bench_raw_nccl_t **out, dl_comm_t *c, dl_err_t *err)
{
    *out = NULL;
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

int bench_raw_nccl_allreduce(bench_raw_nccl_t *r, float *dev_buf, int64_t n, void *stream,
                             dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

void bench_raw_nccl_close(bench_raw_nccl_t *r) {}

void bench_nccl_version(char *out, size_t size)
{
    snprintf(out, size, "no NCCL: %s", NO_NCCL);
}
