/* Data loader throughput against a raw sequential read of the same files,
 * measured in the same run. A benchmark: it prints figures and never fails
 * on time.
 *
 *   bench_loader SPEC [--batch 128] [--epochs 2] [--prefetch 4]
 *                [--order shuffled|sequential|stream] [--reps 3] [--no-map] [--json]
 *
 * SPEC is a dataset as dltrain takes it (a file, a comma-separated list or a
 * glob). Three readers go over it:
 *   raw     every shard file read whole, in order, with read(2) in 4 MiB
 *           chunks: once after POSIX_FADV_DONTNEED (the "cold" pass, which
 *           is a page-cache read if the kernel kept the pages), then warm;
 *           the warm read is the reference;
 *   loader  io/loader.c driven as runtime/train.c drives it: a dl_sampler
 *           over the dataset, requests kept `prefetch` steps ahead, batches
 *           taken with no compute;
 *   direct  dl_dataset_read_stored in the same order on the calling thread,
 *           which separates the I/O thread's overhead from the reader's.
 * After a warm-up of each, every one of the reps repetitions reads raw
 * (RAW_SUB passes, their median), through the loader and directly, one
 * after the other; the rates printed are medians over the repetitions, and
 * the ratios to raw are the medians of each repetition's own ratio.
 * Both deliver samples as stored (and int32 labels), as the raw read does;
 * what the consumer then spends normalising them (dl_dataset_normalise, as
 * runtime/train.c calls it on the training thread) is timed on its own.
 * --no-map reads with pread instead of from the files' mappings.
 * Then, for datasets larger than memory, cold against cold: reps times, the
 * files evicted (POSIX_FADV_DONTNEED) and read raw once, then evicted again
 * and one epoch taken through the loader; medians of each, the loader's
 * figure against the raw one. These extra rows change none of the above.
 * MB/s of the loader and direct are the stored bytes of the samples and
 * labels delivered, the same bytes the raw read copies (with the rest of
 * the file). */
#define _DEFAULT_SOURCE /* mincore() */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/dataset.h"
#include "io/loader.h"
#include "io/sampler.h"

#include "bench_util.h"

#define CHUNK_BYTES ((size_t)4 << 20)
#define MAX_REPS 64
#define SEED 1
#define RAW_SUB 3 /* raw passes per repetition: a raw pass is short, take more */

typedef struct files {
    char **path;
    int n, cap;
    int64_t bytes;        /* all files, whole */
    int64_t stored_bytes; /* images and labels as stored, all shards */
} files_t;

/* Median of v[0..n-1]; the index of a repetition with that time goes to *at. */
static double median(const double *v, int n, int *at)
{
    double s[MAX_REPS * RAW_SUB];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    double m = s[n / 2];
    for (int i = 0; at && i < n; i++)
        if (v[i] == m)
            *at = i;
    return m;
}

/* ---- the shard files, as dl_dataset_open expands SPEC ------------------------- */

static int files_add(files_t *f, const char *path)
{
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 8;
        char **p = realloc(f->path, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        f->path = p;
        f->cap = cap;
    }
    f->path[f->n] = strdup(path);
    return f->path[f->n++] ? 0 : -1;
}

/* Comma-separated entries, spaces trimmed, globs expanded in sorted order. */
static int files_expand(files_t *f, const char *spec)
{
    char *buf = strdup(spec);
    int rc = buf ? 0 : -1;
    for (char *p = buf, *comma = NULL; !rc && p; p = comma ? comma + 1 : NULL) {
        comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (*p == ' ')
            p++;
        for (char *e = p + strlen(p); e > p && e[-1] == ' ';)
            *--e = '\0';
        if (!strpbrk(p, "*?[")) {
            rc = files_add(f, p);
            continue;
        }
        glob_t g;
        if (glob(p, 0, NULL, &g) != 0) {
            fprintf(stderr, "bench_loader: %s matches no files\n", p);
            rc = -1;
            continue;
        }
        for (size_t i = 0; !rc && i < g.gl_pathc; i++)
            rc = files_add(f, g.gl_pathv[i]);
        globfree(&g);
    }
    free(buf);
    return rc;
}

static void files_free(files_t *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->path[i]);
    free(f->path);
}

/* File sizes, and the bytes of /images and /labels as stored (what the
 * loader has to read at the least). */
static int files_measure(files_t *f)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_file_locking(fapl, 0, 1) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return -1;
    }
    int rc = 0;
    for (int i = 0; !rc && i < f->n; i++) {
        struct stat st;
        if (stat(f->path[i], &st) != 0) {
            fprintf(stderr, "bench_loader: %s: %s\n", f->path[i], strerror(errno));
            rc = -1;
            break;
        }
        f->bytes += (int64_t)st.st_size;
        hid_t file = H5Fopen(f->path[i], H5F_ACC_RDONLY, fapl);
        for (int d = 0; file >= 0 && d < 2; d++) {
            hid_t ds = H5Dopen2(file, d ? "labels" : "images", H5P_DEFAULT);
            hid_t t = ds >= 0 ? H5Dget_type(ds) : H5I_INVALID_HID;
            hid_t sp = ds >= 0 ? H5Dget_space(ds) : H5I_INVALID_HID;
            hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
            if (t < 0 || np < 0)
                rc = -1;
            else
                f->stored_bytes += (int64_t)np * (int64_t)H5Tget_size(t);
            if (t >= 0)
                H5Tclose(t);
            if (sp >= 0)
                H5Sclose(sp);
            if (ds >= 0)
                H5Dclose(ds);
        }
        if (file < 0 || rc) {
            fprintf(stderr, "bench_loader: %s: cannot read the sizes of /images and /labels\n",
                    f->path[i]);
            rc = -1;
        }
        if (file >= 0)
            H5Fclose(file);
    }
    H5Pclose(fapl);
    return rc;
}

/* ---- raw sequential read ------------------------------------------------------ */

/* Read every file whole with read(2) in CHUNK_BYTES pieces; seconds, or < 0. */
static double raw_pass(const files_t *f, char *buf)
{
    double t0 = bench_now_s();
    for (int i = 0; i < f->n; i++) {
        int fd = open(f->path[i], O_RDONLY);
        if (fd < 0)
            return -1;
        ssize_t got;
        while ((got = read(fd, buf, CHUNK_BYTES)) > 0)
            ;
        close(fd);
        if (got < 0)
            return -1;
    }
    return bench_now_s() - t0;
}

/* Ask the kernel to drop the files from the page cache (written-back
 * first: dirty pages cannot be dropped). Only a request: it may keep them. */
static void raw_evict(const files_t *f)
{
    for (int i = 0; i < f->n; i++) {
        int fd = open(f->path[i], O_RDONLY);
        if (fd < 0)
            continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* Fraction of the files' pages in the page cache (mincore), or -1. */
static double raw_resident(const files_t *f)
{
    long page = sysconf(_SC_PAGESIZE);
    int64_t pages = 0, in = 0;
    for (int i = 0; i < f->n; i++) {
        int fd = open(f->path[i], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        size_t len = (size_t)st.st_size, np = (len + (size_t)page - 1) / (size_t)page;
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char *vec = malloc(np);
        if (p != MAP_FAILED && vec && mincore(p, len, vec) == 0) {
            for (size_t k = 0; k < np; k++)
                in += vec[k] & 1;
            pages += (int64_t)np;
        }
        free(vec);
        if (p != MAP_FAILED)
            munmap(p, len);
        close(fd);
    }
    return pages ? (double)in / (double)pages : -1.0;
}

/* ---- loader and direct reads ---------------------------------------------------- */

/* `steps` batches through the loader, requested as runtime/train.c does:
 * before taking batch s, batches up to s + depth - 1 are asked for. */
static int run_loader(dl_dataset_t *ds, dl_sampler_t *sm, int64_t steps, int depth, double *s,
                      double *wait_s, dl_err_t *err)
{
    dl_loader_t *l = NULL;
    int rc = dl_loader_start(&l, depth, (int)sm->batch, dl_dataset_sample_bytes(ds), err);
    if (rc)
        return rc;
    int64_t requested = 0;
    *wait_s = 0.0;
    double t0 = bench_now_s();
    for (int64_t step = 0; !rc && step < steps; step++) {
        while (!rc && requested < steps && requested < step + depth)
            rc = dl_loader_request(l, ds, dl_sampler_batch(sm, requested++, NULL), (int)sm->batch,
                                   err);
        dl_loader_batch_t b;
        double waited = 0.0;
        if (!rc)
            rc = dl_loader_take(l, &b, &waited, err);
        *wait_s += waited;
    }
    *s = bench_now_s() - t0;
    dl_loader_stop(l);
    return rc;
}

/* The same batches read with dl_dataset_read_stored on this thread. */
static int run_direct(dl_dataset_t *ds, dl_sampler_t *sm, int64_t steps, void *x, int32_t *y,
                      double *s, dl_err_t *err)
{
    int rc = 0;
    double t0 = bench_now_s();
    for (int64_t step = 0; !rc && step < steps; step++)
        rc =
            dl_dataset_read_stored(ds, dl_sampler_batch(sm, step, NULL), (int)sm->batch, x, y, err);
    *s = bench_now_s() - t0;
    return rc;
}

/* The consumer's side: the same batches read (not timed), then normalised
 * into xf as the training thread does; *s gets the normalising time. */
static int run_normalise(dl_dataset_t *ds, dl_sampler_t *sm, int64_t steps, void *x, int32_t *y,
                         float *xf, double *s, dl_err_t *err)
{
    int rc = 0;
    *s = 0.0;
    for (int64_t step = 0; !rc && step < steps; step++) {
        rc =
            dl_dataset_read_stored(ds, dl_sampler_batch(sm, step, NULL), (int)sm->batch, x, y, err);
        double t0 = bench_now_s();
        dl_dataset_normalise(ds, x, (int)sm->batch, xf);
        *s += bench_now_s() - t0;
    }
    return rc;
}

/* ---- command line --------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_loader SPEC [--batch N] [--epochs N] [--prefetch N] "
            "[--order shuffled|sequential|stream] [--reps 1..%d] [--no-map] [--json]\n"
            "  stream: the streaming order of [data] shuffle_block = 64, shuffle_buffer = 16384\n",
            MAX_REPS);
}

/* A positive int argument, or -1. */
static int pos_int(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || *end || end == s || v < 1 || v > 1 << 30 ? -1 : (int)v;
}

typedef struct opts {
    const char *spec;
    int batch, epochs, prefetch, shuffle, reps, json, no_map;
} opts_t;

static int parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.batch = 128, .epochs = 2, .prefetch = 4, .shuffle = 1, .reps = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--no-map")) {
            o->no_map = 1;
        } else if (a[0] != '-') {
            if (o->spec)
                return -1;
            o->spec = a;
        } else if (i + 1 >= argc) {
            return -1;
        } else if (!strcmp(a, "--order")) {
            const char *v = argv[++i];
            if (!strcmp(v, "shuffled"))
                o->shuffle = 1;
            else if (!strcmp(v, "sequential"))
                o->shuffle = 0;
            else if (!strcmp(v, "stream"))
                o->shuffle = 2;
            else
                return -1;
        } else {
            int v = pos_int(argv[++i]);
            if (!strcmp(a, "--batch"))
                o->batch = v;
            else if (!strcmp(a, "--epochs"))
                o->epochs = v;
            else if (!strcmp(a, "--prefetch"))
                o->prefetch = v;
            else if (!strcmp(a, "--reps"))
                o->reps = v;
            else
                return -1;
        }
    }
    return o->spec && o->batch > 0 && o->epochs > 0 && o->prefetch > 0 && o->reps > 0 &&
                   o->reps <= MAX_REPS
               ? 0
               : -1;
}

/* ---- main ------------------------------------------------------------------------- */

typedef struct results {
    double raw_cold_s, raw_warm_s, resident_before, resident_after;
    double loader_s, loader_wait_s, direct_s, norm_s;
    double loader_vs_raw, direct_vs_raw; /* medians of the repetitions' own ratios */
    int64_t steps, samples;
    double cold_raw_s, cold_loader_s; /* medians, files evicted before each pass */
    double cold_resident;             /* largest cached fraction seen after an eviction */
    int64_t cold_steps;               /* batches of the loader's cold pass: one epoch */
} results_t;

/* Cold against cold, after everything warm: reps times, evict and read the
 * files raw, then evict and take one epoch through the loader. Pages mapped
 * by a process cannot be evicted: the dataset's mappings are dropped before
 * each eviction and made again after it. */
static int measure_cold(const opts_t *o, const files_t *f, dl_dataset_t *ds, dl_sampler_t *sm,
                        char *buf, results_t *r, dl_err_t *err)
{
    double raw[MAX_REPS] = {0}, load[MAX_REPS] = {0}, wait_s;
    int rc = 0;
    r->cold_steps = sm->steps_per_epoch;
    int64_t mapped = dl_dataset_mapped_bytes(ds);
    for (int i = 0; !rc && i < o->reps; i++) {
        dl_dataset_map(ds, 0);
        raw_evict(f);
        double res = raw_resident(f);
        if ((raw[i] = raw_pass(f, buf)) < 0)
            rc = DL_ERR(err, DL_EIO, "cannot read the shard files: %s", strerror(errno));
        raw_evict(f);
        double again = raw_resident(f);
        res = again > res ? again : res;
        r->cold_resident = res > r->cold_resident ? res : r->cold_resident;
        if (!rc && mapped && dl_dataset_map(ds, mapped) != mapped)
            rc = DL_ERR(err, DL_EIO, "cannot map the files of %s again", o->spec);
        if (!rc)
            rc = run_loader(ds, sm, r->cold_steps, o->prefetch, &load[i], &wait_s, err);
    }
    if (!rc) {
        r->cold_raw_s = median(raw, o->reps, NULL);
        r->cold_loader_s = median(load, o->reps, NULL);
    }
    return rc;
}

static int measure(const opts_t *o, const files_t *f, dl_dataset_t *ds, results_t *r, dl_err_t *err)
{
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    int64_t in_size = (int64_t)in->c * in->h * in->w;
    char *buf = malloc(CHUNK_BYTES);
    void *x = malloc((size_t)o->batch * (size_t)dl_dataset_sample_bytes(ds));
    float *xf = malloc(sizeof(float) * (size_t)o->batch * (size_t)in_size);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)o->batch);
    dl_sampler_t sm;
    int rc = buf && x && xf && y ? 0 : DL_ERR(err, DL_ENOMEM, "out of memory");
    if (!rc) {
        dl_sampler_cfg_t sc = {.n = in->n,
                               .global_batch = o->batch,
                               .world = 1,
                               .seed = SEED,
                               .order = o->shuffle == 2   ? DL_ORDER_STREAM
                                        : o->shuffle == 1 ? DL_ORDER_PERMUTATION
                                                          : DL_ORDER_FILE,
                               .block = 64,
                               .buffer = 16384};
        if (!rc)
            rc = dl_sampler_init(&sm, &sc, err);
    }
    if (rc) {
        free(buf), free(x), free(xf), free(y);
        return rc;
    }
    r->steps = (int64_t)o->epochs * sm.steps_per_epoch;
    r->samples = r->steps * o->batch;

    /* Raw: a cold pass after asking for eviction, then warm repetitions. */
    raw_evict(f);
    r->resident_before = raw_resident(f);
    r->raw_cold_s = raw_pass(f, buf);
    r->resident_after = raw_resident(f);
    double t[MAX_REPS * RAW_SUB], w[MAX_REPS], ld[MAX_REPS], dr[MAX_REPS];
    double lr[MAX_REPS], drr[MAX_REPS];
    if (r->raw_cold_s < 0)
        rc = DL_ERR(err, DL_EIO, "cannot read the shard files: %s", strerror(errno));

    /* Warm-ups: a raw pass, and a tenth of the steps through the loader and
     * directly. Then each repetition reads raw (RAW_SUB passes, their median),
     * through the loader and directly, one after the other, so that every
     * ratio compares passes made within a few tens of milliseconds of each
     * other on this shared machine; the ratios reported are the medians of
     * the repetitions' own ratios. */
    int64_t warm = r->steps / 10 > 0 ? r->steps / 10 : 1;
    double s, per_sample = (double)f->stored_bytes / (double)dl_dataset_info(ds)->n;
    double bytes = (double)r->samples * per_sample; /* delivered by the loader, or directly */
    if (!rc && raw_pass(f, buf) < 0)
        rc = DL_ERR(err, DL_EIO, "cannot read the shard files: %s", strerror(errno));
    if (!rc)
        rc = run_loader(ds, &sm, warm, o->prefetch, &s, &w[0], err);
    if (!rc)
        rc = run_direct(ds, &sm, warm, x, y, &s, err);
    for (int i = 0; !rc && i < o->reps; i++) {
        for (int k = 0; !rc && k < RAW_SUB; k++)
            if ((t[i * RAW_SUB + k] = raw_pass(f, buf)) < 0)
                rc = DL_ERR(err, DL_EIO, "cannot read the shard files: %s", strerror(errno));
        if (!rc)
            rc = run_loader(ds, &sm, r->steps, o->prefetch, &ld[i], &w[i], err);
        if (!rc)
            rc = run_direct(ds, &sm, r->steps, x, y, &dr[i], err);
        if (!rc) {
            double raw_bps = (double)f->bytes / median(t + i * RAW_SUB, RAW_SUB, NULL);
            lr[i] = bytes / ld[i] / raw_bps;
            drr[i] = bytes / dr[i] / raw_bps;
        }
    }
    int at = 0;
    if (!rc) {
        r->raw_warm_s = median(t, o->reps * RAW_SUB, NULL);
        r->loader_s = median(ld, o->reps, &at);
        r->loader_wait_s = w[at];
        r->direct_s = median(dr, o->reps, NULL);
        r->loader_vs_raw = median(lr, o->reps, NULL);
        r->direct_vs_raw = median(drr, o->reps, NULL);
    }
    for (int i = 0; !rc && i < o->reps; i++)
        rc = run_normalise(ds, &sm, r->steps, x, y, xf, &t[i], err);
    if (!rc)
        r->norm_s = median(t, o->reps, NULL);
    if (!rc)
        rc = measure_cold(o, f, ds, &sm, buf, r, err);
    dl_sampler_free(&sm);
    free(buf), free(x), free(xf), free(y);
    return rc;
}

static void report(const opts_t *o, const files_t *f, const dl_dataset_info_t *in,
                   const results_t *r, int64_t mapped)
{
    double n = (double)r->samples, chw = (double)in->c * in->h * in->w;
    double stored = (double)f->stored_bytes / (double)in->n; /* bytes per sample */
    double raw_mbs = (double)f->bytes / r->raw_warm_s * 1e-6;
    double cold_mbs = (double)f->bytes / r->raw_cold_s * 1e-6;
    double load_mbs = n * stored / r->loader_s * 1e-6, dir_mbs = n * stored / r->direct_s * 1e-6;
    int cold_slower = r->raw_cold_s > 1.2 * r->raw_warm_s;
    double cn = (double)(r->cold_steps * o->batch);
    double craw_mbs = (double)f->bytes / r->cold_raw_s * 1e-6;
    double cload_mbs = cn * stored / r->cold_loader_s * 1e-6;
    int cached = r->resident_before > 0.5;
    const char *order = o->shuffle == 2 ? "stream" : o->shuffle ? "shuffled" : "sequential";
    const char *type = in->is_float ? "float32" : "uint8";
    const char *reader = mapped ? "mapped files" : o->no_map ? "pread (--no-map)" : "pread";
    double norm_us = 1e6 * r->norm_s / (double)r->steps; /* per batch */
    double norm_sps = n / r->norm_s, norm_mbs = n * chw * 4.0 / r->norm_s * 1e-6;
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    struct utsname u;
    if (uname(&u) != 0)
        strcpy(u.release, "?");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (o->json) {
        printf(
            "{\"spec\":\"%s\",\"files\":%d,\"file_bytes\":%lld,\"samples_in_dataset\":%lld,"
            "\"sample_shape\":[%d,%d,%d],\"sample_type\":\"%s\",\"stored_bytes_per_sample\":%.2f,"
            "\"reader\":\"%s\",\"batch\":%d,\"epochs\":%d,\"prefetch\":%d,"
            "\"order\":\"%s\",\"reps\":%d,\"batches\":%lld,\"samples\":%lld,\"cores\":%ld,"
            "\"hdf5\":\"%u.%u.%u\",\"kernel\":\"%s\",",
            o->spec, f->n, (long long)f->bytes, (long long)in->n, in->c, in->h, in->w, type, stored,
            reader, o->batch, o->epochs, o->prefetch, order, o->reps, (long long)r->steps,
            (long long)r->samples, cores, maj, min, rel, u.release);
        printf("\"raw_cold_mb_s\":%.1f,\"raw_warm_mb_s\":%.1f,\"raw_samples_per_s\":%.0f,"
               "\"resident_before_cold\":%.3f,\"cold_slower\":%s,\"cold_pass_cached\":%s,",
               cold_mbs, raw_mbs, raw_mbs * 1e6 / stored, r->resident_before,
               cold_slower ? "true" : "false", cached ? "true" : "false");
        printf("\"loader_samples_per_s\":%.0f,\"loader_stored_mb_s\":%.1f,"
               "\"loader_wait_ms_per_batch\":%.4f,\"loader_vs_raw\":%.4f,"
               "\"direct_samples_per_s\":%.0f,\"direct_stored_mb_s\":%.1f,\"direct_vs_raw\":%.4f,"
               "\"target_loader_vs_raw\":0.8,\"normalise_us_per_batch\":%.2f,"
               "\"normalise_samples_per_s\":%.0f,\"normalise_float_mb_s\":%.1f,",
               n / r->loader_s, load_mbs, 1e3 * r->loader_wait_s / (double)r->steps,
               r->loader_vs_raw, n / r->direct_s, dir_mbs, r->direct_vs_raw, norm_us, norm_sps,
               norm_mbs);
        printf("\"cold_resident_after_evict\":%.3f,\"cold_raw_mb_s\":%.1f,"
               "\"cold_raw_samples_per_s\":%.0f,\"cold_loader_batches\":%lld,"
               "\"cold_loader_samples_per_s\":%.0f,\"cold_loader_stored_mb_s\":%.1f,"
               "\"cold_loader_vs_cold_raw\":%.4f}\n",
               r->cold_resident, craw_mbs, craw_mbs * 1e6 / stored, (long long)r->cold_steps,
               cn / r->cold_loader_s, cload_mbs, cload_mbs / craw_mbs);
        return;
    }
    printf("machine: %ld cores online, Linux %s, HDF5 %u.%u.%u; threads: raw and direct 1, "
           "loader 1 I/O + 1 consumer\n",
           cores, u.release, maj, min, rel);
    printf("data: %s: %d file(s), %.1f MB; %lld samples of %d x %d x %d %s, %.0f B stored per "
           "sample (with its label); read from %s\n",
           o->spec, f->n, (double)f->bytes * 1e-6, (long long)in->n, in->c, in->h, in->w, type,
           stored, reader);
    printf("run: batch %d, %s order, prefetch %d, %d epoch(s) = %lld batches per repetition; "
           "medians of %d repetitions after a warm-up, each reading raw (%d passes), through the "
           "loader and directly, one after the other; \"vs raw\" of the loader and direct: the "
           "median of the repetitions' own ratios\n\n",
           o->batch, order, o->prefetch, o->epochs, (long long)r->steps, o->reps, RAW_SUB);
    printf("%-26s %12s %12s %8s\n", "reader", "samples/s", "MB/s", "vs raw");
    printf("%-26s %12.0f %12.1f %8.2f\n", "raw read, cold pass", cold_mbs * 1e6 / stored, cold_mbs,
           cold_mbs / raw_mbs);
    printf("%-26s %12.0f %12.1f %8.2f\n", "raw read, warm", raw_mbs * 1e6 / stored, raw_mbs, 1.0);
    printf("%-26s %12.0f %12.1f %8.2f\n", "loader (I/O thread)", n / r->loader_s, load_mbs,
           r->loader_vs_raw);
    printf("%-26s %12.0f %12.1f %8.2f\n\n", "direct read_stored", n / r->direct_s, dir_mbs,
           r->direct_vs_raw);
    printf("MB/s: raw = whole file bytes, 4 MiB read(2) chunks; loader and direct = stored bytes "
           "of the samples and labels delivered (%s samples as stored, labels as int32); "
           "samples/s of raw = its MB/s over the stored bytes per sample\n",
           type);
    printf("cold pass: %.0f%% of the files' pages were in the page cache after "
           "POSIX_FADV_DONTNEED (%.0f%% after the pass); %.3f s against %.3f s warm: %s\n",
           100.0 * r->resident_before, 100.0 * r->resident_after, r->raw_cold_s, r->raw_warm_s,
           cold_slower ? "slower" : "not slower");
    printf("%s; the warm passes are page-cache reads (memory copies through read(2)), and so "
           "are the loader's and direct reads after them\n",
           cached ? "both raw passes are page-cache reads: the kernel kept the pages, and caches "
                    "cannot be dropped here"
                  : "the cold pass read the disk (a VM's disk may itself be cached by the host)");
    printf("loader: waited %.3f ms per batch in take() (no compute between batches)\n",
           1e3 * r->loader_wait_s / (double)r->steps);
    printf("target: loader >= 80%% of raw\n");
    printf("consumer side, not in the rows above: dl_dataset_normalise %.1f us per batch of %d "
           "(%.0f samples/s, %.1f MB/s of float32 written), on the training thread after it "
           "takes a batch\n\n",
           norm_us, o->batch, norm_sps, norm_mbs);
    printf("cold against cold (datasets larger than memory): files evicted with "
           "POSIX_FADV_DONTNEED before each pass, raw and loader passes interleaved, median of "
           "%d; the loader takes one epoch (%lld batches)\n",
           o->reps, (long long)r->cold_steps);
    printf("%-26s %12s %12s %8s\n", "reader", "samples/s", "MB/s", "vs cold");
    printf("%-26s %12.0f %12.1f %8.2f\n", "raw read, cold", craw_mbs * 1e6 / stored, craw_mbs, 1.0);
    printf("%-26s %12.0f %12.1f %8.2f\n", "loader, cold", cn / r->cold_loader_s, cload_mbs,
           cload_mbs / craw_mbs);
    printf("at most %.0f%% of the files' pages were in the page cache after an eviction%s\n",
           100.0 * r->cold_resident,
           r->cold_resident > 0.5 ? ": the kernel kept them, so these are not cold reads" : "");
}

int main(int argc, char **argv)
{
    opts_t o;
    if (parse(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    /* The dataset first: its errors say what is wrong with the files. */
    dl_err_t err = {0};
    dl_dataset_t *ds = NULL;
    files_t f = {0};
    int rc = dl_dataset_open(o.spec, &ds, &err);
    if (!rc && (files_expand(&f, o.spec) != 0 || f.n == 0 || files_measure(&f) != 0))
        rc = DL_ERR(&err, DL_EIO, "cannot list or size the files of %s", o.spec);
    if (!rc && o.batch > dl_dataset_info(ds)->n)
        rc = DL_ERR(&err, DL_EINPUT, "--batch %d is larger than the dataset (%lld samples)",
                    o.batch, (long long)dl_dataset_info(ds)->n);
    if (!rc && o.no_map)
        dl_dataset_map(ds, 0);
    results_t r = {0};
    if (!rc)
        rc = measure(&o, &f, ds, &r, &err);
    if (!rc)
        report(&o, &f, dl_dataset_info(ds), &r, dl_dataset_mapped_bytes(ds));
    else
        dl_err_print("bench_loader", &err);
    dl_dataset_close(ds);
    files_free(&f);
    return rc ? dl_err_exit_status(rc) : 0;
}
