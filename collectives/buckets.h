/* Gradient buckets: the flat gradient buffer summed over all ranks in
 * fixed pieces, each started (a non-blocking all-reduce) as soon as the
 * backward pass has made its gradients final, so that communication
 * overlaps the rest of the backward pass, as PyTorch DDP's buckets do.
 *
 * The backward pass fills the buffer from its end (the last layer's
 * gradients lie there), so the buffer is split from the end: bucket 0 is
 * the last first_bytes of it, each next bucket the bucket_bytes before, and
 * the last bucket, at the start of the buffer, what is left. The split
 * depends on the sizes only, never on the layers, so every rank has the same
 * buckets in the same order; the layers decide only when each one starts. */
#ifndef DL_BUCKETS_H
#define DL_BUCKETS_H

#include <stdint.h>

#include "comm.h"

typedef struct dl_buckets dl_buckets_t; /* opaque */

/* The split alone, for n floats: *count buckets, bucket k covering
 * [(*starts)[k], end) where end is n for bucket 0 and (*starts)[k-1] after;
 * starts decrease to 0. Each bucket holds bucket_bytes / 4 floats (at least
 * one), bucket 0 first_bytes / 4 (first_bytes <= 0 or above bucket_bytes:
 * bucket_bytes), the last one what is left. n = 0 gives no buckets. *starts
 * is malloc'd (NULL when *count is 0). */
int dl_buckets_split(int64_t n, int64_t bucket_bytes, int64_t first_bytes, int64_t **starts,
                     int *count, dl_err_t *err);

/* Buckets over buf[0..n-1] (the gradient buffer), split as above, whose
 * sums go through c. */
int dl_buckets_create(dl_buckets_t **out, dl_comm_t *c, float *buf, int64_t n, int64_t bucket_bytes,
                      int64_t first_bytes, dl_err_t *err);
/* The same over GPU memory (the GPU path): each bucket is summed with NCCL
 * on the communicator's side stream (dl_comm_nccl_stream), ordered after
 * the work queued on compute so far, i.e. the backward pass that made its
 * gradients, so the sums run while the rest of the backward pass computes.
 * c needs NCCL (dl_comm_nccl_init). */
int dl_buckets_create_nccl(dl_buckets_t **out, dl_comm_t *c, float *dev_buf, int64_t n,
                           int64_t bucket_bytes, int64_t first_bytes, void *compute, dl_err_t *err);
int dl_buckets_count(const dl_buckets_t *b);
/* During the backward pass: buf[from..n-1] is final. Starts the sums of the
 * buckets that now lie inside it, in bucket order, and lets the started ones
 * progress. Collective (every rank calls it with the same from sequence or
 * at least starts the same buckets in the same order). */
int dl_buckets_ready(dl_buckets_t *b, int64_t from, dl_err_t *err);
/* After the backward pass: starts the buckets not started yet and waits
 * until every bucket is summed; the next pass starts from bucket 0 again. */
int dl_buckets_finish(dl_buckets_t *b, dl_err_t *err);
void dl_buckets_free(dl_buckets_t *b);

#endif
