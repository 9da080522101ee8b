/* Times MLP training steps (forward, loss, backward, SGD update) on one rank
 * and prints samples/s and achieved GFLOP/s next to this machine's sgemm
 * peak measured in the same run. A benchmark: it prints figures and never
 * fails on time.
 *
 *   bench_mlp [--batch 128] [--threads 1] [--steps 50] [--reps 7]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/model.h"
#include "runtime/optim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GFLOP/s of square sgemm of size n, median of reps, the machine's practical peak. */
static double sgemm_peak(int n, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    double t[16], g = 0.0;
    if (a && b && c) {
        for (long i = 0; i < (long)n * n; i++)
            a[i] = b[i] = 1.0f / (float)(1 + i % 7);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            t[r] = now_s() - t0;
        }
        g = 2.0 * n * (double)n * n / median(t, reps) * 1e-9;
    }
    free(a);
    free(b);
    free(c);
    return g;
}

int main(int argc, char **argv)
{
    int batch = 128, threads = 1, steps = 50, reps = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
    }
    if (batch < 1 || threads < 1 || steps < 1 || reps < 1 || reps > 16) {
        fprintf(stderr, "usage: bench_mlp [--batch N] [--threads N] [--steps N] [--reps 1..16]\n");
        return 2;
    }
    openblas_set_num_threads(threads);

    /* The MLP of the quick start: 784-256-128-100-10, ReLU. */
    dl_layer_spec_t specs[] = {
        {.type = DL_LAYER_DENSE, .units = 256, .act = DL_ACT_RELU, .bias = 1},
        {.type = DL_LAYER_DENSE, .units = 128, .act = DL_ACT_RELU, .bias = 1},
        {.type = DL_LAYER_DENSE, .units = 100, .act = DL_ACT_RELU, .bias = 1},
        {.type = DL_LAYER_DENSE, .units = 10, .act = DL_ACT_NONE, .bias = 1},
    };
    dl_model_t m;
    dl_err_t err = {0};
    dl_optim_t opt;
    dl_optim_cfg_t ocfg = {
        .type = DL_OPT_SGD, .lr = 0.01, .momentum = 0.9, .nesterov = 1, .weight_decay = 5e-4};
    if (dl_model_build(&m, specs, 4, 784, batch, &err) ||
        dl_optim_init(&opt, &ocfg, m.n_params, &err)) {
        dl_err_print("bench_mlp", &err);
        return 1;
    }
    dl_model_init_params(&m, 1);
    float *x = malloc(sizeof(float) * (size_t)batch * 784),
          *dl = malloc(sizeof(float) * (size_t)batch * 10);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    if (!x || !dl || !y)
        return 1;
    dl_rng_t rng;
    dl_rng_seed(&rng, 7, 0);
    for (long i = 0; i < (long)batch * 784; i++)
        x[i] = (float)dl_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)dl_rng_below(&rng, 10);

    double t[16] = {0};
    for (int r = -1; r < reps; r++) { /* r = -1 is the warm-up */
        double t0 = now_s();
        for (int s = 0; s < steps; s++) {
            const float *logits = dl_model_forward(&m, x, batch);
            dl_softmax_xent(logits, y, batch, 10, 1.0f / (float)batch, dl, NULL);
            dl_model_backward(&m, dl, batch);
            dl_optim_step(&opt, m.params, m.grads, 0.01);
        }
        if (r >= 0)
            t[r] = (now_s() - t0) / steps;
    }
    double step = median(t, reps);
    double flops = (double)dl_model_train_flops(&m) * batch;
    double peak = sgemm_peak(1024, 5);
    printf("machine: %ld cores online, %d BLAS thread(s), %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           threads, openblas_get_config());
    printf("model: MLP 784-256-128-100-10 (ReLU), %lld parameters, %.3f MFLOP per training "
           "sample\n",
           (long long)m.n_params, (double)dl_model_train_flops(&m) * 1e-6);
    printf("batch %d: step %.3f ms (median of %d x %d steps), %.0f samples/s, %.2f GFLOP/s\n",
           batch, step * 1e3, reps, steps, batch / step, flops / step * 1e-9);
    printf("sgemm 1024^3 peak on %d thread(s): %.2f GFLOP/s; MLP step reaches %.0f%% of it\n",
           threads, peak, 100.0 * flops / step * 1e-9 / peak);
    free(x);
    free(dl);
    free(y);
    dl_optim_free(&opt);
    dl_model_free(&m);
    return 0;
}
