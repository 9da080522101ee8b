/* The preset models; see presets.h and docs/models.md. */
#include <string.h>

#include "presets.h"

const char *const dl_preset_names[] = {"none", "mlp", "lenet", "cnn2", "cnn2bn", "resnet8", NULL};

typedef struct builder {
    dl_layer_spec_t *specs;
    int n, max;
    dl_layer_spec_t spill; /* written once specs is full; the caller then sees -1 */
} builder_t;

static dl_layer_spec_t *add(builder_t *b, dl_layer_type_t type)
{
    if (b->n >= b->max) {
        b->n++;
        return memset(&b->spill, 0, sizeof b->spill);
    }
    dl_layer_spec_t *s = &b->specs[b->n++];
    memset(s, 0, sizeof *s);
    s->type = type;
    s->bias = 1;
    s->groups = 1;
    s->stride = 1;
    s->momentum = 0.1;
    s->eps = 1e-5;
    return s;
}

static void conv(builder_t *b, int filters, int size, int stride, int pad, dl_act_t act, int bias)
{
    dl_layer_spec_t *s = add(b, DL_LAYER_CONV);
    s->filters = filters;
    s->size = size;
    s->stride = stride;
    s->pad = pad;
    s->act = act;
    s->bias = bias;
}

static void pool(builder_t *b, dl_layer_type_t type, int size)
{
    dl_layer_spec_t *s = add(b, type);
    s->size = size;
    s->stride = size ? size : 1;
}

static void dense(builder_t *b, int units, dl_act_t act)
{
    dl_layer_spec_t *s = add(b, DL_LAYER_DENSE);
    s->units = units;
    s->act = act;
}

static void batchnorm(builder_t *b, dl_act_t act)
{
    add(b, DL_LAYER_BATCHNORM);
    if (act != DL_ACT_NONE)
        add(b, DL_LAYER_ACTIVATION)->act = act;
}

/* A basic residual block: conv-bn-relu, conv-bn, add the block's input
 * (subsampled and zero-extended in channels when the block downsamples),
 * relu. */
static void residual_block(builder_t *b, int filters, int stride)
{
    int input = b->n - 1; /* the section whose output enters the block */
    conv(b, filters, 3, stride, 1, DL_ACT_NONE, 0);
    batchnorm(b, DL_ACT_RELU);
    conv(b, filters, 3, 1, 1, DL_ACT_NONE, 0);
    batchnorm(b, DL_ACT_NONE);
    dl_layer_spec_t *s = add(b, DL_LAYER_SHORTCUT);
    s->from = input;
    s->act = DL_ACT_RELU;
}

int dl_preset_specs(int preset, dl_layer_spec_t *specs, int max)
{
    builder_t b = {.specs = specs, .max = max};
    const char *name = dl_preset_names[preset];
    if (!strcmp(name, "mlp")) {
        dense(&b, 256, DL_ACT_RELU);
        dense(&b, 128, DL_ACT_RELU);
        dense(&b, 100, DL_ACT_RELU);
    } else if (!strcmp(name, "lenet")) {
        conv(&b, 6, 5, 1, 2, DL_ACT_RELU, 1);
        pool(&b, DL_LAYER_MAXPOOL, 2);
        conv(&b, 16, 5, 1, 0, DL_ACT_RELU, 1);
        pool(&b, DL_LAYER_MAXPOOL, 2);
        dense(&b, 120, DL_ACT_RELU);
        dense(&b, 84, DL_ACT_RELU);
    } else if (!strcmp(name, "cnn2") || !strcmp(name, "cnn2bn")) {
        int bn = !strcmp(name, "cnn2bn");
        conv(&b, 32, 3, 1, 1, bn ? DL_ACT_NONE : DL_ACT_RELU, !bn);
        if (bn)
            batchnorm(&b, DL_ACT_RELU);
        pool(&b, DL_LAYER_MAXPOOL, 2);
        conv(&b, 64, 3, 1, 1, bn ? DL_ACT_NONE : DL_ACT_RELU, !bn);
        if (bn)
            batchnorm(&b, DL_ACT_RELU);
        pool(&b, DL_LAYER_MAXPOOL, 2);
        dense(&b, 128, bn ? DL_ACT_NONE : DL_ACT_RELU);
        if (bn)
            batchnorm(&b, DL_ACT_RELU);
    } else if (!strcmp(name, "resnet8")) {
        conv(&b, 16, 3, 1, 1, DL_ACT_NONE, 0);
        batchnorm(&b, DL_ACT_RELU);
        residual_block(&b, 16, 1);
        residual_block(&b, 32, 2);
        residual_block(&b, 64, 2);
        pool(&b, DL_LAYER_AVGPOOL, 0);
    } else {
        return -1;
    }
    dense(&b, DL_UNITS_CLASSES, DL_ACT_NONE);
    return b.n <= max ? b.n : -1;
}
