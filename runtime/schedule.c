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
