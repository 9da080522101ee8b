/* ckpt_export: write a checkpoint of a preset model with known parameters,
 * and the model's logits on fixed inputs, for tests/reference/check_checkpoint.py
 * (which loads the checkpoint into PyTorch with the docs' script and compares
 * the logits).
 *
 * usage: ckpt_export PRESET DIR
 *
 * The model: PRESET (models/presets.c) on 1 x 28 x 28 inputs with 10
 * classes, parameters from dl_model_init_params(seed 11) plus 0.05 times a
 * normal draw each (so biases and batch-norm gamma and beta are not 0 and
 * 1), running means normal(0, 0.2) and running variances uniform(0.5, 1.5).
 * Writes DIR/ckpt-0000000007.h5 through dl_ckpt_write, DIR/x.f32 (N x 1 x 28
 * x 28 float32 inputs, N = 8) and DIR/logits.f32 (N x 10 float32 logits of
 * the inference-mode forward pass), little-endian. Exit status 0 on success,
 * 1 on any error (with a message on stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "models/presets.h"

#define N 8
#define CLASSES 10

static int write_floats(const char *dir, const char *name, const float *v, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(v, sizeof(float), n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "ckpt_export: cannot write %s\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_export PRESET DIR\n");
        return 1;
    }
    int preset = 0;
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], argv[1]))
            preset = i;
    dl_layer_spec_t specs[64];
    int n_specs = preset ? dl_preset_specs(preset, specs, 64) : -1;
    if (n_specs < 0) {
        fprintf(stderr, "ckpt_export: unknown preset %s\n", argv[1]);
        return 1;
    }
    for (int i = 0; i < n_specs; i++)
        if (specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = CLASSES;
    dl_err_t err = {0};
    dl_model_t m;
    dl_tensor_info_t *t = NULL;
    int n_t = 0;
    if (dl_model_build(&m, specs, n_specs, (dl_shape_t){1, 28, 28}, N, &err) ||
        dl_model_tensors(&m, &t, &n_t, &err)) {
        fprintf(stderr, "ckpt_export: %s\n", err.msg);
        return 1;
    }
    dl_model_init_params(&m, 11);
    dl_rng_t rng;
    dl_rng_seed(&rng, 12, 1);
    for (int64_t i = 0; i < m.n_params; i++)
        m.params[i] += (float)(0.05 * dl_rng_normal(&rng));
    for (int i = 0; i < n_t; i++) {
        float *s = m.state + t[i].offset;
        int var = !strcmp(strrchr(t[i].name, '.'), ".running_var");
        for (int64_t k = 0; t[i].is_state && k < t[i].count; k++)
            s[k] = var ? (float)(0.5 + dl_rng_uniform(&rng)) : (float)(0.2 * dl_rng_normal(&rng));
    }
    float *x = malloc(sizeof(float) * N * 28 * 28);
    if (!x) {
        fprintf(stderr, "ckpt_export: out of memory\n");
        return 1;
    }
    for (int i = 0; i < N * 28 * 28; i++)
        x[i] = (float)dl_rng_normal(&rng);
    m.ctx.training = 0;
    const float *y = dl_model_forward(&m, x, N, &err);
    dl_ckpt_meta_t meta = {.step = 7, .world_size = 1, .global_batch = N, .job_text = argv[1]};
    dl_ckpt_model_t cm = {.tensors = t,
                          .n_tensors = n_t,
                          .params = m.params,
                          .n_params = m.n_params,
                          .state = m.state,
                          .n_state = m.n_state};
    char path[4096];
    int rc = !y || dl_ckpt_write(argv[2], &meta, &cm, 1, 0, path, sizeof path, &err);
    if (rc)
        fprintf(stderr, "ckpt_export: %s\n", err.msg);
    else
        rc = write_floats(argv[2], "x.f32", x, N * 28 * 28) ||
             write_floats(argv[2], "logits.f32", y, N * CLASSES);
    if (!rc)
        printf("%s\n", path);
    free(x);
    free(t);
    dl_model_free(&m);
    return rc ? 1 : 0;
}
