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
 * tiles' extra row or column reads zeros and feeds outputs never written);
 * the row pass of the input transform, hr (see wino_input_plane), 8 x (th+1)
 * x tw; the output tiles before their placement, yt, 4 x tiles. */
static int64_t wino_pad_floats(const dl_wino_geom_t *g)
{
    return (int64_t)(2 * g->th + 2) * (2 * g->tw + 2);
}

static int64_t wino_plane_floats(const dl_wino_geom_t *g)
{
    return wino_pad_floats(g) + 8 * (int64_t)(g->th + 1) * g->tw + 4 * (int64_t)g->tiles;
}

size_t dl_wino_scratch_floats(const dl_wino_geom_t *g, int nb)
{
    int64_t T = (int64_t)nb * g->tiles;
    return (size_t)(16 * (int64_t)(g->c + g->f) * T + wino_plane_floats(g));
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

/* V = B^T d B of every tile of one input plane src (h x w): v[xi*sv + t]
 * for the plane's tiles t = 0 .. tiles-1. Both passes run over contiguous
 * arrays, so that the compiler vectorises them: the row pass (d B) of every
 * padded row R, for every tile column tx, goes to hr[j][R%2][R/2][tx]
 * (pitch tw, so that rows 2ty+r of tile t = ty*tw + tx sit at hr[j][r%2] +
 * t + (r/2)*tw, linear in t); the column pass (B^T .) then runs over all the
 * plane's tiles at once. pl is the padded plane, its border zero. */
static void wino_input_plane(const dl_wino_geom_t *g, const float *restrict src, float *restrict pl,
                             float *restrict hr, float *restrict v, int64_t sv)
{
    int pw = 2 * g->tw + 2, tw = g->tw, tiles = g->tiles;
    int64_t hs = (int64_t)(g->th + 1) * tw; /* one parity of one hr[j] */
    for (int r = 0; r < g->h; r++)
        memcpy(pl + (int64_t)(r + g->p) * pw + g->p, src + (int64_t)r * g->w,
               (size_t)g->w * sizeof(float));
    for (int R = 0; R < 2 * g->th + 2; R++) {
        const float *restrict e = pl + (int64_t)R * pw;
        float *restrict h0 = hr + (R % 2) * hs + (R / 2) * tw;
        float *restrict h1 = h0 + 2 * hs, *restrict h2 = h1 + 2 * hs, *restrict h3 = h2 + 2 * hs;
        for (int tx = 0; tx < tw; tx++) {
            float d0 = e[2 * tx], d1 = e[2 * tx + 1], d2 = e[2 * tx + 2], d3 = e[2 * tx + 3];
            h0[tx] = d0 - d2;
            h1[tx] = d1 + d2;
            h2[tx] = d2 - d1;
            h3[tx] = d1 - d3;
        }
    }
    for (int j = 0; j < 4; j++) {
        const float *restrict a0 = hr + 2 * j * hs, *restrict a1 = a0 + hs;
        const float *restrict a2 = a0 + tw, *restrict a3 = a1 + tw;
        float *restrict v0 = v + j * sv, *restrict v1 = v0 + 4 * sv;
        float *restrict v2 = v1 + 4 * sv, *restrict v3 = v2 + 4 * sv;
        for (int t = 0; t < tiles; t++) {
            v0[t] = a0[t] - a2[t];
            v1[t] = a1[t] + a2[t];
            v2[t] = a2[t] - a1[t];
            v3[t] = a1[t] - a3[t];
        }
    }
}

/* y (ho x wo) = A^T M A + bias for the tiles of one output plane, whose
 * products are mt[xi*sm + t]: first all tiles at once into yt (4 x tiles,
 * outputs (0,0), (0,1), (1,0), (1,1) of each tile), vectorised over t, then
 * placed; partial tiles write only their valid outputs. */
static void wino_output_plane(const dl_wino_geom_t *g, const float *restrict mt, int64_t sm,
                              float bias, float *restrict yt, float *restrict y)
{
    int ho = g->ho, wo = g->wo, tw = g->tw, tiles = g->tiles;
    float *restrict y00 = yt, *restrict y01 = yt + tiles;
    float *restrict y10 = y01 + tiles, *restrict y11 = y10 + tiles;
    for (int t = 0; t < tiles; t++) {
        float s[2][4];
        for (int j = 0; j < 4; j++) { /* s = A^T M */
            float m0 = mt[j * sm + t], m1 = mt[(4 + j) * sm + t];
            float m2 = mt[(8 + j) * sm + t], m3 = mt[(12 + j) * sm + t];
            s[0][j] = m0 + m1 + m2;
            s[1][j] = m1 - m2 - m3;
        }
        y00[t] = s[0][0] + s[0][1] + s[0][2] + bias;
        y01[t] = s[0][1] - s[0][2] - s[0][3] + bias;
        y10[t] = s[1][0] + s[1][1] + s[1][2] + bias;
        y11[t] = s[1][1] - s[1][2] - s[1][3] + bias;
    }
    int full = wo / 2; /* tile columns with both outputs inside */
    for (int ty = 0; ty < g->th; ty++) {
        int64_t t0 = (int64_t)ty * tw;
        for (int rr = 0; rr < 2 && 2 * ty + rr < ho; rr++) {
            const float *restrict a = (rr ? y10 : y00) + t0, *restrict b = (rr ? y11 : y01) + t0;
            float *restrict d = y + (int64_t)(2 * ty + rr) * wo;
            for (int tx = 0; tx < full; tx++) {
                d[2 * tx] = a[tx];
                d[2 * tx + 1] = b[tx];
            }
            if (full < tw)
                d[2 * full] = a[full];
        }
    }
}

/* V = the transformed input tiles of m samples (sample b at x + b*xs,
 * channel ci at + ci*xc), laid out as 16 matrices of c x (m*tiles); pl and
 * hr are the scratch of wino_input_plane. */
static void wino_inputs(const dl_wino_geom_t *g, const float *x, int64_t xs, int64_t xc, int m,
                        float *v, float *pl, float *hr)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T;
    memset(pl, 0, (size_t)wino_pad_floats(g) * sizeof(float));
    for (int b = 0; b < m; b++)
        for (int ci = 0; ci < g->c; ci++)
            wino_input_plane(g, x + b * xs + ci * xc, pl, hr, v + ci * T + (int64_t)b * g->tiles,
                             sv);
}

void dl_wino_conv(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs, int64_t xc,
                  int m, const float *bias, float *y, int64_t ys, float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T, sm = (int64_t)g->f * T;
    int64_t P = (int64_t)g->ho * g->wo;
    float *v = scratch, *mt = v + 16 * sv, *pl = mt + 16 * sm;
    float *hr = pl + wino_pad_floats(g), *yt = hr + 8 * (int64_t)(g->th + 1) * g->tw;
    wino_inputs(g, x, xs, xc, m, v, pl, hr);
    /* M[xi] (f x T) = U[xi] (f x c) . V[xi] (c x T) */
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->f, (int)T, g->c, 1.0f,
                    u + (int64_t)xi * g->f * g->c, g->c, v + xi * sv, (int)T, 0.0f, mt + xi * sm,
                    (int)T);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++)
            wino_output_plane(g, mt + fo * T + (int64_t)b * g->tiles, sm, bias ? bias[fo] : 0.0f,
                              yt, y + b * ys + fo * P);
}

/* The tiles of one output-gradient plane dz (ho x wo) taken back through the
 * output transform: dYt = A dY A^T, the gradient with respect to the tile's
 * 16 products, into dt[xi*sm + t]. The outputs a partial tile does not
 * write have no gradient (zeros). zt: 4 x tiles of scratch. */
static void wino_dout_plane(const dl_wino_geom_t *g, const float *restrict dz, float *restrict zt,
                            float *restrict dt, int64_t sm)
{
    int ho = g->ho, wo = g->wo, tw = g->tw, tiles = g->tiles, full = wo / 2;
    float *restrict za = zt, *restrict zb = zt + tiles;
    float *restrict zc = zb + tiles, *restrict zd = zc + tiles;
    for (int ty = 0; ty < g->th; ty++) {
        int64_t t0 = (int64_t)ty * tw;
        for (int rr = 0; rr < 2; rr++) {
            float *restrict a = (rr ? zc : za) + t0, *restrict b = (rr ? zd : zb) + t0;
            if (2 * ty + rr >= ho) {
                memset(a, 0, (size_t)tw * sizeof(float));
                memset(b, 0, (size_t)tw * sizeof(float));
                continue;
            }
            const float *restrict d = dz + (int64_t)(2 * ty + rr) * wo;
            for (int tx = 0; tx < full; tx++) {
                a[tx] = d[2 * tx];
                b[tx] = d[2 * tx + 1];
            }
            if (full < tw) {
                a[full] = d[2 * full];
                b[full] = 0.0f;
            }
        }
    }
    /* Rows of A dY: (a, b), (a+c, b+d), (a-c, b-d), (-c, -d), that is
     * p = ka*a + kc*c, q = ka*b + kc*d (exact: the factors are 0 and +-1);
     * each row (p, q) times A^T gives (p, p+q, p-q, -q). One row at a time,
     * so that the loop over the tiles has four output streams and vectorises. */
    static const float ka[4] = {1.0f, 1.0f, 1.0f, 0.0f}, kc[4] = {0.0f, 1.0f, -1.0f, -1.0f};
    for (int i = 0; i < 4; i++) {
        float *restrict d0 = dt + 4 * i * sm, *restrict d1 = d0 + sm;
        float *restrict d2 = d1 + sm, *restrict d3 = d2 + sm;
        float fa = ka[i], fc = kc[i];
        for (int t = 0; t < tiles; t++) {
            float p = fa * za[t] + fc * zc[t], q = fa * zb[t] + fc * zd[t];
            d0[t] = p;
            d1[t] = p + q;
            d2[t] = p - q;
            d3[t] = -q;
        }
    }
}

void dl_wino_dfilter_acc(const dl_wino_geom_t *g, const float *x, int64_t xs, int64_t xc,
                         const float *dz, int64_t zs, int64_t zc, int m, int accumulate, float *du,
                         float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = (int64_t)g->c * T, sm = (int64_t)g->f * T;
    float *v = scratch, *dt = v + 16 * sv, *pl = dt + 16 * sm;
    float *hr = pl + wino_pad_floats(g), *zt = hr + 8 * (int64_t)(g->th + 1) * g->tw;
    wino_inputs(g, x, xs, xc, m, v, pl, hr);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++)
            wino_dout_plane(g, dz + b * zs + fo * zc, zt, dt + fo * T + (int64_t)b * g->tiles, sm);
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
