/* Dropout, as torch.nn.Dropout: in training each element is zeroed with
 * probability rate and the others scaled by 1 / (1 - rate); in inference it
 * is the identity. The mask comes from the context's seed, step and rank and
 * the layer's index, so a run is reproducible; it differs between ranks (each
 * rank drops its own samples' elements). */
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int drop_setup(dl_layer_t *l, dl_err_t *err)
{
    if (!(l->spec.rate >= 0.0 && l->spec.rate < 1.0))
        return DL_ERR(err, DL_EINPUT, "line %d: [dropout] rate must be at least 0 and below 1",
                      l->spec.line);
    l->out = l->in;
    return 0;
}

static int64_t drop_n_params(const dl_layer_t *l)
{
    return 0;
}

/* work: max_batch x in_size factors, 0 or 1 / (1 - rate) */
static int drop_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    l->work = dl_calloc((size_t)max_batch * (size_t)l->in_size, sizeof(float), err);
    return l->work ? 0 : DL_ENOMEM;
}

static void drop_release(dl_layer_t *l)
{
    free(l->work);
    l->work = NULL;
}

static void drop_init(dl_layer_t *l, dl_rng_t *rng) {}

uint64_t dl_dropout_key(const dl_model_ctx_t *ctx, int index)
{
    return dl_rng_hash(ctx->seed ^ 0x44524f50ULL,
                       (ctx->step * 4096 + (uint64_t)index) * 65536 + (uint64_t)ctx->rank);
}

static int active(const dl_layer_t *l)
{
    return l->ctx && l->ctx->training && l->spec.rate > 0.0;
}

static int drop_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    int64_t len = (int64_t)n * l->in_size;
    if (!active(l)) {
        memcpy(y, x, (size_t)len * sizeof(float));
        return 0;
    }
    float *mask = l->work;
    const float keep = (float)(1.0 / (1.0 - l->spec.rate));
    /* one counter-based 53-bit uniform per element against the rate, as dropout.cu */
    const uint64_t key = dl_dropout_key(l->ctx, l->index);
    for (int64_t i = 0; i < len; i++) {
        mask[i] = dl_rng_hash_uniform(key, (uint64_t)i) < l->spec.rate ? 0.0f : keep;
        y[i] = x[i] * mask[i];
    }
    return 0;
}

static int drop_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                         int n)
{
    if (!dx)
        return 0;
    int64_t len = (int64_t)n * l->in_size;
    if (!active(l)) {
        memcpy(dx, dy, (size_t)len * sizeof(float));
        return 0;
    }
    const float *mask = l->work;
    for (int64_t i = 0; i < len; i++)
        dx[i] = dy[i] * mask[i];
    return 0;
}

static int64_t drop_flops(const dl_layer_t *l)
{
    return l->in_size;
}

const dl_layer_ops_t dl_dropout_ops = {
    .name = "dropout",
    .setup = drop_setup,
    .n_params = drop_n_params,
    .alloc = drop_alloc,
    .release = drop_release,
    .init = drop_init,
    .forward = drop_forward,
    .backward = drop_backward,
    .flops = drop_flops,
};
