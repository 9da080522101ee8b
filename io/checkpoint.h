/* Checkpoint files: everything a run needs to continue exactly where it
 * stopped, in one HDF5 file per checkpoint (docs/checkpoints.md).
 *
 * Layout of DIR/ckpt-SSSSSSSSSS.h5 (SSSSSSSSSS: the step, 10 digits):
 *   /                      attributes dltrain_schema = "checkpoint",
 *                          schema_version = 1, dltrain_version
 *   /model/<tensor>        float32 with the tensor's dims (PyTorch's layout),
 *                          one per dl_tensor_info_t; attributes trainable
 *                          (int32 0/1) and index (int32: position in the
 *                          model's tensor list)
 *   /optimizer/m, /v       float32 flat, n_params each; only those the
 *                          optimiser has
 *   /train                 attributes step, epoch, global_batch, world_size,
 *                          seed, config_digest, data_epoch, data_offset,
 *                          data_seed, opt_t, wall_ms (uint64 for the seed and
 *                          the digest, int64 otherwise)
 *   /train/schedule_state  float64[8]
 *   /job                   the job file text: one fixed-length string;
 *                          attribute config_digest
 *   /ranks/state           float32 [world_size, n_state]: every rank's own
 *                          state (batch-norm running statistics), rank after
 *                          rank; /model holds their average. Only in files
 *                          of models with state written with rank_state
 *                          (older files lack it)
 * Every dataset is chunked (chunks of at most 1 MiB) with HDF5's Fletcher32
 * filter, so reading a dataset checks its checksum; the file's metadata
 * (superblock, object headers, chunk indexes) is written in HDF5's newer
 * format, which carries its own checksums (HDF5 >= 1.10 reads it).
 *
 * HDF5 calls here may run on another thread than the data loader's: that
 * relies on a thread-safe HDF5 (Debian's libhdf5 is built thread-safe; it
 * serialises calls with one lock). Each function turns HDF5's automatic
 * error printing off for its own thread; failures become dl_err_t messages. */
#ifndef DL_CHECKPOINT_H
#define DL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../models/model.h" /* dl_tensor_info_t */
#include "sampler.h"         /* dl_data_pos_t */

typedef struct dl_ckpt_meta {
    int64_t step;         /* optimiser steps done */
    int64_t epoch;        /* epochs done (step / steps_per_epoch) */
    int64_t global_batch; /* samples per step over all ranks */
    int world_size;
    /* [train] seed. With step and epoch it fixes every random stream dltrain
     * has: dropout masks are seeded by seed and step, augmentation by seed,
     * epoch and position, the data order by seed and epoch. So saving these
     * three saves every RNG state. */
    uint64_t seed;
    uint64_t config_digest;
    dl_data_pos_t data; /* where the data stream continues */
    int64_t opt_t;      /* optimiser steps (AdamW bias correction) */
    double sched[8];    /* schedule and recovery state, owned by the runtime (runtime/train.c
                         * pack_sched); files of older versions hold zeros past [1] */
    char *job_text;     /* the job file text; on read: malloc'd, the caller frees */
    int64_t wall_ms;    /* wall time of the run so far, ms */
    /* The input normalisation, (x - mean[c]) / std[c] with the training
     * data's statistics, for using the model elsewhere; written as
     * /train/input_mean and /train/input_std when input_c > 0. */
    int input_c;
    double input_mean[16], input_std[16];
} dl_ckpt_meta_t;

typedef struct dl_ckpt_model {
    const dl_tensor_info_t *tensors; /* from dl_model_tensors */
    int n_tensors;
    float *params;
    int64_t n_params;
    float *state;
    int64_t n_state;
    /* Optimiser buffers (n_opt = n_params floats each); NULL when the
     * optimiser has none (plain SGD: both NULL; SGD momentum: v NULL). */
    float *opt_m, *opt_v;
    int64_t n_opt;
    /* Written as /ranks/state when not NULL and n_state > 0: every rank's
     * state, world_size x n_state floats (state is then their average).
     * dl_ckpt_read ignores it; see dl_ckpt_read_ranks. */
    float *rank_state;
} dl_ckpt_model_t;

/* Write DIR/ckpt-SSSSSSSSSS.h5 through DIR/ckpt-SSSSSSSSSS.h5.tmp: the HDF5
 * file is built in memory (rank 0 briefly holds a second copy of the state),
 * then written to the temporary file with plain writes whose errors name
 * the OS's reason (disk full, file too large), fsync'd, renamed, DIR
 * fsync'd; then DIR/latest (one
 * line naming the checkpoint file) replaced the same way; then delete the
 * other checkpoints except the newest keep_last (>= 1; ranked by step, the
 * one just written always kept) and those whose step is a multiple of
 * keep_every (0: none), and leftover ckpt-*.h5.tmp files of interrupted
 * writes. DIR is created (with parents) if missing. path_out (may be NULL)
 * gets the path written. On a failure before `latest` points to the new
 * file, nothing already saved is touched and the temporary file is removed.
 * A failure to delete an old checkpoint is DL_EIO after the new one is in
 * place (path_out is set). */
int dl_ckpt_write(const char *dir, const dl_ckpt_meta_t *meta, const dl_ckpt_model_t *model,
                  int keep_last, int64_t keep_every, char *path_out, size_t path_size,
                  dl_err_t *err);

/* Read a checkpoint into model's buffers and *meta. Every tensor of
 * model->tensors must be present with the same name and shape, and no other;
 * each optimiser buffer model has must be present with n_opt values (one
 * model lacks is ignored). Mismatches, missing datasets or attributes, and
 * checksum failures are DL_EINPUT naming the file, the dataset and what was
 * expected. meta->job_text is malloc'd (NULL after a failure). After a
 * failure the model's buffers may be partly overwritten. */
int dl_ckpt_read(const char *path, dl_ckpt_meta_t *meta, const dl_ckpt_model_t *model,
                 dl_err_t *err);

/* Read /ranks/state (every rank's state) into rows, n_ranks x n_state
 * floats. Returns 1 when read; 0 when the file has no /ranks/state (an older
 * file, or a model without state) or holds another number of ranks; a
 * negative DL_E* status when it cannot be read (DL_EINPUT naming the file and
 * the dataset: damaged, checksum failure, n_state values per rank expected). */
int dl_ckpt_read_ranks(const char *path, int n_ranks, int64_t n_state, float *rows, dl_err_t *err);

/* Open the file, check the metadata and read every dataset (which checks
 * every Fletcher32 checksum); needs no model. DL_EINPUT with a message naming
 * the file and what is wrong (no such file, truncated, not HDF5, checksum
 * mismatch in dataset X, missing attribute Y). */
int dl_ckpt_verify(const char *path, dl_err_t *err);

/* The newest checkpoint in DIR that verifies: DIR/latest's target first,
 * then every ckpt-*.h5 by step, newest first. Each one skipped gets one line
 * on report (may be NULL) naming it, why, and the one tried next. Returns 1
 * with the path, 0 when none verifies (a missing or empty DIR is 0, not an
 * error), or a negative DL_E* status on an unexpected error (out of memory,
 * DIR unreadable). */
int dl_ckpt_find(const char *dir, char *path, size_t path_size, FILE *report, dl_err_t *err);

#endif
