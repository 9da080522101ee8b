/* The sample order: on 1, 2, 3 and 4 ranks with the same global batch,
 * every epoch covers each sample at most once and all but N mod G of them,
 * every rank takes the same steps, the ranks' parts of a global batch put
 * together are the 1-rank batch, epochs differ, and shuffle = false is file
 * order. N = 1003 does not divide by the global batch 12. */
#include <stdlib.h>

#include "check.h"
#include "io/sampler.h"

#define N 1003
#define G 12
#define EPOCHS 3

int main(void)
{
    dl_err_t err = {0};
    dl_sampler_t one;
    CHECK(dl_sampler_init(&one, N, G, 0, 1, 5, 1, &err) == 0);
    CHECK(one.steps_per_epoch == N / G);
    static int64_t first_epoch[N];
    for (int world = 1; world <= 4; world++) {
        dl_sampler_t s[4];
        for (int r = 0; r < world; r++) {
            CHECK(dl_sampler_init(&s[r], N, G, r, world, 5, 1, &err) == 0);
            CHECK(s[r].steps_per_epoch == N / G); /* the same steps on every rank */
        }
        for (int e = 0; e < EPOCHS; e++) {
            static int seen[N];
            memset(seen, 0, sizeof seen);
            for (int64_t k = 0; k < one.steps_per_epoch; k++) {
                int64_t step = e * one.steps_per_epoch + k;
                const int64_t *whole = dl_sampler_batch(&one, step, NULL);
                for (int r = 0; r < world; r++) {
                    int64_t pos;
                    const int64_t *part = dl_sampler_batch(&s[r], step, &pos);
                    CHECK(pos == k * G + r * (G / world));
                    CHECK(pos == dl_sampler_pos(&s[r], step));
                    for (int j = 0; j < G / world; j++) {
                        CHECK(part[j] == whole[r * (G / world) + j]);
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
                memcpy(first_epoch, one.perm, sizeof first_epoch);
            if (e > 0) /* a new order every epoch */
                CHECK(memcmp(first_epoch, one.perm, sizeof first_epoch) != 0);
        }
        for (int r = 0; r < world; r++)
            dl_sampler_free(&s[r]);
    }
    /* File order without shuffling. */
    dl_sampler_t fo;
    CHECK(dl_sampler_init(&fo, N, G, 1, 2, 5, 0, &err) == 0);
    const int64_t *b = dl_sampler_batch(&fo, one.steps_per_epoch + 3, NULL);
    for (int j = 0; j < G / 2; j++)
        CHECK(b[j] == 3 * G + G / 2 + j);
    dl_sampler_free(&fo);
    /* Bad geometry is refused. */
    CHECK(dl_sampler_init(&fo, N, 10, 0, 3, 5, 1, &err) == DL_EINTERNAL);
    CHECK(dl_sampler_init(&fo, 5, 12, 0, 1, 5, 1, &err) == DL_EINTERNAL);
    dl_sampler_free(&one);
    return CHECK_DONE();
}
