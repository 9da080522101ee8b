/* The plan of a job; see plan.h. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../models/presets.h"
#include "plan.h"

static int check_data_fit(const dl_config_t *cfg, const dl_plan_t *p, dl_err_t *err)
{
    const dl_dataset_info_t *a = &p->train, *b = &p->test;
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return DL_ERR(err, DL_EINPUT,
                      "%s: test images are %d x %d x %d but training images (%s) are %d x %d x "
                      "%d; both must have the same shape",
                      cfg->test_data, b->c, b->h, b->w, cfg->train_data, a->c, a->h, a->w);
    if (b->num_classes > a->num_classes)
        return DL_ERR(err, DL_EINPUT, "%s: test data has %d classes but training data (%s) has %d",
                      cfg->test_data, b->num_classes, cfg->train_data, a->num_classes);
    const dl_layer_spec_t *last = &p->specs[p->n_specs - 1];
    if (last->type != DL_LAYER_DENSE)
        return DL_ERR(err, DL_EINPUT,
                      "%s:%d: the last layer section is a [%s]; the last layer feeds softmax "
                      "cross-entropy and must be a [dense] with one unit per class (%d for %s)",
                      cfg->path, last->line, dl_layer_type_name(last->type), a->num_classes,
                      cfg->train_data);
    if (last->units != a->num_classes)
        return DL_ERR(err, DL_EINPUT,
                      "%s:%d: the last [dense] has %d units but %s has %d classes; the last layer "
                      "feeds softmax cross-entropy and needs one unit per class",
                      cfg->path, last->line, last->units, cfg->train_data, a->num_classes);
    if (last->act != DL_ACT_NONE)
        return DL_ERR(err, DL_EINPUT,
                      "%s:%d: the last [dense] has activation = %s; it feeds softmax "
                      "cross-entropy, so its activation must be none",
                      cfg->path, last->line, dl_act_name(last->act));
    return 0;
}

static int plan_batches(const dl_config_t *cfg, dl_plan_t *p, dl_err_t *err)
{
    if (cfg->global_batch_size) {
        if (cfg->global_batch_size % p->world != 0)
            return DL_ERR(err, DL_EINPUT,
                          "%s: [train] global_batch_size = %lld does not divide among %d ranks; "
                          "use a multiple of %d or set batch_size (per rank) instead",
                          cfg->path, (long long)cfg->global_batch_size, p->world, p->world);
        p->global_batch = cfg->global_batch_size;
        p->batch = cfg->global_batch_size / p->world;
    } else {
        p->batch = cfg->batch_size;
        p->global_batch = cfg->batch_size * p->world;
    }
    if (p->global_batch > p->train.n)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the global batch (%lld samples over %d ranks) is larger than the "
                      "training set (%lld samples in %s)",
                      cfg->path, (long long)p->global_batch, p->world, (long long)p->train.n,
                      cfg->train_data);
    /* The last partial global batch of an epoch is dropped, so every rank
     * takes the same number of equal steps. */
    p->steps_per_epoch = p->train.n / p->global_batch;
    int64_t by_epochs = cfg->epochs ? cfg->epochs * p->steps_per_epoch : INT64_MAX;
    int64_t by_steps = cfg->max_steps ? cfg->max_steps : INT64_MAX;
    p->total_steps = by_epochs < by_steps ? by_epochs : by_steps;
    p->base_lr = dl_plan_base_lr(cfg, p->global_batch);
    return 0;
}

double dl_plan_base_lr(const dl_config_t *cfg, int64_t global_batch)
{
    const dl_optim_cfg_t *o = &cfg->optim;
    if (o->scale_lr != DL_SCALE_LR_LINEAR)
        return o->lr;
    return o->lr * (double)global_batch / (double)o->reference_batch;
}

void dl_plan_lr_text(const dl_config_t *cfg, int64_t global_batch, char *out, size_t size)
{
    const dl_optim_cfg_t *o = &cfg->optim;
    if (o->scale_lr != DL_SCALE_LR_LINEAR)
        snprintf(out, size, "lr %g", o->lr);
    else
        snprintf(out, size, "lr %g x %lld/%lld = %g (scale_lr = linear)", o->lr,
                 (long long)global_batch, (long long)o->reference_batch,
                 dl_plan_base_lr(cfg, global_batch));
}

/* The training order, and the data pipeline's memory on each rank: the
 * order, the loader's prefetch slots (depth + 1 batches of stored samples,
 * labels and indices) and the batch the training thread normalises them
 * into, and the reader's scratch (raw samples of one read and where each
 * sample lies, for each dataset) plus HDF5's own buffers for every open
 * file. The files' mappings come on top (plan_map). */
static int plan_data(const dl_config_t *cfg, const dl_dataset_t *train, dl_plan_t *p, dl_err_t *err)
{
    int nf = p->train.n_files;
    p->shard_sizes = dl_calloc((size_t)nf, sizeof *p->shard_sizes, err);
    if (!p->shard_sizes)
        return DL_ENOMEM;
    for (int i = 0; i < nf; i++)
        p->shard_sizes[i] = dl_dataset_shard_size(train, i);
    p->order = (dl_sampler_cfg_t){.n = p->train.n,
                                  .global_batch = p->global_batch,
                                  .world = p->world,
                                  .seed = (uint64_t)cfg->seed,
                                  .order = !cfg->shuffle             ? DL_ORDER_FILE
                                           : cfg->shuffle_block == 0 ? DL_ORDER_PERMUTATION
                                                                     : DL_ORDER_STREAM,
                                  .block = cfg->shuffle_block,
                                  .buffer = cfg->shuffle_buffer,
                                  .shard_sizes = p->shard_sizes,
                                  .n_shards = nf};
    p->max_batch = p->batch > DL_EVAL_CHUNK ? p->batch : DL_EVAL_CHUNK;
    /* stored bytes, of the larger of the two datasets' samples */
    int64_t sample = p->in_size * (p->train.is_float || p->test.is_float ? 4 : 1);
    p->order_bytes = dl_sampler_bytes(&p->order);
    p->prefetch_bytes =
        (cfg->prefetch + 1) * p->max_batch * (sample + 4 + 8) + p->max_batch * p->in_size * 4;
    p->read_bytes = 2 * p->max_batch * (sample + 64) +
                    (int64_t)(p->train.n_files + p->test.n_files) * DL_H5_FILE_BYTES;
    p->data_bytes = p->order_bytes + p->prefetch_bytes + p->read_bytes;
    int64_t budget = cfg->memory_budget_mb << 20;
    if (budget && p->data_bytes > budget)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the data pipeline needs %.1f MiB per rank but [data] memory_budget_mb "
                      "= %lld: %.1f MiB for the %s order of %lld samples, %.1f MiB for %lld "
                      "prefetched batches of %lld samples, %.1f MiB of read buffers. Lower [data] "
                      "prefetch or the batch size%s, or raise the budget",
                      cfg->path, (double)p->data_bytes / 1048576.0,
                      (long long)cfg->memory_budget_mb, (double)p->order_bytes / 1048576.0,
                      dl_order_name(p->order.order), (long long)p->train.n,
                      (double)p->prefetch_bytes / 1048576.0, (long long)cfg->prefetch + 1,
                      (long long)p->max_batch, (double)p->read_bytes / 1048576.0,
                      p->order.order == DL_ORDER_PERMUTATION
                          ? "; set [data] shuffle_block (e.g. 1024) to stream the order instead "
                            "of holding a permutation of every sample"
                      : p->order.order == DL_ORDER_STREAM ? "; lower [data] shuffle_buffer"
                                                          : "");
    return 0;
}

/* Map the datasets' files (dl_dataset_map: samples copied without a system
 * call each) within what [data] memory_budget_mb leaves, training set
 * first; without a budget, as dl_dataset_open mapped them. Mapped pages
 * count in resident memory, so in the data pipeline's. */
static void plan_map(const dl_config_t *cfg, dl_plan_t *p, dl_dataset_t *train, dl_dataset_t *test)
{
    int64_t budget = cfg->memory_budget_mb << 20;
    if (budget) {
        int64_t left = budget - p->data_bytes;
        left -= dl_dataset_map(train, left);
        dl_dataset_map(test, left);
    }
    p->map_bytes = dl_dataset_mapped_bytes(train) + dl_dataset_mapped_bytes(test);
    p->data_bytes += p->map_bytes;
}

/* The model's sections, with a preset's "one unit per class" filled in. */
static int copy_specs(const dl_config_t *cfg, dl_plan_t *p, dl_err_t *err)
{
    p->n_specs = cfg->n_layers;
    p->specs = dl_calloc((size_t)cfg->n_layers, sizeof *p->specs, err);
    if (!p->specs)
        return DL_ENOMEM;
    memcpy(p->specs, cfg->layers, (size_t)cfg->n_layers * sizeof *p->specs);
    for (int i = 0; i < p->n_specs; i++)
        if (p->specs[i].type == DL_LAYER_DENSE && p->specs[i].units == DL_UNITS_CLASSES)
            p->specs[i].units = p->train.num_classes;
    return 0;
}

int dl_plan_make(const dl_config_t *cfg, int world, dl_plan_t *plan, dl_dataset_t **train_out,
                 dl_dataset_t **test_out, dl_err_t *err)
{
    memset(plan, 0, sizeof *plan);
    plan->world = world;
    dl_dataset_t *train = NULL, *test = NULL;
    int rc = dl_dataset_open(cfg->train_data, &train, err);
    if (!rc)
        rc = dl_dataset_open(cfg->test_data, &test, err);
    if (!rc) {
        plan->train = *dl_dataset_info(train);
        plan->test = *dl_dataset_info(test);
        plan->in_shape = (dl_shape_t){plan->train.c, plan->train.h, plan->train.w};
        plan->in_size = (int64_t)plan->train.c * plan->train.h * plan->train.w;
        rc = copy_specs(cfg, plan, err);
    }
    if (!rc)
        rc = check_data_fit(cfg, plan, err);
    if (!rc) { /* the test data as the model will see new data: with the training statistics */
        dl_dataset_normalise_as(test, dl_dataset_info(train));
        plan->test = *dl_dataset_info(test);
    }
    if (!rc)
        rc = plan_batches(cfg, plan, err);
    if (!rc)
        rc = plan_data(cfg, train, plan, err);
    if (!rc)
        plan_map(cfg, plan, train, test);
    if (!rc) {
        dl_model_t m;
        rc = dl_model_build(&m, plan->specs, plan->n_specs, plan->in_shape, 1, err);
        if (!rc) {
            plan->n_params = m.n_params;
            plan->n_state = m.n_state;
            plan->train_flops = dl_model_train_flops(&m);
            dl_model_free(&m);
        } else if (err->code == DL_EINPUT && !strncmp(err->msg, "line ", 5)) {
            char msg[sizeof err->msg + DL_PATH_MAX + 2];
            snprintf(msg, sizeof msg, "%s:%s", cfg->path, err->msg + 5);
            DL_ERR(err, DL_EINPUT, "%s", msg); /* "line N: ..." becomes "job.ini:N: ..." */
        }
    }
    if (rc)
        dl_plan_free(plan);
    if (rc || !train_out)
        dl_dataset_close(train);
    else
        *train_out = train;
    if (rc || !test_out)
        dl_dataset_close(test);
    else
        *test_out = test;
    return rc;
}

static void print_layer_table(const dl_model_t *m, FILE *f)
{
    fprintf(f, ";  #  layer        line  output shape     parameters  MFLOP/sample\n");
    for (int i = 0; i < m->n_layers; i++) {
        const dl_layer_t *l = &m->layers[i];
        char shape[48], name[32];
        snprintf(shape, sizeof shape, "%d x %d x %d", l->out.c, l->out.h, l->out.w);
        if (l->spec.type == DL_LAYER_ACTIVATION)
            snprintf(name, sizeof name, "%s", dl_act_name(l->spec.act));
        else if (l->spec.type == DL_LAYER_CONV && l->spec.act != DL_ACT_NONE &&
                 dl_act_fusable(l->spec.act)) /* applied by the convolution itself */
            snprintf(name, sizeof name, "conv+%s", dl_act_name(l->spec.act));
        else
            snprintf(name, sizeof name, "%s", l->ops->name);
        char line[16] = "-"; /* preset layers have no job-file line */
        if (l->spec.line)
            snprintf(line, sizeof line, "%d", l->spec.line);
        fprintf(f, "; %2d  %-11s %5s  %-15s %11lld  %12.3f\n", i + 1, name, line, shape,
                (long long)l->ops->n_params(l), (double)l->ops->flops(l) * 1e-6);
    }
    fprintf(f, ";     total                              %11lld  %12.3f forward, %.3f training\n",
            (long long)m->n_params, (double)dl_model_forward_flops(m) * 1e-6,
            (double)dl_model_train_flops(m) * 1e-6);
    char fused[256] = "";
    size_t len = 0;
    for (int i = 0; i + 1 < m->n_layers && len < sizeof fused - 16; i++)
        if (m->layers[i].fuse_pool)
            len +=
                (size_t)snprintf(fused + len, sizeof fused - len, "%s%d", len ? ", " : "", i + 1);
    if (len)
        fprintf(f, "; conv layer(s) %s apply the max pool after them in the same pass\n", fused);
}

int dl_plan_print(const dl_config_t *cfg, const dl_plan_t *p, FILE *f, dl_err_t *err)
{
    fprintf(f, "; training data: %s: %lld samples of %d x %d x %d, %d classes, %d file(s)\n",
            cfg->train_data, (long long)p->train.n, p->train.c, p->train.h, p->train.w,
            p->train.num_classes, p->train.n_files);
    fprintf(f, "; test data:     %s: %lld samples, %d file(s)\n", cfg->test_data,
            (long long)p->test.n, p->test.n_files);
    fprintf(f, "; ranks %d, batch %lld per rank, global batch %lld\n", p->world,
            (long long)p->batch, (long long)p->global_batch);
    fprintf(f, "; %lld steps per epoch (%lld samples dropped per epoch), %lld steps in all\n",
            (long long)p->steps_per_epoch, (long long)(p->train.n % p->global_batch),
            (long long)p->total_steps);
    char lr[160];
    dl_plan_lr_text(cfg, p->global_batch, lr, sizeof lr);
    fprintf(f, "; learning rate: %s\n", lr);
    fprintf(f, "; data order: %s", dl_order_name(p->order.order));
    if (p->order.order == DL_ORDER_STREAM)
        fprintf(f, " (blocks of %lld samples, shuffle buffer %lld)", (long long)p->order.block,
                (long long)p->order.buffer);
    fprintf(f, "; data pipeline memory per rank: %.1f MiB", (double)p->data_bytes / 1048576.0);
    if (p->map_bytes)
        fprintf(f, ", %.1f MiB of it the mapped data files", (double)p->map_bytes / 1048576.0);
    if (cfg->memory_budget_mb)
        fprintf(f, " (budget %lld MiB)", (long long)cfg->memory_budget_mb);
    fprintf(f, "\n");
    fprintf(f, "; model: %lld parameters, %.3f MFLOP per training sample\n", (long long)p->n_params,
            (double)p->train_flops * 1e-6);
    dl_model_t m;
    int rc = dl_model_build(&m, p->specs, p->n_specs, p->in_shape, 1, err);
    if (rc)
        return rc;
    print_layer_table(&m, f);
    dl_model_free(&m);
    return 0;
}

void dl_plan_free(dl_plan_t *plan)
{
    free(plan->specs);
    plan->specs = NULL;
    free(plan->shard_sizes);
    plan->shard_sizes = NULL;
}
