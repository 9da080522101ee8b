/* dltrain collectives: how ranks talk. One small interface over the world of
 * ranks; the MPI implementation is comm_mpi.c (an NCCL one joins it for the
 * GPU path). Nothing else in dltrain calls MPI for training traffic.
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

#endif
