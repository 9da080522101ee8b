/* Winograd F(4x4, 3x3) convolution; see winograd.h. In one dimension a
 * 3-tap filter g over a 6-sample window d gives 4 outputs as
 *   y = A^T [(G g) .* (B^T d)],
 * from the Toom-Cook interpolation points 0, 1, -1, 1/2, -2 and infinity:
 *   B^T = [1 -3/2 -2  3/2  1  0;  0 -1  1/2  5/2  1  0;  0  1 -5/2  1/2  1  0;
 *          0 -2 -1  2  1  0;  0  1/2 -1 -1/2  1  0;  0  1 -3/2 -2  3/2  1]
 *   G   = [1 0 0;  1/3 1/3 1/3;  -1/3 1/3 -1/3;  -16/15 -8/15 -4/15;
 *          1/15 -2/15 4/15;  0 0 1]
 *   A^T = [1 1 1 1 1 0;  0 1 -1 1/2 -2 0;  0 1 1 1/4 4 0;  0 1 -1 1/8 -8 1]
 * and in two dimensions a 4x4 output tile is Y = A^T [sum over channels of
 * (G g G^T) .* (B^T d B)] A: 36 multiplications per channel pair instead of
 * 144. The points matter for rounding: with 0, +-1, +-2 (Lavin and Gray's
 * choice) a float convolution of 32 channels strays about 5e-6 of max |y|
 * from the exact sums, with 1/2 and -2 in their place about 1.7e-6
 * (Barabasz et al., "Error analysis and improving the accuracy of Winograd
 * convolution for deep neural networks", 2020); F(2x2, 3x3), which this
 * replaced, about 2e-7. The filter transforms (G g G^T and its adjoint)
 * run in double and round once.
 *
 * Layouts for a block of m samples, T = m * tiles columns, tile t = b*tiles +
 * ty*tw + tx of sample b:
 *   U: 36 x f x c (dl_wino_filter), V: 36 x c x T, M: 36 x f x T,
 * so that each of the 36 products is one row-major sgemm with N = T (the 36
 * matrices of V and of M a little further apart than their size; see
 * wino_stride). */
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
    g->th = (g->ho + 3) / 4;
    g->tw = (g->wo + 3) / 4;
    g->tiles = g->th * g->tw;
}

/* Per-plane scratch, after V and M: the zero-padded input plane,
 * (4*th + 2) x (4*tw + 2), enough for every tile's 6x6 window (the partial
 * tiles' extra rows or columns read zeros and feed outputs never written;
 * the input gradient is gathered in the same plane), then the
 * output-gradient plane padded with zeros to 4*th x 4*tw. */
static int64_t wino_pad_floats(const dl_wino_geom_t *g)
{
    return (int64_t)(4 * g->th + 2) * (4 * g->tw + 2) + 2; /* + wino_acc_windows' overreach */
}

static int64_t wino_zpad_floats(const dl_wino_geom_t *g)
{
    return (int64_t)(4 * g->th) * (4 * g->tw);
}

/* The distance between consecutive matrices of V or M, at least n floats: a
 * whole number of cache lines, and an odd one. The transforms write (or read)
 * the 36 matrices as 36 streams; at distances of a multiple of 4 KiB (c = 32
 * channels of 64 tiles) they all fall in the same L1 sets and the input
 * transform ran at half speed. An odd number of 64-byte lines puts them in 36
 * different sets. */
static int64_t wino_stride(int64_t n)
{
    int64_t lines = (n + 15) / 16;
    return 16 * (lines | 1);
}

size_t dl_wino_scratch_floats(const dl_wino_geom_t *g, int nb)
{
    int64_t T = (int64_t)nb * g->tiles;
    return (size_t)(DL_WINO_NX * (wino_stride(g->c * T) + wino_stride(g->f * T)) +
                    wino_pad_floats(g) + wino_zpad_floats(g));
}

/* G, and G g G^T of one 3x3 kernel in double. */
static const double wino_g[6][3] = {{1.0, 0.0, 0.0},
                                    {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                    {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                    {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                    {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                    {0.0, 0.0, 1.0}};

void dl_wino_filter(const float *w, int f, int c, float *u)
{
    int64_t s = (int64_t)f * c; /* stride between the 36 matrices */
    for (int64_t k = 0; k < s; k++) {
        double t[6][3];
        const float *g = w + k * 9;
        for (int i = 0; i < 6; i++) /* t = G g */
            for (int j = 0; j < 3; j++)
                t[i][j] = wino_g[i][0] * g[j] + wino_g[i][1] * g[3 + j] + wino_g[i][2] * g[6 + j];
        for (int i = 0; i < 6; i++) /* U = t G^T */
            for (int j = 0; j < 6; j++)
                u[(6 * i + j) * s + k] = (float)(t[i][0] * wino_g[j][0] + t[i][1] * wino_g[j][1] +
                                                 t[i][2] * wino_g[j][2]);
    }
}

/* The three tile transforms below work on wv: with SSE2 (every x86-64 CPU)
 * four tiles at once, one per lane, else one tile. Each is written once over
 * wv, so every tile of a plane goes through the same operations in the same
 * order whichever lane or group it falls in. A plane's tiles go in groups of
 * four consecutive tile numbers (the groups may span rows of tiles), whose
 * transformed values are then contiguous in the 36 matrices; a plane whose
 * tile count is not a multiple of four ends with a group at its last four
 * tiles, which recomputes some with the same result. Windows are gathered
 * lane by lane with 4x4 transposes; outputs are scattered the same way. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define WL 4
typedef __m128 wv;
static inline wv wadd(wv a, wv b) { return _mm_add_ps(a, b); }
static inline wv wsub(wv a, wv b) { return _mm_sub_ps(a, b); }
static inline wv wmul(wv a, float k) { return _mm_mul_ps(a, _mm_set1_ps(k)); }
static inline wv wset(float k) { return _mm_set1_ps(k); }
#else
#define WL 1
typedef float wv;
static inline wv wadd(wv a, wv b) { return a + b; }
static inline wv wsub(wv a, wv b) { return a - b; }
static inline wv wmul(wv a, float k) { return a * k; }
static inline wv wset(float k) { return k; }
#endif

/* r = B^T d for one column or row of six. */
static inline void wino_in6(const wv d[6], wv r[6])
{
    wv a = wsub(d[3], d[1]), b = wsub(d[4], d[2]);
    wv c = wadd(d[4], wmul(wadd(d[2], d[3]), 0.5f));
    r[0] = wadd(wsub(wadd(d[0], d[4]), wadd(d[2], d[2])), wmul(a, 1.5f));
    r[1] = wsub(wadd(c, wadd(d[3], d[3])), d[1]);
    r[2] = wsub(wadd(c, d[1]), wmul(d[2], 3.0f));
    r[3] = wadd(wadd(a, a), b);
    r[4] = wsub(b, wmul(a, 0.5f));
    r[5] = wadd(wsub(wadd(d[1], d[5]), wadd(d[3], d[3])), wmul(b, 1.5f));
}

/* d = B r for one column or row of six (the adjoint of wino_in6). */
static inline void wino_in6_adj(const wv r[6], wv d[6])
{
    wv a = wsub(wadd(wmul(r[0], 1.5f), wadd(r[3], r[3])), wmul(r[4], 0.5f));
    wv b = wadd(wadd(r[3], r[4]), wmul(r[5], 1.5f));
    d[0] = r[0];
    d[1] = wadd(wsub(wsub(r[2], r[1]), a), r[5]);
    d[2] = wsub(wsub(wmul(r[1], 0.5f), wadd(r[0], r[0])), wadd(wmul(r[2], 2.5f), b));
    d[3] = wsub(wadd(a, wadd(wmul(r[1], 2.5f), wmul(r[2], 0.5f))), wadd(r[5], r[5]));
    d[4] = wadd(wadd(wadd(r[0], r[1]), r[2]), b);
    d[5] = r[5];
}

/* o = A^T m for one column or row of six products. */
static inline void wino_out4(const wv m[6], wv o[4])
{
    wv s = wadd(m[1], m[2]), t = wsub(m[1], m[2]);
    o[0] = wadd(wadd(m[0], s), wadd(m[3], m[4]));
    o[1] = wsub(wadd(t, wmul(m[3], 0.5f)), wmul(m[4], 2.0f));
    o[2] = wadd(wadd(s, wmul(m[3], 0.25f)), wmul(m[4], 4.0f));
    o[3] = wadd(wsub(wadd(t, wmul(m[3], 0.125f)), wmul(m[4], 8.0f)), m[5]);
}

/* r = A z for one column or row of four output gradients (the adjoint of
 * wino_out4). */
static inline void wino_dout6(const wv z[4], wv r[6])
{
    wv e = wadd(z[0], z[2]), o = wadd(z[1], z[3]);
    r[0] = z[0];
    r[1] = wadd(e, o);
    r[2] = wsub(e, o);
    r[3] = wadd(wadd(z[0], wmul(z[1], 0.5f)), wadd(wmul(z[2], 0.25f), wmul(z[3], 0.125f)));
    r[4] = wadd(wsub(z[0], wmul(z[1], 2.0f)), wsub(wmul(z[2], 4.0f), wmul(z[3], 8.0f)));
    r[5] = z[3];
}

/* y[i][j] = (A^T m A)[i][j] + bias of one tile's 36 products. */
static inline void wino_output_tile(const wv m[36], wv bias, wv y[4][4])
{
    wv s[4][6], col[6], o[4];
    for (int j = 0; j < 6; j++) { /* A^T m, column by column */
        for (int i = 0; i < 6; i++)
            col[i] = m[6 * i + j];
        wino_out4(col, o);
        for (int i = 0; i < 4; i++)
            s[i][j] = o[i];
    }
    for (int i = 0; i < 4; i++) { /* (A^T m) A, row by row */
        wino_out4(s[i], o);
        for (int j = 0; j < 4; j++)
            y[i][j] = wadd(o[j], bias);
    }
}

/* Loads and stores of one group of lanes. e[k]: lane k's 4x4 block or 6x6
 * window, rows pw apart. */
#if defined(__SSE2__)
/* d[r][0..3] = row r of the four lanes' blocks, one lane each. */
static inline void wino_load4x4(const float *const e[4], int64_t off, wv d[4])
{
    wv a0 = _mm_loadu_ps(e[0] + off), a1 = _mm_loadu_ps(e[1] + off);
    wv a2 = _mm_loadu_ps(e[2] + off), a3 = _mm_loadu_ps(e[3] + off);
    _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
    d[0] = a0;
    d[1] = a1;
    d[2] = a2;
    d[3] = a3;
}

/* d[0..5] = row off of the four lanes' 6x6 windows. */
static inline void wino_load_row6(const float *const e[4], int64_t off, wv d[6])
{
    wino_load4x4(e, off, d);
    wv z = _mm_setzero_ps();
    wv h0 = _mm_loadl_pi(z, (const __m64 *)(e[0] + off + 4));
    wv h1 = _mm_loadl_pi(z, (const __m64 *)(e[1] + off + 4));
    wv h2 = _mm_loadl_pi(z, (const __m64 *)(e[2] + off + 4));
    wv h3 = _mm_loadl_pi(z, (const __m64 *)(e[3] + off + 4));
    wv l01 = _mm_unpacklo_ps(h0, h1), l23 = _mm_unpacklo_ps(h2, h3);
    d[4] = _mm_movelh_ps(l01, l23);
    d[5] = _mm_movehl_ps(l23, l01);
}

static inline void wino_load_blocks(const float *const e[4], int pw, wv z[4][4])
{
    for (int r = 0; r < 4; r++)
        wino_load4x4(e, (int64_t)r * pw, z[r]);
}

/* Adds each of the first n lanes' 6x6 window d[a][b] to its window at
 * e[k] (rows pw apart), one lane after the other, so that windows may
 * overlap. The last two columns go as a 4-float add at column 4 with zeros
 * in the upper half (columns 6 and 7 of the window, which the caller's
 * buffer must have room for): the same 16 bytes as the next lane's first
 * four columns, which lets the loads take the values just stored. */
static inline void wino_acc_windows(wv d[6][6], float *const e[4], int pw, int n)
{
    wv z = _mm_setzero_ps();
    for (int a = 0; a < 6; a++) {
        int64_t off = (int64_t)a * pw;
        wv l0 = d[a][0], l1 = d[a][1], l2 = d[a][2], l3 = d[a][3];
        _MM_TRANSPOSE4_PS(l0, l1, l2, l3);
        wv lo = _mm_unpacklo_ps(d[a][4], d[a][5]), hi = _mm_unpackhi_ps(d[a][4], d[a][5]);
        wv head[4] = {l0, l1, l2, l3};
        wv tail[4] = {_mm_movelh_ps(lo, z), _mm_movehl_ps(z, lo), _mm_movelh_ps(hi, z),
                      _mm_movehl_ps(z, hi)};
        for (int k = 0; k < n; k++) {
            float *p = e[k] + off;
            _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), head[k]));
        }
        for (int k = 0; k < n; k++) {
            float *p = e[k] + off + 4;
            _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), tail[k]));
        }
    }
}

/* The first n (1..4) lanes of x to p[0..n). */
static inline void wino_store_lanes(float *p, wv x, int n)
{
    if (n == 4) {
        _mm_storeu_ps(p, x);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, x);
    for (int k = 0; k < n; k++)
        p[k] = t[k];
}

static inline wv wino_load_lanes(const float *p, int n)
{
    if (n == 4)
        return _mm_loadu_ps(p);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < n; k++)
        t[k] = p[k];
    return _mm_loadu_ps(t);
}

/* The first n (1..4) floats of x to p. */
static inline void wino_store_part(float *p, wv x, int n)
{
    if (n >= 4) {
        _mm_storeu_ps(p, x);
        return;
    }
    if (n >= 2)
        _mm_storel_pi((__m64 *)p, x);
    else
        _mm_store_ss(p, x);
    if (n == 3)
        _mm_store_ss(p + 2, _mm_movehl_ps(x, x));
}

/* Lane k's rows of y (4x4, rows in y[i][0..3] across lanes) to d[k], rows
 * wo apart, nr[k] rows of nc[k] outputs, for the first n lanes. */
static inline void wino_store_blocks(wv y[4][4], float *const d[4], int wo, const int nr[4],
                                     const int nc[4], int n)
{
    for (int i = 0; i < 4; i++) {
        wv r0 = y[i][0], r1 = y[i][1], r2 = y[i][2], r3 = y[i][3];
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        wv row[4] = {r0, r1, r2, r3};
        for (int k = 0; k < n; k++)
            if (i < nr[k])
                wino_store_part(d[k] + (int64_t)i * wo, row[k], nc[k]);
    }
}
#else
static inline void wino_load_row6(const float *const e[1], int64_t off, wv d[6])
{
    for (int c = 0; c < 6; c++)
        d[c] = e[0][off + c];
}

static inline void wino_load_blocks(const float *const e[1], int pw, wv z[4][4])
{
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            z[r][c] = e[0][(int64_t)r * pw + c];
}

static inline void wino_acc_windows(wv d[6][6], float *const e[1], int pw, int n)
{
    (void)n;
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++)
            e[0][(int64_t)a * pw + b] += d[a][b];
}

static inline void wino_store_lanes(float *p, wv x, int n)
{
    (void)n;
    *p = x;
}

static inline wv wino_load_lanes(const float *p, int n)
{
    (void)n;
    return *p;
}

static inline void wino_store_blocks(wv y[4][4], float *const d[1], int wo, const int nr[1],
                                     const int nc[1], int n)
{
    (void)n;
    for (int i = 0; i < nr[0]; i++)
        for (int j = 0; j < nc[0]; j++)
            d[0][(int64_t)i * wo + j] = y[i][j];
}
#endif

/* The group of tiles that starts at tile t0 of a plane with `tiles` tiles:
 * its first tile (moved back so that a group holds WL tiles where the plane
 * has that many) and the number of lanes in use. */
static inline int wino_group(int t0, int tiles, int *n)
{
    if (t0 + WL <= tiles) {
        *n = WL;
        return t0;
    }
    if (tiles >= WL) {
        *n = WL;
        return tiles - WL;
    }
    *n = tiles - t0;
    return t0;
}

/* The offsets of the windows (or blocks) of the lanes of the group at tile
 * t (n lanes in use; the others repeat the last): tile ty*tw + tx at
 * 4*ty*pw + 4*tx. */
static inline void wino_lanes(int pw, int tw, int t, int n, int64_t off[WL])
{
    int ty = t / tw, tx = t - ty * tw;
    for (int k = 0; k < WL; k++) {
        off[k] = (int64_t)4 * ty * pw + 4 * tx;
        if (k + 1 < n && ++tx == tw) {
            tx = 0;
            ty++;
        }
    }
}

/* V = B^T d B of every tile of one padded input plane pl ((4*th + 2) x
 * (4*tw + 2)): v[xi*sv + t] for the plane's tiles t, xi = 6i + j for
 * element (i, j). */
static void wino_input_plane(const dl_wino_geom_t *g, const float *restrict pl,
                             float *restrict v, int64_t sv)
{
    int pw = 4 * g->tw + 2, tiles = g->tiles;
    for (int t0 = 0; t0 < tiles; t0 += WL) {
        int n, t = wino_group(t0, tiles, &n);
        const float *e[WL];
        int64_t off[WL];
        wino_lanes(pw, g->tw, t, n, off);
        for (int k = 0; k < WL; k++)
            e[k] = pl + off[k];
        wv h[6][6], col[6], r[6];
        for (int i = 0; i < 6; i++) { /* d B, row by row */
            wv d[6];
            wino_load_row6(e, (int64_t)i * pw, d);
            wino_in6(d, h[i]);
        }
        float *vt = v + t;
        for (int j = 0; j < 6; j++) { /* B^T (d B), column by column */
            for (int i = 0; i < 6; i++)
                col[i] = h[i][j];
            wino_in6(col, r);
            for (int i = 0; i < 6; i++)
                wino_store_lanes(vt + (6 * i + j) * sv, r[i], n);
        }
    }
}

/* y (ho x wo) = A^T M A + bias for the tiles of one output plane, whose
 * products are mt[xi*sm + t]; partial tiles write only their valid outputs. */
static void wino_output_plane(const dl_wino_geom_t *g, const float *restrict mt, int64_t sm,
                              float bias, float *restrict y)
{
    int ho = g->ho, wo = g->wo, tw = g->tw, tiles = g->tiles;
    wv b = wset(bias);
    for (int t0 = 0; t0 < tiles; t0 += WL) {
        int n, t = wino_group(t0, tiles, &n);
        float *d[WL];
        int nr[WL], nc[WL];
        for (int k = 0; k < WL; k++) {
            int tk = t + (k < n ? k : n - 1), ty = tk / tw, tx = tk % tw;
            d[k] = y + (int64_t)4 * ty * wo + 4 * tx;
            nr[k] = ho - 4 * ty < 4 ? ho - 4 * ty : 4;
            nc[k] = wo - 4 * tx < 4 ? wo - 4 * tx : 4;
        }
        wv m[36], o[4][4];
        for (int xi = 0; xi < 36; xi++)
            m[xi] = wino_load_lanes(mt + xi * sm + t, n);
        wino_output_tile(m, b, o);
        wino_store_blocks(o, d, wo, nr, nc, n);
    }
}

/* V = the transformed input tiles of m samples (sample b at x + b*xs,
 * channel ci at + ci*xc), laid out as 36 matrices of c x (m*tiles); pl is
 * the padded plane's scratch. */
static void wino_inputs(const dl_wino_geom_t *g, const float *x, int64_t xs, int64_t xc, int m,
                        float *v, float *pl)
{
    int64_t T = (int64_t)m * g->tiles, sv = wino_stride(g->c * T);
    int pw = 4 * g->tw + 2;
    memset(pl, 0, (size_t)wino_pad_floats(g) * sizeof(float));
    for (int b = 0; b < m; b++)
        for (int ci = 0; ci < g->c; ci++) {
            const float *src = x + b * xs + ci * xc;
            for (int r = 0; r < g->h; r++)
                memcpy(pl + (int64_t)(r + g->p) * pw + g->p, src + (int64_t)r * g->w,
                       (size_t)g->w * sizeof(float));
            wino_input_plane(g, pl, v + ci * T + (int64_t)b * g->tiles, sv);
        }
}

void dl_wino_conv(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs, int64_t xc,
                  int m, const float *bias, float *y, int64_t ys, float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = wino_stride(g->c * T), sm = wino_stride(g->f * T);
    int64_t P = (int64_t)g->ho * g->wo;
    float *v = scratch, *mt = v + DL_WINO_NX * sv, *pl = mt + DL_WINO_NX * sm;
    wino_inputs(g, x, xs, xc, m, v, pl);
    /* M[xi] (f x T) = U[xi] (f x c) . V[xi] (c x T) */
    for (int xi = 0; xi < DL_WINO_NX; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->f, (int)T, g->c, 1.0f,
                    u + (int64_t)xi * g->f * g->c, g->c, v + xi * sv, (int)T, 0.0f, mt + xi * sm,
                    (int)T);
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++)
            wino_output_plane(g, mt + fo * T + (int64_t)b * g->tiles, sm, bias ? bias[fo] : 0.0f,
                              y + b * ys + fo * P);
}

/* The tiles of one output-gradient plane, padded with zeros to 4*th x 4*tw
 * in pz, taken back through the output transform: dYt = A dY A^T, the
 * gradient with respect to each tile's 36 products, into dt[xi*sm + t]. */
static void wino_dout_plane(const dl_wino_geom_t *g, const float *restrict pz, float *restrict dt,
                            int64_t sm)
{
    int pw = 4 * g->tw, tw = g->tw, tiles = g->tiles;
    for (int t0 = 0; t0 < tiles; t0 += WL) {
        int n, t = wino_group(t0, tiles, &n);
        const float *e[WL];
        int64_t off[WL];
        wino_lanes(pw, tw, t, n, off);
        for (int k = 0; k < WL; k++)
            e[k] = pz + off[k];
        wv z[4][4], p[4][6], col[4], r[6];
        wino_load_blocks(e, pw, z);
        for (int i = 0; i < 4; i++) /* z A^T, row by row */
            wino_dout6(z[i], p[i]);
        float *d = dt + t;
        for (int l = 0; l < 6; l++) { /* A (z A^T), column by column */
            for (int i = 0; i < 4; i++)
                col[i] = p[i][l];
            wino_dout6(col, r);
            for (int k = 0; k < 6; k++)
                wino_store_lanes(d + (6 * k + l) * sm, r[k], n);
        }
    }
}

/* The input gradient of one plane from its tiles' dV[xi*sv + t]: each tile
 * adds B dV B^T to its 6x6 window of the padded plane pg (zero on entry),
 * whose interior then goes to dst (h x w). */
static void wino_input_plane_adj(const dl_wino_geom_t *g, const float *restrict dv, int64_t sv,
                                 float *restrict pg, float *restrict dst)
{
    int pw = 4 * g->tw + 2, tiles = g->tiles;
    for (int t = 0; t < tiles; t += WL) {
        int n = tiles - t < WL ? tiles - t : WL; /* no overlapping groups: windows add up */
        float *e[WL];
        int64_t off[WL];
        wino_lanes(pw, g->tw, t, n, off);
        for (int k = 0; k < WL; k++)
            e[k] = pg + off[k];
        wv q[6][6], row[6], d[6][6], col[6], r[6];
        for (int i = 0; i < 6; i++) { /* dV B^T, row by row */
            for (int j = 0; j < 6; j++)
                row[j] = wino_load_lanes(dv + (6 * i + j) * sv + t, n);
            wino_in6_adj(row, q[i]);
        }
        for (int b = 0; b < 6; b++) { /* B (dV B^T), column by column */
            for (int i = 0; i < 6; i++)
                col[i] = q[i][b];
            wino_in6_adj(col, r);
            for (int a = 0; a < 6; a++)
                d[a][b] = r[a];
        }
        wino_acc_windows(d, e, pw, n);
    }
    for (int r = 0; r < g->h; r++)
        memcpy(dst + (int64_t)r * g->w, pg + (int64_t)(r + g->p) * pw + g->p,
               (size_t)g->w * sizeof(float));
}

void dl_wino_backward(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs,
                      int64_t xc, const float *dz, int64_t zs, int64_t zc, int m, int accumulate,
                      float *du, float *dx, float *scratch)
{
    int64_t T = (int64_t)m * g->tiles, sv = wino_stride(g->c * T), sm = wino_stride(g->f * T);
    float *v = scratch, *dt = v + DL_WINO_NX * sv, *pl = dt + DL_WINO_NX * sm;
    float *pz = pl + wino_pad_floats(g);
    int pw = 4 * g->tw;
    wino_inputs(g, x, xs, xc, m, v, pl);
    memset(pz, 0, (size_t)wino_zpad_floats(g) * sizeof(float));
    for (int b = 0; b < m; b++)
        for (int fo = 0; fo < g->f; fo++) {
            const float *src = dz + b * zs + fo * zc;
            for (int r = 0; r < g->ho; r++)
                memcpy(pz + (int64_t)r * pw, src + (int64_t)r * g->wo,
                       (size_t)g->wo * sizeof(float));
            wino_dout_plane(g, pz, dt + fo * T + (int64_t)b * g->tiles, sm);
        }
    /* dU[xi] (f x c) (+)= dYt[xi] (f x T) . V[xi]^T (T x c): a long reduction over the tiles. */
    for (int xi = 0; xi < DL_WINO_NX; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->f, g->c, (int)T, 1.0f, dt + xi * sm,
                    (int)T, v + xi * sv, (int)T, accumulate ? 1.0f : 0.0f,
                    du + (int64_t)xi * g->f * g->c, g->c);
    if (!dx)
        return;
    /* dV[xi] (c x T) = U[xi]^T (c x f) . dYt[xi] (f x T), over V, which is used up. */
    for (int xi = 0; xi < DL_WINO_NX; xi++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->c, (int)T, g->f, 1.0f,
                    u + (int64_t)xi * g->f * g->c, g->c, dt + xi * sm, (int)T, 0.0f, v + xi * sv,
                    (int)T);
    for (int b = 0; b < m; b++)
        for (int ci = 0; ci < g->c; ci++) {
            memset(pl, 0, (size_t)wino_pad_floats(g) * sizeof(float));
            wino_input_plane_adj(g, v + ci * T + (int64_t)b * g->tiles, sv, pl,
                                 dx + b * xs + ci * xc);
        }
}

void dl_wino_dfilter(const float *du, int f, int c, float *dw)
{
    int64_t s = (int64_t)f * c;
    for (int64_t k = 0; k < s; k++) {
        double d[6][6], t[3][6];
        for (int xi = 0; xi < 36; xi++)
            d[xi / 6][xi % 6] = du[xi * s + k];
        for (int i = 0; i < 3; i++) /* t = G^T dU */
            for (int j = 0; j < 6; j++) {
                double acc = 0.0;
                for (int r = 0; r < 6; r++)
                    acc += wino_g[r][i] * d[r][j];
                t[i][j] = acc;
            }
        float *o = dw + k * 9;
        for (int i = 0; i < 3; i++) /* dW = t G */
            for (int j = 0; j < 3; j++) {
                double acc = 0.0;
                for (int r = 0; r < 6; r++)
                    acc += t[i][r] * wino_g[r][j];
                o[i * 3 + j] = (float)acc;
            }
    }
}
