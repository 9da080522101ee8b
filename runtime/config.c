/* dltrain job configuration; see config.h.
 *
 * inih does the INI syntax (sections, key = value, comments). Two things it
 * cannot do in the Debian build are done by our own line reader, which feeds
 * inih one line at a time: counting lines (the library is built without
 * INI_HANDLER_LINENO) and seeing every section header, including a layer
 * section with no keys, so repeated layer sections become separate layers.
 * The reader also strips leading blanks so that an indented key is never
 * taken as the continuation of the previous value (inih's multi-line mode). */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../models/presets.h"
#include "config.h"

typedef enum { K_INT, K_I32, K_FLOAT, K_BOOL, K_ENUM, K_STRING } key_kind_t;

typedef struct key_def {
    const char *section, *name;
    key_kind_t kind;
    size_t offset;              /* into dl_config_t, or into dl_layer_spec_t for layer keys */
    const char *def;            /* default, parsed like a value; NULL = no default */
    double min, max;            /* range for numbers */
    const char *const *choices; /* names for K_ENUM, index = stored value */
    const char *help;
} key_def_t;

static const char *const device_names[] = {"cpu", "cuda", "auto", NULL};
static const char *const optim_names[] = {"sgd", "adamw", NULL};
static const char *const sched_names[] = {"constant", "step", "cosine", "linear", "plateau", NULL};
static const char *const plateau_metric_names[] = {"test_loss", "test_accuracy", NULL};
static const char *const scale_lr_names[] = {"none", "linear", NULL};
static const char *const act_names[] = {"none", "relu", "leaky", "gelu", "tanh", "sigmoid", NULL};
static const char *const init_names[] = {"auto", "kaiming", "xavier", NULL};
static const char *const progress_names[] = {"auto", "bar", "lines", NULL};

#define C(field) offsetof(dl_config_t, field)
#define BIG 9.0e15 /* largest integer a double holds exactly, near enough */

/* Every key of the singleton sections. The order is the order of --check. */
static const key_def_t keys[] = {
    {"train", "device", K_ENUM, C(device), "cpu", 0, 0, device_names,
     "where each rank computes: cpu, cuda (one GPU per rank) or auto"},
    {"train", "tf32", K_BOOL, C(tf32), "false", 0, 0, NULL,
     "on a GPU, let fp32 matrix products use TF32 tensor cores (faster, about 1e-3 relative)"},
    {"train", "epochs", K_INT, C(epochs), "0", 0, BIG, NULL,
     "passes over the training set (0 = not set; set epochs, max_steps or both)"},
    {"train", "max_steps", K_INT, C(max_steps), "0", 0, BIG, NULL,
     "optimiser steps (0 = not set); with epochs, training stops at whichever comes first"},
    {"train", "batch_size", K_INT, C(batch_size), "0", 0, 1 << 20, NULL,
     "samples per rank per step (0 = derived; default 64 when neither batch key is set)"},
    {"train", "global_batch_size", K_INT, C(global_batch_size), "0", 0, 1 << 30, NULL,
     "samples per step over all ranks; must divide by the number of ranks"},
    {"train", "seed", K_INT, C(seed), "1", 0, BIG, NULL,
     "seed of initialisation and shuffling; same seed, same run"},
    {"train", "threads", K_INT, C(threads), "0", 0, 1024, NULL,
     "BLAS threads per rank (0 = the cores this rank may run on, divided among the node's ranks "
     "that share them)"},
    {"train", "run_dir", K_STRING, C(run_dir), "runs/default", 0, 0, NULL,
     "directory for metrics.csv, summary.json and params.bin"},
    {"train", "log_every", K_INT, C(log_every), "50", 1, BIG, NULL,
     "steps between progress lines and metrics.csv rows"},
    {"train", "progress", K_ENUM, C(progress), "auto", 0, 0, progress_names,
     "progress display: bar (one live line), lines, or auto (bar on a terminal, lines under "
     "mpirun, whose pseudo-terminal hides where output goes)"},
    {"train", "eval_every", K_INT, C(eval_every), "1", 0, BIG, NULL,
     "epochs between test evaluations (0 = only at the end)"},
    {"train", "label_smoothing", K_FLOAT, C(label_smoothing), "0", 0, 0.999, NULL,
     "softmax cross-entropy target: (1 - e) * onehot + e / classes"},
    {"train", "max_bad_steps", K_INT, C(max_bad_steps), "3", 1, BIG, NULL,
     "steps in a row with a non-finite loss or gradient (each skipped) before the run rolls back "
     "to its last checkpoint"},
    {"train", "bad_step_lr_factor", K_FLOAT, C(bad_step_lr_factor), "0.5", 1e-6, 1, NULL,
     "the learning rate is multiplied by this after each roll-back"},
    {"train", "timeout", K_FLOAT, C(timeout_s), "600", 0, 1e7, NULL,
     "watchdog: seconds a rank may wait at a step's collective for the others before the job "
     "ends with status 3, naming the ranks that did not arrive (0 = off)"},
    {"train", "bucket_mb", K_FLOAT, C(bucket_mb), "25", 0, 1e6, NULL,
     "gradient all-reduce in buckets of this many MiB, each started as soon as the backward "
     "pass has made its gradients final (0 = one all-reduce after the backward pass)"},
    {"train", "first_bucket_mb", K_FLOAT, C(first_bucket_mb), "1", 0, 1e6, NULL,
     "MiB of the first bucket, the last layers' gradients, which are ready first (at most "
     "bucket_mb; 0 = bucket_mb)"},
    {"data", "train", K_STRING, C(train_data), NULL, 0, DL_SPEC_MAX - 1, NULL,
     "training data: an HDF5 file, a comma-separated list or a glob of shards (required)"},
    {"data", "test", K_STRING, C(test_data), NULL, 0, DL_SPEC_MAX - 1, NULL,
     "test data, same forms (required)"},
    {"data", "prefetch", K_INT, C(prefetch), "2", 1, 64, NULL,
     "batches the I/O thread reads ahead of the step that needs them"},
    {"data", "shuffle", K_BOOL, C(shuffle), "true", 0, 0, NULL,
     "a new seeded order every epoch; false reads the samples in file order"},
    {"data", "shuffle_block", K_INT, C(shuffle_block), "0", 0, BIG, NULL,
     "0 = one permutation of all samples per epoch (every rank holds 8 bytes per sample); "
     "N = stream: shuffle the shard order and blocks of N consecutive samples, then mix them "
     "through the shuffle buffer (for datasets too large for a permutation; docs/data.md)"},
    {"data", "shuffle_buffer", K_INT, C(shuffle_buffer), "16384", 1, BIG, NULL,
     "stream order: sample indices the shuffle buffer mixes (more = closer to a full shuffle, "
     "8 bytes each)"},
    {"data", "memory_budget_mb", K_INT, C(memory_budget_mb), "0", 0, BIG, NULL,
     "MiB the data pipeline of each rank may hold (sample order, prefetched batches, read "
     "buffers, mapped data files); the job stops before training if it needs more (0 = no "
     "limit)"},
    {"data", "trace", K_BOOL, C(trace), "false", 0, 0, NULL,
     "write the sample indices of every step to RUN_DIR/data-trace-rankR.txt (one file per "
     "rank, for checking coverage)"},
    {"data", "crop_padding", K_INT, C(crop_padding), "0", 0, 64, NULL,
     "augmentation: random crop after zero-padding each side by this many pixels (0 = off)"},
    {"data", "flip", K_BOOL, C(flip), "false", 0, 0, NULL,
     "augmentation: random horizontal flip of half the training samples"},
    {"model", "preset", K_ENUM, C(preset), "none", 0, 0, dl_preset_names,
     "a named model instead of layer sections (docs/models.md): mlp, lenet, cnn2, cnn2bn, resnet8"},
    {"model", "init_from", K_STRING, C(init_from), NULL, 0, 0, NULL,
     "start from the parameters in this params.bin instead of the seeded initialisation"},
    {"checkpoint", "dir", K_STRING, C(ckpt.dir), NULL, 0, 0, NULL,
     "directory of the checkpoints (default: RUN_DIR/checkpoints)"},
    {"checkpoint", "every_steps", K_INT, C(ckpt.every_steps), "0", 0, BIG, NULL,
     "save a checkpoint every this many steps (0 = not by steps)"},
    {"checkpoint", "every_minutes", K_FLOAT, C(ckpt.every_minutes), "0", 0, 1e6, NULL,
     "save a checkpoint when this many minutes have passed since the last (0 = not by time)"},
    {"checkpoint", "keep_last", K_INT, C(ckpt.keep_last), "3", 1, 1000000, NULL,
     "how many of the newest checkpoints to keep"},
    {"checkpoint", "keep_every", K_INT, C(ckpt.keep_every), "0", 0, BIG, NULL,
     "also keep every checkpoint whose step is a multiple of this (0 = none)"},
    {"checkpoint", "resume", K_STRING, C(ckpt.resume), "auto", 0, 0, NULL,
     "auto (the newest checkpoint that verifies, if any), never, or the path of a checkpoint"},
    {"checkpoint", "timeout", K_FLOAT, C(ckpt.timeout_s), "1800", 0, 1e7, NULL,
     "watchdog: seconds the ranks wait while rank 0 writes or reads a checkpoint (0 = no "
     "limit)"},
    {"optim", "type", K_ENUM, C(optim.type), "sgd", 0, 0, optim_names, "sgd or adamw"},
    {"optim", "lr", K_FLOAT, C(optim.lr), "0.01", 0, 1e3, NULL, "peak learning rate"},
    {"optim", "momentum", K_FLOAT, C(optim.momentum), "0", 0, 0.999999, NULL,
     "sgd: momentum factor"},
    {"optim", "nesterov", K_BOOL, C(optim.nesterov), "false", 0, 0, NULL,
     "sgd: Nesterov momentum (needs momentum > 0)"},
    {"optim", "weight_decay", K_FLOAT, C(optim.weight_decay), "0", 0, 1e3, NULL,
     "sgd: L2 penalty added to the gradient; adamw: decoupled decay"},
    {"optim", "beta1", K_FLOAT, C(optim.beta1), "0.9", 0, 0.999999, NULL, "adamw: beta1"},
    {"optim", "beta2", K_FLOAT, C(optim.beta2), "0.999", 0, 0.999999999, NULL, "adamw: beta2"},
    {"optim", "eps", K_FLOAT, C(optim.eps), "1e-8", 1e-30, 1, NULL, "adamw: epsilon"},
    {"optim", "scale_lr", K_ENUM, C(optim.scale_lr), "none", 0, 0, scale_lr_names,
     "none, or linear: the rate used is lr x global batch / reference_batch (recomputed when a "
     "run resumes with another global batch)"},
    {"optim", "reference_batch", K_INT, C(optim.reference_batch), "256", 1, 1 << 30, NULL,
     "scale_lr = linear: the global batch at which lr applies unscaled"},
    {"schedule", "type", K_ENUM, C(sched.type), "constant", 0, 0, sched_names,
     "constant, step, cosine or linear decay after warm-up, or plateau (cut by gamma when the "
     "test metric stops improving)"},
    {"schedule", "warmup_steps", K_INT, C(sched.warmup_steps), "0", 0, BIG, NULL,
     "steps of linear warm-up from lr/warmup_steps to lr"},
    {"schedule", "step_size", K_INT, C(sched.step_size), "1000", 1, BIG, NULL,
     "step: steps between decays"},
    {"schedule", "gamma", K_FLOAT, C(sched.gamma), "0.1", 0, 1, NULL,
     "step: factor applied every step_size steps; plateau: factor of each cut"},
    {"schedule", "min_lr", K_FLOAT, C(sched.min_lr), "0", 0, 1e3, NULL,
     "cosine, linear: learning rate reached at the last step; plateau: the lowest rate a cut "
     "gives"},
    {"schedule", "plateau_metric", K_ENUM, C(sched.plateau_metric), "test_loss", 0, 0,
     plateau_metric_names,
     "plateau: the evaluation's metric watched: test_loss (lower is better) or test_accuracy "
     "(higher is better)"},
    {"schedule", "patience", K_INT, C(sched.patience), "2", 0, BIG, NULL,
     "plateau: evaluations in a row without improvement that are tolerated; the next one cuts"},
    {"schedule", "threshold", K_FLOAT, C(sched.threshold), "1e-4", 0, 1e6, NULL,
     "plateau: relative change of the metric that counts as an improvement"},
    {"schedule", "cooldown", K_INT, C(sched.cooldown), "0", 0, BIG, NULL,
     "plateau: evaluations after a cut during which no evaluation counts as bad"},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

#define L(field) offsetof(dl_layer_spec_t, field)
#define NAME_KEY(sec)                                                                              \
    {                                                                                              \
        sec, "name", K_STRING, L(name), NULL, 0, DL_NAME_MAX - 1, NULL,                            \
            "a name for [shortcut] from = NAME (letters, digits, _ and -)"                         \
    }
#define ACT_KEY(sec, what)                                                                         \
    {                                                                                              \
        sec, "activation", K_ENUM, L(act), "none", 0, 0, act_names, "activation after the " what   \
    }
#define INIT_KEY(sec)                                                                              \
    {                                                                                              \
        sec, "init", K_ENUM, L(init), "auto", 0, 0, init_names,                                    \
            "weights: auto (kaiming before relu, leaky or gelu, else xavier), kaiming or xavier"   \
    }
/* Keys of the layer sections; each section occurrence is one layer. A key
 * with no default (NULL) is required in its section. */
static const key_def_t layer_keys[] = {
    NAME_KEY("dense"),
    {"dense", "units", K_I32, L(units), NULL, 1, 1 << 24, NULL, "output features (required)"},
    ACT_KEY("dense", "layer"),
    INIT_KEY("dense"),
    {"dense", "bias", K_BOOL, L(bias), "true", 0, 0, NULL, "learn a bias"},
    NAME_KEY("conv"),
    {"conv", "filters", K_I32, L(filters), NULL, 1, 1 << 16, NULL, "output channels (required)"},
    {"conv", "size", K_I32, L(size), "3", 1, 64, NULL, "kernel height and width"},
    {"conv", "stride", K_I32, L(stride), "1", 1, 64, NULL, "step between kernel positions"},
    {"conv", "pad", K_I32, L(pad), "-1", -1, 64, NULL,
     "zero padding on each side in pixels (-1 = size / 2, which keeps the size at stride 1)"},
    {"conv", "groups", K_I32, L(groups), "1", 1, 1 << 16, NULL,
     "channel groups; input channels and filters must divide by it"},
    ACT_KEY("conv", "convolution"),
    INIT_KEY("conv"),
    {"conv", "bias", K_BOOL, L(bias), "true", 0, 0, NULL,
     "learn a bias (false before a batchnorm, which has its own)"},
    NAME_KEY("maxpool"),
    {"maxpool", "size", K_I32, L(size), "2", 1, 64, NULL, "window height and width"},
    {"maxpool", "stride", K_I32, L(stride), "0", 0, 64, NULL, "step between windows (0 = size)"},
    {"maxpool", "pad", K_I32, L(pad), "0", 0, 32, NULL,
     "padding on each side (never chosen as the maximum); at most size / 2"},
    NAME_KEY("avgpool"),
    {"avgpool", "size", K_I32, L(size), "0", 0, 64, NULL,
     "window height and width (0 = global average over the whole map)"},
    {"avgpool", "stride", K_I32, L(stride), "0", 0, 64, NULL, "step between windows (0 = size)"},
    {"avgpool", "pad", K_I32, L(pad), "0", 0, 32, NULL,
     "zero padding on each side, counted in the average"},
    NAME_KEY("batchnorm"),
    {"batchnorm", "momentum", K_FLOAT, L(momentum), "0.1", 0, 1, NULL,
     "weight of the batch in the running statistics"},
    {"batchnorm", "eps", K_FLOAT, L(eps), "1e-5", 1e-12, 1, NULL, "added to the variance"},
    {"batchnorm", "sync", K_BOOL, L(sync), "false", 0, 0, NULL,
     "statistics over the batch of all ranks (default: each rank's own samples)"},
    NAME_KEY("activation"),
    {"activation", "type", K_ENUM, L(act), NULL, 0, 0, act_names,
     "relu, leaky, gelu, tanh, sigmoid or none (required)"},
    NAME_KEY("dropout"),
    {"dropout", "rate", K_FLOAT, L(rate), "0.5", 0, 0.999, NULL,
     "probability of zeroing each element in training"},
    NAME_KEY("shortcut"),
    {"shortcut", "from", K_STRING, L(from_ref), NULL, 0, DL_NAME_MAX - 1, NULL,
     "the layer section whose output is added: -k for k sections back, or its name (required)"},
    ACT_KEY("shortcut", "sum"),
    NAME_KEY("flatten"),
};
#define N_LAYER_KEYS ((int)(sizeof layer_keys / sizeof layer_keys[0]))

static const char *const singleton_sections[] = {"train", "data",       "optim", "schedule",
                                                 "model", "checkpoint", NULL};
static const struct {
    const char *name;
    dl_layer_type_t type;
} layer_sections[] = {
    {"dense", DL_LAYER_DENSE},         {"conv", DL_LAYER_CONV},
    {"maxpool", DL_LAYER_MAXPOOL},     {"avgpool", DL_LAYER_AVGPOOL},
    {"batchnorm", DL_LAYER_BATCHNORM}, {"activation", DL_LAYER_ACTIVATION},
    {"dropout", DL_LAYER_DROPOUT},     {"shortcut", DL_LAYER_SHORTCUT},
    {"flatten", DL_LAYER_FLATTEN},
};
#define N_LAYER_SECTIONS ((int)(sizeof layer_sections / sizeof layer_sections[0]))
#define ACCEPTED_SECTIONS                                                                          \
    "[train], [data], [optim], [schedule], [model], [checkpoint] and layer sections [dense], "     \
    "[conv], "                                                                                     \
    "[maxpool], [avgpool], [batchnorm], [activation], [dropout], [shortcut], [flatten]"

_Static_assert(sizeof(((dl_config_t *)0)->origin) / sizeof(int) >= N_KEYS,
               "dl_config_t.origin must have a slot per key");
_Static_assert(N_LAYER_KEYS <= 64, "parse_state_t.layer_key_line needs a slot per layer key");

/* ---- parsing state --------------------------------------------------- */

typedef struct parse_state {
    dl_config_t *cfg;
    dl_err_t *err;
    const char *text; /* remaining input */
    int line;         /* line number of the line last handed to inih */
    int section_kind; /* 0 none yet, 1 singleton, 2 layer */
    int section_line[8];
    int layer_key_line[DL_MAX_LAYERS][64];
    int failed;
    char *long_value; /* the value of the current line, when it is too long for inih */
} parse_state_t;

/* What inih gets as the value of a line too long for its buffer (Debian's
 * libinih reads at most 200 bytes a line); on_key substitutes long_value. */
#define LONG_VALUE "\x1f"

static int fail(parse_state_t *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_state_t *st, const char *fmt, ...)
{
    if (st->failed)
        return 0;
    st->failed = 1;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    DL_ERR(st->err, DL_EINPUT, "%s", msg);
    return 0;
}

static int section_index(const char *name)
{
    for (int i = 0; singleton_sections[i]; i++)
        if (strcmp(singleton_sections[i], name) == 0)
            return i;
    return -1;
}

static int layer_section_index(const char *name)
{
    for (int i = 0; i < N_LAYER_SECTIONS; i++)
        if (strcmp(layer_sections[i].name, name) == 0)
            return i;
    return -1;
}

static const char *layer_section_name(dl_layer_type_t t)
{
    for (int i = 0; i < N_LAYER_SECTIONS; i++)
        if (layer_sections[i].type == t)
            return layer_sections[i].name;
    return "?";
}

/* Levenshtein distance, for "did you mean" hints on misspelt names. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* Append ", accepted: a, b, c" and a "did you mean" hint for key names. */
static void describe_keys(const key_def_t *defs, int n, const char *section, const char *bad,
                          char *out, size_t size)
{
    size_t len = 0;
    const char *best = NULL;
    int best_d = 3;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(defs[i].section, section) != 0)
            continue;
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s", len ? ", " : "",
                                defs[i].name);
        int d = edit_distance(bad, defs[i].name);
        if (d < best_d) {
            best_d = d;
            best = defs[i].name;
        }
    }
    if (best && len < size)
        snprintf(out + len, size - len, " (did you mean '%s'?)", best);
}

static const char *where(const parse_state_t *st, char *buf, size_t size)
{
    if (st->line > 0)
        snprintf(buf, size, "%s:%d", st->cfg->path, st->line);
    else
        snprintf(buf, size, "command line");
    return buf;
}

static void list_choices(const char *const *choices, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; choices[i] && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? ", " : "", choices[i]);
}

/* Parse value into the field described by k at base; 0 or a message in st. */
static int set_value(parse_state_t *st, const key_def_t *k, void *base, const char *value)
{
    char at[DL_PATH_MAX + 32];
    where(st, at, sizeof at);
    char *field = (char *)base + k->offset;
    char *end = NULL;
    switch (k->kind) {
    case K_INT:
    case K_I32: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0')
            return fail(st,
                        "%s: [%s] %s = '%s' is not an integer; accepted: a whole number from "
                        "%.0f to %.0f",
                        at, k->section, k->name, value, k->min, k->max);
        if ((double)v < k->min || (double)v > k->max)
            return fail(st, "%s: [%s] %s = %lld is out of range; accepted: %.0f to %.0f", at,
                        k->section, k->name, v, k->min, k->max);
        if (k->kind == K_INT)
            *(int64_t *)field = v;
        else
            *(int *)field = (int)v;
        return 1;
    }
    case K_FLOAT: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(v))
            return fail(st, "%s: [%s] %s = '%s' is not a number; accepted: a number from %g to %g",
                        at, k->section, k->name, value, k->min, k->max);
        if (v < k->min || v > k->max)
            return fail(st, "%s: [%s] %s = %g is out of range; accepted: %g to %g", at, k->section,
                        k->name, v, k->min, k->max);
        *(double *)field = v;
        return 1;
    }
    case K_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                    "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcmp(value, yes[i]) == 0) {
                *(int *)field = 1;
                return 1;
            }
            if (strcmp(value, no[i]) == 0) {
                *(int *)field = 0;
                return 1;
            }
        }
        return fail(st, "%s: [%s] %s = '%s' is not a boolean; accepted: true or false", at,
                    k->section, k->name, value);
    }
    case K_ENUM: {
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(value, k->choices[i]) == 0) {
                *(int *)field = i;
                return 1;
            }
        char names[256];
        list_choices(k->choices, names, sizeof names);
        return fail(st, "%s: [%s] %s = '%s' is not accepted; accepted: %s", at, k->section, k->name,
                    value, names);
    }
    case K_STRING:
        if (value[0] == '\0')
            return fail(st, "%s: [%s] %s is empty; give a value", at, k->section, k->name);
        if (strlen(value) > (k->max > 0 ? (size_t)k->max : DL_PATH_MAX - 1))
            return fail(st, "%s: [%s] %s is longer than %d characters", at, k->section, k->name,
                        k->max > 0 ? (int)k->max : DL_PATH_MAX - 1);
        strcpy(field, value);
        return 1;
    }
    return fail(st, "internal error: key kind %d", (int)k->kind);
}

/* Defaults of the keys of one section (or of all, when section is NULL). */
static void set_defaults(parse_state_t *st, const key_def_t *defs, int n, const char *section,
                         void *base)
{
    int saved = st->line;
    st->line = 0;
    for (int i = 0; i < n; i++)
        if (defs[i].def && (!section || !strcmp(section, defs[i].section)))
            set_value(st, &defs[i], base, defs[i].def);
    st->line = saved;
}

/* Start a new section seen by the line reader. */
static void begin_section(parse_state_t *st, const char *name)
{
    char at[DL_PATH_MAX + 32];
    where(st, at, sizeof at);
    int s = section_index(name), ls = layer_section_index(name);
    if (s >= 0) {
        if (st->section_line[s])
            fail(st,
                 "%s: section [%s] appears a second time (first at line %d); give each of "
                 "[train], [data], [optim] and [schedule] once",
                 at, name, st->section_line[s]);
        st->section_line[s] = st->line;
        st->section_kind = 1;
        return;
    }
    if (ls >= 0) {
        dl_config_t *cfg = st->cfg;
        if (cfg->n_layers >= DL_MAX_LAYERS) {
            fail(st, "%s: more than %d layer sections", at, DL_MAX_LAYERS);
            return;
        }
        dl_layer_spec_t *l = &cfg->layers[cfg->n_layers++];
        memset(l, 0, sizeof *l);
        l->type = layer_sections[ls].type;
        l->line = st->line;
        set_defaults(st, layer_keys, N_LAYER_KEYS, name, l);
        st->section_kind = 2;
        return;
    }
    fail(st, "%s: unknown section [%s]; accepted: " ACCEPTED_SECTIONS, at, name);
}

/* A "key = value" line longer than inih's buffer: keep its value (without
 * an inline comment or trailing blanks) in st->long_value. Returns the
 * length of the key part, to which the caller appends "=" LONG_VALUE (0
 * after an error). */
static size_t set_aside_value(parse_state_t *st, const char *p, size_t len, int size)
{
    const char *eq = memchr(p, '=', len);
    size_t klen = eq ? (size_t)(eq - p) : 0;
    if (!eq || klen + 4 >= (size_t)size - 1) {
        fail(st, "%s:%d: line is longer than %d characters and is not a key = value line",
             st->cfg->path, st->line, size - 2);
        return 0;
    }
    const char *v = eq + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    for (const char *c = v; c < end; c++)
        if (*c == ';' && c > v && (c[-1] == ' ' || c[-1] == '\t')) {
            end = c;
            break;
        }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    free(st->long_value);
    st->long_value = malloc((size_t)(end - v) + 1);
    if (!st->long_value) {
        fail(st, "%s: out of memory while parsing", st->cfg->path);
        return 0;
    }
    memcpy(st->long_value, v, (size_t)(end - v));
    st->long_value[end - v] = '\0';
    return klen;
}

/* Line reader handed to inih: one line per call, counted, section headers
 * noted, leading blanks removed. */
static char *read_line(char *buf, int size, void *stream)
{
    parse_state_t *st = stream;
    const char *p = st->text;
    if (!*p)
        return NULL;
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    st->text = nl ? nl + 1 : p + len;
    st->line++;
    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    size_t set_aside = len >= (size_t)size - 1 ? set_aside_value(st, p, len, size) : 0;
    if (len >= (size_t)size - 1)
        len = set_aside;
    memcpy(buf, p, len);
    if (set_aside) {
        memcpy(buf + len, "=" LONG_VALUE, 2);
        len += 2;
    }
    buf[len] = '\0';
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close) {
            char name[128];
            size_t n = (size_t)(close - buf - 1);
            if (n >= sizeof name)
                n = sizeof name - 1;
            memcpy(name, buf + 1, n);
            name[n] = '\0';
            begin_section(st, name);
        }
    }
    /* inih expects the newline to be kept, as fgets would. */
    buf[len] = '\n';
    buf[len + 1] = '\0';
    return buf;
}

static int find_key(const key_def_t *defs, int n, const char *section, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(defs[i].section, section) == 0 && strcmp(defs[i].name, name) == 0)
            return i;
    return -1;
}

static int apply(parse_state_t *st, const char *section, const char *name, const char *value)
{
    char at[DL_PATH_MAX + 32], names[512];
    where(st, at, sizeof at);
    dl_config_t *cfg = st->cfg;
    if (layer_section_index(section) >= 0) {
        if (st->line <= 0)
            return fail(st,
                        "command line: %s.%s: layer sections cannot be overridden from the "
                        "command line; edit the job file",
                        section, name);
        int i = find_key(layer_keys, N_LAYER_KEYS, section, name);
        if (i < 0) {
            describe_keys(layer_keys, N_LAYER_KEYS, section, name, names, sizeof names);
            return fail(st, "%s: unknown key '%s' in [%s]; accepted: %s", at, name, section, names);
        }
        int li = cfg->n_layers - 1;
        if (st->layer_key_line[li][i])
            return fail(st,
                        "%s: key '%s' appears a second time in this [%s] section (first at "
                        "line %d)",
                        at, name, section, st->layer_key_line[li][i]);
        st->layer_key_line[li][i] = st->line;
        return set_value(st, &layer_keys[i], &cfg->layers[li], value);
    }
    if (section[0] == '\0')
        return fail(st,
                    "%s: key '%s' comes before any section; put it under one of " ACCEPTED_SECTIONS,
                    at, name);
    if (section_index(section) < 0)
        return fail(st, "%s: unknown section [%s]; accepted: " ACCEPTED_SECTIONS, at, section);
    int i = find_key(keys, N_KEYS, section, name);
    if (i < 0) {
        describe_keys(keys, N_KEYS, section, name, names, sizeof names);
        return fail(st, "%s: unknown key '%s' in [%s]; accepted: %s", at, name, section, names);
    }
    if (st->line > 0 && cfg->origin[i] > 0)
        return fail(st, "%s: key '%s' appears a second time in [%s] (first at line %d)", at, name,
                    section, cfg->origin[i]);
    cfg->origin[i] = st->line > 0 ? st->line : -1;
    return set_value(st, &keys[i], cfg, value);
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    parse_state_t *st = user;
    if (st->failed)
        return 1;
    if (strcmp(value, LONG_VALUE) == 0 && st->long_value)
        value = st->long_value;
    return apply(st, section, name, value) ? 1 : 0;
}

static int apply_override(parse_state_t *st, const char *arg)
{
    const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq)
        return fail(st,
                    "command line: '%s' is not an override; accepted: section.key=value, "
                    "for example optim.lr=0.1",
                    arg);
    char section[64], name[64];
    size_t ls = (size_t)(dot - arg), ln = (size_t)(eq - dot - 1);
    if (ls >= sizeof section || ln >= sizeof name)
        return fail(st, "command line: '%s': section or key name too long", arg);
    memcpy(section, arg, ls);
    section[ls] = '\0';
    memcpy(name, dot + 1, ln);
    name[ln] = '\0';
    /* An override of one batch key replaces the file's choice of the other. */
    int bs = find_key(keys, N_KEYS, "train", "batch_size");
    int gbs = find_key(keys, N_KEYS, "train", "global_batch_size");
    if (strcmp(section, "train") == 0 && strcmp(name, "batch_size") == 0)
        st->cfg->global_batch_size = 0, st->cfg->origin[gbs] = 0;
    if (strcmp(section, "train") == 0 && strcmp(name, "global_batch_size") == 0)
        st->cfg->batch_size = 0, st->cfg->origin[bs] = 0;
    return apply(st, section, name, eq + 1);
}

/* Required layer keys: those without a default, not given in the section. */
static int check_layer_keys(parse_state_t *st, int li)
{
    const dl_layer_spec_t *l = &st->cfg->layers[li];
    const char *section = layer_section_name(l->type);
    for (int k = 0; k < N_LAYER_KEYS; k++)
        if (!layer_keys[k].def && strcmp(layer_keys[k].name, "name") != 0 &&
            !strcmp(layer_keys[k].section, section) && !st->layer_key_line[li][k])
            return !fail(st, "%s:%d: [%s] needs %s (%s)", st->cfg->path, l->line, section,
                         layer_keys[k].name, layer_keys[k].help);
    return 0;
}

/* [shortcut] from: -k (k sections back) or the name of an earlier section. */
static int resolve_from(parse_state_t *st, int li)
{
    dl_config_t *cfg = st->cfg;
    dl_layer_spec_t *l = &cfg->layers[li];
    char *end = NULL;
    long k = strtol(l->from_ref, &end, 10);
    if (end != l->from_ref && *end == '\0') {
        if (k >= 0 || li + k < 0)
            return !fail(st,
                         "%s:%d: [shortcut] from = %s; accepted: -1 to -%d (sections back) or "
                         "the name of an earlier section",
                         cfg->path, l->line, l->from_ref, li);
        l->from = (int)(li + k);
        return 0;
    }
    for (int j = 0; j < li; j++)
        if (!strcmp(cfg->layers[j].name, l->from_ref)) {
            l->from = j;
            return 0;
        }
    return !fail(st,
                 "%s:%d: [shortcut] from = %s names no earlier layer section; accepted: -k "
                 "or the name of an earlier section",
                 cfg->path, l->line, l->from_ref);
}

/* Fill defaults that depend on other keys, and check names and references. */
static int resolve_layer(parse_state_t *st, int li)
{
    dl_config_t *cfg = st->cfg;
    dl_layer_spec_t *l = &cfg->layers[li];
    if (check_layer_keys(st, li))
        return 1;
    if (l->type == DL_LAYER_CONV && l->pad < 0)
        l->pad = l->size / 2;
    if ((l->type == DL_LAYER_MAXPOOL || l->type == DL_LAYER_AVGPOOL) && l->stride == 0)
        l->stride = l->size ? l->size : 1;
    if (l->type == DL_LAYER_SHORTCUT && resolve_from(st, li))
        return 1;
    for (const char *c = l->name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return !fail(st, "%s:%d: name = %s; accepted: letters, digits, _ and -", cfg->path,
                         l->line, l->name);
    for (int j = 0; l->name[0] && j < li; j++)
        if (!strcmp(cfg->layers[j].name, l->name))
            return !fail(st, "%s:%d: name = %s is already the name of the section at line %d",
                         cfg->path, l->line, l->name, cfg->layers[j].line);
    return 0;
}

/* The model: layer sections, or a preset, not both. */
static int resolve_model(parse_state_t *st)
{
    dl_config_t *cfg = st->cfg;
    if (cfg->preset) {
        if (cfg->n_layers)
            return !fail(st,
                         "%s: [model] preset = %s and layer sections (the first at line %d) "
                         "both describe the model; use one of them",
                         cfg->path, dl_preset_names[cfg->preset], cfg->layers[0].line);
        cfg->n_layers = dl_preset_specs(cfg->preset, cfg->layers, DL_MAX_LAYERS);
        return cfg->n_layers < 0 ? !fail(st, "internal error: preset too large") : 0;
    }
    if (cfg->n_layers == 0)
        return !fail(st,
                     "%s: no layer sections; describe the model with layer sections such as "
                     "[conv] and [dense], the last a [dense] with one unit per class, or set "
                     "[model] preset",
                     cfg->path);
    for (int i = 0; i < cfg->n_layers; i++)
        if (resolve_layer(st, i))
            return 1;
    return 0;
}

/* Checks across keys, after the file and the overrides. */
static void check_required(parse_state_t *st)
{
    dl_config_t *cfg = st->cfg;
    if (st->failed)
        return;
    if (!cfg->train_data[0] || !cfg->test_data[0]) {
        fail(st,
             "%s: [data] %s is required (an HDF5 file, a comma-separated list or a glob; "
             "make one with dltrain-data)",
             cfg->path, !cfg->train_data[0] ? "train" : "test");
        return;
    }
    if (cfg->epochs == 0 && cfg->max_steps == 0) {
        fail(st,
             "%s: [train] needs epochs or max_steps (or both: training stops at whichever "
             "comes first)",
             cfg->path);
        return;
    }
    if (cfg->batch_size && cfg->global_batch_size) {
        fail(st, "%s: [train] sets both batch_size (per rank) and global_batch_size; give one",
             cfg->path);
        return;
    }
    if (!cfg->batch_size && !cfg->global_batch_size)
        cfg->batch_size = 64;
    if (resolve_model(st))
        return;
    if (cfg->optim.nesterov && cfg->optim.momentum <= 0.0)
        fail(st, "%s: [optim] nesterov = true needs momentum > 0", cfg->path);
    else if (cfg->sched.type == DL_SCHED_PLATEAU && cfg->eval_every == 0)
        fail(st,
             "%s: [schedule] type = plateau decides from evaluations, but [train] eval_every = 0 "
             "evaluates only at the end; set eval_every >= 1 or choose another schedule type",
             cfg->path);
}

int dl_config_parse(dl_config_t *cfg, const char *path, const char *text, int n_overrides,
                    char *const *overrides, dl_err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    parse_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return DL_ERR(err, DL_ENOMEM, "out of memory parsing %s", path);
    st->cfg = cfg;
    st->err = err;
    st->text = text;
    set_defaults(st, keys, N_KEYS, NULL, cfg);
    int rc = ini_parse_stream(read_line, st, on_key, st);
    if (rc < 0 && !st->failed)
        fail(st, "%s: out of memory while parsing", path);
    else if (rc > 0 && !st->failed)
        fail(st,
             "%s:%d: cannot read this line; accepted: [section], key = value, or a comment "
             "starting with ; or #",
             path, rc);
    st->line = 0;
    for (int i = 0; i < n_overrides && !st->failed; i++)
        apply_override(st, overrides[i]);
    check_required(st);
    int failed = st->failed;
    free(st->long_value);
    free(st);
    return failed ? DL_EINPUT : 0;
}

int dl_config_read_file(const char *path, char **text, dl_err_t *err)
{
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return DL_ERR(err, DL_EINPUT, "%s: cannot open the job file: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return DL_ERR(err, DL_ENOMEM, "out of memory reading %s", path);
    if (bad) {
        free(buf);
        return DL_ERR(err, DL_EINPUT, "%s: error reading the job file", path);
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return DL_ERR(err, DL_EINPUT, "%s: the job file contains a NUL byte; it must be text",
                      path);
    }
    *text = buf;
    return 0;
}

static void format_value(const key_def_t *k, const void *base, char *out, size_t size)
{
    const char *field = (const char *)base + k->offset;
    switch (k->kind) {
    case K_INT: snprintf(out, size, "%lld", (long long)*(const int64_t *)field); break;
    case K_I32: snprintf(out, size, "%d", *(const int *)field); break;
    case K_FLOAT: snprintf(out, size, "%.17g", *(const double *)field); break;
    case K_BOOL: snprintf(out, size, "%s", *(const int *)field ? "true" : "false"); break;
    case K_ENUM: snprintf(out, size, "%s", k->choices[*(const int *)field]); break;
    case K_STRING: snprintf(out, size, "%s", field); break;
    }
}

/* One key = value line; an unset string is printed as a comment, so the
 * output parses back to the same configuration. */
static void print_key(FILE *f, const key_def_t *k, const void *base, int origin, int with_origin)
{
    char value[DL_PATH_MAX + 8];
    format_value(k, base, value, sizeof value);
    const char *lead = k->kind == K_STRING && !value[0] ? "; " : "";
    if (!with_origin) {
        fprintf(f, "%s%s = %s\n", lead, k->name, value);
        return;
    }
    char from[32];
    if (origin > 0)
        snprintf(from, sizeof from, "line %d", origin);
    else
        snprintf(from, sizeof from, "%s", origin < 0 ? "command line" : "default");
    fprintf(f, "%s%-18s = %-20s ; %s\n", lead, k->name, value, from);
}

static void print_config(const dl_config_t *cfg, FILE *f, int with_origin)
{
    const char *section = "";
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
        }
        print_key(f, &keys[i], cfg, cfg->origin[i], with_origin);
    }
    /* A preset's layers are implied by its name: shown as comments. */
    const char *lead = cfg->preset ? "; " : "";
    if (cfg->preset)
        fprintf(f, "\n; the layers of preset %s:\n", dl_preset_names[cfg->preset]);
    for (int l = 0; l < cfg->n_layers; l++) {
        const dl_layer_spec_t *ls = &cfg->layers[l];
        const char *name = layer_section_name(ls->type);
        fprintf(f, "%s%s[%s]", cfg->preset ? "" : "\n", lead, name);
        if (with_origin && ls->line)
            fprintf(f, " ; line %d", ls->line);
        if (cfg->preset && ls->type == DL_LAYER_SHORTCUT)
            fprintf(f, " from = section %d", ls->from + 1);
        fprintf(f, cfg->preset ? " " : "\n");
        for (int i = 0; i < N_LAYER_KEYS; i++) {
            if (strcmp(layer_keys[i].section, name) != 0)
                continue;
            if (cfg->preset) {
                char value[DL_PATH_MAX + 8];
                format_value(&layer_keys[i], ls, value, sizeof value);
                if (value[0] && strcmp(layer_keys[i].name, "from") != 0)
                    fprintf(f, " %s=%s", layer_keys[i].name, value);
            } else {
                print_key(f, &layer_keys[i], ls, 0, 0);
            }
        }
        if (cfg->preset)
            fprintf(f, "\n");
    }
}

void dl_config_print(const dl_config_t *cfg, FILE *f)
{
    print_config(cfg, f, 1);
}

void dl_config_print_keys(FILE *f)
{
    char choices[256];
    for (int t = 0; t < 2; t++) {
        const key_def_t *defs = t ? layer_keys : keys;
        int n = t ? N_LAYER_KEYS : N_KEYS;
        for (int i = 0; i < n; i++) {
            const key_def_t *k = &defs[i];
            static const char *const kind_names[] = {"integer", "integer", "number",
                                                     "boolean", "choice",  "string"};
            fprintf(f, "%s.%s (%s", k->section, k->name, kind_names[k->kind]);
            if (k->kind == K_ENUM) {
                list_choices(k->choices, choices, sizeof choices);
                fprintf(f, ": %s", choices);
            }
            fprintf(f, "; default %s): %s\n", k->def ? k->def : "none", k->help);
        }
    }
}

uint64_t dl_config_digest(const dl_config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return 0;
    print_config(cfg, f, 0);
    fclose(f);
    uint64_t h = dl_fnv1a64(DL_FNV_INIT, buf, len);
    free(buf);
    return h;
}
