/* dltrain job configuration; see config.h.
 *
 * inih does the INI syntax (sections, key = value, comments). Two things it
 * cannot do in the Debian build are done by our own line reader, which feeds
 * inih one line at a time: counting lines (the library is built without
 * INI_HANDLER_LINENO) and seeing every section header, including a layer
 * section with no keys, so repeated layer sections become separate layers.
 * The reader also strips leading blanks so that an indented key is never
 * taken as the continuation of the previous value (inih's multi-line mode). */
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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
static const char *const sched_names[] = {"constant", "step", "cosine", "linear", NULL};
static const char *const act_names[] = {"none", "relu", "tanh", "sigmoid", NULL};
static const char *const init_names[] = {"auto", "kaiming", "xavier", NULL};
static const char *const progress_names[] = {"auto", "bar", "lines", NULL};

#define C(field) offsetof(dl_config_t, field)
#define BIG 9.0e15 /* largest integer a double holds exactly, near enough */

/* Every key of the singleton sections. The order is the order of --check. */
static const key_def_t keys[] = {
    {"train", "device", K_ENUM, C(device), "cpu", 0, 0, device_names,
     "where each rank computes: cpu, cuda (one GPU per rank) or auto"},
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
     "BLAS threads per rank (0 = the node's cores divided among its ranks)"},
    {"train", "run_dir", K_STRING, C(run_dir), "runs/default", 0, 0, NULL,
     "directory for metrics.csv, summary.json and params.bin"},
    {"train", "log_every", K_INT, C(log_every), "50", 1, BIG, NULL,
     "steps between progress lines and metrics.csv rows"},
    {"train", "progress", K_ENUM, C(progress), "auto", 0, 0, progress_names,
     "progress display: bar (one live line), lines, or auto (bar on a terminal, lines under "
     "mpirun, whose pseudo-terminal hides where output goes)"},
    {"train", "eval_every", K_INT, C(eval_every), "1", 0, BIG, NULL,
     "epochs between test evaluations (0 = only at the end)"},
    {"data", "train", K_STRING, C(train_data), NULL, 0, 0, NULL,
     "training data: an HDF5 file, a comma-separated list or a glob of shards (required)"},
    {"data", "test", K_STRING, C(test_data), NULL, 0, 0, NULL, "test data, same forms (required)"},
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
    {"schedule", "type", K_ENUM, C(sched.type), "constant", 0, 0, sched_names,
     "constant, step, cosine or linear decay after warm-up"},
    {"schedule", "warmup_steps", K_INT, C(sched.warmup_steps), "0", 0, BIG, NULL,
     "steps of linear warm-up from lr/warmup_steps to lr"},
    {"schedule", "step_size", K_INT, C(sched.step_size), "1000", 1, BIG, NULL,
     "step: steps between decays"},
    {"schedule", "gamma", K_FLOAT, C(sched.gamma), "0.1", 0, 1, NULL,
     "step: factor applied every step_size steps"},
    {"schedule", "min_lr", K_FLOAT, C(sched.min_lr), "0", 0, 1e3, NULL,
     "cosine, linear: learning rate reached at the last step"},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

#define L(field) offsetof(dl_layer_spec_t, field)
/* Keys of the layer sections; each section occurrence is one layer. */
static const key_def_t layer_keys[] = {
    {"dense", "units", K_I32, L(units), NULL, 1, 1 << 24, NULL, "output features (required)"},
    {"dense", "activation", K_ENUM, L(act), "none", 0, 0, act_names,
     "activation after the layer: none, relu, tanh or sigmoid"},
    {"dense", "init", K_ENUM, L(init), "auto", 0, 0, init_names,
     "weight initialisation: auto (kaiming before relu, else xavier), kaiming or xavier"},
    {"dense", "bias", K_BOOL, L(bias), "true", 0, 0, NULL, "learn a bias"},
};
#define N_LAYER_KEYS ((int)(sizeof layer_keys / sizeof layer_keys[0]))

static const char *const singleton_sections[] = {"train", "data", "optim", "schedule", NULL};
static const struct {
    const char *name;
    dl_layer_type_t type;
} layer_sections[] = {{"dense", DL_LAYER_DENSE}};
#define N_LAYER_SECTIONS ((int)(sizeof layer_sections / sizeof layer_sections[0]))
#define ACCEPTED_SECTIONS "[train], [data], [optim], [schedule] and layer sections [dense]"

_Static_assert(sizeof(((dl_config_t *)0)->origin) / sizeof(int) >= N_KEYS,
               "dl_config_t.origin must have a slot per key");

/* ---- parsing state --------------------------------------------------- */

typedef struct parse_state {
    dl_config_t *cfg;
    dl_err_t *err;
    const char *text; /* remaining input */
    int line;         /* line number of the line last handed to inih */
    int section_kind; /* 0 none yet, 1 singleton, 2 layer */
    int section_line[8];
    int layer_key_line[DL_MAX_LAYERS][8];
    int failed;
} parse_state_t;

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
        if (strlen(value) >= DL_PATH_MAX)
            return fail(st, "%s: [%s] %s is longer than %d characters", at, k->section, k->name,
                        DL_PATH_MAX - 1);
        strcpy(field, value);
        return 1;
    }
    return fail(st, "internal error: key kind %d", (int)k->kind);
}

static void set_defaults(parse_state_t *st, const key_def_t *defs, int n, void *base)
{
    int saved = st->line;
    st->line = 0;
    for (int i = 0; i < n; i++)
        if (defs[i].def)
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
        set_defaults(st, layer_keys, N_LAYER_KEYS, l);
        st->section_kind = 2;
        return;
    }
    fail(st, "%s: unknown section [%s]; accepted: " ACCEPTED_SECTIONS, at, name);
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
    if (len >= (size_t)size - 1) {
        fail(st, "%s:%d: line is longer than %d characters", st->cfg->path, st->line, size - 2);
        len = 0;
    }
    memcpy(buf, p, len);
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
    if (cfg->n_layers == 0) {
        fail(st,
             "%s: no layer sections; describe the model with [dense] sections, the last one "
             "with one unit per class",
             cfg->path);
        return;
    }
    for (int i = 0; i < cfg->n_layers; i++)
        if (cfg->layers[i].type == DL_LAYER_DENSE && cfg->layers[i].units == 0) {
            fail(st, "%s:%d: [dense] needs units (the number of output features)", cfg->path,
                 cfg->layers[i].line);
            return;
        }
    if (cfg->optim.nesterov && cfg->optim.momentum <= 0.0)
        fail(st, "%s: [optim] nesterov = true needs momentum > 0", cfg->path);
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
    set_defaults(st, keys, N_KEYS, cfg);
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

static void print_config(const dl_config_t *cfg, FILE *f, int with_origin)
{
    const char *section = "";
    char value[DL_PATH_MAX + 8];
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
        }
        format_value(&keys[i], cfg, value, sizeof value);
        if (!with_origin)
            fprintf(f, "%s = %s\n", keys[i].name, value);
        else if (cfg->origin[i] > 0)
            fprintf(f, "%-18s = %-20s ; line %d\n", keys[i].name, value, cfg->origin[i]);
        else
            fprintf(f, "%-18s = %-20s ; %s\n", keys[i].name, value,
                    cfg->origin[i] < 0 ? "command line" : "default");
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        const dl_layer_spec_t *ls = &cfg->layers[l];
        fprintf(f, "\n[%s]", layer_sections[0].name);
        if (with_origin)
            fprintf(f, "%*s ; line %d", 33, "", ls->line);
        fprintf(f, "\n");
        for (int i = 0; i < N_LAYER_KEYS; i++) {
            format_value(&layer_keys[i], ls, value, sizeof value);
            fprintf(f, "%s = %s\n", layer_keys[i].name, value);
        }
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
