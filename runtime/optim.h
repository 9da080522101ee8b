/* Optimisers over the flat parameter buffer: SGD (momentum, Nesterov, L2
 * weight decay, as torch.optim.SGD) and AdamW (as torch.optim.AdamW). */
#ifndef DL_OPTIM_H
#define DL_OPTIM_H

#include <stdint.h>

#include "../models/device.h"
#include "config.h"

typedef struct dl_optim {
    dl_optim_cfg_t cfg;
    int64_t n;
    int64_t t;    /* steps taken */
    float *m, *v; /* sgd: m = momentum buffer; adamw: first and second moments */
    /* On a GPU (dl_optim_use_cuda): the buffers there, with m and v their
     * host copies for checkpoints; NULL on the CPU. */
    dl_cuda_t *cuda;
    float *dm, *dv;
} dl_optim_t;

int dl_optim_init(dl_optim_t *o, const dl_optim_cfg_t *cfg, int64_t n_params, dl_err_t *err);
/* One update of params (n floats) from grads with learning rate lr. */
void dl_optim_step(dl_optim_t *o, float *params, const float *grads, double lr);
void dl_optim_free(dl_optim_t *o);
/* Keep the optimiser's buffers on g's GPU (zeroed, as m and v are); the
 * steps then take GPU parameters and gradients. */
int dl_optim_use_cuda(dl_optim_t *o, dl_cuda_t *g, dl_err_t *err);
/* dl_optim_step on either device (a GPU after dl_optim_use_cuda). */
int dl_optim_step_dev(dl_optim_t *o, float *params, const float *grads, double lr, dl_err_t *err);
/* Copy the GPU buffers to m and v (before a checkpoint), or back (after a
 * load); no-ops on the CPU. */
int dl_optim_to_host(dl_optim_t *o, dl_err_t *err);
int dl_optim_to_device(dl_optim_t *o, dl_err_t *err);

/* Learning rate for step (0-based) of total_steps under the schedule, with
 * linear warm-up from base_lr/warmup_steps to base_lr. */
double dl_schedule_lr(const dl_sched_cfg_t *s, double base_lr, int64_t step, int64_t total_steps);

/* The state of the plateau schedule, which works as PyTorch's
 * torch.optim.lr_scheduler.ReduceLROnPlateau (threshold_mode 'rel'): the
 * rate after warm-up is base_lr * factor. */
typedef struct dl_plateau {
    double factor;         /* 1 until the first cut */
    double best;           /* the best metric so far (+inf or -inf before any) */
    int64_t num_bad;       /* evaluations since the last improvement */
    int64_t cooldown_left; /* evaluations of cooldown left after a cut */
} dl_plateau_t;

/* The state before the first evaluation, for s->plateau_metric. */
void dl_plateau_init(dl_plateau_t *p, const dl_sched_cfg_t *s);
/* One evaluation's metric (test loss: lower is better; test accuracy:
 * higher is better). Updates the state and returns 1 if it lowered the
 * rate: after more than s->patience evaluations in a row without an
 * improvement by a factor s->threshold, the rate base_lr * factor is
 * multiplied by s->gamma, but not below s->min_lr. */
int dl_plateau_update(dl_plateau_t *p, const dl_sched_cfg_t *s, double base_lr, double metric);

#endif
