/* Batch normalisation, as torch.nn.BatchNorm2d (and BatchNorm1d for flat
 * inputs): per channel c, over the n samples and h*w positions,
 *   y = gamma[c] * (x - mean[c]) / sqrt(var[c] + eps) + beta[c].
 * Training uses the batch's mean and biased variance and updates the running
 * statistics (running_var with the unbiased variance); inference uses the
 * running statistics. With spec.sync the batch statistics are taken over all
 * ranks through the context's all-reduce (torch.nn.SyncBatchNorm).
 *
 * Parameters: gamma (c) then beta (c). State: running mean (c) then running
 * variance (c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct bn_work {
    float *mean, *invstd; /* c each: the statistics the last forward used */
    float *sums;          /* 2c + 1: scratch for reductions */
} bn_work_t;

static int bn_setup(dl_layer_t *l, dl_err_t *err)
{
    if (!(l->spec.eps > 0.0) || l->spec.momentum < 0.0 || l->spec.momentum > 1.0)
        return DL_ERR(err, DL_EINPUT, "line %d: [batchnorm] needs eps > 0 and momentum in 0..1",
                      l->spec.line);
    l->out = l->in;
    return 0;
}

static int64_t bn_n_params(const dl_layer_t *l)
{
    return 2 * (int64_t)l->in.c;
}
static int64_t bn_n_state(const dl_layer_t *l)
{
    return 2 * (int64_t)l->in.c;
}

static int bn_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    int c = l->in.c;
    bn_work_t *w = dl_calloc(1, sizeof *w, err);
    if (!w)
        return DL_ENOMEM;
    l->work = w;
    w->mean = dl_calloc((size_t)c, sizeof(float), err);
    w->invstd = dl_calloc((size_t)c, sizeof(float), err);
    w->sums = dl_calloc(2 * (size_t)c + 1, sizeof(float), err);
    return w->mean && w->invstd && w->sums ? 0 : DL_ENOMEM;
}

static void bn_release(dl_layer_t *l)
{
    bn_work_t *w = l->work;
    if (!w)
        return;
    free(w->mean);
    free(w->invstd);
    free(w->sums);
    free(w);
    l->work = NULL;
}

static void bn_init(dl_layer_t *l, dl_rng_t *rng)
{
    int c = l->in.c;
    for (int i = 0; i < c; i++) {
        l->w[i] = 1.0f; /* gamma */
        l->b[i] = 0.0f; /* beta */
        l->state[i] = 0.0f;
        l->state[c + i] = 1.0f;
    }
}

/* Per-channel sums of f(x) over n samples: out[ch] = sum over n, h*w. */
static void channel_sums(const dl_layer_t *l, const float *x, const float *center, int n,
                         float *out)
{
    int c = l->in.c;
    int64_t hw = (int64_t)l->in.h * l->in.w;
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, m = center ? center[ch] : 0.0;
        for (int i = 0; i < n; i++) {
            const float *p = x + (int64_t)i * l->in_size + ch * hw;
            for (int64_t k = 0; k < hw; k++) {
                double d = p[k] - m;
                s += center ? d * d : d;
            }
        }
        out[ch] = (float)s;
    }
}

static int reduce(const dl_layer_t *l, float *buf, int64_t len)
{
    if (!l->spec.sync || !l->ctx || !l->ctx->allreduce_sum)
        return 0;
    return l->ctx->allreduce_sum(l->ctx->comm, buf, len);
}

/* Batch statistics: mean, then the variance about it (two passes, for
 * accuracy), each summed over ranks when synchronised. */
static int batch_stats(dl_layer_t *l, const float *x, int n)
{
    bn_work_t *w = l->work;
    int c = l->in.c;
    w->sums[c] = (float)n * (float)(l->in.h * l->in.w); /* count */
    channel_sums(l, x, NULL, n, w->sums);
    int rc = reduce(l, w->sums, c + 1);
    if (rc)
        return rc;
    double count = w->sums[c];
    for (int ch = 0; ch < c; ch++)
        w->mean[ch] = (float)(w->sums[ch] / count);
    channel_sums(l, x, w->mean, n, w->sums);
    rc = reduce(l, w->sums, c);
    if (rc)
        return rc;
    float *run_mean = l->state, *run_var = l->state + c;
    const double mom = l->spec.momentum;
    for (int ch = 0; ch < c; ch++) {
        double var = w->sums[ch] / count;
        w->invstd[ch] = (float)(1.0 / sqrt(var + l->spec.eps));
        double unbiased = count > 1 ? w->sums[ch] / (count - 1) : var;
        run_mean[ch] = (float)((1.0 - mom) * run_mean[ch] + mom * w->mean[ch]);
        run_var[ch] = (float)((1.0 - mom) * run_var[ch] + mom * unbiased);
    }
    return 0;
}

static int bn_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    bn_work_t *w = l->work;
    int c = l->in.c;
    if (l->ctx && l->ctx->training) {
        int rc = batch_stats(l, x, n);
        if (rc)
            return rc;
    } else {
        for (int ch = 0; ch < c; ch++) {
            w->mean[ch] = l->state[ch];
            w->invstd[ch] = (float)(1.0 / sqrt((double)l->state[c + ch] + l->spec.eps));
        }
    }
    int64_t hw = (int64_t)l->in.h * l->in.w;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float *restrict p = x + (int64_t)i * l->in_size + ch * hw;
            float *restrict q = y + (int64_t)i * l->in_size + ch * hw;
            const float scale = l->w[ch] * w->invstd[ch], shift = l->b[ch] - w->mean[ch] * scale;
            for (int64_t k = 0; k < hw; k++)
                q[k] = p[k] * scale + shift;
        }
    return 0;
}

/* dgamma = sum dy * xhat, dbeta = sum dy (this rank's samples: the model's
 * gradient all-reduce sums them over ranks). In training mode
 *   dx = gamma * invstd / M * (M * dy - sum dy - xhat * sum(dy * xhat))
 * with the sums and the count M over the whole normalisation group. */
static int bn_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                       int n)
{
    bn_work_t *w = l->work;
    int c = l->in.c;
    int64_t hw = (int64_t)l->in.h * l->in.w;
    for (int ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyx = 0.0;
        const float m = w->mean[ch], is = w->invstd[ch];
        for (int i = 0; i < n; i++) {
            const float *p = x + (int64_t)i * l->in_size + ch * hw;
            const float *g = dy + (int64_t)i * l->in_size + ch * hw;
            for (int64_t k = 0; k < hw; k++) {
                sdy += g[k];
                sdyx += (double)g[k] * (p[k] - m) * is;
            }
        }
        l->db[ch] = (float)sdy;
        l->dw[ch] = (float)sdyx;
        w->sums[ch] = (float)sdy;
        w->sums[c + ch] = (float)sdyx;
    }
    if (!dx)
        return 0;
    const int training = l->ctx && l->ctx->training;
    double count = (double)n * (double)hw;
    if (training) {
        w->sums[2 * c] = (float)count;
        int rc = reduce(l, w->sums, 2 * (int64_t)c + 1);
        if (rc)
            return rc;
        count = w->sums[2 * c];
    }
    for (int ch = 0; ch < c; ch++) {
        const float m = w->mean[ch], is = w->invstd[ch], k1 = l->w[ch] * is;
        const float mdy = training ? (float)(w->sums[ch] / count) : 0.0f;
        const float mdyx = training ? (float)(w->sums[c + ch] / count) : 0.0f;
        for (int i = 0; i < n; i++) {
            const float *p = x + (int64_t)i * l->in_size + ch * hw;
            const float *g = dy + (int64_t)i * l->in_size + ch * hw;
            float *q = dx + (int64_t)i * l->in_size + ch * hw;
            for (int64_t k = 0; k < hw; k++)
                q[k] = k1 * (g[k] - mdy - (p[k] - m) * is * mdyx);
        }
    }
    return 0;
}

static int64_t bn_flops(const dl_layer_t *l)
{
    return 4 * l->in_size;
}

const dl_layer_ops_t dl_batchnorm_ops = {
    .name = "batchnorm",
    .setup = bn_setup,
    .n_params = bn_n_params,
    .n_state = bn_n_state,
    .alloc = bn_alloc,
    .release = bn_release,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .flops = bn_flops,
};
