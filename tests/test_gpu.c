/* The CUDA backend against the CPU implementation: every layer type inside
 * small models (forward outputs, parameter gradients, input gradients and
 * batch-norm running statistics, in training and inference modes), the
 * loss, the optimiser updates, and a few SGD steps of the cnn2 preset.
 * TF32 stays off, so fp32 products must agree to 1e-4 relative to each
 * tensor's largest magnitude (sums are taken in another order, so bit
 * equality is not expected). Depends on models/ only (no MPI, no HDF5), so
 * it runs on any GPU machine.
 *
 * Without a GPU (or in a build without CUDA) it prints why and exits 77,
 * which CTest reports as skipped, never as passed. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "models/model.h"
#include "models/presets.h"
#include "specs.h"

#define SKIP 77
#define TOL 1e-4

static dl_rng_t rng;

static float *random_buf(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(scale * dl_rng_normal(&rng));
    return p;
}

/* A copy of n device floats on the host (malloc'd). */
static float *to_host(dl_cuda_t *g, const float *d, int64_t n)
{
    dl_err_t err = {0};
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (dl_dev_copy(g, h, d, (size_t)n * sizeof(float), DL_COPY_D2H, &err)) {
        fprintf(stderr, "copy from the GPU failed: %s\n", err.msg);
        check_failures++;
    }
    return h;
}

static float *to_device(dl_cuda_t *g, const float *h, int64_t n)
{
    dl_err_t err = {0};
    float *d = dl_dev_alloc(DL_DEV_CUDA, (size_t)n * sizeof(float), &err);
    if (!d || dl_dev_copy(g, d, h, (size_t)n * sizeof(float), DL_COPY_H2D, &err)) {
        fprintf(stderr, "copy to the GPU failed: %s\n", err.msg);
        exit(1);
    }
    return d;
}

/* gpu against cpu (n floats): max |a - b| <= TOL * max |b| (plus a floor
 * for all-zero tensors). */
static void compare(const char *what, const char *kind, const float *gpu, const float *cpu,
                    int64_t n, double tol)
{
    double scale = 0.0, worst = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(cpu[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - cpu[i]);
        if (!(d <= worst)) { /* also catches NaN */
            worst = d;
            at = i;
        }
    }
    if (!(worst <= tol * scale + 1e-7)) {
        fprintf(stderr, "%s: %s differs: [%lld] GPU %.9g, CPU %.9g (max |CPU| %.3g, %lld values)\n",
                what, kind, (long long)at, gpu[at], cpu[at], scale, (long long)n);
        check_failures++;
    }
}

typedef struct gpu_case {
    const char *what;
    dl_layer_spec_t specs[12];
    int n_specs;
    dl_shape_t in;
    int n, training;
} gpu_case_t;

static int build(dl_model_t *m, const gpu_case_t *c, dl_dev_t dev, dl_err_t *err)
{
    dl_model_opts_t o = {.dev = dev};
    int rc = dl_model_build_opts(m, c->specs, c->n_specs, c->in, c->n, &o, err);
    if (rc)
        return rc;
    m->input_grad = 1;
    dl_model_init_params(m, 5);
    m->ctx = (dl_model_ctx_t){.training = c->training, .seed = 9, .step = 3, .rank = 0};
    return dl_model_to_device(m, err);
}

static void check_case(const gpu_case_t *c)
{
    dl_model_t cm, gm;
    dl_err_t err = {0};
    if (build(&cm, c, DL_DEV_CPU, &err) || build(&gm, c, DL_DEV_CUDA, &err)) {
        fprintf(stderr, "%s: build failed: %s\n", c->what, err.msg);
        check_failures++;
        return;
    }
    /* Inference uses running statistics: give them values that are not the defaults. */
    if (gm.n_state) {
        for (int64_t i = 0; i < cm.n_state; i++)
            cm.state[i] = gm.host_state[i] = (float)(0.5 + 0.25 * dl_rng_uniform(&rng));
        CHECK(dl_model_to_device(&gm, &err) == 0);
    }
    int64_t nin = (int64_t)c->n * cm.in_size, nout = (int64_t)c->n * cm.out_size;
    float *x = random_buf(nin, 1.0), *r = random_buf(nout, 1.0);
    float *gx = to_device(gm.cuda, x, nin), *gr = to_device(gm.cuda, r, nout);
    const float *cy = dl_model_forward(&cm, x, c->n, &err);
    const float *gy = dl_model_forward(&gm, gx, c->n, &err);
    if (!cy || !gy) {
        fprintf(stderr, "%s: forward failed: %s\n", c->what, err.msg);
        check_failures++;
        goto done;
    }
    float *hy = to_host(gm.cuda, gy, nout);
    compare(c->what, "forward output", hy, cy, nout, TOL);
    free(hy);
    if (dl_model_backward(&cm, r, c->n, &err) || dl_model_backward(&gm, gr, c->n, &err)) {
        fprintf(stderr, "%s: backward failed: %s\n", c->what, err.msg);
        check_failures++;
        goto done;
    }
    float *hg = to_host(gm.cuda, gm.grads, cm.n_params);
    float *hdx = to_host(gm.cuda, gm.dacts[0], nin);
    /* Each layer's gradients on their own: scales differ between layers. */
    for (int i = 0; i < cm.n_layers; i++) {
        const dl_layer_t *l = &cm.layers[i];
        int64_t np = l->ops->n_params(l);
        if (np) {
            char kind[64];
            snprintf(kind, sizeof kind, "parameter gradient of layer %d (%s)", i, l->ops->name);
            compare(c->what, kind, hg + (l->dw - cm.grads), l->dw, np, TOL);
        }
    }
    compare(c->what, "input gradient", hdx, cm.dacts[0], nin, TOL);
    free(hg);
    free(hdx);
    if (cm.n_state) {
        CHECK(dl_model_to_host(&gm, &err) == 0);
        compare(c->what, "running statistics", gm.host_state, cm.state, cm.n_state, TOL);
    }
done:
    free(x);
    free(r);
    dl_dev_free(DL_DEV_CUDA, gx);
    dl_dev_free(DL_DEV_CUDA, gr);
    dl_model_free(&cm);
    dl_model_free(&gm);
}

static void test_layers(void)
{
    dl_shape_t img = {3, 9, 9}, img8 = {3, 8, 8}, flat = {9, 1, 1}, mnist = {1, 28, 28};
    const gpu_case_t cases[] = {
        {"dense + every activation",
         {dense(11, DL_ACT_RELU), dense(10, DL_ACT_LEAKY), dense(9, DL_ACT_GELU),
          dense(8, DL_ACT_TANH), dense(7, DL_ACT_SIGMOID), dense(3, DL_ACT_NONE)},
         6,
         flat,
         5,
         1},
        {"dense without bias", {nobias(dense(7, DL_ACT_NONE))}, 1, flat, 3, 1},
        {"conv 3x3 pad 1 relu, conv stride 2, conv 1x1",
         {conv(4, 3, 1, 1, DL_ACT_RELU), conv(5, 3, 2, 0, DL_ACT_TANH),
          conv(3, 1, 1, 0, DL_ACT_SIGMOID), conv(2, 2, 1, 0, DL_ACT_LEAKY)},
         4,
         img,
         3,
         1},
        {"grouped conv with gelu (a layer of its own)",
         {conv(6, 3, 1, 1, DL_ACT_NONE), groups(conv(4, 3, 1, 1, DL_ACT_GELU), 2)},
         2,
         img,
         2,
         1},
        {"max pools: 2x2/2, 3x3/2 pad 1, 2x2/1",
         {conv(4, 3, 1, 1, DL_ACT_TANH), pool(DL_LAYER_MAXPOOL, 2, 1, 0),
          pool(DL_LAYER_MAXPOOL, 3, 2, 1), pool(DL_LAYER_MAXPOOL, 2, 2, 0)},
         4,
         img,
         3,
         1},
        {"average pools: 3x3/2 pad 1, then global",
         {conv(4, 3, 1, 1, DL_ACT_TANH), pool(DL_LAYER_AVGPOOL, 3, 2, 1),
          pool(DL_LAYER_AVGPOOL, 0, 1, 0)},
         3,
         img,
         3,
         1},
        {"batchnorm after conv (training)",
         {conv(4, 3, 1, 1, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), act(DL_ACT_TANH)},
         3,
         img,
         4,
         1},
        {"batchnorm after conv (inference)",
         {conv(4, 3, 1, 1, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), act(DL_ACT_TANH)},
         3,
         img,
         4,
         0},
        {"batchnorm on features (training)",
         {dense(6, DL_ACT_NONE), S(DL_LAYER_BATCHNORM), dense(3, DL_ACT_NONE)},
         3,
         flat,
         5,
         1},
        {"residual shortcut, same shape",
         {conv(3, 3, 1, 1, DL_ACT_TANH), conv(3, 3, 1, 1, DL_ACT_NONE), shortcut(0, DL_ACT_NONE),
          dense(2, DL_ACT_NONE)},
         4,
         img,
         2,
         1},
        {"downsampling shortcut (stride 2, more channels)",
         {conv(3, 3, 1, 1, DL_ACT_TANH), conv(6, 3, 2, 1, DL_ACT_TANH), shortcut(0, DL_ACT_NONE),
          dense(2, DL_ACT_NONE)},
         4,
         img8,
         2,
         1},
        {"dropout (training: the CPU's mask)",
         {dense(40, DL_ACT_TANH), dropout(0.3), dense(3, DL_ACT_NONE)},
         3,
         flat,
         6,
         1},
        {"dropout (inference)",
         {dense(7, DL_ACT_TANH), dropout(0.3), dense(3, DL_ACT_NONE)},
         3,
         flat,
         4,
         0},
        {"flatten",
         {conv(2, 3, 1, 0, DL_ACT_TANH), S(DL_LAYER_FLATTEN), dense(3, DL_ACT_NONE)},
         3,
         img,
         2,
         1},
        /* Fashion-MNIST sizes: a batch of 64 in several im2col chunks. */
        {"cnn2 shapes, batch 64",
         {conv(32, 3, 1, 1, DL_ACT_RELU), pool(DL_LAYER_MAXPOOL, 2, 2, 0),
          conv(64, 3, 1, 1, DL_ACT_RELU), pool(DL_LAYER_MAXPOOL, 2, 2, 0), S(DL_LAYER_FLATTEN),
          dense(128, DL_ACT_RELU), dense(10, DL_ACT_NONE)},
         7,
         mnist,
         64,
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
}

static void test_loss(dl_cuda_t *g)
{
    int n = 37, k = 10;
    float *z = random_buf((int64_t)n * k, 3.0);
    int32_t labels[37];
    for (int i = 0; i < n; i++)
        labels[i] = (int32_t)dl_rng_below(&rng, (uint64_t)k);
    float *cd = malloc(sizeof(float) * (size_t)(n * k));
    for (int s = 0; s < 2; s++) {
        float smoothing = s ? 0.1f : 0.0f;
        int64_t ccor = 0, gcor = 0;
        double closs = dl_softmax_xent(z, labels, n, k, smoothing, 0.5f, cd, &ccor), gloss = 0.0;
        dl_err_t err = {0};
        float *gz = to_device(g, z, (int64_t)n * k);
        float *gd = dl_dev_alloc(DL_DEV_CUDA, sizeof(float) * (size_t)(n * k), &err);
        int32_t *gl = dl_dev_alloc(DL_DEV_CUDA, sizeof labels, &err);
        CHECK(gd && gl);
        CHECK(dl_dev_copy(g, gl, labels, sizeof labels, DL_COPY_H2D, &err) == 0);
        CHECK(dl_cuda_softmax_xent(g, gz, gl, n, k, smoothing, 0.5f, gd, &gloss, &gcor, &err) == 0);
        CHECK_CLOSE(gloss, closs, 1e-9, 0);
        CHECK(gcor == ccor);
        float *hd = to_host(g, gd, (int64_t)n * k);
        compare("softmax cross-entropy", "logit gradient", hd, cd, (int64_t)n * k, 1e-6);
        free(hd);
        dl_dev_free(DL_DEV_CUDA, gz);
        dl_dev_free(DL_DEV_CUDA, gd);
        dl_dev_free(DL_DEV_CUDA, gl);
    }
    free(z);
    free(cd);
}

/* The update kernels against runtime/optim.c's formulas, written out here
 * so this test needs nothing beyond models/. */
static void test_optimisers(dl_cuda_t *g)
{
    int64_t n = 1000;
    float *p = random_buf(n, 1.0), *gr = random_buf(n, 0.1), *buf = random_buf(n, 0.1);
    float *v = random_buf(n, 0.01);
    for (int64_t i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float *dp = to_device(g, p, n), *dg = to_device(g, gr, n), *db = to_device(g, buf, n);
    float *dv = to_device(g, v, n);
    dl_err_t err = {0};
    const float lr = 0.05f, mu = 0.9f, wd = 1e-3f;
    CHECK(dl_cuda_sgd_update(g, dp, dg, db, n, lr, mu, wd, 1, &err) == 0);
    for (int64_t i = 0; i < n; i++) {
        float gi = gr[i] + wd * p[i];
        buf[i] = mu * buf[i] + gi;
        p[i] -= lr * (gi + mu * buf[i]);
    }
    float *hp = to_host(g, dp, n), *hb = to_host(g, db, n);
    compare("sgd (nesterov)", "parameters", hp, p, n, 1e-6);
    compare("sgd (nesterov)", "momentum", hb, buf, n, 1e-6);
    free(hp);
    free(hb);
    /* AdamW at t = 3, with buf as the first moment */
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = (float)(1.0 - pow(0.9, 3)), c2 = (float)sqrt(1.0 - pow(0.999, 3));
    CHECK(dl_cuda_adamw_update(g, dp, dg, db, dv, n, lr, b1, b2, eps, wd, c1, c2, &err) == 0);
    for (int64_t i = 0; i < n; i++) {
        p[i] *= 1.0f - lr * wd;
        buf[i] = b1 * buf[i] + (1.0f - b1) * gr[i];
        v[i] = b2 * v[i] + (1.0f - b2) * gr[i] * gr[i];
        p[i] -= lr / c1 * buf[i] / (sqrtf(v[i]) / c2 + eps);
    }
    hp = to_host(g, dp, n);
    compare("adamw", "parameters", hp, p, n, 1e-5);
    free(hp);
    int finite = -1;
    CHECK(dl_cuda_all_finite(g, dg, n, &finite, &err) == 0 && finite == 1);
    gr[n / 2] = NAN;
    CHECK(dl_dev_copy(g, dg, gr, (size_t)n * sizeof(float), DL_COPY_H2D, &err) == 0);
    CHECK(dl_cuda_all_finite(g, dg, n, &finite, &err) == 0 && finite == 0);
    dl_dev_free(DL_DEV_CUDA, dp);
    dl_dev_free(DL_DEV_CUDA, dg);
    dl_dev_free(DL_DEV_CUDA, db);
    dl_dev_free(DL_DEV_CUDA, dv);
    free(p);
    free(gr);
    free(buf);
    free(v);
}

/* Ten plain SGD steps of the cnn2 preset at batch 32 on both devices, with
 * the same batches: the parameters stay within 1e-3 of each other (each
 * step compounds the 1e-6-level differences of summation order). */
static void test_training(void)
{
    dl_layer_spec_t specs[32];
    int preset = 0;
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], "cnn2"))
            preset = i;
    int ns = dl_preset_specs(preset, specs, 32);
    CHECK(ns > 0);
    for (int i = 0; i < ns; i++)
        if (specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = 10;
    const int n = 32, k = 10;
    dl_shape_t in = {1, 28, 28};
    dl_model_t cm, gm;
    dl_err_t err = {0};
    dl_model_opts_t co = {.dev = DL_DEV_CPU}, go = {.dev = DL_DEV_CUDA};
    if (dl_model_build_opts(&cm, specs, ns, in, n, &co, &err) ||
        dl_model_build_opts(&gm, specs, ns, in, n, &go, &err)) {
        fprintf(stderr, "cnn2 training: build failed: %s\n", err.msg);
        check_failures++;
        return;
    }
    dl_model_init_params(&cm, 1);
    dl_model_init_params(&gm, 1);
    CHECK(dl_model_to_device(&gm, &err) == 0);
    cm.ctx.training = gm.ctx.training = 1;
    float *dl = malloc(sizeof(float) * (size_t)(n * k));
    float *gx = dl_dev_alloc(DL_DEV_CUDA, sizeof(float) * (size_t)n * 784, &err);
    float *gdl = dl_dev_alloc(DL_DEV_CUDA, sizeof(float) * (size_t)(n * k), &err);
    int32_t *gl = dl_dev_alloc(DL_DEV_CUDA, sizeof(int32_t) * (size_t)n, &err);
    int32_t labels[32];
    double closs = 0.0, gloss = 0.0;
    for (int step = 0; step < 10; step++) {
        float *x = random_buf((int64_t)n * 784, 1.0);
        for (int i = 0; i < n; i++)
            labels[i] = (int32_t)dl_rng_below(&rng, (uint64_t)k);
        CHECK(dl_dev_copy(gm.cuda, gx, x, sizeof(float) * (size_t)n * 784, DL_COPY_H2D, &err) == 0);
        CHECK(dl_dev_copy(gm.cuda, gl, labels, sizeof labels, DL_COPY_H2D, &err) == 0);
        const float *cy = dl_model_forward(&cm, x, n, &err);
        const float *gy = dl_model_forward(&gm, gx, n, &err);
        CHECK(cy && gy);
        if (!cy || !gy)
            break;
        closs = dl_softmax_xent(cy, labels, n, k, 0.0f, 1.0f / n, dl, NULL);
        CHECK(dl_cuda_softmax_xent(gm.cuda, gy, gl, n, k, 0.0f, 1.0f / n, gdl, &gloss, NULL,
                                   &err) == 0);
        CHECK_CLOSE(gloss, closs, 1e-3, 0);
        CHECK(dl_model_backward(&cm, dl, n, &err) == 0);
        CHECK(dl_model_backward(&gm, gdl, n, &err) == 0);
        for (int64_t i = 0; i < cm.n_params; i++)
            cm.params[i] -= 0.05f * cm.grads[i];
        CHECK(dl_cuda_sgd_update(gm.cuda, gm.params, gm.grads, NULL, gm.n_params, 0.05f, 0.0f, 0.0f,
                                 0, &err) == 0);
        free(x);
    }
    CHECK(dl_model_to_host(&gm, &err) == 0);
    compare("cnn2, 10 SGD steps", "parameters", gm.host_params, cm.params, cm.n_params, 1e-3);
    printf("cnn2, 10 SGD steps at batch %d: last loss CPU %.6f, GPU %.6f\n", n, closs / n,
           gloss / n);
    free(dl);
    dl_dev_free(DL_DEV_CUDA, gx);
    dl_dev_free(DL_DEV_CUDA, gdl);
    dl_dev_free(DL_DEV_CUDA, gl);
    dl_model_free(&cm);
    dl_model_free(&gm);
}

int main(void)
{
    char why[256] = "";
    int count = dl_cuda_device_count(why, sizeof why);
    if (count < 1) {
        printf("skipped: %s\n", why);
        return SKIP;
    }
    char name[128] = "";
    dl_err_t err = {0};
    if (dl_cuda_use_device(0, name, sizeof name, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("GPU 0 of %d: %s\n", count, name);
    dl_rng_seed(&rng, 42, 0);
    dl_cuda_t *g = NULL;
    if (dl_cuda_create(&g, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_layers();
    test_loss(g);
    test_optimisers(g);
    test_training();
    dl_cuda_destroy(g);
    return CHECK_DONE();
}
