/* The dense layer on the GPU (dense.c has the definition): cuBLAS products
 * and a kernel for the bias. x: n x in, W: out x in, b: out, y: n x out. */
#include "cuda.cuh"

/* y[i][j] = b[j] for the n rows, before the product adds x W^T. */
__global__ void rows_of_bias(float *y, const float *b, int64_t n, int out)
{
    GRID_LOOP(i, n * out)
    y[i] = b[i % out];
}

static int forward(dl_layer_t *l, const float *x, float *y, int n, dl_err_t *err)
{
    dl_cuda_t *g = LAYER_CUDA(l);
    int in = (int)l->in_size, out = (int)l->out_size;
    float beta = 0.0f;
    if (l->b) {
        rows_of_bias<<<blocks_for((int64_t)n * out), THREADS, 0, g->stream>>>(y, l->b, n, out);
        LAUNCH_CHECK(err);
        beta = 1.0f;
    }
    return dl_cuda_gemm(g, 0, 1, n, out, in, 1.0f, x, in, l->w, in, beta, y, out, err);
}

static int backward(dl_layer_t *l, const float *x, const float *dy, float *dx, int n, dl_err_t *err)
{
    dl_cuda_t *g = LAYER_CUDA(l);
    int in = (int)l->in_size, out = (int)l->out_size;
    /* dW (out x in) = dy^T (out x n) . x (n x in) */
    int rc = dl_cuda_gemm(g, 1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, l->dw, in, err);
    if (!rc && l->db) { /* db (1 x out) = ones (1 x n) . dy (n x out) */
        rc = dl_cuda_ones(g, n, err);
        if (!rc)
            rc = dl_cuda_gemm(g, 0, 0, 1, out, n, 1.0f, g->ones, n, dy, out, 0.0f, l->db, out, err);
    }
    /* dx (n x in) = dy (n x out) . W (out x in) */
    if (!rc && dx)
        rc = dl_cuda_gemm(g, 0, 0, n, in, out, 1.0f, dy, out, l->w, in, 0.0f, dx, in, err);
    return rc;
}

static int dense_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    return forward(l, x, y, n, LAYER_ERR(l));
}

static int dense_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                          int n)
{
    return backward(l, x, dy, dx, n, LAYER_ERR(l));
}

extern "C" const dl_layer_ops_t dl_dense_cuda_ops = {
    .name = "dense",
    .forward = dense_forward,
    .backward = dense_backward,
};
