/* Optimisers and learning-rate schedules against their definitions
 * (torch.optim.SGD and torch.optim.AdamW), computed here in double. */
#include <math.h>

#include "check.h"
#include "runtime/optim.h"

static void test_sgd(int nesterov)
{
    dl_optim_cfg_t cfg = {
        .type = DL_OPT_SGD, .momentum = 0.9, .nesterov = nesterov, .weight_decay = 0.01};
    dl_optim_t o;
    dl_err_t err = {0};
    CHECK(dl_optim_init(&o, &cfg, 2, &err) == 0);
    float p[2] = {1.0f, -2.0f};
    const float g[3][2] = {{0.5f, 0.25f}, {-1.0f, 0.5f}, {0.125f, 2.0f}};
    const double lr[3] = {0.1, 0.05, 0.2};
    double ref[2] = {1.0, -2.0}, buf[2] = {0, 0};
    for (int s = 0; s < 3; s++) {
        dl_optim_step(&o, p, g[s], lr[s]);
        for (int i = 0; i < 2; i++) {
            double gi = g[s][i] + 0.01 * ref[i];
            buf[i] = s == 0 ? gi : 0.9 * buf[i] + gi; /* PyTorch: buf = g on the first step */
            ref[i] -= lr[s] * (nesterov ? gi + 0.9 * buf[i] : buf[i]);
        }
    }
    CHECK_CLOSE(p[0], ref[0], 1e-6, 1e-7);
    CHECK_CLOSE(p[1], ref[1], 1e-6, 1e-7);
    dl_optim_free(&o);

    /* Without momentum: plain gradient descent with L2. */
    dl_optim_cfg_t plain = {.type = DL_OPT_SGD, .weight_decay = 0.5};
    CHECK(dl_optim_init(&o, &plain, 1, &err) == 0);
    float q = 2.0f, gq = 1.0f;
    dl_optim_step(&o, &q, &gq, 0.1);
    CHECK_CLOSE(q, 2.0 - 0.1 * (1.0 + 0.5 * 2.0), 1e-7, 0);
    dl_optim_free(&o);
}

static void test_adamw(void)
{
    dl_optim_cfg_t cfg = {
        .type = DL_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    dl_optim_t o;
    dl_err_t err = {0};
    CHECK(dl_optim_init(&o, &cfg, 2, &err) == 0);
    float p[2] = {0.5f, -1.5f};
    const float g[3][2] = {{0.3f, -0.2f}, {0.1f, 0.4f}, {-0.5f, 0.05f}};
    double ref[2] = {0.5, -1.5}, m[2] = {0, 0}, v[2] = {0, 0}, lr = 0.01;
    for (int s = 0; s < 3; s++) {
        dl_optim_step(&o, p, g[s], lr);
        for (int i = 0; i < 2; i++) {
            ref[i] *= 1.0 - lr * 0.1;
            m[i] = 0.9 * m[i] + 0.1 * g[s][i];
            v[i] = 0.999 * v[i] + 0.001 * g[s][i] * g[s][i];
            double mh = m[i] / (1 - pow(0.9, s + 1)), vh = v[i] / (1 - pow(0.999, s + 1));
            ref[i] -= lr * mh / (sqrt(vh) + 1e-8);
        }
    }
    CHECK_CLOSE(p[0], ref[0], 1e-6, 1e-7);
    CHECK_CLOSE(p[1], ref[1], 1e-6, 1e-7);
    dl_optim_free(&o);
}

static void test_schedules(void)
{
    dl_sched_cfg_t s = {.type = DL_SCHED_CONSTANT,
                        .warmup_steps = 10,
                        .step_size = 20,
                        .gamma = 0.5,
                        .min_lr = 0.01};
    /* Warm-up: linear from lr/10 to lr over 10 steps, for every type. */
    for (int t = DL_SCHED_CONSTANT; t <= DL_SCHED_LINEAR; t++) {
        s.type = t;
        CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 0, 110), 0.1, 1e-12, 0);
        CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 4, 110), 0.5, 1e-12, 0);
        CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 10, 110), t == DL_SCHED_STEP ? 1.0 : 1.0, 1e-12, 0);
    }
    s.type = DL_SCHED_CONSTANT;
    CHECK_CLOSE(dl_schedule_lr(&s, 0.3, 109, 110), 0.3, 1e-12, 0);
    s.type = DL_SCHED_COSINE; /* from lr after warm-up to min_lr at the last step */
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 109, 110), 0.01, 1e-12, 0);
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 10 + 99 / 2.0 > 59 ? 59 : 59, 110),
                0.01 + 0.99 * 0.5 * (1 + cos(3.14159265358979 * 49.0 / 99.0)), 1e-9, 0);
    s.type = DL_SCHED_LINEAR;
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 109, 110), 0.01, 1e-12, 0);
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 43, 110), 1.0 + (0.01 - 1.0) * 33.0 / 99.0, 1e-12, 0);
    s.type = DL_SCHED_STEP; /* lr * gamma^floor((step - warmup) / step_size) */
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 29, 110), 1.0, 1e-12, 0);
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 30, 110), 0.5, 1e-12, 0);
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 75, 110), 0.125, 1e-12, 0);
    s.warmup_steps = 0;
    s.type = DL_SCHED_COSINE;
    CHECK_CLOSE(dl_schedule_lr(&s, 1.0, 0, 110), 1.0, 1e-12, 0);
}

/* The expected rates are those of torch.optim.lr_scheduler.ReduceLROnPlateau
 * (PyTorch 1.13, threshold_mode 'rel'; gamma is its factor) for the same
 * metrics and settings, printed once by tests/reference/plateau_rates.py
 * (/usr/bin/python3 tests/reference/plateau_rates.py) and copied here. */

/* test loss, patience 2; a NaN is never an improvement; ties within threshold */
static const double m_loss[] = {1.0,  0.9, 0.95, 0.9, 0.89999, 0.85, 0.86, 0.87,
                                0.88, 0.9, 0.91, NAN, 0.84,    0.9,  0.9,  0.9};
static const double r_loss[] = {0.1,  0.1,  0.1,  0.1,  0.01, 0.01, 0.01, 0.01,
                                1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-5};
/* test accuracy with cooldown 2 and the floor min_lr */
static const double m_acc[] = {0.5,  0.6,  0.605, 0.61, 0.7,  0.69, 0.69, 0.69, 0.69,
                               0.69, 0.69, 0.69,  0.69, 0.69, 0.8,  0.8,  0.8,  0.8,
                               0.8,  0.8,  0.8,   0.8,  0.8,  0.8,  0.8,  0.8};
static const double r_acc[] = {0.2,   0.2,   0.2,    0.2,    0.2,    0.2,    0.1,  0.1,   0.1,
                               0.1,   0.05,  0.05,   0.05,   0.05,   0.05,   0.05, 0.025, 0.025,
                               0.025, 0.025, 0.0125, 0.0125, 0.0125, 0.0125, 0.01, 0.01};
/* a threshold so large that nothing improves (as in tests/test_lr.sh) */
static const double m_none[] = {2.0, 1.5, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1};
static const double r_none[] = {0.05, 0.005, 0.005, 5e-4, 5e-4, 1e-4, 1e-4, 1e-4};
/* near PyTorch's eps (1e-8): a smaller cut is not made */
static const double m_eps[] = {1, 1, 1, 1};
static const double r_eps[] = {1.5e-8, 1.5e-9, 1.5e-9, 1.5e-9};

typedef struct plateau_case {
    dl_sched_cfg_t s; /* plateau_metric, gamma, patience, threshold, cooldown, min_lr */
    double lr;
    const double *metrics, *want;
    int n;
} plateau_case_t;

#define PLATEAU(metric_, lr_, gamma_, patience_, threshold_, cooldown_, min_lr_, m, r)             \
    {                                                                                              \
        {.type = DL_SCHED_PLATEAU,                                                                 \
         .plateau_metric = metric_,                                                                \
         .gamma = gamma_,                                                                          \
         .patience = patience_,                                                                    \
         .threshold = threshold_,                                                                  \
         .cooldown = cooldown_,                                                                    \
         .min_lr = min_lr_},                                                                       \
            lr_, m, r, (int)(sizeof m / sizeof m[0])                                               \
    }

static const plateau_case_t plateau_cases[] = {
    PLATEAU(DL_PLATEAU_TEST_LOSS, 0.1, 0.1, 2, 1e-4, 0, 0.0, m_loss, r_loss),
    PLATEAU(DL_PLATEAU_TEST_ACCURACY, 0.2, 0.5, 1, 0.01, 2, 0.01, m_acc, r_acc),
    PLATEAU(DL_PLATEAU_TEST_LOSS, 0.05, 0.1, 1, 10.0, 0, 1e-4, m_none, r_none),
    PLATEAU(DL_PLATEAU_TEST_LOSS, 1.5e-8, 0.1, 0, 1e-4, 0, 0.0, m_eps, r_eps),
};

static void test_plateau(void)
{
    for (size_t c = 0; c < sizeof plateau_cases / sizeof plateau_cases[0]; c++) {
        const plateau_case_t *pc = &plateau_cases[c];
        dl_plateau_t p;
        dl_plateau_init(&p, &pc->s);
        double rate = pc->lr;
        for (int i = 0; i < pc->n; i++) {
            int cut = dl_plateau_update(&p, &pc->s, pc->lr, pc->metrics[i]);
            double now = pc->lr * p.factor;
            CHECK(cut == (now < rate)); /* 1 exactly when the rate went down */
            CHECK_CLOSE(now, pc->want[i], 1e-12, 0);
            rate = now;
        }
    }
    /* After warm-up the plateau schedule is constant; the factor multiplies it. */
    dl_sched_cfg_t s = {.type = DL_SCHED_PLATEAU, .warmup_steps = 4};
    CHECK_CLOSE(dl_schedule_lr(&s, 0.4, 1, 100), 0.2, 1e-12, 0);
    CHECK_CLOSE(dl_schedule_lr(&s, 0.4, 50, 100), 0.4, 1e-12, 0);
}

int main(void)
{
    test_sgd(0);
    test_sgd(1);
    test_adamw();
    test_schedules();
    test_plateau();
    return CHECK_DONE();
}
