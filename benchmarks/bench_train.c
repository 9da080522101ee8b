/* Times training steps (forward, softmax cross-entropy, backward, SGD
 * momentum 0.9 Nesterov weight decay 5e-4 update) of a preset model on one
 * rank on synthetic 1 x 28 x 28 inputs with 10 classes (fixed seed), and
 * prints step time, samples/s and achieved GFLOP/s next to this machine's
 * sgemm peak measured in the same run on the same number of threads. A
 * benchmark: it prints figures and never fails on time.
 *
 *   bench_train --model mlp|cnn|cnn2bn [--batch 128] [--threads 1] [--steps N]
 *               [--reps 7] [--json] [--layers] [--device cpu|cuda] [--tf32]
 *
 * cnn is the preset cnn2; --json prints one JSON line instead of the text
 * (benchmarks/compare_torch.sh reads it). --layers adds where the time goes:
 * each layer's forward and backward, timed one layer at a time over the
 * same number of steps (the loss and the update are left out); a max pool
 * that its convolution applies (l->fuse_pool) counts in the convolution.
 *
 * --device cuda runs the same step on GPU 0 (benchmarks/compare_torch_gpu.sh
 * reads its JSON): the model on the GPU, the batch and labels uploaded once,
 * forward, dl_cuda_softmax_xent (which brings the loss back to the host, as
 * training does), backward and the optimiser step on the GPU, each
 * repetition ending with a device sync. Next to the step's achieved TFLOP/s
 * it prints the GPU's square-sgemm peak measured in the same run, fp32 (TF32
 * off, cuBLAS's default math, as the model's products without TF32) and
 * with TF32; --tf32 lets the model's products use TF32.
 * With --layers each layer pass is followed by a sync, so small layers show
 * their launch cost. A build without CUDA, or no GPU, exits 2 saying so. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#include "models/model.h"
#include "models/presets.h"
#include "runtime/optim.h"

#define MAX_REPS 64
#define MAX_SPECS 64
#define CLASSES 10
/* The square sgemm the GPU peak is measured on (3 x 256 MiB), and its products. */
#define GPU_PEAK_N 8192
#define GPU_PEAK_REPS 10

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GFLOP/s of square sgemm of size n, median of reps after one warm-up: the
 * machine's practical peak on the current number of BLAS threads. */
static double sgemm_peak(int n, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    double t[MAX_REPS], g = 0.0;
    if (a && b && c) {
        for (long i = 0; i < (long)n * n; i++)
            a[i] = b[i] = 1.0f / (float)(1 + i % 7);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        for (int r = 0; r < reps; r++) {
            double t0 = bench_now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            t[r] = bench_now_s() - t0;
        }
        g = 2.0 * n * (double)n * n / median(t, reps) * 1e-9;
    }
    free(a);
    free(b);
    free(c);
    return g;
}

static int preset_index(const char *name)
{
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], name))
            return i;
    return -1;
}

/* Wait for the GPU's queued work (a no-op on the CPU); a failed kernel ends
 * the benchmark. */
static void dev_sync(dl_model_t *m)
{
    dl_err_t err = {0};
    if (m->dev == DL_DEV_CUDA && dl_cuda_sync(m->cuda, &err)) {
        dl_err_print("bench_train", &err);
        exit(1);
    }
}

/* Per-layer forward and backward times in ms per step over `steps` steps,
 * each layer's pass run and timed on its own (as dl_model_forward and
 * dl_model_backward run them, through l->run: the CPU table or the CUDA
 * one, each pass then followed by a sync; shortcuts are not in the presets
 * timed here). x and dout are on the model's device. */
static void layer_times(dl_model_t *m, const float *x, const float *dout, int batch, int steps)
{
    int nl = m->n_layers;
    double *tf = calloc((size_t)nl, sizeof *tf), *tb = calloc((size_t)nl, sizeof *tb);
    if (!tf || !tb) {
        free(tf);
        free(tb);
        return;
    }
    m->acts[0] = (float *)x;
    m->dacts[nl] = (float *)dout;
    for (int s = 0; s < steps; s++) {
        m->ctx.step++;
        for (int i = 0; i < nl; i++) {
            dl_layer_t *l = &m->layers[i];
            int next = l->fuse_pool ? i + 2 : i + 1;
            double t0 = bench_now_s();
            l->run->forward(l, m->acts[i], m->acts[next], batch);
            dev_sync(m);
            tf[i] += bench_now_s() - t0;
            i = next - 1;
        }
        for (int i = nl - 1; i >= 0; i--) {
            dl_layer_t *l = &m->layers[i];
            if (i > 0 && m->layers[i - 1].fuse_pool)
                continue;
            int next = l->fuse_pool ? i + 2 : i + 1;
            double t0 = bench_now_s();
            l->run->backward(l, m->acts[i], m->acts[next], m->dacts[next],
                             i > 0 ? m->dacts[i] : NULL, batch);
            dev_sync(m);
            tb[i] += bench_now_s() - t0;
        }
    }
    m->dacts[nl] = NULL;
    double total = 0.0;
    for (int i = 0; i < nl; i++)
        total += tf[i] + tb[i];
    printf("| layer | output | forward ms | backward ms | share |\n|---|---|---|---|---|\n");
    for (int i = 0; i < nl; i++) {
        const dl_layer_t *l = &m->layers[i];
        printf("| %d %s%s | %dx%dx%d | %.3f | %.3f | %.1f%% |\n", i + 1, l->ops->name,
               i > 0 && m->layers[i - 1].fuse_pool ? " (in the conv before)" : "", l->out.c,
               l->out.h, l->out.w, 1e3 * tf[i] / steps, 1e3 * tb[i] / steps,
               100.0 * (tf[i] + tb[i]) / total);
    }
    printf("| all layers | | | %.3f | |\n", 1e3 * total / steps);
    free(tf);
    free(tb);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_train --model mlp|cnn|cnn2bn [--batch N] [--threads N] "
            "[--steps N] [--reps 1..%d] [--json] [--layers] [--device cpu|cuda] [--tf32]\n",
            MAX_REPS);
}

/* What one benchmark run is asked for (the command line). */
typedef struct bench_args {
    const char *model, *preset_name;
    int batch, threads, steps, reps, json, layers, tf32;
} bench_args_t;

/* The synthetic batch both devices train on: batch samples of in_size
 * normal floats and uniform labels below CLASSES, from a fixed seed
 * (malloc'd; 1 when out of memory). */
static int make_batch(int batch, long in_size, float **x, int32_t **y)
{
    *x = malloc(sizeof(float) * (size_t)batch * (size_t)in_size);
    *y = malloc(sizeof(int32_t) * (size_t)batch);
    if (!*x || !*y)
        return 1;
    dl_rng_t rng;
    dl_rng_seed(&rng, 7, 0);
    for (long i = 0; i < (long)batch * in_size; i++)
        (*x)[i] = (float)dl_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        (*y)[i] = (int32_t)dl_rng_below(&rng, CLASSES);
    return 0;
}

/* The benchmark on GPU 0 (--device cuda); returns the exit status. */
static int bench_cuda(const bench_args_t *a, const dl_layer_spec_t *specs, int n_specs,
                      dl_shape_t in)
{
    char why[256] = "", gpu[160] = "";
    if (!dl_cuda_built()) {
        fprintf(stderr,
                "bench_train: --device cuda: this bench_train was built without CUDA (CMake found "
                "no CUDA toolkit, or DLTRAIN_CUDA=OFF); rebuild with -DDLTRAIN_CUDA=ON, or use "
                "--device cpu\n");
        return 2;
    }
    if (dl_cuda_device_count(why, sizeof why) < 1) {
        fprintf(stderr, "bench_train: --device cuda: %s\n", why);
        return 2;
    }
    dl_err_t err = {0};
    dl_model_t m;
    dl_optim_t opt;
    dl_optim_cfg_t ocfg = {
        .type = DL_OPT_SGD, .lr = 0.01, .momentum = 0.9, .nesterov = 1, .weight_decay = 5e-4};
    dl_model_opts_t mo = {.dev = DL_DEV_CUDA, .tf32 = a->tf32};
    if (dl_cuda_use_device(0, gpu, sizeof gpu, &err) ||
        dl_model_build_opts(&m, specs, n_specs, in, a->batch, &mo, &err)) {
        dl_err_print("bench_train", &err);
        return 1;
    }
    if (dl_optim_init(&opt, &ocfg, m.n_params, &err) || dl_optim_use_cuda(&opt, m.cuda, &err)) {
        dl_err_print("bench_train", &err);
        return 1;
    }
    dl_model_init_params(&m, 1);
    m.ctx.training = 1;
    m.ctx.seed = 1;
    const long in_size = (long)in.c * in.h * in.w;
    float *x = NULL;
    int32_t *y = NULL;
    if (make_batch(a->batch, in_size, &x, &y)) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    size_t xbytes = sizeof(float) * (size_t)a->batch * (size_t)in_size;
    float *gx = dl_dev_alloc(DL_DEV_CUDA, xbytes, &err);
    int32_t *gy = gx ? dl_dev_alloc(DL_DEV_CUDA, sizeof(int32_t) * (size_t)a->batch, &err) : NULL;
    float *gdl =
        gy ? dl_dev_alloc(DL_DEV_CUDA, sizeof(float) * (size_t)a->batch * CLASSES, &err) : NULL;
    if (!gdl || dl_model_to_device(&m, &err) ||
        dl_dev_copy(m.cuda, gx, x, xbytes, DL_COPY_H2D, &err) ||
        dl_dev_copy(m.cuda, gy, y, sizeof(int32_t) * (size_t)a->batch, DL_COPY_H2D, &err) ||
        dl_cuda_sync(m.cuda, &err)) {
        dl_err_print("bench_train", &err);
        return 1;
    }

    double t[MAX_REPS] = {0}, loss = 0.0;
    for (int r = -1; r < a->reps; r++) { /* r = -1 is the warm-up */
        double t0 = bench_now_s();
        for (int s = 0; s < a->steps; s++) {
            m.ctx.step++;
            double loss_sum = 0.0;
            const float *logits = dl_model_forward(&m, gx, a->batch, &err);
            if (!logits ||
                dl_cuda_softmax_xent(m.cuda, logits, gy, a->batch, CLASSES, 0.0f,
                                     1.0f / (float)a->batch, gdl, &loss_sum, NULL, &err) ||
                dl_model_backward(&m, gdl, a->batch, &err) ||
                dl_optim_step_dev(&opt, m.params, m.grads, 0.01, &err)) {
                dl_err_print("bench_train", &err);
                return 1;
            }
            loss = loss_sum / a->batch;
        }
        if (dl_cuda_sync(m.cuda, &err)) {
            dl_err_print("bench_train", &err);
            return 1;
        }
        if (r >= 0)
            t[r] = (bench_now_s() - t0) / a->steps;
    }
    double step = median(t, a->reps);
    double train_flops = (double)dl_model_train_flops(&m);
    double tflops = train_flops * a->batch / step * 1e-12;
    double peak32 = 0.0, peak_tf32 = 0.0;
    if (dl_cuda_sgemm_tflops(GPU_PEAK_N, GPU_PEAK_REPS, DL_SGEMM_FP32, &peak32, &err) ||
        dl_cuda_sgemm_tflops(GPU_PEAK_N, GPU_PEAK_REPS, DL_SGEMM_TF32, &peak_tf32, &err)) {
        dl_err_print("bench_train", &err);
        return 1;
    }
    double peak = a->tf32 ? peak_tf32 : peak32;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (a->json) {
        printf("{\"impl\":\"dltrain\",\"device\":\"cuda\",\"gpu\":\"%s\",\"model\":\"%s\","
               "\"batch\":%d,\"steps\":%d,\"reps\":%d,\"tf32\":%d,\"cores\":%ld,"
               "\"params\":%lld,\"train_mflop_per_sample\":%.4f,\"step_ms\":%.4f,"
               "\"samples_per_s\":%.1f,\"tflops\":%.4f,\"sgemm_n\":%d,"
               "\"sgemm_fp32_tflops\":%.3f,\"sgemm_tf32_tflops\":%.3f,"
               "\"peak_pct\":%.2f,\"final_loss\":%.5f}\n",
               gpu, a->model, a->batch, a->steps, a->reps, a->tf32, cores, (long long)m.n_params,
               train_flops * 1e-6, step * 1e3, a->batch / step, tflops, GPU_PEAK_N, peak32,
               peak_tf32, 100.0 * tflops / peak, loss);
    } else {
        printf("device: GPU 0, %s; TF32 %s for the model's products\n", gpu,
               a->tf32 ? "on" : "off");
        printf("model: %s (preset %s, input 1x28x28, %d classes), %lld parameters, %.3f MFLOP "
               "per training sample\n",
               a->model, a->preset_name, CLASSES, (long long)m.n_params, train_flops * 1e-6);
        printf("batch %d: step %.3f ms (median of %d x %d steps after a warm-up, synced at the "
               "end of each), %.0f samples/s, %.3f TFLOP/s (loss %.4f)\n",
               a->batch, step * 1e3, a->reps, a->steps, a->batch / step, tflops, loss);
        printf("cublasSgemm %d^3 peak: %.2f TFLOP/s fp32 (TF32 off), %.2f TFLOP/s with TF32; "
               "the %s step reaches %.1f%% of the %s figure\n",
               GPU_PEAK_N, peak32, peak_tf32, a->model, 100.0 * tflops / peak,
               a->tf32 ? "TF32" : "fp32");
    }
    if (a->layers)
        layer_times(&m, gx, gdl, a->batch, a->steps * a->reps);
    free(x);
    free(y);
    dl_dev_free(DL_DEV_CUDA, gx);
    dl_dev_free(DL_DEV_CUDA, gy);
    dl_dev_free(DL_DEV_CUDA, gdl);
    dl_optim_free(&opt);
    dl_model_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *device = "cpu";
    int batch = 128, threads = 1, steps = 0, reps = 7, json = 0, layers = 0, tf32 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(argv[i], "--layers")) {
            layers = 1;
            continue;
        }
        if (!strcmp(argv[i], "--tf32")) {
            tf32 = 1;
            continue;
        }
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        if (!strcmp(argv[i], "--model"))
            model = argv[++i];
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device"))
            device = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (!model || batch < 1 || threads < 1 || steps < 0 || reps < 1 || reps > MAX_REPS) {
        usage();
        return 2;
    }
    int cuda = !strcmp(device, "cuda");
    if (!cuda && strcmp(device, "cpu")) {
        fprintf(stderr, "bench_train: unknown device '%s' (cpu or cuda)\n", device);
        return 2;
    }
    if (tf32 && !cuda) {
        fprintf(stderr, "bench_train: --tf32 needs --device cuda\n");
        return 2;
    }
    const char *preset_name = !strcmp(model, "cnn") ? "cnn2" : model;
    int preset = strcmp(model, "mlp") && strcmp(model, "cnn") && strcmp(model, "cnn2bn")
                     ? -1
                     : preset_index(preset_name);
    if (preset < 0) {
        fprintf(stderr, "bench_train: unknown model '%s' (mlp, cnn or cnn2bn)\n", model);
        return 2;
    }
    if (steps == 0 && cuda) /* some tens of ms per repetition on a current GPU */
        steps = !strcmp(model, "mlp") ? 200 : 100;
    if (steps == 0) /* about a tenth of a second or more per repetition on one thread */
        steps = !strcmp(model, "mlp") ? 100 : 10;
    openblas_set_num_threads(threads);

    dl_layer_spec_t specs[MAX_SPECS];
    int n_specs = dl_preset_specs(preset, specs, MAX_SPECS);
    if (n_specs < 1)
        return 1;
    for (int i = n_specs - 1; i >= 0; i--)
        if (specs[i].type == DL_LAYER_DENSE && specs[i].units == DL_UNITS_CLASSES) {
            specs[i].units = CLASSES;
            break;
        }
    const dl_shape_t in = {1, 28, 28};
    const long in_size = (long)in.c * in.h * in.w;
    if (cuda) {
        bench_args_t a = {model, preset_name, batch, threads, steps, reps, json, layers, tf32};
        return bench_cuda(&a, specs, n_specs, in);
    }

    dl_model_t m;
    dl_err_t err = {0};
    dl_optim_t opt;
    dl_optim_cfg_t ocfg = {
        .type = DL_OPT_SGD, .lr = 0.01, .momentum = 0.9, .nesterov = 1, .weight_decay = 5e-4};
    if (dl_model_build(&m, specs, n_specs, in, batch, &err) ||
        dl_optim_init(&opt, &ocfg, m.n_params, &err)) {
        dl_err_print("bench_train", &err);
        return 1;
    }
    dl_model_init_params(&m, 1);
    m.ctx.training = 1;
    m.ctx.seed = 1;
    float *x = NULL, *dl = malloc(sizeof(float) * (size_t)batch * CLASSES);
    int32_t *y = NULL;
    if (!dl || make_batch(batch, in_size, &x, &y)) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }

    double t[MAX_REPS] = {0}, loss = 0.0;
    for (int r = -1; r < reps; r++) { /* r = -1 is the warm-up */
        double t0 = bench_now_s();
        for (int s = 0; s < steps; s++) {
            m.ctx.step++;
            const float *logits = dl_model_forward(&m, x, batch, &err);
            if (!logits) {
                dl_err_print("bench_train", &err);
                return 1;
            }
            loss = dl_softmax_xent(logits, y, batch, CLASSES, 0.0f, 1.0f / (float)batch, dl, NULL) /
                   batch;
            if (dl_model_backward(&m, dl, batch, &err)) {
                dl_err_print("bench_train", &err);
                return 1;
            }
            dl_optim_step(&opt, m.params, m.grads, 0.01);
        }
        if (r >= 0)
            t[r] = (bench_now_s() - t0) / steps;
    }
    double step = median(t, reps);
    double train_flops = (double)dl_model_train_flops(&m);
    double gflops = train_flops * batch / step * 1e-9;
    double peak = sgemm_peak(1024, 7);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *blas = openblas_get_config();

    if (json) {
        printf("{\"impl\":\"dltrain\",\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"steps\":%d,"
               "\"reps\":%d,\"cores\":%ld,\"blas\":\"%s\",\"params\":%lld,"
               "\"train_mflop_per_sample\":%.4f,\"step_ms\":%.4f,\"samples_per_s\":%.1f,"
               "\"gflops\":%.3f,\"sgemm_peak_gflops\":%.3f,\"peak_pct\":%.2f,"
               "\"final_loss\":%.5f}\n",
               model, batch, threads, steps, reps, cores, blas, (long long)m.n_params,
               train_flops * 1e-6, step * 1e3, batch / step, gflops, peak, 100.0 * gflops / peak,
               loss);
    } else {
        printf("machine: %ld cores online, %d BLAS thread(s), %s\n", cores, threads, blas);
        printf("model: %s (preset %s, input 1x28x28, %d classes), %lld parameters, %.3f MFLOP "
               "per training sample\n",
               model, preset_name, CLASSES, (long long)m.n_params, train_flops * 1e-6);
        printf("batch %d: step %.3f ms (median of %d x %d steps after a warm-up), %.0f "
               "samples/s, %.2f GFLOP/s (loss %.4f)\n",
               batch, step * 1e3, reps, steps, batch / step, gflops, loss);
        printf("sgemm 1024^3 peak on %d thread(s): %.2f GFLOP/s; the %s step reaches %.0f%% of "
               "it\n",
               threads, peak, model, 100.0 * gflops / peak);
    }
    if (layers)
        layer_times(&m, x, dl, batch, steps * reps);
    free(x);
    free(dl);
    free(y);
    dl_optim_free(&opt);
    dl_model_free(&m);
    return 0;
}
