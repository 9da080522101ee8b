/* dltrain-data: convert IDX, NumPy .npy, CSV and token files to dltrain HDF5
 * datasets, describe and verify datasets. Exit status: 0 success, 2 bad
 * input or usage, 1 other errors. */
#include <glob.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/convert.h"
#include "io/dataset.h"
#include "io/tokens.h"

#ifndef DLTRAIN_VERSION
#error "DLTRAIN_VERSION must be defined by the build"
#endif

static const char usage_text[] =
    "usage:\n"
    "  dltrain-data idx IMAGES LABELS OUT.h5 [--shards N]\n"
    "      convert an IDX image file and its label file (gzip-compressed or plain)\n"
    "  dltrain-data npy FEATURES.npy LABELS.npy OUT.h5 [--shards N]\n"
    "      convert NumPy arrays saved with numpy.save: features uint8, float32 or\n"
    "      float64 of shape N x C x H x W, N x H x W or N x D (floats are stored as\n"
    "      float32); labels of any integer type, shape (N,)\n"
    "  dltrain-data csv IN.csv OUT.h5 [--label-column NAME|INDEX] [--header|--no-header]\n"
    "                   [--shards N]\n"
    "      convert a CSV file of numeric feature columns and one integer label column\n"
    "      (default: the last; INDEX counts from 0, -1 is the last) to float32 features;\n"
    "      a header line is detected when the first line has a non-numeric field\n"
    "  dltrain-data tokens IN OUT.h5 [--ids] [--dtype uint16|uint32] [--shards N]\n"
    "      make a language-model token dataset: each byte of IN is a token (vocab 256),\n"
    "      or with --ids IN is text of whitespace-separated token ids; stored as\n"
    "      uint16 (default) or uint32\n"
    "  dltrain-data info SPEC\n"
    "      describe a dataset; SPEC is an HDF5 file, a comma-separated list of\n"
    "      files, or a glob pattern such as 'data/train-*.h5' (quote it)\n"
    "  dltrain-data verify SPEC\n"
    "      read every sample or token of a dataset, check labels (or token ids) and\n"
    "      the checksums stored at conversion; exit status 2 if anything is wrong\n"
    "  dltrain-data --help | -h       show this help\n"
    "  dltrain-data --version         show the version\n"
    "The converters compute the mean and std per channel (image datasets); with\n"
    "--shards N they write N files of balanced size named OUT-KKKKK-of-NNNNN.h5.\n"
    "A failed conversion leaves no output file.\n";

/* ---- command line ------------------------------------------------------------ */

typedef struct cli_args {
    const char *pos[3]; /* positional arguments after the command */
    int npos;
    int shards;
    dl_csv_opts_t csv;
    dl_tokens_opts_t tok;
} cli_args_t;

typedef struct cli_cmd {
    const char *name;
    int npos;
    const char *options; /* accepted options, each followed by a space */
    int (*run)(const cli_args_t *a, dl_err_t *err);
} cli_cmd_t;

/* A usage problem: message on stderr, exit status 2. */
static int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dltrain-data %s: %s\n(dltrain-data --help describes every command)\n", cmd,
            msg);
    return 2;
}

/* opt is one of the space-separated words of list. */
static int cli_accepts(const char *list, const char *opt)
{
    size_t len = strlen(opt);
    for (const char *p = list; (p = strstr(p, opt)) != NULL; p += len)
        if ((p == list || p[-1] == ' ') && p[len] == ' ')
            return 1;
    return 0;
}

static int cli_shards(const char *cmd, const char *v, int *out)
{
    char *end = NULL;
    long shards = strtol(v, &end, 10);
    if (end == v || *end || shards < 1 || shards > 99999)
        return cli_usage_error(cmd, "--shards %s: give a whole number from 1 to 99999", v);
    *out = (int)shards;
    return 0;
}

/* One option at argv[*i] (its value, if any, at argv[*i + 1]). */
static int cli_option(const cli_cmd_t *c, int argc, char **argv, int *i, cli_args_t *a)
{
    const char *opt = argv[*i];
    if (!cli_accepts(c->options, opt))
        return cli_usage_error(c->name, "unknown option '%s'", opt);
    if (!strcmp(opt, "--header") || !strcmp(opt, "--no-header")) {
        a->csv.header = opt[2] == 'h' ? DL_CSV_HEADER_YES : DL_CSV_HEADER_NO;
        return 0;
    }
    if (!strcmp(opt, "--ids")) {
        a->tok.ids = 1;
        return 0;
    }
    if (*i + 1 >= argc)
        return cli_usage_error(c->name, "%s needs a value", opt);
    const char *v = argv[++*i];
    if (!strcmp(opt, "--shards"))
        return cli_shards(c->name, v, &a->shards);
    if (!strcmp(opt, "--label-column")) {
        a->csv.label_column = v;
        return 0;
    }
    /* --dtype */
    if (strcmp(v, "uint16") != 0 && strcmp(v, "uint32") != 0)
        return cli_usage_error(c->name, "--dtype %s: token ids are stored as uint16 or uint32", v);
    a->tok.bits = v[4] == '1' ? 16 : 32;
    return 0;
}

static int cli_parse(const cli_cmd_t *c, int argc, char **argv, cli_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->shards = 1;
    a->tok.bits = 16;
    for (int i = 2; i < argc; i++) {
        int rc = 0;
        if (argv[i][0] == '-' && argv[i][1] == '-')
            rc = cli_option(c, argc, argv, &i, a);
        else if (a->npos < c->npos)
            a->pos[a->npos++] = argv[i];
        else
            rc = cli_usage_error(c->name, "unexpected argument '%s'", argv[i]);
        if (rc)
            return rc;
    }
    if (a->npos != c->npos) {
        fputs(usage_text, stderr);
        return 2;
    }
    a->csv.shards = a->tok.shards = a->shards;
    return 0;
}

/* ---- converting ----------------------------------------------------------------- */

static void print_channels(const char *name, const double *v, int c)
{
    printf("%s:", name);
    for (int i = 0; i < c; i++)
        printf(" %.4f", v[i]);
    printf("\n");
}

/* After a conversion: reopen what was written, as a reader sees it, and
 * print a one-line summary. */
static int print_summary(const char *out, int shards, dl_err_t *err)
{
    char spec[4096];
    dl_dataset_t *ds = NULL;
    if (dl_shard_spec(out, shards, spec, sizeof spec) != 0)
        return DL_ERR(err, DL_EINPUT, "%s: output name too long", out);
    int rc = dl_dataset_open(spec, &ds, err);
    if (rc)
        return rc;
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    printf("%" PRId64 " samples, %d x %d x %d %s, %d classes, mean", in->n, in->c, in->h, in->w,
           in->is_float ? "float32" : "uint8", in->num_classes);
    for (int c = 0; c < in->c; c++)
        printf(" %.4f", in->mean[c]);
    printf(", std");
    for (int c = 0; c < in->c; c++)
        printf(" %.4f", in->std[c]);
    printf(" -> %s", spec);
    if (shards > 1)
        printf(" (%d shards)", in->n_files);
    printf("\n");
    dl_dataset_close(ds);
    return 0;
}

static int cmd_idx(const cli_args_t *a, dl_err_t *err)
{
    int rc = dl_idx_to_h5(a->pos[0], a->pos[1], a->pos[2], a->shards, err);
    return rc ? rc : print_summary(a->pos[2], a->shards, err);
}

static int cmd_npy(const cli_args_t *a, dl_err_t *err)
{
    int rc = dl_npy_to_h5(a->pos[0], a->pos[1], a->pos[2], a->shards, err);
    return rc ? rc : print_summary(a->pos[2], a->shards, err);
}

static int cmd_csv(const cli_args_t *a, dl_err_t *err)
{
    int rc = dl_csv_to_h5(a->pos[0], a->pos[1], &a->csv, err);
    return rc ? rc : print_summary(a->pos[1], a->shards, err);
}

static int cmd_tokens(const cli_args_t *a, dl_err_t *err)
{
    char spec[4096];
    dl_tokens_info_t ti = {0};
    int rc = dl_tokens_convert(a->pos[0], a->pos[1], &a->tok, err);
    if (!rc && dl_shard_spec(a->pos[1], a->shards, spec, sizeof spec) != 0)
        rc = DL_ERR(err, DL_EINPUT, "%s: output name too long", a->pos[1]);
    if (!rc)
        rc = dl_tokens_info(spec, &ti, NULL, err);
    if (rc)
        return rc;
    printf("%" PRId64 " tokens, vocab_size %" PRId64 ", uint%d -> %s", ti.n, ti.vocab_size, ti.bits,
           spec);
    if (a->shards > 1)
        printf(" (%d shards)", ti.n_files);
    printf("\n");
    return 0;
}

/* ---- describing ------------------------------------------------------------------ */

/* Print one shard's sample count by opening it alone (dataset.h exposes no
 * per-shard accessor); entry is a path or a glob pattern from the spec. */
static int print_entry(const char *entry, dl_err_t *err)
{
    glob_t g;
    int globbed = strpbrk(entry, "*?[") && glob(entry, 0, NULL, &g) == 0;
    size_t n = globbed ? g.gl_pathc : 1;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const char *path = globbed ? g.gl_pathv[i] : entry;
        dl_dataset_t *ds = NULL;
        rc = dl_dataset_open(path, &ds, err);
        if (!rc)
            printf("  %s: %" PRId64 " samples\n", path, dl_dataset_info(ds)->n);
        dl_dataset_close(ds);
    }
    if (globbed)
        globfree(&g);
    return rc;
}

static int print_entries(const char *spec, dl_err_t *err)
{
    char *list = malloc(strlen(spec) + 1);
    if (!list)
        return DL_ERR(err, DL_ENOMEM, "out of memory");
    strcpy(list, spec);
    int rc = 0;
    for (char *p = list; !rc && p;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma++ = '\0';
        while (*p == ' ')
            p++;
        for (char *e = p + strlen(p); e > p && e[-1] == ' ';)
            *--e = '\0';
        rc = print_entry(p, err);
        p = comma;
    }
    free(list);
    return rc;
}

static int info_tokens(const char *spec, dl_err_t *err)
{
    dl_tokens_info_t ti = {0};
    int rc = dl_tokens_info(spec, &ti, NULL, err); /* validates everything first */
    if (rc)
        return rc;
    printf("schema: tokens, version 1\n");
    printf("shards: %d\n", ti.n_files);
    rc = dl_tokens_info(spec, &ti, stdout, err);
    if (rc)
        return rc;
    printf("total tokens: %" PRId64 "\n", ti.n);
    printf("vocab size: %" PRId64 "\n", ti.vocab_size);
    printf("dtype: uint%d\n", ti.bits);
    return 0;
}

static int cmd_info(const cli_args_t *a, dl_err_t *err)
{
    const char *spec = a->pos[0];
    int is_tokens = 0;
    int rc = dl_tokens_probe(spec, &is_tokens, err);
    if (!rc && is_tokens)
        return info_tokens(spec, err);
    dl_dataset_t *ds = NULL;
    if (!rc)
        rc = dl_dataset_open(spec, &ds, err); /* validates everything first */
    if (rc)
        return rc;
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    printf("schema: image-classification, version 1\n");
    printf("shards: %d\n", in->n_files);
    rc = print_entries(spec, err);
    if (!rc) {
        printf("total samples: %" PRId64 "\n", in->n);
        printf("image shape: %d x %d x %d (C x H x W)\n", in->c, in->h, in->w);
        printf("image type: %s\n", in->is_float ? "float32" : "uint8");
        printf("classes: %d\n", in->num_classes);
        print_channels("mean", in->mean, in->c);
        print_channels("std", in->std, in->c);
    }
    dl_dataset_close(ds);
    return rc;
}

static int cmd_verify(const cli_args_t *a, dl_err_t *err)
{
    const char *spec = a->pos[0];
    int is_tokens = 0;
    int rc = dl_tokens_probe(spec, &is_tokens, err);
    if (!rc && is_tokens) {
        dl_tokens_info_t ti = {0};
        rc = dl_tokens_verify(spec, stdout, err);
        if (!rc)
            rc = dl_tokens_info(spec, &ti, NULL, err);
        if (!rc)
            printf("ok: %" PRId64 " tokens in %d file(s)\n", ti.n, ti.n_files);
        return rc;
    }
    dl_dataset_t *ds = NULL;
    if (!rc)
        rc = dl_dataset_open(spec, &ds, err);
    if (!rc)
        rc = dl_dataset_verify(ds, stdout, err);
    if (!rc)
        printf("ok: %lld samples in %d file(s)\n", (long long)dl_dataset_info(ds)->n,
               dl_dataset_info(ds)->n_files);
    dl_dataset_close(ds);
    return rc;
}

static const cli_cmd_t commands[] = {
    {"idx", 3, "--shards ", cmd_idx},
    {"npy", 3, "--shards ", cmd_npy},
    {"csv", 2, "--label-column --header --no-header --shards ", cmd_csv},
    {"tokens", 2, "--ids --dtype --shards ", cmd_tokens},
    {"info", 1, "", cmd_info},
    {"verify", 1, "", cmd_verify},
};

int main(int argc, char **argv)
{
    dl_err_t err = {0};
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("dltrain-data %s\n", DLTRAIN_VERSION);
        return 0;
    }
    const cli_cmd_t *c = NULL;
    for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            c = &commands[i];
    if (!c) {
        fputs(usage_text, stderr);
        return 2;
    }
    cli_args_t a;
    int rc = cli_parse(c, argc, argv, &a);
    if (rc)
        return rc;
    rc = c->run(&a, &err);
    if (rc) {
        dl_err_print("dltrain-data", &err);
        return dl_err_exit_status(err.code);
    }
    return 0;
}
