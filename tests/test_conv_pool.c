/* Convolution and pooling layers: forward and backward against central finite
 * differences of f = sum(y * r) for a fixed random r (backward run with
 * dy = r, sums in double), convolution forward against a direct loop, the
 * Winograd path (forced with dl_conv_set_algo) against both and against
 * im2col, a max pool applied by the convolution (l->fuse_pool) against the
 * two layers run apart (bit-identical), every setup error message, and a
 * timing print (not an assertion)
 * of one convolution's forward and backward with each algorithm.
 *
 * Layers are built by hand: ops, spec, in shape, in_size; setup, alloc; the
 * parameter and gradient views point at the test's own arrays (weights first,
 * bias after them). DL_CONV_BENCH_BATCH sets the timed batch (default 128;
 * 0 skips the timing), so a run under valgrind can keep it small. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "models/model.h"
#include "models/winograd.h"

#define H 1e-2 /* step of the central differences; f32 rounding limits smaller steps */

static dl_rng_t rng;

static float *random_buf(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(scale * dl_rng_normal(&rng));
    return p;
}

/* A layer with its parameters and gradients in the test's arrays. */
typedef struct test_layer {
    dl_layer_t l;
    int64_t np;
    float *params, *grads;
} test_layer_t;

/* Build a layer for input shape (c, h, w) and batches up to max_batch; 0 on success. */
static int make_layer(test_layer_t *t, const dl_layer_ops_t *ops, dl_layer_spec_t spec, int c,
                      int h, int w, int max_batch)
{
    dl_err_t err = {0};
    memset(t, 0, sizeof *t);
    t->l.ops = ops;
    t->l.spec = spec;
    t->l.in = (dl_shape_t){c, h, w};
    t->l.in_size = (int64_t)c * h * w;
    if (ops->setup(&t->l, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    if (ops->alloc && ops->alloc(&t->l, max_batch, &err) != 0) {
        fprintf(stderr, "alloc: %s\n", err.msg);
        return -1;
    }
    t->np = ops->n_params(&t->l);
    t->params = calloc((size_t)(t->np > 0 ? t->np : 1), sizeof(float));
    t->grads = calloc((size_t)(t->np > 0 ? t->np : 1), sizeof(float));
    if (t->np > 0) {
        int64_t nw = t->np - (spec.bias ? spec.filters : 0);
        t->l.w = t->params;
        t->l.dw = t->grads;
        if (spec.bias) {
            t->l.b = t->params + nw;
            t->l.db = t->grads + nw;
        }
    }
    dl_rng_t init_rng;
    dl_rng_seed(&init_rng, 99, 0);
    ops->init(&t->l, &init_rng);
    /* A non-zero bias, so that its part in forward is checked too. */
    if (t->l.b)
        for (int f = 0; f < spec.filters; f++)
            t->l.b[f] = (float)(0.3 * dl_rng_normal(&rng));
    return 0;
}

static void free_layer(test_layer_t *t)
{
    if (t->l.ops->release)
        t->l.ops->release(&t->l);
    free(t->params);
    free(t->grads);
}

static double probe(dl_layer_t *l, const float *x, float *y, const float *r, int n)
{
    CHECK(l->ops->forward(l, x, y, n) == 0);
    double f = 0.0;
    for (int64_t i = 0; i < n * l->out_size; i++)
        f += (double)y[i] * r[i];
    return f;
}

/* Central difference of probe() with respect to *v. */
static double numeric(dl_layer_t *l, float *v, const float *x, float *y, const float *r, int n)
{
    float keep = *v;
    *v = keep + (float)H;
    double fp = probe(l, x, y, r, n);
    *v = keep - (float)H;
    double fm = probe(l, x, y, r, n);
    *v = keep;
    return (fp - fm) / (2.0 * H);
}

/* Check dx and the parameter gradients of t on n samples of input x (n x in_size,
 * random when x is NULL). Gradients start stale (7.0) and must be overwritten;
 * a second backward, with dx NULL, must give the same parameter gradients. */
static void check_layer(test_layer_t *t, int n, const float *x_in)
{
    dl_layer_t *l = &t->l;
    int64_t nin = n * l->in_size, nout = n * l->out_size;
    float *x = random_buf(nin, 1.0), *r = random_buf(nout, 1.0);
    float *y = malloc(sizeof(float) * (size_t)nout), *dx = malloc(sizeof(float) * (size_t)nin);
    float *g1 = malloc(sizeof(float) * (size_t)(t->np > 0 ? t->np : 1));
    if (x_in)
        memcpy(x, x_in, sizeof(float) * (size_t)nin);
    for (int64_t i = 0; i < t->np; i++)
        t->grads[i] = 7.0f;
    CHECK(l->ops->forward(l, x, y, n) == 0);
    CHECK(l->ops->backward(l, x, y, r, dx, n) == 0);
    for (int64_t i = 0; i < t->np; i++)
        g1[i] = t->grads[i];
    for (int64_t i = 0; i < nin; i++)
        CHECK_CLOSE(dx[i], numeric(l, &x[i], x, y, r, n), 2e-3, 2e-3);
    for (int64_t i = 0; i < t->np; i++)
        CHECK_CLOSE(t->grads[i], numeric(l, &t->params[i], x, y, r, n), 2e-3, 2e-3);
    for (int64_t i = 0; i < t->np; i++)
        t->grads[i] = 7.0f;
    CHECK(l->ops->forward(l, x, y, n) == 0);
    CHECK(l->ops->backward(l, x, y, r, NULL, n) == 0);
    for (int64_t i = 0; i < t->np; i++)
        CHECK(t->grads[i] == g1[i]);
    free(x);
    free(r);
    free(y);
    free(dx);
    free(g1);
}

static dl_layer_spec_t conv_spec(int filters, int size, int stride, int pad, int groups, int bias)
{
    return (dl_layer_spec_t){.type = DL_LAYER_CONV,
                             .filters = filters,
                             .size = size,
                             .stride = stride,
                             .pad = pad,
                             .groups = groups,
                             .bias = bias,
                             .line = 3};
}

/* One conv configuration through finite differences; also its shape, size and flops. */
static void test_conv_grad(int c, int h, int w, dl_layer_spec_t spec, int n, int max_batch)
{
    test_layer_t t;
    if (make_layer(&t, &dl_conv_ops, spec, c, h, w, max_batch) != 0) {
        CHECK(0);
        return;
    }
    int k = spec.size, ho = (h + 2 * spec.pad - k) / spec.stride + 1;
    int wo = (w + 2 * spec.pad - k) / spec.stride + 1, cg = c / spec.groups;
    CHECK(t.l.out.c == spec.filters && t.l.out.h == ho && t.l.out.w == wo);
    CHECK(t.l.out_size == (int64_t)spec.filters * ho * wo);
    CHECK(t.np == (int64_t)spec.filters * cg * k * k + (spec.bias ? spec.filters : 0));
    CHECK(t.l.ops->flops(&t.l) == 2LL * spec.filters * cg * k * k * ho * wo);
    check_layer(&t, n, NULL);
    free_layer(&t);
}

/* Direct convolution, in double: y[i][f][oh][ow] = b[f] + sum over the group's
 * channels and the window of w[f][cc][ki][kj] * x[i][c][ih][iw]. */
static void naive_conv(const dl_layer_t *l, const float *x, double *y, int n)
{
    int c = l->in.c, h = l->in.h, w = l->in.w, f = l->spec.filters, k = l->spec.size;
    int s = l->spec.stride, p = l->spec.pad, g = l->spec.groups, cg = c / g, fg = f / g;
    int ho = l->out.h, wo = l->out.w;
    for (int i = 0; i < n; i++)
        for (int fo = 0; fo < f; fo++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    double sum = l->b ? l->b[fo] : 0.0;
                    for (int cc = 0; cc < cg; cc++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int ih = oh * s - p + ki, iw = ow * s - p + kj;
                                int ci = fo / fg * cg + cc;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= w)
                                    continue;
                                sum += (double)l->w[((fo * cg + cc) * k + ki) * k + kj] *
                                       x[((i * c + ci) * h + ih) * w + iw];
                            }
                    y[((i * f + fo) * ho + oh) * wo + ow] = sum;
                }
}

static void test_conv_naive(int c, int h, int w, dl_layer_spec_t spec, int n, int max_batch)
{
    test_layer_t t;
    if (make_layer(&t, &dl_conv_ops, spec, c, h, w, max_batch) != 0) {
        CHECK(0);
        return;
    }
    int64_t nout = n * t.l.out_size;
    float *x = random_buf(n * t.l.in_size, 1.0), *y = malloc(sizeof(float) * (size_t)nout);
    double *ref = malloc(sizeof(double) * (size_t)nout);
    CHECK(t.l.ops->forward(&t.l, x, y, n) == 0);
    naive_conv(&t.l, x, ref, n);
    for (int64_t i = 0; i < nout; i++)
        CHECK_CLOSE(y[i], ref[i], 1e-5, 1e-5);
    free(x);
    free(y);
    free(ref);
    free_layer(&t);
}

static void test_conv(void)
{
    /* 3x3 stride 1 pad 1 with bias, non-square input. */
    test_conv_grad(3, 7, 6, conv_spec(4, 3, 1, 1, 1, 1), 2, 2);
    /* 3x3 stride 2 pad 0 without bias. */
    test_conv_grad(2, 9, 8, conv_spec(3, 3, 2, 0, 1, 0), 2, 2);
    /* 5x5 with groups 2 (C = 4, F = 6), pad 2. */
    test_conv_grad(4, 7, 7, conv_spec(6, 5, 1, 2, 2, 1), 2, 2);
    /* 1x1 on a small plane (blocked path) and on a 16x17 plane (x used directly). */
    test_conv_grad(3, 4, 5, conv_spec(5, 1, 1, 0, 1, 1), 2, 2);
    test_conv_grad(3, 16, 17, conv_spec(4, 1, 1, 0, 1, 1), 2, 2);
    /* 1x1 stride 2: goes through im2col. */
    test_conv_grad(2, 5, 6, conv_spec(3, 1, 2, 0, 1, 1), 2, 2);
    /* A batch of 3 samples (one block, columns side by side); 6 samples of a
     * 9x9 plane (blocks of 4 and 2 with conv.c's 256-column target); 4
     * samples of a 20x20 plane (one sample per block, y written directly). */
    test_conv_grad(2, 6, 5, conv_spec(3, 3, 1, 1, 1, 1), 3, 3);
    test_conv_grad(2, 9, 9, conv_spec(3, 3, 1, 1, 1, 1), 6, 6);
    test_conv_grad(2, 20, 20, conv_spec(2, 3, 1, 1, 1, 1), 4, 4);
    /* Direct loops: groups, stride 2, padding, several blocks. */
    test_conv_naive(4, 11, 9, conv_spec(6, 3, 2, 1, 2, 1), 3, 3);
    test_conv_naive(3, 30, 31, conv_spec(8, 3, 1, 1, 1, 1), 5, 5);
    test_conv_naive(6, 17, 16, conv_spec(4, 1, 1, 0, 2, 0), 3, 3);
    test_conv_naive(3, 10, 10, conv_spec(5, 3, 1, 1, 1, 1), 7, 7);
    test_conv_naive(2, 12, 13, conv_spec(4, 4, 3, 2, 1, 1), 3, 3);
}

/* A conv layer forced onto the given algorithm; 0 on success. */
static int make_conv(test_layer_t *t, dl_layer_spec_t spec, int c, int h, int w, int max_batch,
                     dl_conv_algo_t algo)
{
    if (make_layer(t, &dl_conv_ops, spec, c, h, w, max_batch) != 0)
        return -1;
    if (dl_conv_set_algo(&t->l, algo) != 0) {
        free_layer(t);
        return -1;
    }
    CHECK(dl_conv_get_algo(&t->l) == algo);
    return 0;
}

static dl_layer_spec_t with_act(dl_layer_spec_t spec, dl_act_t act)
{
    spec.act = act;
    return spec;
}

/* Winograd (forward pass too) through finite differences of dx, dW and db. */
static void test_wino_grad(int c, int h, int w, dl_layer_spec_t spec, int n, int max_batch)
{
    test_layer_t t;
    if (make_conv(&t, spec, c, h, w, max_batch, DL_CONV_WINOGRAD_FWD) != 0) {
        CHECK(0);
        return;
    }
    check_layer(&t, n, NULL);
    free_layer(&t);
}

/* Winograd forward against the direct loop (with the fused activation applied
 * to it), to 1e-5 of max |y|: F(4x4, 3x3) in float with winograd.c's
 * interpolation points is that accurate (about 2e-6 at 32 channels). */
static void test_wino_naive(int c, int h, int w, dl_layer_spec_t spec, int n, int max_batch)
{
    test_layer_t t;
    if (make_conv(&t, spec, c, h, w, max_batch, DL_CONV_WINOGRAD_FWD) != 0) {
        CHECK(0);
        return;
    }
    int64_t nout = n * t.l.out_size;
    float *x = random_buf(n * t.l.in_size, 1.0), *y = malloc(sizeof(float) * (size_t)nout);
    double *ref = malloc(sizeof(double) * (size_t)nout), big = 0.0;
    CHECK(t.l.ops->forward(&t.l, x, y, n) == 0);
    naive_conv(&t.l, x, ref, n);
    for (int64_t i = 0; i < nout; i++) {
        if (spec.act == DL_ACT_RELU && ref[i] < 0.0)
            ref[i] = 0.0;
        big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
    }
    CHECK(big > 0.0);
    for (int64_t i = 0; i < nout; i++)
        CHECK_CLOSE(y[i], ref[i], 0, 1e-5 * big);
    free(x);
    free(y);
    free(ref);
    free_layer(&t);
}

/* Winograd's y, dx, dW and db against im2col's on the same layer and data,
 * to 1e-5 of the largest magnitude of each, for both Winograd modes: sizes
 * too large for finite differences, and ReLU, whose kink finite differences
 * can straddle. */
static void test_wino_vs_im2col(int c, int h, int w, dl_layer_spec_t spec, int n, int max_batch)
{
    test_layer_t t;
    if (make_conv(&t, spec, c, h, w, max_batch, DL_CONV_IM2COL) != 0) {
        CHECK(0);
        return;
    }
    int64_t nin = n * t.l.in_size, nout = n * t.l.out_size;
    float *x = random_buf(nin, 1.0), *dy = random_buf(nout, 1.0);
    float *y[3], *dx[3], *g[3];
    dl_conv_algo_t algo[3] = {DL_CONV_IM2COL, DL_CONV_WINOGRAD, DL_CONV_WINOGRAD_FWD};
    for (int a = 0; a < 3; a++) {
        y[a] = malloc(sizeof(float) * (size_t)nout);
        dx[a] = malloc(sizeof(float) * (size_t)nin);
        g[a] = malloc(sizeof(float) * (size_t)t.np);
        CHECK(dl_conv_set_algo(&t.l, algo[a]) == 0);
        CHECK(t.l.ops->forward(&t.l, x, y[a], n) == 0);
        CHECK(t.l.ops->backward(&t.l, x, y[a], dy, dx[a], n) == 0);
        memcpy(g[a], t.grads, sizeof(float) * (size_t)t.np);
    }
    /* The gradients-only mode leaves the forward pass to im2col, bit for bit. */
    CHECK(memcmp(y[0], y[1], sizeof(float) * (size_t)nout) == 0);
    for (int a = 1; a < 3; a++) {
        const float *pa[3] = {y[0], dx[0], g[0]}, *pb[3] = {y[a], dx[a], g[a]};
        int64_t len[3] = {nout, nin, t.np};
        for (int k = 0; k < 3; k++) {
            double big = 0.0;
            for (int64_t i = 0; i < len[k]; i++)
                big = fabs(pa[k][i]) > big ? fabs(pa[k][i]) : big;
            CHECK(big > 0.0);
            for (int64_t i = 0; i < len[k]; i++)
                CHECK_CLOSE(pb[k][i], pa[k][i], 0, 1e-5 * big);
        }
    }
    for (int a = 0; a < 3; a++) {
        free(y[a]);
        free(dx[a]);
        free(g[a]);
    }
    free(x);
    free(dy);
    free_layer(&t);
}

static void test_wino(void)
{
    /* Odd outputs need partial tiles: 7x7 (pad 1), 5x9 (pad 0), 5x6 (pad 2 on 3x4). */
    test_wino_grad(1, 7, 7, conv_spec(3, 3, 1, 1, 1, 1), 2, 2);
    test_wino_grad(2, 7, 11, conv_spec(3, 3, 1, 0, 1, 0), 2, 2);
    test_wino_grad(3, 3, 4, conv_spec(2, 3, 1, 2, 1, 1), 3, 3);
    /* A fused smooth activation on 25 tiles a sample. (Several blocks of
     * samples: test_wino_vs_im2col below, 9 samples of 32 channels at 14x14 in
     * blocks of 4, 4 and 1. Finite differences on 40x40, where blocks hold 3
     * samples, miss by 1% on im2col as on Winograd: sums over too many
     * outputs for a float central difference.) */
    test_wino_grad(1, 20, 20, with_act(conv_spec(2, 3, 1, 1, 1, 1), DL_ACT_TANH), 4, 4);
    test_wino_grad(32, 5, 9, with_act(conv_spec(4, 3, 1, 1, 1, 1), DL_ACT_TANH), 2, 2);
    test_wino_grad(32, 4, 3, conv_spec(2, 3, 1, 2, 1, 0), 1, 1);
    /* Forward against direct loops: C = 1 and 32, pads 0, 1, 2, odd and even sizes, ReLU. */
    test_wino_naive(1, 28, 28, with_act(conv_spec(32, 3, 1, 1, 1, 1), DL_ACT_RELU), 3, 3);
    test_wino_naive(32, 14, 14, with_act(conv_spec(64, 3, 1, 1, 1, 1), DL_ACT_RELU), 9, 9);
    test_wino_naive(32, 7, 7, conv_spec(16, 3, 1, 1, 1, 0), 4, 4);
    test_wino_naive(32, 7, 11, conv_spec(8, 3, 1, 0, 1, 1), 3, 3);
    test_wino_naive(5, 6, 9, conv_spec(7, 3, 1, 2, 1, 1), 3, 3);
    test_wino_naive(3, 3, 3, conv_spec(4, 3, 1, 0, 1, 1), 2, 2); /* a single 1x1 output */
    /* Backward against im2col, with ReLU, bias or not, pads 0..2, several blocks. */
    test_wino_vs_im2col(32, 14, 14, with_act(conv_spec(64, 3, 1, 1, 1, 1), DL_ACT_RELU), 9, 9);
    test_wino_vs_im2col(32, 9, 7, with_act(conv_spec(16, 3, 1, 0, 1, 0), DL_ACT_RELU), 5, 5);
    test_wino_vs_im2col(16, 5, 8, with_act(conv_spec(32, 3, 1, 2, 1, 1), DL_ACT_RELU), 4, 4);
    test_wino_vs_im2col(1, 28, 28, with_act(conv_spec(32, 3, 1, 1, 1, 1), DL_ACT_RELU), 3, 3);

    /* The gradients-only mode through finite differences. */
    test_layer_t t;
    if (make_conv(&t, conv_spec(3, 3, 1, 1, 1, 1), 2, 5, 7, 2, DL_CONV_WINOGRAD) == 0) {
        check_layer(&t, 2, NULL);
        free_layer(&t);
    }
    /* The automatic choice: Winograd, forward pass included, with channels on
     * both sides, not for C = 1 (the first layer) nor where it does not apply
     * (stride 2, groups, 5x5). */
    dl_layer_spec_t ok = conv_spec(64, 3, 1, 1, 1, 1);
    if (make_layer(&t, &dl_conv_ops, ok, 32, 14, 14, 4) == 0)
        CHECK(dl_conv_get_algo(&t.l) == DL_CONV_WINOGRAD_FWD);
    free_layer(&t);
    if (make_layer(&t, &dl_conv_ops, conv_spec(32, 3, 1, 1, 1, 1), 1, 28, 28, 4) == 0) {
        CHECK(dl_conv_get_algo(&t.l) == DL_CONV_IM2COL);
        CHECK(dl_conv_set_algo(&t.l, DL_CONV_WINOGRAD) == 0);
        CHECK(dl_conv_set_algo(&t.l, DL_CONV_AUTO) == 0);
        CHECK(dl_conv_get_algo(&t.l) == DL_CONV_IM2COL);
    }
    free_layer(&t);
    dl_layer_spec_t no[3] = {conv_spec(64, 3, 2, 1, 1, 1), conv_spec(64, 3, 1, 1, 2, 1),
                             conv_spec(64, 5, 1, 2, 1, 1)};
    for (int i = 0; i < 3; i++)
        if (make_layer(&t, &dl_conv_ops, no[i], 32, 14, 14, 4) == 0) {
            CHECK(dl_conv_get_algo(&t.l) == DL_CONV_IM2COL);
            CHECK(dl_conv_set_algo(&t.l, DL_CONV_WINOGRAD) == DL_EINPUT);
            CHECK(dl_conv_set_algo(&t.l, DL_CONV_WINOGRAD_FWD) == DL_EINPUT);
            CHECK(dl_conv_get_algo(&t.l) == DL_CONV_IM2COL);
            free_layer(&t);
        }
}

/* Build specs[0..n) as a model with and without fusion (same parameters),
 * run x (batch samples) forward and dout backward through both, and require
 * bit-identical outputs, parameter gradients and input gradients. Returns
 * whether the fused model fused its first layer. */
static int fused_vs_apart(const dl_layer_spec_t *specs, int n, dl_shape_t in, int batch,
                          dl_conv_algo_t algo, const float *x)
{
    dl_model_t m[2];
    dl_err_t err = {0};
    const float *out[2];
    for (int k = 0; k < 2; k++) {
        int rc = dl_model_build_flags(&m[k], specs, n, in, batch, k ? DL_MODEL_NO_FUSION : 0, &err);
        CHECK(rc == 0);
        if (rc) {
            fprintf(stderr, "%s\n", err.msg);
            if (k)
                dl_model_free(&m[0]);
            return -1;
        }
        dl_model_init_params(&m[k], 7);
        m[k].input_grad = 1;
        m[k].ctx.training = 1;
        if (algo != DL_CONV_AUTO)
            CHECK(dl_conv_set_algo(&m[k].layers[0], algo) == 0);
        out[k] = dl_model_forward(&m[k], x, batch, &err);
        CHECK(out[k] != NULL);
    }
    int fused = m[0].layers[0].fuse_pool;
    CHECK(!m[1].layers[0].fuse_pool);
    int64_t no = (int64_t)batch * m[0].out_size, ni = (int64_t)batch * m[0].in_size;
    if (out[0] && out[1])
        CHECK(memcmp(out[0], out[1], sizeof(float) * (size_t)no) == 0);
    float *dout = random_buf(no, 1.0);
    for (int k = 0; k < 2; k++)
        CHECK(dl_model_backward(&m[k], dout, batch, &err) == 0);
    CHECK(memcmp(m[0].grads, m[1].grads, sizeof(float) * (size_t)m[0].n_params) == 0);
    CHECK(memcmp(m[0].dacts[0], m[1].dacts[0], sizeof(float) * (size_t)ni) == 0);
    free(dout);
    dl_model_free(&m[0]);
    dl_model_free(&m[1]);
    return fused;
}

/* One conv + 2x2 max pool case; ties (inputs rounded to a few levels, so
 * that many windows hold equal maxima) when quantise, and a NaN in the
 * input when nan (it must win its windows, as in torch, both ways). */
static void test_fused_case(int c, int h, int w, dl_layer_spec_t conv, dl_conv_algo_t algo,
                            int batch, int quantise, int nan)
{
    dl_layer_spec_t specs[2] = {conv,
                                {.type = DL_LAYER_MAXPOOL, .size = 2, .stride = 2, .line = 4}};
    int64_t n = (int64_t)batch * c * h * w;
    float *x = random_buf(n, 1.0);
    for (int64_t i = 0; quantise && i < n; i++)
        x[i] = (float)(x[i] > 0.5) - (float)(x[i] < -0.5);
    if (nan)
        x[n / 2] = NAN;
    CHECK(fused_vs_apart(specs, 2, (dl_shape_t){c, h, w}, batch, algo, x) == 1);
    free(x);
}

static void test_fused_pool(void)
{
    dl_act_t acts[] = {DL_ACT_RELU, DL_ACT_LEAKY, DL_ACT_TANH, DL_ACT_NONE};
    for (int a = 0; a < 4; a++) {
        /* im2col, one sample per block (28x28: the output written as it comes). */
        test_fused_case(1, 28, 28, with_act(conv_spec(8, 3, 1, 1, 1, 1), acts[a]), DL_CONV_AUTO, 3,
                        0, 0);
        /* im2col, several samples per block; odd planes (the last row and
         * column belong to no window); no bias; stride 2. */
        test_fused_case(3, 9, 7, with_act(conv_spec(5, 3, 1, 1, 1, 0), acts[a]), DL_CONV_AUTO, 5, 0,
                        0);
        test_fused_case(2, 11, 12, with_act(conv_spec(4, 3, 2, 1, 1, 1), acts[a]), DL_CONV_AUTO, 4,
                        1, 0);
        /* Winograd gradients (the default at 16 channels) and Winograd forward. */
        test_fused_case(16, 14, 14, with_act(conv_spec(16, 3, 1, 1, 1, 1), acts[a]), DL_CONV_AUTO,
                        7, a == 0, 0);
        test_fused_case(16, 13, 14, with_act(conv_spec(16, 3, 1, 1, 1, 1), acts[a]),
                        DL_CONV_WINOGRAD_FWD, 3, 0, 0);
    }
    /* Ties everywhere, and a NaN. */
    test_fused_case(1, 12, 12, with_act(conv_spec(4, 3, 1, 1, 1, 0), DL_ACT_RELU), DL_CONV_AUTO, 4,
                    1, 0);
    test_fused_case(2, 10, 10, with_act(conv_spec(4, 3, 1, 1, 1, 1), DL_ACT_LEAKY), DL_CONV_AUTO, 2,
                    0, 1);

    /* Not fused: a 1x1 convolution that reads its input in place (16x16
     * plane), a 3x3 pool, and a convolution whose own output a shortcut also
     * reads (conv 4x8x8, pool 4x4x4, 1x1 conv pad 2 back to 4x8x8, shortcut
     * from the first conv). The model gives the same results all the same. */
    float *x = random_buf(2 * 3 * 16 * 16, 1.0);
    dl_layer_spec_t one[2] = {with_act(conv_spec(4, 1, 1, 0, 1, 1), DL_ACT_RELU),
                              {.type = DL_LAYER_MAXPOOL, .size = 2, .stride = 2, .line = 4}};
    CHECK(fused_vs_apart(one, 2, (dl_shape_t){3, 16, 16}, 2, DL_CONV_AUTO, x) == 0);
    dl_layer_spec_t big[2] = {with_act(conv_spec(4, 3, 1, 1, 1, 1), DL_ACT_RELU),
                              {.type = DL_LAYER_MAXPOOL, .size = 3, .stride = 2, .line = 4}};
    CHECK(fused_vs_apart(big, 2, (dl_shape_t){3, 16, 16}, 2, DL_CONV_AUTO, x) == 0);
    dl_layer_spec_t sc[4] = {with_act(conv_spec(4, 3, 1, 1, 1, 1), DL_ACT_RELU),
                             {.type = DL_LAYER_MAXPOOL, .size = 2, .stride = 2, .line = 4},
                             conv_spec(4, 1, 1, 2, 1, 1),
                             {.type = DL_LAYER_SHORTCUT, .from = 0, .line = 6}};
    CHECK(fused_vs_apart(sc, 4, (dl_shape_t){3, 8, 8}, 2, DL_CONV_AUTO, x) == 0);
    free(x);
}

static void test_conv_init(void)
{
    /* Kaiming normal (AUTO before ReLU): variance 2 / fan_in with fan_in = (C/g)*k*k;
     * Xavier uniform: 2 / (fan_in + fan_out), fan_out = F*k*k. */
    dl_layer_spec_t kai = conv_spec(64, 3, 1, 1, 2, 1), xav = conv_spec(64, 3, 1, 1, 2, 1);
    kai.act = DL_ACT_RELU;
    xav.act = DL_ACT_TANH;
    test_layer_t t;
    if (make_layer(&t, &dl_conv_ops, kai, 32, 5, 5, 1) == 0) {
        double v = 0;
        int64_t nw = t.np - 64;
        for (int64_t i = 0; i < nw; i++)
            v += (double)t.l.w[i] * t.l.w[i];
        CHECK_CLOSE(v / (double)nw, 2.0 / (16 * 9), 0.05, 0);
        dl_rng_t r2;
        dl_rng_seed(&r2, 1, 0);
        t.l.ops->init(&t.l, &r2);
        CHECK(t.l.b[0] == 0.0f && t.l.b[63] == 0.0f);
    }
    free_layer(&t);
    if (make_layer(&t, &dl_conv_ops, xav, 32, 5, 5, 1) == 0) {
        double v = 0;
        int64_t nw = t.np - 64;
        for (int64_t i = 0; i < nw; i++)
            v += (double)t.l.w[i] * t.l.w[i];
        CHECK_CLOSE(v / (double)nw, 2.0 / (16 * 9 + 64 * 9), 0.05, 0);
    }
    free_layer(&t);
}

/* Inputs with distinct values at least 0.05 apart, in a random order, so that
 * the finite differences of max pooling never cross a tie. */
static float *spaced_buf(int64_t n)
{
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)n);
    dl_rng_permutation(&rng, perm, n);
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.05f * (float)(perm[i] - n / 2);
    free(perm);
    return x;
}

static void test_pool_grad(const dl_layer_ops_t *ops, int c, int h, int w, int size, int stride,
                           int pad, int n, int eho, int ewo)
{
    dl_layer_spec_t spec = {.type = ops == &dl_maxpool_ops ? DL_LAYER_MAXPOOL : DL_LAYER_AVGPOOL,
                            .size = size,
                            .stride = stride,
                            .pad = pad,
                            .line = 5};
    test_layer_t t;
    if (make_layer(&t, ops, spec, c, h, w, n) != 0) {
        CHECK(0);
        return;
    }
    CHECK(t.np == 0);
    CHECK(t.l.out.c == c && t.l.out.h == eho && t.l.out.w == ewo);
    CHECK(t.l.out_size == (int64_t)c * eho * ewo);
    int64_t per = size ? (int64_t)size * size * t.l.out_size : (int64_t)c * h * w;
    CHECK(t.l.ops->flops(&t.l) == per);
    float *x = spaced_buf(n * t.l.in_size);
    check_layer(&t, n, x);
    free(x);
    free_layer(&t);
}

/* Known values: a 4x4 plane 0..15, 2x2 windows. */
static void test_pool_values(void)
{
    float x[16], y[4], dy[4] = {1, 2, 3, 4}, dx[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    dl_layer_spec_t spec = {.type = DL_LAYER_MAXPOOL, .size = 2, .stride = 2};
    test_layer_t t;
    if (make_layer(&t, &dl_maxpool_ops, spec, 1, 4, 4, 1) == 0) {
        t.l.ops->forward(&t.l, x, y, 1);
        CHECK(y[0] == 5 && y[1] == 7 && y[2] == 13 && y[3] == 15);
        t.l.ops->backward(&t.l, x, y, dy, dx, 1);
        CHECK(dx[5] == 1 && dx[7] == 2 && dx[13] == 3 && dx[15] == 4 && dx[0] == 0);
    }
    free_layer(&t);
    /* A tie goes to the first maximum in scan order. */
    float tie[4] = {1, 3, 3, 3}, ty, tdy = 1, tdx[4];
    if (make_layer(&t, &dl_maxpool_ops, spec, 1, 2, 2, 1) == 0) {
        t.l.ops->forward(&t.l, tie, &ty, 1);
        t.l.ops->backward(&t.l, tie, &ty, &tdy, tdx, 1);
        CHECK(ty == 3 && tdx[1] == 1 && tdx[2] == 0 && tdx[3] == 0);
    }
    free_layer(&t);
    spec.type = DL_LAYER_AVGPOOL;
    if (make_layer(&t, &dl_avgpool_ops, spec, 1, 4, 4, 1) == 0) {
        t.l.ops->forward(&t.l, x, y, 1);
        CHECK(y[0] == 2.5f && y[1] == 4.5f && y[2] == 10.5f && y[3] == 12.5f);
    }
    free_layer(&t);
    /* count_include_pad: a 3x3 window at the corner holds 4 inputs, divided by 9. */
    spec.size = 3;
    spec.stride = 1;
    spec.pad = 1;
    float y16[16];
    if (make_layer(&t, &dl_avgpool_ops, spec, 1, 4, 4, 1) == 0) {
        t.l.ops->forward(&t.l, x, y16, 1);
        CHECK_CLOSE(y16[0], (0 + 1 + 4 + 5) / 9.0, 1e-6, 0);
    }
    free_layer(&t);
    spec.size = 0;
    if (make_layer(&t, &dl_avgpool_ops, spec, 1, 4, 4, 1) == 0) {
        t.l.ops->forward(&t.l, x, y, 1);
        CHECK(y[0] == 7.5f);
    }
    free_layer(&t);
}

static void test_pool(void)
{
    test_pool_grad(&dl_maxpool_ops, 3, 6, 8, 2, 2, 0, 2, 3, 4);
    test_pool_grad(&dl_maxpool_ops, 2, 7, 6, 3, 2, 1, 2, 4, 3);
    test_pool_grad(&dl_maxpool_ops, 2, 5, 5, 2, 2, 0, 1, 2, 2); /* odd size: last row dropped */
    test_pool_grad(&dl_avgpool_ops, 3, 6, 8, 2, 2, 0, 2, 3, 4);
    test_pool_grad(&dl_avgpool_ops, 2, 5, 6, 3, 1, 1, 2, 5, 6);
    test_pool_grad(&dl_avgpool_ops, 4, 3, 5, 0, 0, 0, 3, 1, 1);
    test_pool_values();
}

/* setup() of spec on input (c, h, w) fails with DL_EINPUT and a message containing want. */
static void check_setup_error(const dl_layer_ops_t *ops, dl_layer_spec_t spec, int c, int h, int w,
                              const char *prefix, const char *want)
{
    dl_layer_t l = {.ops = ops, .spec = spec, .in = {c, h, w}, .in_size = (int64_t)c * h * w};
    dl_err_t err = {0};
    CHECK(ops->setup(&l, &err) == DL_EINPUT);
    CHECK(err.code == DL_EINPUT);
    CHECK(strncmp(err.msg, prefix, strlen(prefix)) == 0);
    CHECK_CONTAINS(err.msg, want);
}

static void test_setup_errors(void)
{
    const char *cp = "line 3: [conv] ";
    check_setup_error(&dl_conv_ops, conv_spec(0, 3, 1, 0, 1, 1), 3, 8, 8, cp,
                      "filters = 0; it must be >= 1");
    check_setup_error(&dl_conv_ops, conv_spec(4, 0, 1, 0, 1, 1), 3, 8, 8, cp,
                      "size = 0; the kernel size must be >= 1");
    check_setup_error(&dl_conv_ops, conv_spec(4, 3, 0, 0, 1, 1), 3, 8, 8, cp,
                      "stride = 0; it must be >= 1");
    check_setup_error(&dl_conv_ops, conv_spec(4, 3, 1, -1, 1, 1), 3, 8, 8, cp,
                      "pad = -1; it must be >= 0");
    check_setup_error(&dl_conv_ops, conv_spec(4, 3, 1, 0, 0, 1), 3, 8, 8, cp,
                      "groups = 0; it must be >= 1");
    check_setup_error(&dl_conv_ops, conv_spec(4, 3, 1, 0, 2, 1), 3, 8, 8, cp,
                      "groups = 2 does not divide both the 3 input channels and the 4 filters; "
                      "groups must divide both");
    check_setup_error(&dl_conv_ops, conv_spec(3, 3, 1, 0, 2, 1), 4, 8, 8, cp,
                      "groups = 2 does not divide both the 4 input channels and the 3 filters");
    check_setup_error(&dl_conv_ops, conv_spec(4, 7, 1, 1, 1, 1), 3, 4, 6, cp,
                      "kernel size 7 does not fit the 4x6 input padded by 1 (6x8); size must be "
                      "<= 6");

    dl_layer_spec_t mp = {.type = DL_LAYER_MAXPOOL, .size = 2, .stride = 2, .line = 8};
    const char *mpp = "line 8: [maxpool] ";
    mp.size = 0;
    check_setup_error(&dl_maxpool_ops, mp, 2, 8, 8, mpp, "size = 0; it must be >= 1");
    mp.size = 2;
    mp.stride = 0;
    check_setup_error(&dl_maxpool_ops, mp, 2, 8, 8, mpp, "stride = 0; it must be >= 1");
    mp.stride = 2;
    mp.pad = -1;
    check_setup_error(&dl_maxpool_ops, mp, 2, 8, 8, mpp, "pad = -1; it must be >= 0");
    mp.pad = 2;
    mp.size = 3;
    check_setup_error(&dl_maxpool_ops, mp, 2, 8, 8, mpp,
                      "pad = 2 is more than half the window size 3; pad must be <= size/2 = 1");
    mp.pad = 0;
    mp.size = 5;
    check_setup_error(&dl_maxpool_ops, mp, 2, 4, 8, mpp,
                      "window size 5 does not fit the 4x8 input padded by 0 (4x8); size must be "
                      "<= 4");

    dl_layer_spec_t ap = {.type = DL_LAYER_AVGPOOL, .size = -1, .stride = 1, .line = 9};
    const char *app = "line 9: [avgpool] ";
    check_setup_error(&dl_avgpool_ops, ap, 2, 8, 8, app,
                      "size = -1; it must be >= 1, or 0 for global average pooling");
    ap.size = 2;
    ap.stride = 0;
    check_setup_error(&dl_avgpool_ops, ap, 2, 8, 8, app, "stride = 0; it must be >= 1");
    ap.stride = 1;
    ap.pad = -2;
    check_setup_error(&dl_avgpool_ops, ap, 2, 8, 8, app, "pad = -2; it must be >= 0");
    ap.pad = 2;
    check_setup_error(&dl_avgpool_ops, ap, 2, 8, 8, app,
                      "pad = 2 is more than half the window size 2; pad must be <= size/2 = 1");
    ap.size = 9;
    ap.pad = 0;
    check_setup_error(&dl_avgpool_ops, ap, 2, 8, 8, app,
                      "window size 9 does not fit the 8x8 input padded by 0 (8x8); size must be "
                      "<= 8");
}

static double now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Timing print: F=64, C=32, 14x14, k=3, pad 1, one thread, with each
 * algorithm (im2col; Winograd gradients, the default; Winograd forward too);
 * GFLOP/s counts the direct convolution's forward flops x 3 (forward, weight
 * gradient, input gradient). */
static void bench_conv_algo(int batch, dl_conv_algo_t algo, const char *name)
{
    test_layer_t t;
    dl_layer_spec_t spec = conv_spec(64, 3, 1, 1, 1, 1);
    if (make_conv(&t, spec, 32, 14, 14, batch, algo) != 0) {
        CHECK(0);
        return;
    }
    int64_t nin = batch * t.l.in_size, nout = batch * t.l.out_size;
    float *x = random_buf(nin, 1.0), *dy = random_buf(nout, 1.0);
    float *y = malloc(sizeof(float) * (size_t)nout), *dx = malloc(sizeof(float) * (size_t)nin);
    enum { REPS = 5 };
    /* Wall-clock and process CPU time: on a shared machine the second is the
     * one that other processes disturb less. */
    double tf[REPS], tb[REPS], tot[REPS], cpu[REPS];
    t.l.ops->forward(&t.l, x, y, batch); /* warm-up */
    t.l.ops->backward(&t.l, x, y, dy, dx, batch);
    for (int rep = 0; rep < REPS; rep++) {
        double c0 = now(CLOCK_PROCESS_CPUTIME_ID), t0 = now(CLOCK_MONOTONIC);
        t.l.ops->forward(&t.l, x, y, batch);
        double t1 = now(CLOCK_MONOTONIC);
        t.l.ops->backward(&t.l, x, y, dy, dx, batch);
        double t2 = now(CLOCK_MONOTONIC);
        cpu[rep] = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        tf[rep] = t1 - t0;
        tb[rep] = t2 - t1;
        tot[rep] = t2 - t0;
    }
    qsort(tf, REPS, sizeof(double), cmp_double);
    qsort(tb, REPS, sizeof(double), cmp_double);
    qsort(tot, REPS, sizeof(double), cmp_double);
    qsort(cpu, REPS, sizeof(double), cmp_double);
    double fl = (double)t.l.ops->flops(&t.l) * batch;
    printf("conv F=64 C=32 14x14 k=3 pad=1 batch=%d, %s, 1 thread, median of %d: forward %.2f "
           "ms (%.1f GFLOP/s), backward %.2f ms (%.1f GFLOP/s), forward+backward %.2f ms "
           "(%.1f GFLOP/s; by CPU time %.2f ms, %.1f GFLOP/s)\n",
           batch, name, REPS, 1e3 * tf[REPS / 2], 1e-9 * fl / tf[REPS / 2], 1e3 * tb[REPS / 2],
           1e-9 * 2 * fl / tb[REPS / 2], 1e3 * tot[REPS / 2], 1e-9 * 3 * fl / tot[REPS / 2],
           1e3 * cpu[REPS / 2], 1e-9 * 3 * fl / cpu[REPS / 2]);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free_layer(&t);
}

/* The three algorithms' timing prints, then a 512^3 sgemm as the machine's
 * single-thread reference. */
static void bench_conv(int batch)
{
    openblas_set_num_threads(1);
    bench_conv_algo(batch, DL_CONV_IM2COL, "im2col");
    bench_conv_algo(batch, DL_CONV_WINOGRAD, "Winograd gradients");
    bench_conv_algo(batch, DL_CONV_WINOGRAD_FWD, "Winograd forward and gradients");
    enum { REPS = 5 };
    int m = 512;
    float *a = random_buf((int64_t)m * m, 1.0), *b = random_buf((int64_t)m * m, 1.0);
    float *c = malloc(sizeof(float) * (size_t)m * m);
    double ts[REPS];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, a, m, b, m, 0.0f, c, m);
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = now(CLOCK_PROCESS_CPUTIME_ID);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, a, m, b, m, 0.0f, c,
                    m);
        ts[rep] = now(CLOCK_PROCESS_CPUTIME_ID) - t0;
    }
    qsort(ts, REPS, sizeof(double), cmp_double);
    printf("reference sgemm %dx%dx%d, 1 thread, by CPU time: %.1f GFLOP/s\n", m, m, m,
           2e-9 * m * m * (double)m / ts[REPS / 2]);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    dl_rng_seed(&rng, 12345, 0);
    test_conv();
    test_wino();
    test_fused_pool();
    test_conv_init();
    test_pool();
    test_setup_errors();
    const char *env = getenv("DL_CONV_BENCH_BATCH");
    int batch = env ? atoi(env) : 128;
    if (batch > 0)
        bench_conv(batch);
    return CHECK_DONE();
}
