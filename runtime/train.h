/* The training loop: data, model, optimiser and collectives put together.
 * Every rank runs the same loop; rank 0 prints and writes the run directory. */
#ifndef DL_TRAIN_H
#define DL_TRAIN_H

#include "../collectives/comm.h"
#include "config.h"
#include "dist.h"
#include "plan.h"

/* Train as configured. Collective: every rank calls it. On failure every rank
 * returns the same status; err->msg is empty on ranks that should not print
 * (another rank reports the cause). */
int dl_train_run(const dl_config_t *cfg, const char *job_text, dl_dist_t *dist, dl_comm_t *comm,
                 dl_err_t *err);

/* dltrain --evaluate: load a checkpoint (ckpt_path, or NULL for the newest
 * that verifies in the job's checkpoint directory) into the job's model and
 * evaluate it on the test data over all ranks, with no training; rank 0
 * prints the result and writes RUN_DIR/evaluation.json and a row of
 * RUN_DIR/eval.csv. Collective, with the same error contract as
 * dl_train_run. */
int dl_train_evaluate(const dl_config_t *cfg, const char *ckpt_path, const dl_dist_t *dist,
                      dl_comm_t *comm, dl_err_t *err);

#endif
