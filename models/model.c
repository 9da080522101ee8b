/* A model: layers applied in order over one parameter buffer, one gradient
 * buffer and one state buffer; see model.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* The one table of layer types. A new layer type adds its ops here. */
static const dl_layer_ops_t *const layer_table[DL_LAYER_NTYPES] = {
    [DL_LAYER_DENSE] = &dl_dense_ops,     [DL_LAYER_ACTIVATION] = &dl_activation_ops,
    [DL_LAYER_CONV] = &dl_conv_ops,       [DL_LAYER_MAXPOOL] = &dl_maxpool_ops,
    [DL_LAYER_AVGPOOL] = &dl_avgpool_ops, [DL_LAYER_BATCHNORM] = &dl_batchnorm_ops,
    [DL_LAYER_DROPOUT] = &dl_dropout_ops, [DL_LAYER_SHORTCUT] = &dl_shortcut_ops,
    [DL_LAYER_FLATTEN] = &dl_flatten_ops,
};

const char *dl_layer_type_name(dl_layer_type_t t)
{
    static const char *const names[DL_LAYER_NTYPES] = {
        "dense",     "activation", "conv",     "maxpool", "avgpool",
        "batchnorm", "dropout",    "shortcut", "flatten",
    };
    return t < DL_LAYER_NTYPES ? names[t] : "?";
}

void dl_init_weights(dl_init_t init, dl_act_t act, float *w, int64_t count, int64_t fan_in,
                     int64_t fan_out, dl_rng_t *rng)
{
    if (init == DL_INIT_AUTO)
        init = act == DL_ACT_RELU || act == DL_ACT_LEAKY || act == DL_ACT_GELU ? DL_INIT_KAIMING
                                                                               : DL_INIT_XAVIER;
    if (init == DL_INIT_KAIMING) {
        double sd = sqrt(2.0 / (double)fan_in);
        for (int64_t i = 0; i < count; i++)
            w[i] = (float)(sd * dl_rng_normal(rng));
    } else {
        double a = sqrt(6.0 / (double)(fan_in + fan_out));
        for (int64_t i = 0; i < count; i++)
            w[i] = (float)(a * (2.0 * dl_rng_uniform(rng) - 1.0));
    }
}

/* Whether a section's activation becomes a layer of its own. A convolution
 * applies its activation itself (on each block of output while it is in
 * cache) when the derivative follows from the output. */
static int has_activation(const dl_layer_spec_t *s)
{
    if (s->act == DL_ACT_NONE)
        return 0;
    if (s->type == DL_LAYER_CONV)
        return !dl_act_fusable(s->act);
    return s->type == DL_LAYER_DENSE || s->type == DL_LAYER_SHORTCUT;
}

/* Expand sections into layers: a section with an activation becomes the
 * layer followed by an activation layer. Returns the layer count; fills
 * out and section_layer when they are not NULL. */
static int expand_specs(const dl_layer_spec_t *specs, int n_specs, dl_layer_t *out,
                        int *section_layer)
{
    int n = 0;
    for (int i = 0; i < n_specs; i++) {
        if (out)
            out[n] = (dl_layer_t){.ops = layer_table[specs[i].type], .spec = specs[i]};
        n++;
        if (has_activation(&specs[i])) {
            if (out) {
                dl_layer_spec_t a = {
                    .type = DL_LAYER_ACTIVATION, .act = specs[i].act, .line = specs[i].line};
                out[n] = (dl_layer_t){.ops = layer_table[DL_LAYER_ACTIVATION], .spec = a};
            }
            n++;
        }
        if (section_layer)
            section_layer[i] = n - 1;
    }
    return n;
}

static int64_t shape_size(dl_shape_t s)
{
    return (int64_t)s.c * s.h * s.w;
}

/* Walk the layers in order, each taking the previous one's output shape. */
static int set_shapes(dl_model_t *m, dl_err_t *err)
{
    dl_shape_t shape = m->in_shape;
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        l->index = i;
        l->ctx = &m->ctx;
        l->in = shape;
        l->in_size = shape_size(shape);
        if (l->spec.type == DL_LAYER_SHORTCUT) {
            int from = l->spec.from;
            if (from < 0 || from >= m->n_sections || m->section_layer[from] >= i)
                return DL_ERR(err, DL_EINPUT,
                              "line %d: [shortcut] from must name an earlier layer section",
                              l->spec.line);
            l->src = m->section_layer[from];
            l->aux_in = m->layers[l->src].out;
        }
        int rc = l->ops->setup(l, err);
        if (rc)
            return rc;
        l->out_size = shape_size(l->out);
        if (l->out_size < 1)
            return DL_ERR(err, DL_EINPUT, "line %d: [%s] has an empty output", l->spec.line,
                          l->ops->name);
        shape = l->out;
    }
    m->out_shape = shape;
    m->out_size = shape_size(shape);
    return 0;
}

/* Trailing parameters of a layer that form its bias-like vector b. */
static int64_t bias_count(const dl_layer_t *l)
{
    switch (l->spec.type) {
    case DL_LAYER_DENSE: return l->spec.bias ? l->out_size : 0;
    case DL_LAYER_CONV: return l->spec.bias ? l->spec.filters : 0;
    case DL_LAYER_BATCHNORM: return l->in.c; /* beta after gamma */
    default: return 0;
    }
}

static int64_t n_state(const dl_layer_t *l)
{
    return l->ops->n_state ? l->ops->n_state(l) : 0;
}

/* Point each layer's parameter, gradient and state views into the buffers
 * (the model's, or on a GPU the host copies while init fills them). */
static void assign_views(dl_model_t *m, float *params, float *state)
{
    int64_t off = 0, soff = 0;
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        int64_t np = l->ops->n_params(l), nb = bias_count(l);
        if (np) {
            l->w = params + off;
            l->dw = m->grads + off;
            l->b = nb ? l->w + (np - nb) : NULL;
            l->db = nb ? l->dw + (np - nb) : NULL;
        }
        if (n_state(l))
            l->state = state + soff;
        off += np;
        soff += n_state(l);
    }
}

/* Let each convolution apply the max pool that follows it where it can
 * (dl_conv_pool_fusable), unless a shortcut also reads the convolution's
 * own output, which then is never stored. */
static void fuse_layers(dl_model_t *m)
{
    for (int i = 0; i + 1 < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        int read_elsewhere = 0;
        for (int j = i + 2; j < m->n_layers; j++)
            if (m->layers[j].spec.type == DL_LAYER_SHORTCUT && m->layers[j].src == i)
                read_elsewhere = 1;
        l->fuse_pool = !read_elsewhere && dl_conv_pool_fusable(l, &m->layers[i + 1]);
    }
}

/* Whether acts[i] and dacts[i] exist: not between a convolution and the pool it applies. */
static int stores_output(const dl_model_t *m, int i)
{
    return i == 0 || !m->layers[i - 1].fuse_pool;
}

/* n floats of zeros on the model's device. */
static float *dev_floats(const dl_model_t *m, int64_t n, dl_err_t *err)
{
    return dl_dev_alloc(m->dev, (size_t)n * sizeof(float), err);
}

static int alloc_buffers(dl_model_t *m, dl_err_t *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        m->n_params += m->layers[i].ops->n_params(&m->layers[i]);
        m->n_state += n_state(&m->layers[i]);
    }
    int64_t nb = m->max_batch;
    m->params = dev_floats(m, m->n_params, err);
    m->grads = dev_floats(m, m->n_params, err);
    m->state = dev_floats(m, m->n_state, err);
    m->acts = dl_calloc((size_t)m->n_layers + 1, sizeof(float *), err);
    m->dacts = dl_calloc((size_t)m->n_layers + 1, sizeof(float *), err);
    if (!m->params || !m->grads || !m->state || !m->acts || !m->dacts)
        return DL_ENOMEM;
    m->host_params = m->params;
    m->host_state = m->state;
    if (m->dev != DL_DEV_CPU) {
        m->host_params = dl_calloc((size_t)m->n_params + 1, sizeof(float), err);
        m->host_state = dl_calloc((size_t)m->n_state + 1, sizeof(float), err);
        if (!m->host_params || !m->host_state)
            return DL_ENOMEM;
    }
    m->dacts[0] = dev_floats(m, nb * m->in_size, err);
    if (!m->dacts[0])
        return DL_ENOMEM;
    for (int i = 1; i <= m->n_layers; i++) {
        if (!stores_output(m, i))
            continue;
        int64_t len = nb * m->layers[i - 1].out_size;
        m->acts[i] = dev_floats(m, len, err);
        /* dacts[n_layers] is the caller's gradient of the output */
        m->dacts[i] = i < m->n_layers ? dev_floats(m, len, err) : NULL;
        if (!m->acts[i] || (i < m->n_layers && !m->dacts[i]))
            return DL_ENOMEM;
    }
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        if (!stores_output(m, i)) /* a pool applied by its convolution needs no scratch */
            continue;
        int rc = l->run->alloc ? l->run->alloc(l, m->max_batch, err) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* Give each layer the implementation for the model's device. */
static int choose_run(dl_model_t *m, dl_err_t *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        l->run = l->ops;
        if (m->dev == DL_DEV_CPU)
            continue;
        l->run = dl_cuda_layer_ops(l->spec.type);
        l->cuda = m->cuda;
        if (!l->run)
            return DL_ERR(err, DL_EINPUT,
                          "line %d: [%s] has no CUDA implementation in this build; use "
                          "device = cpu",
                          l->spec.line, l->ops->name);
    }
    return 0;
}

int dl_model_build(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                   int max_batch, dl_err_t *err)
{
    return dl_model_build_flags(m, specs, n_specs, in, max_batch, 0, err);
}

int dl_model_build_flags(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                         int max_batch, int flags, dl_err_t *err)
{
    dl_model_opts_t o = {.flags = flags, .dev = DL_DEV_CPU};
    return dl_model_build_opts(m, specs, n_specs, in, max_batch, &o, err);
}

int dl_model_build_opts(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, dl_shape_t in,
                        int max_batch, const dl_model_opts_t *opts, dl_err_t *err)
{
    memset(m, 0, sizeof *m);
    m->dev = opts->dev;
    if (n_specs < 1)
        return DL_ERR(err, DL_EINPUT, "the model has no layers; add layer sections or a preset");
    m->in_shape = in;
    m->in_size = shape_size(in);
    m->max_batch = max_batch;
    m->n_sections = n_specs;
    m->n_layers = expand_specs(specs, n_specs, NULL, NULL);
    m->layers = dl_calloc((size_t)m->n_layers, sizeof *m->layers, err);
    m->section_layer = dl_calloc((size_t)n_specs, sizeof(int), err);
    if (!m->layers || !m->section_layer) {
        dl_model_free(m);
        return DL_ENOMEM;
    }
    expand_specs(specs, n_specs, m->layers, m->section_layer);
    int rc = set_shapes(m, err);
    /* The fused pool is a CPU cache optimisation. */
    if (!rc && !(opts->flags & DL_MODEL_NO_FUSION) && m->dev == DL_DEV_CPU)
        fuse_layers(m);
    if (!rc && m->dev != DL_DEV_CPU)
        rc = dl_cuda_create(&m->cuda, opts->tf32, err);
    if (!rc)
        rc = choose_run(m, err);
    if (!rc)
        rc = alloc_buffers(m, err);
    if (rc) {
        dl_model_free(m);
        return rc;
    }
    assign_views(m, m->params, m->state);
    return 0;
}

void dl_model_init_params(dl_model_t *m, uint64_t seed)
{
    dl_rng_t rng;
    assign_views(m, m->host_params, m->host_state);
    for (int i = 0; i < m->n_layers; i++) {
        /* One stream per layer: adding a layer does not change the others' draws. */
        dl_rng_seed(&rng, seed, (uint64_t)i + 1);
        m->layers[i].ops->init(&m->layers[i], &rng);
    }
    assign_views(m, m->params, m->state);
}

int dl_model_to_device(dl_model_t *m, dl_err_t *err)
{
    if (m->dev == DL_DEV_CPU)
        return 0;
    int rc = dl_dev_copy(m->cuda, m->params, m->host_params, (size_t)m->n_params * sizeof(float),
                         DL_COPY_H2D, err);
    if (!rc)
        rc = dl_dev_copy(m->cuda, m->state, m->host_state, (size_t)m->n_state * sizeof(float),
                         DL_COPY_H2D, err);
    return rc ? rc : dl_cuda_sync(m->cuda, err);
}

int dl_model_to_host(dl_model_t *m, dl_err_t *err)
{
    if (m->dev == DL_DEV_CPU)
        return 0;
    int rc = dl_dev_copy(m->cuda, m->host_params, m->params, (size_t)m->n_params * sizeof(float),
                         DL_COPY_D2H, err);
    return rc ? rc
              : dl_dev_copy(m->cuda, m->host_state, m->state, (size_t)m->n_state * sizeof(float),
                            DL_COPY_D2H, err);
}

/* The error of a failed pass of layer i: the layer's own message if it
 * left one (CUDA), else what failed. */
static int pass_failed(dl_model_t *m, int i, int rc, const char *pass, dl_err_t *err)
{
    dl_layer_t *l = &m->layers[i];
    if (l->err.code) {
        l->err.code = 0;
        DL_ERR(err, rc, "%s pass of layer %d (%s) failed: %s", pass, i + 1, l->ops->name,
               l->err.msg);
        if (err) { /* where it was detected */
            err->file = l->err.file;
            err->line = l->err.line;
        }
        return rc;
    }
    return DL_ERR(err, rc, "%s pass of layer %d (%s) failed", pass, i + 1, l->ops->name);
}

const float *dl_model_forward(dl_model_t *m, const float *x, int n, dl_err_t *err)
{
    m->acts[0] = (float *)x; /* read only: layers never write their input */
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        if (l->spec.type == DL_LAYER_SHORTCUT)
            l->aux_x = m->acts[l->src + 1];
        /* A convolution that applies the next layer's pool writes that layer's output. */
        int next = l->fuse_pool ? i + 2 : i + 1;
        int rc = l->run->forward(l, m->acts[i], m->acts[next], n);
        if (rc) {
            pass_failed(m, i, rc, "forward", err);
            return NULL;
        }
        i = next - 1;
    }
    return m->acts[m->n_layers];
}

/* A shortcut adds a layer's output a second time, so that output's gradient
 * gets the shortcut's contribution (aux_dx) added once the output's own
 * consumer, layer i, has written it. */
static int add_shortcut_grads(dl_model_t *m, int i, int n, dl_err_t *err)
{
    for (int j = i; j < m->n_layers; j++) {
        const dl_layer_t *s = &m->layers[j];
        if (s->spec.type != DL_LAYER_SHORTCUT || s->src + 1 != i)
            continue;
        float *restrict d = m->dacts[i];
        const float *restrict g = s->aux_dx;
        int64_t len = (int64_t)n * m->layers[i - 1].out_size;
        if (m->dev != DL_DEV_CPU) {
            int rc = dl_cuda_add(m->cuda, d, g, len, err);
            if (rc)
                return rc;
            continue;
        }
        for (int64_t k = 0; k < len; k++)
            d[k] += g[k];
    }
    return 0;
}

int dl_model_backward(dl_model_t *m, const float *dout, int n, dl_err_t *err)
{
    m->dacts[m->n_layers] = (float *)dout; /* read only */
    int64_t from = m->n_params;            /* grads[from..n_params) are final */
    for (int i = m->n_layers - 1; i >= 0; i--) {
        if (!stores_output(m, i)) /* a pool its convolution applies: done there */
            continue;
        dl_layer_t *l = &m->layers[i];
        /* The first layer's input gradient is rarely wanted: skip it then. */
        float *dx = i > 0 || m->input_grad ? m->dacts[i] : NULL;
        int next = l->fuse_pool ? i + 2 : i + 1;
        int rc = l->run->backward(l, m->acts[i], m->acts[next], m->dacts[next], dx, n);
        if (rc)
            return pass_failed(m, i, rc, "backward", err);
        if (i > 0 && (rc = add_shortcut_grads(m, i, n, err)) != 0)
            return rc;
        from -= l->ops->n_params(l);
        if (m->ctx.grads_ready && (rc = m->ctx.grads_ready(m->ctx.grads_arg, from)) != 0)
            return DL_ERR(err, rc, "passing on the gradients of layer %d (%s) failed", i + 1,
                          l->ops->name);
    }
    m->dacts[m->n_layers] = NULL;
    return 0;
}

int64_t dl_model_forward_flops(const dl_model_t *m)
{
    int64_t f = 0;
    for (int i = 0; i < m->n_layers; i++)
        f += m->layers[i].ops->flops(&m->layers[i]);
    return f;
}

int64_t dl_model_train_flops(const dl_model_t *m)
{
    int64_t f = 0;
    for (int i = 0; i < m->n_layers; i++)
        f += m->layers[i].ops->flops(&m->layers[i]) * (i > 0 ? 3 : 2);
    return f;
}

uint64_t dl_model_digest(const dl_model_t *m)
{
    return dl_fnv1a64(DL_FNV_INIT, m->host_params, (size_t)m->n_params * sizeof(float));
}

/* Append one tensor of layer l (prefix names it) to t[*n]. */
static void add_tensor(dl_tensor_info_t *t, int *n, const char *prefix, const char *kind,
                       int is_state, int64_t offset, int ndim, const int64_t *dims)
{
    dl_tensor_info_t *x = &t[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s.%s", prefix, kind);
    x->ndim = ndim;
    x->count = 1;
    for (int d = 0; d < ndim; d++) {
        x->dims[d] = dims[d];
        x->count *= dims[d];
    }
    x->offset = offset;
    x->is_state = is_state;
}

/* Tensors of one layer, appended to t; checks they cover its buffers. */
static int layer_tensors(const dl_model_t *m, const dl_layer_t *l, int width, dl_tensor_info_t *t,
                         int *n, dl_err_t *err)
{
    int64_t np = l->ops->n_params(l), ns = n_state(l);
    if (!np && !ns)
        return 0;
    char prefix[DL_NAME_MAX + 8];
    if (l->spec.name[0])
        snprintf(prefix, sizeof prefix, "%s", l->spec.name);
    else
        snprintf(prefix, sizeof prefix, "layer%0*d", width, l->index);
    int64_t woff = l->w - m->params, covered = 0, scovered = 0;
    if (l->spec.type == DL_LAYER_DENSE || l->spec.type == DL_LAYER_CONV) {
        const dl_layer_spec_t *s = &l->spec;
        int64_t wd[4] = {l->out_size, l->in_size, 0, 0}, bd[1] = {l->out_size};
        int ndim = 2;
        if (s->type == DL_LAYER_CONV) {
            wd[0] = s->filters, wd[1] = l->in.c / s->groups, wd[2] = wd[3] = s->size;
            bd[0] = s->filters;
            ndim = 4;
        }
        add_tensor(t, n, prefix, "weight", 0, woff, ndim, wd);
        covered = t[*n - 1].count;
        if (l->b) {
            add_tensor(t, n, prefix, "bias", 0, l->b - m->params, 1, bd);
            covered += bd[0];
        }
    } else if (l->spec.type == DL_LAYER_BATCHNORM) {
        int64_t c[1] = {l->in.c}, soff = l->state - m->state;
        add_tensor(t, n, prefix, "weight", 0, woff, 1, c);
        add_tensor(t, n, prefix, "bias", 0, l->b - m->params, 1, c);
        add_tensor(t, n, prefix, "running_mean", 1, soff, 1, c);
        add_tensor(t, n, prefix, "running_var", 1, soff + c[0], 1, c);
        covered = scovered = 2 * c[0];
    }
    /* A new layer type with parameters must say here how they are laid out. */
    if (covered != np || scovered != ns)
        return DL_ERR(err, DL_EINTERNAL,
                      "layer %d (%s) has %lld parameters and %lld state values but its tensor "
                      "list covers %lld and %lld",
                      l->index, l->ops->name, (long long)np, (long long)ns, (long long)covered,
                      (long long)scovered);
    return 0;
}

int dl_model_tensors(const dl_model_t *m, dl_tensor_info_t **out, int *n, dl_err_t *err)
{
    *out = NULL;
    *n = 0;
    int width = 2;
    for (int k = m->n_layers - 1; k >= 100; k /= 10)
        width++;
    dl_tensor_info_t *t = dl_calloc((size_t)m->n_layers * 4 + 1, sizeof *t, err);
    if (!t)
        return DL_ENOMEM;
    int count = 0, rc = 0;
    for (int i = 0; !rc && i < m->n_layers; i++)
        rc = layer_tensors(m, &m->layers[i], width, t, &count, err);
    /* Job files reject duplicate section names, but "layer07" may be both a
     * section's name and another layer's default name. */
    for (int i = 0; !rc && i < count; i++)
        for (int j = 0; !rc && j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                rc = DL_ERR(err, DL_EINPUT,
                            "tensor name %s is used twice in the model (a layer section's name "
                            "equals another layer's default name layerNN); rename the section",
                            t[i].name);
    if (rc || !count) {
        free(t);
        return rc;
    }
    *out = t;
    *n = count;
    return 0;
}

void dl_model_free(dl_model_t *m)
{
    for (int i = 0; m->layers && i < m->n_layers; i++)
        if (m->layers[i].run && m->layers[i].run->release)
            m->layers[i].run->release(&m->layers[i]);
    if (m->acts)
        for (int i = 1; i <= m->n_layers; i++)
            dl_dev_free(m->dev, m->acts[i]);
    if (m->dacts)
        for (int i = 0; i < m->n_layers; i++)
            dl_dev_free(m->dev, m->dacts[i]);
    if (m->host_params != m->params)
        free(m->host_params);
    if (m->host_state != m->state)
        free(m->host_state);
    free(m->acts);
    free(m->dacts);
    dl_dev_free(m->dev, m->params);
    dl_dev_free(m->dev, m->grads);
    dl_dev_free(m->dev, m->state);
    dl_cuda_destroy(m->cuda);
    free(m->layers);
    free(m->section_layer);
    memset(m, 0, sizeof *m);
}
