/* dltrain models: a model is a list of layers applied in order. Parameters and
 * gradients of all layers live in one contiguous buffer each, non-trainable
 * state (batch-norm running statistics) in a third; a layer holds views into
 * them. Layer types are listed in one const table (model.c), not
 * self-registered. Nothing here depends on MPI or HDF5: the one collective a
 * layer may need (synchronised batch norm) comes in through dl_model_ctx_t.
 *
 * Tensors are NCHW float32: sample i of a batch starts at x + i*size, where
 * size = c*h*w of the layer's input or output shape. */
#ifndef DL_MODEL_H
#define DL_MODEL_H

#include <stdint.h>

#include "../runtime/error.h"
#include "device.h"
#include "rng.h"

typedef enum {
    DL_LAYER_DENSE,
    DL_LAYER_ACTIVATION,
    DL_LAYER_CONV,
    DL_LAYER_MAXPOOL,
    DL_LAYER_AVGPOOL,
    DL_LAYER_BATCHNORM,
    DL_LAYER_DROPOUT,
    DL_LAYER_SHORTCUT,
    DL_LAYER_FLATTEN,
    DL_LAYER_NTYPES
} dl_layer_type_t;

typedef enum {
    DL_ACT_NONE,
    DL_ACT_RELU,
    DL_ACT_LEAKY, /* slope 0.01 for x < 0, as torch.nn.LeakyReLU */
    DL_ACT_GELU,  /* exact (erf) form, as torch.nn.GELU */
    DL_ACT_TANH,
    DL_ACT_SIGMOID
} dl_act_t;

typedef enum { DL_INIT_AUTO, DL_INIT_KAIMING, DL_INIT_XAVIER } dl_init_t;

typedef struct dl_shape {
    int c, h, w; /* a flat vector of n features is c = n, h = w = 1 */
} dl_shape_t;

#define DL_NAME_MAX 32

/* One layer section of the job file (or of a preset). A section with an
 * activation becomes two layers, itself and then an activation layer, except
 * a convolution, which applies the activation itself when dl_act_fusable. */
typedef struct dl_layer_spec {
    dl_layer_type_t type;
    char name[DL_NAME_MAX]; /* optional, for [shortcut] from = NAME */
    int units;              /* dense: output features */
    int filters;            /* conv: output channels */
    int size, stride, pad;  /* conv, maxpool, avgpool (avgpool size 0 = global) */
    int groups;             /* conv: channel groups (1 = ordinary convolution) */
    dl_act_t act;           /* dense, conv, shortcut: activation after; activation: the function */
    dl_init_t init;         /* dense, conv: AUTO = Kaiming before ReLU-like, Xavier otherwise */
    int bias;               /* dense, conv: learn a bias */
    double rate;            /* dropout: probability of zeroing an element */
    double momentum, eps;   /* batchnorm: running-statistics momentum, epsilon */
    int sync;               /* batchnorm: statistics over all ranks */
    int from;               /* shortcut: index of the section whose output is added (absolute,
                               0-based, < this section's index) */
    char from_ref[DL_NAME_MAX]; /* shortcut: from as written in the job file (-k or a name) */
    int line;                   /* job-file line of the section, for messages (0 if none) */
} dl_layer_spec_t;

typedef struct dl_layer dl_layer_t;

/* What a pass needs from outside the model. Set by the caller; the model
 * never changes it. */
typedef struct dl_model_ctx {
    int training;  /* 1: batch statistics, dropout on; 0: running statistics, no dropout */
    uint64_t seed; /* with step, rank and the layer index: the dropout masks */
    uint64_t step;
    int rank;
    /* Sum n floats over all ranks in place (synchronised batch norm); NULL
     * when there is one rank. Returns 0 or a negative DL_E* status. */
    int (*allreduce_sum)(void *comm, float *buf, int64_t n);
    void *comm;
    /* Called by dl_model_backward after each layer's backward pass, from =
     * that layer's offset into the gradient buffer: grads[from..n_params)
     * are final then (layers run last first, so from only decreases, to 0
     * at the first layer). The gradient all-reduce starts its buckets here.
     * NULL: not called. Returns 0 or a negative DL_E* status. */
    int (*grads_ready)(void *arg, int64_t from);
    void *grads_arg;
} dl_model_ctx_t;

/* One layer type. Shapes: setup() sets l->out from l->in and l->spec.
 * forward/backward run on n <= max_batch samples; backward overwrites the
 * layer's parameter gradients (each parameter belongs to one layer and is
 * used once per pass) and writes dx unless dx is NULL. Both return 0 or a
 * negative DL_E* status (only a failed collective can fail). */
typedef struct dl_layer_ops {
    const char *name;
    int (*setup)(dl_layer_t *l, dl_err_t *err); /* DL_EINPUT naming spec.line on bad shapes */
    int64_t (*n_params)(const dl_layer_t *l);
    int64_t (*n_state)(const dl_layer_t *l); /* non-trainable floats (NULL: none) */
    int (*alloc)(dl_layer_t *l, int max_batch, dl_err_t *err); /* l->work (NULL: none) */
    void (*release)(dl_layer_t *l);                            /* frees l->work (NULL: none) */
    void (*init)(dl_layer_t *l, dl_rng_t *rng);                /* params and state */
    int (*forward)(dl_layer_t *l, const float *x, float *y, int n);
    int (*backward)(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                    int n);
    int64_t (*flops)(const dl_layer_t *l); /* forward floating-point operations per sample */
} dl_layer_ops_t;

struct dl_layer {
    const dl_layer_ops_t *ops;
    dl_layer_spec_t spec;
    int index;                 /* position in the model's layer list */
    dl_shape_t in, out;        /* per-sample shapes */
    int64_t in_size, out_size; /* c*h*w of in and out */
    float *w, *b;              /* trainable views: dense W (out x in) and bias; conv W
                                  (filters x c/groups x size x size) and bias; batchnorm gamma, beta */
    float *dw, *db;            /* gradient views, same shapes */
    float *state;              /* non-trainable view: batchnorm running mean then running var */
    void *work;         /* the layer's own scratch (argmax, masks, saved statistics, im2col) */
    const float *aux_x; /* shortcut: the output of the source layer, set by the model */
    dl_shape_t aux_in;  /* shortcut: shape of that output, set by the model before setup */
    float *aux_dx;      /* shortcut: gradient with respect to aux_x, written by backward
                           and added by the model to the source output's gradient */
    int src;            /* shortcut: index of the layer whose output is added */
    int fuse_pool;      /* conv: also applies the next layer, a 2x2 stride-2 max pool, while
                           each block of output is in cache; the model then passes this
                           layer the pool's output and its gradient (dl_conv_pool_fusable) */
    const dl_model_ctx_t *ctx; /* the model's context */
    /* The implementation the passes run: ops itself on the CPU, the type's
     * CUDA table (alloc, release, forward, backward) on the GPU, where every
     * buffer the passes see is GPU memory and cuda is the model's. */
    const dl_layer_ops_t *run;
    dl_cuda_t *cuda;
    dl_err_t err; /* a failed pass of run explains itself here (CUDA errors) */
};

/* The CUDA table of a layer type, or NULL in a build without CUDA.
 * Defined in device.cu (cuda_none.c without CUDA). */
const dl_layer_ops_t *dl_cuda_layer_ops(dl_layer_type_t t);
/* The key of a dropout layer's mask for the context's seed, step and rank
 * (dropout.c; dropout.cu computes the same mask from it). */
uint64_t dl_dropout_key(const dl_model_ctx_t *ctx, int index);

extern const dl_layer_ops_t dl_dense_ops, dl_activation_ops, dl_conv_ops, dl_maxpool_ops,
    dl_avgpool_ops, dl_batchnorm_ops, dl_dropout_ops, dl_shortcut_ops, dl_flatten_ops;

typedef struct dl_model {
    int n_layers;
    dl_layer_t *layers;
    dl_shape_t in_shape, out_shape;
    int64_t in_size, out_size;
    int64_t n_params, n_state;
    float *params; /* n_params floats, layer after layer */
    float *grads;  /* same layout as params */
    float *state;  /* n_state floats, layer after layer */
    int max_batch;
    float *
        *acts; /* acts[i] = input of layer i (acts[0] is the caller's), acts[n_layers] = output */
    float **dacts;      /* dacts[i] = gradient with respect to acts[i] (dacts[0] unused) */
    int input_grad;     /* 1: backward also computes the gradient of the input (dacts[0]) */
    int *section_layer; /* section index -> index of the layer that gives its output */
    int n_sections;
    dl_model_ctx_t ctx;
    /* Where the buffers above live (acts, dacts, params, grads, state and
     * the layers' views). On DL_DEV_CUDA, host_params and host_state are
     * host copies for checkpoints and comparisons, brought up to date by
     * dl_model_to_host; on the CPU they are params and state themselves. */
    dl_dev_t dev;
    dl_cuda_t *cuda;
    float *host_params, *host_state;
} dl_model_t;

/* How to build a model: flags (DL_MODEL_NO_FUSION), the device, and for
 * CUDA whether products may use TF32 tensor cores. */
typedef struct dl_model_opts {
    int flags;
    dl_dev_t dev;
    int tf32;
} dl_model_opts_t;

/* Build a model for input samples of the given shape and batches up to
 * max_batch. Rejects bad specs (DL_EINPUT naming the job-file line). */
int dl_model_build(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                   int max_batch, dl_err_t *err);
/* dl_model_build with flags: DL_MODEL_NO_FUSION keeps every layer's pass
 * separate (tests compare the fused passes against it). */
#define DL_MODEL_NO_FUSION 1
int dl_model_build_flags(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                         int max_batch, int flags, dl_err_t *err);
/* dl_model_build on a device. On DL_DEV_CUDA the passes take and return
 * GPU memory, the layers run their CUDA tables (no CPU-only fusion), and the
 * model owns a dl_cuda_t (stream, cuBLAS handle). */
int dl_model_build_opts(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                        int max_batch, const dl_model_opts_t *opts, dl_err_t *err);
/* Copy parameters and state between the device and host_params /
 * host_state (no-ops on the CPU): after dl_model_init_params, checkpoint
 * loads or broadcasts into the host copies, call dl_model_to_device; before
 * reading them (checkpoints, digests), dl_model_to_host. */
int dl_model_to_device(dl_model_t *m, dl_err_t *err);
int dl_model_to_host(dl_model_t *m, dl_err_t *err);
/* Whether conv layer c can apply the max pool p that follows it itself
 * (l->fuse_pool): p is 2x2 with stride 2 and no padding, and c is not a 1x1
 * convolution that reads its input in place. Both after setup. Defined in conv.c. */
int dl_conv_pool_fusable(const dl_layer_t *c, const dl_layer_t *p);
/* A 2x2 stride-2 max pool of one h x w plane x (pitch w) into y ((h/2) x
 * (w/2)), with each maximum's window position (0 top left, 1 top right,
 * 2 bottom left, 3 bottom right; the first maximum in that order, a NaN
 * wins as in torch) in arg; and its adjoint, dx (h x w, every element
 * written) = dy at each window's maximum and 0 elsewhere. The forward pool
 * reads each element as x + *bias (bias not NULL), then ReLU'd (relu != 0),
 * with the same roundings as adding the bias and applying dl_act_inplace
 * first. Defined in pool.c. */
void dl_maxpool2x2_plane(const float *x, int h, int w, const float *bias, int relu, float *y,
                         uint8_t *arg);
void dl_maxpool2x2_scatter(const float *dy, const uint8_t *arg, int h, int w, float *dx);
/* Initialise parameters and state from a seeded generator (same seed, same
 * values): host_params and host_state, which on a GPU dl_model_to_device
 * then copies. */
void dl_model_init_params(dl_model_t *m, uint64_t seed);
/* Forward n samples x (n x in_size) in the mode of m->ctx; returns the
 * n x out_size output, or NULL with err set if a collective failed. */
const float *dl_model_forward(dl_model_t *m, const float *x, int n, dl_err_t *err);
/* Backward from dout (n x out_size) after dl_model_forward on the same batch.
 * Overwrites m->grads; the last layer's gradients are ready first. n >= 1. */
int dl_model_backward(dl_model_t *m, const float *dout, int n, dl_err_t *err);
/* Forward floating-point operations per sample; a training step is about 3x. */
int64_t dl_model_forward_flops(const dl_model_t *m);
/* Floating-point operations per sample of one training step (forward + backward),
 * counted as 3x the forward of every layer but the first, whose input gradient
 * is not computed (2x). */
int64_t dl_model_train_flops(const dl_model_t *m);

/* One parameter or state tensor of a model, as checkpoints name and store
 * it. dims are PyTorch's layout: dense weight (out, in); conv weight
 * (filters, c/groups, k, k); bias (n); batch-norm weight, bias, running_mean
 * and running_var (c). */
typedef struct dl_tensor_info {
    char name[64]; /* "<layer>.<kind>", unique in the model */
    int ndim;
    int64_t dims[4];
    int64_t offset; /* into m->params (trainable) or m->state (is_state) */
    int64_t count;  /* product of dims */
    int is_state;   /* 1: batch-norm running statistics (m->state) */
} dl_tensor_info_t;

/* Every parameter and state tensor of m, interleaved per layer in layer
 * order: a layer's weight, bias, running_mean, running_var (those it has).
 * So the trainable tensors alone come in m->params order (the order of
 * torch's model.parameters() for the equivalent nn.Sequential) and the state
 * tensors alone in m->state order; together they tile both buffers exactly.
 * <layer> is the layer's section name from the job file if it has one, else
 * "layerNN", NN its 0-based index in m->layers (the expanded layer list,
 * where a section with a separate activation takes two places), zero-padded
 * to 2 digits or as many as the largest index needs. *out is malloc'd (NULL
 * when *n is 0); a name given twice is DL_EINPUT naming it. */
int dl_model_tensors(const dl_model_t *m, dl_tensor_info_t **out, int *n, dl_err_t *err);

/* Hash of the parameter bytes, for comparing runs exactly (of host_params:
 * on the GPU, after dl_model_to_host). */
uint64_t dl_model_digest(const dl_model_t *m);
void dl_model_free(dl_model_t *m);

const char *dl_act_name(dl_act_t a);
const char *dl_layer_type_name(dl_layer_type_t t);

/* Softmax cross-entropy over n rows of k logits, with label smoothing
 * (targets (1 - smoothing) * onehot + smoothing / k, as torch's
 * cross_entropy). Returns the summed loss; *correct (if not NULL) gets the
 * number of rows whose arg-max is the label. If dlogits is not NULL it
 * receives scale * (softmax - target). */
double dl_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float smoothing,
                       float scale, float *dlogits, int64_t *correct);

/* Fill w (count floats) for a layer with the given fan-in and fan-out: Kaiming
 * normal (variance 2 / fan_in) when init is KAIMING, or AUTO before a
 * ReLU-like activation; Xavier uniform (limit sqrt(6 / (fan_in + fan_out)))
 * otherwise. */
void dl_init_weights(dl_init_t init, dl_act_t act, float *w, int64_t count, int64_t fan_in,
                     int64_t fan_out, dl_rng_t *rng);

/* Element-wise activation helpers shared by the activation layer and any
 * layer that fuses one: y = f(x); dx = dy * f'(x) computed from x and y
 * (x may be NULL for the activations dl_act_fusable accepts, whose
 * derivative follows from y alone); dl_act_inplace: v = f(v). */
void dl_act_forward(dl_act_t a, const float *x, float *y, int64_t len);
void dl_act_backward(dl_act_t a, const float *x, const float *y, const float *dy, float *dx,
                     int64_t len);
void dl_act_inplace(dl_act_t a, float *v, int64_t len);
int dl_act_fusable(dl_act_t a);

#endif
