/* dltrain job configuration: an INI job file parsed with inih into typed,
 * range-checked fields. Every accepted key is listed in one table in
 * config.c; an unknown section or key, a malformed or out-of-range value and a
 * missing required key are errors naming the file, the line and what is
 * accepted. Command-line overrides (section.key=value) take precedence. */
#ifndef DL_CONFIG_H
#define DL_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "../models/model.h"
#include "error.h"

#define DL_MAX_LAYERS 256
#define DL_PATH_MAX 1024
/* A dataset: a path, a glob, or a comma-separated list of shard paths. */
#define DL_SPEC_MAX 16384

typedef enum { DL_DEVICE_CPU, DL_DEVICE_CUDA, DL_DEVICE_AUTO } dl_device_t;
typedef enum { DL_OPT_SGD, DL_OPT_ADAMW } dl_opt_type_t;
typedef enum { DL_PROGRESS_AUTO, DL_PROGRESS_BAR, DL_PROGRESS_LINES } dl_progress_t;
typedef enum {
    DL_SCHED_CONSTANT,
    DL_SCHED_STEP,
    DL_SCHED_COSINE,
    DL_SCHED_LINEAR,
    DL_SCHED_PLATEAU
} dl_sched_type_t;
typedef enum { DL_PLATEAU_TEST_LOSS, DL_PLATEAU_TEST_ACCURACY } dl_plateau_metric_t;
typedef enum { DL_SCALE_LR_NONE, DL_SCALE_LR_LINEAR } dl_scale_lr_t;

typedef struct dl_optim_cfg {
    int type; /* dl_opt_type_t */
    double lr, momentum, weight_decay, beta1, beta2, eps;
    int nesterov;
    int scale_lr;            /* dl_scale_lr_t */
    int64_t reference_batch; /* scale_lr = linear: lr * global batch / reference_batch */
} dl_optim_cfg_t;

typedef struct dl_sched_cfg {
    int type; /* dl_sched_type_t */
    int64_t warmup_steps, step_size;
    double gamma, min_lr;
    /* plateau: cut by gamma after more than `patience` evaluations in a row
     * without a relative improvement of `threshold`, then wait `cooldown` */
    int plateau_metric; /* dl_plateau_metric_t */
    int64_t patience, cooldown;
    double threshold;
} dl_sched_cfg_t;

typedef struct dl_ckpt_cfg {
    char dir[DL_PATH_MAX]; /* "" = RUN_DIR/checkpoints */
    int64_t every_steps, keep_last, keep_every;
    double every_minutes;
    double timeout_s;         /* watchdog limit while rank 0 writes or reads; 0 = none */
    char resume[DL_PATH_MAX]; /* "auto", "never" or a path */
} dl_ckpt_cfg_t;

typedef struct dl_config {
    char path[DL_PATH_MAX]; /* the job file, for messages */
    /* [train] */
    int device;                /* dl_device_t */
    int tf32;                  /* GPU products may use TF32 tensor cores */
    int64_t epochs, max_steps; /* 0 = not set; training stops at whichever comes first */
    int64_t batch_size;        /* per rank; 0 = derive from global_batch_size */
    int64_t global_batch_size; /* 0 = batch_size x ranks */
    int64_t seed, threads, log_every, eval_every;
    int progress; /* dl_progress_t */
    char run_dir[DL_PATH_MAX];
    double label_smoothing;
    int64_t max_bad_steps;     /* non-finite steps in a row before a roll-back */
    double bad_step_lr_factor; /* learning-rate factor of each roll-back */
    double timeout_s;          /* watchdog: wait limit at a collective (s); 0 = off */
    double bucket_mb;          /* gradient all-reduce buckets (MiB); 0 = one call after backward */
    double first_bucket_mb;    /* the first bucket (MiB), at most bucket_mb */
    /* [data] */
    char train_data[DL_SPEC_MAX], test_data[DL_SPEC_MAX];
    int64_t prefetch;         /* batches read ahead by the I/O thread */
    int shuffle;              /* a seeded order per epoch (else file order) */
    int64_t shuffle_block;    /* 0 = one permutation; > 0 = stream order with these blocks */
    int64_t shuffle_buffer;   /* stream order: shuffle buffer, samples */
    int64_t memory_budget_mb; /* the data pipeline's memory per rank; 0 = no limit */
    int trace;                /* write each rank's sample indices per step */
    int64_t crop_padding;     /* augmentation: random crop after this much zero padding (0 = off) */
    int flip;                 /* augmentation: random horizontal flips */
    /* [model] */
    int preset; /* index into dl_preset_names; 0 = none (layer sections) */
    char init_from[DL_PATH_MAX];
    /* [optim], [schedule] */
    dl_optim_cfg_t optim;
    dl_sched_cfg_t sched;
    dl_ckpt_cfg_t ckpt; /* [checkpoint] */
    /* layer sections, in file order */
    int n_layers;
    dl_layer_spec_t layers[DL_MAX_LAYERS];
    /* provenance: where each key of the key table got its value (0 = default,
     * -1 = command line, otherwise the job-file line) */
    int origin[96];
} dl_config_t;

/* Parse job-file text (already read; path names it in messages) and apply
 * overrides "section.key=value". Returns 0 or DL_EINPUT with err->msg set. */
int dl_config_parse(dl_config_t *cfg, const char *path, const char *text, int n_overrides,
                    char *const *overrides, dl_err_t *err);

/* Read a whole file into a NUL-terminated buffer the caller frees. A missing
 * or unreadable job file is DL_EINPUT. */
int dl_config_read_file(const char *path, char **text, dl_err_t *err);

/* Print the fully resolved configuration as a job file, every key with its
 * value and where it came from. */
void dl_config_print(const dl_config_t *cfg, FILE *f);

/* List every accepted section and key with its type, default and meaning. */
void dl_config_print_keys(FILE *f);

/* Digest of the resolved configuration (stable across ranks and runs). */
uint64_t dl_config_digest(const dl_config_t *cfg);

#endif
