/* Winograd F(4x4, 3x3) convolution (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016), internal to models/: conv.c uses it
 * for the gradients (the forward pass on request) of 3x3 stride-1
 * convolutions without groups. Each 4x4 output tile costs 36
 * multiplications per channel pair instead of 144; the 36 element-wise
 * products over channels become 36 sgemm calls M[xi] (F x T) = U[xi] (F x C)
 * . V[xi] (C x T), where the T tiles of a block of samples sit side by side.
 *
 * Planes are NCHW float32 as everywhere in models/. */
#ifndef DL_WINOGRAD_H
#define DL_WINOGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The products per tile: one per element of the 6x6 transformed window. */
#define DL_WINO_NX 36

/* One stride-1 3x3 convolution: c input channels of h x w, f output
 * channels, zero padding p (0..2); output ho x wo = (h+2p-2) x (w+2p-2),
 * covered by th x tw tiles of 4x4 (the last row or column of tiles is partial
 * when ho or wo is not a multiple of 4). */
typedef struct dl_wino_geom {
    int c, h, w, f, p;
    int ho, wo, th, tw;
    int tiles; /* th * tw: tiles per sample */
} dl_wino_geom_t;

void dl_wino_geom(dl_wino_geom_t *g, int c, int h, int w, int f, int p);

/* Transformed filters u (36 x f x c) of weights w (f x c x 3 x 3, PyTorch
 * layout): U[xi] is an f x c matrix. */
void dl_wino_filter(const float *w, int f, int c, float *u);

/* Floats of scratch that dl_wino_conv needs for blocks of up to nb samples. */
size_t dl_wino_scratch_floats(const dl_wino_geom_t *g, int nb);

/* y = conv(x) + bias for m samples. Input plane (sample i, channel ci) of
 * h x w starts at x + i*xs + ci*xc, so that x can be a batch (xs = c*h*w,
 * xc = h*w) or any other sample-major layout. u: dl_wino_filter's output for
 * this geometry (36 x f x c); bias: f floats or NULL; y: sample i at
 * y + i*ys, f x ho x wo. scratch: dl_wino_scratch_floats(g, nb >= m) floats. */
void dl_wino_conv(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs, int64_t xc,
                  int m, const float *bias, float *y, int64_t ys, float *scratch);

/* The gradients of m samples: the weight gradient in the transformed
 * domain, du (36 x f x c) (+)= the sum over the samples' tiles of dYt[xi]
 * (f x T) . V[xi]^T (T x c), where V is the input transform of x (addressed
 * as in dl_wino_conv) and dYt = A dY A^T of the output gradient dz (plane of
 * sample i, channel fo at dz + i*zs + fo*zc, ho x wo); accumulate = 0
 * overwrites du. Since Y is linear in U = G g G^T, dg = G^T dU G
 * (dl_wino_dfilter) is the exact gradient of the direct convolution. Then,
 * unless dx is NULL, the input gradient dx (addressed as x) from dV[xi] =
 * U[xi]^T . dYt[xi], each tile adding B dV B^T to its window: the adjoint of
 * the forward pass, with u from dl_wino_filter. scratch as for
 * dl_wino_conv. */
void dl_wino_backward(const dl_wino_geom_t *g, const float *u, const float *x, int64_t xs,
                      int64_t xc, const float *dz, int64_t zs, int64_t zc, int m, int accumulate,
                      float *du, float *dx, float *scratch);
/* dw (f x c x 3 x 3) = G^T du G for each filter and channel, du 36 x f x c. */
void dl_wino_dfilter(const float *du, int f, int c, float *dw);

/* The algorithm of a conv layer. IM2COL: everything through im2col and
 * sgemm. WINOGRAD: the input and weight gradients through Winograd, the
 * forward pass through im2col. WINOGRAD_FWD: the forward pass too. AUTO
 * (dl_conv_set_algo only): WINOGRAD_FWD where it applies and pays, else
 * IM2COL, which is what conv_alloc chooses (conv.c says why). WINOGRAD and
 * WINOGRAD_FWD need a 3x3 stride-1 convolution without groups and with
 * pad <= 2. */
typedef enum {
    DL_CONV_AUTO,
    DL_CONV_IM2COL,
    DL_CONV_WINOGRAD,
    DL_CONV_WINOGRAD_FWD
} dl_conv_algo_t;

/* For tests and benchmarks; defined in conv.c, on a layer after alloc.
 * Returns 0, or DL_EINPUT when the layer cannot use the algorithm. */
int dl_conv_set_algo(dl_layer_t *l, dl_conv_algo_t algo);
dl_conv_algo_t dl_conv_get_algo(const dl_layer_t *l);

#endif
