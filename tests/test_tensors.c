/* The model's tensor table (dl_model_tensors), which names and shapes what a
 * checkpoint stores: for every preset, the tensors tile the parameter and
 * state buffers exactly once in buffer order, names are unique; cnn2bn's
 * names and PyTorch shapes; section names replace layerNN; three-digit
 * indices past 100 layers; a name clash is DL_EINPUT. Depends on models/
 * only. */
#include <stdlib.h>

#include "models/model.h"
#include "models/presets.h"

#include "check.h"

static int build_preset(dl_model_t *m, const char *name, int classes)
{
    dl_layer_spec_t specs[64];
    int preset = 0;
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], name))
            preset = i;
    int n = dl_preset_specs(preset, specs, 64);
    for (int i = 0; i < n; i++)
        if (specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = classes;
    dl_err_t err = {0};
    int rc = dl_model_build(m, specs, n, (dl_shape_t){1, 28, 28}, 2, &err);
    if (rc)
        fprintf(stderr, "%s: %s\n", name, err.msg);
    return rc;
}

/* Tensors tile params and state in order, counts match dims, names unique. */
static void check_tiling(const dl_model_t *m, const dl_tensor_info_t *t, int n, const char *what)
{
    int64_t p = 0, s = 0;
    for (int i = 0; i < n; i++) {
        int64_t prod = 1;
        for (int d = 0; d < t[i].ndim; d++)
            prod *= t[i].dims[d];
        CHECK(t[i].ndim >= 1 && t[i].ndim <= 4);
        CHECK(prod == t[i].count);
        int64_t *next = t[i].is_state ? &s : &p;
        if (t[i].offset != *next)
            fprintf(stderr, "%s: tensor %s at offset %lld, expected %lld\n", what, t[i].name,
                    (long long)t[i].offset, (long long)*next);
        CHECK(t[i].offset == *next);
        *next += t[i].count;
        for (int j = 0; j < i; j++)
            CHECK(strcmp(t[i].name, t[j].name) != 0);
    }
    if (p != m->n_params || s != m->n_state)
        fprintf(stderr, "%s: tensors cover %lld params and %lld state, model has %lld and %lld\n",
                what, (long long)p, (long long)s, (long long)m->n_params, (long long)m->n_state);
    CHECK(p == m->n_params);
    CHECK(s == m->n_state);
}

static void test_presets(void)
{
    for (int i = 1; dl_preset_names[i]; i++) {
        dl_model_t m;
        if (build_preset(&m, dl_preset_names[i], 10)) {
            CHECK(0);
            continue;
        }
        dl_tensor_info_t *t = NULL;
        int n = 0;
        dl_err_t err = {0};
        CHECK(dl_model_tensors(&m, &t, &n, &err) == 0);
        CHECK(n > 0);
        check_tiling(&m, t, n, dl_preset_names[i]);
        free(t);
        dl_model_free(&m);
    }
}

static void test_cnn2bn_names(void)
{
    /* Layers: conv0 bn1 act2 pool3 conv4 bn5 act6 pool7 dense8 bn9 act10 dense11. */
    static const struct {
        const char *name;
        int ndim;
        int64_t dims[4];
        int is_state;
    } want[] = {
        {"layer00.weight", 4, {32, 1, 3, 3}, 0},
        {"layer01.weight", 1, {32}, 0},
        {"layer01.bias", 1, {32}, 0},
        {"layer01.running_mean", 1, {32}, 1},
        {"layer01.running_var", 1, {32}, 1},
        {"layer04.weight", 4, {64, 32, 3, 3}, 0},
        {"layer05.weight", 1, {64}, 0},
        {"layer05.bias", 1, {64}, 0},
        {"layer05.running_mean", 1, {64}, 1},
        {"layer05.running_var", 1, {64}, 1},
        {"layer08.weight", 2, {128, 64 * 7 * 7}, 0},
        {"layer08.bias", 1, {128}, 0},
        {"layer09.weight", 1, {128}, 0},
        {"layer09.bias", 1, {128}, 0},
        {"layer09.running_mean", 1, {128}, 1},
        {"layer09.running_var", 1, {128}, 1},
        {"layer11.weight", 2, {10, 128}, 0},
        {"layer11.bias", 1, {10}, 0},
    };
    int nw = (int)(sizeof want / sizeof want[0]);
    dl_model_t m;
    if (build_preset(&m, "cnn2bn", 10)) {
        CHECK(0);
        return;
    }
    dl_tensor_info_t *t = NULL;
    int n = 0;
    dl_err_t err = {0};
    CHECK(dl_model_tensors(&m, &t, &n, &err) == 0);
    CHECK(n == nw);
    for (int i = 0; i < n && i < nw; i++) {
        if (strcmp(t[i].name, want[i].name) != 0)
            fprintf(stderr, "tensor %d is %s, expected %s\n", i, t[i].name, want[i].name);
        CHECK(!strcmp(t[i].name, want[i].name));
        CHECK(t[i].ndim == want[i].ndim);
        for (int d = 0; d < want[i].ndim; d++)
            CHECK(t[i].dims[d] == want[i].dims[d]);
        CHECK(t[i].is_state == want[i].is_state);
    }
    /* The views the layers use are the ones the table names. */
    CHECK(m.params + t[0].offset == m.layers[0].w);
    CHECK(m.params + t[2].offset == m.layers[1].b);
    CHECK(m.state + t[4].offset == m.layers[1].state + 32);
    free(t);
    dl_model_free(&m);
}

static dl_layer_spec_t dense(int units, const char *name)
{
    dl_layer_spec_t s = {.type = DL_LAYER_DENSE, .units = units, .bias = 1, .line = 7};
    snprintf(s.name, sizeof s.name, "%s", name);
    return s;
}

static void test_names_and_width(void)
{
    dl_err_t err = {0};
    dl_model_t m;
    dl_tensor_info_t *t = NULL;
    int n = 0;
    /* Named sections keep their names; unnamed ones get layerNN. */
    dl_layer_spec_t specs[101];
    specs[0] = dense(4, "fc1");
    specs[1] = dense(3, "");
    CHECK(dl_model_build(&m, specs, 2, (dl_shape_t){5, 1, 1}, 1, &err) == 0);
    CHECK(dl_model_tensors(&m, &t, &n, &err) == 0);
    CHECK(n == 4);
    if (n == 4) {
        CHECK(!strcmp(t[0].name, "fc1.weight") && t[0].dims[0] == 4 && t[0].dims[1] == 5);
        CHECK(!strcmp(t[1].name, "fc1.bias"));
        CHECK(!strcmp(t[2].name, "layer01.weight") && t[2].dims[0] == 3 && t[2].dims[1] == 4);
        CHECK(!strcmp(t[3].name, "layer01.bias"));
    }
    free(t);
    dl_model_free(&m);

    /* A section named like another layer's default name clashes. */
    specs[0] = dense(4, "layer01");
    CHECK(dl_model_build(&m, specs, 2, (dl_shape_t){5, 1, 1}, 1, &err) == 0);
    int rc = dl_model_tensors(&m, &t, &n, &err);
    CHECK_EINPUT(rc, &err, "layer01.weight", "twice");
    CHECK(t == NULL && n == 0);
    dl_model_free(&m);

    /* 101 layers: indices 000..100. */
    for (int i = 0; i < 101; i++)
        specs[i] = dense(2, "");
    CHECK(dl_model_build(&m, specs, 101, (dl_shape_t){2, 1, 1}, 1, &err) == 0);
    CHECK(dl_model_tensors(&m, &t, &n, &err) == 0);
    CHECK(n == 202);
    if (n == 202) {
        CHECK(!strcmp(t[0].name, "layer000.weight"));
        CHECK(!strcmp(t[201].name, "layer100.bias"));
    }
    check_tiling(&m, t, n, "101 dense layers");
    free(t);
    dl_model_free(&m);
}

int main(void)
{
    test_presets();
    test_cnn2bn_names();
    test_names_and_width();
    return CHECK_DONE();
}
