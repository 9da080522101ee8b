/* Which samples each rank reads at each step. Each epoch has one seeded
 * permutation of the N samples (or file order), identical on every rank;
 * global batch b of the epoch is permutation entries [b*G, (b+1)*G) and
 * rank r takes entries [r*B, (r+1)*B) of it (B = G / ranks). So the global
 * order depends only on the seed and the epoch, never on the number of
 * ranks; every epoch covers each sample at most once, all but the last
 * N mod G entries of the permutation (a different remainder each epoch);
 * and every rank takes the same number of steps. */
#ifndef DL_SAMPLER_H
#define DL_SAMPLER_H

#include <stdint.h>

#include "../runtime/error.h"

typedef struct dl_sampler {
    int64_t n;            /* samples in the dataset */
    int64_t global_batch; /* G */
    int64_t batch;        /* B, this rank's share */
    int rank, world;
    uint64_t seed;
    int shuffle;
    int64_t steps_per_epoch; /* floor(N / G) */
    int64_t *perm;           /* the order of epoch perm_epoch */
    int64_t perm_epoch;
} dl_sampler_t;

/* global_batch must divide by world and be at most n. */
int dl_sampler_init(dl_sampler_t *s, int64_t n, int64_t global_batch, int rank, int world,
                    uint64_t seed, int shuffle, dl_err_t *err);
/* This rank's B sample indices at training step `step` (counted from 0
 * over all epochs); valid until the next call for another epoch. *pos (if
 * not NULL) gets the position of the first of them in the epoch's order. */
const int64_t *dl_sampler_batch(dl_sampler_t *s, int64_t step, int64_t *pos);
/* The position in its epoch's order of this rank's first sample at `step`. */
int64_t dl_sampler_pos(const dl_sampler_t *s, int64_t step);
void dl_sampler_free(dl_sampler_t *s);

#endif
