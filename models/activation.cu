/* The activation layer on the GPU: activation.c's formulas, one element
 * per thread. */
#include "cuda.cuh"

__global__ void act_fwd(dl_act_t a, const float *x, float *y, int64_t len)
{
    GRID_LOOP(i, len)
    y[i] = dl_dev_act(a, x[i]);
}

__global__ void act_bwd(dl_act_t a, const float *x, const float *y, const float *dy, float *dx,
                        int64_t len)
{
    GRID_LOOP(i, len)
    dx[i] = dl_dev_act_grad(a, x[i], y[i], dy[i]);
}

static int act_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    int64_t len = (int64_t)n * l->in_size;
    act_fwd<<<blocks_for(len), THREADS, 0, LAYER_CUDA(l)->stream>>>(l->spec.act, x, y, len);
    LAUNCH_CHECK(err);
    return 0;
}

static int act_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                        int n)
{
    dl_err_t *err = LAYER_ERR(l);
    if (!dx)
        return 0;
    int64_t len = (int64_t)n * l->in_size;
    act_bwd<<<blocks_for(len), THREADS, 0, LAYER_CUDA(l)->stream>>>(l->spec.act, x, y, dy, dx, len);
    LAUNCH_CHECK(err);
    return 0;
}

extern "C" const dl_layer_ops_t dl_activation_cuda_ops = {
    .name = "activation",
    .forward = act_forward,
    .backward = act_backward,
};
