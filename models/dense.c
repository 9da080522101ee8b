/* Dense (fully connected) layer: y = x W^T + b.
 * x: n x in, W: out x in (PyTorch layout), b: out, y: n x out. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "model.h"

static int64_t dense_n_params(const dl_layer_t *l)
{
    return l->in_size * l->out_size + (l->spec.bias ? l->out_size : 0);
}

static void dense_init(dl_layer_t *l, dl_rng_t *rng)
{
    int64_t fan_in = l->in_size, fan_out = l->out_size, nw = fan_in * fan_out;
    dl_init_t init = l->spec.init;
    if (init == DL_INIT_AUTO)
        init = l->spec.act == DL_ACT_RELU ? DL_INIT_KAIMING : DL_INIT_XAVIER;
    if (init == DL_INIT_KAIMING) {
        /* He et al.: normal with variance 2 / fan_in keeps ReLU activations' scale. */
        double sd = sqrt(2.0 / (double)fan_in);
        for (int64_t i = 0; i < nw; i++)
            l->w[i] = (float)(sd * dl_rng_normal(rng));
    } else {
        /* Glorot and Bengio: uniform with limit sqrt(6 / (fan_in + fan_out)). */
        double a = sqrt(6.0 / (double)(fan_in + fan_out));
        for (int64_t i = 0; i < nw; i++)
            l->w[i] = (float)(a * (2.0 * dl_rng_uniform(rng) - 1.0));
    }
    if (l->b)
        memset(l->b, 0, (size_t)fan_out * sizeof(float));
}

static void dense_forward(const dl_layer_t *l, const float *x, float *y, int n)
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
}

static void dense_backward(const dl_layer_t *l, const float *x, const float *y, const float *dy,
                           float *dx, int n)
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
}

static int64_t dense_flops(const dl_layer_t *l, int need_dx)
{
    int64_t mac = l->in_size * l->out_size;
    return 2 * mac * (need_dx ? 3 : 2);
}

const dl_layer_ops_t dl_dense_ops = {
    .name = "dense",
    .n_params = dense_n_params,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .flops = dense_flops,
};
