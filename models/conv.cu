/* The convolution on the GPU (conv.c has the definition and the CPU's
 * faster paths): im2col into a column matrix for a chunk of samples, one
 * cuBLAS product per group, and a kernel that adds the bias, applies the
 * activation and puts the result in NCHW order in one pass over memory.
 *
 * Shapes: x: n x C x H x W, W: F x C/G x k x k, y: n x F x Ho x Wo. For a
 * chunk of m samples with P = Ho*Wo positions, M = m*P columns:
 *   col: C*k*k x M   (row (c*k + ky)*k + kx, column s*P + p)
 *   t:   F x M       (the product, or the gradient before the transpose)
 * Group g uses rows [g*C/G*k*k, ...) of col, rows [g*F/G, ...) of W and t. */
#include "cuda.cuh"

/* Columns of a chunk are capped at this many floats per buffer. */
#define CHUNK_FLOATS ((int64_t)1 << 25)

typedef struct conv_work {
    float *col, *t;
    int chunk;           /* samples per chunk */
    const float *col_of; /* the input whose whole batch col holds (NULL: none) */
    int col_n;           /* and its sample count */
} conv_work_t;

typedef struct geom {
    int c, h, w, f, k, s, p, ho, wo, groups;
    int64_t kk, krows, pos; /* k*k, C*k*k, Ho*Wo */
} geom_t;

static geom_t geom_of(const dl_layer_t *l)
{
    geom_t g;
    g.c = l->in.c, g.h = l->in.h, g.w = l->in.w, g.f = l->spec.filters, g.k = l->spec.size;
    g.s = l->spec.stride, g.p = l->spec.pad, g.ho = l->out.h, g.wo = l->out.w;
    g.groups = l->spec.groups;
    g.kk = (int64_t)g.k * g.k;
    g.krows = g.c * g.kk;
    g.pos = (int64_t)g.ho * g.wo;
    return g;
}

static dl_act_t conv_act(const dl_layer_t *l)
{
    return dl_act_fusable(l->spec.act) ? l->spec.act : DL_ACT_NONE;
}

static int conv_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    geom_t g = geom_of(l);
    conv_work_t *wk = (conv_work_t *)dl_calloc(1, sizeof *wk, err);
    if (!wk)
        return DL_ENOMEM;
    l->work = wk;
    int64_t rows = g.krows > g.f ? g.krows : g.f;
    int64_t chunk = CHUNK_FLOATS / (rows * g.pos);
    if (chunk < 1)
        chunk = 1;
    if (chunk > max_batch)
        chunk = max_batch;
    wk->chunk = (int)chunk;
    wk->col = (float *)dl_dev_alloc(DL_DEV_CUDA, (size_t)(g.krows * chunk * g.pos) * 4, err);
    wk->t =
        wk->col ? (float *)dl_dev_alloc(DL_DEV_CUDA, (size_t)(g.f * chunk * g.pos) * 4, err) : NULL;
    return wk->col && wk->t ? 0 : DL_ENOMEM;
}

static void conv_release(dl_layer_t *l)
{
    conv_work_t *wk = (conv_work_t *)l->work;
    if (!wk)
        return;
    dl_dev_free(DL_DEV_CUDA, wk->col);
    dl_dev_free(DL_DEV_CUDA, wk->t);
    free(wk);
    l->work = NULL;
}

/* col (krows x m*P) from m samples of x. */
__global__ void im2col(const float *x, geom_t g, int m, int64_t in_size, float *col)
{
    int64_t M = (int64_t)m * g.pos;
    GRID_LOOP(i, g.krows * M)
    {
        int64_t r = i / M, j = i % M;
        int64_t smp = j / g.pos, q = j % g.pos;
        int oy = (int)(q / g.wo), ox = (int)(q % g.wo);
        int ch = (int)(r / g.kk), ky = (int)((r / g.k) % g.k), kx = (int)(r % g.k);
        int iy = oy * g.s - g.p + ky, ix = ox * g.s - g.p + kx;
        float v = 0.0f;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            v = x[smp * in_size + ((int64_t)ch * g.h + iy) * g.w + ix];
        col[i] = v;
    }
}

/* dx of m samples from dcol: each input element gathers the columns that
 * read it (no atomics: the sums come out the same on every run). */
__global__ void col2im(const float *dcol, geom_t g, int m, int64_t in_size, float *dx)
{
    int64_t M = (int64_t)m * g.pos, plane = (int64_t)g.h * g.w;
    GRID_LOOP(i, (int64_t)m * in_size)
    {
        int64_t smp = i / in_size, e = i % in_size;
        int ch = (int)(e / plane);
        int iy = (int)((e % plane) / g.w), ix = (int)(e % g.w);
        float sum = 0.0f;
        for (int ky = 0; ky < g.k; ky++) {
            int ny = iy + g.p - ky;
            if (ny < 0 || ny % g.s)
                continue;
            int oy = ny / g.s;
            if (oy >= g.ho)
                continue;
            for (int kx = 0; kx < g.k; kx++) {
                int nx = ix + g.p - kx;
                if (nx < 0 || nx % g.s)
                    continue;
                int ox = nx / g.s;
                if (ox >= g.wo)
                    continue;
                int64_t r = ((int64_t)ch * g.k + ky) * g.k + kx;
                sum += dcol[r * M + smp * g.pos + (int64_t)oy * g.wo + ox];
            }
        }
        dx[i] = sum;
    }
}

/* y (m x F x P) = act(t (F x m*P) + b), t read in its own order. */
__global__ void bias_act_out(const float *t, const float *b, dl_act_t a, int f, int m, int64_t pos,
                             float *y)
{
    int64_t M = (int64_t)m * pos;
    GRID_LOOP(i, (int64_t)f * M)
    {
        int64_t smp = i / ((int64_t)f * pos), rest = i % ((int64_t)f * pos);
        int64_t fi = rest / pos, q = rest % pos;
        float v = t[fi * M + smp * pos + q] + (b ? b[fi] : 0.0f);
        y[i] = dl_dev_act(a, v);
    }
}

/* t (F x m*P) = dy * f'(.) from y, both m x F x P. */
__global__ void grad_in(const float *y, const float *dy, dl_act_t a, int f, int m, int64_t pos,
                        float *t)
{
    int64_t M = (int64_t)m * pos;
    GRID_LOOP(i, (int64_t)f * M)
    {
        int64_t smp = i / ((int64_t)f * pos), rest = i % ((int64_t)f * pos);
        int64_t fi = rest / pos, q = rest % pos;
        t[fi * M + smp * pos + q] = dl_dev_act_grad(a, 0.0f, y[i], dy[i]);
    }
}

static int forward(dl_layer_t *l, const float *x, float *y, int n, dl_err_t *err)
{
    conv_work_t *wk = (conv_work_t *)l->work;
    dl_cuda_t *gc = LAYER_CUDA(l);
    geom_t g = geom_of(l);
    int64_t kg = g.krows / g.groups, fg = g.f / g.groups, nw = fg * kg;
    wk->col_of = NULL;
    for (int s0 = 0; s0 < n; s0 += wk->chunk) {
        int m = n - s0 < wk->chunk ? n - s0 : wk->chunk;
        int64_t M = (int64_t)m * g.pos;
        im2col<<<blocks_for(g.krows * M), THREADS, 0, gc->stream>>>(x + s0 * l->in_size, g, m,
                                                                    l->in_size, wk->col);
        LAUNCH_CHECK(err);
        for (int gi = 0; gi < g.groups; gi++) {
            int rc =
                dl_cuda_gemm(gc, 0, 0, (int)fg, (int)M, (int)kg, 1.0f, l->w + gi * nw, (int)kg,
                             wk->col + gi * kg * M, (int)M, 0.0f, wk->t + gi * fg * M, (int)M, err);
            if (rc)
                return rc;
        }
        bias_act_out<<<blocks_for(g.f * M), THREADS, 0, gc->stream>>>(
            wk->t, l->b, conv_act(l), g.f, m, g.pos, y + s0 * l->out_size);
        LAUNCH_CHECK(err);
    }
    if (n <= wk->chunk) { /* backward can use the columns as they are */
        wk->col_of = x;
        wk->col_n = n;
    }
    return 0;
}

static int backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                    int n, dl_err_t *err)
{
    conv_work_t *wk = (conv_work_t *)l->work;
    dl_cuda_t *gc = LAYER_CUDA(l);
    geom_t g = geom_of(l);
    int64_t kg = g.krows / g.groups, fg = g.f / g.groups, nw = fg * kg;
    int rc = dl_cuda_ones(gc, (int64_t)wk->chunk * g.pos, err);
    for (int s0 = 0; !rc && s0 < n; s0 += wk->chunk) {
        int m = n - s0 < wk->chunk ? n - s0 : wk->chunk;
        int64_t M = (int64_t)m * g.pos;
        float beta = s0 ? 1.0f : 0.0f; /* the parameter gradients sum over chunks */
        grad_in<<<blocks_for(g.f * M), THREADS, 0, gc->stream>>>(
            y + s0 * l->out_size, dy + s0 * l->out_size, conv_act(l), g.f, m, g.pos, wk->t);
        LAUNCH_CHECK(err);
        if (l->db) /* db (F x 1) = t (F x M) . ones (M x 1) */
            rc = dl_cuda_gemm(gc, 0, 0, g.f, 1, (int)M, 1.0f, wk->t, (int)M, gc->ones, 1, beta,
                              l->db, 1, err);
        if (!rc && !(wk->col_of == x && wk->col_n == n)) {
            im2col<<<blocks_for(g.krows * M), THREADS, 0, gc->stream>>>(x + s0 * l->in_size, g, m,
                                                                        l->in_size, wk->col);
            LAUNCH_CHECK(err);
        }
        /* dW_g (fg x kg) = t_g (fg x M) . col_g^T (M x kg) */
        for (int gi = 0; !rc && gi < g.groups; gi++)
            rc = dl_cuda_gemm(gc, 0, 1, (int)fg, (int)kg, (int)M, 1.0f, wk->t + gi * fg * M, (int)M,
                              wk->col + gi * kg * M, (int)M, beta, l->dw + gi * nw, (int)kg, err);
        if (rc || !dx)
            continue;
        /* dcol_g (kg x M) = W_g^T (kg x fg) . t_g (fg x M), into col (read above already) */
        for (int gi = 0; !rc && gi < g.groups; gi++)
            rc =
                dl_cuda_gemm(gc, 1, 0, (int)kg, (int)M, (int)fg, 1.0f, l->w + gi * nw, (int)kg,
                             wk->t + gi * fg * M, (int)M, 0.0f, wk->col + gi * kg * M, (int)M, err);
        if (rc)
            break;
        col2im<<<blocks_for((int64_t)m * l->in_size), THREADS, 0, gc->stream>>>(
            wk->col, g, m, l->in_size, dx + s0 * l->in_size);
        LAUNCH_CHECK(err);
    }
    wk->col_of = NULL; /* col now holds gradients */
    return rc;
}

static int conv_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    return forward(l, x, y, n, LAYER_ERR(l));
}

static int conv_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                         int n)
{
    return backward(l, x, y, dy, dx, n, LAYER_ERR(l));
}

extern "C" const dl_layer_ops_t dl_conv_cuda_ops = {
    .name = "conv",
    .alloc = conv_alloc,
    .release = conv_release,
    .forward = conv_forward,
    .backward = conv_backward,
};
