/* Which samples each rank reads at each step; see sampler.h. */
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

/* Seeded stream numbers, apart from the other seeded streams (plus the epoch). */
#define SHUFFLE_STREAM 0x5348554646ULL /* the permutation order */
#define ORDER_STREAM 0x53545245414dULL /* stream order: shard and block order */
#define MIX_STREAM 0x4d49584552ULL     /* stream order: the shuffle buffer */

const char *dl_order_name(dl_order_t o)
{
    return o == DL_ORDER_FILE ? "file" : o == DL_ORDER_PERMUTATION ? "permutation" : "stream";
}

static int64_t shard_size(const dl_sampler_cfg_t *c, int i)
{
    return c->shard_sizes ? c->shard_sizes[i] : c->n;
}

static int n_shards(const dl_sampler_cfg_t *c)
{
    return c->shard_sizes ? c->n_shards : 1;
}

static int64_t max_blocks(const dl_sampler_cfg_t *c)
{
    int64_t m = 0;
    for (int i = 0; i < n_shards(c); i++) {
        int64_t b = (shard_size(c, i) + c->block - 1) / c->block;
        m = b > m ? b : m;
    }
    return m;
}

static int64_t buffer_len(const dl_sampler_cfg_t *c)
{
    return c->buffer < c->n ? c->buffer : c->n;
}

int64_t dl_sampler_bytes(const dl_sampler_cfg_t *c)
{
    int64_t b = c->global_batch / (c->world > 0 ? c->world : 1) * 8;
    if (c->order == DL_ORDER_PERMUTATION)
        b += c->n * 8;
    else if (c->order == DL_ORDER_STREAM && c->block > 0)
        b += buffer_len(c) * 8 + max_blocks(c) * 8 + (int64_t)n_shards(c) * 12 + 8;
    return b;
}

static int check_cfg(const dl_sampler_cfg_t *c, dl_err_t *err)
{
    int bad = c->world < 1 || c->global_batch < c->world || c->global_batch % c->world ||
              c->global_batch > c->n || c->rank < 0 || c->rank >= c->world;
    if (c->order == DL_ORDER_STREAM) {
        int64_t sum = 0;
        for (int i = 0; i < n_shards(c); i++)
            sum += shard_size(c, i) < 0 ? -c->n - 1 : shard_size(c, i);
        bad = bad || c->block < 1 || c->buffer < 1 || sum != c->n ||
              (c->shard_sizes && c->n_shards < 1);
    }
    if (bad)
        return DL_ERR(err, DL_EINTERNAL,
                      "dl_sampler_init: %lld samples, global batch %lld, rank %d of %d, order %s, "
                      "block %lld, buffer %lld",
                      (long long)c->n, (long long)c->global_batch, c->rank, c->world,
                      dl_order_name(c->order), (long long)c->block, (long long)c->buffer);
    return 0;
}

static int init_stream(dl_sampler_t *s, dl_err_t *err)
{
    const dl_sampler_cfg_t *c = &s->cfg;
    int ns = n_shards(c);
    s->shard_starts = dl_calloc((size_t)ns + 1, sizeof *s->shard_starts, err);
    s->shard_order = dl_calloc((size_t)ns, sizeof *s->shard_order, err);
    s->blocks = dl_calloc((size_t)max_blocks(c), sizeof *s->blocks, err);
    s->buf = dl_calloc((size_t)buffer_len(c), sizeof *s->buf, err);
    if (!s->shard_starts || !s->shard_order || !s->blocks || !s->buf)
        return DL_ENOMEM;
    for (int i = 0; i < ns; i++)
        s->shard_starts[i + 1] = s->shard_starts[i] + shard_size(c, i);
    s->cfg.shard_sizes = NULL; /* not ours to keep: shard_starts has it */
    s->cfg.n_shards = ns;
    return 0;
}

int dl_sampler_init(dl_sampler_t *s, const dl_sampler_cfg_t *cfg, dl_err_t *err)
{
    memset(s, 0, sizeof *s);
    int rc = check_cfg(cfg, err);
    if (rc)
        return rc;
    s->cfg = *cfg;
    s->batch = cfg->global_batch / cfg->world;
    s->steps_per_epoch = cfg->n / cfg->global_batch;
    s->epoch = -1;
    s->out = dl_calloc((size_t)s->batch, sizeof *s->out, err);
    if (!s->out)
        return DL_ENOMEM;
    if (cfg->order == DL_ORDER_PERMUTATION) {
        s->perm = dl_calloc((size_t)cfg->n, sizeof *s->perm, err);
        return s->perm ? 0 : DL_ENOMEM;
    }
    return cfg->order == DL_ORDER_STREAM ? init_stream(s, err) : 0;
}

/* ---- stream order -------------------------------------------------------- */

/* Move to the next non-empty shard of the epoch's shard order and shuffle
 * its blocks; cur_shard == n_shards when the stream is exhausted. */
static void next_shard(dl_sampler_t *s)
{
    for (s->cur_shard++; s->cur_shard < s->cfg.n_shards; s->cur_shard++) {
        int sh = s->shard_order[s->cur_shard];
        int64_t size = s->shard_starts[sh + 1] - s->shard_starts[sh];
        if (size == 0)
            continue;
        s->n_blocks = (size + s->cfg.block - 1) / s->cfg.block;
        dl_rng_permutation(&s->order_rng, s->blocks, s->n_blocks);
        s->cur_block = 0;
        s->in_block = 0;
        return;
    }
}

/* The next sample of the shard-and-block stream; 0 when exhausted. */
static int stream_next(dl_sampler_t *s, int64_t *out)
{
    while (s->cur_shard < s->cfg.n_shards) {
        int sh = s->shard_order[s->cur_shard];
        int64_t size = s->shard_starts[sh + 1] - s->shard_starts[sh];
        if (s->cur_block < s->n_blocks) {
            int64_t start = s->blocks[s->cur_block] * s->cfg.block;
            int64_t len = size - start < s->cfg.block ? size - start : s->cfg.block;
            if (s->in_block < len) {
                *out = s->shard_starts[sh] + start + s->in_block++;
                return 1;
            }
            s->cur_block++;
            s->in_block = 0;
            continue;
        }
        next_shard(s);
    }
    return 0;
}

static void stream_start(dl_sampler_t *s, int64_t epoch)
{
    int ns = s->cfg.n_shards;
    dl_rng_seed(&s->order_rng, s->cfg.seed, ORDER_STREAM + (uint64_t)epoch);
    dl_rng_seed(&s->mix_rng, s->cfg.seed, MIX_STREAM + (uint64_t)epoch);
    for (int i = 0; i < ns; i++)
        s->shard_order[i] = i;
    for (int i = ns - 1; i > 0; i--) {
        int j = (int)dl_rng_below(&s->order_rng, (uint64_t)i + 1);
        int t = s->shard_order[i];
        s->shard_order[i] = s->shard_order[j];
        s->shard_order[j] = t;
    }
    s->cur_shard = -1;
    next_shard(s);
    int64_t cap = buffer_len(&s->cfg);
    for (s->buf_n = 0; s->buf_n < cap && stream_next(s, &s->buf[s->buf_n]); s->buf_n++) {
    }
    s->emitted = 0;
    s->epoch = epoch;
}

/* The next entry of the epoch's order: a random buffer entry, replaced by
 * the next sample of the stream (or by the last entry once it runs dry). */
static int64_t mix_next(dl_sampler_t *s)
{
    int64_t j = (int64_t)dl_rng_below(&s->mix_rng, (uint64_t)s->buf_n);
    int64_t v = s->buf[j];
    if (!stream_next(s, &s->buf[j]))
        s->buf[j] = s->buf[--s->buf_n];
    s->emitted++;
    return v;
}

static const int64_t *stream_batch(dl_sampler_t *s, int64_t epoch, int64_t first)
{
    if (epoch != s->epoch || s->emitted > first)
        stream_start(s, epoch);
    while (s->emitted < first)
        (void)mix_next(s);
    for (int64_t j = 0; j < s->batch; j++)
        s->out[j] = mix_next(s);
    return s->out;
}

/* ---- all orders ---------------------------------------------------------- */

const int64_t *dl_sampler_batch(dl_sampler_t *s, int64_t step, int64_t *pos)
{
    int64_t epoch = step / s->steps_per_epoch;
    int64_t first = dl_sampler_pos(s, step);
    if (pos)
        *pos = first;
    switch (s->cfg.order) {
    case DL_ORDER_PERMUTATION:
        if (epoch != s->epoch) {
            dl_rng_t rng;
            dl_rng_seed(&rng, s->cfg.seed, SHUFFLE_STREAM + (uint64_t)epoch);
            dl_rng_permutation(&rng, s->perm, s->cfg.n);
            s->epoch = epoch;
        }
        return s->perm + first;
    case DL_ORDER_STREAM: return stream_batch(s, epoch, first);
    case DL_ORDER_FILE:
    default:
        for (int64_t j = 0; j < s->batch; j++)
            s->out[j] = first + j;
        return s->out;
    }
}

int64_t dl_sampler_pos(const dl_sampler_t *s, int64_t step)
{
    return step % s->steps_per_epoch * s->cfg.global_batch + (int64_t)s->cfg.rank * s->batch;
}

dl_data_pos_t dl_sampler_position(const dl_sampler_t *s, int64_t step)
{
    return (dl_data_pos_t){.epoch = step / s->steps_per_epoch,
                           .offset = step % s->steps_per_epoch * s->cfg.global_batch,
                           .seed = s->cfg.seed};
}

int dl_sampler_resume_step(const dl_sampler_t *s, dl_data_pos_t p, int64_t *step, dl_err_t *err)
{
    int64_t g = s->cfg.global_batch;
    if (p.seed != s->cfg.seed)
        return DL_ERR(err, DL_EINPUT,
                      "the saved data position was made with seed %llu, this run has seed %llu: "
                      "resume with the saved run's [train] seed",
                      (unsigned long long)p.seed, (unsigned long long)s->cfg.seed);
    if (p.epoch < 0 || p.offset < 0 || p.offset % g)
        return DL_ERR(err, DL_EINPUT,
                      "the saved data position (epoch %lld, offset %lld) is not at a boundary of "
                      "this run's global batch %lld: resume with the saved run's global batch",
                      (long long)p.epoch, (long long)p.offset, (long long)g);
    if (p.offset / g >= s->steps_per_epoch) /* the epoch's full batches are done */
        *step = (p.epoch + 1) * s->steps_per_epoch;
    else
        *step = p.epoch * s->steps_per_epoch + p.offset / g;
    return 0;
}

void dl_sampler_free(dl_sampler_t *s)
{
    free(s->out);
    free(s->perm);
    free(s->shard_starts);
    free(s->shard_order);
    free(s->blocks);
    free(s->buf);
    memset(s, 0, sizeof *s);
}
