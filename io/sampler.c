/* Which samples each rank reads at each step; see sampler.h. */
#include <stdlib.h>
#include <string.h>

#include "../models/rng.h"
#include "sampler.h"

#define SHUFFLE_STREAM 0x5348554646ULL /* keeps shuffling apart from other seeded streams */

int dl_sampler_init(dl_sampler_t *s, int64_t n, int64_t global_batch, int rank, int world,
                    uint64_t seed, int shuffle, dl_err_t *err)
{
    memset(s, 0, sizeof *s);
    if (world < 1 || global_batch < world || global_batch % world || global_batch > n || rank < 0 ||
        rank >= world)
        return DL_ERR(err, DL_EINTERNAL,
                      "dl_sampler_init: %lld samples, global batch %lld, rank %d of %d",
                      (long long)n, (long long)global_batch, rank, world);
    *s = (dl_sampler_t){.n = n,
                        .global_batch = global_batch,
                        .batch = global_batch / world,
                        .rank = rank,
                        .world = world,
                        .seed = seed,
                        .shuffle = shuffle,
                        .steps_per_epoch = n / global_batch,
                        .perm_epoch = -1};
    s->perm = dl_calloc((size_t)n, sizeof *s->perm, err);
    return s->perm ? 0 : DL_ENOMEM;
}

const int64_t *dl_sampler_batch(dl_sampler_t *s, int64_t step, int64_t *pos)
{
    int64_t epoch = step / s->steps_per_epoch;
    if (epoch != s->perm_epoch) {
        dl_rng_t rng;
        dl_rng_seed(&rng, s->seed, SHUFFLE_STREAM + (uint64_t)epoch);
        if (s->shuffle)
            dl_rng_permutation(&rng, s->perm, s->n);
        else
            for (int64_t i = 0; i < s->n; i++)
                s->perm[i] = i;
        s->perm_epoch = epoch;
    }
    int64_t first = dl_sampler_pos(s, step);
    if (pos)
        *pos = first;
    return s->perm + first;
}

int64_t dl_sampler_pos(const dl_sampler_t *s, int64_t step)
{
    return step % s->steps_per_epoch * s->global_batch + (int64_t)s->rank * s->batch;
}

void dl_sampler_free(dl_sampler_t *s)
{
    free(s->perm);
    s->perm = NULL;
}
