/* Gradient buckets without MPI:
 * 1. dl_buckets_split: the buckets tile the buffer exactly once, from its
 *    end, in order, with the first bucket's size, then the bucket size, the
 *    rest in the last one; odd sizes, a buffer smaller than the first
 *    bucket, a first bucket larger than the others, sizes under one float;
 *    too many buckets is an error naming the fix.
 * 2. The model's grads_ready hook (models/model.h): over the backward pass
 *    of each preset (fused conv + pool, batch norm, shortcuts, dropout)
 *    `from` never grows and ends at 0, and at every call grads[from..n)
 *    already hold their final values, so a bucket started then sends the
 *    right gradients. */
#include <stdlib.h>
#include <string.h>

#include "collectives/buckets.h"
#include "models/model.h"
#include "models/presets.h"
#include "models/rng.h"

#include "check.h"

/* Split n floats and check the tiling; returns the bucket count. */
static int check_split(int64_t n, int64_t bucket_bytes, int64_t first_bytes, int64_t want_first,
                       int64_t want_size)
{
    dl_err_t err = {0};
    int64_t *s = NULL;
    int k = -1;
    CHECK(dl_buckets_split(n, bucket_bytes, first_bytes, &s, &k, &err) == 0);
    if (n == 0) {
        CHECK(k == 0 && s == NULL);
        return k;
    }
    CHECK(k >= 1 && s != NULL);
    if (k < 1 || !s)
        return 0;
    unsigned char *seen = calloc((size_t)n, 1);
    CHECK(seen != NULL);
    int64_t end = n;
    for (int i = 0; i < k && seen; i++) {
        int64_t len = end - s[i];
        CHECK(s[i] >= 0 && len >= 1); /* starts decrease: bucket order is back to front */
        if (i == 0)
            CHECK(len == (n < want_first ? n : want_first));
        else if (i < k - 1)
            CHECK(len == want_size);
        else
            CHECK(len <= want_size);
        for (int64_t j = s[i]; j < end; j++)
            seen[j]++;
        end = s[i];
    }
    CHECK(end == 0);
    for (int64_t j = 0; seen && j < n; j++)
        if (seen[j] != 1) {
            CHECK(seen[j] == 1);
            break;
        }
    free(seen);
    free(s);
    return k;
}

static void check_splits(void)
{
    const int64_t mib = 1 << 20;
    /* cnn2's 421,642 gradients: the default 1 MiB then 25 MiB gives 2 */
    CHECK(check_split(421642, 25 * mib, mib, mib / 4, 25 * mib / 4) == 2);
    /* the 0.05 MiB buckets after 0.013 MiB of tests/test_buckets.sh */
    CHECK(check_split(421642, (int64_t)(0.05 * mib), (int64_t)(0.013 * mib), 3407, 13107) == 33);
    CHECK(check_split(247766, (int64_t)(0.05 * mib), (int64_t)(0.013 * mib), 3407, 13107) == 20);
    /* exact multiples, and one more float */
    CHECK(check_split(10, 8, 4, 1, 2) == 6);
    CHECK(check_split(11, 8, 4, 1, 2) == 6);
    CHECK(check_split(12, 8, 4, 1, 2) == 7);
    /* a buffer inside the first bucket: one bucket */
    CHECK(check_split(5, 400, 40, 10, 100) == 1);
    CHECK(check_split(10, 400, 40, 10, 100) == 1);
    /* a first bucket larger than the others, or 0: the bucket size */
    CHECK(check_split(1000, 400, 4000, 100, 100) == 10);
    CHECK(check_split(1001, 400, 0, 100, 100) == 11);
    /* sizes under one float: one float */
    CHECK(check_split(7, 3, 1, 1, 1) == 7);
    CHECK(check_split(0, 400, 40, 10, 100) == 0);
    /* more than 2^30 buckets is an error that says what to change */
    dl_err_t err = {0};
    int64_t *s = NULL;
    int k = -1;
    CHECK_EINPUT(dl_buckets_split((int64_t)1 << 31, 4, 4, &s, &k, &err), &err,
                 "into 2147483648 buckets", "make the buckets larger");
    CHECK(s == NULL && k == 0);
}

/* What the hook saw: each call's from and a copy of grads[from..n). */
typedef struct hook_log {
    const dl_model_t *m;
    int calls, bad_order;
    int64_t last_from;
    float *copy[512];
    int64_t from[512];
} hook_log_t;

static int record(void *arg, int64_t from)
{
    hook_log_t *h = arg;
    if (from > h->last_from || from < 0)
        h->bad_order++;
    h->last_from = from;
    if (h->calls < 512) {
        int64_t len = h->m->n_params - from;
        h->copy[h->calls] = malloc((size_t)(len > 0 ? len : 1) * sizeof(float));
        if (h->copy[h->calls])
            memcpy(h->copy[h->calls], h->m->grads + from, (size_t)len * sizeof(float));
        h->from[h->calls] = from;
    }
    h->calls++;
    return 0;
}

static void check_hook(int preset, dl_shape_t in)
{
    dl_layer_spec_t specs[64];
    int n_specs = dl_preset_specs(preset, specs, 64);
    CHECK(n_specs > 0);
    for (int i = 0; i < n_specs; i++)
        if (specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = 10;
    dl_model_t m;
    dl_err_t err = {0};
    const int batch = 3;
    if (dl_model_build(&m, specs, n_specs, in, batch, &err) != 0) {
        fprintf(stderr, "%s: %s\n", dl_preset_names[preset], err.msg);
        CHECK(0);
        return;
    }
    dl_model_init_params(&m, 7);
    dl_rng_t rng;
    dl_rng_seed(&rng, 11, 0);
    int64_t nx = batch * m.in_size, ny = batch * m.out_size;
    float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    CHECK(x && dy);
    for (int64_t i = 0; x && i < nx; i++)
        x[i] = (float)dl_rng_normal(&rng);
    for (int64_t i = 0; dy && i < ny; i++)
        dy[i] = (float)dl_rng_normal(&rng);
    /* grads are overwritten by the pass: start from garbage so a region
     * reported final too early shows */
    for (int64_t i = 0; i < m.n_params; i++)
        m.grads[i] = 1e30f;
    hook_log_t h = {.m = &m, .last_from = m.n_params};
    m.ctx = (dl_model_ctx_t){.training = 1, .seed = 3, .grads_ready = record, .grads_arg = &h};
    CHECK(x && dy && dl_model_forward(&m, x, batch, &err) != NULL);
    CHECK(x && dy && dl_model_backward(&m, dy, batch, &err) == 0);
    CHECK(h.calls >= 1 && h.calls <= 512);
    CHECK(h.bad_order == 0);
    CHECK(h.last_from == 0);
    for (int c = 0; c < h.calls && c < 512; c++) {
        int64_t len = m.n_params - h.from[c];
        if (h.copy[c] && memcmp(h.copy[c], m.grads + h.from[c], (size_t)len * sizeof(float))) {
            fprintf(stderr, "%s: call %d (from %lld): gradients changed after the call\n",
                    dl_preset_names[preset], c, (long long)h.from[c]);
            CHECK(0);
        }
        free(h.copy[c]);
    }
    free(x);
    free(dy);
    dl_model_free(&m);
}

int main(void)
{
    check_splits();
    for (int p = 1; dl_preset_names[p]; p++)
        check_hook(p, (dl_shape_t){1, 28, 28});
    return CHECK_DONE();
}
