/* The training loop: data, model, optimiser and collectives put together.
 * Every rank runs the same loop; rank 0 prints and writes the run directory. */
#ifndef DL_TRAIN_H
#define DL_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "../collectives/comm.h"
#include "../io/dataset.h"
#include "config.h"
#include "dist.h"

/* What a job will do, worked out from the configuration, the data and the
 * number of ranks before any training. */
typedef struct dl_plan {
    dl_dataset_info_t train, test;
    int world;
    int64_t batch;        /* per rank */
    int64_t global_batch; /* batch x world */
    int64_t steps_per_epoch;
    int64_t total_steps;
    int64_t in_size; /* features per sample */
    int64_t n_params;
    int64_t train_flops; /* per sample, forward + backward */
} dl_plan_t;

/* Open the datasets named in cfg and check that they, the model and the
 * batch sizes fit together for world ranks. The datasets are returned open
 * (either pointer may be NULL if the caller does not want it). */
int dl_plan_make(const dl_config_t *cfg, int world, dl_plan_t *plan, dl_dataset_t **train,
                 dl_dataset_t **test, dl_err_t *err);
void dl_plan_print(const dl_config_t *cfg, const dl_plan_t *plan, FILE *f);

/* Train as configured. Collective: every rank calls it. On failure every rank
 * returns the same status; err->msg is empty on ranks that should not print
 * (another rank reports the cause). */
int dl_train_run(const dl_config_t *cfg, dl_dist_t *dist, dl_comm_t *comm, dl_err_t *err);

#endif
