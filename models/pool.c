/* Max and average pooling over each channel's plane, NCHW, as torch's
 * max_pool2d and avg_pool2d with ceil_mode=False.
 * x: n x C x H x W, y: n x C x Ho x Wo, Ho = (H + 2p - k)/s + 1, Wo likewise.
 * Max pooling treats padding as -infinity; average pooling counts it as zeros
 * and always divides by k*k (count_include_pad=True). An average pool of size
 * 0 is global: y: n x C x 1 x 1. pad <= k/2 (as torch requires) means every
 * window holds at least one input element. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct pool_geom {
    int c, h, w, k, s, p, ho, wo;
} pool_geom_t;

/* Max pooling's scratch: for each output element of up to max_batch samples,
 * the offset of its maximum within the sample's input (c*h*w + row*w + col). */
typedef struct maxpool_work {
    int max_batch;
    int32_t arg[];
} maxpool_work_t;

static void pool_geom(const dl_layer_t *l, pool_geom_t *g)
{
    g->c = l->in.c;
    g->h = l->in.h;
    g->w = l->in.w;
    g->k = l->spec.size;
    g->s = l->spec.stride;
    g->p = l->spec.pad;
    g->ho = l->out.h;
    g->wo = l->out.w;
}

/* Shared checks of a windowed pool; kind is "maxpool" or "avgpool". */
static int pool_setup_window(dl_layer_t *l, const char *kind, dl_err_t *err)
{
    const dl_layer_spec_t *sp = &l->spec;
    int line = sp->line, h = l->in.h, w = l->in.w;
    if (sp->stride < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [%s] stride = %d; it must be >= 1", line, kind,
                      sp->stride);
    if (sp->pad < 0)
        return DL_ERR(err, DL_EINPUT, "line %d: [%s] pad = %d; it must be >= 0", line, kind,
                      sp->pad);
    if (sp->pad > sp->size / 2)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [%s] pad = %d is more than half the window size %d; pad must be "
                      "<= size/2 = %d",
                      line, kind, sp->pad, sp->size, sp->size / 2);
    int hp = h + 2 * sp->pad, wp = w + 2 * sp->pad;
    if (sp->size > hp || sp->size > wp)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [%s] window size %d does not fit the %dx%d input padded by %d "
                      "(%dx%d); size must be <= %d",
                      line, kind, sp->size, h, w, sp->pad, hp, wp, hp < wp ? hp : wp);
    l->out.c = l->in.c;
    l->out.h = (hp - sp->size) / sp->stride + 1;
    l->out.w = (wp - sp->size) / sp->stride + 1;
    l->out_size = (int64_t)l->out.c * l->out.h * l->out.w;
    return 0;
}

static int maxpool_setup(dl_layer_t *l, dl_err_t *err)
{
    if (l->spec.size < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [maxpool] size = %d; it must be >= 1", l->spec.line,
                      l->spec.size);
    return pool_setup_window(l, "maxpool", err);
}

static int avgpool_setup(dl_layer_t *l, dl_err_t *err)
{
    if (l->spec.size < 0)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [avgpool] size = %d; it must be >= 1, or 0 for global average "
                      "pooling",
                      l->spec.line, l->spec.size);
    if (l->spec.size > 0)
        return pool_setup_window(l, "avgpool", err);
    l->out.c = l->in.c;
    l->out.h = l->out.w = 1;
    l->out_size = l->in.c;
    return 0;
}

static int64_t pool_n_params(const dl_layer_t *l)
{
    return 0;
}

static void pool_init(dl_layer_t *l, dl_rng_t *rng) {}

static int maxpool_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    size_t n = (size_t)(max_batch > 0 ? max_batch : 1) * (size_t)l->out_size;
    maxpool_work_t *wk = dl_calloc(1, sizeof *wk + n * sizeof(int32_t), err);
    if (!wk)
        return DL_ENOMEM;
    wk->max_batch = max_batch;
    l->work = wk;
    return 0;
}

static void maxpool_release(dl_layer_t *l)
{
    free(l->work);
    l->work = NULL;
}

/* Window [*lo, *hi) of output index o along an axis of n inputs, clipped to the input. */
static void pool_window(int o, int n, int k, int s, int p, int *lo, int *hi)
{
    int a = o * s - p, b = a + k;
    *lo = a > 0 ? a : 0;
    *hi = b < n ? b : n;
}

/* Whether a wins over the maximum so far m: greater, or a NaN (which then
 * propagates, as in torch). */
static inline int beats(float a, float m)
{
    return a > m || (a != a && m == m);
}

/* The common 2 x 2 window, stride 2, no padding: four loads and three
 * branch-free selections per output (a data-dependent branch per element
 * mispredicts half the time on real activations). */
static void maxpool_2x2(const float *restrict xc, int w, int ho, int wo, float *restrict y,
                        int32_t *restrict arg, int32_t base)
{
    for (int oh = 0; oh < ho; oh++)
        for (int ow = 0; ow < wo; ow++) {
            int i0 = 2 * oh * w + 2 * ow;
            float m = xc[i0];
            int best = i0;
            const int cand[3] = {i0 + 1, i0 + w, i0 + w + 1};
            for (int k = 0; k < 3; k++) {
                float e = xc[cand[k]];
                int take = beats(e, m);
                m = take ? e : m;
                best = take ? cand[k] : best;
            }
            y[oh * wo + ow] = m;
            arg[oh * wo + ow] = base + best;
        }
}

/* The fused pool of a convolution (conv.c): one h x w plane at a time.
 * Both directions run over rows of windows, four windows per step with SSE2
 * (every x86-64 CPU has it): in forward, the four window positions of four
 * windows are pulled apart from two rows (two loads and two shuffles per
 * row) and scanned in order with the same selection as beats(); in
 * backward, the four masked gradients are interleaved back into the two
 * rows. A row of fewer than four windows a step is done element by
 * element; a row whose width is not a multiple of four ends with a step at
 * its last four windows, which writes some outputs a second time with the
 * same values. Against the two-pass loops GCC 12 vectorised from plain C
 * (vertical pairs into a scratch row, then horizontal pairs; the gradient
 * into two scratch rows, then copied), on one core for cnn2's two pools at
 * batch 128 (28x28x32 and 14x14x64): forward 3.8 -> 2.1 ms, backward 5.5 ->
 * 1.6 ms, bit-identical outputs and positions (tests/test_conv_pool.c). */
#if defined(__SSE2__)
#include <emmintrin.h>

/* Where e beats m (see beats()), m becomes e and i becomes k. */
static inline void pool_pick4(__m128 e, __m128i k, __m128 *m, __m128i *i)
{
    __m128 t = _mm_or_ps(_mm_cmpgt_ps(e, *m),
                         _mm_and_ps(_mm_cmpunord_ps(e, e), _mm_cmpord_ps(*m, *m)));
    __m128i ti = _mm_castps_si128(t);
    *m = _mm_or_ps(_mm_and_ps(t, e), _mm_andnot_ps(t, *m));
    *i = _mm_or_si128(_mm_and_si128(ti, k), _mm_andnot_si128(ti, *i));
}

/* Windows q .. q+3 of the row pair r0, r1 (each window 2 columns wide),
 * each element taken as x + *bias where bias is not NULL, then max(., 0)
 * where relu (MAXPS returns its second operand, 0, for NaN and -0: the same
 * as v > 0 ? v : 0). */
static inline void pool_fwd4(const float *r0, const float *r1, const float *bias, int relu,
                             float *y, uint8_t *arg)
{
    __m128 x[4] = {_mm_loadu_ps(r0), _mm_loadu_ps(r0 + 4), _mm_loadu_ps(r1), _mm_loadu_ps(r1 + 4)};
    for (int j = 0; j < 4; j++) {
        if (bias)
            x[j] = _mm_add_ps(x[j], _mm_set1_ps(*bias));
        if (relu)
            x[j] = _mm_max_ps(x[j], _mm_setzero_ps());
    }
    __m128 m = _mm_shuffle_ps(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)); /* position 0: even columns */
    __m128i i = _mm_setzero_si128();
    pool_pick4(_mm_shuffle_ps(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)), _mm_set1_epi32(1), &m, &i);
    pool_pick4(_mm_shuffle_ps(x[2], x[3], _MM_SHUFFLE(2, 0, 2, 0)), _mm_set1_epi32(2), &m, &i);
    pool_pick4(_mm_shuffle_ps(x[2], x[3], _MM_SHUFFLE(3, 1, 3, 1)), _mm_set1_epi32(3), &m, &i);
    _mm_storeu_ps(y, m);
    __m128i p = _mm_packus_epi16(_mm_packs_epi32(i, i), _mm_setzero_si128());
    int32_t four = _mm_cvtsi128_si32(p);
    memcpy(arg, &four, sizeof four);
}

/* The adjoint of pool_fwd4: gradients dy[0..3] to their positions in r0, r1. */
static inline void pool_bwd4(const float *dy, const uint8_t *arg, float *r0, float *r1)
{
    int32_t four;
    memcpy(&four, arg, sizeof four);
    __m128i z = _mm_setzero_si128();
    __m128i k = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), z), z);
    __m128 g = _mm_loadu_ps(dy);
    __m128 g0 = _mm_and_ps(g, _mm_castsi128_ps(_mm_cmpeq_epi32(k, z)));
    __m128 g1 = _mm_and_ps(g, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(1))));
    __m128 g2 = _mm_and_ps(g, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(2))));
    __m128 g3 = _mm_and_ps(g, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(3))));
    _mm_storeu_ps(r0, _mm_unpacklo_ps(g0, g1));
    _mm_storeu_ps(r0 + 4, _mm_unpackhi_ps(g0, g1));
    _mm_storeu_ps(r1, _mm_unpacklo_ps(g2, g3));
    _mm_storeu_ps(r1 + 4, _mm_unpackhi_ps(g2, g3));
}
#define POOL_STEP 4
#else
#define POOL_STEP 0 /* element by element only */
#endif

void dl_maxpool2x2_plane(const float *restrict x, int h, int w, const float *bias, int relu,
                         float *restrict y, uint8_t *restrict arg)
{
    int ho = h / 2, wo = w / 2;
    for (int oh = 0; oh < ho; oh++) {
        const float *r0 = x + (int64_t)2 * oh * w, *r1 = r0 + w;
        float *yo = y + (int64_t)oh * wo;
        uint8_t *ao = arg + (int64_t)oh * wo;
        if (POOL_STEP == 0 || wo < POOL_STEP) {
            for (int q = 0; q < wo; q++) {
                float e[4] = {r0[2 * q], r0[2 * q + 1], r1[2 * q], r1[2 * q + 1]};
                for (int k = 0; k < 4; k++) {
                    e[k] = bias ? e[k] + *bias : e[k];
                    e[k] = relu ? (e[k] > 0.0f ? e[k] : 0.0f) : e[k];
                }
                float m = e[0];
                int best = 0;
                for (int k = 1; k < 4; k++)
                    if (beats(e[k], m)) {
                        m = e[k];
                        best = k;
                    }
                yo[q] = m;
                ao[q] = (uint8_t)best;
            }
            continue;
        }
#if defined(__SSE2__)
        int q = 0;
        for (; q + 4 <= wo; q += 4)
            pool_fwd4(r0 + 2 * q, r1 + 2 * q, bias, relu, yo + q, ao + q);
        if (q < wo)
            pool_fwd4(r0 + 2 * (wo - 4), r1 + 2 * (wo - 4), bias, relu, yo + wo - 4, ao + wo - 4);
#endif
    }
}

void dl_maxpool2x2_scatter(const float *restrict dy, const uint8_t *restrict arg, int h, int w,
                           float *restrict dx)
{
    int ho = h / 2, wo = w / 2;
    for (int oh = 0; oh < ho; oh++) {
        float *r0 = dx + (int64_t)2 * oh * w, *r1 = r0 + w;
        const float *d = dy + (int64_t)oh * wo;
        const uint8_t *a = arg + (int64_t)oh * wo;
        if (POOL_STEP == 0 || wo < POOL_STEP) {
            for (int q = 0; q < wo; q++) {
                float g = d[q];
                int k = a[q];
                r0[2 * q] = k == 0 ? g : 0.0f;
                r0[2 * q + 1] = k == 1 ? g : 0.0f;
                r1[2 * q] = k == 2 ? g : 0.0f;
                r1[2 * q + 1] = k == 3 ? g : 0.0f;
            }
        } else {
#if defined(__SSE2__)
            int q = 0;
            for (; q + 4 <= wo; q += 4)
                pool_bwd4(d + q, a + q, r0 + 2 * q, r1 + 2 * q);
            if (q < wo)
                pool_bwd4(d + wo - 4, a + wo - 4, r0 + 2 * (wo - 4), r1 + 2 * (wo - 4));
#endif
        }
        if (w % 2) { /* the odd last column belongs to no window */
            r0[w - 1] = 0.0f;
            r1[w - 1] = 0.0f;
        }
    }
    if (h % 2) /* nor does the odd last row */
        memset(dx + (int64_t)(h - 1) * w, 0, (size_t)w * sizeof(float));
}

static int maxpool_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    maxpool_work_t *wk = l->work;
    if (n > wk->max_batch)
        return DL_EINTERNAL;
    pool_geom_t g;
    pool_geom(l, &g);
    int64_t hw = (int64_t)g.h * g.w;
    const int fast = g.k == 2 && g.s == 2 && g.p == 0;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < g.c; c++) {
            const float *restrict xc = x + (int64_t)i * l->in_size + c * hw;
            int64_t o = (int64_t)i * l->out_size + (int64_t)c * g.ho * g.wo;
            if (fast) {
                maxpool_2x2(xc, g.w, g.ho, g.wo, y + o, wk->arg + o, (int32_t)(c * hw));
                continue;
            }
            for (int oh = 0; oh < g.ho; oh++) {
                int h0, h1;
                pool_window(oh, g.h, g.k, g.s, g.p, &h0, &h1);
                for (int ow = 0; ow < g.wo; ow++, o++) {
                    int w0, w1;
                    pool_window(ow, g.w, g.k, g.s, g.p, &w0, &w1);
                    /* First maximum in scan order; a NaN wins, so it propagates as in torch. */
                    int best = h0 * g.w + w0;
                    float v = xc[best];
                    for (int hh = h0; hh < h1; hh++)
                        for (int ww = w0; ww < w1; ww++) {
                            float e = xc[hh * g.w + ww];
                            if (beats(e, v)) {
                                v = e;
                                best = hh * g.w + ww;
                            }
                        }
                    y[o] = v;
                    wk->arg[o] = (int32_t)(c * hw + best);
                }
            }
        }
    return 0;
}

/* dx = 0, then each dy added at its window's maximum (from the last forward). */
static int maxpool_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    if (!dx)
        return 0;
    const maxpool_work_t *wk = l->work;
    if (n > wk->max_batch)
        return DL_EINTERNAL;
    pool_geom_t g;
    pool_geom(l, &g);
    if (g.k == 2 && g.s == 2 && g.p == 0 && g.h % 2 == 0 && g.w % 2 == 0) {
        /* The windows tile the input exactly: write every element once
         * instead of clearing dx and scattering into it. */
        int64_t hw = (int64_t)g.h * g.w, plane = (int64_t)g.ho * g.wo;
        for (int64_t j = 0; j < (int64_t)n * g.c; j++) {
            float *restrict dxc = dx + j * hw;
            const float *restrict dyc = dy + j * plane;
            const int32_t *restrict arg = wk->arg + j * plane;
            const int32_t base = (int32_t)((j % g.c) * hw);
            for (int oh = 0; oh < g.ho; oh++)
                for (int ow = 0; ow < g.wo; ow++) {
                    int i0 = 2 * oh * g.w + 2 * ow, win = arg[oh * g.wo + ow] - base;
                    float d = dyc[oh * g.wo + ow];
                    dxc[i0] = win == i0 ? d : 0.0f;
                    dxc[i0 + 1] = win == i0 + 1 ? d : 0.0f;
                    dxc[i0 + g.w] = win == i0 + g.w ? d : 0.0f;
                    dxc[i0 + g.w + 1] = win == i0 + g.w + 1 ? d : 0.0f;
                }
        }
        return 0;
    }
    memset(dx, 0, (size_t)n * (size_t)l->in_size * sizeof(float));
    for (int i = 0; i < n; i++) {
        float *restrict dxi = dx + (int64_t)i * l->in_size;
        const float *restrict dyi = dy + (int64_t)i * l->out_size;
        const int32_t *restrict arg = wk->arg + (int64_t)i * l->out_size;
        for (int64_t o = 0; o < l->out_size; o++)
            dxi[arg[o]] += dyi[o];
    }
    return 0;
}

static int avgpool_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    pool_geom_t g;
    pool_geom(l, &g);
    int64_t hw = (int64_t)g.h * g.w;
    if (g.k == 0) {
        for (int64_t j = 0; j < (int64_t)n * g.c; j++) {
            const float *restrict xc = x + j * hw;
            float sum = 0.0f;
            for (int64_t q = 0; q < hw; q++)
                sum += xc[q];
            y[j] = sum / (float)hw;
        }
        return 0;
    }
    float scale = 1.0f / (float)(g.k * g.k);
    for (int64_t j = 0; j < (int64_t)n * g.c; j++) {
        const float *restrict xc = x + j * hw;
        float *restrict yc = y + j * g.ho * g.wo;
        for (int oh = 0; oh < g.ho; oh++) {
            int h0, h1;
            pool_window(oh, g.h, g.k, g.s, g.p, &h0, &h1);
            for (int ow = 0; ow < g.wo; ow++) {
                int w0, w1;
                pool_window(ow, g.w, g.k, g.s, g.p, &w0, &w1);
                float sum = 0.0f;
                for (int hh = h0; hh < h1; hh++)
                    for (int ww = w0; ww < w1; ww++)
                        sum += xc[hh * g.w + ww];
                yc[oh * g.wo + ow] = sum * scale;
            }
        }
    }
    return 0;
}

static int avgpool_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    if (!dx)
        return 0;
    pool_geom_t g;
    pool_geom(l, &g);
    int64_t hw = (int64_t)g.h * g.w;
    if (g.k == 0) {
        for (int64_t j = 0; j < (int64_t)n * g.c; j++) {
            float *restrict dxc = dx + j * hw, d = dy[j] / (float)hw;
            for (int64_t q = 0; q < hw; q++)
                dxc[q] = d;
        }
        return 0;
    }
    float scale = 1.0f / (float)(g.k * g.k);
    memset(dx, 0, (size_t)n * (size_t)l->in_size * sizeof(float));
    for (int64_t j = 0; j < (int64_t)n * g.c; j++) {
        float *restrict dxc = dx + j * hw;
        const float *restrict dyc = dy + j * g.ho * g.wo;
        for (int oh = 0; oh < g.ho; oh++) {
            int h0, h1;
            pool_window(oh, g.h, g.k, g.s, g.p, &h0, &h1);
            for (int ow = 0; ow < g.wo; ow++) {
                int w0, w1;
                pool_window(ow, g.w, g.k, g.s, g.p, &w0, &w1);
                float d = dyc[oh * g.wo + ow] * scale;
                for (int hh = h0; hh < h1; hh++)
                    for (int ww = w0; ww < w1; ww++)
                        dxc[hh * g.w + ww] += d;
            }
        }
    }
    return 0;
}

/* k*k comparisons or additions per output element; global: h*w per channel. */
static int64_t pool_flops(const dl_layer_t *l)
{
    if (l->spec.size == 0)
        return l->in_size;
    return l->out_size * l->spec.size * l->spec.size;
}

const dl_layer_ops_t dl_maxpool_ops = {
    .name = "maxpool",
    .setup = maxpool_setup,
    .n_params = pool_n_params,
    .n_state = NULL,
    .alloc = maxpool_alloc,
    .release = maxpool_release,
    .init = pool_init,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .flops = pool_flops,
};

const dl_layer_ops_t dl_avgpool_ops = {
    .name = "avgpool",
    .setup = avgpool_setup,
    .n_params = pool_n_params,
    .n_state = NULL,
    .alloc = NULL,
    .release = NULL,
    .init = pool_init,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .flops = pool_flops,
};
