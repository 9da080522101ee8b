/* Element-wise activations: the [activation] layer, and the helpers any
 * layer uses to apply one. Same shape in and out. */
#include <math.h>

#include "model.h"

#define LEAKY_SLOPE 0.01f /* torch.nn.LeakyReLU's default */

const char *dl_act_name(dl_act_t a)
{
    switch (a) {
    case DL_ACT_RELU: return "relu";
    case DL_ACT_LEAKY: return "leaky";
    case DL_ACT_GELU: return "gelu";
    case DL_ACT_TANH: return "tanh";
    case DL_ACT_SIGMOID: return "sigmoid";
    default: return "none";
    }
}

void dl_act_forward(dl_act_t a, const float *restrict x, float *restrict y, int64_t len)
{
    switch (a) {
    case DL_ACT_RELU:
        for (int64_t i = 0; i < len; i++) {
            float v = x[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case DL_ACT_LEAKY:
        for (int64_t i = 0; i < len; i++) {
            float v = x[i];
            y[i] = v > 0.0f ? v : LEAKY_SLOPE * v;
        }
        break;
    case DL_ACT_GELU: /* x * Phi(x), Phi the standard normal CDF */
        for (int64_t i = 0; i < len; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
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

/* Each loop loads every operand unconditionally, so the compiler can turn
 * the selections into vector blends (a conditional load blocks that). */
void dl_act_backward(dl_act_t a, const float *restrict x, const float *restrict y,
                     const float *restrict dy, float *restrict dx, int64_t len)
{
    switch (a) {
    case DL_ACT_RELU:
        for (int64_t i = 0; i < len; i++) {
            float g = dy[i];
            dx[i] = y[i] > 0.0f ? g : 0.0f;
        }
        break;
    case DL_ACT_LEAKY: /* y > 0 exactly where x > 0: the output suffices */
        for (int64_t i = 0; i < len; i++) {
            float g = dy[i];
            dx[i] = y[i] > 0.0f ? g : LEAKY_SLOPE * g;
        }
        break;
    case DL_ACT_GELU: /* Phi(x) + x * phi(x) */
        for (int64_t i = 0; i < len; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * x[i] * x[i]);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
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

int dl_act_fusable(dl_act_t a)
{
    return a != DL_ACT_GELU;
}

void dl_act_inplace(dl_act_t a, float *restrict v, int64_t len)
{
    switch (a) {
    case DL_ACT_RELU:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] > 0.0f ? v[i] : 0.0f;
        break;
    case DL_ACT_LEAKY:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] > 0.0f ? v[i] : LEAKY_SLOPE * v[i];
        break;
    case DL_ACT_GELU:
        for (int64_t i = 0; i < len; i++)
            v[i] = 0.5f * v[i] * (1.0f + erff(v[i] * 0.70710678118654752f));
        break;
    case DL_ACT_TANH:
        for (int64_t i = 0; i < len; i++)
            v[i] = tanhf(v[i]);
        break;
    case DL_ACT_SIGMOID:
        for (int64_t i = 0; i < len; i++)
            v[i] = 1.0f / (1.0f + expf(-v[i]));
        break;
    default: break;
    }
}

static int act_setup(dl_layer_t *l, dl_err_t *err)
{
    l->out = l->in;
    return 0;
}

static int64_t act_n_params(const dl_layer_t *l)
{
    return 0;
}

static void act_init(dl_layer_t *l, dl_rng_t *rng) {}

static int act_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_act_forward(l->spec.act, x, y, (int64_t)n * l->in_size);
    return 0;
}

static int act_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                        int n)
{
    if (dx)
        dl_act_backward(l->spec.act, x, y, dy, dx, (int64_t)n * l->in_size);
    return 0;
}

static int64_t act_flops(const dl_layer_t *l)
{
    return l->in_size;
}

const dl_layer_ops_t dl_activation_ops = {
    .name = "activation",
    .setup = act_setup,
    .n_params = act_n_params,
    .init = act_init,
    .forward = act_forward,
    .backward = act_backward,
    .flops = act_flops,
};
