/* The background loader returns exactly what a direct read returns, in the
 * order requested, at every depth, as stored (dl_loader_take) and normalised
 * (dl_loader_next); refuses to over-commit and samples larger than its
 * slots; keeps a batch taken intact until the next take while it reads
 * ahead; reports read errors on the request they belong to; and stops
 * cleanly with requests outstanding. Usage: test_loader DATASET.h5 */
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "io/loader.h"
#include "models/rng.h"

#define BATCH 37

/* ds is read by the loader's thread, direct by this one: a dataset handle is
 * for one thread at a time. */
static void test_depth(dl_dataset_t *ds, dl_dataset_t *direct, int depth)
{
    const dl_dataset_info_t *info = dl_dataset_info(ds);
    int64_t size = (int64_t)info->c * info->h * info->w;
    dl_loader_t *l = NULL;
    dl_err_t err = {0};
    CHECK(dl_loader_start(&l, depth, BATCH, size, &err) == 0);
    dl_rng_t rng;
    dl_rng_seed(&rng, 7, (uint64_t)depth);
    enum { ROUNDS = 12 };
    int64_t idx[ROUNDS][BATCH];
    for (int r = 0; r < ROUNDS; r++)
        for (int j = 0; j < BATCH; j++)
            idx[r][j] = (int64_t)dl_rng_below(&rng, (uint64_t)info->n);
    float *want = malloc(sizeof(float) * BATCH * (size_t)size);
    int32_t want_y[BATCH];
    int asked = 0;
    for (int r = 0; r < ROUNDS; r++) {
        while (asked < ROUNDS && asked - r < depth) {
            CHECK(dl_loader_request(l, ds, idx[asked], asked % 2 ? BATCH : BATCH - 5, &err) == 0);
            asked++;
        }
        /* One more than depth outstanding is refused, not waited for. */
        if (asked < ROUNDS)
            CHECK(dl_loader_request(l, ds, idx[asked], BATCH, &err) == DL_EINTERNAL);
        float *x;
        int32_t *y;
        int n = 0;
        double waited = -1;
        CHECK(dl_loader_next(l, &x, &y, &n, &waited, &err) == 0);
        CHECK(n == (r % 2 ? BATCH : BATCH - 5) && waited >= 0.0);
        CHECK(dl_dataset_read(direct, idx[r], n, want, want_y, &err) == 0);
        CHECK(memcmp(x, want, sizeof(float) * (size_t)n * (size_t)size) == 0);
        CHECK(memcmp(y, want_y, sizeof(int32_t) * (size_t)n) == 0);
    }
    float *x;
    int32_t *y;
    int n;
    CHECK(dl_loader_next(l, &x, &y, &n, NULL, &err) == DL_EINTERNAL); /* nothing requested */
    /* A bad request fails on its own turn, and the next one still works. */
    int64_t bad[1] = {info->n + 5}, good[1] = {3};
    CHECK(dl_loader_request(l, ds, bad, 1, &err) == 0);
    if (depth > 1)
        CHECK(dl_loader_request(l, ds, good, 1, &err) == 0);
    CHECK(dl_loader_next(l, &x, &y, &n, NULL, &err) == DL_EINTERNAL);
    CHECK_CONTAINS(err.msg, "outside");
    if (depth > 1)
        CHECK(dl_loader_next(l, &x, &y, &n, NULL, &err) == 0 && n == 1);
    /* Stopping with requests outstanding. */
    CHECK(dl_loader_request(l, ds, good, 1, &err) == 0);
    dl_loader_stop(l);
    free(want);
}

/* Batches as stored: the bytes and labels of dl_dataset_read_stored, and
 * the dataset they came from. */
static void test_take(dl_dataset_t *ds, dl_dataset_t *direct)
{
    int64_t bytes = dl_dataset_sample_bytes(ds);
    dl_loader_t *l = NULL;
    dl_err_t err = {0};
    int64_t idx[BATCH];
    for (int j = 0; j < BATCH; j++)
        idx[j] = (j * 7919) % dl_dataset_info(ds)->n;
    CHECK(dl_loader_start(&l, 2, BATCH, bytes - 1, &err) == 0);
    CHECK(dl_loader_request(l, ds, idx, BATCH, &err) == DL_EINTERNAL); /* too large */
    dl_loader_stop(l);
    CHECK(dl_loader_start(&l, 2, BATCH, bytes, &err) == 0);
    uint8_t *want = malloc((size_t)BATCH * (size_t)bytes);
    int32_t want_y[BATCH];
    for (int r = 0; r < 3; r++) {
        CHECK(dl_loader_request(l, ds, idx, BATCH - r, &err) == 0);
        dl_loader_batch_t b;
        CHECK(dl_loader_take(l, &b, NULL, &err) == 0);
        CHECK(b.ds == ds && b.n == BATCH - r);
        CHECK(dl_dataset_read_stored(direct, idx, b.n, want, want_y, &err) == 0);
        CHECK(memcmp(b.x, want, (size_t)b.n * (size_t)bytes) == 0);
        CHECK(memcmp(b.y, want_y, sizeof(int32_t) * (size_t)b.n) == 0);
    }
    dl_loader_stop(l);
    free(want);
}

/* The batch taken last stays as it was while the I/O thread reads the
 * requests made after it, however many are outstanding (the thread reuses
 * the data slots freed last, not in turn): the consumer alternates between
 * keeping one and keeping all `depth` requests outstanding, and checks each
 * batch held against a direct read after the thread had 20 ms to read
 * everything requested after it. (A thread slower than that leaves the check
 * weaker, never wrong.) */
static void test_held(dl_dataset_t *ds, dl_dataset_t *direct, int depth)
{
    int64_t bytes = dl_dataset_sample_bytes(ds), n = dl_dataset_info(ds)->n;
    dl_loader_t *l = NULL;
    dl_err_t err = {0};
    CHECK(dl_loader_start(&l, depth, BATCH, bytes, &err) == 0);
    enum { ROUNDS = 24 };
    static int64_t idx[ROUNDS][BATCH];
    for (int r = 0; r < ROUNDS; r++)
        for (int j = 0; j < BATCH; j++)
            idx[r][j] = ((int64_t)r * 104729 + (int64_t)j * 7919) % n;
    uint8_t *want = malloc((size_t)BATCH * (size_t)bytes);
    int32_t want_y[BATCH];
    int asked = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (asked == r)
            CHECK(dl_loader_request(l, ds, idx[asked++], BATCH, &err) == 0);
        dl_loader_batch_t b;
        CHECK(dl_loader_take(l, &b, NULL, &err) == 0);
        int keep = (r / 3) % 2 ? depth : 1; /* outstanding while b is held */
        while (asked < ROUNDS && asked - (r + 1) < keep)
            CHECK(dl_loader_request(l, ds, idx[asked++], BATCH, &err) == 0);
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
        CHECK(dl_dataset_read_stored(direct, idx[r], BATCH, want, want_y, &err) == 0);
        CHECK(b.n == BATCH && memcmp(b.x, want, (size_t)BATCH * (size_t)bytes) == 0);
        CHECK(memcmp(b.y, want_y, sizeof want_y) == 0);
    }
    dl_loader_stop(l);
    free(want);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_loader DATASET.h5\n");
        return 2;
    }
    dl_dataset_t *ds = NULL, *direct = NULL;
    dl_err_t err = {0};
    if (dl_dataset_open(argv[1], &ds, &err) || dl_dataset_open(argv[1], &direct, &err)) {
        fprintf(stderr, "test_loader: %s\n", err.msg);
        return 1;
    }
    for (int depth = 1; depth <= 4; depth++)
        test_depth(ds, direct, depth);
    test_take(ds, direct);
    for (int depth = 1; depth <= 4; depth += 3)
        test_held(ds, direct, depth);
    dl_dataset_close(ds);
    dl_dataset_close(direct);
    return CHECK_DONE();
}
