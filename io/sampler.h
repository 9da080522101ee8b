/* Which samples each rank reads at each step.
 *
 * Every epoch has one global order of the N samples, a function of the seed
 * and the epoch only, computed the same way on every rank. Global batch b of
 * the epoch is entries [b*G, (b+1)*G) of that order, and rank r takes
 * entries [r*B, (r+1)*B) of it (B = G / ranks). So runs on 1, 2 or 16 ranks
 * with the same global batch see the same global batches; every epoch
 * covers each sample at most once, all but the last N mod G entries of its
 * order (a different remainder each epoch); and every rank takes the same
 * number of steps, floor(N / G) per epoch, however uneven the shards.
 *
 * Three orders:
 *   file         0, 1, ..., N-1 every epoch.
 *   permutation  a seeded uniform permutation of all N samples per epoch;
 *                each rank holds it (8 bytes per sample).
 *   stream       for datasets too large for that: shuffle the shard order,
 *                then the order of blocks of `block` consecutive samples
 *                within each shard, and mix the resulting stream through a
 *                shuffle buffer of `buffer` sample indices (each output is a
 *                random buffer entry, replaced by the next sample of the
 *                stream). Memory: `buffer` indices plus one shard's block
 *                list. Reads stay within the blocks the buffer spans, so
 *                they are local in the files; the price is a less uniform
 *                shuffle (samples of one block tend to appear near each
 *                other in the epoch).
 * The order is generated forward; asking for an earlier step of the same
 * epoch (only a resume does that) regenerates from the epoch start. */
#ifndef DL_SAMPLER_H
#define DL_SAMPLER_H

#include <stdint.h>

#include "../models/rng.h"
#include "../runtime/error.h"

typedef enum dl_order { DL_ORDER_FILE, DL_ORDER_PERMUTATION, DL_ORDER_STREAM } dl_order_t;

typedef struct dl_sampler_cfg {
    int64_t n;            /* samples in the dataset */
    int64_t global_batch; /* G: divides by world, at most n */
    int rank, world;
    uint64_t seed;
    dl_order_t order;
    int64_t block, buffer;      /* stream order: block and shuffle buffer, in samples (>= 1) */
    const int64_t *shard_sizes; /* stream order: samples per shard (NULL: one shard of n) */
    int n_shards;
} dl_sampler_cfg_t;

/* Where the data stream stands: the next global batch starts at entry
 * `offset` of epoch `epoch`'s order, generated from `seed`. Saved with a
 * checkpoint, it lets a resumed run continue with exactly the batches it
 * would have seen. */
typedef struct dl_data_pos {
    int64_t epoch, offset;
    uint64_t seed;
} dl_data_pos_t;

typedef struct dl_sampler {
    dl_sampler_cfg_t cfg;
    int64_t batch;           /* B, this rank's share */
    int64_t steps_per_epoch; /* floor(N / G) */
    int64_t *out;            /* this rank's last batch (B entries) */
    int64_t *perm;           /* permutation order: the order of epoch `epoch` */
    int64_t epoch;           /* epoch of perm / of the stream state (-1: none) */
    /* stream order state */
    int64_t *shard_starts; /* first global index of each shard, n_shards + 1 */
    int *shard_order;      /* this epoch's shard order */
    int64_t *blocks;       /* block order of the current shard */
    int64_t *buf;          /* the shuffle buffer */
    int64_t buf_n;         /* entries in buf */
    int cur_shard;         /* position in shard_order (n_shards: stream exhausted) */
    int64_t cur_block, n_blocks, in_block; /* position in the current shard */
    int64_t emitted;                       /* entries of the epoch's order produced */
    dl_rng_t order_rng, mix_rng;
} dl_sampler_t;

/* Checks the geometry (DL_EINTERNAL if wrong: callers validate user input). */
int dl_sampler_init(dl_sampler_t *s, const dl_sampler_cfg_t *cfg, dl_err_t *err);
/* Bytes the sampler holds for cfg (what dl_sampler_init allocates). */
int64_t dl_sampler_bytes(const dl_sampler_cfg_t *cfg);
/* This rank's B sample indices at training step `step` (counted from 0
 * over all epochs); valid until the next call. *pos (if not NULL) gets the
 * position of the first of them in the epoch's order. */
const int64_t *dl_sampler_batch(dl_sampler_t *s, int64_t step, int64_t *pos);
/* The position in its epoch's order of this rank's first sample at `step`. */
int64_t dl_sampler_pos(const dl_sampler_t *s, int64_t step);
/* The data position before global batch `step`. */
dl_data_pos_t dl_sampler_position(const dl_sampler_t *s, int64_t step);
/* The step that continues at position p. A different seed, or an offset
 * that is not a multiple of this sampler's global batch or past the epoch's
 * last full batch, is DL_EINPUT with a message saying so. */
int dl_sampler_resume_step(const dl_sampler_t *s, dl_data_pos_t p, int64_t *step, dl_err_t *err);
void dl_sampler_free(dl_sampler_t *s);

const char *dl_order_name(dl_order_t o);

#endif
