/* Every layer type's backward pass, inside real models, against central
 * finite differences of the forward pass: input gradients and parameter
 * gradients, in training and inference modes, through residual shortcuts
 * and activation functions. Depends on models/ only (no MPI, no HDF5); the
 * conv and pooling layers also have layer-level tests in test_conv_pool.c.
 *
 * The scalar probed is f = sum(out * r) for a fixed random r, so the
 * backward pass is run with dout = r. Sums are taken in double. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "models/model.h"
#include "models/presets.h"
#include "specs.h"

#define H 1e-2    /* step of the central differences; f32 rounding limits smaller steps */
#define PROBES 60 /* inputs and parameters probed per model (all when fewer) */

static dl_rng_t rng;

static float *random_buf(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(scale * dl_rng_normal(&rng));
    return p;
}

static double probe(dl_model_t *m, const float *x, const float *r, int n)
{
    dl_err_t err = {0};
    const float *y = dl_model_forward(m, x, n, &err);
    double f = 0.0;
    for (int64_t i = 0; i < n * m->out_size; i++)
        f += (double)y[i] * r[i];
    return f;
}

static double numeric(dl_model_t *m, float *v, const float *x, const float *r, int n)
{
    float keep = *v;
    *v = keep + (float)H;
    double fp = probe(m, x, r, n);
    *v = keep - (float)H;
    double fm = probe(m, x, r, n);
    *v = keep;
    return (fp - fm) / (2.0 * H);
}

typedef struct fd_case {
    const char *what;
    dl_layer_spec_t specs[12];
    int n_specs;
    dl_shape_t in;
    int n, training;
    double x_min; /* inputs are pushed at least this far from 0 (ReLU kinks) */
} fd_case_t;

/* Probe up to PROBES entries of v (len floats), spread over the whole range. */
static void probe_entries(const char *what, const char *kind, dl_model_t *m, float *v,
                          const float *analytic, int64_t len, const float *x, const float *r, int n)
{
    int64_t stride = len > PROBES ? len / PROBES : 1;
    for (int64_t i = 0; i < len; i += stride) {
        double num = numeric(m, &v[i], x, r, n);
        double a = analytic[i], d = fabs(a - num), tol = 3e-3 * fmax(fabs(a), fabs(num)) + 3e-3;
        if (!(d <= tol)) {
            fprintf(stderr, "%s: %s gradient [%lld]: backward %.6g, finite difference %.6g\n", what,
                    kind, (long long)i, a, num);
            check_failures++;
        }
    }
}

static void check_case(const fd_case_t *c)
{
    dl_model_t m;
    dl_err_t err = {0};
    if (dl_model_build(&m, c->specs, c->n_specs, c->in, c->n, &err) != 0) {
        fprintf(stderr, "%s: build failed: %s\n", c->what, err.msg);
        check_failures++;
        return;
    }
    m.input_grad = 1;
    m.ctx.training = c->training;
    m.ctx.seed = 5;
    dl_model_init_params(&m, 9);
    /* Move every parameter and statistic off its initial value (gamma 1,
     * biases 0, running variance 1), so nothing is checked at a special point. */
    for (int64_t i = 0; i < m.n_params; i++)
        m.params[i] += (float)(0.2 * dl_rng_normal(&rng));
    for (int64_t i = 0; i < m.n_state; i++)
        m.state[i] = (float)(0.5 + 0.4 * dl_rng_uniform(&rng));
    int64_t nin = c->n * m.in_size, nout = c->n * m.out_size;
    float *x = random_buf(nin, 1.0), *r = random_buf(nout, 1.0);
    for (int64_t i = 0; i < nin; i++)
        if (fabsf(x[i]) < c->x_min)
            x[i] = x[i] < 0 ? x[i] - (float)c->x_min : x[i] + (float)c->x_min;
    for (int64_t i = 0; i < m.n_params; i++)
        m.grads[i] = 7.0f; /* stale values: backward must overwrite them */
    const float *y = dl_model_forward(&m, x, c->n, &err);
    CHECK(y != NULL);
    CHECK(dl_model_backward(&m, r, c->n, &err) == 0);
    float *dx = malloc(sizeof(float) * (size_t)nin),
          *dp = malloc(sizeof(float) * (size_t)m.n_params);
    for (int64_t i = 0; i < nin; i++)
        dx[i] = m.dacts[0][i];
    for (int64_t i = 0; i < m.n_params; i++)
        dp[i] = m.grads[i];
    probe_entries(c->what, "input", &m, x, dx, nin, x, r, c->n);
    probe_entries(c->what, "parameter", &m, m.params, dp, m.n_params, x, r, c->n);
    free(x);
    free(r);
    free(dx);
    free(dp);
    dl_model_free(&m);
}

static void test_models(void)
{
    dl_shape_t flat9 = {9, 1, 1}, img = {3, 6, 6}, img8 = {4, 8, 8};
    fd_case_t cases[] = {
        {"dense+tanh, dense+sigmoid (no bias), dense",
         {dense(8, DL_ACT_TANH), dense(6, DL_ACT_SIGMOID), dense(4, DL_ACT_NONE)},
         3,
         flat9,
         5,
         1,
         0},
        {"relu", {act(DL_ACT_RELU)}, 1, flat9, 4, 1, 0.1},
        {"leaky", {act(DL_ACT_LEAKY)}, 1, flat9, 4, 1, 0.1},
        {"gelu", {act(DL_ACT_GELU)}, 1, flat9, 4, 1, 0},
        {"tanh", {act(DL_ACT_TANH)}, 1, flat9, 4, 1, 0},
        {"sigmoid", {act(DL_ACT_SIGMOID)}, 1, flat9, 4, 1, 0},
        {"conv+gelu, avgpool 2, conv stride 2, global avgpool, dense",
         {conv(5, 3, 1, 1, DL_ACT_GELU), pool(DL_LAYER_AVGPOOL, 2, 2, 0),
          conv(4, 3, 2, 1, DL_ACT_TANH), pool(DL_LAYER_AVGPOOL, 0, 1, 0), dense(3, DL_ACT_NONE)},
         5,
         img8,
         3,
         1,
         0},
        {"batchnorm after conv (training)",
         {conv(4, 3, 1, 1, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), act(DL_ACT_TANH)},
         3,
         img,
         3,
         1,
         0},
        {"batchnorm after conv (inference)",
         {conv(4, 3, 1, 1, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), act(DL_ACT_TANH)},
         3,
         img,
         3,
         0,
         0},
        {"batchnorm on features (training)",
         {dense(6, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), dense(3, DL_ACT_NONE)},
         3,
         flat9,
         4,
         1,
         0},
        {"residual: conv, conv, shortcut from -2, gelu",
         {conv(3, 3, 1, 1, DL_ACT_TANH), conv(3, 3, 1, 1, DL_ACT_NONE), shortcut(0, DL_ACT_GELU),
          dense(2, DL_ACT_NONE)},
         4,
         img,
         2,
         1,
         0},
        {"residual onto the input's own section (x + x)",
         {conv(3, 1, 1, 0, DL_ACT_TANH), shortcut(0, DL_ACT_NONE)},
         2,
         img,
         2,
         1,
         0},
        {"downsampling shortcut (stride 2, more channels)",
         {conv(3, 3, 1, 1, DL_ACT_TANH), conv(6, 3, 2, 1, DL_ACT_TANH), shortcut(0, DL_ACT_NONE),
          dense(2, DL_ACT_NONE)},
         4,
         img8,
         2,
         1,
         0},
        {"dropout (training, fixed mask)",
         {dense(7, DL_ACT_TANH), dropout(0.3), dense(3, DL_ACT_NONE)},
         3,
         flat9,
         4,
         1,
         0},
        {"dropout (inference)",
         {dense(7, DL_ACT_TANH), dropout(0.3), dense(3, DL_ACT_NONE)},
         3,
         flat9,
         4,
         0,
         0},
        {"flatten",
         {conv(2, 3, 1, 0, DL_ACT_TANH), S(DL_LAYER_FLATTEN), dense(3, DL_ACT_NONE)},
         3,
         img,
         2,
         1,
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
}

static void test_softmax_xent(float smoothing)
{
    int n = 4, k = 6;
    float *z = random_buf(n * k, 2.0), d[24];
    int32_t labels[4] = {0, 5, 2, 2};
    float scale = 0.25f;
    int64_t correct = -1;
    double loss = dl_softmax_xent(z, labels, n, k, smoothing, scale, d, &correct);
    CHECK(loss > 0.0);
    CHECK(correct >= 0 && correct <= n);
    for (int i = 0; i < n * k; i++) {
        float keep = z[i];
        z[i] = keep + (float)H;
        double lp = dl_softmax_xent(z, labels, n, k, smoothing, 0.0f, NULL, NULL);
        z[i] = keep - (float)H;
        double lm = dl_softmax_xent(z, labels, n, k, smoothing, 0.0f, NULL, NULL);
        z[i] = keep;
        CHECK_CLOSE(d[i], scale * (lp - lm) / (2.0 * H), 2e-3, 1e-4);
    }
    /* Known values: uniform logits give loss log(k) per row, smoothed or not. */
    float zero[6] = {0};
    int32_t one_label = 3;
    CHECK_CLOSE(dl_softmax_xent(zero, &one_label, 1, 6, smoothing, 0.0f, NULL, NULL), log(6.0),
                1e-6, 0);
    free(z);
}

static void test_determinism(void)
{
    dl_layer_spec_t specs[] = {dense(8, DL_ACT_RELU), dense(4, DL_ACT_NONE)};
    dl_model_t m;
    dl_err_t err = {0};
    CHECK(dl_model_build(&m, specs, 2, (dl_shape_t){9, 1, 1}, 2, &err) == 0);
    dl_model_init_params(&m, 3);
    uint64_t d1 = dl_model_digest(&m);
    dl_model_init_params(&m, 3);
    CHECK(dl_model_digest(&m) == d1);
    dl_model_init_params(&m, 4);
    CHECK(dl_model_digest(&m) != d1);
    dl_model_free(&m);
}

static void test_build_errors(void)
{
    dl_model_t m;
    dl_err_t err = {0};
    dl_layer_spec_t bad = dense(0, DL_ACT_NONE);
    bad.line = 12;
    CHECK(dl_model_build(&m, &bad, 1, (dl_shape_t){4, 1, 1}, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "line 12");
    CHECK(dl_model_build(&m, NULL, 0, (dl_shape_t){4, 1, 1}, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "no layers");
    /* A shortcut from a source that cannot be added. */
    dl_layer_spec_t specs[] = {conv(4, 3, 1, 1, DL_ACT_NONE), conv(2, 3, 1, 1, DL_ACT_NONE),
                               shortcut(0, DL_ACT_NONE)};
    specs[2].line = 30;
    CHECK(dl_model_build(&m, specs, 3, (dl_shape_t){1, 6, 6}, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "line 30: [shortcut] cannot add an output of shape 4 x 6 x 6");
    dl_layer_spec_t drop = dropout(1.0);
    CHECK(dl_model_build(&m, &drop, 1, (dl_shape_t){4, 1, 1}, 2, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "[dropout] rate");
}

static void test_init_scale(void)
{
    /* Kaiming normal: weight variance 2 / fan_in; Xavier uniform: 2 / (fan_in + fan_out). */
    dl_layer_spec_t specs[2] = {dense(300, DL_ACT_RELU), dense(200, DL_ACT_NONE)};
    dl_model_t m;
    dl_err_t err = {0};
    CHECK(dl_model_build(&m, specs, 2, (dl_shape_t){400, 1, 1}, 1, &err) == 0);
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

/* Batch norm keeps running statistics as torch does: momentum 0.1, the
 * unbiased variance. */
static void test_batchnorm_running_stats(void)
{
    dl_layer_spec_t bn = S(DL_LAYER_BATCHNORM);
    dl_model_t m;
    dl_err_t err = {0};
    CHECK(dl_model_build(&m, &bn, 1, (dl_shape_t){1, 1, 1}, 4, &err) == 0);
    dl_model_init_params(&m, 1);
    m.ctx.training = 1;
    float x[4] = {1, 2, 3, 6};
    const float *y = dl_model_forward(&m, x, 4, &err);
    /* mean 3, biased var 3.5, unbiased 14/3 */
    CHECK_CLOSE(y[3], 3.0 / sqrt(3.5 + 1e-5), 1e-6, 0);
    CHECK_CLOSE(m.state[0], 0.1 * 3.0, 1e-7, 0);
    CHECK_CLOSE(m.state[1], 0.9 + 0.1 * 14.0 / 3.0, 1e-6, 0);
    dl_model_free(&m);
}

static void test_presets(void)
{
    dl_layer_spec_t specs[64];
    for (int p = 1; dl_preset_names[p]; p++) {
        int n = dl_preset_specs(p, specs, 64);
        CHECK(n > 0);
        specs[n - 1].units = 10;
        dl_model_t m;
        dl_err_t err = {0};
        int rc = dl_model_build(&m, specs, n, (dl_shape_t){1, 28, 28}, 2, &err);
        if (rc)
            fprintf(stderr, "preset %s: %s\n", dl_preset_names[p], err.msg);
        CHECK(rc == 0);
        if (!rc) {
            CHECK(m.out_size == 10);
            dl_model_free(&m);
        }
    }
}

int main(void)
{
    dl_rng_seed(&rng, 12345, 0);
    test_models();
    test_softmax_xent(0.0f);
    test_softmax_xent(0.1f);
    test_determinism();
    test_build_errors();
    test_init_scale();
    test_batchnorm_running_stats();
    test_presets();
    return CHECK_DONE();
}
