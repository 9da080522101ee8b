/* A model: layers applied in order over one parameter buffer and one gradient
 * buffer; see model.h. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* The one table of layer types. A new layer type adds its ops here. */
static const dl_layer_ops_t *const layer_table[DL_LAYER_NTYPES] = {
    [DL_LAYER_DENSE] = &dl_dense_ops,
    [DL_LAYER_ACTIVATION] = &dl_activation_ops,
};

/* Expand job-file specs into layers: a dense spec with an activation becomes
 * a dense layer followed by an activation layer. Returns the layer count. */
static int expand_specs(const dl_layer_spec_t *specs, int n_specs, dl_layer_t *out)
{
    int n = 0;
    for (int i = 0; i < n_specs; i++) {
        if (out)
            out[n] = (dl_layer_t){.ops = layer_table[specs[i].type], .spec = specs[i]};
        n++;
        if (specs[i].type == DL_LAYER_DENSE && specs[i].act != DL_ACT_NONE) {
            if (out) {
                dl_layer_spec_t a = {
                    .type = DL_LAYER_ACTIVATION, .act = specs[i].act, .line = specs[i].line};
                out[n] = (dl_layer_t){.ops = layer_table[DL_LAYER_ACTIVATION], .spec = a};
            }
            n++;
        }
    }
    return n;
}

static int set_shapes(dl_model_t *m, dl_err_t *err)
{
    int64_t size = m->in_size;
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        l->in_size = size;
        if (l->spec.type == DL_LAYER_DENSE) {
            if (l->spec.units < 1)
                return DL_ERR(err, DL_EINPUT, "line %d: [dense] units must be at least 1",
                              l->spec.line);
            l->out_size = l->spec.units;
        } else {
            l->out_size = size;
        }
        size = l->out_size;
    }
    m->out_size = size;
    return 0;
}

/* Point each layer's parameter and gradient views into the flat buffers. */
static void assign_views(dl_model_t *m)
{
    int64_t off = 0;
    for (int i = 0; i < m->n_layers; i++) {
        dl_layer_t *l = &m->layers[i];
        if (l->spec.type == DL_LAYER_DENSE) {
            int64_t nw = l->in_size * l->out_size;
            l->w = m->params + off;
            l->dw = m->grads + off;
            if (l->spec.bias) {
                l->b = m->params + off + nw;
                l->db = m->grads + off + nw;
            }
        }
        off += l->ops->n_params(l);
    }
}

int dl_model_build(dl_model_t *m, const dl_layer_spec_t *specs, int n_specs, int64_t in_size,
                   int max_batch, dl_err_t *err)
{
    memset(m, 0, sizeof *m);
    if (n_specs < 1)
        return DL_ERR(err, DL_EINPUT, "the model has no layers; add at least one [dense] section");
    m->in_size = in_size;
    m->max_batch = max_batch;
    m->n_layers = expand_specs(specs, n_specs, NULL);
    m->layers = dl_calloc((size_t)m->n_layers, sizeof *m->layers, err);
    if (!m->layers)
        return err->code;
    expand_specs(specs, n_specs, m->layers);
    int rc = set_shapes(m, err);
    if (rc)
        goto fail;

    int64_t widest = in_size;
    for (int i = 0; i < m->n_layers; i++) {
        m->n_params += m->layers[i].ops->n_params(&m->layers[i]);
        if (m->layers[i].out_size > widest)
            widest = m->layers[i].out_size;
    }
    rc = DL_ENOMEM;
    m->params = dl_calloc((size_t)m->n_params, sizeof(float), err);
    m->grads = dl_calloc((size_t)m->n_params, sizeof(float), err);
    m->acts = dl_calloc((size_t)m->n_layers + 1, sizeof(float *), err);
    if (!m->params || !m->grads || !m->acts)
        goto fail;
    for (int i = 1; i <= m->n_layers; i++) {
        m->acts[i] =
            dl_calloc((size_t)max_batch * (size_t)m->layers[i - 1].out_size, sizeof(float), err);
        if (!m->acts[i])
            goto fail;
    }
    for (int k = 0; k < 2; k++) {
        m->dbuf[k] = dl_calloc((size_t)max_batch * (size_t)widest, sizeof(float), err);
        if (!m->dbuf[k])
            goto fail;
    }
    assign_views(m);
    return 0;
fail:
    dl_model_free(m);
    return rc;
}

void dl_model_init_params(dl_model_t *m, uint64_t seed)
{
    dl_rng_t rng;
    for (int i = 0; i < m->n_layers; i++) {
        /* One stream per layer: adding a layer does not change the others' draws. */
        dl_rng_seed(&rng, seed, (uint64_t)i + 1);
        m->layers[i].ops->init(&m->layers[i], &rng);
    }
}

const float *dl_model_forward(dl_model_t *m, const float *x, int n)
{
    m->acts[0] = (float *)x; /* read only: layers never write their input */
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i].ops->forward(&m->layers[i], m->acts[i], m->acts[i + 1], n);
    return m->acts[m->n_layers];
}

void dl_model_backward(dl_model_t *m, const float *dout, int n)
{
    const float *dy = dout;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        /* The first layer's input gradient is never used: skip computing it. */
        float *dx = i > 0 ? m->dbuf[i & 1] : NULL;
        m->layers[i].ops->backward(&m->layers[i], m->acts[i], m->acts[i + 1], dy, dx, n);
        dy = dx;
    }
}

int64_t dl_model_train_flops(const dl_model_t *m)
{
    int64_t f = 0;
    for (int i = 0; i < m->n_layers; i++)
        f += m->layers[i].ops->flops(&m->layers[i], i > 0);
    return f;
}

uint64_t dl_model_digest(const dl_model_t *m)
{
    return dl_fnv1a64(DL_FNV_INIT, m->params, (size_t)m->n_params * sizeof(float));
}

void dl_model_free(dl_model_t *m)
{
    if (m->acts)
        for (int i = 1; i <= m->n_layers; i++)
            free(m->acts[i]);
    free(m->acts);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->params);
    free(m->grads);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
