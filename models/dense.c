/* Dense (fully connected) layer: y = x W^T + b.
 * x: n x in (any input shape, read as a flat vector), W: out x in (PyTorch
 * layout), b: out, y: n x out. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "model.h"

static int dense_setup(dl_layer_t *l, dl_err_t *err)
{
    if (l->spec.units < 1)
        return DL_ERR(err, DL_EINPUT, "line %d: [dense] units must be at least 1", l->spec.line);
    l->out = (dl_shape_t){l->spec.units, 1, 1};
    return 0;
}

static int64_t dense_n_params(const dl_layer_t *l)
{
    return l->in_size * l->out_size + (l->spec.bias ? l->out_size : 0);
}

/* Kaiming normal (He et al.: variance 2 / fan_in keeps ReLU activations'
 * scale) or Xavier uniform (Glorot and Bengio: limit sqrt(6 / (fan_in +
 * fan_out))). Shared with conv through dl_init_weights. */
static void dense_init(dl_layer_t *l, dl_rng_t *rng)
{
    dl_init_weights(l->spec.init, l->spec.act, l->w, l->in_size * l->out_size, l->in_size,
                    l->out_size, rng);
    if (l->b)
        memset(l->b, 0, (size_t)l->out_size * sizeof(float));
}

static int dense_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    int in = (int)l->in_size, out = (int)l->out_size;
    float beta = 0.0f;
    if (l->b) {
        for (int i = 0; i < n; i++)
            memcpy(y + (int64_t)i * out, l->b, (size_t)out * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, l->w, in, beta, y,
                out);
    return 0;
}

static int dense_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                          int n)
{
    int in = (int)l->in_size, out = (int)l->out_size;
    /* dW (out x in) = dy^T (out x n) . x (n x in) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 0.0f,
                l->dw, in);
    if (l->db) {
        float *restrict db = l->db;
        memcpy(db, dy, (size_t)out * sizeof(float));
        for (int i = 1; i < n; i++) {
            const float *restrict row = dy + (int64_t)i * out;
            for (int j = 0; j < out; j++)
                db[j] += row[j];
        }
    }
    /* dx (n x in) = dy (n x out) . W (out x in) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, l->w, in,
                    0.0f, dx, in);
    return 0;
}

static int64_t dense_flops(const dl_layer_t *l)
{
    return 2 * l->in_size * l->out_size;
}

const dl_layer_ops_t dl_dense_ops = {
    .name = "dense",
    .setup = dense_setup,
    .n_params = dense_n_params,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .flops = dense_flops,
};
