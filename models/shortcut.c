/* Layers that only move data: [shortcut] adds an earlier layer's output to
 * its input (a residual connection, as darknet's shortcut); [flatten] turns
 * c x h x w into a vector of c*h*w features (the bytes do not change).
 *
 * The shortcut's source may be larger in space by an integer stride s and
 * have fewer channels (the identity shortcut "option A" of He et al.'s
 * CIFAR ResNets): y[c][i][j] = x[c][i][j] + src[c][i*s][j*s] for c < the
 * source's channels, x alone for the others. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int64_t no_params(const dl_layer_t *l)
{
    return 0;
}
static void no_init(dl_layer_t *l, dl_rng_t *rng) {}

static int shortcut_setup(dl_layer_t *l, dl_err_t *err)
{
    dl_shape_t a = l->aux_in, x = l->in;
    int s = x.h > 0 ? a.h / x.h : 0;
    if (a.c > x.c || s < 1 || a.h != x.h * s || a.w != x.w * s)
        return DL_ERR(err, DL_EINPUT,
                      "line %d: [shortcut] cannot add an output of shape %d x %d x %d to one of "
                      "shape %d x %d x %d; accepted: equal shapes, or a source with at most as "
                      "many channels and a size that is an integer multiple (it is subsampled)",
                      l->spec.line, a.c, a.h, a.w, x.c, x.h, x.w);
    l->spec.stride = s;
    l->out = l->in;
    return 0;
}

static int shortcut_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    size_t len = (size_t)max_batch * (size_t)l->aux_in.c * l->aux_in.h * l->aux_in.w;
    l->aux_dx = dl_calloc(len, sizeof(float), err);
    return l->aux_dx ? 0 : DL_ENOMEM;
}

static void shortcut_release(dl_layer_t *l)
{
    free(l->aux_dx);
    l->aux_dx = NULL;
}

static int same_shape(const dl_layer_t *l)
{
    return l->spec.stride == 1 && l->aux_in.c == l->in.c;
}

static int shortcut_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    const float *restrict a = l->aux_x;
    if (same_shape(l)) {
        int64_t len = (int64_t)n * l->in_size;
        for (int64_t i = 0; i < len; i++)
            y[i] = x[i] + a[i];
        return 0;
    }
    memcpy(y, x, (size_t)n * (size_t)l->in_size * sizeof(float));
    const int s = l->spec.stride, h = l->in.h, w = l->in.w, sw = l->aux_in.w;
    const int64_t asize = (int64_t)l->aux_in.c * l->aux_in.h * sw;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < l->aux_in.c; c++) {
            float *yo = y + i * l->in_size + (int64_t)c * h * w;
            const float *ao = a + i * asize + (int64_t)c * l->aux_in.h * sw;
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++)
                    yo[r * w + q] += ao[(int64_t)r * s * sw + q * s];
        }
    return 0;
}

/* dx = dy; aux_dx = dy on the positions the source contributed, else 0. */
static int shortcut_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                             float *dx, int n)
{
    if (dx)
        memcpy(dx, dy, (size_t)n * (size_t)l->in_size * sizeof(float));
    if (same_shape(l)) {
        memcpy(l->aux_dx, dy, (size_t)n * (size_t)l->in_size * sizeof(float));
        return 0;
    }
    const int s = l->spec.stride, h = l->in.h, w = l->in.w, sw = l->aux_in.w;
    const int64_t asize = (int64_t)l->aux_in.c * l->aux_in.h * sw;
    memset(l->aux_dx, 0, (size_t)(n * asize) * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int c = 0; c < l->aux_in.c; c++) {
            const float *g = dy + i * l->in_size + (int64_t)c * h * w;
            float *ao = l->aux_dx + i * asize + (int64_t)c * l->aux_in.h * sw;
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++)
                    ao[(int64_t)r * s * sw + q * s] = g[r * w + q];
        }
    return 0;
}

static int64_t shortcut_flops(const dl_layer_t *l)
{
    return l->in_size;
}

const dl_layer_ops_t dl_shortcut_ops = {
    .name = "shortcut",
    .setup = shortcut_setup,
    .n_params = no_params,
    .alloc = shortcut_alloc,
    .release = shortcut_release,
    .init = no_init,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
    .flops = shortcut_flops,
};

static int flatten_setup(dl_layer_t *l, dl_err_t *err)
{
    l->out = (dl_shape_t){l->in.c * l->in.h * l->in.w, 1, 1};
    return 0;
}

static int flatten_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    memcpy(y, x, (size_t)n * (size_t)l->in_size * sizeof(float));
    return 0;
}

static int flatten_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    if (dx)
        memcpy(dx, dy, (size_t)n * (size_t)l->in_size * sizeof(float));
    return 0;
}

static int64_t flatten_flops(const dl_layer_t *l)
{
    return 0;
}

const dl_layer_ops_t dl_flatten_ops = {
    .name = "flatten",
    .setup = flatten_setup,
    .n_params = no_params,
    .init = no_init,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .flops = flatten_flops,
};
