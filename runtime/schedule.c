/* Learning-rate schedules; see dl_schedule_lr in optim.h. */
#include <math.h>

#include "optim.h"

double dl_schedule_lr(const dl_sched_cfg_t *s, double base_lr, int64_t step, int64_t total_steps)
{
    if (step < s->warmup_steps)
        return base_lr * (double)(step + 1) / (double)s->warmup_steps;
    int64_t after = step - s->warmup_steps;
    int64_t span = total_steps - s->warmup_steps - 1; /* the last step reaches min_lr */
    double t = span > 0 ? (double)after / (double)span : 1.0;
    if (t > 1.0)
        t = 1.0;
    switch (s->type) {
    case DL_SCHED_STEP: return base_lr * pow(s->gamma, (double)(after / s->step_size));
    case DL_SCHED_COSINE:
        return s->min_lr + (base_lr - s->min_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * t));
    case DL_SCHED_LINEAR: return base_lr + (s->min_lr - base_lr) * t;
    default: return base_lr;
    }
}

void dl_plateau_init(dl_plateau_t *p, const dl_sched_cfg_t *s)
{
    *p = (dl_plateau_t){.factor = 1.0,
                        .best =
                            s->plateau_metric == DL_PLATEAU_TEST_ACCURACY ? -INFINITY : INFINITY};
}

/* The steps of ReduceLROnPlateau.step() in PyTorch 1.13, in its order: an
 * evaluation in cooldown never counts as bad, and a cut that the floor
 * makes smaller than 1e-8 (PyTorch's eps) leaves the rate alone but still
 * resets the counters. */
int dl_plateau_update(dl_plateau_t *p, const dl_sched_cfg_t *s, double base_lr, double metric)
{
    int better = s->plateau_metric == DL_PLATEAU_TEST_ACCURACY
                     ? metric > p->best * (1.0 + s->threshold)
                     : metric < p->best * (1.0 - s->threshold);
    if (better) {
        p->best = metric;
        p->num_bad = 0;
    } else {
        p->num_bad++;
    }
    if (p->cooldown_left > 0) {
        p->cooldown_left--;
        p->num_bad = 0;
    }
    if (p->num_bad <= s->patience)
        return 0;
    p->cooldown_left = s->cooldown;
    p->num_bad = 0;
    double old_lr = base_lr * p->factor, new_lr = fmax(old_lr * s->gamma, s->min_lr);
    if (!(old_lr - new_lr > 1e-8))
        return 0;
    p->factor = new_lr / base_lr;
    return 1;
}
