/* Gradient buckets over the collectives interface; see buckets.h. */
#include <stdlib.h>

#include "buckets.h"

struct dl_buckets {
    dl_comm_t *comm;
    float *buf;
    int64_t n;
    int64_t *starts; /* bucket k covers [starts[k], k ? starts[k-1] : n) */
    int count;
    int started; /* buckets started in this pass: 0..started-1 */
    /* GPU path: NCCL on the side stream, after the compute stream */
    void *side, *compute;
};

int dl_buckets_split(int64_t n, int64_t bucket_bytes, int64_t first_bytes, int64_t **starts,
                     int *count, dl_err_t *err)
{
    *starts = NULL;
    *count = 0;
    int64_t size = bucket_bytes / (int64_t)sizeof(float);
    if (size < 1)
        size = 1;
    int64_t first =
        first_bytes > 0 && first_bytes < bucket_bytes ? first_bytes / (int64_t)sizeof(float) : size;
    if (first < 1)
        first = 1;
    if (n <= 0)
        return 0;
    int64_t k = n <= first ? 1 : 1 + (n - first + size - 1) / size;
    if (k > 1 << 30)
        return DL_ERR(err, DL_EINPUT,
                      "gradient buckets of %lld bytes split %lld gradients into %lld buckets; "
                      "make the buckets larger",
                      (long long)bucket_bytes, (long long)n, (long long)k);
    int64_t *s = dl_calloc((size_t)k, sizeof *s, err);
    if (!s)
        return DL_ENOMEM;
    int64_t end = n;
    for (int64_t i = 0; i < k; i++) {
        int64_t len = i == 0 ? first : size;
        s[i] = end > len ? end - len : 0;
        end = s[i];
    }
    *starts = s;
    *count = (int)k;
    return 0;
}

int dl_buckets_create(dl_buckets_t **out, dl_comm_t *c, float *buf, int64_t n, int64_t bucket_bytes,
                      int64_t first_bytes, dl_err_t *err)
{
    dl_buckets_t *b = dl_calloc(1, sizeof *b, err);
    if (!b)
        return DL_ENOMEM;
    *b = (dl_buckets_t){.comm = c, .buf = buf, .n = n};
    int rc = dl_buckets_split(n, bucket_bytes, first_bytes, &b->starts, &b->count, err);
    if (rc) {
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int dl_buckets_create_nccl(dl_buckets_t **out, dl_comm_t *c, float *dev_buf, int64_t n,
                           int64_t bucket_bytes, int64_t first_bytes, void *compute, dl_err_t *err)
{
    void *side = NULL;
    int rc = dl_comm_nccl_stream(c, &side, err);
    if (!rc)
        rc = dl_buckets_create(out, c, dev_buf, n, bucket_bytes, first_bytes, err);
    if (rc)
        return rc;
    (*out)->side = side;
    (*out)->compute = compute;
    return 0;
}

int dl_buckets_count(const dl_buckets_t *b)
{
    return b->count;
}

int dl_buckets_ready(dl_buckets_t *b, int64_t from, dl_err_t *err)
{
    int rc = 0;
    if (b->side && b->started < b->count && b->starts[b->started] >= from)
        rc = dl_comm_nccl_after(b->comm, b->side, b->compute, err); /* once for these buckets */
    for (; !rc && b->started < b->count && b->starts[b->started] >= from; b->started++) {
        int k = b->started;
        int64_t end = k ? b->starts[k - 1] : b->n;
        float *at = b->buf + b->starts[k];
        rc = b->side ? dl_comm_nccl_allreduce_sum_f32(b->comm, at, end - b->starts[k], b->side, err)
                     : dl_comm_iallreduce_sum_f32(b->comm, at, end - b->starts[k], err);
    }
    /* Open MPI moves started sums on only inside MPI calls: this is one
     * (NCCL's run on the GPU by themselves). */
    return rc || b->side ? rc : dl_comm_progress(b->comm, err);
}

int dl_buckets_finish(dl_buckets_t *b, dl_err_t *err)
{
    int rc = dl_buckets_ready(b, 0, err);
    if (!rc)
        rc = b->side ? dl_comm_nccl_wait(b->comm, b->side, err) : dl_comm_wait_all(b->comm, err);
    b->started = 0;
    return rc;
}

void dl_buckets_free(dl_buckets_t *b)
{
    if (!b)
        return;
    free(b->starts);
    free(b);
}
