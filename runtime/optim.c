/* Optimisers; see optim.h. Updates follow PyTorch's definitions so results
 * can be compared with it step for step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

int dl_optim_init(dl_optim_t *o, const dl_optim_cfg_t *cfg, int64_t n_params, dl_err_t *err)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = n_params;
    o->m = dl_calloc((size_t)n_params, sizeof(float), err);
    if (!o->m)
        return DL_ENOMEM;
    if (cfg->type == DL_OPT_ADAMW) {
        o->v = dl_calloc((size_t)n_params, sizeof(float), err);
        if (!o->v) {
            dl_optim_free(o);
            return DL_ENOMEM;
        }
    }
    return 0;
}

/* buf = mu*buf + g'; p -= lr * (nesterov ? g' + mu*buf : buf), g' = g + wd*p.
 * With a zero buffer the first step gives buf = g', as PyTorch's does. */
static void sgd_step(dl_optim_t *o, float *restrict p, const float *restrict g, float lr)
{
    const float mu = (float)o->cfg.momentum, wd = (float)o->cfg.weight_decay;
    float *restrict buf = o->m;
    if (mu == 0.0f) {
        for (int64_t i = 0; i < o->n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    if (o->cfg.nesterov) {
        for (int64_t i = 0; i < o->n; i++) {
            float gi = g[i] + wd * p[i];
            buf[i] = mu * buf[i] + gi;
            p[i] -= lr * (gi + mu * buf[i]);
        }
    } else {
        for (int64_t i = 0; i < o->n; i++) {
            float gi = g[i] + wd * p[i];
            buf[i] = mu * buf[i] + gi;
            p[i] -= lr * buf[i];
        }
    }
}

/* Decoupled weight decay (Loshchilov and Hutter), bias-corrected moments. */
static void adamw_step(dl_optim_t *o, float *restrict p, const float *restrict g, float lr)
{
    float *restrict m = o->m, *restrict v = o->v;
    const float b1 = (float)o->cfg.beta1, b2 = (float)o->cfg.beta2, eps = (float)o->cfg.eps;
    const float decay = 1.0f - lr * (float)o->cfg.weight_decay;
    const double t = (double)o->t;
    const float c1 = (float)(1.0 - pow(o->cfg.beta1, t));
    const float c2 = (float)sqrt(1.0 - pow(o->cfg.beta2, t));
    const float step = lr / c1;
    for (int64_t i = 0; i < o->n; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= step * m[i] / (sqrtf(v[i]) / c2 + eps);
    }
}

void dl_optim_step(dl_optim_t *o, float *params, const float *grads, double lr)
{
    o->t++;
    if (o->cfg.type == DL_OPT_ADAMW)
        adamw_step(o, params, grads, (float)lr);
    else
        sgd_step(o, params, grads, (float)lr);
}

void dl_optim_free(dl_optim_t *o)
{
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
    if (o->cuda) {
        dl_dev_free(DL_DEV_CUDA, o->dm);
        dl_dev_free(DL_DEV_CUDA, o->dv);
        o->dm = o->dv = NULL;
        o->cuda = NULL;
    }
}

int dl_optim_use_cuda(dl_optim_t *o, dl_cuda_t *g, dl_err_t *err)
{
    size_t bytes = (size_t)o->n * sizeof(float);
    o->cuda = g;
    o->dm = dl_dev_alloc(DL_DEV_CUDA, bytes, err);
    if (!o->dm)
        return err ? err->code : DL_ENOMEM;
    if (o->v && !(o->dv = dl_dev_alloc(DL_DEV_CUDA, bytes, err)))
        return err ? err->code : DL_ENOMEM;
    return 0;
}

int dl_optim_step_dev(dl_optim_t *o, float *params, const float *grads, double lr, dl_err_t *err)
{
    if (!o->cuda) {
        dl_optim_step(o, params, grads, lr);
        return 0;
    }
    o->t++;
    const dl_optim_cfg_t *c = &o->cfg;
    if (c->type != DL_OPT_ADAMW)
        return dl_cuda_sgd_update(o->cuda, params, grads, o->dm, o->n, (float)lr,
                                  (float)c->momentum, (float)c->weight_decay, c->nesterov, err);
    const double t = (double)o->t;
    return dl_cuda_adamw_update(o->cuda, params, grads, o->dm, o->dv, o->n, (float)lr,
                                (float)c->beta1, (float)c->beta2, (float)c->eps,
                                (float)c->weight_decay, (float)(1.0 - pow(c->beta1, t)),
                                (float)sqrt(1.0 - pow(c->beta2, t)), err);
}

/* Copy both buffers one way: to_host 1 = GPU to m and v. */
static int copy_state(dl_optim_t *o, int to_host, dl_err_t *err)
{
    if (!o->cuda)
        return 0;
    size_t bytes = (size_t)o->n * sizeof(float);
    dl_copy_t kind = to_host ? DL_COPY_D2H : DL_COPY_H2D;
    int rc = to_host ? dl_dev_copy(o->cuda, o->m, o->dm, bytes, kind, err)
                     : dl_dev_copy(o->cuda, o->dm, o->m, bytes, kind, err);
    if (!rc && o->v)
        rc = to_host ? dl_dev_copy(o->cuda, o->v, o->dv, bytes, kind, err)
                     : dl_dev_copy(o->cuda, o->dv, o->v, bytes, kind, err);
    return rc;
}

int dl_optim_to_host(dl_optim_t *o, dl_err_t *err)
{
    return copy_state(o, 1, err);
}

int dl_optim_to_device(dl_optim_t *o, dl_err_t *err)
{
    return copy_state(o, 0, err);
}
