/* 2-D convolution, NCHW, as torch.nn.Conv2d (cross-correlation, zero padding).
 * x: n x C x H x W; W: F x C/g x k x k (PyTorch layout); b: F;
 * y: n x F x Ho x Wo with Ho = (H + 2p - k)/s + 1, Wo = (W + 2p - k)/s + 1.
 * Group gi maps input channels [gi*C/g, (gi+1)*C/g) to filters [gi*F/g, (gi+1)*F/g).
 *
 * Forward and backward are sgemm calls over an im2col matrix. Samples go in
 * blocks of nb, their columns side by side: col is (C*k*k) x (nb*P), P = Ho*Wo,
 * so that a small feature map (7x7, 14x14) still gives sgemm a wide N
 * dimension, and the weight gradient is one sgemm per block with a long
 * reduction. The im2col matrix is rebuilt in backward rather than kept from
 * forward: keeping it for a whole batch would cost C*k*k*P*n floats (115 MB
 * for 32 channels at 28x28, batch 128), and writing it out to memory and
 * reading it back costs more than redoing it in a block that stays in L2.
 * The gradients of 3x3 stride-1 convolutions with enough channels go through
 * Winograd F(2x2, 3x3) instead (winograd.c; see WINO_MIN_CH below).
 *
 * The activation after the convolution (spec.act) is applied here, on each
 * block's output while it is still in cache, and its derivative is folded
 * into the gathering of dy in backward: a separate activation layer would
 * cost a pass over the whole batch's output in each direction. Only
 * activations whose derivative follows from the output are fused (all but
 * GELU; see dl_act_fusable); the model gives GELU a layer of its own.
 *
 * A 2x2 stride-2 max pool right after the convolution is applied here too
 * when the model sets l->fuse_pool: each block's output is activated and
 * pooled while it is in cache, and only the pooled output (a quarter of the
 * size) and each window's position of the maximum (one byte) are stored; in
 * backward the gradient before the activation is rebuilt block by block from
 * those. As separate layers the full-size output was written, read back by
 * the pool, and its gradient written and read again in each direction:
 * about 15% of the cnn2 step at batch 128. The results are bit-identical to
 * the separate layers' (the same sums in the same order; the pool's ties go
 * to the same element). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "winograd.h"

/* Samples per block: enough for CONV_COLS_TARGET columns, while the block's
 * column matrix stays within CONV_BLOCK_BYTES, so that sgemm finds in L2 what
 * im2col has just written. Measured on one thread (F=64, k=3, batch 128):
 * wider blocks than this lost 10-40% at 7x7 and 14x14 to cache misses and
 * gained nothing at 28x28, where one sample is already 784 columns. A block
 * always holds at least one sample. */
#define CONV_COLS_TARGET 256
#define CONV_BLOCK_BYTES ((size_t)1 << 20)
/* 1x1 convolutions with stride 1 and no padding use x itself as the column
 * matrix, one sample at a time, when a sample's plane is at least this wide;
 * smaller planes go through the blocked path, whose im2col is then a copy. */
#define CONV_DIRECT_MIN_P 256
/* Winograd F(4x4, 3x3) (winograd.c) for the forward pass and both gradients
 * of 3x3 stride-1 convolutions without groups: 4x fewer multiplications (3.1x
 * at 14x14, whose last tiles are half empty), as 36 sgemm calls per block of
 * samples for each of the three; the input gradient is the adjoint of the
 * forward transform applied to the same transformed output gradient as the
 * weight gradient. Below WINO_MIN_CH channels on either side the products are too
 * thin for sgemm and the transforms dominate; im2col stays there (measured
 * with F(2x2, 3x3) at C = 1, F = 32, 28x28, the first layer of cnn2: weight
 * gradient 7 ms by im2col, 22 ms by Winograd; at C = F = 16 Winograd already
 * won). Blocks of samples give the products about WINO_COLS_TARGET columns,
 * while a block's V and M stay within WINO_BLOCK_BYTES of L2 (cnn2's second
 * layer: 4 samples, T = 64; 2, 3, 5, 6 and 8 were no faster).
 *
 * The forward pass goes through F(4x4, 3x3) too (DL_CONV_WINOGRAD_FWD, the
 * default since 2026-11-22): cnn2's second layer at batch 128 in about 12
 * against 18 ms by im2col, the whole cnn2 step 15% shorter. The forward pass,
 * unlike the gradients, takes decisions on values that differ by rounding
 * between implementations: which of a max pool's nearly equal inputs wins,
 * on which side of zero a ReLU input lies across a flat background. At the
 * reference run's learning rate of 0.05 such a decision can move the losses
 * of later steps, so every implementation drifts from PyTorch's sooner or
 * later (docs/models.md has the figures): F(2x2, 3x3) left the 1e-3 band at
 * step 19 of the 20 steps the reference test checks (2.75e-3; giving equal
 * windows equal outputs did not change it), im2col leaves it at step 30, and
 * F(4x4, 3x3) stays inside the 20 steps on 1 and 2 ranks (7.4e-5 at step 20)
 * and trains to the same accuracy. DL_CONV_WINOGRAD (gradients only) keeps
 * im2col's forward pass, bit for bit. */
#define WINO_MIN_CH 8
#define WINO_COLS_TARGET 256
#define WINO_BLOCK_BYTES ((size_t)1 << 20)

typedef struct conv_geom {
    int c, h, w;       /* input shape */
    int f, k, s, p, g; /* filters, kernel size, stride, pad, groups */
    int cg, fg;        /* channels and filters per group */
    int ho, wo;        /* output plane */
    int plane;         /* ho * wo */
    int kg;            /* rows of one group's column matrix: cg * k * k */
} conv_geom_t;

typedef struct conv_work {
    int nb;     /* samples per block */
    float *col; /* (c*k*k) x (nb*plane): im2col of a block; reused for dcol in backward */
    float *tmp; /* f x (nb*plane): a block's output (forward) or its gathered dy (backward) */
    /* Winograd, allocated when the geometry allows it (conv_wino_ok): */
    int wino;  /* DL_CONV_IM2COL, or DL_CONV_WINOGRAD (gradients) or DL_CONV_WINOGRAD_FWD */
    int wnb;   /* samples per Winograd block */
    float *u;  /* 36 x f x c (forward) or 36 x c x f (input gradient): transformed filters */
    float *du; /* 36 x f x c: the weight gradient in the transformed domain */
    float *ws; /* dl_wino_conv's scratch for wnb samples, the larger of the two directions */
    float *dz; /* wnb x f x plane: a block's dz when an activation or a pool is fused; with
                  a fused pool also a block's output before pooling in the Winograd forward */
    /* A fused max pool (l->fuse_pool): */
    uint8_t *arg; /* max_batch x f x (ho/2) x (wo/2): the window position of each maximum */
    float *pz;    /* (ho/2) x (wo/2): one pooled plane's gradient before the activation */
} conv_work_t;

static void conv_geom(const dl_layer_t *l, conv_geom_t *g)
{
    g->c = l->in.c;
    g->h = l->in.h;
    g->w = l->in.w;
    g->f = l->spec.filters;
    g->k = l->spec.size;
    g->s = l->spec.stride;
    g->p = l->spec.pad;
    g->g = l->spec.groups;
    g->cg = g->c / g->g;
    g->fg = g->f / g->g;
    g->ho = (g->h + 2 * g->p - g->k) / g->s + 1;
    g->wo = (g->w + 2 * g->p - g->k) / g->s + 1;
    g->plane = g->ho * g->wo;
    g->kg = g->cg * g->k * g->k;
}

/* The activation this layer applies itself (GELU gets a layer of its own). */
static dl_act_t conv_act(const dl_layer_t *l)
{
    return dl_act_fusable(l->spec.act) ? l->spec.act : DL_ACT_NONE;
}

static int conv_direct(const conv_geom_t *g)
{
    return g->k == 1 && g->s == 1 && g->p == 0 && g->plane >= CONV_DIRECT_MIN_P;
}

/* Floats of one sample's pooled output with a fused pool: f x (ho/2) x (wo/2). */
static int64_t conv_pool_size(const conv_geom_t *g)
{
    return (int64_t)g->f * (g->ho / 2) * (g->wo / 2);
}

int dl_conv_pool_fusable(const dl_layer_t *c, const dl_layer_t *p)
{
    if (c->spec.type != DL_LAYER_CONV || p->spec.type != DL_LAYER_MAXPOOL)
        return 0;
    conv_geom_t g;
    conv_geom(c, &g);
    return !conv_direct(&g) && p->spec.size == 2 && p->spec.stride == 2 && p->spec.pad == 0 &&
           g.ho >= 2 && g.wo >= 2;
}

/* Winograd F(4x4, 3x3) applies: 3x3, stride 1, no groups, pad <= 2 (a
 * wider pad only adds tiles of zeros; no model has one). */
static int conv_wino_ok(const conv_geom_t *g)
{
    return g->k == 3 && g->s == 1 && g->g == 1 && g->p <= 2;
}

/* The default where Winograd applies: enough channels on both sides (WINO_MIN_CH). */
static int conv_wino_pays(const conv_geom_t *g)
{
    return g->c >= WINO_MIN_CH && g->f >= WINO_MIN_CH;
}

/* The Winograd geometry of the layer (the backward pass is its adjoint). */
static void conv_wino_geom(const conv_geom_t *g, dl_wino_geom_t *wg)
{
    dl_wino_geom(wg, g->c, g->h, g->w, g->f, g->p);
}

static int conv_setup(dl_layer_t *l, dl_err_t *err)
{
    const dl_layer_spec_t *sp = &l->spec;
    int line = sp->line, c = l->in.c, h = l->in.h, w = l->in.w;
    if (sp->filters < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [conv] filters = %d; it must be >= 1", line,
                      sp->filters);
    if (sp->size < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [conv] size = %d; the kernel size must be >= 1",
                      line, sp->size);
    if (sp->stride < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [conv] stride = %d; it must be >= 1", line,
                      sp->stride);
    if (sp->pad < 0)
        return DL_ERR(err, DL_EINPUT, "line %d: [conv] pad = %d; it must be >= 0", line, sp->pad);
    if (sp->groups < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [conv] groups = %d; it must be >= 1", line,
                      sp->groups);
    if (c % sp->groups != 0 || sp->filters % sp->groups != 0)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [conv] groups = %d does not divide both the %d input channels "
                      "and the %d filters; groups must divide both",
                      line, sp->groups, c, sp->filters);
    int hp = h + 2 * sp->pad, wp = w + 2 * sp->pad;
    if (sp->size > hp || sp->size > wp)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [conv] kernel size %d does not fit the %dx%d input padded by %d "
                      "(%dx%d); size must be <= %d",
                      line, sp->size, h, w, sp->pad, hp, wp, hp < wp ? hp : wp);
    l->out.c = sp->filters;
    l->out.h = (hp - sp->size) / sp->stride + 1;
    l->out.w = (wp - sp->size) / sp->stride + 1;
    l->out_size = (int64_t)l->out.c * l->out.h * l->out.w;
    return 0;
}

static int64_t conv_n_weights(const dl_layer_t *l)
{
    return (int64_t)l->spec.filters * (l->in.c / l->spec.groups) * l->spec.size * l->spec.size;
}

static int64_t conv_n_params(const dl_layer_t *l)
{
    return conv_n_weights(l) + (l->spec.bias ? l->spec.filters : 0);
}

static void conv_release(dl_layer_t *l);

/* Winograd scratch for blocks of wnb samples, and the default choice of
 * algorithm (WINO_MIN_CH). l->work is already allocated; on failure it is
 * released. Bounded by WINO_BLOCK_BYTES per block plus the filters and their
 * gradient (2 x 36*f*c) and one block's dz: 1.6 MiB for f = 64, c = 32 at
 * 14x14, whatever the batch. */
static int conv_alloc_wino(dl_layer_t *l, const conv_geom_t *g, int max_batch, dl_err_t *err)
{
    conv_work_t *wk = l->work;
    dl_wino_geom_t wf;
    conv_wino_geom(g, &wf);
    int tiles = wf.tiles;
    int nb = (WINO_COLS_TARGET + tiles - 1) / tiles;
    if (nb > max_batch)
        nb = max_batch;
    while (nb > 1 &&
           (size_t)DL_WINO_NX * (size_t)(g->c + g->f) * (size_t)nb * (size_t)tiles * sizeof(float) >
               WINO_BLOCK_BYTES)
        nb--;
    if (nb < 1)
        nb = 1;
    wk->wnb = nb;
    wk->u = dl_calloc((size_t)DL_WINO_NX * g->f * g->c, sizeof(float), err);
    wk->du = dl_calloc((size_t)DL_WINO_NX * g->f * g->c, sizeof(float), err);
    wk->ws = dl_calloc(dl_wino_scratch_floats(&wf, nb), sizeof(float), err);
    int need_dz = conv_act(l) != DL_ACT_NONE || l->fuse_pool;
    wk->dz = need_dz ? dl_calloc((size_t)nb * g->f * g->plane, sizeof(float), err) : NULL;
    if (!wk->u || !wk->du || !wk->ws || (need_dz && !wk->dz)) {
        conv_release(l);
        return DL_ENOMEM;
    }
    wk->wino = conv_wino_pays(g) ? DL_CONV_WINOGRAD_FWD : DL_CONV_IM2COL;
    return 0;
}

static int conv_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    conv_geom_t g;
    conv_geom(l, &g);
    l->work = NULL;
    int direct = conv_direct(&g), act = conv_act(l) != DL_ACT_NONE;
    if (direct && !act)
        return 0;
    int nb = direct ? 1 : (CONV_COLS_TARGET + g.plane - 1) / g.plane;
    if (nb > max_batch)
        nb = max_batch;
    size_t rows = (size_t)g.c * g.k * g.k;
    while (nb > 1 && rows * (size_t)nb * (size_t)g.plane * sizeof(float) > CONV_BLOCK_BYTES)
        nb--;
    if (nb < 1)
        nb = 1;
    conv_work_t *wk = dl_calloc(1, sizeof *wk, err);
    if (!wk)
        return DL_ENOMEM;
    size_t cols = (size_t)nb * (size_t)g.plane;
    wk->nb = nb;
    wk->wino = DL_CONV_IM2COL;
    wk->col = direct ? NULL : dl_calloc((size_t)g.c * g.k * g.k * cols, sizeof(float), err);
    wk->tmp = dl_calloc((size_t)g.f * cols, sizeof(float), err);
    if ((!direct && !wk->col) || !wk->tmp) {
        free(wk->col);
        free(wk->tmp);
        free(wk);
        return DL_ENOMEM;
    }
    l->work = wk;
    if (l->fuse_pool) {
        wk->arg = dl_calloc((size_t)max_batch * (size_t)conv_pool_size(&g), 1, err);
        wk->pz = dl_calloc((size_t)(g.ho / 2) * (size_t)(g.wo / 2), sizeof(float), err);
        if (!wk->arg || !wk->pz) {
            conv_release(l);
            return DL_ENOMEM;
        }
    }
    if (conv_wino_ok(&g))
        return conv_alloc_wino(l, &g, max_batch, err);
    return 0;
}

static void conv_release(dl_layer_t *l)
{
    conv_work_t *wk = l->work;
    if (wk) {
        free(wk->col);
        free(wk->tmp);
        free(wk->u);
        free(wk->du);
        free(wk->ws);
        free(wk->dz);
        free(wk->arg);
        free(wk->pz);
        free(wk);
    }
    l->work = NULL;
}

static void conv_init(dl_layer_t *l, dl_rng_t *rng)
{
    int64_t nw = conv_n_weights(l), kk = (int64_t)l->spec.size * l->spec.size;
    int64_t fan_in = (l->in.c / l->spec.groups) * kk, fan_out = l->spec.filters * kk;
    dl_init_t init = l->spec.init;
    dl_act_t act = l->spec.act;
    if (init == DL_INIT_AUTO)
        init = act == DL_ACT_RELU || act == DL_ACT_LEAKY || act == DL_ACT_GELU ? DL_INIT_KAIMING
                                                                               : DL_INIT_XAVIER;
    if (init == DL_INIT_KAIMING) {
        /* He et al.: normal with variance 2 / fan_in keeps ReLU activations' scale. */
        double sd = sqrt(2.0 / (double)fan_in);
        for (int64_t i = 0; i < nw; i++)
            l->w[i] = (float)(sd * dl_rng_normal(rng));
    } else {
        /* Glorot and Bengio; fan_out counts F * k * k as torch does (not divided by groups). */
        double a = sqrt(6.0 / (double)(fan_in + fan_out));
        for (int64_t i = 0; i < nw; i++)
            l->w[i] = (float)(a * (2.0 * dl_rng_uniform(rng) - 1.0));
    }
    if (l->b)
        memset(l->b, 0, (size_t)l->spec.filters * sizeof(float));
}

/* Output columns [*lo, *hi) whose input index o*s - p + kk lies inside [0, n);
 * the others read padding. */
static void conv_valid(int n, int no, int s, int p, int kk, int *lo, int *hi)
{
    int a, b;
    if (s == 1) { /* the common case, without divisions */
        a = p - kk > 0 ? p - kk : 0;
        b = n + p - kk > 0 ? n + p - kk : 0;
    } else {
        a = p - kk > 0 ? (p - kk + s - 1) / s : 0;
        b = n + p - kk > 0 ? (n + p - kk + s - 1) / s : 0;
    }
    if (b > no)
        b = no;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* d[0..n) += s[0..n), four at a time so that -O2's straight-line vectoriser
 * turns the body into one SIMD add. */
static void add_to(float *restrict d, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        d[i] += s[i];
        d[i + 1] += s[i + 1];
        d[i + 2] += s[i + 2];
        d[i + 3] += s[i + 3];
    }
    for (; i < n; i++)
        d[i] += s[i];
}

/* Where stride is 1 and wo == w (a "same" convolution, 2p = k - 1), an output
 * row and an input row have the same pitch: the valid rows [hlo, hhi) of one
 * column-matrix row are then a single contiguous range of the channel,
 * shifted by base = (ki - p)*w + kj - p, and the entries that wrapped around a
 * row edge (ow < wlo or ow >= whi) are padding. This range is [*j0, *j1) of
 * the column-matrix row, clipped so that it never reads outside the channel. */
static void conv_same_range(const conv_geom_t *g, int hlo, int hhi, int64_t base, int64_t *j0,
                            int64_t *j1)
{
    int64_t hw = (int64_t)g->h * g->w, a = (int64_t)hlo * g->w, b = (int64_t)hhi * g->w;
    if (a < -base)
        a = -base;
    if (b > hw - base)
        b = hw - base;
    *j0 = a;
    *j1 = b > a ? b : a;
}

/* Zero the entries of rows [hlo, hhi) of a column-matrix row (pitch wo) that read padding
 * columns: ow < wlo or ow >= whi. */
static void conv_zero_edges(float *restrict row, int wo, int hlo, int hhi, int wlo, int whi)
{
    if (wlo == 0 && whi == wo)
        return;
    for (int oh = hlo; oh < hhi; oh++) {
        float *restrict d = row + (int64_t)oh * wo;
        for (int ow = 0; ow < wlo; ow++)
            d[ow] = 0.0f;
        for (int ow = whi; ow < wo; ow++)
            d[ow] = 0.0f;
    }
}

/* im2col of one sample x (c x h x w) into col, whose rows (c*k*k of them,
 * row = (ci*k + ki)*k + kj) have stride ld and hold the sample's plane
 * (ho x wo) in their first `plane` entries. */
static void im2col(const conv_geom_t *g, const float *restrict x, float *restrict col, int64_t ld)
{
    int k = g->k, s = g->s, p = g->p, wo = g->wo, same = s == 1 && wo == g->w;
    for (int ci = 0; ci < g->c; ci++) {
        const float *xc = x + (int64_t)ci * g->h * g->w;
        for (int ki = 0; ki < k; ki++) {
            int hlo, hhi;
            conv_valid(g->h, g->ho, s, p, ki, &hlo, &hhi);
            for (int kj = 0; kj < k; kj++) {
                float *restrict row = col + ((int64_t)(ci * k + ki) * k + kj) * ld;
                int wlo, whi;
                conv_valid(g->w, wo, s, p, kj, &wlo, &whi);
                if (hlo > 0)
                    memset(row, 0, (size_t)hlo * wo * sizeof(float));
                if (same) {
                    int64_t base = (int64_t)(ki - p) * g->w + kj - p, j0, j1;
                    conv_same_range(g, hlo, hhi, base, &j0, &j1);
                    memcpy(row + j0, xc + base + j0, (size_t)(j1 - j0) * sizeof(float));
                    conv_zero_edges(row, wo, hlo, hhi, wlo, whi);
                } else {
                    for (int oh = hlo; oh < hhi; oh++) {
                        float *restrict d = row + (int64_t)oh * wo;
                        const float *restrict src = xc + (int64_t)(oh * s - p + ki) * g->w + kj - p;
                        for (int ow = 0; ow < wlo; ow++)
                            d[ow] = 0.0f;
                        if (s == 1)
                            memcpy(d + wlo, src + wlo, (size_t)(whi - wlo) * sizeof(float));
                        else
                            for (int ow = wlo; ow < whi; ow++)
                                d[ow] = src[ow * s];
                        for (int ow = whi; ow < wo; ow++)
                            d[ow] = 0.0f;
                    }
                }
                if (hhi < g->ho)
                    memset(row + (int64_t)hhi * wo, 0, (size_t)(g->ho - hhi) * wo * sizeof(float));
            }
        }
    }
}

/* The adjoint of im2col: dx (c x h x w) = sum of the column entries that read
 * each input element. Overwrites dx; col is scratch and is modified (its
 * padding entries zeroed). */
static void col2im(const conv_geom_t *g, float *restrict col, int64_t ld, float *restrict dx)
{
    int k = g->k, s = g->s, p = g->p, wo = g->wo, same = s == 1 && wo == g->w;
    memset(dx, 0, (size_t)g->c * g->h * g->w * sizeof(float));
    for (int ci = 0; ci < g->c; ci++) {
        float *dc = dx + (int64_t)ci * g->h * g->w;
        for (int ki = 0; ki < k; ki++) {
            int hlo, hhi;
            conv_valid(g->h, g->ho, s, p, ki, &hlo, &hhi);
            for (int kj = 0; kj < k; kj++) {
                float *restrict row = col + ((int64_t)(ci * k + ki) * k + kj) * ld;
                int wlo, whi;
                conv_valid(g->w, wo, s, p, kj, &wlo, &whi);
                if (same) {
                    /* Drop the padding reads, then one contiguous add. */
                    int64_t base = (int64_t)(ki - p) * g->w + kj - p, j0, j1;
                    conv_zero_edges(row, wo, hlo, hhi, wlo, whi);
                    conv_same_range(g, hlo, hhi, base, &j0, &j1);
                    add_to(dc + base + j0, row + j0, j1 - j0);
                    continue;
                }
                for (int oh = hlo; oh < hhi; oh++) {
                    const float *restrict r = row + (int64_t)oh * wo;
                    float *restrict d = dc + (int64_t)(oh * s - p + ki) * g->w + kj - p;
                    if (s == 1)
                        add_to(d + wlo, r + wlo, whi - wlo);
                    else
                        for (int ow = wlo; ow < whi; ow++)
                            d[ow * s] += r[ow];
                }
            }
        }
    }
}

/* 1x1, stride 1, no padding: sample i's input (c x plane) is its own column matrix. */
static void conv_forward_direct(const dl_layer_t *l, const conv_geom_t *g, const float *x, float *y,
                                int n)
{
    int64_t P = g->plane;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * l->in_size;
        float *yi = y + (int64_t)i * l->out_size;
        if (l->b)
            for (int f = 0; f < g->f; f++)
                for (int64_t q = 0; q < P; q++)
                    yi[f * P + q] = l->b[f];
        for (int gi = 0; gi < g->g; gi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->fg, (int)P, g->cg, 1.0f,
                        l->w + (int64_t)gi * g->fg * g->cg, g->cg, xi + gi * g->cg * P, (int)P,
                        l->b ? 1.0f : 0.0f, yi + gi * g->fg * P, (int)P);
        dl_act_inplace(conv_act(l), yi, l->out_size);
    }
}

/* The fused pool's forward for one sample: its output before the
 * activation is src + fo*ld for filter fo (ho x wo, pitch wo; bias added
 * here when add_bias), pooled into y (the sample's pooled output, f x
 * (ho/2) x (wo/2)) and arg. The pool adds the bias and applies a ReLU as it
 * reads; other activations are applied to the plane in place first. */
static void conv_pool_sample(const dl_layer_t *l, const conv_geom_t *g, float *src, int64_t ld,
                             int add_bias, float *y, uint8_t *arg)
{
    int64_t P = g->plane, pq = (int64_t)(g->ho / 2) * (g->wo / 2);
    dl_act_t act = conv_act(l);
    int in_pool = act == DL_ACT_NONE || act == DL_ACT_RELU;
    for (int fo = 0; fo < g->f; fo++) {
        float *restrict v = src + fo * ld;
        const float *bias = add_bias && l->b ? l->b + fo : NULL;
        if (!in_pool) {
            if (bias)
                for (int64_t q = 0; q < P; q++)
                    v[q] = v[q] + *bias;
            dl_act_inplace(act, v, P);
            bias = NULL;
        }
        dl_maxpool2x2_plane(v, g->ho, g->wo, bias, act == DL_ACT_RELU, y + fo * pq, arg + fo * pq);
    }
}

/* Forward through Winograd, wnb samples at a time; y is written in place
 * (bias included) and activated while the block is in cache. */
static void conv_forward_wino(dl_layer_t *l, const conv_geom_t *g, const float *x, float *y, int n)
{
    conv_work_t *wk = l->work;
    dl_wino_geom_t wg;
    conv_wino_geom(g, &wg);
    dl_wino_filter(l->w, g->f, g->c, wk->u);
    for (int i0 = 0; i0 < n; i0 += wk->wnb) {
        int m = n - i0 < wk->wnb ? n - i0 : wk->wnb;
        if (l->fuse_pool) { /* the block's output goes to wk->dz, then pooled into y */
            int64_t ps = conv_pool_size(g);
            dl_wino_conv(&wg, wk->u, x + (int64_t)i0 * l->in_size, l->in_size, (int64_t)g->h * g->w,
                         m, l->b, wk->dz, l->out_size, wk->ws);
            for (int b = 0; b < m; b++)
                conv_pool_sample(l, g, wk->dz + b * l->out_size, g->plane, 0, y + (i0 + b) * ps,
                                 wk->arg + (i0 + b) * ps);
            continue;
        }
        float *yb = y + (int64_t)i0 * l->out_size;
        dl_wino_conv(&wg, wk->u, x + (int64_t)i0 * l->in_size, l->in_size, (int64_t)g->h * g->w, m,
                     l->b, yb, l->out_size, wk->ws);
        dl_act_inplace(conv_act(l), yb, (int64_t)m * l->out_size);
    }
}

static int conv_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    conv_geom_t g;
    conv_geom(l, &g);
    if (conv_direct(&g)) {
        conv_forward_direct(l, &g, x, y, n);
        return 0;
    }
    conv_work_t *wk = l->work;
    if (wk->wino == DL_CONV_WINOGRAD_FWD) {
        conv_forward_wino(l, &g, x, y, n);
        return 0;
    }
    int64_t P = g.plane;
    for (int i0 = 0; i0 < n; i0 += wk->nb) {
        int m = n - i0 < wk->nb ? n - i0 : wk->nb;
        int64_t N = m * P; /* columns of this block; also col's row stride */
        for (int b = 0; b < m; b++)
            im2col(&g, x + (int64_t)(i0 + b) * l->in_size, wk->col + b * P, N);
        /* One sample: sgemm writes y itself (F x P), bias added through beta = 1.
         * Several: out is tmp (F x m*P), copied to y's sample-major layout after.
         * With a fused pool out is always tmp, the bias added the same way. */
        float *out = m == 1 && !l->fuse_pool ? y + (int64_t)i0 * l->out_size : wk->tmp;
        float beta = 0.0f;
        if (m == 1 && l->b) {
            for (int f = 0; f < g.f; f++)
                for (int64_t q = 0; q < P; q++)
                    out[f * P + q] = l->b[f];
            beta = 1.0f;
        }
        for (int gi = 0; gi < g.g; gi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.fg, (int)N, g.kg, 1.0f,
                        l->w + (int64_t)gi * g.fg * g.kg, g.kg, wk->col + gi * g.kg * N, (int)N,
                        beta, out + gi * g.fg * N, (int)N);
        if (l->fuse_pool) {
            int64_t ps = conv_pool_size(&g);
            for (int b = 0; b < m; b++)
                conv_pool_sample(l, &g, wk->tmp + b * P, N, m > 1, y + (i0 + b) * ps,
                                 wk->arg + (i0 + b) * ps);
            continue;
        }
        if (m > 1)
            for (int b = 0; b < m; b++) {
                float *yb = y + (int64_t)(i0 + b) * l->out_size;
                for (int f = 0; f < g.f; f++) {
                    const float *restrict src = wk->tmp + f * N + b * P;
                    float *restrict dst = yb + f * P;
                    float bias = l->b ? l->b[f] : 0.0f;
                    for (int64_t q = 0; q < P; q++)
                        dst[q] = src[q] + bias;
                }
            }
        /* The block's output is still in cache: activate it now. */
        dl_act_inplace(conv_act(l), y + (int64_t)i0 * l->out_size, (int64_t)m * l->out_size);
    }
    return 0;
}

/* db[f] += sum over the columns of dz's row f (dz: F x N, row stride N);
 * partial sums in float, the running total in double so that a large batch
 * does not lose digits. Eight partial sums side by side: one running sum is
 * a chain of dependent adds (4 cycles each, 4 ms a step for the 32 x 100352
 * of cnn2's first layer at batch 128), eight vectorise into two SIMD adds. */
static void conv_bias_grad(const conv_geom_t *g, const float *dz, int64_t N, double *db)
{
    for (int f = 0; f < g->f; f++) {
        const float *restrict r = dz + f * N;
        float s[8] = {0.0f};
        int64_t q = 0;
        for (; q + 8 <= N; q += 8)
            for (int j = 0; j < 8; j++)
                s[j] += r[q + j];
        float sum = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        for (; q < N; q++)
            sum += r[q];
        db[f] += sum;
    }
}

/* The gradient with respect to the convolution's output before the
 * activation, for samples i0 .. i0+m-1, gathered as F x (m*P) (the layout of
 * a block's output). Returns dy itself when that needs no copy. */
static const float *conv_gather_dz(const dl_layer_t *l, const conv_geom_t *g, const float *y,
                                   const float *dy, int i0, int m, float *tmp)
{
    int64_t P = g->plane, N = m * P;
    if (m == 1 && conv_act(l) == DL_ACT_NONE)
        return dy + (int64_t)i0 * l->out_size;
    for (int b = 0; b < m; b++)
        for (int f = 0; f < g->f; f++) {
            int64_t at = (int64_t)(i0 + b) * l->out_size + f * P;
            dl_act_backward(conv_act(l), NULL, y + at, dy + at, tmp + f * N + b * P, P);
        }
    return tmp;
}

/* The fused pool's backward for samples i0 .. i0+m-1: the gradient before
 * the activation is zero except at each window's maximum, where it is the
 * pooled gradient dy times the activation's derivative taken from the pooled
 * output y (which is the maximum's activated value). Sample b's plane for
 * filter fo goes to dz + b*bs + fo*ld (ho x wo, pitch wo), all of it written. */
static void conv_pool_gather(const dl_layer_t *l, const conv_geom_t *g, const float *y,
                             const float *dy, int i0, int m, float *dz, int64_t bs, int64_t ld)
{
    conv_work_t *wk = l->work;
    int64_t ps = conv_pool_size(g), pq = (int64_t)(g->ho / 2) * (g->wo / 2);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++) {
            int64_t at = (int64_t)(i0 + b) * ps + fo * pq;
            dl_act_backward(conv_act(l), NULL, y + at, dy + at, wk->pz, pq);
            dl_maxpool2x2_scatter(wk->pz, wk->arg + at, g->ho, g->wo, dz + b * bs + fo * ld);
        }
}

static void conv_backward_direct(dl_layer_t *l, const conv_geom_t *g, const float *x,
                                 const float *y, const float *dy, float *dx, int n, double *db)
{
    int64_t P = g->plane;
    conv_work_t *wk = l->work;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * l->in_size;
        const float *dzi = conv_gather_dz(l, g, y, dy, i, 1, wk ? wk->tmp : NULL);
        if (db)
            conv_bias_grad(g, dzi, P, db);
        for (int gi = 0; gi < g->g; gi++) {
            float *wg = l->w + (int64_t)gi * g->fg * g->cg,
                  *dwg = l->dw + (int64_t)gi * g->fg * g->cg;
            /* dW_g (fg x cg) += dz_g (fg x P) . x_g^T (P x cg) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->fg, g->cg, (int)P, 1.0f,
                        dzi + gi * g->fg * P, (int)P, xi + gi * g->cg * P, (int)P,
                        i > 0 ? 1.0f : 0.0f, dwg, g->cg);
            /* dx_g (cg x P) = W_g^T (cg x fg) . dz_g (fg x P) */
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->cg, (int)P, g->fg, 1.0f, wg,
                            g->cg, dzi + gi * g->fg * P, (int)P, 0.0f,
                            dx + (int64_t)i * l->in_size + gi * g->cg * P, (int)P);
        }
    }
}

/* Backward through Winograd, wnb samples at a time: dz is dy itself
 * (sample-major, f x plane per sample) without a fused activation, else one
 * block of it in wk->dz. dW accumulates in the transformed domain (wk->du)
 * and is transformed back once at the end; dx is the adjoint of the forward
 * transform, from the same transformed output gradient (dl_wino_backward). */
static void conv_backward_wino(dl_layer_t *l, const conv_geom_t *g, const float *x, const float *y,
                               const float *dy, float *dx, int n, double *db)
{
    conv_work_t *wk = l->work;
    dl_act_t act = conv_act(l);
    dl_wino_geom_t wg;
    conv_wino_geom(g, &wg);
    if (dx)
        dl_wino_filter(l->w, g->f, g->c, wk->u);
    for (int i0 = 0; i0 < n; i0 += wk->wnb) {
        int m = n - i0 < wk->wnb ? n - i0 : wk->wnb;
        int64_t at = (int64_t)i0 * l->out_size;
        const float *dz = dy + at;
        if (l->fuse_pool) {
            conv_pool_gather(l, g, y, dy, i0, m, wk->dz, l->out_size, g->plane);
            dz = wk->dz;
        } else if (act != DL_ACT_NONE) {
            dl_act_backward(act, NULL, y + at, dy + at, wk->dz, (int64_t)m * l->out_size);
            dz = wk->dz;
        }
        if (db)
            for (int b = 0; b < m; b++)
                conv_bias_grad(g, dz + (int64_t)b * l->out_size, g->plane, db);
        dl_wino_backward(&wg, wk->u, x + (int64_t)i0 * l->in_size, l->in_size,
                         (int64_t)g->h * g->w, dz, l->out_size, g->plane, m, i0 > 0, wk->du,
                         dx ? dx + (int64_t)i0 * l->in_size : NULL, wk->ws);
    }
    dl_wino_dfilter(wk->du, g->f, g->c, l->dw);
}

static int conv_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                         int n)
{
    conv_geom_t g;
    conv_geom(l, &g);
    if (n < 1) {
        memset(l->dw, 0, (size_t)conv_n_weights(l) * sizeof(float));
        if (l->db)
            memset(l->db, 0, (size_t)g.f * sizeof(float));
        return 0;
    }
    double *db = NULL, db_stack[256];
    if (l->db) {
        db = g.f <= 256 ? db_stack : calloc((size_t)g.f, sizeof(double));
        if (!db)
            return DL_ENOMEM;
        memset(db, 0, (size_t)g.f * sizeof(double));
    }
    if (conv_direct(&g)) {
        conv_backward_direct(l, &g, x, y, dy, dx, n, db);
    } else if (((conv_work_t *)l->work)->wino != DL_CONV_IM2COL) {
        conv_backward_wino(l, &g, x, y, dy, dx, n, db);
    } else {
        conv_work_t *wk = l->work;
        int64_t P = g.plane;
        for (int i0 = 0; i0 < n; i0 += wk->nb) {
            int m = n - i0 < wk->nb ? n - i0 : wk->nb;
            int64_t N = m * P;
            for (int b = 0; b < m; b++)
                im2col(&g, x + (int64_t)(i0 + b) * l->in_size, wk->col + b * P, N);
            /* dzb: the block's gradient before the activation, F x (m*P). */
            const float *dzb = wk->tmp;
            if (l->fuse_pool)
                conv_pool_gather(l, &g, y, dy, i0, m, wk->tmp, P, N);
            else
                dzb = conv_gather_dz(l, &g, y, dy, i0, m, wk->tmp);
            if (db)
                conv_bias_grad(&g, dzb, N, db);
            /* dW_g (fg x kg) (+)= dz_g (fg x N) . col_g^T (N x kg); the first block overwrites. */
            for (int gi = 0; gi < g.g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.fg, g.kg, (int)N, 1.0f,
                            dzb + gi * g.fg * N, (int)N, wk->col + gi * g.kg * N, (int)N,
                            i0 > 0 ? 1.0f : 0.0f, l->dw + (int64_t)gi * g.fg * g.kg, g.kg);
            if (!dx)
                continue;
            /* dcol_g (kg x N) = W_g^T (kg x fg) . dz_g (fg x N), into col (no longer needed). */
            for (int gi = 0; gi < g.g; gi++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.kg, (int)N, g.fg, 1.0f,
                            l->w + (int64_t)gi * g.fg * g.kg, g.kg, dzb + gi * g.fg * N, (int)N,
                            0.0f, wk->col + gi * g.kg * N, (int)N);
            for (int b = 0; b < m; b++)
                col2im(&g, wk->col + b * P, N, dx + (int64_t)(i0 + b) * l->in_size);
        }
    }
    if (db) {
        for (int f = 0; f < g.f; f++)
            l->db[f] = (float)db[f];
        if (db != db_stack)
            free(db);
    }
    return 0;
}

static int64_t conv_flops(const dl_layer_t *l)
{
    return 2 * conv_n_weights(l) * l->out.h * l->out.w;
}

const dl_layer_ops_t dl_conv_ops = {
    .name = "conv",
    .setup = conv_setup,
    .n_params = conv_n_params,
    .n_state = NULL,
    .alloc = conv_alloc,
    .release = conv_release,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .flops = conv_flops,
};

int dl_conv_set_algo(dl_layer_t *l, dl_conv_algo_t algo)
{
    conv_geom_t g;
    conv_geom(l, &g);
    conv_work_t *wk = l->work;
    if (!wk || !wk->u)
        return algo == DL_CONV_AUTO || algo == DL_CONV_IM2COL ? 0 : DL_EINPUT;
    if (algo == DL_CONV_AUTO)
        algo = conv_wino_pays(&g) ? DL_CONV_WINOGRAD_FWD : DL_CONV_IM2COL;
    wk->wino = algo;
    return 0;
}

dl_conv_algo_t dl_conv_get_algo(const dl_layer_t *l)
{
    const conv_work_t *wk = l->work;
    return wk && wk->u ? (dl_conv_algo_t)wk->wino : DL_CONV_IM2COL;
}
