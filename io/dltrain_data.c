/* dltrain-data: convert IDX files to dltrain HDF5 datasets and describe
 * datasets. Exit status: 0 success, 2 bad input or usage, 1 other errors. */
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"

#ifndef DLTRAIN_VERSION
#error "DLTRAIN_VERSION must be defined by the build"
#endif

static const char usage_text[] =
    "usage:\n"
    "  dltrain-data idx IMAGES LABELS OUT.h5 [--shards N]\n"
    "      convert an IDX image file and its label file (gzip-compressed or plain)\n"
    "      to a dltrain HDF5 dataset, computing the mean and std per channel;\n"
    "      with --shards N, N files of balanced size named OUT-KKKKK-of-NNNNN.h5\n"
    "  dltrain-data info SPEC\n"
    "      describe a dataset; SPEC is an HDF5 file, a comma-separated list of\n"
    "      files, or a glob pattern such as 'data/train-*.h5' (quote it)\n"
    "  dltrain-data verify SPEC\n"
    "      read every sample of a dataset, check the labels and the checksums\n"
    "      stored at conversion; exit status 2 if anything is wrong\n"
    "  dltrain-data --help | -h       show this help\n"
    "  dltrain-data --version         show the version\n";

static void print_channels(const char *name, const double *v, int c)
{
    printf("%s:", name);
    for (int i = 0; i < c; i++)
        printf(" %.4f", v[i]);
    printf("\n");
}

static int cmd_idx(const char *images, const char *labels, const char *out, int shards,
                   dl_err_t *err)
{
    int rc = dl_idx_to_h5(images, labels, out, shards, err);
    dl_dataset_t *ds = NULL;
    char spec[4096];
    size_t len = strlen(out);
    int base = (int)(shards > 1 && len > 3 && !strcmp(out + len - 3, ".h5") ? len - 3 : len);
    if (shards > 1) /* the shards written, as a glob (the naming of dl_idx_to_h5) */
        snprintf(spec, sizeof spec, "%.*s-*-of-%05d.h5", base, out, shards);
    else
        snprintf(spec, sizeof spec, "%s", out);
    if (!rc) /* reopen: the summary comes from the file as a reader sees it */
        rc = dl_dataset_open(spec, &ds, err);
    if (rc)
        return rc;
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    printf("%" PRId64 " samples, %d x %d x %d, %d classes, mean", in->n, in->c, in->h, in->w,
           in->num_classes);
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

static int cmd_info(const char *spec, dl_err_t *err)
{
    dl_dataset_t *ds = NULL;
    int rc = dl_dataset_open(spec, &ds, err); /* validates everything first */
    if (rc)
        return rc;
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    printf("schema version: 1\n");
    printf("shards: %d\n", in->n_files);
    char *list = malloc(strlen(spec) + 1);
    if (!list) {
        dl_dataset_close(ds);
        return DL_ERR(err, DL_ENOMEM, "out of memory");
    }
    strcpy(list, spec);
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
    if (!rc) {
        printf("total samples: %" PRId64 "\n", in->n);
        printf("image shape: %d x %d x %d (C x H x W)\n", in->c, in->h, in->w);
        printf("classes: %d\n", in->num_classes);
        print_channels("mean", in->mean, in->c);
        print_channels("std", in->std, in->c);
    }
    dl_dataset_close(ds);
    return rc;
}

static int cmd_verify(const char *spec, dl_err_t *err)
{
    dl_dataset_t *ds = NULL;
    int rc = dl_dataset_open(spec, &ds, err);
    if (!rc)
        rc = dl_dataset_verify(ds, stdout, err);
    if (!rc)
        printf("ok: %lld samples in %d file(s)\n", (long long)dl_dataset_info(ds)->n,
               dl_dataset_info(ds)->n_files);
    dl_dataset_close(ds);
    return rc;
}

int main(int argc, char **argv)
{
    dl_err_t err = {0};
    int rc;
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("dltrain-data %s\n", DLTRAIN_VERSION);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "idx"))
        rc = cmd_idx(argv[2], argv[3], argv[4], 1, &err);
    else if (argc == 7 && !strcmp(argv[1], "idx") && !strcmp(argv[5], "--shards")) {
        char *end = NULL;
        long shards = strtol(argv[6], &end, 10);
        if (end == argv[6] || *end || shards < 1 || shards > 99999) {
            fprintf(stderr, "dltrain-data: --shards %s: give a whole number from 1 to 99999\n",
                    argv[6]);
            return 2;
        }
        rc = cmd_idx(argv[2], argv[3], argv[4], (int)shards, &err);
    } else if (argc == 3 && !strcmp(argv[1], "info"))
        rc = cmd_info(argv[2], &err);
    else if (argc == 3 && !strcmp(argv[1], "verify"))
        rc = cmd_verify(argv[2], &err);
    else {
        fputs(usage_text, stderr);
        return 2;
    }
    if (rc) {
        dl_err_print("dltrain-data", &err);
        return dl_err_exit_status(err.code);
    }
    return 0;
}
