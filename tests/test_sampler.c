/* The sample order (io/sampler.h), for each order: on 1, 2, 3 and 4 ranks
 * with the same global batch, every epoch covers each sample at most once
 * and all but N mod G of them, every rank takes the same steps, the ranks'
 * parts of a global batch put together are the 1-rank batch, and epochs
 * differ. N = 1003 does not divide by the global batch 12, and the stream
 * order reads uneven shards. A data position saved at any step and
 * restored in a fresh sampler (also on another number of ranks) gives the
 * same batches from there on. */
#include <stdlib.h>

#include "io/sampler.h"

#include "check.h"

#define N 1003
#define G 12
#define EPOCHS 3

static const int64_t shards[] = {400, 3, 0, 250, 337, 13}; /* sum N */

static dl_sampler_cfg_t cfg_for(dl_order_t order, int rank, int world)
{
    return (dl_sampler_cfg_t){.n = N,
                              .global_batch = G,
                              .rank = rank,
                              .world = world,
                              .seed = 5,
                              .order = order,
                              .block = 16,
                              .buffer = 40,
                              .shard_sizes = shards,
                              .n_shards = (int)(sizeof shards / sizeof *shards)};
}

static void check_coverage(dl_order_t order)
{
    dl_err_t err = {0};
    dl_sampler_t one;
    dl_sampler_cfg_t c1 = cfg_for(order, 0, 1);
    CHECK(dl_sampler_init(&one, &c1, &err) == 0);
    CHECK(one.steps_per_epoch == N / G);
    static int64_t first_epoch[N - N % G], epoch_order[N - N % G];
    for (int world = 1; world <= 4; world++) {
        dl_sampler_t s[4];
        for (int r = 0; r < world; r++) {
            dl_sampler_cfg_t c = cfg_for(order, r, world);
            CHECK(dl_sampler_init(&s[r], &c, &err) == 0);
            CHECK(s[r].steps_per_epoch == N / G); /* the same steps on every rank */
        }
        for (int e = 0; e < EPOCHS; e++) {
            static int seen[N];
            memset(seen, 0, sizeof seen);
            for (int64_t k = 0; k < one.steps_per_epoch; k++) {
                int64_t step = e * one.steps_per_epoch + k;
                const int64_t *whole = dl_sampler_batch(&one, step, NULL);
                memcpy(epoch_order + k * G, whole, G * sizeof *whole);
                for (int r = 0; r < world; r++) {
                    int64_t pos;
                    const int64_t *part = dl_sampler_batch(&s[r], step, &pos);
                    CHECK(pos == k * G + r * (G / world));
                    CHECK(pos == dl_sampler_pos(&s[r], step));
                    for (int j = 0; j < G / world; j++) {
                        CHECK(part[j] == epoch_order[k * G + r * (G / world) + j]);
                        CHECK(part[j] >= 0 && part[j] < N);
                        if (part[j] >= 0 && part[j] < N)
                            seen[part[j]]++;
                    }
                }
            }
            int covered = 0, twice = 0;
            for (int i = 0; i < N; i++) {
                covered += seen[i] > 0;
                twice += seen[i] > 1;
            }
            CHECK(twice == 0);
            CHECK(covered == N - N % G);
            if (world == 1 && e == 0)
                memcpy(first_epoch, epoch_order, sizeof first_epoch);
            if (e > 0) /* a new order every epoch */
                CHECK(memcmp(first_epoch, epoch_order, sizeof first_epoch) != 0);
        }
        for (int r = 0; r < world; r++)
            dl_sampler_free(&s[r]);
    }
    dl_sampler_free(&one);
}

/* Save the position at step k of a run on `world` ranks, restore it in a
 * fresh 1-rank sampler and a fresh 3-rank one: the following batches are
 * the ones the uninterrupted run sees. */
static void check_resume(dl_order_t order)
{
    dl_err_t err = {0};
    int64_t steps = N / G;
    for (int64_t k = 0; k < 2 * steps; k += 13) {
        dl_sampler_t run, fresh, part;
        dl_sampler_cfg_t c = cfg_for(order, 0, 1), cp = cfg_for(order, 2, 3);
        CHECK(dl_sampler_init(&run, &c, &err) == 0);
        for (int64_t i = 0; i < k; i++) /* the run so far */
            (void)dl_sampler_batch(&run, i, NULL);
        dl_data_pos_t p = dl_sampler_position(&run, k);
        CHECK(p.epoch == k / steps && p.offset == k % steps * G && p.seed == 5);
        CHECK(dl_sampler_init(&fresh, &c, &err) == 0);
        CHECK(dl_sampler_init(&part, &cp, &err) == 0);
        int64_t at = -1, at3 = -1;
        CHECK(dl_sampler_resume_step(&fresh, p, &at, &err) == 0 && at == k);
        CHECK(dl_sampler_resume_step(&part, p, &at3, &err) == 0 && at3 == k);
        for (int64_t i = k; i < k + 5; i++) {
            int64_t want[G];
            memcpy(want, dl_sampler_batch(&run, i, NULL), sizeof want);
            CHECK(memcmp(dl_sampler_batch(&fresh, i, NULL), want, sizeof want) == 0);
            CHECK(memcmp(dl_sampler_batch(&part, i, NULL), want + 2 * (G / 3),
                         G / 3 * sizeof *want) == 0);
        }
        /* Another seed or a global batch that does not fit is refused. */
        dl_data_pos_t q = p;
        q.seed = 6;
        CHECK_EINPUT(dl_sampler_resume_step(&fresh, q, &at, &err), &err, "seed 6", "seed 5");
        q = p;
        q.offset += 4;
        CHECK_EINPUT(dl_sampler_resume_step(&fresh, q, &at, &err), &err, "global batch 12",
                     "boundary");
        dl_sampler_free(&run);
        dl_sampler_free(&fresh);
        dl_sampler_free(&part);
    }
}

int main(void)
{
    dl_err_t err = {0};
    check_coverage(DL_ORDER_PERMUTATION);
    check_coverage(DL_ORDER_STREAM);
    check_resume(DL_ORDER_PERMUTATION);
    check_resume(DL_ORDER_STREAM);
    check_resume(DL_ORDER_FILE);

    /* File order. */
    dl_sampler_t fo;
    dl_sampler_cfg_t c = cfg_for(DL_ORDER_FILE, 1, 2);
    CHECK(dl_sampler_init(&fo, &c, &err) == 0);
    const int64_t *b = dl_sampler_batch(&fo, N / G + 3, NULL);
    for (int j = 0; j < G / 2; j++)
        CHECK(b[j] == 3 * G + G / 2 + j);
    dl_sampler_free(&fo);

    /* Stream order with a one-entry buffer is pure block order: runs of
     * `block` consecutive samples within a shard. And its memory is the
     * buffer and one shard's blocks, not N. */
    c = cfg_for(DL_ORDER_STREAM, 0, 1);
    c.buffer = 1;
    CHECK(dl_sampler_init(&fo, &c, &err) == 0);
    b = dl_sampler_batch(&fo, 0, NULL);
    int runs = 0;
    for (int j = 1; j < G; j++)
        runs += b[j] == b[j - 1] + 1;
    CHECK(runs >= G - 3); /* at most two block or shard boundaries in 12 samples */
    dl_sampler_free(&fo);
    c.buffer = 40;
    dl_sampler_cfg_t cperm = cfg_for(DL_ORDER_PERMUTATION, 0, 1);
    CHECK(dl_sampler_bytes(&c) < 1000 && dl_sampler_bytes(&cperm) >= N * 8);

    /* Bad geometry is refused. */
    c = cfg_for(DL_ORDER_PERMUTATION, 0, 3);
    c.global_batch = 10;
    CHECK(dl_sampler_init(&fo, &c, &err) == DL_EINTERNAL);
    c = cfg_for(DL_ORDER_PERMUTATION, 0, 1);
    c.n = 5;
    CHECK(dl_sampler_init(&fo, &c, &err) == DL_EINTERNAL);
    c = cfg_for(DL_ORDER_STREAM, 0, 1);
    c.n_shards = 2; /* sizes that do not add up to n */
    CHECK(dl_sampler_init(&fo, &c, &err) == DL_EINTERNAL);
    return CHECK_DONE();
}
