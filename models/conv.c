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
 *
 * The activation after the convolution (spec.act) is applied here, on each
 * block's output while it is still in cache, and its derivative is folded
 * into the gathering of dy in backward: a separate activation layer would
 * cost a pass over the whole batch's output in each direction. Only
 * activations whose derivative follows from the output are fused (all but
 * GELU; see dl_act_fusable); the model gives GELU a layer of its own. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

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
    wk->col = direct ? NULL : dl_calloc((size_t)g.c * g.k * g.k * cols, sizeof(float), err);
    wk->tmp = dl_calloc((size_t)g.f * cols, sizeof(float), err);
    if ((!direct && !wk->col) || !wk->tmp) {
        free(wk->col);
        free(wk->tmp);
        free(wk);
        return DL_ENOMEM;
    }
    l->work = wk;
    return 0;
}

static void conv_release(dl_layer_t *l)
{
    conv_work_t *wk = l->work;
    if (wk) {
        free(wk->col);
        free(wk->tmp);
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

static int conv_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    conv_geom_t g;
    conv_geom(l, &g);
    if (conv_direct(&g)) {
        conv_forward_direct(l, &g, x, y, n);
        return 0;
    }
    conv_work_t *wk = l->work;
    int64_t P = g.plane;
    for (int i0 = 0; i0 < n; i0 += wk->nb) {
        int m = n - i0 < wk->nb ? n - i0 : wk->nb;
        int64_t N = m * P; /* columns of this block; also col's row stride */
        for (int b = 0; b < m; b++)
            im2col(&g, x + (int64_t)(i0 + b) * l->in_size, wk->col + b * P, N);
        /* One sample: sgemm writes y itself (F x P), bias added through beta = 1.
         * Several: out is tmp (F x m*P), copied to y's sample-major layout after. */
        float *out = m == 1 ? y + (int64_t)i0 * l->out_size : wk->tmp;
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
 * does not lose digits. */
static void conv_bias_grad(const conv_geom_t *g, const float *dz, int64_t N, double *db)
{
    for (int f = 0; f < g->f; f++) {
        const float *restrict r = dz + f * N;
        float sum = 0.0f;
        for (int64_t q = 0; q < N; q++)
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
    } else {
        conv_work_t *wk = l->work;
        int64_t P = g.plane;
        for (int i0 = 0; i0 < n; i0 += wk->nb) {
            int m = n - i0 < wk->nb ? n - i0 : wk->nb;
            int64_t N = m * P;
            for (int b = 0; b < m; b++)
                im2col(&g, x + (int64_t)(i0 + b) * l->in_size, wk->col + b * P, N);
            /* dzb: the block's gradient before the activation, F x (m*P). */
            const float *dzb = conv_gather_dz(l, &g, y, dy, i0, m, wk->tmp);
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
