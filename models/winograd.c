/* Winograd F(2x2, 3x3) convolution; see winograd.h. With the transforms of
 * Lavin and Gray,
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   (input tile d, 4x4)
 *   G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]       (kernel g, 3x3)
 *   A^T = [1 1 1 0; 0 1 -1 -1]                      (output tile, 2x2)
 * a 2x2 output tile is Y = A^T [sum over channels of (G g G^T) .* (B^T d B)] A.
 * All coefficients are 0, +-1 and +-1/2, so the transforms add only a few
 * roundings: in float the result stays within about 1e-6 of max |y| of the
 * direct convolution for the sizes tested.
 *
 * Layouts for a block of m samples, T = m * tiles columns, tile t = b*tiles +
 * ty*tw + tx of sample b:
 *   U: 16 x f x c (dl_wino_filter), V: 16 x c x T, M: 16 x f x T,
 * so that each of the 16 products is one row-major sgemm with N = T. */
#include "winograd.h"

#include <cblas.h>
#include <string.h>

void dl_wino_geom(dl_wino_geom_t *g, int c, int h, int w, int f, int p)
{
    g->c = c;
    g->h = h;
    g->w = w;
    g->f = f;
    g->p = p;
    g->ho = h + 2 * p - 2;
    g->wo = w + 2 * p - 2;
    g->th = (g->ho + 1) / 2;
    g->tw = (g->wo + 1) / 2;
    g->tiles = g->th * g->tw;
}

/* Per-plane scratch, after V and M: the zero-padded input plane pl,
 * (2*th + 2) x (2*tw + 2), enough for every tile's 4x4 window (the partial
 * tiles' extra row or column reads zeros and feeds outputs never written). */
static int64_t wino_pad_floats(const dl_wino_geom_t *g)
{
    return (int64_t)(2 * g->th + 2) * (2 * g->tw + 2);
}

size_t dl_wino_scratch_floats(const dl_wino_geom_t *g, int nb)
{
    int64_t T = (int64_t)nb * g->tiles;
    return (size_t)(16 * (int64_t)(g->c + g->f) * T + wino_pad_floats(g));
}

void dl_wino_filter(const float *w, int f, int c, int flip, float *u)
{
    int64_t s = (int64_t)f * c; /* stride between the 16 matrices */
    for (int a = 0; a < f; a++)
        for (int b = 0; b < c; b++) {
            const float *k = w + ((int64_t)a * c + b) * 9;
            float g[3][3], t[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    g[i][j] = flip ? k[(2 - i) * 3 + 2 - j] : k[i * 3 + j];
            for (int j = 0; j < 3; j++) { /* t = G g */
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            /* Row a, column b of the forward matrices (f x c); row b, column a
             * of the input gradient's (c x f). */
            float *o = u + (flip ? (int64_t)b * f + a : (int64_t)a * c + b);
            for (int i = 0; i < 4; i++) { /* U = t G^T */
                o[(4 * i + 0) * s] = t[i][0];
                o[(4 * i + 1) * s] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                o[(4 * i + 2) * s] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                o[(4 * i + 3) * s] = t[i][2];
            }
        }
}

/* The three transforms below go through a plane's tiles one row of tiles
 * at a time, four tiles a step with SSE2 (every x86-64 CPU has it): the
 * four tiles' columns are pulled apart from two loads per row with
 * shuffles, or put back with unpacks, and the 16 values of the four tiles
 * are whole vectors, stored to (or loaded from) the 16 matrices as they
 * are. A row of fewer than four tiles, tiles that are partial, and CPUs
 * without SSE2 go tile by tile with the same operations in the same order
 * (bit-identical results). A row whose length is not a multiple of four
 * ends with a step at its last four tiles, which recomputes some of them
 * with the same result. Against the plain-C loops they replace (GCC 12
 * vectorised those only as passes over whole planes through scratch rows),
 * the input gradient and the weight gradient of cnn2's second layer at
 * batch 128 (32 -> 64 channels, 14x14, blocks of 3 samples), one core, the
 * same busy machine: 18.7 -> 15.9 ms and 17.9 -> 15.7 ms. What is left of
 * the transforms is mostly their stores: 16 streams of 16 bytes each. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define WINO_STEP 4
#define EVENS(a, b) _mm_shuffle_ps((a), (b), _MM_SHUFFLE(2, 0, 2, 0))
#define ODDS(a, b) _mm_shuffle_ps((a), (b), _MM_SHUFFLE(3, 1, 3, 1))
#else
#define WINO_STEP 0 /* tile by tile only */
#endif

/* V = B^T d B of one tile, d the 4x4 window at e (pitch pw), into v[xi*sv]. */
static void wino_input_tile(const float *e, int pw, float *v, int64_t sv)
{
    float hh[4][4];
    for (int r = 0; r < 4; r++, e += pw) { /* d B, row by row */
        hh[r][0] = e[0] - e[2];
        hh[r][1] = e[1] + e[2];
        hh[r][2] = e[2] - e[1];
        hh[r][3] = e[1] - e[3];
    }
    for (int j = 0; j < 4; j++) { /* B^T (d B), column by column */
        v[j * sv] = hh[0][j] - hh[2][j];
        v[(4 + j) * sv] = hh[1][j] + hh[2][j];
        v[(8 + j) * sv] = hh[2][j] - hh[1][j];
        v[(12 + j) * sv] = hh[1][j] - hh[3][j];
    }
}

#if defined(__SSE2__)
/* wino_input_tile for the four tiles whose windows start at e, e+2, e+4, e+6. */
static inline void wino_input_tile4(const float *e, int pw, float *v, int64_t sv)
{
    __m128 hh[4][4];
    for (int r = 0; r < 4; r++, e += pw) {
        __m128 a = _mm_loadu_ps(e), b = _mm_loadu_ps(e + 4);
        __m128 c = _mm_loadu_ps(e + 2), d = _mm_loadu_ps(e + 6);
        __m128 d0 = EVENS(a, b), d1 = ODDS(a, b), d2 = EVENS(c, d), d3 = ODDS(c, d);
        hh[r][0] = _mm_sub_ps(d0, d2);
        hh[r][1] = _mm_add_ps(d1, d2);
        hh[r][2] = _mm_sub_ps(d2, d1);
        hh[r][3] = _mm_sub_ps(d1, d3);
    }
    for (int j = 0; j < 4; j++) {
        _mm_storeu_ps(v + j * sv, _mm_sub_ps(hh[0][j], hh[2][j]));
        _mm_storeu_ps(v + (4 + j) * sv, _mm_add_ps(hh[1][j], hh[2][j]));
        _mm_storeu_ps(v + (8 + j) * sv, _mm_sub_ps(hh[2][j], hh[1][j]));
        _mm_storeu_ps(v + (12 + j) * sv, _mm_sub_ps(hh[1][j], hh[3][j]));
    }
}
#endif

/* V = B^T d B of every tile of one input plane src (h x w): v[xi*sv + t]
 * for the plane's tiles t = 0 .. tiles-1. pl is the padded plane, its
 * border zero. */
static void wino_input_plane(const dl_wino_geom_t *g, const float *restrict src, float *restrict pl,
                             float *restrict v, int64_t sv)
{
    int pw = 2 * g->tw + 2, tw = g->tw;
    for (int r = 0; r < g->h; r++) {
        const float *restrict s = src + (int64_t)r * g->w;
        float *restrict d = pl + (int64_t)(r + g->p) * pw + g->p;
        for (int j = 0; j < g->w; j++)
            d[j] = s[j];
    }
    for (int ty = 0; ty < g->th; ty++) {
        const float *e = pl + (int64_t)2 * ty * pw;
        float *vt = v + (int64_t)ty * tw;
        if (WINO_STEP == 0 || tw < WINO_STEP) {
            for (int tx = 0; tx < tw; tx++)
                wino_input_tile(e + 2 * tx, pw, vt + tx, sv);
            continue;
        }
#if defined(__SSE2__)
        for (int tx = 0;; tx += 4) {
            tx = tx + 4 > tw ? tw - 4 : tx;
            wino_input_tile4(e + 2 * tx, pw, vt + tx, sv);
            if (tx + 4 == tw)
                break;
        }
#endif
    }
}

/* The outputs of one tile, Y = A^T M A + bias from its products m[xi*sm]:
 * y[0] to y[3] are outputs (0,0), (0,1), (1,0), (1,1). */
static void wino_output_tile(const float *m, int64_t sm, float bias, float y[4])
{
    float s[2][4];
    for (int j = 0; j < 4; j++) { /* s = A^T M */
        float m0 = m[j * sm], m1 = m[(4 + j) * sm], m2 = m[(8 + j) * sm], m3 = m[(12 + j) * sm];
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
    }
    y[0] = s[0][0] + s[0][1] + s[0][2] + bias;
    y[1] = s[0][1] - s[0][2] - s[0][3] + bias;
    y[2] = s[1][0] + s[1][1] + s[1][2] + bias;
    y[3] = s[1][1] - s[1][2] - s[1][3] + bias;
}

#if defined(__SSE2__)
/* wino_output_tile for four full tiles side by side, placed in rows d0 and
 * d1 (d1 NULL where the tiles' second row is outside the plane). */
static inline void wino_output_tile4(const float *m, int64_t sm, __m128 bias, float *d0, float *d1)
{
    __m128 s[2][4];
    for (int j = 0; j < 4; j++) {
        __m128 m0 = _mm_loadu_ps(m + j * sm), m1 = _mm_loadu_ps(m + (4 + j) * sm);
        __m128 m2 = _mm_loadu_ps(m + (8 + j) * sm), m3 = _mm_loadu_ps(m + (12 + j) * sm);
        s[0][j] = _mm_add_ps(_mm_add_ps(m0, m1), m2);
        s[1][j] = _mm_sub_ps(_mm_sub_ps(m1, m2), m3);
    }
    for (int r = 0; r < 2; r++) {
        float *d = r ? d1 : d0;
        if (!d)
            break;
        __m128 a = _mm_add_ps(_mm_add_ps(_mm_add_ps(s[r][0], s[r][1]), s[r][2]), bias);
        __m128 b = _mm_add_ps(_mm_sub_ps(_mm_sub_ps(s[r][1], s[r][2]), s[r][3]), bias);
        _mm_storeu_ps(d, _mm_unpacklo_ps(a, b));
        _mm_storeu_ps(d + 4, _mm_unpackhi_ps(a, b));
    }
}
#endif

/* y (ho x wo) = A^T M A + bias for the tiles of one output plane, whose
 * products are mt[xi*sm + t]; partial tiles write only their valid outputs. */
static void wino_output_plane(const dl_wino_geom_t *g, const float *restrict mt, int64_t sm,
                              float bias, float *restrict y)
{
    int ho = g->ho, wo = g->wo, tw = g->tw, full = wo / 2; /* tiles with both columns inside */
    for (int ty = 0; ty < g->th; ty++) {
        const float *m = mt + (int64_t)ty * tw;
        float *d0 = y + (int64_t)2 * ty * wo, *d1 = 2 * ty + 1 < ho ? d0 + wo : NULL;
        int tx = 0;
#if defined(__SSE2__)
        if (full >= WINO_STEP) {
            __m128 b = _mm_set1_ps(bias);
            for (;; tx += 4) {
                tx = tx + 4 > full ? full - 4 : tx;
                wino_output_tile4(m + tx, sm, b, d0 + 2 * tx, d1 ? d1 + 2 * tx : NULL);
                if (tx + 4 == full)
                    break;
            }
            tx = full;
        }
#endif
        for (; tx < tw; tx++) {
            float o[4];
            wino_output_tile(m + tx, sm, bias, o);
            d0[2 * tx] = o[0];
            if (d1)
                d1[2 * tx] = o[2];
            if (tx < full) {
                d0[2 * tx + 1] = o[1];
                if (d1)
                    d1[2 * tx + 1] = o[3];
            }
        }
    }
}

/* V = the transformed input tiles of m samples (sample b at x + b*xs,
 * channel ci at + ci*xc), laid out as 16 matrices of c x (m*tiles); pl is
 * the scratch of wino_input_plane. */
static void wino_inputs(const dl_wino_geom_t *g, const float *x, int64_t xs, int64_t xc, int m,
                        float *v, float *pl)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T;
    memset(pl, 0, (size_t)wino_pad_floats(g) * sizeof(float));
    for (int b = 0; b < m; b++)
        for (int ci = 0; ci < g->c; ci++)
            wino_input_plane(g, x + b * xs + ci * xc, pl, v + ci * T + (int64_t)b * g->tiles, sv);
}

void dl_wino_conv(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs, int64_t xc,
                  int m, const float *bias, float *y, int64_t ys, float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T, sm = (int64_t)g->f * T;
    int64_t P = (int64_t)g->ho * g->wo;
    float *v = scratch, *mt = v + 16 * sv, *pl = mt + 16 * sm;
    wino_inputs(g, x, xs, xc, m, v, pl);
    /* M[xi] (f x T) = U[xi] (f x c) . V[xi] (c x T) */
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->f, (int)T, g->c, 1.0f,
                    u + (int64_t)xi * g->f * g->c, g->c, v + xi * sv, (int)T, 0.0f, mt + xi * sm,
                    (int)T);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++)
            wino_output_plane(g, mt + fo * T + (int64_t)b * g->tiles, sm, bias ? bias[fo] : 0.0f,
                              y + b * ys + fo * P);
}

/* Rows of A dY for the output gradients (a, b; c, d) of a tile: (a, b),
 * (a+c, b+d), (a-c, b-d), (-c, -d), that is p = ka*a + kc*c, q = ka*b +
 * kc*d (exact: the factors are 0 and +-1); each row (p, q) times A^T gives
 * (p, p+q, p-q, -q). */
static const float wino_ka[4] = {1.0f, 1.0f, 1.0f, 0.0f}, wino_kc[4] = {0.0f, 1.0f, -1.0f, -1.0f};

/* dYt = A dY A^T of one tile's output gradients z[0..3] ((0,0), (0,1),
 * (1,0), (1,1)) into dt[xi*sm]. */
static void wino_dout_tile(const float z[4], float *dt, int64_t sm)
{
    for (int i = 0; i < 4; i++) {
        float p = wino_ka[i] * z[0] + wino_kc[i] * z[2], q = wino_ka[i] * z[1] + wino_kc[i] * z[3];
        dt[4 * i * sm] = p;
        dt[(4 * i + 1) * sm] = p + q;
        dt[(4 * i + 2) * sm] = p - q;
        dt[(4 * i + 3) * sm] = -q;
    }
}

#if defined(__SSE2__)
/* wino_dout_tile for four full tiles side by side, read from rows r0 and r1. */
static inline void wino_dout_tile4(const float *r0, const float *r1, float *dt, int64_t sm)
{
    __m128 a0 = _mm_loadu_ps(r0), a1 = _mm_loadu_ps(r0 + 4);
    __m128 c0 = _mm_loadu_ps(r1), c1 = _mm_loadu_ps(r1 + 4);
    __m128 za = EVENS(a0, a1), zb = ODDS(a0, a1), zc = EVENS(c0, c1), zd = ODDS(c0, c1);
    __m128 sign = _mm_set1_ps(-0.0f);
    for (int i = 0; i < 4; i++) {
        __m128 fa = _mm_set1_ps(wino_ka[i]), fc = _mm_set1_ps(wino_kc[i]);
        __m128 p = _mm_add_ps(_mm_mul_ps(fa, za), _mm_mul_ps(fc, zc));
        __m128 q = _mm_add_ps(_mm_mul_ps(fa, zb), _mm_mul_ps(fc, zd));
        _mm_storeu_ps(dt + 4 * i * sm, p);
        _mm_storeu_ps(dt + (4 * i + 1) * sm, _mm_add_ps(p, q));
        _mm_storeu_ps(dt + (4 * i + 2) * sm, _mm_sub_ps(p, q));
        _mm_storeu_ps(dt + (4 * i + 3) * sm, _mm_xor_ps(q, sign));
    }
}
#endif

/* The tiles of one output-gradient plane dz (ho x wo) taken back through the
 * output transform: dYt = A dY A^T, the gradient with respect to the tile's
 * 16 products, into dt[xi*sm + t]. The outputs a partial tile does not
 * write have no gradient (zeros). */
static void wino_dout_plane(const dl_wino_geom_t *g, const float *restrict dz, float *restrict dt,
                            int64_t sm)
{
    int ho = g->ho, wo = g->wo, tw = g->tw, full = wo / 2;
    for (int ty = 0; ty < g->th; ty++) {
        const float *r0 = dz + (int64_t)2 * ty * wo, *r1 = 2 * ty + 1 < ho ? r0 + wo : NULL;
        float *d = dt + (int64_t)ty * tw;
        int tx = 0;
#if defined(__SSE2__)
        if (r1 && full >= WINO_STEP) {
            for (;; tx += 4) {
                tx = tx + 4 > full ? full - 4 : tx;
                wino_dout_tile4(r0 + 2 * tx, r1 + 2 * tx, d + tx, sm);
                if (tx + 4 == full)
                    break;
            }
            tx = full;
        }
#endif
        for (; tx < tw; tx++) {
            int in = tx < full; /* the tile's second column inside */
            float z[4] = {r0[2 * tx], in ? r0[2 * tx + 1] : 0.0f, r1 ? r1[2 * tx] : 0.0f,
                          r1 && in ? r1[2 * tx + 1] : 0.0f};
            wino_dout_tile(z, d + tx, sm);
        }
    }
}

void dl_wino_dfilter_acc(const dl_wino_geom_t *g, const float *x, int64_t xs, int64_t xc,
                         const float *dz, int64_t zs, int64_t zc, int m, int accumulate, float *du,
                         float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T, sm = (int64_t)g->f * T;
    float *v = scratch, *dt = v + 16 * sv, *pl = dt + 16 * sm;
    wino_inputs(g, x, xs, xc, m, v, pl);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++)
            wino_dout_plane(g, dz + b * zs + fo * zc, dt + fo * T + (int64_t)b * g->tiles, sm);
    /* dU[xi] (f x c) (+)= dYt[xi] (f x T) . V[xi]^T (T x c): a long reduction over the tiles. */
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->f, g->c, (int)T, 1.0f, dt + xi * sm,
                    (int)T, v + xi * sv, (int)T, accumulate ? 1.0f : 0.0f,
                    du + (int64_t)xi * g->f * g->c, g->c);
}

void dl_wino_dfilter(const float *du, int f, int c, float *dw)
{
    int64_t s = (int64_t)f * c;
    for (int64_t k = 0; k < s; k++) {
        float d[4][4], t[3][4];
        for (int xi = 0; xi < 16; xi++)
            d[xi / 4][xi % 4] = du[xi * s + k];
        for (int j = 0; j < 4; j++) { /* t = G^T dU */
            t[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
            t[1][j] = 0.5f * (d[1][j] - d[2][j]);
            t[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
        }
        float *o = dw + k * 9;
        for (int i = 0; i < 3; i++) { /* dW = t G */
            o[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
            o[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
            o[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
        }
    }
}
