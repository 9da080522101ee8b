/* The raw side of bench_allreduce --nccl: NCCL as a plain user calls it, a
 * communicator with NCCL's default (blocking) configuration of its own,
 * beside dltrain's, and ncclAllReduce on it. bench_nccl.c in builds with
 * CUDA, bench_nccl_none.c (which says there is no NCCL) without. */
#ifndef DL_BENCH_NCCL_H
#define DL_BENCH_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "collectives/comm.h"

typedef struct bench_raw_nccl bench_raw_nccl_t;

/* Create it over c's ranks (collective; each rank's GPU current): rank 0's
 * unique id goes to the others with dl_comm_broadcast. */
int bench_raw_nccl_open(bench_raw_nccl_t **out, dl_comm_t *c, dl_err_t *err);
/* Queue ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum) on stream (a
 * cudaStream_t); the caller waits for the stream. */
int bench_raw_nccl_allreduce(bench_raw_nccl_t *r, float *dev_buf, int64_t n, void *stream,
                             dl_err_t *err);
void bench_raw_nccl_close(bench_raw_nccl_t *r);
/* "NCCL 2.28.9" (the library linked), or why there is none. */
void bench_nccl_version(char *out, size_t size);

#endif
