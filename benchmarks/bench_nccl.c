/* Raw NCCL for bench_allreduce --nccl; see bench_nccl.h. */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_nccl.h"

struct bench_raw_nccl {
    ncclComm_t comm;
};

static int nccl_fail(dl_err_t *err, ncclResult_t r, const char *call)
{
    const char *last = ncclGetLastError(NULL);
    return DL_ERR(err, DL_ELIB, "%s failed: %s%s%s", call, ncclGetErrorString(r),
                  last && last[0] ? ": " : "", last ? last : "");
}

int bench_raw_nccl_open(bench_raw_nccl_t **out, dl_comm_t *c, dl_err_t *err)
{
    *out = NULL;
    struct {
        int64_t status;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    if (dl_comm_rank(c) == 0)
        msg.status = (int64_t)ncclGetUniqueId(&msg.id);
    int rc = dl_comm_broadcast(c, &msg, (int64_t)sizeof msg, 0, err);
    if (rc)
        return rc;
    if (msg.status != ncclSuccess)
        return nccl_fail(err, (ncclResult_t)msg.status, "ncclGetUniqueId (rank 0)");
    bench_raw_nccl_t *r = dl_calloc(1, sizeof *r, err);
    if (!r)
        return DL_ENOMEM;
    ncclResult_t nr = ncclCommInitRank(&r->comm, dl_comm_size(c), msg.id, dl_comm_rank(c));
    if (nr != ncclSuccess) {
        free(r);
        return nccl_fail(err, nr, "ncclCommInitRank");
    }
    *out = r;
    return 0;
}

int bench_raw_nccl_allreduce(bench_raw_nccl_t *r, float *dev_buf, int64_t n, void *stream,
                             dl_err_t *err)
{
    ncclResult_t nr = ncclAllReduce(dev_buf, dev_buf, (size_t)n, ncclFloat32, ncclSum, r->comm,
                                    (cudaStream_t)stream);
    return nr == ncclSuccess ? 0 : nccl_fail(err, nr, "ncclAllReduce");
}

void bench_raw_nccl_close(bench_raw_nccl_t *r)
{
    if (!r)
        return;
    ncclCommDestroy(r->comm);
    free(r);
}

void bench_nccl_version(char *out, size_t size)
{
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess)
        snprintf(out, size, "NCCL (version unknown)");
    else if (v >= 10000) /* NCCL_VERSION: X * 10000 + Y * 100 + Z from 2.9 on */
        snprintf(out, size, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    else
        snprintf(out, size, "NCCL %d.%d.%d", v / 1000, v / 100 % 10, v % 100);
}
