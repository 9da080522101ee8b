/* Seeded pseudo-random numbers (xoshiro256** seeded through splitmix64).
 * State is explicit, so the same seed gives the same stream on every rank
 * and on every platform. */
#ifndef DL_RNG_H
#define DL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct dl_rng {
    uint64_t s[4];
} dl_rng_t;

/* Seed from a seed and a stream number (e.g. an epoch), so independent
 * streams need no shared state. */
void dl_rng_seed(dl_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t dl_rng_next(dl_rng_t *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t dl_rng_below(dl_rng_t *r, uint64_t n);
/* Uniform double in [0, 1). */
double dl_rng_uniform(dl_rng_t *r);
/* Standard normal (Box-Muller). */
double dl_rng_normal(dl_rng_t *r);
/* perm[0..n-1] = a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void dl_rng_permutation(dl_rng_t *r, int64_t *perm, int64_t n);

/* Counter-based draws, for element-parallel randomness that the GPU
 * (dropout.cu) computes the same: a hash of (key, i), and a uniform double
 * in [0, 1) from its top 53 bits. */
uint64_t dl_rng_hash(uint64_t key, uint64_t i);
double dl_rng_hash_uniform(uint64_t key, uint64_t i);

/* 64-bit FNV-1a hash of a byte range, chained through h (start with
 * DL_FNV_INIT); used for parameter and configuration digests. */
#define DL_FNV_INIT 0xcbf29ce484222325ULL
uint64_t dl_fnv1a64(uint64_t h, const void *data, size_t n);

#endif
