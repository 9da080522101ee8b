/* Optimisers over the flat parameter buffer: SGD (momentum, Nesterov, L2
 * weight decay, as torch.optim.SGD) and AdamW (as torch.optim.AdamW). */
#ifndef DL_OPTIM_H
#define DL_OPTIM_H

#include <stdint.h>

#include "config.h"

typedef struct dl_optim {
    dl_optim_cfg_t cfg;
    int64_t n;
    int64_t t;    /* steps taken */
    float *m, *v; /* sgd: m = momentum buffer; adamw: first and second moments */
} dl_optim_t;

int dl_optim_init(dl_optim_t *o, const dl_optim_cfg_t *cfg, int64_t n_params, dl_err_t *err);
/* One update of params (n floats) from grads with learning rate lr. */
void dl_optim_step(dl_optim_t *o, float *params, const float *grads, double lr);
void dl_optim_free(dl_optim_t *o);

/* Learning rate for step (0-based) of total_steps under the schedule, with
 * linear warm-up from base_lr/warmup_steps to base_lr. */
double dl_schedule_lr(const dl_sched_cfg_t *s, double base_lr, int64_t step, int64_t total_steps);

#endif
