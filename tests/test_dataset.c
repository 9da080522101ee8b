/* Tests for io/dataset.c and io/idx.c: IDX conversion (plain and gzip), exact
 * read-back in any index order, multi-shard datasets (comma list and glob),
 * float32 /images, and one test per bad-input message: missing datasets,
 * wrong types and shapes, counts that differ, empty and truncated files, a
 * token dataset, and shards that disagree. The .npy, CSV and token
 * converters are tested through dltrain-data in test_dltrain_data_cli.sh.
 * Usage: test_dataset SCRATCH_DIR */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#include "io/convert.h"
#include "io/dataset.h"
#include "io/tokens.h"

#include "check.h" /* after runtime/error.h (via io/), for CHECK_EINPUT */

static char scratch[512];

static const char *spath(char *buf, const char *name)
{
    snprintf(buf, 1024, "%s/%s", scratch, name);
    return buf;
}

/* ---- synthetic IDX data ---------------------------------------------------- */

#define H 5
#define W 4

/* Pixel of global sample i: deterministic and varied. */
static uint8_t pixel(int64_t i, int y, int x)
{
    return (uint8_t)((i * 37 + y * 11 + x * 5 + (i * y * x) % 7) % 256);
}

static uint8_t label_of(int64_t i)
{
    return (uint8_t)(i % 10);
}

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8), b[3] = (unsigned char)v;
}

/* Write bytes to path, gzip-compressed or plain. */
static void write_file(const char *path, const void *data, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f && gzwrite(f, data, (unsigned)len) == (int)len);
        if (f)
            CHECK(gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(data, 1, len, f) == len);
        if (f)
            CHECK(fclose(f) == 0);
    }
}

/* IDX images for samples first..first+n-1; drop removes trailing bytes. */
static void write_idx_images(const char *path, int64_t first, int n, int gz, uint32_t magic,
                             size_t drop)
{
    size_t len = 16 + (size_t)n * H * W;
    unsigned char *b = calloc(len, 1);
    put_be32(b, magic), put_be32(b + 4, (uint32_t)n), put_be32(b + 8, H), put_be32(b + 12, W);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                b[16 + ((size_t)i * H + y) * W + x] = pixel(first + i, y, x);
    write_file(path, b, len - drop, gz);
    free(b);
}

static void write_idx_labels(const char *path, int64_t first, int n, int gz)
{
    unsigned char *b = calloc(8 + (size_t)n, 1);
    put_be32(b, 0x00000801), put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        b[8 + i] = label_of(first + i);
    write_file(path, b, 8 + (size_t)n, gz);
    free(b);
}

/* Convert samples first..first+n-1 into out; returns dl_idx_to_h5's status. */
static int make_shard(const char *out, int64_t first, int n, int gz)
{
    char ip[1024], lp[1024];
    snprintf(ip, sizeof ip, "%s.images.idx", out);
    snprintf(lp, sizeof lp, "%s.labels.idx", out);
    write_idx_images(ip, first, n, gz, 0x00000803, 0);
    write_idx_labels(lp, first, n, gz);
    dl_err_t err = {0};
    int rc = dl_idx_to_h5(ip, lp, out, 1, &err);
    if (rc)
        fprintf(stderr, "dl_idx_to_h5(%s): %s\n", out, err.msg);
    return rc;
}

/* Population mean and std of all pixels of samples first..first+n-1. */
static void stats(int64_t first, int64_t n, double *mean, double *sd)
{
    double s = 0, ss = 0, cnt = (double)n * H * W;
    for (int64_t i = first; i < first + n; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                s += pixel(i, y, x), ss += (double)pixel(i, y, x) * pixel(i, y, x);
    *mean = s / cnt;
    *sd = sqrt(ss / cnt - *mean * *mean);
}

/* Read idx[0..n-1] (global == generator index) and compare every value. */
static void check_read(dl_dataset_t *ds, const int64_t *idx, int n, int line)
{
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    float *img = calloc((size_t)n * H * W, sizeof *img);
    int32_t *lab = calloc((size_t)n, sizeof *lab);
    dl_err_t err = {0};
    int rc = dl_dataset_read(ds, idx, n, img, lab, &err);
    if (rc) {
        fprintf(stderr, "%s:%d: dl_dataset_read failed: %s\n", __FILE__, line, err.msg);
        check_failures++;
    }
    int bad = 0;
    for (int k = 0; !rc && k < n; k++) {
        bad += lab[k] != label_of(idx[k]);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double want = (pixel(idx[k], y, x) - in->mean[0]) / in->std[0];
                bad += fabs(img[((size_t)k * H + y) * W + x] - want) > 1e-5 * (1 + fabs(want));
            }
    }
    if (bad) {
        fprintf(stderr, "%s:%d: %d values read back wrong\n", __FILE__, line, bad);
        check_failures++;
    }
    free(img);
    free(lab);
}

/* ---- good data ----------------------------------------------------------------- */

static void test_roundtrip(int gz)
{
    char out[1024];
    spath(out, gz ? "one_gz.h5" : "one_plain.h5");
    CHECK(make_shard(out, 0, 37, gz) == 0);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    CHECK(access(tmp, F_OK) != 0); /* renamed away */
    dl_dataset_t *ds = NULL;
    dl_err_t err = {0};
    CHECK(dl_dataset_open(out, &ds, &err) == 0);
    if (!ds) {
        fprintf(stderr, "open %s: %s\n", out, err.msg);
        return;
    }
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    double m, s;
    stats(0, 37, &m, &s);
    CHECK(in->n == 37 && in->c == 1 && in->h == H && in->w == W);
    CHECK(in->num_classes == 10 && in->n_files == 1);
    CHECK(fabs(in->mean[0] - m) < 1e-9 && fabs(in->std[0] - s) < 1e-9);
    int64_t idx[] = {36, 0, 5, 5, 17, 3, 36, 4, 6, 35};
    check_read(ds, idx, 10, __LINE__);
    int64_t all[37];
    for (int i = 0; i < 37; i++)
        all[i] = 36 - i;
    check_read(ds, all, 37, __LINE__);
    /* Out-of-range indices are a caller bug, not bad data. */
    float img[H * W];
    int32_t lab;
    int64_t bad = 37;
    CHECK(dl_dataset_read(ds, &bad, 1, img, &lab, &err) == DL_EINTERNAL);
    bad = -1;
    CHECK(dl_dataset_read(ds, &bad, 1, img, &lab, &err) == DL_EINTERNAL);
    dl_dataset_close(ds);
}

static void test_shards(void)
{
    char p[3][1024], spec[3200], pat[1100];
    const int sizes[3] = {10, 11, 12}; /* >= 10 each: every shard sees all 10 classes */
    int64_t first = 0;
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "multi/part-%d.h5", i);
        spath(p[i], name);
        CHECK(make_shard(p[i], first, sizes[i], i == 1) == 0);
        first += sizes[i];
    }
    snprintf(spec, sizeof spec, "%s,%s, %s", p[0], p[1], p[2]);
    snprintf(pat, sizeof pat, "%s/multi/part-*.h5", scratch);
    const char *specs[2] = {spec, pat};
    double m, s;
    stats(0, 33, &m, &s);
    for (int t = 0; t < 2; t++) {
        dl_dataset_t *ds = NULL;
        dl_err_t err = {0};
        CHECK(dl_dataset_open(specs[t], &ds, &err) == 0);
        if (!ds) {
            fprintf(stderr, "open %s: %s\n", specs[t], err.msg);
            continue;
        }
        const dl_dataset_info_t *in = dl_dataset_info(ds);
        CHECK(in->n == 33 && in->n_files == 3);
        /* Pooled statistics equal those of all samples together. */
        CHECK(fabs(in->mean[0] - m) < 1e-9 && fabs(in->std[0] - s) < 1e-9);
        int64_t idx[] = {32, 9, 10, 20, 21, 0, 21, 11, 12, 13, 31, 9, 1, 20};
        check_read(ds, idx, 14, __LINE__);
        dl_dataset_close(ds);
    }
}

/* ---- bad HDF5 files, made with the HDF5 C API -------------------------------- */

typedef struct bad_opts {
    int no_images, images_rank3, no_labels, labels_delta, no_mean;
    int images_f64;     /* /images float64 (refused) */
    int images_f32;     /* /images float32 (accepted) */
    int num_classes;    /* 0: 10 */
    int bad_label;      /* store label 10 at sample 3 while num_classes is 10 */
    int h;              /* image height (0: H) */
    const char *schema; /* NULL: "image-classification", stored variable-length */
} bad_opts_t;

static void attr_write(hid_t loc, const char *name, hid_t type, hsize_t n, const void *v)
{
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(a >= 0 && H5Awrite(a, type, v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static hid_t dset_write(hid_t f, const char *name, hid_t type, int rank, const hsize_t *d,
                        const void *v)
{
    hid_t sp = H5Screate_simple(rank, d, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(ds >= 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Sclose(sp);
    return ds;
}

/* Write a 6-sample file at path, good unless o says otherwise. The schema
 * string is variable-length UTF-8 here (the converter writes fixed-length
 * ASCII), so the reader is tested on both. */
static void make_h5(const char *path, const bad_opts_t *o)
{
    enum { N = 6 };
    int h = o->h ? o->h : H;
    uint8_t pix[N * 8 * W];
    float fpix[N * 8 * W];
    double dpix[N * 8 * W];
    int64_t lab[N + 1];
    for (int i = 0; i < N * h * W; i++)
        pix[i] = (uint8_t)(i * 13), fpix[i] = (float)i * 0.75f - 3, dpix[i] = i;
    for (int i = 0; i < N + 1; i++)
        lab[i] = i % 10;
    if (o->bad_label)
        lab[3] = 10;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    const char *schema = o->schema ? o->schema : "image-classification";
    attr_write(f, "dltrain_schema", st, 0, &schema);
    H5Tclose(st);
    int32_t one = 1, classes = o->num_classes ? o->num_classes : 10;
    attr_write(f, "schema_version", H5T_NATIVE_INT32, 0, &one);
    attr_write(f, "num_classes", H5T_NATIVE_INT32, 0, &classes);
    if (!o->no_images) {
        hsize_t d4[4] = {N, 1, (hsize_t)h, W}, d3[3] = {N, (hsize_t)h, W};
        hid_t ds = o->images_f64 ? dset_write(f, "images", H5T_NATIVE_DOUBLE, 4, d4, dpix)
                   : o->images_f32
                       ? dset_write(f, "images", H5T_NATIVE_FLOAT, 4, d4, fpix)
                       : dset_write(f, "images", H5T_NATIVE_UINT8, o->images_rank3 ? 3 : 4,
                                    o->images_rank3 ? d3 : d4, pix);
        double mean = 100, sd = 50;
        if (!o->no_mean)
            attr_write(ds, "mean", H5T_NATIVE_DOUBLE, 1, &mean);
        attr_write(ds, "std", H5T_NATIVE_DOUBLE, 1, &sd);
        H5Dclose(ds);
    }
    if (!o->no_labels) {
        hsize_t dl = (hsize_t)(N + o->labels_delta);
        H5Dclose(dset_write(f, "labels", H5T_NATIVE_INT64, 1, &dl, lab));
    }
    CHECK(H5Fclose(f) >= 0);
}

/* Open spec expecting DL_EINPUT naming both needles. */
static void expect_open_fails(const char *spec, const char *n1, const char *n2, int line)
{
    dl_dataset_t *ds = NULL;
    dl_err_t err = {0};
    int rc = dl_dataset_open(spec, &ds, &err);
    check_einput(rc, &err, n1, n2, __FILE__, line);
    CHECK(ds == NULL);
    dl_dataset_close(ds);
}

static void bad_case(const char *name, bad_opts_t o, const char *needle, int line)
{
    char p[1024];
    make_h5(spath(p, name), &o);
    expect_open_fails(p, name, needle, line);
}

static void test_bad_h5(void)
{
    char p[1024], q[2100];
    expect_open_fails(spath(p, "does-not-exist.h5"), "does-not-exist.h5", "no such file", __LINE__);
    write_file(spath(p, "text.h5"), "hello, not hdf5\n", 16, 0);
    expect_open_fails(p, "text.h5", "not an HDF5 file", __LINE__);
    bad_case("no_images.h5", (bad_opts_t){.no_images = 1}, "dataset /images is missing", __LINE__);
    bad_case("float64_images.h5", (bad_opts_t){.images_f64 = 1},
             "dataset /images has type 64-bit float; expected uint8 (8-bit unsigned integers) or "
             "float32",
             __LINE__);
    bad_case("rank3.h5", (bad_opts_t){.images_rank3 = 1}, "/images has rank 3", __LINE__);
    bad_case("no_labels.h5", (bad_opts_t){.no_labels = 1}, "dataset /labels is missing", __LINE__);
    bad_case("count.h5", (bad_opts_t){.labels_delta = 1},
             "dataset /labels has 7 entries but /images has 6", __LINE__);
    bad_case("count_short.h5", (bad_opts_t){.labels_delta = -2},
             "dataset /labels has 4 entries but /images has 6", __LINE__);
    bad_case("no_mean.h5", (bad_opts_t){.no_mean = 1}, "attribute mean", __LINE__);
    bad_case("schema.h5", (bad_opts_t){.schema = "segmentation"}, "dltrain_schema", __LINE__);

    /* A good file with the variable-length schema string opens fine. */
    dl_dataset_t *ds = NULL;
    dl_err_t err = {0};
    make_h5(spath(p, "good6.h5"), &(bad_opts_t){0});
    CHECK(dl_dataset_open(p, &ds, &err) == 0);
    dl_dataset_close(ds);

    /* Label out of range: found when the sample is read. */
    ds = NULL;
    make_h5(spath(p, "bad_label.h5"), &(bad_opts_t){.bad_label = 1});
    CHECK(dl_dataset_open(p, &ds, &err) == 0);
    if (ds) {
        float img[2 * H * W];
        int32_t lab[2];
        int64_t ok[2] = {2, 4}, bad[2] = {5, 3};
        CHECK(dl_dataset_read(ds, ok, 2, img, lab, &err) == 0 && lab[0] == 2 && lab[1] == 4);
        CHECK_EINPUT(dl_dataset_read(ds, bad, 2, img, lab, &err), &err, "bad_label.h5",
                     "/labels entry 3");
        dl_dataset_close(ds);
    }

    /* Shards disagreeing on the image shape. */
    char good[1024];
    make_h5(spath(p, "tall.h5"), &(bad_opts_t){.h = 7});
    snprintf(q, sizeof q, "%s,%s", spath(good, "good6.h5"), p);
    expect_open_fails(q, "tall.h5", "/images", __LINE__);

    snprintf(q, sizeof q, "%s/nothing-*.h5", scratch);
    expect_open_fails(q, "nothing-*.h5", "matches no files", __LINE__);
}

/* Files that are not whole: empty, cut short, or a token dataset. */
static void test_damaged_files(void)
{
    char p[1024], whole[1024];
    write_file(spath(p, "empty.h5"), "", 0, 0);
    expect_open_fails(p, "empty.h5", "the file is empty (0 bytes)", __LINE__);

    /* A valid converted file cut to half its size (an interrupted copy). */
    CHECK(make_shard(spath(whole, "whole.h5"), 0, 400, 0) == 0);
    struct stat st;
    CHECK(stat(whole, &st) == 0);
    FILE *in = fopen(whole, "rb");
    size_t half = (size_t)st.st_size / 2;
    char *buf = calloc(half, 1);
    CHECK(in && buf && fread(buf, 1, half, in) == half);
    if (in)
        fclose(in);
    write_file(spath(p, "half.h5"), buf, half, 0);
    free(buf);
    expect_open_fails(p, "half.h5", "damaged or truncated", __LINE__);

    /* A token dataset is refused by the image reader, saying what it is. */
    char raw[1024];
    write_file(spath(raw, "text.bin"), "some bytes of text", 18, 0);
    dl_err_t err = {0};
    dl_tokens_opts_t o = {.bits = 16, .shards = 1};
    CHECK(dl_tokens_convert(raw, spath(p, "tokens.h5"), &o, &err) == 0);
    expect_open_fails(p, "tokens.h5",
                      "a token dataset (dltrain_schema = \"tokens\"); training reads "
                      "image-classification datasets",
                      __LINE__);
}

/* Shards must agree on the /images type and on num_classes. */
static void test_shards_disagree(void)
{
    char p8[1024], pf[1024], pc[1024], q[2100];
    make_h5(spath(p8, "agree_u8.h5"), &(bad_opts_t){0});
    make_h5(spath(pf, "agree_f32.h5"), &(bad_opts_t){.images_f32 = 1});
    make_h5(spath(pc, "agree_12.h5"), &(bad_opts_t){.num_classes = 12});
    snprintf(q, sizeof q, "%s,%s", p8, pf);
    expect_open_fails(q, "agree_f32.h5", "dataset /images holds float32 values but", __LINE__);
    snprintf(q, sizeof q, "%s,%s", pf, p8);
    expect_open_fails(q, "agree_u8.h5", "must store the same type", __LINE__);
    /* Differing num_classes is refused too (the converters write the whole
     * dataset's number into every shard, so shards of one dataset agree). */
    snprintf(q, sizeof q, "%s,%s", p8, pc);
    expect_open_fails(q, "agree_12.h5", "root attribute num_classes is 12", __LINE__);
}

/* float32 /images: read back as (x - mean) / std with the stored statistics. */
static void test_float_images(void)
{
    char p[1024];
    make_h5(spath(p, "float32.h5"), &(bad_opts_t){.images_f32 = 1});
    dl_dataset_t *ds = NULL;
    dl_err_t err = {0};
    CHECK(dl_dataset_open(p, &ds, &err) == 0);
    if (!ds) {
        fprintf(stderr, "open %s: %s\n", p, err.msg);
        return;
    }
    const dl_dataset_info_t *in = dl_dataset_info(ds);
    CHECK(in->is_float == 1 && in->n == 6 && in->c == 1 && in->h == H && in->w == W);
    CHECK(in->mean[0] == 100 && in->std[0] == 50);
    float img[2 * H * W];
    int32_t lab[2];
    int64_t idx[2] = {4, 1};
    CHECK(dl_dataset_read(ds, idx, 2, img, lab, &err) == 0);
    int bad = lab[0] != 4 || lab[1] != 1;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < H * W; j++) {
            float x = (float)(idx[k] * H * W + j) * 0.75f - 3;
            bad += img[k * H * W + j] != (float)(((double)x - 100) / 50);
        }
    CHECK(bad == 0);
    CHECK(dl_dataset_verify(ds, NULL, &err) == 0);
    dl_dataset_close(ds);
}

/* ---- bad IDX files ----------------------------------------------------------- */

static void expect_idx_fails(const char *ip, const char *lp, const char *n1, const char *n2,
                             int line)
{
    char out[1024], tmp[1100];
    dl_err_t err = {0};
    spath(out, "idx_fail.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    int rc = dl_idx_to_h5(ip, lp, out, 1, &err);
    check_einput(rc, &err, n1, n2, __FILE__, line);
    if (access(out, F_OK) == 0 || access(tmp, F_OK) == 0) {
        fprintf(stderr, "%s:%d: a failed conversion left %s or its .tmp behind\n", __FILE__, line,
                out);
        check_failures++;
    }
}

static void test_bad_idx(void)
{
    char ip[1024], lp[1024], tp[1024], gp[1024], mp[1024], sp[1024];
    write_idx_images(spath(ip, "ok-images.idx"), 0, 9, 0, 0x00000803, 0);
    write_idx_labels(spath(lp, "ok-labels.idx"), 0, 9, 0);
    write_idx_images(spath(tp, "trunc-images.idx"), 0, 9, 0, 0x00000803, 5);
    expect_idx_fails(tp, lp, "trunc-images.idx", "truncated", __LINE__);
    /* A cut gzip stream: compress, then drop the tail of the compressed file. */
    write_idx_images(spath(gp, "trunc-images.idx.gz"), 0, 9, 1, 0x00000803, 0);
    struct stat st;
    CHECK(stat(gp, &st) == 0 && truncate(gp, st.st_size - 20) == 0);
    expect_idx_fails(gp, lp, "trunc-images.idx.gz", "truncated", __LINE__);
    write_idx_images(spath(mp, "magic-images.idx"), 0, 9, 0, 0x00000802, 0);
    expect_idx_fails(mp, lp, "magic-images.idx", "magic", __LINE__);
    expect_idx_fails(lp, ip, "ok-labels.idx", "magic", __LINE__); /* swapped arguments */
    write_idx_labels(spath(sp, "short-labels.idx"), 0, 8, 0);
    expect_idx_fails(ip, sp, "short-labels.idx", "one entry per sample", __LINE__);
    expect_idx_fails(spath(tp, "missing-images.idx"), lp, "missing-images.idx", "no such file",
                     __LINE__);
}

/* Files, datasets, groups and attributes still open anywhere; must be 0 once
 * every dataset is closed (H5close at exit would hide a leak from valgrind). */
static ssize_t open_h5_objects(void)
{
    return H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_dataset SCRATCH_DIR\n");
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s", argv[1]);
    char multi[1024];
    if ((mkdir(scratch, 0777) != 0 && errno != EEXIST) ||
        (mkdir(spath(multi, "multi"), 0777) != 0 && errno != EEXIST)) {
        fprintf(stderr, "cannot create %s: %s\n", scratch, strerror(errno));
        return 1;
    }
    test_roundtrip(0);
    test_roundtrip(1);
    test_shards();
    test_bad_h5();
    test_damaged_files();
    test_shards_disagree();
    test_float_images();
    test_bad_idx();
    ssize_t left = open_h5_objects();
    if (left != 0) {
        fprintf(stderr, "%s:%d: %zd HDF5 objects still open\n", __FILE__, __LINE__, left);
        check_failures++;
    }
    H5close(); /* release HDF5's global state so valgrind sees no leaks */
    return CHECK_DONE();
}
