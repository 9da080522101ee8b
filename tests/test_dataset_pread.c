/* Tests for io/dataset.c's ways of reading samples: copies from mappings of
 * the files and pread(2) at the datasets' file offsets (contiguous,
 * unfiltered, native types), and HDF5 (everything else, or every shard with
 * dl_dataset_force_hdf5). All must return byte-identical batches for the
 * same indices: sorted, unsorted, repeated, across shard files, first and
 * last samples, near and far apart (one read or several), on shards of
 * every storage kind (contiguous, chunked, compressed, big-endian, float32),
 * and on the Fashion-MNIST test set as dltrain-data writes it; the samples
 * as stored are the stored values, and normalised they are exactly the
 * documented formula's. Labels beyond the int32 range must give the same
 * error every way, and a file truncated while open (or while mapped, whole
 * pages of it: SIGBUS) must give an error naming it, never zeros or stale
 * bytes; a SIGBUS elsewhere must still end the process.
 * Usage: test_dataset_pread SCRATCH_DIR [fashion-test.h5] */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/dataset.h"

#include "check.h" /* after runtime/error.h (via io/), for CHECK_EINPUT */

#define C 3
#define H 8
#define W 8
#define CHW (C * H * W)

static char scratch[512];

static const char *spath(char *buf, const char *name)
{
    snprintf(buf, 1024, "%s/%s", scratch, name);
    return buf;
}

/* ---- shards made with the HDF5 C API ------------------------------------------- */

typedef struct shard {
    const char *name;
    int n;
    int64_t first;        /* generator index of sample 0 */
    int is_float;         /* /images float32 (else uint8) */
    hid_t image_type;     /* file type of /images (0: native little-endian) */
    hid_t label_type;     /* file type of /labels */
    int chunked, deflate; /* storage of /images (deflate: of /labels too) */
    int64_t bad_at;       /* >= 0: store bad_label at this sample */
    int64_t bad_label;
} shard_t;

/* Stored value k of generator sample g: deterministic and varied. */
static uint8_t value(int64_t g, int k)
{
    return (uint8_t)((g * 131 + k * 7 + (g * k) % 13) % 256);
}

static void attr(hid_t loc, const char *name, hid_t type, hsize_t n, const void *v)
{
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(a >= 0 && H5Awrite(a, type, v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

/* Create and write dataset name; chunk > 0: chunked, chunk rows per chunk. */
static void dset(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *d,
                 int chunk, int deflate, const void *v)
{
    hid_t sp = H5Screate_simple(rank, d, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t cd[4] = {(hsize_t)chunk, rank > 1 ? d[1] : 0, rank > 1 ? d[2] : 0, rank > 1 ? d[3] : 0};
    if (chunk > 0)
        CHECK(H5Pset_chunk(dcpl, rank, cd) >= 0);
    if (deflate)
        CHECK(H5Pset_deflate(dcpl, 6) >= 0);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK(ds >= 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    if (!strcmp(name, "images")) {
        double mean[C] = {100, 90, 80}, sd[C] = {40, 50, 60};
        attr(ds, "mean", H5T_NATIVE_DOUBLE, C, mean);
        attr(ds, "std", H5T_NATIVE_DOUBLE, C, sd);
    }
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Dclose(ds);
}

/* Write shard s (labels first, so /images ends the file when contiguous). */
static void write_shard(const char *path, const shard_t *s)
{
    uint8_t *u8 = calloc((size_t)s->n * CHW, 1);
    float *f32 = calloc((size_t)s->n * CHW, sizeof *f32);
    int64_t *lab = calloc((size_t)s->n, sizeof *lab);
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < CHW; k++) {
            u8[(size_t)i * CHW + k] = value(s->first + i, k);
            f32[(size_t)i * CHW + k] = 0.37f * value(s->first + i, k) - 11.0f;
        }
        lab[i] = i == s->bad_at ? s->bad_label : (s->first + i) % 10;
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 21);
    attr(f, "dltrain_schema", st, 0, "image-classification");
    H5Tclose(st);
    int32_t one = 1, classes = 10;
    attr(f, "schema_version", H5T_NATIVE_INT32, 0, &one);
    attr(f, "num_classes", H5T_NATIVE_INT32, 0, &classes);
    hsize_t dl = (hsize_t)s->n, d4[4] = {(hsize_t)s->n, C, H, W};
    dset(f, "labels", s->label_type, H5T_NATIVE_INT64, 1, &dl, s->deflate ? 16 : 0, s->deflate,
         lab);
    hid_t it = s->image_type ? s->image_type : s->is_float ? H5T_IEEE_F32LE : H5T_STD_U8LE;
    dset(f, "images", it, s->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, 4, d4,
         s->chunked || s->deflate ? 4 : 0, s->deflate, s->is_float ? (void *)f32 : (void *)u8);
    CHECK(H5Fclose(f) >= 0);
    free(u8);
    free(f32);
    free(lab);
}

/* Write shards s[0..k-1] and put their comma-separated paths in spec. */
static void write_set(const shard_t *s, int k, char *spec, size_t size)
{
    spec[0] = '\0';
    for (int i = 0; i < k; i++) {
        char p[1024];
        write_shard(spath(p, s[i].name), &s[i]);
        snprintf(spec + strlen(spec), size - strlen(spec), "%s%s", i ? "," : "", p);
    }
}

/* ---- comparing the two ways ---------------------------------------------------- */

typedef struct pair {
    dl_dataset_t *pread, *h5; /* the same files, opened twice; h5 forced to HDF5 */
    int64_t n;
    size_t chw;
} pair_t;

static int open_pair(const char *spec, pair_t *p)
{
    dl_err_t err = {0};
    memset(p, 0, sizeof *p);
    if (dl_dataset_open(spec, &p->pread, &err) || dl_dataset_open(spec, &p->h5, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", spec, err.msg);
        check_failures++;
        return -1;
    }
    dl_dataset_force_hdf5(p->h5, 1);
    const dl_dataset_info_t *in = dl_dataset_info(p->pread);
    p->n = in->n;
    p->chw = (size_t)in->c * in->h * in->w;
    return 0;
}

static void close_pair(pair_t *p)
{
    dl_dataset_close(p->pread);
    dl_dataset_close(p->h5);
}

/* Read idx[0..n-1] both ways: both must succeed with identical bytes, and
 * labels must be those of the generator (sample g of the set is generator
 * sample g, as the shards' first fields say). */
static void check_same(pair_t *p, const int64_t *idx, int n, const char *what, int line)
{
    float *xa = calloc((size_t)n * p->chw, sizeof *xa), *xb = calloc((size_t)n * p->chw, 4);
    int32_t *ya = calloc((size_t)n, 4), *yb = calloc((size_t)n, 4);
    dl_err_t ea = {0}, eb = {0};
    int ra = dl_dataset_read(p->pread, idx, n, xa, ya, &ea);
    int rb = dl_dataset_read(p->h5, idx, n, xb, yb, &eb);
    if (ra || rb) {
        fprintf(stderr, "%s:%d: %s: pread path %d (%s), HDF5 path %d (%s)\n", __FILE__, line, what,
                ra, ea.msg, rb, eb.msg);
        check_failures++;
    } else if (memcmp(xa, xb, (size_t)n * p->chw * sizeof *xa) ||
               memcmp(ya, yb, (size_t)n * sizeof *ya)) {
        fprintf(stderr, "%s:%d: %s: the two paths return different bytes\n", __FILE__, line, what);
        check_failures++;
    }
    for (int k = 0; !ra && k < n; k++)
        if (ya[k] != idx[k] % 10) {
            fprintf(stderr, "%s:%d: %s: label of sample %lld is %d\n", __FILE__, line, what,
                    (long long)idx[k], ya[k]);
            check_failures++;
            break;
        }
    free(xa), free(xb), free(ya), free(yb);
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Every kind of index list over the pair's n samples; shard_first lists the
 * first global index of each of k shards. */
static void check_orders(pair_t *p, const int64_t *shard_first, int k)
{
    int64_t n = p->n, idx[512];
    int m = 0;
    if (n < 1 || n > 1 << 20) { /* the sets here are small */
        CHECK(n >= 1 && n <= 1 << 20);
        return;
    }
    /* First and last sample of every shard, of the whole set, in one batch. */
    for (int s = 0; s < k; s++) {
        idx[m++] = shard_first[s];
        idx[m++] = (s + 1 < k ? shard_first[s + 1] : n) - 1;
    }
    check_same(p, idx, m, "first and last samples", __LINE__);
    idx[0] = n - 1;
    check_same(p, idx, 1, "the last sample alone", __LINE__);
    idx[0] = 0;
    check_same(p, idx, 1, "the first sample alone", __LINE__);
    /* Everything in order, batches of 256 (sorted, crossing shard ends). */
    for (int64_t b = 0; b < n; b += 256) {
        m = (int)(n - b < 256 ? n - b : 256);
        for (int i = 0; i < m; i++)
            idx[i] = b + i;
        check_same(p, idx, m, "sequential batch", __LINE__);
    }
    /* All of it in one call, descending. */
    int64_t *all = calloc((size_t)n, sizeof *all);
    for (int64_t i = 0; i < n; i++)
        all[i] = n - 1 - i;
    check_same(p, all, (int)n, "every sample, descending", __LINE__);
    free(all);
    /* Shuffled batches of every size up to 200. */
    uint64_t seed = 42;
    for (int t = 0; t < 40; t++) {
        m = 1 + (int)(lcg(&seed) % 200);
        for (int i = 0; i < m; i++)
            idx[i] = (int64_t)(lcg(&seed) % (uint64_t)n);
        check_same(p, idx, m, "shuffled batch", __LINE__);
    }
    /* Repeats: the same sample several times, unsorted, next to others. */
    int64_t dup[] = {5, 5, 5, 7, 5, n - 1, n - 1, 0, 0, 6, 4, 5};
    check_same(p, dup, (int)(sizeof dup / sizeof *dup), "repeated samples", __LINE__);
    /* Spacings either side of the 4 KiB gap that one pread reads through. */
    for (int step = 2; step <= 64; step *= 2) {
        m = 0;
        for (int64_t i = 1; i < n && m < 200; i += step)
            idx[m++] = i;
        check_same(p, idx, m, "evenly spaced samples", __LINE__);
    }
}

/* A set of shards of every storage kind; which are read with pread. */
static void test_uint8_shards(void)
{
    shard_t s[] = {
        /* 2000 x 192 B: a sequential pass needs more than one 256 KiB read. */
        {"u8_contig.h5", 2000, 0, 0, 0, H5T_STD_U8LE, 0, 0, -1, 0},
        {"u8_contig_i64.h5", 33, 2000, 0, 0, H5T_STD_I64LE, 0, 0, -1, 0},
        {"u8_labels_be.h5", 57, 2033, 0, 0, H5T_STD_I16BE, 0, 0, -1, 0},
        {"u8_chunked.h5", 41, 2090, 0, 0, H5T_STD_U32LE, 1, 0, -1, 0},
        {"u8_deflate.h5", 29, 2131, 0, 0, H5T_STD_U8LE, 0, 1, -1, 0},
    };
    int k = (int)(sizeof s / sizeof *s);
    char spec[8192];
    write_set(s, k, spec, sizeof spec);
    pair_t p;
    if (open_pair(spec, &p))
        return;
    enum { BOTH = DL_DATASET_PREAD_IMAGES | DL_DATASET_PREAD_LABELS };
    CHECK(dl_dataset_shard_pread(p.pread, 0) == BOTH);
    CHECK(dl_dataset_shard_pread(p.pread, 1) == BOTH);
    CHECK(dl_dataset_shard_pread(p.pread, 2) == DL_DATASET_PREAD_IMAGES);
    CHECK(dl_dataset_shard_pread(p.pread, 3) == DL_DATASET_PREAD_LABELS);
    CHECK(dl_dataset_shard_pread(p.pread, 4) == 0);
    int64_t first[5];
    for (int i = 0; i < k; i++)
        first[i] = s[i].first;
    check_orders(&p, first, k);

    /* The values themselves: (value - mean) / std with the pooled stats. */
    const dl_dataset_info_t *in = dl_dataset_info(p.pread);
    int64_t idx[3] = {1999, 0, 2150};
    float x[3 * CHW];
    int32_t y[3];
    dl_err_t err = {0};
    CHECK(dl_dataset_read(p.pread, idx, 3, x, y, &err) == 0);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        for (int q = 0; q < CHW; q++) {
            int c = q / (H * W);
            double want = (value(idx[i], q) - in->mean[c]) / in->std[c];
            bad += fabs(x[i * CHW + q] - want) > 1e-5 * (1 + fabs(want));
        }
    CHECK(bad == 0);
    close_pair(&p);
}

/* float32 /images: contiguous little-endian (pread), big-endian and
 * chunked (HDF5). */
static void test_float_shards(void)
{
    shard_t s[] = {
        {"f32_contig.h5", 300, 0, 1, 0, H5T_STD_U8LE, 0, 0, -1, 0},
        {"f32_be.h5", 45, 300, 1, H5T_IEEE_F32BE, H5T_STD_U8LE, 0, 0, -1, 0},
        {"f32_chunked.h5", 50, 345, 1, 0, H5T_STD_U8LE, 1, 0, -1, 0},
    };
    char spec[4096];
    write_set(s, 3, spec, sizeof spec);
    pair_t p;
    if (open_pair(spec, &p))
        return;
    enum { BOTH = DL_DATASET_PREAD_IMAGES | DL_DATASET_PREAD_LABELS };
    CHECK(dl_dataset_shard_pread(p.pread, 0) == BOTH);
    CHECK(dl_dataset_shard_pread(p.pread, 1) == DL_DATASET_PREAD_LABELS);
    CHECK(dl_dataset_shard_pread(p.pread, 2) == DL_DATASET_PREAD_LABELS);
    int64_t first[3] = {0, 300, 345};
    check_orders(&p, first, 3);
    close_pair(&p);
}

/* Labels out of range, including beyond int32 (HDF5 converts those to the
 * nearest end of the int32 range): the same error both ways. */
static void test_bad_labels(void)
{
    struct {
        const char *name;
        hid_t type;
        int64_t v;
        const char *shown;
    } c[] = {
        {"lab_huge_i64.h5", H5T_STD_I64LE, (int64_t)1 << 40, "is 2147483647"},
        {"lab_neg_i64.h5", H5T_STD_I64LE, -((int64_t)1 << 40), "is -2147483648"},
        {"lab_huge_u32.h5", H5T_STD_U32LE, 3000000000, "is 2147483647"},
        {"lab_neg_i8.h5", H5T_STD_I8LE, -3, "is -3"},
        {"lab_ten_u16.h5", H5T_STD_U16LE, 10, "is 10"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char p[1024];
        shard_t s = {c[i].name, 20, 0, 0, 0, c[i].type, 0, 0, 7, c[i].v};
        write_shard(spath(p, s.name), &s);
        pair_t pr;
        if (open_pair(p, &pr))
            continue;
        CHECK(dl_dataset_shard_pread(pr.pread, 0) & DL_DATASET_PREAD_LABELS);
        int64_t idx[4] = {9, 7, 3, 7};
        float x[4 * CHW];
        int32_t y[4];
        dl_err_t ea = {0}, eb = {0};
        int ra = dl_dataset_read(pr.pread, idx, 4, x, y, &ea);
        int rb = dl_dataset_read(pr.h5, idx, 4, x, y, &eb);
        CHECK_EINPUT(ra, &ea, c[i].name, "/labels entry 7");
        CHECK_CONTAINS(ea.msg, c[i].shown);
        CHECK(ra == rb && strcmp(ea.msg, eb.msg) == 0);
        close_pair(&pr);
    }
}

/* Cut path to size bytes. */
static void cut(const char *path, off_t size)
{
    CHECK(truncate(path, size) == 0);
}

/* Where /images ends in a contiguous file. */
static off_t images_end(const char *path, int n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, "images", H5P_DEFAULT) : H5I_INVALID_HID;
    haddr_t at = d >= 0 ? H5Dget_offset(d) : HADDR_UNDEF;
    CHECK(at != HADDR_UNDEF);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return (off_t)at + (off_t)n * CHW;
}

/* A file truncated while open: samples still in it read fine, one beyond
 * its end is DL_EINPUT naming the file, on either path, never zeros. */
static void test_truncated(void)
{
    char p[1024], q[1024];
    shard_t s = {"cut_contig.h5", 100, 0, 0, 0, H5T_STD_U8LE, 0, 0, -1, 0};
    write_shard(spath(p, s.name), &s);
    off_t end = images_end(p, s.n);
    struct stat st;
    CHECK(stat(p, &st) == 0 && end == st.st_size); /* /images ends the file */
    pair_t pr;
    if (open_pair(p, &pr))
        return;
    cut(p, end - 3 * CHW); /* the last three samples are gone */
    int64_t ok[3] = {0, 96, 50}, gone[3] = {3, 98, 10};
    float x[3 * CHW];
    int32_t y[3];
    dl_err_t err = {0};
    CHECK(dl_dataset_read(pr.pread, ok, 3, x, y, &err) == 0);
    CHECK_EINPUT(dl_dataset_read(pr.pread, gone, 3, x, y, &err), &err, "cut_contig.h5",
                 "entries 98..98 of dataset /images");
    CHECK_CONTAINS(err.msg, "truncated or rewritten while in use");
    CHECK_EINPUT(dl_dataset_read(pr.h5, ok, 3, x, y, &err), &err, "cut_contig.h5",
                 "truncated or rewritten while in use");
    close_pair(&pr);

    /* Chunked (read through HDF5): cut to half. */
    shard_t c = {"cut_chunked.h5", 100, 0, 0, 0, H5T_STD_U8LE, 1, 0, -1, 0};
    write_shard(spath(q, c.name), &c);
    if (open_pair(q, &pr))
        return;
    CHECK(stat(q, &st) == 0);
    cut(q, st.st_size / 2);
    CHECK_EINPUT(dl_dataset_read(pr.pread, gone, 3, x, y, &err), &err, "cut_chunked.h5",
                 "truncated or rewritten while in use");
    close_pair(&pr);
}

/* The Fashion-MNIST test set as dltrain-data writes it: read with pread,
 * identical to HDF5 over every sample, shuffled and in order. */
static void test_fashion(const char *path)
{
    pair_t p;
    if (open_pair(path, &p))
        return;
    enum { BOTH = DL_DATASET_PREAD_IMAGES | DL_DATASET_PREAD_LABELS };
    CHECK(dl_dataset_shard_pread(p.pread, 0) == BOTH);
    int64_t *perm = calloc((size_t)p.n, sizeof *perm);
    for (int64_t i = 0; i < p.n; i++)
        perm[i] = i;
    uint64_t seed = 7;
    for (int64_t i = p.n - 1; i > 0; i--) {
        int64_t j = (int64_t)(lcg(&seed) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int64_t b = 0; b < p.n; b += 128) {
        int m = (int)(p.n - b < 128 ? p.n - b : 128);
        float *xa = calloc((size_t)m * p.chw, 4), *xb = calloc((size_t)m * p.chw, 4);
        int32_t ya[128], yb[128];
        dl_err_t err = {0};
        int64_t seq[128];
        for (int i = 0; i < m; i++)
            seq[i] = b + i;
        for (int pass = 0; pass < 2; pass++) {
            const int64_t *idx = pass ? seq : perm + b;
            int ra = dl_dataset_read(p.pread, idx, m, xa, ya, &err);
            int rb = dl_dataset_read(p.h5, idx, m, xb, yb, &err);
            if (ra || rb || memcmp(xa, xb, (size_t)m * p.chw * 4) ||
                memcmp(ya, yb, (size_t)m * 4)) {
                fprintf(stderr, "%s:%d: %s batch at %lld differs (%d, %d: %s)\n", __FILE__,
                        __LINE__, pass ? "sequential" : "shuffled", (long long)b, ra, rb, err.msg);
                check_failures++;
                b = p.n;
                break;
            }
        }
        free(xa), free(xb);
    }
    free(perm);
    close_pair(&p);
}

/* ---- mappings ------------------------------------------------------------------ */

/* Exactly what docs/data.md promises: (value - mean[c]) / std[c] in double,
 * rounded once; and the stored values as written. */
static void check_values(dl_dataset_t *ds, const int64_t *idx, int n, int is_float, int line)
{
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    size_t sb = (size_t)dl_dataset_sample_bytes(ds);
    uint8_t *st = calloc((size_t)n, sb);
    float *x = calloc((size_t)n * CHW, sizeof *x);
    int32_t *y = calloc((size_t)n, sizeof *y);
    dl_err_t err = {0};
    CHECK(sb == (size_t)CHW * (is_float ? 4 : 1));
    CHECK(dl_dataset_read_stored(ds, idx, n, st, y, &err) == 0);
    CHECK(dl_dataset_read(ds, idx, n, x, y, &err) == 0);
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int q = 0; q < CHW; q++) {
            int c = q / (H * W);
            float f32 = 0.37f * value(idx[i], q) - 11.0f, got;
            double v = is_float ? (double)f32 : (double)value(idx[i], q);
            if (is_float)
                memcpy(&got, st + ((size_t)i * CHW + (size_t)q) * 4, 4), bad += got != f32;
            else
                bad += st[(size_t)i * CHW + (size_t)q] != value(idx[i], q);
            bad += x[(size_t)i * CHW + (size_t)q] != (float)((v - in->mean[c]) / in->std[c]);
        }
    if (bad) {
        fprintf(stderr, "%s:%d: %d stored or normalised values differ\n", __FILE__, line, bad);
        check_failures++;
    }
    free(st), free(x), free(y);
}

/* Contiguous shards of every label type, uint8 and float32: mapped, they
 * read as with pread and as through HDF5; a limit below their size, or one
 * shard that is not contiguous, leaves them to pread. */
static void test_mapped(int is_float)
{
    const char *f = is_float ? "f" : "u";
    char n0[64], n1[64], n2[64], n3[64];
    snprintf(n0, sizeof n0, "map_%s0.h5", f);
    snprintf(n1, sizeof n1, "map_%s1.h5", f);
    snprintf(n2, sizeof n2, "map_%s2.h5", f);
    snprintf(n3, sizeof n3, "map_%s3.h5", f);
    shard_t s[] = {
        {n0, 1500, 0, is_float, 0, H5T_NATIVE_UINT8, 0, 0, -1, 0},
        {n1, 33, 1500, is_float, 0, H5T_NATIVE_INT64, 0, 0, -1, 0},
        {n2, 7, 1533, is_float, 0, H5T_NATIVE_INT8, 0, 0, -1, 0},
        {n3, 260, 1540, is_float, 0, H5T_NATIVE_UINT16, 0, 0, -1, 0},
    };
    char spec[8192];
    write_set(s, 4, spec, sizeof spec);
    pair_t mp, ph; /* mapped against pread, pread against HDF5 */
    if (open_pair(spec, &mp))
        return;
    if (open_pair(spec, &ph)) {
        close_pair(&mp);
        return;
    }
    dl_dataset_map(ph.pread, 0);
    int64_t mapped = dl_dataset_mapped_bytes(mp.pread);
    CHECK(mapped >= 1800 * (int64_t)CHW * (is_float ? 4 : 1));
    CHECK(dl_dataset_mapped_bytes(ph.pread) == 0);
    dl_dataset_close(mp.h5);
    mp.h5 = ph.pread;
    int64_t first[4] = {0, 1500, 1533, 1540};
    check_orders(&mp, first, 4);
    check_orders(&ph, first, 4);
    int64_t idx[6] = {1799, 0, 1533, 1500, 17, 1533};
    check_values(mp.pread, idx, 6, is_float, __LINE__);
    check_values(ph.pread, idx, 6, is_float, __LINE__);
    check_values(ph.h5, idx, 6, is_float, __LINE__);
    /* The limit: one byte short maps nothing, and reads still work. */
    CHECK(dl_dataset_map(mp.pread, mapped - 1) == 0 && dl_dataset_mapped_bytes(mp.pread) == 0);
    check_values(mp.pread, idx, 6, is_float, __LINE__);
    CHECK(dl_dataset_map(mp.pread, mapped) == mapped);
    mp.h5 = NULL;
    close_pair(&mp);
    close_pair(&ph);

    /* One chunked shard among them: nothing is mapped. */
    shard_t c = {"map_chunked.h5", 40, 1800, is_float, 0, H5T_NATIVE_UINT8, 1, 0, -1, 0};
    char p[1024], spec2[9216];
    write_shard(spath(p, c.name), &c);
    snprintf(spec2, sizeof spec2, "%s,%s", spec, p);
    dl_dataset_t *ds = NULL;
    dl_err_t err = {0};
    CHECK(dl_dataset_open(spec2, &ds, &err) == 0);
    if (ds) {
        CHECK(dl_dataset_mapped_bytes(ds) == 0 && dl_dataset_map(ds, (int64_t)1 << 40) == 0);
        int64_t j[3] = {1839, 3, 1800};
        check_values(ds, j, 3, is_float, __LINE__);
    }
    dl_dataset_close(ds);
}

/* A label out of range in a mapped dataset: the message of the other ways. */
static void test_mapped_bad_label(void)
{
    char p[1024];
    shard_t s = {"map_bad_label.h5", 20, 0, 0, 0, H5T_NATIVE_INT16, 0, 0, 7, 12};
    write_shard(spath(p, s.name), &s);
    pair_t pr;
    if (open_pair(p, &pr))
        return;
    CHECK(dl_dataset_mapped_bytes(pr.pread) > 0);
    int64_t idx[4] = {9, 7, 3, 7};
    uint8_t x[4 * CHW];
    int32_t y[4];
    dl_err_t ea = {0}, eb = {0};
    int ra = dl_dataset_read_stored(pr.pread, idx, 4, x, y, &ea);
    int rb = dl_dataset_read_stored(pr.h5, idx, 4, x, y, &eb);
    CHECK_EINPUT(ra, &ea, "map_bad_label.h5", "/labels entry 7");
    CHECK(ra == rb && strcmp(ea.msg, eb.msg) == 0);
    close_pair(&pr);
}

/* A mapped file cut while open: within its last page (those bytes read as
 * zeros from a mapping) and by whole pages (reading them raises SIGBUS).
 * Samples still in the file read fine; the others are the error naming the
 * file, as with pread. */
static void test_mapped_truncated(void)
{
    char p[1024];
    long page = sysconf(_SC_PAGESIZE);
    shard_t s = {"map_cut.h5", 400, 0, 0, 0, H5T_STD_U8LE, 0, 0, -1, 0};
    write_shard(spath(p, s.name), &s);
    off_t end = images_end(p, s.n);
    int64_t per_page = page / CHW + 1; /* samples in more than a page */
    struct {
        off_t cut;
        int64_t gone;
    } c[] = {{end - 3 * CHW, 398}, {end - (off_t)(3 * per_page * CHW), s.n - 2 * per_page}};
    for (int i = 0; i < 2; i++) {
        write_shard(p, &s);
        pair_t pr;
        if (open_pair(p, &pr))
            return;
        CHECK(dl_dataset_mapped_bytes(pr.pread) > 0);
        int64_t ok[3] = {0, c[i].gone - 1 - per_page, 50};
        int64_t gone[3] = {3, c[i].gone, 10}, all[400];
        for (int k = 0; k < 400; k++)
            all[k] = 399 - k;
        uint8_t x[400 * CHW];
        int32_t y[400];
        dl_err_t err = {0};
        CHECK(dl_dataset_read_stored(pr.pread, all, 400, x, y, &err) == 0); /* pages mapped */
        cut(p, c[i].cut);
        CHECK(dl_dataset_read_stored(pr.pread, ok, 3, x, y, &err) == 0);
        CHECK(x[CHW] == value(ok[1], 0) && x[2 * CHW - 1] == value(ok[1], CHW - 1));
        CHECK_EINPUT(dl_dataset_read_stored(pr.pread, gone, 3, x, y, &err), &err, "map_cut.h5",
                     "truncated or rewritten while in use");
        CHECK_CONTAINS(err.msg, "of dataset /images");
        CHECK_EINPUT(dl_dataset_read_stored(pr.pread, all, 400, x, y, &err), &err, "map_cut.h5",
                     "truncated or rewritten while in use");
        close_pair(&pr);
    }
}

/* A SIGBUS that is not a copy from a dataset's mapping still ends the
 * process, after a dataset has installed its handler (run first: a child
 * inherits the handler, and this one must find SIGBUS's action as the
 * process began; under a sanitizer, whose handler reports the signal its
 * own way, the check is skipped). */
static void test_other_sigbus(void)
{
    char p[1024], q[1024];
    shard_t s = {"map_sigbus.h5", 30, 0, 0, 0, H5T_STD_U8LE, 0, 0, -1, 0};
    write_shard(spath(p, s.name), &s);
    spath(q, "sigbus.bin");
    FILE *f = fopen(q, "wb");
    CHECK(f && fwrite(p, 1, sizeof p, f) == sizeof p && fclose(f) == 0);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dl_dataset_t *ds = NULL;
        dl_err_t err = {0};
        struct sigaction before;
        if (sigaction(SIGBUS, NULL, &before) != 0 || before.sa_handler != SIG_DFL)
            _exit(77);
        int fd = open(q, O_RDONLY);
        if (dl_dataset_open(p, &ds, &err) != 0 || dl_dataset_mapped_bytes(ds) == 0 || fd < 0)
            _exit(3);
        volatile const char *m = mmap(NULL, sizeof p, PROT_READ, MAP_SHARED, fd, 0);
        if ((void *)m == MAP_FAILED || truncate(q, 0) != 0)
            _exit(4);
        _exit(m[0] == 7 ? 5 : 6); /* SIGBUS here */
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        fprintf(stderr, "SIGBUS has a handler already (a sanitizer?): not checked\n");
        return;
    }
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: test_dataset_pread SCRATCH_DIR [fashion-test.h5]\n");
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s", argv[1]);
    if (mkdir(scratch, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", scratch, strerror(errno));
        return 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_other_sigbus();
    test_uint8_shards();
    test_float_shards();
    test_bad_labels();
    test_truncated();
    test_mapped(0);
    test_mapped(1);
    test_mapped_bad_label();
    test_mapped_truncated();
    if (argc == 3)
        test_fashion(argv[2]);
    ssize_t left = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (left != 0) {
        fprintf(stderr, "%s:%d: %zd HDF5 objects still open\n", __FILE__, __LINE__, left);
        check_failures++;
    }
    H5close();
    return CHECK_DONE();
}
