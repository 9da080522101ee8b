/* Every layer's backward pass against central finite differences of its
 * forward pass, and the whole model's parameter gradients against finite
 * differences of the loss. Depends on models/ only (no MPI, no HDF5).
 *
 * For a layer, the scalar probed is f = sum(y * r) for a fixed random r, so
 * the backward pass is run with dy = r. Sums are taken in double. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "models/model.h"

#define H 1e-2 /* step of the central differences; f32 rounding limits smaller steps */

static dl_rng_t rng;

static float *random_buf(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(scale * dl_rng_normal(&rng));
    return p;
}

static double probe(const dl_layer_t *l, const float *x, float *y, const float *r, int n)
{
    l->ops->forward(l, x, y, n);
    double f = 0.0;
    for (int64_t i = 0; i < n * l->out_size; i++)
        f += (double)y[i] * r[i];
    return f;
}

/* Central difference of probe() with respect to *v. */
static double numeric(const dl_layer_t *l, float *v, const float *x, float *y, const float *r,
                      int n)
{
    float keep = *v;
    *v = keep + (float)H;
    double fp = probe(l, x, y, r, n);
    *v = keep - (float)H;
    double fm = probe(l, x, y, r, n);
    *v = keep;
    return (fp - fm) / (2.0 * H);
}

/* Check dx and the parameter gradients of layer l (views already set). */
static void check_layer(dl_layer_t *l, int n, int64_t n_params, float *params, float *grads,
                        int away_from_zero)
{
    int64_t nin = n * l->in_size, nout = n * l->out_size;
    float *x = random_buf(nin, 1.0), *r = random_buf(nout, 1.0);
    float *y = malloc(sizeof(float) * (size_t)nout), *dx = malloc(sizeof(float) * (size_t)nin);
    if (away_from_zero) /* keep ReLU's kink out of reach of the finite differences */
        for (int64_t i = 0; i < nin; i++)
            if (fabsf(x[i]) < 0.1f)
                x[i] = x[i] < 0 ? -0.1f - x[i] : 0.1f + x[i];
    for (int64_t i = 0; i < n_params; i++)
        grads[i] = 7.0f; /* stale values: backward must overwrite them */
    l->ops->forward(l, x, y, n);
    l->ops->backward(l, x, y, r, dx, n);
    for (int64_t i = 0; i < nin; i++)
        CHECK_CLOSE(dx[i], numeric(l, &x[i], x, y, r, n), 2e-3, 2e-3);
    for (int64_t i = 0; i < n_params; i++)
        CHECK_CLOSE(grads[i], numeric(l, &params[i], x, y, r, n), 2e-3, 2e-3);
    free(x);
    free(r);
    free(y);
    free(dx);
}

static void test_dense(int bias)
{
    dl_layer_t l = {.ops = &dl_dense_ops,
                    .in_size = 7,
                    .out_size = 5,
                    .spec = {.type = DL_LAYER_DENSE, .units = 5, .bias = bias}};
    int64_t np = l.ops->n_params(&l);
    CHECK(np == 35 + (bias ? 5 : 0));
    float *p = random_buf(np, 0.5), *g = calloc((size_t)np, sizeof(float));
    l.w = p;
    l.dw = g;
    if (bias) {
        l.b = p + 35;
        l.db = g + 35;
    }
    check_layer(&l, 4, np, p, g, 0);
    /* Backward overwrites parameter gradients: a second call gives the same. */
    float *x = random_buf(4 * 7, 1.0), *dy = random_buf(4 * 5, 1.0), y[20];
    for (int i = 0; i < np; i++)
        g[i] = 0;
    l.ops->forward(&l, x, y, 4);
    l.ops->backward(&l, x, y, dy, NULL, 4);
    float once = g[3], bias_once = bias ? g[36] : 0.0f;
    l.ops->backward(&l, x, y, dy, NULL, 4);
    CHECK(g[3] == once);
    CHECK(!bias || g[36] == bias_once);
    free(x);
    free(dy);
    free(p);
    free(g);
}

static void test_activation(dl_act_t act)
{
    dl_layer_t l = {.ops = &dl_activation_ops,
                    .in_size = 6,
                    .out_size = 6,
                    .spec = {.type = DL_LAYER_ACTIVATION, .act = act}};
    CHECK(l.ops->n_params(&l) == 0);
    check_layer(&l, 3, 0, NULL, NULL, act == DL_ACT_RELU);
}

static void test_softmax_xent(void)
{
    int n = 4, k = 6;
    float *z = random_buf(n * k, 2.0), d[24];
    int32_t labels[4] = {0, 5, 2, 2};
    float scale = 0.25f;
    int64_t correct = -1;
    double loss = dl_softmax_xent(z, labels, n, k, scale, d, &correct);
    CHECK(loss > 0.0);
    CHECK(correct >= 0 && correct <= n);
    for (int i = 0; i < n * k; i++) {
        float keep = z[i];
        z[i] = keep + (float)H;
        double lp = dl_softmax_xent(z, labels, n, k, 0.0f, NULL, NULL);
        z[i] = keep - (float)H;
        double lm = dl_softmax_xent(z, labels, n, k, 0.0f, NULL, NULL);
        z[i] = keep;
        CHECK_CLOSE(d[i], scale * (lp - lm) / (2.0 * H), 2e-3, 1e-4);
    }
    /* Known values: uniform logits give loss log(k) per row. */
    float zero[6] = {0};
    int32_t one_label = 3;
    CHECK_CLOSE(dl_softmax_xent(zero, &one_label, 1, 6, 0.0f, NULL, NULL), log(6.0), 1e-6, 0);
    free(z);
}

/* The whole model: gradients of the mean loss over every parameter. */
static void test_model(void)
{
    dl_layer_spec_t specs[] = {
        {.type = DL_LAYER_DENSE, .units = 8, .act = DL_ACT_TANH, .bias = 1},
        {.type = DL_LAYER_DENSE, .units = 6, .act = DL_ACT_SIGMOID, .bias = 0},
        {.type = DL_LAYER_DENSE, .units = 4, .act = DL_ACT_NONE, .bias = 1},
    };
    dl_model_t m;
    dl_err_t err = {0};
    int n = 5;
    CHECK(dl_model_build(&m, specs, 3, 9, n, &err) == 0);
    CHECK(m.n_layers == 5); /* dense, tanh, dense, sigmoid, dense */
    CHECK(m.n_params == 9 * 8 + 8 + 8 * 6 + 6 * 4 + 4);
    dl_model_init_params(&m, 3);
    float *x = random_buf(n * 9, 1.0), d[20];
    int32_t labels[5] = {0, 1, 2, 3, 1};
    const float *out = dl_model_forward(&m, x, n);
    dl_softmax_xent(out, labels, n, 4, 1.0f / (float)n, d, NULL);
    dl_model_backward(&m, d, n);
    for (int64_t i = 0; i < m.n_params; i++) {
        float keep = m.params[i];
        m.params[i] = keep + (float)H;
        double lp = dl_softmax_xent(dl_model_forward(&m, x, n), labels, n, 4, 0, NULL, NULL);
        m.params[i] = keep - (float)H;
        double lm = dl_softmax_xent(dl_model_forward(&m, x, n), labels, n, 4, 0, NULL, NULL);
        m.params[i] = keep;
        CHECK_CLOSE(m.grads[i], (lp - lm) / (2.0 * H) / n, 5e-3, 2e-4);
    }
    /* Same seed, same parameters; another seed, others. */
    uint64_t d1 = dl_model_digest(&m);
    dl_model_init_params(&m, 3);
    CHECK(dl_model_digest(&m) == d1);
    dl_model_init_params(&m, 4);
    CHECK(dl_model_digest(&m) != d1);
    free(x);
    dl_model_free(&m);
}

static void test_build_errors(void)
{
    dl_model_t m;
    dl_err_t err = {0};
    dl_layer_spec_t bad = {.type = DL_LAYER_DENSE, .units = 0, .line = 12};
    CHECK(dl_model_build(&m, &bad, 1, 4, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "line 12");
    CHECK(dl_model_build(&m, NULL, 0, 4, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "no layers");
}

static void test_init_scale(void)
{
    /* Kaiming normal: weight variance 2 / fan_in; Xavier uniform: 2 / (fan_in + fan_out). */
    dl_layer_spec_t specs[2] = {
        {.type = DL_LAYER_DENSE, .units = 300, .act = DL_ACT_RELU, .bias = 1},
        {.type = DL_LAYER_DENSE, .units = 200, .act = DL_ACT_NONE, .bias = 1},
    };
    dl_model_t m;
    dl_err_t err = {0};
    CHECK(dl_model_build(&m, specs, 2, 400, 1, &err) == 0);
    dl_model_init_params(&m, 11);
    double v1 = 0, v2 = 0;
    for (int i = 0; i < 400 * 300; i++)
        v1 += (double)m.layers[0].w[i] * m.layers[0].w[i];
    for (int i = 0; i < 300 * 200; i++)
        v2 += (double)m.layers[2].w[i] * m.layers[2].w[i];
    CHECK_CLOSE(v1 / (400 * 300), 2.0 / 400, 0.03, 0);
    CHECK_CLOSE(v2 / (300 * 200), 2.0 / 500, 0.03, 0);
    CHECK(m.layers[0].b[0] == 0.0f);
    dl_model_free(&m);
}

int main(void)
{
    dl_rng_seed(&rng, 12345, 0);
    test_dense(1);
    test_dense(0);
    test_activation(DL_ACT_RELU);
    test_activation(DL_ACT_TANH);
    test_activation(DL_ACT_SIGMOID);
    test_softmax_xent();
    test_model();
    test_build_errors();
    test_init_scale();
    return CHECK_DONE();
}
