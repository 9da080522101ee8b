/* Element-wise activation layer: y = f(x), same shape in and out.
 * The backward pass uses the output y, so no extra state is kept. */
#include <math.h>

#include "model.h"

const char *dl_act_name(dl_act_t a)
{
    switch (a) {
    case DL_ACT_RELU: return "relu";
    case DL_ACT_TANH: return "tanh";
    case DL_ACT_SIGMOID: return "sigmoid";
    default: return "none";
    }
}

static int64_t act_n_params(const dl_layer_t *l)
{
    return 0;
}

static void act_init(dl_layer_t *l, dl_rng_t *rng) {}

static void act_forward(const dl_layer_t *l, const float *restrict x, float *restrict y, int n)
{
    int64_t len = (int64_t)n * l->in_size;
    switch (l->spec.act) {
    case DL_ACT_RELU:
        for (int64_t i = 0; i < len; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case DL_ACT_TANH:
        for (int64_t i = 0; i < len; i++)
            y[i] = tanhf(x[i]);
        break;
    case DL_ACT_SIGMOID:
        for (int64_t i = 0; i < len; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    default:
        for (int64_t i = 0; i < len; i++)
            y[i] = x[i];
    }
}

static void act_backward(const dl_layer_t *l, const float *x, const float *restrict y,
                         const float *restrict dy, float *restrict dx, int n)
{
    if (!dx)
        return;
    int64_t len = (int64_t)n * l->in_size;
    switch (l->spec.act) {
    case DL_ACT_RELU:
        for (int64_t i = 0; i < len; i++)
            dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case DL_ACT_TANH:
        for (int64_t i = 0; i < len; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case DL_ACT_SIGMOID:
        for (int64_t i = 0; i < len; i++)
            dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    default:
        for (int64_t i = 0; i < len; i++)
            dx[i] = dy[i];
    }
}

static int64_t act_flops(const dl_layer_t *l, int need_dx)
{
    return 0;
}

const dl_layer_ops_t dl_activation_ops = {
    .name = "activation",
    .n_params = act_n_params,
    .init = act_init,
    .forward = act_forward,
    .backward = act_backward,
    .flops = act_flops,
};
