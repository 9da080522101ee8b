/* dltrain models: a model is a list of layers applied in order. Parameters and
 * gradients of all layers live in one contiguous buffer each; a layer holds
 * views into them. Layers are listed in one const table (model.c), not
 * self-registered. Nothing here depends on MPI or HDF5. */
#ifndef DL_MODEL_H
#define DL_MODEL_H

#include <stdint.h>

#include "../runtime/error.h"
#include "rng.h"

typedef enum { DL_LAYER_DENSE, DL_LAYER_ACTIVATION, DL_LAYER_NTYPES } dl_layer_type_t;
typedef enum { DL_ACT_NONE, DL_ACT_RELU, DL_ACT_TANH, DL_ACT_SIGMOID } dl_act_t;
typedef enum { DL_INIT_AUTO, DL_INIT_KAIMING, DL_INIT_XAVIER } dl_init_t;

/* One layer as described by the job file. A dense spec with an activation
 * becomes two layers (dense, then activation). */
typedef struct dl_layer_spec {
    dl_layer_type_t type;
    int units;      /* dense: output features */
    dl_act_t act;   /* dense: activation after it; activation layer: the function */
    dl_init_t init; /* dense: AUTO = Kaiming before ReLU, Xavier otherwise */
    int bias;       /* dense: 1 to learn a bias */
    int line;       /* job-file line of the section, for messages (0 if none) */
} dl_layer_spec_t;

typedef struct dl_layer dl_layer_t;

/* Forward and backward of one layer type, on n samples stored row-major
 * (sample i at x + i*in_size). backward overwrites the layer's parameter
 * gradients (each parameter belongs to one layer, used once per pass) and
 * writes dx unless dx is NULL. */
typedef struct dl_layer_ops {
    const char *name;
    int64_t (*n_params)(const dl_layer_t *l);
    void (*init)(dl_layer_t *l, dl_rng_t *rng);
    void (*forward)(const dl_layer_t *l, const float *x, float *y, int n);
    void (*backward)(const dl_layer_t *l, const float *x, const float *y, const float *dy,
                     float *dx, int n);
    /* Floating-point operations per sample for forward + backward. */
    int64_t (*flops)(const dl_layer_t *l, int need_dx);
} dl_layer_ops_t;

struct dl_layer {
    const dl_layer_ops_t *ops;
    dl_layer_spec_t spec;
    int64_t in_size, out_size; /* features per sample */
    float *w, *b;              /* parameter views (dense: w is out x in, PyTorch layout) */
    float *dw, *db;            /* gradient views, same shapes */
};

extern const dl_layer_ops_t dl_dense_ops;
extern const dl_layer_ops_t dl_activation_ops;

typedef struct dl_model {
    int n_layers;
    dl_layer_t *layers;
    int64_t in_size, out_size;
    int64_t n_params;
    float *params; /* n_params floats, layer after layer */
    float *grads;  /* same layout as params */
    int max_batch;
    float *
        *acts; /* acts[i] = input of layer i (acts[0] is the caller's), acts[n_layers] = output */
    float *dbuf[2]; /* scratch for gradients with respect to activations */
} dl_model_t;

/* Build a model for inputs of in_size features and batches up to max_batch.
 * Rejects bad specs (DL_EINPUT naming the job-file line). */
int dl_model_build(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, int64_t in_size,
                   int max_batch, dl_err_t *err);
/* Initialise parameters from a seeded generator (same seed, same values). */
void dl_model_init_params(dl_model_t *m, uint64_t seed);
/* Forward n samples x (n x in_size); returns the n x out_size output. */
const float *dl_model_forward(dl_model_t *m, const float *x, int n);
/* Backward from dout (n x out_size) after dl_model_forward on the same batch.
 * Overwrites m->grads; the last layer's gradients are ready first. n >= 1. */
void dl_model_backward(dl_model_t *m, const float *dout, int n);
/* Floating-point operations per sample of one training step (forward + backward). */
int64_t dl_model_train_flops(const dl_model_t *m);
/* Hash of the parameter bytes, for comparing runs exactly. */
uint64_t dl_model_digest(const dl_model_t *m);
void dl_model_free(dl_model_t *m);

const char *dl_act_name(dl_act_t a);

/* Softmax cross-entropy over n rows of k logits. Returns the summed loss;
 * *correct (if not NULL) gets the number of rows whose arg-max is the label.
 * If dlogits is not NULL it receives scale * (softmax - onehot(label)). */
double dl_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float scale,
                       float *dlogits, int64_t *correct);

#endif
