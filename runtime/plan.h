/* What a job will do, worked out from the configuration, the data and the
 * number of ranks before any training: the checks that let a bad job stop
 * before it touches anything, and the table `dltrain --check` prints. */
#ifndef DL_PLAN_H
#define DL_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "../io/dataset.h"
#include "../io/sampler.h"
#include "config.h"

/* Evaluation reads the test set in chunks of this many samples. */
#define DL_EVAL_CHUNK 256
/* HDF5's buffers for one open file (metadata cache and sieve buffer), as
 * measured; counted in the data pipeline's memory. */
#define DL_H5_FILE_BYTES (256 * 1024)

typedef struct dl_plan {
    dl_dataset_info_t train, test;
    int world;
    int64_t batch;        /* per rank */
    int64_t global_batch; /* batch x world */
    int64_t steps_per_epoch;
    int64_t total_steps;
    double base_lr;      /* the peak rate: [optim] lr, scaled by the global batch with scale_lr */
    dl_shape_t in_shape; /* one sample */
    int64_t in_size;
    int64_t n_params, n_state;
    int64_t train_flops; /* per sample, forward + backward */
    int n_specs;
    dl_layer_spec_t *specs; /* the model's layer sections, classes filled in (owned) */
    /* The data pipeline: the training order (each rank sets its own rank)
     * and what it holds in memory on each rank, in bytes. */
    dl_sampler_cfg_t order;
    int64_t *shard_sizes; /* samples per training shard (owned; order.shard_sizes) */
    int64_t max_batch;    /* the largest read: a training batch or an evaluation chunk */
    int64_t order_bytes, prefetch_bytes, read_bytes, map_bytes; /* map: the files' mappings */
    int64_t data_bytes;                                         /* the sum of the four */
} dl_plan_t;

/* Open the datasets named in cfg and check that they, the model and the
 * batch sizes fit together for world ranks. The datasets are returned open
 * (either pointer may be NULL if the caller does not want it). */
int dl_plan_make(const dl_config_t *cfg, int world, dl_plan_t *plan, dl_dataset_t **train,
                 dl_dataset_t **test, dl_err_t *err);
/* Print the data, batches, steps and the layer table (output shape,
 * parameters and forward FLOPs per sample of every layer, with totals). */
int dl_plan_print(const dl_config_t *cfg, const dl_plan_t *plan, FILE *f, dl_err_t *err);
void dl_plan_free(dl_plan_t *plan);

/* The peak learning rate for a global batch: [optim] lr, or with
 * scale_lr = linear lr * global_batch / reference_batch (Goyal et al. 2017). */
double dl_plan_base_lr(const dl_config_t *cfg, int64_t global_batch);
/* How that rate comes about, for people: "lr 0.1" or
 * "lr 0.1 x 512/256 = 0.2 (scale_lr = linear)". */
void dl_plan_lr_text(const dl_config_t *cfg, int64_t global_batch, char *out, size_t size);

#endif
