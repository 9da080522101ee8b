/* dltrain collectives: how ranks talk. One small interface over the world of
 * ranks; the MPI implementation is comm_mpi.c, and comm_nccl.c adds NCCL
 * for GPU memory (the last section). Nothing else in dltrain calls MPI or
 * NCCL for training traffic.
 * All calls are collective: every rank calls them in the same order. */
#ifndef DL_COMM_H
#define DL_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/error.h"

typedef struct dl_comm dl_comm_t; /* opaque */

/* A communicator over all ranks of the job. MPI must be initialised. */
int dl_comm_create_world(dl_comm_t **out, dl_err_t *err);
void dl_comm_free(dl_comm_t *c);
int dl_comm_rank(const dl_comm_t *c);
int dl_comm_size(const dl_comm_t *c);

/* The watchdog. With timeout_s > 0, a rank that waits in a collective
 * below for longer than timeout_s ends the whole job with exit status 3 and
 * a message naming `what` (e.g. "step 51"), the collective and the ranks
 * that did not arrive: ranks that wait tell rank 0 so with a heartbeat, and
 * rank 0 names those that did not. If rank 0 itself does not arrive, the
 * other ranks end the job a few seconds later, naming rank 0. A collective
 * that fails in MPI also ends the job with status 3: the other ranks may be
 * blocked in it and could not be told otherwise. timeout_s = 0 turns the
 * watchdog off (collectives then block without a limit). Called by the
 * thread that calls the collectives. */
void dl_comm_watch(dl_comm_t *c, double timeout_s, const char *what, ...)
    __attribute__((format(printf, 3, 4)));
/* 1 if the watchdog can work: it needs MPI_THREAD_MULTIPLE (it runs in a
 * thread of its own); always 1 on one rank, where nobody can hang. */
int dl_comm_watchdog_running(const dl_comm_t *c);

/* In-place sums over all ranks. Counts may exceed 2^31. */
int dl_comm_allreduce_sum_f32(dl_comm_t *c, float *buf, int64_t n, dl_err_t *err);
int dl_comm_allreduce_sum_f64(dl_comm_t *c, double *buf, int64_t n, dl_err_t *err);
/* Non-blocking in-place sum (MPI_Iallreduce): starts the sum of buf[0..n-1]
 * over all ranks and returns without waiting; it counts as a collective
 * (every rank starts the same ones in the same order) and completes in
 * dl_comm_wait_all, before which buf must be neither read nor written.
 * dl_comm_progress lets started sums advance: MPI moves them on only inside
 * its calls. Used for the gradient buckets (buckets.h). Open MPI 4.1 sums
 * in place as a binomial reduce to rank 0 then a broadcast, whatever the
 * size, unless OMPI_MCA_coll_libnbc_iallreduce_algorithm chooses another
 * algorithm (docs/cluster.md, "Bucket sizes"). */
int dl_comm_iallreduce_sum_f32(dl_comm_t *c, float *buf, int64_t n, dl_err_t *err);
int dl_comm_progress(dl_comm_t *c, dl_err_t *err);
/* Wait until every started sum has completed. The watchdog watches this
 * wait as it watches a blocking all-reduce. */
int dl_comm_wait_all(dl_comm_t *c, dl_err_t *err);
/* In-place minimum over all ranks of n int64 values. */
int dl_comm_allreduce_min_i64(dl_comm_t *c, int64_t *buf, int n, dl_err_t *err);
/* Copy bytes from root to every rank. */
int dl_comm_broadcast(dl_comm_t *c, void *buf, int64_t bytes, int root, dl_err_t *err);
int dl_comm_barrier(dl_comm_t *c, dl_err_t *err);
/* End every rank of the job with status: for failures after which the other
 * ranks may be blocked in a collective and could not be told otherwise. */
void dl_comm_abort(int status);

/* Gather: root's recv gets every rank's `bytes` bytes of send, rank after
 * rank (size x bytes in all); recv is used on root only (may be NULL
 * elsewhere). For state that differs per rank, such as batch-norm statistics
 * in checkpoints. */
int dl_comm_gather(dl_comm_t *c, const void *send, void *recv, int64_t bytes, int root,
                   dl_err_t *err);
/* Scatter, the reverse: every rank's recv gets its own `bytes` bytes of
 * root's send (size x bytes, rank after rank; used on root only). */
int dl_comm_scatter(dl_comm_t *c, const void *send, void *recv, int64_t bytes, int root,
                    dl_err_t *err);

/* ---- NCCL: collectives on GPU memory (the GPU path) ----------------------
 * An NCCL communicator over the same ranks, beside the MPI one, which stays
 * for everything else (CPU buffers, agreement, checkpoints). One GPU per
 * rank. The communicator is non-blocking (ncclConfig_t.blocking = 0): the
 * calling thread polls NCCL and the stream, so the watchdog above watches
 * NCCL operations as it watches MPI ones (the same message, the same
 * status 3) and, before it ends the job, aborts the NCCL communicator
 * (ncclCommAbort) so that a collective hung in the GPU cannot keep the
 * processes alive. A failure inside NCCL ends the job with status 3 too.
 * dl_comm_free finalizes and destroys the NCCL communicator on every rank
 * (aborts it when that fails or takes longer than the watchdog's timeout,
 * or 60 s with the watchdog off). comm_nccl.c implements these; a build
 * without CUDA links comm_nccl_none.c, whose calls fail with DL_EINPUT and
 * say so. */

/* Create the NCCL communicator of c: collective, after each rank made its
 * GPU current (dl_cuda_use_device, models/device.h). Rank 0 makes NCCL's
 * unique id and broadcasts it over c. Fails on every rank, DL_EINPUT, when
 * a rank has no GPU or this build has no CUDA. */
int dl_comm_nccl_init(dl_comm_t *c, dl_err_t *err);
/* 1 once dl_comm_nccl_init has succeeded on c. */
int dl_comm_nccl_enabled(const dl_comm_t *c);
/* Queue an in-place sum over all ranks of n floats of GPU memory on stream
 * (a cudaStream_t; NULL: the default stream). Returns once it is queued;
 * dl_comm_nccl_wait waits for it. Counts may exceed 2^31. */
int dl_comm_nccl_allreduce_sum_f32(dl_comm_t *c, float *dev_buf, int64_t n, void *stream,
                                   dl_err_t *err);
/* Wait until everything queued on stream has run (collective: the
 * watchdog watches it as an NCCL all-reduce). */
int dl_comm_nccl_wait(dl_comm_t *c, void *stream, dl_err_t *err);
/* A CUDA stream of c's own (made on the first call, destroyed with c), for
 * sums that run beside the compute stream: the gradient buckets. */
int dl_comm_nccl_stream(dl_comm_t *c, void **stream, dl_err_t *err);
/* Make what is queued on stream from now on wait for everything queued on
 * `after` so far (a CUDA event; the host does not wait). */
int dl_comm_nccl_after(dl_comm_t *c, void *stream, void *after, dl_err_t *err);

#endif
