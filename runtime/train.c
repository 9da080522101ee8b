/* The training loop; see train.h.
 *
 * Data order (io/sampler.h): each epoch has one seeded order of the
 * training set (a permutation, or the stream order for large datasets),
 * identical on every rank; global batch b of the epoch is entries
 * [b*G, (b+1)*G) of it and rank r takes the contiguous slice r*B .. (r+1)*B.
 * The order of samples therefore depends only on the seed, the epoch and the
 * global batch size, never on the number of ranks, and an N-rank run
 * computes the same updates as a 1-rank run with the same global batch.
 * The loss is scaled by 1/G on every rank, so the all-reduced sum of the
 * ranks' gradients is the gradient of the global batch's mean loss. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../collectives/buckets.h"
#include "../io/augment.h"
#include "../io/checkpoint.h"
#include "../io/loader.h"
#include "../io/params.h"
#include "../io/sampler.h"
#include "blas.h"
#include "fault.h"
#include "metrics.h"
#include "optim.h"
#include "signals.h"
#include "train.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- agreement across ranks ---------------------------------------------- */

/* All ranks learn whether any failed. The lowest failing rank keeps its
 * message; the others clear theirs, so a cause is printed once. Returns the
 * status every rank should exit with. */
static int agree(dl_comm_t *c, int rc, dl_err_t *err)
{
    int rank = dl_comm_rank(c);
    int64_t key = rc ? (int64_t)rank * 16 + (-rc) : INT64_MAX;
    dl_err_t e2 = {0};
    if (dl_comm_allreduce_min_i64(c, &key, 1, &e2)) {
        *err = e2;
        return e2.code;
    }
    if (key == INT64_MAX)
        return 0;
    int code = -(int)(key % 16);
    if (rank != (int)(key / 16)) {
        err->code = code;
        err->msg[0] = '\0';
    }
    return code;
}

/* ---- the trainer ------------------------------------------------------- */

/* Where the time of this run's steps went, summed over the logged intervals
 * (each averaged over ranks): wall time, waiting for data, in the gradient
 * all-reduce; compute is the rest. */
typedef struct step_split {
    double steps, step_s, data_wait_s, allreduce_s;
} step_split_t;

typedef struct trainer {
    const dl_config_t *cfg;
    const char *job_text; /* the job file's text, saved in checkpoints */
    dl_comm_t *comm;
    int rank, world;
    dl_plan_t plan;
    dl_dataset_t *train, *test;
    dl_model_t model;
    dl_optim_t opt;
    dl_augment_t aug;
    dl_loader_t *loader;  /* the I/O thread: every read of either dataset goes through it */
    dl_sampler_t sampler; /* which samples this rank reads at each step */
    int64_t requested;    /* training steps whose batches have been requested */
    int64_t *idx;
    float *batch_x; /* the batch taken, normalised here (take_batch) */
    float *dlogits, *aug_scratch, *pad_value;
    /* The device the model runs on; on a GPU the batch, its labels and the
     * logits' gradient live there too (on the CPU gx is the loader's batch). */
    dl_dev_t dev;
    char device_name[160];
    float *gx;
    int32_t *gy;
    double data_wait_s;  /* waited for batches since the last log */
    double allreduce_s;  /* in the gradient all-reduce since the last log */
    step_split_t split;  /* this run's logged steps, for summary.json */
    float *state_backup; /* the model's state before the step (restored if the step is bad) */
    int state_shared;    /* every rank holds the same state (--evaluate): no averaging */
    int64_t bad_run;     /* consecutive steps skipped for a non-finite loss or gradient */
    double lr_scale;     /* learning-rate factor after roll-backs (1 until one) */
    int64_t rollback_to, rollback_repeats; /* the last roll-back's step, how often in a row */
    dl_plateau_t plateau; /* [schedule] type = plateau (factor 1 with other types) */
    int64_t evaluated_at; /* step of the last evaluation (-1: none) */
    int eval_pending;     /* a resume at an evaluation its plateau state lacks: evaluate first */
    /* checkpoints */
    dl_tensor_info_t *tensors; /* the model's tensors, named, for checkpoint files */
    int n_tensors;
    char ckpt_dir[DL_PATH_MAX + 16];
    int64_t start_step;     /* the step this run started (or resumed) at */
    int64_t last_ckpt_step; /* step of the last checkpoint saved or loaded (-1: none) */
    double last_ckpt_time;  /* rank 0's clock then */
    double wall_before_s;   /* wall time of the runs before a resume */
    FILE *trace;            /* [data] trace: this rank's sample indices per step */
    int max_batch;
    dl_metrics_t metrics;
    /* the gradient all-reduce */
    dl_buckets_t *buckets; /* in buckets started during the backward pass (NULL: one call after) */
    int64_t nan_end;       /* DLTRAIN_FAULT_NAN: grads[0..nan_end) still to poison */
} trainer_t;

static int check_gpus_distinct(trainer_t *t, const dl_dist_t *dist, const char *bus, dl_err_t *err);

/* Where this rank computes ([train] device): the CPU; or its GPU, the one
 * of its local rank (a rank that sees a single GPU, as with Slurm's
 * --gpus-per-task, takes that one). Collective: rank 0 checks that no two
 * ranks of a node share a GPU, which NCCL refuses, and all ranks agree. */
static int select_device(trainer_t *t, const dl_dist_t *dist, dl_err_t *err)
{
    const dl_config_t *cfg = t->cfg;
    char why[256] = "", bus[64] = "";
    int rc = 0;
    t->dev = DL_DEV_CPU;
    snprintf(t->device_name, sizeof t->device_name, "cpu");
    if (cfg->device != DL_DEVICE_CPU) {
        int count = dl_cuda_device_count(why, sizeof why);
        int index = count == 1 ? 0 : dist->local_rank;
        if (count == 0 && cfg->device == DL_DEVICE_CUDA)
            rc = DL_ERR(err, DL_EINPUT, "%s: [train] device = cuda, but %s (rank %d on %s)",
                        cfg->path, why, t->rank, dist->host);
        else if (count > 1 && index >= count)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: [train] device = %s, but node %s runs %d ranks and has %d GPUs: "
                        "each rank needs a GPU of its own (NCCL refuses two ranks on one GPU); "
                        "start at most %d ranks per node, or use device = cpu",
                        cfg->path, cfg->device == DL_DEVICE_AUTO ? "auto" : "cuda", dist->host,
                        dist->local_size, count, count);
        else if (count > 0) {
            char name[128] = "";
            t->dev = DL_DEV_CUDA;
            rc = dl_cuda_use_device(index, name, sizeof name, err);
            if (!rc)
                rc = dl_cuda_bus_id(index, bus, sizeof bus, err);
            snprintf(t->device_name, sizeof t->device_name, "cuda:%d (%.100s)", index, name);
        }
    }
    rc = agree(t->comm, rc, err);
    /* Every rank on the same kind of device: with auto, all on the CPU
     * unless all found a GPU. */
    int64_t on_gpu = t->dev == DL_DEV_CUDA;
    if (!rc)
        rc = dl_comm_allreduce_min_i64(t->comm, &on_gpu, 1, err);
    if (!rc && !on_gpu && t->dev == DL_DEV_CUDA) {
        t->dev = DL_DEV_CPU;
        snprintf(t->device_name, sizeof t->device_name,
                 "cpu (device = auto: not every rank "
                 "has a GPU)");
    }
    if (!rc && t->dev == DL_DEV_CUDA && t->world > 1)
        rc = check_gpus_distinct(t, dist, bus, err);
    if (!rc && t->dev == DL_DEV_CUDA && t->world > 1)
        rc = dl_comm_nccl_init(t->comm, err);
    return rc;
}

/* Rank 0 makes sure no two ranks of a node share a GPU (NCCL would refuse
 * it with a less helpful message). Collective. */
static int check_gpus_distinct(trainer_t *t, const dl_dist_t *dist, const char *bus, dl_err_t *err)
{
    char me[128] = "", *all = NULL;
    snprintf(me, sizeof me, "%.63s|%.63s", dist->host, bus);
    int rc = 0;
    if (t->rank == 0 && !(all = dl_calloc((size_t)t->world, sizeof me, err)))
        rc = DL_ENOMEM;
    rc = agree(t->comm, rc, err);
    if (!rc)
        rc = dl_comm_gather(t->comm, me, all, (int64_t)sizeof me, 0, err);
    for (int r = 0; !rc && t->rank == 0 && r < t->world; r++)
        for (int q = 0; q < r; q++)
            if (!strcmp(all + (size_t)q * sizeof me, all + (size_t)r * sizeof me)) {
                const char *at = all + (size_t)r * sizeof me;
                rc = DL_ERR(err, DL_EINPUT,
                            "%s: ranks %d and %d both got GPU %s on node %.*s: each rank needs a "
                            "GPU of its own (NCCL refuses two ranks on one GPU); give each rank "
                            "its own GPU (CUDA_VISIBLE_DEVICES, Slurm's --gpus-per-task=1), "
                            "start fewer ranks per node, or use device = cpu",
                            t->cfg->path, q, r, strchr(at, '|') + 1, (int)(strchr(at, '|') - at),
                            at);
                break;
            }
    free(all);
    return agree(t->comm, rc, err);
}

/* The model's only collective (synchronised batch norm), in the shape
 * models/ asks for: arg is the trainer; buf is GPU memory on a GPU, where
 * NCCL sums it on the model's stream. */
static int model_allreduce(void *arg, float *buf, int64_t n)
{
    trainer_t *t = arg;
    dl_err_t err = {0};
    if (t->dev == DL_DEV_CPU)
        return dl_comm_allreduce_sum_f32(t->comm, buf, n, &err);
    void *stream = dl_cuda_stream(t->model.cuda);
    int rc = dl_comm_nccl_allreduce_sum_f32(t->comm, buf, n, stream, &err);
    return rc ? rc : dl_comm_nccl_wait(t->comm, stream, &err);
}

/* Make grads[from..nan_end) NaN (a DLTRAIN_FAULT_NAN fault due this step).
 * On a GPU one NaN, at grads[from], is enough for every check. */
static int poison_grads(trainer_t *t, int64_t from, dl_err_t *err)
{
    if (from >= t->nan_end)
        return 0;
    if (t->dev == DL_DEV_CPU) {
        for (int64_t i = from; i < t->nan_end; i++)
            t->model.grads[i] = NAN;
    } else {
        const float nan = NAN;
        int rc =
            dl_dev_copy(t->model.cuda, t->model.grads + from, &nan, sizeof nan, DL_COPY_H2D, err);
        if (rc)
            return rc;
    }
    t->nan_end = from;
    return 0;
}

/* models/ calls this during the backward pass: grads[from..) are final, so
 * the buckets inside them start their all-reduce. */
static int grads_ready(void *arg, int64_t from)
{
    trainer_t *t = arg;
    dl_err_t err = {0};
    int rc = poison_grads(t, from, &err);
    return rc ? rc : dl_buckets_ready(t->buckets, from, &err);
}

/* Bucketed all-reduce of the gradients ([train] bucket_mb > 0), on 2 or more
 * ranks. */
static int setup_buckets(trainer_t *t, dl_err_t *err)
{
    if (t->world < 2 || t->cfg->bucket_mb <= 0)
        return 0;
    int64_t size = (int64_t)(t->cfg->bucket_mb * 1048576.0),
            first = (int64_t)(t->cfg->first_bucket_mb * 1048576.0);
    int rc = t->dev == DL_DEV_CPU
                 ? dl_buckets_create(&t->buckets, t->comm, t->model.grads, t->model.n_params, size,
                                     first, err)
                 : dl_buckets_create_nccl(&t->buckets, t->comm, t->model.grads, t->model.n_params,
                                          size, first, dl_cuda_stream(t->model.cuda), err);
    if (rc)
        return rc;
    t->model.ctx.grads_ready = grads_ready;
    t->model.ctx.grads_arg = t;
    return 0;
}

static int setup_augment(trainer_t *t, dl_err_t *err)
{
    const dl_plan_t *p = &t->plan;
    int pad = (int)t->cfg->crop_padding;
    t->aug = (dl_augment_t){.c = p->train.c,
                            .h = p->train.h,
                            .w = p->train.w,
                            .crop_padding = pad,
                            .flip = t->cfg->flip,
                            .seed = (uint64_t)t->cfg->seed};
    t->pad_value = dl_calloc((size_t)p->train.c, sizeof(float), err);
    t->aug_scratch = dl_calloc((size_t)(p->train.h + 2 * pad) * (size_t)(p->train.w + 2 * pad),
                               sizeof(float), err);
    if (!t->pad_value || !t->aug_scratch)
        return DL_ENOMEM;
    for (int c = 0; c < p->train.c; c++) /* a black pixel, normalised */
        t->pad_value[c] = (float)(-p->train.mean[c] / p->train.std[c]);
    t->aug.pad_value = t->pad_value;
    return 0;
}

static int alloc_buffers(trainer_t *t, dl_err_t *err)
{
    const dl_plan_t *p = &t->plan;
    t->max_batch = (int)p->max_batch;
    dl_model_opts_t mo = {.dev = t->dev, .tf32 = t->cfg->tf32};
    int rc =
        dl_model_build_opts(&t->model, p->specs, p->n_specs, p->in_shape, t->max_batch, &mo, err);
    if (rc)
        return rc;
    t->model.ctx = (dl_model_ctx_t){.seed = (uint64_t)t->cfg->seed,
                                    .rank = t->rank,
                                    .allreduce_sum = t->world > 1 ? model_allreduce : NULL,
                                    .comm = t};
    rc = setup_buckets(t, err);
    if (!rc)
        rc = dl_optim_init(&t->opt, &t->cfg->optim, t->model.n_params, err);
    if (!rc && t->dev == DL_DEV_CUDA)
        rc = dl_optim_use_cuda(&t->opt, t->model.cuda, err);
    if (rc)
        return rc;
    dl_sampler_cfg_t order = p->order;
    order.rank = t->rank;
    rc = dl_sampler_init(&t->sampler, &order, err);
    if (rc)
        return rc;
    t->idx = dl_calloc((size_t)t->max_batch, sizeof(int64_t), err);
    size_t nlog = (size_t)p->batch * (size_t)p->train.num_classes;
    t->dlogits = dl_dev_alloc(t->dev, nlog * sizeof(float), err);
    if (!t->idx || !t->dlogits)
        return DL_ENOMEM;
    if (t->dev == DL_DEV_CUDA) {
        t->gx =
            dl_dev_alloc(t->dev, (size_t)t->max_batch * (size_t)p->in_size * sizeof(float), err);
        t->gy = dl_dev_alloc(t->dev, (size_t)t->max_batch * sizeof(int32_t), err);
        if (!t->gx || !t->gy)
            return DL_ENOMEM;
    }
    if (t->model.n_state) {
        t->state_backup = dl_dev_alloc(t->dev, (size_t)t->model.n_state * sizeof(float), err);
        if (!t->state_backup)
            return DL_ENOMEM;
    }
    rc = dl_model_tensors(&t->model, &t->tensors, &t->n_tensors, err);
    if (rc)
        return rc;
    if (t->cfg->ckpt.dir[0])
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", t->cfg->ckpt.dir);
    else
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s/checkpoints", t->cfg->run_dir);
    t->last_ckpt_step = -1;
    /* pinned on a GPU, so its copy to the device is a plain DMA */
    t->batch_x =
        dl_host_alloc(t->dev, (size_t)t->max_batch * (size_t)p->in_size * sizeof(float), err);
    if (!t->batch_x)
        return DL_ENOMEM;
    int64_t bytes = dl_dataset_sample_bytes(t->train),
            test_bytes = dl_dataset_sample_bytes(t->test);
    rc = dl_loader_start(&t->loader, (int)t->cfg->prefetch, t->max_batch,
                         bytes > test_bytes ? bytes : test_bytes, err);
    if (rc)
        return rc;
    dl_loader_set_timeout(t->loader, t->cfg->timeout_s);
    return setup_augment(t, err);
}

static void free_trainer(trainer_t *t)
{
    dl_loader_stop(t->loader); /* before the datasets close */
    if (t->trace)
        fclose(t->trace);
    dl_dev_free(t->dev, t->gx);
    dl_dev_free(t->dev, t->gy);
    dl_dev_free(t->dev, t->dlogits);
    dl_dev_free(t->dev, t->state_backup);
    dl_buckets_free(t->buckets);
    dl_optim_free(&t->opt);
    dl_model_free(&t->model);
    dl_plan_free(&t->plan);
    dl_sampler_free(&t->sampler);
    free(t->idx);
    dl_host_free(t->dev, t->batch_x);
    free(t->tensors);
    free(t->aug_scratch);
    free(t->pad_value);
    dl_dataset_close(t->train);
    dl_dataset_close(t->test);
    if (t->rank == 0)
        dl_metrics_close(&t->metrics);
}

/* On a GPU, the cold paths (checkpoints, broadcasts, digests) work on the
 * host copies: pull brings them up to date from the device, push sends
 * them back. No-ops on the CPU, where they are the buffers themselves. */
static int pull(trainer_t *t, dl_err_t *err)
{
    int rc = dl_model_to_host(&t->model, err);
    return rc ? rc : dl_optim_to_host(&t->opt, err);
}

static int push(trainer_t *t, dl_err_t *err)
{
    int rc = dl_model_to_device(&t->model, err);
    return rc ? rc : dl_optim_to_device(&t->opt, err);
}

/* Same initial parameters and state everywhere: rank 0 initialises (or
 * loads [model] init_from), then broadcasts. */
static int init_params(trainer_t *t, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    int rc = 0;
    if (t->rank == 0) {
        dl_model_init_params(m, (uint64_t)t->cfg->seed);
        if (t->cfg->init_from[0])
            rc = dl_params_read(t->cfg->init_from, m->host_params, m->n_params, m->host_state,
                                m->n_state, err);
    }
    rc = agree(t->comm, rc, err);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, m->host_params, m->n_params * (int64_t)sizeof(float), 0,
                               err);
    if (!rc && m->n_state)
        rc = dl_comm_broadcast(t->comm, m->host_state, m->n_state * (int64_t)sizeof(float), 0, err);
    return rc ? rc : push(t, err);
}

/* 1 if no value is infinite or NaN: an OR over the exponent bits, which
 * the compiler vectorises (a float sum would not be, and this runs every
 * step over every gradient). */
static int all_finite(const float *v, int64_t n)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], sizeof b);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* buf[0..n-1] = its average over all ranks, in place. */
static int average_over_ranks(trainer_t *t, float *buf, int64_t n, dl_err_t *err)
{
    if (t->world == 1 || n == 0)
        return 0;
    int rc = dl_comm_allreduce_sum_f32(t->comm, buf, n, err);
    for (int64_t i = 0; !rc && i < n; i++)
        buf[i] /= (float)t->world;
    return rc;
}

/* The next batch from the loader, which hands over samples as stored,
 * normalised here into t->batch_x (augmentation works on the normalised
 * floats, so a GPU gets them normalised too; upload copies them). One that
 * is stuck past
 * the watchdog's timeout cannot be stopped cleanly (its thread is inside a
 * read), so the job ends here, with the watchdog's status. */
static int take_batch(trainer_t *t, float **x, int32_t **y, int *n, double *waited, dl_err_t *err)
{
    dl_loader_batch_t b;
    int rc = dl_loader_take(t->loader, &b, waited, err);
    if (rc == DL_EABORT) {
        fprintf(stderr, "dltrain: error (rank %d): watchdog: %s; ending the job (exit status %d)\n",
                t->rank, err->msg, DL_EXIT_ABORT);
        fflush(stderr);
        dl_comm_abort(DL_EXIT_ABORT);
    }
    if (rc)
        return rc;
    dl_dataset_normalise(b.ds, b.x, b.n, t->batch_x);
    *x = t->batch_x;
    *y = b.y;
    *n = b.n;
    return 0;
}

/* The watchdog's limit and label for the collectives that follow: rank 0
 * writing or reading a checkpoint may take longer than a step. */
static void watch_checkpoint(trainer_t *t, const char *what, int64_t step)
{
    dl_comm_watch(t->comm, t->cfg->ckpt.timeout_s, "%s of step %lld", what, (long long)step);
}

/* ---- checkpoints (io/checkpoint.h) ----------------------------------------- */

/* A checkpoint's schedule state (dl_ckpt_meta_t.sched): [0] the roll-back
 * factor, [1] the run of bad steps, [2..5] the plateau state (factor, best
 * metric, bad evaluations, cooldown left), [6] 1 if the evaluation after the
 * saved step is in that state. Files of older versions hold zeros in [2..7]:
 * factor 0 there means a fresh plateau state. */
static void pack_sched(const trainer_t *t, int64_t done, double *sched)
{
    const dl_plateau_t *pl = &t->plateau;
    double v[7] = {t->lr_scale,
                   (double)t->bad_run,
                   pl->factor,
                   pl->best,
                   (double)pl->num_bad,
                   (double)pl->cooldown_left,
                   (double)(t->evaluated_at == done)};
    memcpy(sched, v, sizeof v);
}

static int evaluates_after(const trainer_t *t, int64_t done);

static void unpack_sched(trainer_t *t, int64_t step, const double *sched)
{
    t->lr_scale = sched[0] > 0 ? sched[0] : 1.0;
    t->bad_run = (int64_t)sched[1];
    dl_plateau_init(&t->plateau, &t->cfg->sched);
    if (sched[2] > 0)
        t->plateau = (dl_plateau_t){.factor = sched[2],
                                    .best = sched[3],
                                    .num_bad = (int64_t)sched[4],
                                    .cooldown_left = (int64_t)sched[5]};
    /* A checkpoint is saved before the evaluation that follows its step. */
    t->eval_pending = t->cfg->sched.type == DL_SCHED_PLATEAU && step > 0 &&
                      evaluates_after(t, step) && sched[6] == 0;
}

/* A data position saved with another global batch, made a position of this
 * run: it must fall on a global batch of this run, unless what is left of
 * the epoch is less than one batch, which this run drops as it drops the end
 * of every epoch; then the next epoch begins. */
static int map_position(const trainer_t *t, dl_data_pos_t *pos, int64_t saved_g, const char *path,
                        dl_err_t *err)
{
    int64_t g = t->plan.global_batch;
    if (pos->offset >= t->plan.steps_per_epoch * g) {
        pos->epoch++;
        pos->offset = 0;
    } else if (pos->offset % g) {
        return DL_ERR(err, DL_EINPUT,
                      "%s was saved with global batch %lld at offset %lld of epoch %lld's sample "
                      "order, which is not a multiple of this run's global batch %lld, so no step "
                      "of this run starts there: resume from a checkpoint saved at the start of "
                      "an epoch, or with a global batch that divides %lld",
                      path, (long long)saved_g, (long long)pos->offset, (long long)pos->epoch,
                      (long long)g, (long long)pos->offset);
    }
    return 0;
}

static dl_ckpt_model_t ckpt_model(trainer_t *t)
{
    dl_model_t *m = &t->model;
    return (dl_ckpt_model_t){.tensors = t->tensors,
                             .n_tensors = t->n_tensors,
                             .params = m->host_params,
                             .n_params = m->n_params,
                             .state = m->host_state,
                             .n_state = m->n_state,
                             .opt_m = t->opt.m,
                             .opt_v = t->opt.v,
                             .n_opt = t->opt.n};
}

/* After rank 0 failed to write the checkpoint of step `done` (err says
 * why): the message names the step, the cause and the checkpoint a resume
 * would now start from, which dl_ckpt_find has verified. */
static int save_failed(trainer_t *t, int64_t done, int rc, dl_err_t *err)
{
    char why[sizeof err->msg], prev[DL_PATH_MAX + 64];
    snprintf(why, sizeof why, "%s", err->msg);
    dl_err_t e2 = {0};
    int found = dl_ckpt_find(t->ckpt_dir, prev, sizeof prev, NULL, &e2);
    if (found > 0)
        return DL_ERR(err, rc,
                      "the checkpoint of step %lld could not be written: %s; the previous "
                      "checkpoint %s is intact (it verifies) and a resume starts from it",
                      (long long)done, why, prev);
    if (found == 0)
        return DL_ERR(err, rc,
                      "the checkpoint of step %lld could not be written: %s; %s holds no earlier "
                      "checkpoint, so a resume starts over",
                      (long long)done, why, t->ckpt_dir);
    return DL_ERR(err, rc,
                  "the checkpoint of step %lld could not be written: %s; looking for an earlier "
                  "checkpoint failed too: %s",
                  (long long)done, why, e2.msg);
}

/* Save the state after `done` steps: every rank takes part (the per-rank
 * statistics are gathered), rank 0 writes, all agree on the outcome. */
static int save_checkpoint(trainer_t *t, int64_t done, double wall_s, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    /* Never save a state to roll back to that is itself broken: during a
     * run of bad steps, or with non-finite parameters (every rank holds the
     * same parameters, so every rank decides the same). */
    int rc = pull(t, err);
    if (rc) /* a failed GPU copy: the device is gone, and so is the job */
        return rc;
    int finite = all_finite(m->host_params, m->n_params);
    if (t->bad_run > 0 || !finite) {
        if (t->rank == 0)
            dl_metrics_say(&t->metrics, "checkpoint of step %lld not saved: %s", (long long)done,
                           finite ? "the last step was skipped as non-finite"
                                  : "the parameters are not finite");
        return 0;
    }
    watch_checkpoint(t, "the checkpoint", done);
    float *avg = NULL, *rows = NULL; /* rows: every rank's state, on rank 0 */
    if (m->n_state && !(avg = dl_calloc((size_t)m->n_state, sizeof(float), err)))
        rc = DL_ENOMEM;
    if (!rc && m->n_state && t->rank == 0 &&
        !(rows = dl_calloc((size_t)t->world * (size_t)m->n_state, sizeof(float), err)))
        rc = DL_ENOMEM;
    rc = agree(t->comm, rc, err);
    if (!rc && avg) { /* the file's statistics: the ranks' average, as evaluation uses */
        memcpy(avg, m->host_state, (size_t)m->n_state * sizeof(float));
        rc = average_over_ranks(t, avg, m->n_state, err);
    }
    if (!rc && avg) /* and each rank's own, for an exact resume on as many ranks */
        rc = dl_comm_gather(t->comm, m->host_state, rows, m->n_state * (int64_t)sizeof(float), 0,
                            err);
    if (!rc && t->rank == 0) {
        dl_ckpt_model_t cm = ckpt_model(t);
        cm.state = avg;
        cm.rank_state = rows;
        dl_ckpt_meta_t meta = {.step = done,
                               .epoch = done / t->plan.steps_per_epoch,
                               .global_batch = t->plan.global_batch,
                               .world_size = t->world,
                               .seed = (uint64_t)t->cfg->seed,
                               .config_digest = dl_config_digest(t->cfg),
                               .data = dl_sampler_position(&t->sampler, done),
                               .opt_t = t->opt.t,
                               .job_text = (char *)t->job_text,
                               .wall_ms = (int64_t)(1e3 * wall_s)};
        pack_sched(t, done, meta.sched);
        meta.input_c = t->plan.train.c;
        memcpy(meta.input_mean, t->plan.train.mean, sizeof meta.input_mean);
        memcpy(meta.input_std, t->plan.train.std, sizeof meta.input_std);
        char path[DL_PATH_MAX + 64] = "";
        rc = dl_ckpt_write(t->ckpt_dir, &meta, &cm, (int)t->cfg->ckpt.keep_last,
                           t->cfg->ckpt.keep_every, path, sizeof path, err);
        if (!rc)
            dl_metrics_say(&t->metrics, "checkpoint: step %lld saved in %s", (long long)done, path);
        else if (!path[0] && rc != DL_ENOMEM)
            rc = save_failed(t, done, rc, err);
    }
    free(avg);
    free(rows);
    rc = agree(t->comm, rc, err);
    if (!rc) {
        t->last_ckpt_step = done;
        t->last_ckpt_time = now_s();
    }
    return rc;
}

/* On rank 0, after the checkpoint at path (saved by saved_world ranks) was
 * read: every rank's own batch-norm statistics into *rows (malloc'd) when the
 * file has them for this number of ranks; *rows stays NULL (every rank will
 * take the average) otherwise, which is said once. */
static int read_rank_state(trainer_t *t, const char *path, int saved_world, float **rows,
                           dl_err_t *err)
{
    int64_t n = t->model.n_state;
    *rows = NULL;
    if (!n)
        return 0;
    int rc = 0;
    if (saved_world == t->world) {
        if (!(*rows = dl_calloc((size_t)t->world * (size_t)n, sizeof(float), err)))
            return DL_ENOMEM;
        rc = dl_ckpt_read_ranks(path, t->world, n, *rows, err);
        if (rc == 1)
            return 0;
        free(*rows);
        *rows = NULL;
    }
    if (!rc && saved_world > 1 && saved_world != t->world)
        dl_metrics_say(&t->metrics,
                       "note: %s holds the batch-norm statistics of %d ranks and this run has "
                       "%d; every rank starts from their average",
                       path, saved_world, t->world);
    else if (!rc && saved_world > 1)
        dl_metrics_say(&t->metrics,
                       "note: %s holds no per-rank batch-norm statistics (an older checkpoint); "
                       "every rank starts from their average",
                       path);
    return rc;
}

/* Load a checkpoint on rank 0 and send it to every rank; every rank takes
 * its own saved batch-norm statistics when the checkpoint has them for this
 * number of ranks, else their average. Sets t->start_step and the
 * optimiser's step count. */
static int load_checkpoint(trainer_t *t, const char *path, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    dl_ckpt_meta_t meta = {0};
    float *rows = NULL; /* every rank's statistics, on rank 0 */
    int rc = 0;
    if (t->rank == 0) {
        dl_ckpt_model_t cm = ckpt_model(t);
        rc = dl_ckpt_read(path, &meta, &cm, err);
        if (!rc && meta.global_batch != t->plan.global_batch &&
            t->cfg->optim.scale_lr != DL_SCALE_LR_LINEAR)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s was saved with global batch %lld; this run has %lld: resume with the "
                        "saved global batch ([train] global_batch_size = %lld), which keeps the "
                        "data position and the learning rate meaningful",
                        path, (long long)meta.global_batch, (long long)t->plan.global_batch,
                        (long long)meta.global_batch);
        if (!rc && meta.config_digest != dl_config_digest(t->cfg))
            dl_metrics_say(&t->metrics,
                           "note: %s was saved by a job file with another configuration digest; "
                           "going on with this job file's settings",
                           path);
        if (!rc)
            rc = read_rank_state(t, path, meta.world_size, &rows, err);
    }
    rc = agree(t->comm, rc, err);
    /* The metadata as int64s, then the buffers. */
    int64_t hdr[9] = {meta.step,       meta.world_size,   meta.opt_t,
                      meta.data.epoch, meta.data.offset,  (int64_t)meta.data.seed,
                      meta.wall_ms,    meta.global_batch, rows != NULL};
    double sched[8];
    memcpy(sched, meta.sched, sizeof sched);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, hdr, sizeof hdr, 0, err);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, sched, sizeof sched, 0, err);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, m->host_params, m->n_params * (int64_t)sizeof(float), 0,
                               err);
    if (!rc && t->opt.m)
        rc = dl_comm_broadcast(t->comm, t->opt.m, t->opt.n * (int64_t)sizeof(float), 0, err);
    if (!rc && t->opt.v)
        rc = dl_comm_broadcast(t->comm, t->opt.v, t->opt.n * (int64_t)sizeof(float), 0, err);
    if (!rc && m->n_state && hdr[8]) /* each rank its own row */
        rc = dl_comm_scatter(t->comm, rows, m->host_state, m->n_state * (int64_t)sizeof(float), 0,
                             err);
    else if (!rc && m->n_state) /* the ranks' average */
        rc = dl_comm_broadcast(t->comm, m->host_state, m->n_state * (int64_t)sizeof(float), 0, err);
    if (!rc)
        rc = push(t, err);
    free(rows);
    free(meta.job_text);
    if (rc)
        return rc;
    dl_data_pos_t pos = {.epoch = hdr[3], .offset = hdr[4], .seed = (uint64_t)hdr[5]};
    int64_t step = 0, saved_g = hdr[7];
    if (saved_g != t->plan.global_batch) /* scale_lr = linear (checked above) */
        rc = map_position(t, &pos, saved_g, path, err);
    if (!rc)
        rc = dl_sampler_resume_step(&t->sampler, pos, &step, err);
    rc = agree(t->comm, rc, err);
    if (rc)
        return rc;
    if (saved_g != t->plan.global_batch && t->rank == 0)
        dl_metrics_say(&t->metrics,
                       "resumed with global batch %lld instead of %lld: learning rate rescaled "
                       "%g -> %g (scale_lr = linear); step %lld of the saved run is step %lld of "
                       "this one (epoch %lld, offset %lld)",
                       (long long)t->plan.global_batch, (long long)saved_g,
                       dl_plan_base_lr(t->cfg, saved_g), t->plan.base_lr, (long long)hdr[0],
                       (long long)step, (long long)pos.epoch, (long long)pos.offset);
    t->opt.t = hdr[2];
    t->start_step = step;
    unpack_sched(t, step, sched);
    t->wall_before_s = 1e-3 * (double)hdr[6];
    t->last_ckpt_step = step;
    t->last_ckpt_time = now_s();
    return 0;
}

/* Rank 0 looks for the newest checkpoint that verifies in the checkpoint
 * directory (saying which it skips and why); every rank learns whether
 * there is one (*found), and rank 0 its path. Collective. */
static int find_newest(trainer_t *t, char *path, size_t size, int *found, dl_err_t *err)
{
    int64_t f = 0;
    int rc = 0;
    if (t->rank == 0) {
        int k = dl_ckpt_find(t->ckpt_dir, path, size, stderr, err);
        rc = k < 0 ? k : 0;
        f = k > 0;
    }
    rc = agree(t->comm, rc, err);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, &f, sizeof f, 0, err);
    *found = f > 0;
    return rc;
}

/* [checkpoint] resume: auto (the newest checkpoint that verifies, if any),
 * never, or a path. Rank 0 looks; every rank loads. */
static int resume(trainer_t *t, dl_err_t *err)
{
    const char *how = t->cfg->ckpt.resume;
    if (strcmp(how, "never") == 0)
        return 0;
    char path[DL_PATH_MAX + 64] = "";
    int found = 1, rc = 0;
    if (strcmp(how, "auto") != 0)
        snprintf(path, sizeof path, "%s", how);
    else
        rc = find_newest(t, path, sizeof path, &found, err);
    if (rc || !found)
        return rc;
    rc = load_checkpoint(t, path, err);
    if (!rc && t->rank == 0)
        dl_metrics_say(&t->metrics, "resumed from %s at step %lld of %lld", path,
                       (long long)t->start_step, (long long)t->plan.total_steps);
    return rc;
}

/* Ranks that normalise with their own batches' statistics end with
 * different running statistics: evaluate (and save) with their average. */
static int average_state(trainer_t *t, dl_err_t *err)
{
    if (t->world == 1 || !t->model.n_state)
        return 0;
    int rc = dl_model_to_host(&t->model, err);
    if (!rc)
        rc = average_over_ranks(t, t->model.host_state, t->model.n_state, err);
    return rc ? rc : dl_model_to_device(&t->model, err);
}

/* On a GPU: copy the batch x (n samples) and its labels y to the device;
 * *x then points at the device copy. Nothing to do on the CPU. */
static int upload(trainer_t *t, float **x, const int32_t *y, int n, dl_err_t *err)
{
    if (t->dev == DL_DEV_CPU)
        return 0;
    dl_cuda_t *g = t->model.cuda;
    int rc = dl_dev_copy(g, t->gx, *x, (size_t)n * (size_t)t->plan.in_size * sizeof(float),
                         DL_COPY_H2D, err);
    if (!rc)
        rc = dl_dev_copy(g, t->gy, y, (size_t)n * sizeof(int32_t), DL_COPY_H2D, err);
    *x = t->gx;
    return rc;
}

/* Softmax cross-entropy of n rows of logits on the model's device (labels
 * y on the host; on a GPU their uploaded copy is used): *sum gets the
 * summed loss, *correct the hits, dlogits (if not NULL) scale * the
 * gradient. */
static int batch_loss(trainer_t *t, const float *logits, const int32_t *y, int n, float scale,
                      float *dlogits, double *sum, int64_t *correct, dl_err_t *err)
{
    int k = t->plan.train.num_classes;
    float ls = (float)t->cfg->label_smoothing;
    if (t->dev == DL_DEV_CUDA)
        return dl_cuda_softmax_xent(t->model.cuda, logits, t->gy, n, k, ls, scale, dlogits, sum,
                                    correct, err);
    *sum = dl_softmax_xent(logits, y, n, k, ls, scale, dlogits, correct);
    return 0;
}

/* Ask for this rank's test samples [lo + i*chunk, ...). */
static int request_test(trainer_t *t, int64_t from, int64_t hi, dl_err_t *err)
{
    int nb = (int)(hi - from < t->max_batch ? hi - from : t->max_batch);
    for (int j = 0; j < nb; j++)
        t->idx[j] = from + j;
    return dl_loader_request(t->loader, t->test, t->idx, nb, err);
}

/* Test loss and accuracy over the whole test set, split across ranks; the
 * loader reads the next chunks while the model evaluates one. */
static int evaluate(trainer_t *t, double *loss, double *acc, dl_err_t *err)
{
    int64_t n = t->plan.test.n;
    int64_t lo = n * t->rank / t->world, hi = n * (t->rank + 1) / t->world;
    double sums[3] = {0, 0, 0}; /* loss, correct, samples */
    int rc = t->state_shared ? 0 : average_state(t, err);
    t->model.ctx.training = 0;
    int64_t asked = lo; /* first sample not yet requested */
    int depth = (int)t->cfg->prefetch;
    for (int pending = 0; !rc && (pending > 0 || asked < hi);) {
        while (!rc && pending < depth && asked < hi) {
            rc = request_test(t, asked, hi, err);
            asked += t->max_batch;
            pending++;
        }
        float *x;
        int32_t *y;
        int nb;
        if (rc || (rc = take_batch(t, &x, &y, &nb, NULL, err)) != 0)
            break;
        pending--;
        const float *logits = NULL;
        if ((rc = upload(t, &x, y, nb, err)) == 0 &&
            !(logits = dl_model_forward(&t->model, x, nb, err)))
            rc = err->code;
        int64_t correct = 0;
        double lsum = 0.0;
        if (!rc)
            rc = batch_loss(t, logits, y, nb, 0.0f, NULL, &lsum, &correct, err);
        if (rc)
            break;
        sums[0] += lsum;
        sums[1] += (double)correct;
        sums[2] += nb;
    }
    rc = agree(t->comm, rc, err);
    if (!rc)
        rc = dl_comm_allreduce_sum_f64(t->comm, sums, 3, err);
    if (rc)
        return rc;
    *loss = sums[0] / sums[2];
    *acc = sums[1] / sums[2];
    return 0;
}

/* Ask the loader for this rank's part of global batch `step`. Requests run
 * ahead of the steps, never behind, so the sampler's one epoch order is
 * always the one needed. */
static int request_step(trainer_t *t, int64_t step, dl_err_t *err)
{
    const int64_t *idx = dl_sampler_batch(&t->sampler, step, NULL);
    if (t->trace) {
        fprintf(t->trace, "%lld", (long long)step);
        for (int64_t j = 0; j < t->plan.batch; j++)
            fprintf(t->trace, " %lld", (long long)idx[j]);
        if (fputc('\n', t->trace) == EOF)
            return DL_ERR(err, DL_EIO, "cannot write the data trace in %s: %s", t->cfg->run_dir,
                          strerror(errno));
    }
    return dl_loader_request(t->loader, t->train, idx, (int)t->plan.batch, err);
}

/* Keep up to prefetch training batches requested ahead of `step`, but none
 * beyond `limit` (an evaluation reads through the same loader in between). */
static int prefetch(trainer_t *t, int64_t step, int64_t limit, dl_err_t *err)
{
    int rc = 0;
    while (!rc && t->requested < limit && t->requested < step + t->cfg->prefetch)
        rc = request_step(t, t->requested++, err);
    return rc;
}

/* The sum of the ranks' gradients: MPI on the CPU, NCCL on GPUs. */
static int grads_allreduce(trainer_t *t, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    if (t->dev == DL_DEV_CPU)
        return dl_comm_allreduce_sum_f32(t->comm, m->grads, m->n_params, err);
    if (t->world == 1) /* one GPU: nothing to sum */
        return 0;
    void *stream = dl_cuda_stream(m->cuda);
    int rc = dl_comm_nccl_allreduce_sum_f32(t->comm, m->grads, m->n_params, stream, err);
    return rc ? rc : dl_comm_nccl_wait(t->comm, stream, err);
}

/* Forward and backward on this rank's part of global batch `step`, whose
 * batch was requested earlier, and the all-reduce of the gradients; the
 * caller decides whether the optimiser takes the step. step_acc[0..1] get
 * this rank's loss sum and correct count. */
static int train_step(trainer_t *t, int64_t step, double *step_acc, dl_err_t *err)
{
    const dl_plan_t *p = &t->plan;
    int64_t epoch = step / p->steps_per_epoch;
    float *x = NULL;
    int32_t *y = NULL;
    int b = 0;
    double waited = 0.0;
    int rc = take_batch(t, &x, &y, &b, &waited, err);
    t->data_wait_s += waited;
    rc = agree(t->comm, rc, err);
    if (rc)
        return rc;
    dl_augment_batch(&t->aug, x, b, epoch, dl_sampler_pos(&t->sampler, step), t->aug_scratch);
    dl_model_t *m = &t->model;
    if (m->n_state) /* batch-norm running statistics, in case the step is bad */
        rc = dl_dev_copy(m->cuda, t->state_backup, m->state, (size_t)m->n_state * sizeof(float),
                         DL_COPY_D2D, err);
    if (!rc)
        rc = upload(t, &x, y, b, err);
    if (rc)
        return rc;
    m->ctx.training = 1;
    m->ctx.step = (uint64_t)step;
    const float *logits = dl_model_forward(m, x, b, err);
    if (!logits)
        return err->code;
    int64_t correct = 0;
    rc = batch_loss(t, logits, y, b, 1.0f / (float)p->global_batch, t->dlogits, &step_acc[0],
                    &correct, err);
    step_acc[1] = (double)correct;
    t->nan_end = dl_fault_nan_due(t->rank, step) ? m->n_params : 0;
    if (!rc)
        rc = dl_model_backward(m, t->dlogits, b, err);
    if (!rc)
        rc = poison_grads(t, 0, err);
    if (!rc) { /* with buckets, the wait for those not done during the backward pass */
        double t0 = now_s();
        rc = t->buckets ? dl_buckets_finish(t->buckets, err) : grads_allreduce(t, err);
        t->allreduce_s += now_s() - t0;
    }
    return rc;
}

/* What every rank must do after a step, decided together: one all-reduce
 * of the ranks' flags (the maximum of each), so no rank ever acts alone. */
typedef struct step_control {
    int64_t signal;   /* a pre-emption signal arrived on some rank (its number) */
    int64_t bad;      /* some rank saw a non-finite loss or gradient */
    int64_t time_due; /* rank 0's clock says a timed checkpoint is due */
} step_control_t;

static int agree_control(trainer_t *t, double loss_sum, step_control_t *c, dl_err_t *err)
{
    const dl_model_t *m = &t->model;
    int finite = isfinite(loss_sum);
    if (t->dev == DL_DEV_CPU)
        finite = finite && all_finite(m->grads, m->n_params);
    else if (finite) {
        int rc = dl_cuda_all_finite(m->cuda, m->grads, m->n_params, &finite, err);
        if (rc)
            return rc;
    }
    double every_s = 60.0 * t->cfg->ckpt.every_minutes;
    int64_t v[3] = {
        -(int64_t)dl_signal_pending(), -(int64_t)!finite,
        -(int64_t)(t->rank == 0 && every_s > 0 && now_s() - t->last_ckpt_time >= every_s)};
    int rc = dl_comm_allreduce_min_i64(t->comm, v, 3, err);
    c->signal = -v[0];
    c->bad = -v[1];
    c->time_due = -v[2];
    return rc;
}

/* A step every rank agreed is bad: its update is skipped and the model's
 * state restored. After [train] max_bad_steps in a row *rollback is set if
 * there is a checkpoint to go back to; without one the run cannot go on. */
static int skip_bad_step(trainer_t *t, int64_t step, int *rollback, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    if (m->n_state) {
        int rc = dl_dev_copy(m->cuda, m->state, t->state_backup, (size_t)m->n_state * sizeof(float),
                             DL_COPY_D2D, err);
        if (rc)
            return rc;
    }
    t->bad_run++;
    if (t->rank == 0)
        dl_metrics_say(&t->metrics,
                       "step %lld: non-finite loss or gradient on some rank; update skipped (%lld "
                       "in a row, at most %lld)",
                       (long long)step + 1, (long long)t->bad_run,
                       (long long)t->cfg->max_bad_steps);
    *rollback = t->bad_run >= t->cfg->max_bad_steps && t->last_ckpt_step >= 0;
    if (t->bad_run >= t->cfg->max_bad_steps && !*rollback)
        return DL_ERR(err, DL_EINPUT,
                      "%lld steps in a row up to step %lld had a non-finite loss or gradient and "
                      "there is no checkpoint to roll back to; lower [optim] lr or add warm-up "
                      "([schedule] warmup_steps)",
                      (long long)t->bad_run, (long long)step + 1);
    return 0;
}

typedef struct run_result {
    double test_loss, test_acc, train_loss, train_s, wall_s;
    int64_t peak_rss_kib; /* the largest over all ranks */
    int ranks_identical;  /* every rank ended with the same parameters */
} run_result_t;

/* Whether every rank holds the same parameters: the smallest and largest
 * of the ranks' parameter digests agree (taken as two 32-bit halves, so
 * negating for the maximum cannot overflow). Differing parameters mean a
 * bug or a faulty node, and the results are not written. */
static int check_ranks_identical(trainer_t *t, run_result_t *r, dl_err_t *err)
{
    int rc = pull(t, err);
    if (rc)
        return rc;
    uint64_t d = dl_model_digest(&t->model);
    int64_t hi = (int64_t)(d >> 32), lo = (int64_t)(d & 0xffffffffu);
    int64_t v[4] = {hi, lo, -hi, -lo};
    rc = dl_comm_allreduce_min_i64(t->comm, v, 4, err);
    if (rc)
        return rc;
    r->ranks_identical = v[0] == -v[2] && v[1] == -v[3];
    if (!r->ranks_identical)
        return DL_ERR(err, DL_EINTERNAL,
                      "the ranks' parameters differ at the end of training (rank %d's digest is "
                      "%016llx, and some rank's differs): a bug in dltrain or a faulty node; no "
                      "results written",
                      t->rank, (unsigned long long)d);
    return 0;
}

/* The last keys of summary.json: milliseconds per step over this run's
 * steps, averaged over ranks (compute: forward, backward, optimiser and the
 * rest of the step). */
static void write_split(FILE *f, const step_split_t *s)
{
    double k = s->steps > 0 ? 1e3 / s->steps : 0.0;
    fprintf(f,
            "  \"step_ms\": %.4f,\n  \"compute_ms\": %.4f,\n  \"allreduce_ms\": %.4f,\n"
            "  \"data_wait_ms\": %.4f\n}\n",
            k * s->step_s, k * (s->step_s - s->allreduce_s - s->data_wait_s), k * s->allreduce_s,
            k * s->data_wait_s);
}

static int write_outputs(trainer_t *t, const run_result_t *r, dl_err_t *err)
{
    const dl_config_t *cfg = t->cfg;
    const dl_plan_t *p = &t->plan;
    char path[DL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/params.bin", cfg->run_dir);
    int rc = dl_params_write(path, t->model.host_params, t->model.n_params, t->model.host_state,
                             t->model.n_state, err);
    if (rc)
        return rc;

    char *json = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&json, &len);
    if (!f)
        return DL_ERR(err, DL_ENOMEM, "out of memory writing the summary");
    double samples = (double)p->total_steps * (double)p->global_batch;
    dl_data_pos_t pos =
        dl_sampler_position(&t->sampler, p->total_steps); /* where a resume goes on */
    fprintf(f,
            "{\n  \"test_accuracy\": %.6f,\n  \"test_loss\": %.6f,\n  \"train_loss\": %.6f,\n"
            "  \"steps\": %lld,\n  \"epochs\": %.4f,\n  \"world_size\": %d,\n"
            "  \"batch_size\": %lld,\n  \"global_batch_size\": %lld,\n  \"wall_s\": %.3f,\n"
            "  \"train_s\": %.3f,\n  \"samples_per_s\": %.1f,\n  \"n_params\": %lld,\n"
            "  \"params_digest\": \"%016llx\",\n  \"ranks_identical\": %s,\n"
            "  \"config_digest\": \"%016llx\",\n"
            "  \"data_order\": \"%s\",\n"
            "  \"data_position\": {\"epoch\": %lld, \"offset\": %lld, \"seed\": %llu},\n"
            "  \"data_memory_mib\": %.2f,\n  \"peak_rss_mib\": %.1f,\n"
            "  \"dltrain_version\": \"%s\",\n",
            r->test_acc, r->test_loss, r->train_loss, (long long)p->total_steps,
            (double)p->total_steps / (double)p->steps_per_epoch, p->world, (long long)p->batch,
            (long long)p->global_batch, r->wall_s, r->train_s,
            r->train_s > 0 ? samples / r->train_s : 0.0, (long long)t->model.n_params,
            (unsigned long long)dl_model_digest(&t->model), r->ranks_identical ? "true" : "false",
            (unsigned long long)dl_config_digest(cfg), dl_order_name(p->order.order),
            (long long)pos.epoch, (long long)pos.offset, (unsigned long long)pos.seed,
            (double)p->data_bytes / 1048576.0, (double)r->peak_rss_kib / 1024.0, DLTRAIN_VERSION);
    write_split(f, &t->split);
    fclose(f);
    snprintf(path, sizeof path, "%s/summary.json", cfg->run_dir);
    rc = dl_write_file_atomic(path, json, len, err);
    free(json);
    return rc;
}

/* One logged interval of `steps` steps: sums[0..2] are the data wait,
 * all-reduce and wall seconds summed over ranks. Adds it to the run's split
 * and returns the interval's seconds per step, averaged over ranks. */
static step_split_t split_add(step_split_t *run, const double *sums, int world, double steps)
{
    step_split_t per = {.steps = 1,
                        .data_wait_s = sums[0] / world / steps,
                        .allreduce_s = sums[1] / world / steps,
                        .step_s = sums[2] / world / steps};
    run->steps += steps;
    run->data_wait_s += sums[0] / world;
    run->allreduce_s += sums[1] / world;
    run->step_s += sums[2] / world;
    return per;
}

/* Reduce the loss and accuracy since the last log over all ranks; rank 0
 * prints and records them. */
static int log_step(trainer_t *t, int64_t done, double *acc, double lr, double t_start,
                    double *t_last, double *loss_out, dl_err_t *err)
{
    double steps_since = acc[2] > 0 ? acc[2] : 1; /* the steps taken, not those skipped */
    double sums[5] = {acc[0], acc[1], t->data_wait_s, t->allreduce_s, now_s() - *t_last};
    int rc = dl_comm_allreduce_sum_f64(t->comm, sums, 5, err);
    if (rc)
        return rc;
    step_split_t per = split_add(&t->split, sums + 2, t->world, steps_since);
    acc[0] = sums[0];
    acc[1] = sums[1];
    double samples = steps_since * (double)t->plan.global_batch;
    double now = now_s();
    *loss_out = acc[0] / samples;
    if (t->rank == 0) {
        dl_step_stats_t s = {
            .step = done,
            .total_steps = t->plan.total_steps,
            .epoch = (double)done / (double)t->plan.steps_per_epoch,
            .epochs_total =
                (t->plan.total_steps + t->plan.steps_per_epoch - 1) / t->plan.steps_per_epoch,
            .loss = *loss_out,
            .accuracy = acc[1] / samples,
            .lr = lr,
            .samples_per_s = samples / (now - *t_last),
            .elapsed_s = now - t_start,
            .eta_s = (now - t_start) / (double)done * (double)(t->plan.total_steps - done),
            .data_wait_ms = 1e3 * per.data_wait_s,
            .allreduce_ms = 1e3 * per.allreduce_s,
            .compute_ms = 1e3 * (per.step_s - per.data_wait_s - per.allreduce_s),
        };
        dl_metrics_step(&t->metrics, &s);
    }
    *t_last = now;
    acc[0] = acc[1] = acc[2] = 0.0;
    t->data_wait_s = t->allreduce_s = 0.0;
    return 0;
}

static int evaluates_after(const trainer_t *t, int64_t done)
{
    int64_t spe = t->plan.steps_per_epoch;
    return t->cfg->eval_every && done % spe == 0 && (done / spe) % t->cfg->eval_every == 0;
}

/* [schedule] type = plateau, after an evaluation: rank 0 updates the state
 * from the metric (reduced over all ranks) and sends it to every rank, so
 * all ranks use the identical rate. */
static int plateau_decide(trainer_t *t, double test_loss, double test_acc, dl_err_t *err)
{
    const dl_sched_cfg_t *s = &t->cfg->sched;
    if (s->type != DL_SCHED_PLATEAU)
        return 0;
    int acc = s->plateau_metric == DL_PLATEAU_TEST_ACCURACY;
    double old = t->plateau.factor, bad = (double)t->plateau.num_bad + 1, cut = 0;
    if (t->rank == 0)
        cut = dl_plateau_update(&t->plateau, s, t->plan.base_lr, acc ? test_acc : test_loss);
    const dl_plateau_t *pl = &t->plateau;
    double v[5] = {pl->factor, pl->best, (double)pl->num_bad, (double)pl->cooldown_left, cut};
    int rc = dl_comm_broadcast(t->comm, v, sizeof v, 0, err);
    if (rc)
        return rc;
    t->plateau = (dl_plateau_t){
        .factor = v[0], .best = v[1], .num_bad = (int64_t)v[2], .cooldown_left = (int64_t)v[3]};
    double rate = t->plan.base_lr * t->lr_scale;
    if (t->rank == 0 && v[4] != 0)
        dl_metrics_say(&t->metrics,
                       "plateau: %s has not improved for %.0f evaluations; learning rate %g -> %g",
                       acc ? "test accuracy" : "test loss", bad, rate * old, rate * v[0]);
    return 0;
}

/* Evaluate after `done` steps, record the result and let the schedule
 * decide; the time goes to *eval_s, not to training throughput. */
static int evaluate_and_decide(trainer_t *t, int64_t done, run_result_t *r, double *eval_s,
                               double *t_last, dl_err_t *err)
{
    double te = now_s();
    dl_comm_watch(t->comm, t->cfg->timeout_s, "the evaluation after step %lld", (long long)done);
    int rc = evaluate(t, &r->test_loss, &r->test_acc, err);
    if (!rc && t->rank == 0)
        dl_metrics_eval(&t->metrics, done, (double)(done / t->plan.steps_per_epoch), r->test_loss,
                        r->test_acc);
    if (!rc && done < t->plan.total_steps) /* no step would use a new rate */
        rc = plateau_decide(t, r->test_loss, r->test_acc, err);
    t->evaluated_at = done;
    t->eval_pending = 0;
    *eval_s += now_s() - te;
    *t_last += now_s() - te;
    return rc;
}

/* The number of steps after which the next evaluation (or the end) comes:
 * batches are not requested beyond it. */
static int64_t eval_barrier(const trainer_t *t, int64_t step)
{
    int64_t spe = t->plan.steps_per_epoch, total = t->plan.total_steps;
    for (int64_t done = (step / spe + 1) * spe; done < total; done += spe)
        if (evaluates_after(t, done))
            return done;
    return total;
}

/* Go back to the newest checkpoint that verifies, with the learning rate
 * lowered: the batches already requested are taken and dropped first. */
static int roll_back(trainer_t *t, int64_t step, dl_err_t *err)
{
    int rc = 0;
    for (int64_t k = step + 1; !rc && k < t->requested; k++) {
        float *x;
        int32_t *y;
        int n;
        rc = take_batch(t, &x, &y, &n, NULL, err);
    }
    watch_checkpoint(t, "the roll-back", step + 1);
    rc = agree(t->comm, rc, err);
    char path[DL_PATH_MAX + 64] = "";
    int found = 0;
    if (!rc)
        rc = find_newest(t, path, sizeof path, &found, err);
    if (!rc && !found)
        rc = DL_ERR(err, DL_EINPUT,
                    "the run must roll back after %lld non-finite steps, but no checkpoint in %s "
                    "verifies",
                    (long long)t->bad_run, t->ckpt_dir);
    double scale = t->lr_scale * t->cfg->bad_step_lr_factor;
    if (!rc)
        rc = load_checkpoint(t, path, err);
    if (rc)
        return rc;
    t->rollback_repeats = t->start_step == t->rollback_to ? t->rollback_repeats + 1 : 0;
    t->rollback_to = t->start_step;
    if (t->rollback_repeats >= 2)
        return DL_ERR(err, DL_EINPUT,
                      "rolled back to the checkpoint of step %lld three times, with the learning "
                      "rate lowered each time, and the steps after it are still not finite; "
                      "lower [optim] lr or add warm-up ([schedule] warmup_steps)",
                      (long long)t->start_step);
    t->lr_scale = scale;
    t->bad_run = 0;
    t->requested = t->start_step;
    if (t->rank == 0)
        dl_metrics_say(&t->metrics,
                       "rolled back from step %lld to the checkpoint of step %lld (%s); learning "
                       "rate now x%.3g",
                       (long long)step + 1, (long long)t->start_step, path, t->lr_scale);
    return 0;
}

/* Saving the state at the end of step `done`: every every_steps steps, when
 * rank 0's clock says so, and at the end of training, if checkpoints are
 * configured; always when a signal stops the run. */
static int wants_checkpoint(const trainer_t *t, int64_t done, const step_control_t *c)
{
    const dl_ckpt_cfg_t *k = &t->cfg->ckpt;
    int configured = k->every_steps > 0 || k->every_minutes > 0;
    return c->signal || c->time_due || (k->every_steps > 0 && done % k->every_steps == 0) ||
           (configured && done == t->plan.total_steps);
}

static int run_loop(trainer_t *t, run_result_t *r, dl_err_t *err)
{
    const dl_config_t *cfg = t->cfg;
    const dl_plan_t *p = &t->plan;
    double t0 = now_s(), t_last = t0, eval_s = 0.0;
    double acc[3] = {0, 0, 0}; /* loss sum, correct, good steps since the last log */
    int64_t last_eval = -1;
    int rc = 0;
    t->requested = t->start_step;
    for (int64_t step = t->start_step; step < p->total_steps && !rc; step++) {
        dl_comm_watch(t->comm, cfg->timeout_s, "step %lld", (long long)step + 1);
        if (t->eval_pending && (rc = evaluate_and_decide(t, step, r, &eval_s, &t_last, err)) != 0)
            break;
        /* the rate the optimiser uses, as metrics.csv shows it */
        double lr = dl_schedule_lr(&cfg->sched, p->base_lr, step, p->total_steps) *
                    t->plateau.factor * t->lr_scale;
        rc = prefetch(t, step, eval_barrier(t, step), err);
        double step_acc[2] = {0, 0};
        step_control_t ctl = {0};
        if (!rc)
            rc = train_step(t, step, step_acc, err);
        if (!rc)
            rc = agree_control(t, step_acc[0], &ctl, err);
        int rollback = 0;
        if (!rc && ctl.bad) {
            rc = skip_bad_step(t, step, &rollback, err);
            if (!rc && rollback) {
                rc = roll_back(t, step, err);
                step = t->start_step - 1; /* the loop goes on at the checkpoint's step */
                continue;
            }
        } else if (!rc) {
            t->bad_run = 0;
            rc = dl_optim_step_dev(&t->opt, t->model.params, t->model.grads, lr, err);
            acc[0] += step_acc[0];
            acc[1] += step_acc[1];
            acc[2] += 1;
        }
        int64_t done = step + 1;
        if (!rc && wants_checkpoint(t, done, &ctl)) {
            rc = save_checkpoint(t, done, t->wall_before_s + now_s() - t0, err);
            dl_comm_watch(t->comm, cfg->timeout_s, "step %lld", (long long)done);
        }
        if (!rc && ctl.signal) {
            char name[32];
            rc = DL_ERR(err, DL_EREQUEUE,
                        "%s received; stopped after step %lld of %lld (exit status %d: requeue "
                        "me)",
                        dl_signal_name((int)ctl.signal, name, sizeof name), (long long)step + 1,
                        (long long)p->total_steps, DL_EXIT_REQUEUE);
        }
        if (!rc && (done % cfg->log_every == 0 || done == p->total_steps)) {
            rc = log_step(t, done, acc, lr, t0, &t_last, &r->train_loss, err);
        }
        if (!rc && evaluates_after(t, done)) {
            rc = evaluate_and_decide(t, done, r, &eval_s, &t_last, err);
            last_eval = done;
        }
    }
    if (!rc && last_eval != p->total_steps) {
        double te = now_s();
        dl_comm_watch(t->comm, cfg->timeout_s, "the evaluation after step %lld",
                      (long long)p->total_steps);
        rc = evaluate(t, &r->test_loss, &r->test_acc, err);
        if (!rc && t->rank == 0)
            dl_metrics_eval(&t->metrics, p->total_steps,
                            (double)p->total_steps / (double)p->steps_per_epoch, r->test_loss,
                            r->test_acc);
        eval_s += now_s() - te;
    }
    r->train_s = now_s() - t0 - eval_s;
    return rc;
}

static void announce(trainer_t *t, const dl_dist_t *dist)
{
    const dl_plan_t *p = &t->plan;
    dl_metrics_say(&t->metrics,
                   "dltrain %s: %d rank(s), %d per node, %d BLAS thread(s) per rank (OpenBLAS "
                   "%s kernels); %lld parameters",
                   DLTRAIN_VERSION, p->world, dist->local_size, dist->threads, dl_blas_corename(),
                   (long long)p->n_params);
    dl_metrics_say(&t->metrics,
                   "data: %lld training samples (%d x %d x %d, %d classes), %lld test samples; "
                   "global batch %lld (%lld per rank), %lld steps per epoch, %lld steps",
                   (long long)p->train.n, p->train.c, p->train.h, p->train.w, p->train.num_classes,
                   (long long)p->test.n, (long long)p->global_batch, (long long)p->batch,
                   (long long)p->steps_per_epoch, (long long)p->total_steps);
    dl_metrics_say(&t->metrics, "data order: %s; data pipeline memory %.1f MiB per rank",
                   dl_order_name(p->order.order), (double)p->data_bytes / 1048576.0);
    char lr[160];
    dl_plan_lr_text(t->cfg, p->global_batch, lr, sizeof lr);
    dl_metrics_say(&t->metrics, "learning rate: %s", lr);
    if (t->buckets)
        dl_metrics_say(&t->metrics,
                       "gradient all-reduce: %d bucket(s) of up to %g MiB (the first %g MiB), "
                       "each started during the backward pass",
                       dl_buckets_count(t->buckets), t->cfg->bucket_mb,
                       t->cfg->first_bucket_mb > 0 && t->cfg->first_bucket_mb < t->cfg->bucket_mb
                           ? t->cfg->first_bucket_mb
                           : t->cfg->bucket_mb);
    if (t->cfg->timeout_s > 0 && !dl_comm_watchdog_running(t->comm))
        dl_metrics_say(&t->metrics, "note: the watchdog ([train] timeout) is off: this MPI library "
                                    "does not support MPI_THREAD_MULTIPLE, which it needs");
}

/* What rank 0 learns of every rank for the start-up report. */
typedef struct rank_info {
    char host[64];
    char device[160];
    int32_t local_rank, local_size, threads, pid;
} rank_info_t;

/* "0-3,6,8-9": the ranks in r[0..n-1] (ascending) as ranges. */
static void ranges(const int *r, int n, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len < size; i++) {
        int j = i;
        while (j + 1 < n && r[j + 1] == r[j] + 1)
            j++;
        int w = j > i ? snprintf(out + len, size - len, "%s%d-%d", i ? "," : "", r[i], r[j])
                      : snprintf(out + len, size - len, "%s%d", i ? "," : "", r[i]);
        len += w > 0 ? (size_t)w : 0;
        i = j;
    }
}

/* Rank 0 prints, once, where the ranks run: per node, its ranks, their
 * local ranks, device, BLAS threads and process ids (to find a rank's
 * process when something hangs). Collective. */
static int report_ranks(trainer_t *t, const dl_dist_t *dist, dl_err_t *err)
{
    rank_info_t me = {.local_rank = dist->local_rank,
                      .local_size = dist->local_size,
                      .threads = dist->threads,
                      .pid = (int32_t)getpid()};
    snprintf(me.host, sizeof me.host, "%.63s", dist->host);
    snprintf(me.device, sizeof me.device, "%s", t->device_name);
    rank_info_t *all = NULL;
    int *idx = NULL, rc = 0;
    if (t->rank == 0 && (!(all = dl_calloc((size_t)t->world, sizeof *all, err)) ||
                         !(idx = dl_calloc((size_t)t->world, sizeof *idx, err))))
        rc = DL_ENOMEM;
    rc = agree(t->comm, rc, err);
    if (!rc)
        rc = dl_comm_gather(t->comm, &me, all, (int64_t)sizeof me, 0, err);
    if (!rc && t->rank == 0) {
        int nodes = 0;
        for (int r = 0; r < t->world; r++) {
            int first = 1; /* is r the first rank of its node? */
            for (int q = 0; q < r && first; q++)
                first = strcmp(all[q].host, all[r].host) != 0;
            if (!first)
                continue;
            if (++nodes > 16)
                continue;
            int n = 0, lo_t = INT_MAX, hi_t = 0;
            char pids[160] = "";
            size_t plen = 0;
            for (int q = r; q < t->world; q++) {
                if (strcmp(all[q].host, all[r].host) != 0)
                    continue;
                idx[n++] = q;
                lo_t = all[q].threads < lo_t ? all[q].threads : lo_t;
                hi_t = all[q].threads > hi_t ? all[q].threads : hi_t;
                if (plen < sizeof pids - 16)
                    plen += (size_t)snprintf(pids + plen, sizeof pids - plen, "%s%d",
                                             n > 1 ? "," : "", (int)all[q].pid);
                else if (plen < sizeof pids - 1)
                    plen += (size_t)snprintf(pids + plen, sizeof pids - plen, "...");
            }
            char list[160], threads[32];
            ranges(idx, n, list, sizeof list);
            if (lo_t == hi_t)
                snprintf(threads, sizeof threads, "%d", lo_t);
            else
                snprintf(threads, sizeof threads, "%d-%d", lo_t, hi_t);
            dl_metrics_say(&t->metrics,
                           "node %s: rank%s %s (local rank%s 0-%d), device %s, %s BLAS thread(s) "
                           "each, pid%s %s",
                           all[r].host, n > 1 ? "s" : "", list, n > 1 ? "s" : "", n - 1,
                           all[r].device, threads, n > 1 ? "s" : "", pids);
        }
        if (nodes > 16)
            dl_metrics_say(&t->metrics, "... and %d more nodes", nodes - 16);
    }
    free(all);
    free(idx);
    return rc;
}

/* [data] trace: one file per rank, in the run directory (which exists). */
static int open_trace(trainer_t *t, dl_err_t *err)
{
    char path[DL_PATH_MAX + 48];
    snprintf(path, sizeof path, "%s/data-trace-rank%d.txt", t->cfg->run_dir, t->rank);
    t->trace = fopen(path, "w");
    if (!t->trace)
        return DL_ERR(err, DL_EIO, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

/* The largest peak resident memory of any rank, in KiB. */
static int peak_rss(dl_comm_t *comm, int64_t *kib, dl_err_t *err)
{
    struct rusage ru;
    int64_t neg = getrusage(RUSAGE_SELF, &ru) == 0 ? -(int64_t)ru.ru_maxrss : 0;
    int rc = dl_comm_allreduce_min_i64(comm, &neg, 1, err);
    *kib = -neg;
    return rc;
}

static int write_resolved_config(const dl_config_t *cfg, dl_err_t *err)
{
    char path[DL_PATH_MAX + 32], *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return DL_ERR(err, DL_ENOMEM, "out of memory writing the resolved configuration");
    fprintf(f, "; resolved configuration of %s\n", cfg->path);
    dl_config_print(cfg, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/job.resolved.ini", cfg->run_dir);
    int rc = dl_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

int dl_train_run(const dl_config_t *cfg, const char *job_text, dl_dist_t *dist, dl_comm_t *comm,
                 dl_err_t *err)
{
    double t_start = now_s();
    /* Start-up opens every data file and may load a checkpoint: it gets the
     * checkpoint's (longer) limit. */
    dl_comm_watch(comm, cfg->ckpt.timeout_s, "start-up");
    trainer_t t = {.cfg = cfg,
                   .comm = comm,
                   .rank = dl_comm_rank(comm),
                   .world = dl_comm_size(comm),
                   .lr_scale = 1.0,
                   .rollback_to = -1,
                   .evaluated_at = -1,
                   .job_text = job_text};
    dl_plateau_init(&t.plateau, &cfg->sched);
    int rc = select_device(&t, dist, err);
    if (!rc)
        rc = dl_plan_make(cfg, t.world, &t.plan, &t.train, &t.test, err);
    if (!rc)
        rc = alloc_buffers(&t, err);
    if (!rc)
        rc = dl_fault_init(err);
    /* The run directory is touched only once the whole job is known to be good. */
    rc = agree(comm, rc, err);
    if (!rc && t.rank == 0) {
        int bar = cfg->progress == DL_PROGRESS_AUTO ? -1 : cfg->progress == DL_PROGRESS_BAR;
        rc = dl_metrics_open(&t.metrics, cfg->run_dir, bar, err);
        if (!rc)
            rc = write_resolved_config(cfg, err);
        if (!rc)
            announce(&t, dist);
    }
    rc = agree(comm, rc, err);
    if (!rc)
        rc = report_ranks(&t, dist, err);
    if (!rc && cfg->trace)
        rc = agree(comm, open_trace(&t, err), err);
    if (!rc)
        rc = init_params(&t, err);
    t.last_ckpt_time = now_s();
    if (!rc)
        rc = resume(&t, err);
    run_result_t r = {0};
    if (!rc)
        rc = run_loop(&t, &r, err);
    if (!rc && t.trace) {
        int bad = fclose(t.trace) != 0;
        t.trace = NULL;
        if (bad)
            rc = DL_ERR(err, DL_EIO, "cannot write the data trace in %s: %s", cfg->run_dir,
                        strerror(errno));
    }
    dl_comm_watch(comm, cfg->ckpt.timeout_s, "the end of training");
    rc = agree(comm, rc, err);
    if (!rc)
        rc = agree(comm, check_ranks_identical(&t, &r, err), err);
    if (!rc)
        rc = peak_rss(comm, &r.peak_rss_kib, err);
    if (!rc && t.rank == 0) {
        r.wall_s = now_s() - t_start;
        rc = write_outputs(&t, &r, err);
        if (!rc)
            dl_metrics_say(&t.metrics,
                           "done: %lld steps in %.1f s (%.0f samples/s); test accuracy %.4f, test "
                           "loss %.4f; summary in %s/summary.json",
                           (long long)t.plan.total_steps, r.wall_s,
                           (double)t.plan.total_steps * (double)t.plan.global_batch / r.train_s,
                           r.test_acc, r.test_loss, cfg->run_dir);
    }
    rc = agree(comm, rc, err);
    free_trainer(&t);
    return rc;
}

/* ---- dltrain --evaluate ---------------------------------------------------- */

/* What --evaluate evaluates and reports. */
typedef struct eval_run {
    char path[DL_PATH_MAX + 64]; /* the checkpoint (on rank 0) */
    int64_t step;                /* its step (on every rank) */
    double epoch;                /* its fractional epoch (on rank 0) */
    uint64_t config_digest;      /* of the job as given */
    double loss, acc;
} eval_run_t;

/* The job as evaluation plans it: the training batch only sizes the reads,
 * so a global batch that does not divide among this number of ranks is
 * spread as evenly as it goes, and any number of ranks can evaluate. A
 * batch that divides is kept: then the reads are those of the training's
 * own evaluation. */
static dl_config_t *eval_config(const dl_config_t *cfg, int world, dl_err_t *err)
{
    dl_config_t *c = malloc(sizeof *c);
    if (!c) {
        DL_ERR(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    *c = *cfg;
    if (c->global_batch_size && c->global_batch_size % world) {
        c->batch_size = (c->global_batch_size + world - 1) / world;
        c->global_batch_size = 0;
    }
    return c;
}

/* The checkpoint to evaluate, in e->path on rank 0: the one given, or the
 * newest in the checkpoint directory that verifies (as resume = auto). */
static int find_for_eval(trainer_t *t, const char *given, eval_run_t *e, dl_err_t *err)
{
    int found = 1, rc = 0;
    if (given)
        snprintf(e->path, sizeof e->path, "%s", given);
    else
        rc = find_newest(t, e->path, sizeof e->path, &found, err);
    if (!rc && !found)
        rc = DL_ERR(err, DL_EINPUT,
                    "no checkpoint to evaluate: none that verifies in %s (the job's checkpoint "
                    "directory, [checkpoint] dir, by default RUN_DIR/checkpoints); name a "
                    "checkpoint file with dltrain --evaluate %s --checkpoint PATH",
                    t->ckpt_dir, t->cfg->path);
    return rc;
}

/* Rank 0 reads the checkpoint's parameters and batch-norm statistics (the
 * ranks' average; not the optimiser's buffers) and sends them to every
 * rank. */
static int load_for_eval(trainer_t *t, eval_run_t *e, dl_err_t *err)
{
    dl_model_t *m = &t->model;
    dl_ckpt_meta_t meta = {0};
    int rc = 0;
    if (t->rank == 0) {
        dl_ckpt_model_t cm = ckpt_model(t);
        cm.opt_m = cm.opt_v = NULL;
        rc = dl_ckpt_read(e->path, &meta, &cm, err);
        if (!rc && meta.config_digest != e->config_digest)
            dl_metrics_say(&t->metrics,
                           "note: %s was saved by a job file with another configuration digest; "
                           "evaluating with this job file's model and test data",
                           e->path);
        free(meta.job_text);
        int64_t spe = meta.global_batch > 0 ? t->plan.train.n / meta.global_batch : 0;
        e->epoch = spe > 0 ? (double)meta.step / (double)spe : (double)meta.epoch;
    }
    rc = agree(t->comm, rc, err);
    e->step = meta.step;
    if (!rc)
        rc = dl_comm_broadcast(t->comm, &e->step, sizeof e->step, 0, err);
    if (!rc)
        rc = dl_comm_broadcast(t->comm, m->host_params, m->n_params * (int64_t)sizeof(float), 0,
                               err);
    if (!rc && m->n_state)
        rc = dl_comm_broadcast(t->comm, m->host_state, m->n_state * (int64_t)sizeof(float), 0, err);
    if (!rc)
        rc = dl_model_to_device(m, err);
    t->state_shared = 1;
    return rc;
}

/* s as a JSON string literal. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Rank 0: RUN_DIR/evaluation.json (atomically) and a row of RUN_DIR/eval.csv
 * (appended, after the training's own rows), then the result line. */
static int write_evaluation(trainer_t *t, const eval_run_t *e, dl_err_t *err)
{
    const char *dir = t->cfg->run_dir;
    int rc = dl_mkdirs(dir, err);
    if (rc)
        return rc;
    char *json = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&json, &len);
    if (!f)
        return DL_ERR(err, DL_ENOMEM, "out of memory writing the evaluation");
    fputs("{\n  \"checkpoint\": ", f);
    json_string(f, e->path);
    fprintf(f,
            ",\n  \"step\": %lld,\n  \"test_accuracy\": %.6f,\n  \"test_loss\": %.6f,\n"
            "  \"test_samples\": %lld,\n  \"world_size\": %d,\n  \"params_digest\": \"%016llx\",\n"
            "  \"config_digest\": \"%016llx\",\n  \"dltrain_version\": \"%s\"\n}\n",
            (long long)e->step, e->acc, e->loss, (long long)t->plan.test.n, t->world,
            (unsigned long long)dl_model_digest(&t->model), (unsigned long long)e->config_digest,
            DLTRAIN_VERSION);
    fclose(f);
    char path[DL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/evaluation.json", dir);
    rc = dl_write_file_atomic(path, json, len, err);
    free(json);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/eval.csv", dir);
    FILE *csv = fopen(path, "a");
    if (!csv)
        return DL_ERR(err, DL_EIO, "cannot write %s: %s", path, strerror(errno));
    if (fseek(csv, 0, SEEK_END) == 0 && ftell(csv) == 0)
        fputs("step,epoch,test_loss,test_accuracy\n", csv);
    fprintf(csv, "%lld,%.4f,%.6f,%.6f\n", (long long)e->step, e->epoch, e->loss, e->acc);
    if (fclose(csv) != 0)
        return DL_ERR(err, DL_EIO, "cannot write %s: %s", path, strerror(errno));
    dl_metrics_say(&t->metrics,
                   "evaluate: checkpoint %s (step %lld): test accuracy %.4f, test loss %.4f; "
                   "written to %s/evaluation.json",
                   e->path, (long long)e->step, e->acc, e->loss, dir);
    return 0;
}

int dl_train_evaluate(const dl_config_t *cfg, const char *ckpt_path, const dl_dist_t *dist,
                      dl_comm_t *comm, dl_err_t *err)
{
    int world = dl_comm_size(comm);
    dl_comm_watch(comm, cfg->ckpt.timeout_s, "evaluating a checkpoint");
    eval_run_t e = {.config_digest = dl_config_digest(cfg)};
    dl_config_t *ecfg = eval_config(cfg, world, err);
    trainer_t t = {.cfg = ecfg,
                   .comm = comm,
                   .rank = dl_comm_rank(comm),
                   .world = world,
                   .lr_scale = 1.0,
                   .rollback_to = -1};
    int rc = ecfg ? 0 : DL_ENOMEM;
    rc = agree(comm, rc, err);
    if (!rc)
        rc = select_device(&t, dist, err);
    if (!rc)
        rc = dl_plan_make(ecfg, world, &t.plan, &t.train, &t.test, err);
    if (!rc)
        rc = alloc_buffers(&t, err);
    rc = agree(comm, rc, err);
    if (!rc)
        rc = find_for_eval(&t, ckpt_path, &e, err);
    if (!rc)
        rc = load_for_eval(&t, &e, err);
    if (!rc)
        rc = evaluate(&t, &e.loss, &e.acc, err);
    if (!rc && t.rank == 0)
        rc = write_evaluation(&t, &e, err);
    rc = agree(comm, rc, err);
    free_trainer(&t);
    free(ecfg);
    return rc;
}
