/* Checkpoint files (io/checkpoint.c): a bit-exact round trip of the cnn2bn
 * preset's parameters, state, optimiser buffers and every metadata field;
 * retention (keep_last, keep_every) and the `latest` pointer; a flipped
 * byte, a truncated file, a non-HDF5 file and a dangling `latest`, each
 * found by dl_ckpt_verify and skipped by dl_ckpt_find with a report line;
 * reading into another model; and failed writes that leave what was saved
 * untouched, among them one the OS refuses for lack of room (a file size
 * limit); every rank's state in /ranks/state. Usage: test_checkpoint
 * SCRATCH_DIR */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "io/checkpoint.h"
#include "models/presets.h"

#include "check.h"

static char scratch[512];

/* scratch/name in buf (1024 bytes). */
static const char *spath(char *buf, const char *name)
{
    snprintf(buf, 1024, "%s/%s", scratch, name);
    return buf;
}

/* ---- a model to save ----------------------------------------------------- */

typedef struct fixture {
    dl_model_t m;
    dl_tensor_info_t *t;
    int n;
    float *om, *ov;
    dl_ckpt_model_t cm;
} fixture_t;

static int fixture_init(fixture_t *f, int classes, uint64_t seed, int opt_bufs)
{
    memset(f, 0, sizeof *f);
    dl_layer_spec_t specs[32];
    int preset = 0;
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], "cnn2bn"))
            preset = i;
    int n = dl_preset_specs(preset, specs, 32);
    for (int i = 0; i < n; i++)
        if (specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = classes;
    dl_err_t err = {0};
    if (dl_model_build(&f->m, specs, n, (dl_shape_t){1, 28, 28}, 1, &err) ||
        dl_model_tensors(&f->m, &f->t, &f->n, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        return -1;
    }
    int64_t np = f->m.n_params;
    f->om = calloc((size_t)np, sizeof(float));
    f->ov = calloc((size_t)np, sizeof(float));
    dl_rng_t rng;
    dl_rng_seed(&rng, seed, 9);
    for (int64_t i = 0; i < np; i++) {
        f->m.params[i] = (float)dl_rng_normal(&rng);
        f->om[i] = (float)dl_rng_normal(&rng);
        f->ov[i] = (float)dl_rng_uniform(&rng);
    }
    for (int64_t i = 0; i < f->m.n_state; i++)
        f->m.state[i] = (float)dl_rng_uniform(&rng);
    f->cm = (dl_ckpt_model_t){.tensors = f->t,
                              .n_tensors = f->n,
                              .params = f->m.params,
                              .n_params = np,
                              .state = f->m.state,
                              .n_state = f->m.n_state,
                              .opt_m = opt_bufs >= 1 ? f->om : NULL,
                              .opt_v = opt_bufs >= 2 ? f->ov : NULL,
                              .n_opt = np};
    return 0;
}

static void fixture_free(fixture_t *f)
{
    free(f->t);
    free(f->om);
    free(f->ov);
    dl_model_free(&f->m);
}

static dl_ckpt_meta_t meta_for(int64_t step)
{
    static char job[] = "[train]\nmax_steps = 600\nseed = 77\n\n[model]\npreset = cnn2bn\n";
    dl_ckpt_meta_t m = {.step = step,
                        .epoch = step / 100,
                        .global_batch = 64,
                        .world_size = 4,
                        .seed = 0xfedcba9876543210ull,
                        .config_digest = 0x0123456789abcdefull,
                        .data = {.epoch = step / 100, .offset = (step % 100) * 64, .seed = 77},
                        .opt_t = step + 1,
                        .job_text = job,
                        .wall_ms = 1000 * step + 3};
    for (int i = 0; i < 8; i++)
        m.sched[i] = 0.1 * i - 1.0 / 3.0;
    return m;
}

static int write_step(fixture_t *f, const char *dir, int64_t step, int keep_last,
                      int64_t keep_every)
{
    dl_ckpt_meta_t meta = meta_for(step);
    dl_err_t err = {0};
    int rc = dl_ckpt_write(dir, &meta, &f->cm, keep_last, keep_every, NULL, 0, &err);
    if (rc)
        fprintf(stderr, "write step %lld: %s\n", (long long)step, err.msg);
    CHECK(rc == 0);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Names in dir, sorted, joined by spaces. */
static void list_dir(const char *dir, char *out, size_t size)
{
    char names[64][256];
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && n < 64)
        if (e->d_name[0] != '.')
            snprintf(names[n++], 256, "%s", e->d_name);
    if (d)
        closedir(d);
    qsort(names, (size_t)n, sizeof names[0], name_cmp);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (used + len + 2 > size)
            break;
        if (i)
            out[used++] = ' ';
        memcpy(out + used, names[i], len + 1);
        used += len;
    }
}

static void read_text(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, size - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* ---- tests ----------------------------------------------------------------- */

static void test_round_trip(void)
{
    char dir[1024], p[1024];
    spath(dir, "roundtrip");
    fixture_t a, b;
    if (fixture_init(&a, 10, 1, 2) || fixture_init(&b, 10, 2, 2)) {
        CHECK(0);
        return;
    }
    dl_ckpt_meta_t meta = meta_for(42), got;
    dl_err_t err = {0};
    char written[1024] = "";
    CHECK(dl_ckpt_write(dir, &meta, &a.cm, 1, 0, written, sizeof written, &err) == 0);
    CHECK(!strcmp(written, spath(p, "roundtrip/ckpt-0000000042.h5")));
    CHECK(dl_ckpt_verify(written, &err) == 0);
    int rc = dl_ckpt_read(written, &got, &b.cm, &err);
    if (rc)
        fprintf(stderr, "read: %s\n", err.msg);
    CHECK(rc == 0);
    int64_t np = a.m.n_params, ns = a.m.n_state;
    CHECK(!memcmp(a.m.params, b.m.params, (size_t)np * sizeof(float)));
    CHECK(!memcmp(a.m.state, b.m.state, (size_t)ns * sizeof(float)));
    CHECK(!memcmp(a.om, b.om, (size_t)np * sizeof(float)));
    CHECK(!memcmp(a.ov, b.ov, (size_t)np * sizeof(float)));
    CHECK(got.step == meta.step && got.epoch == meta.epoch);
    CHECK(got.global_batch == meta.global_batch && got.world_size == meta.world_size);
    CHECK(got.seed == meta.seed && got.config_digest == meta.config_digest);
    CHECK(got.data.epoch == meta.data.epoch && got.data.offset == meta.data.offset &&
          got.data.seed == meta.data.seed);
    CHECK(got.opt_t == meta.opt_t && got.wall_ms == meta.wall_ms);
    CHECK(!memcmp(got.sched, meta.sched, sizeof meta.sched));
    CHECK(got.job_text && !strcmp(got.job_text, meta.job_text));
    free(got.job_text);

    /* No job text reads back as "". SGD with momentum: m only. */
    fixture_t c;
    if (fixture_init(&c, 10, 3, 1)) {
        CHECK(0);
        return;
    }
    meta.job_text = NULL;
    meta.step = 43;
    CHECK(dl_ckpt_write(dir, &meta, &c.cm, 1, 0, written, sizeof written, &err) == 0);
    memset(b.om, 0, (size_t)np * sizeof(float));
    b.cm.opt_v = NULL;
    CHECK(dl_ckpt_read(written, &got, &b.cm, &err) == 0);
    CHECK(got.job_text && got.job_text[0] == '\0');
    CHECK(!memcmp(c.om, b.om, (size_t)np * sizeof(float)));
    free(got.job_text);
    /* A model whose optimiser has v needs /optimizer/v. */
    b.cm.opt_v = b.ov;
    rc = dl_ckpt_read(written, &got, &b.cm, &err);
    CHECK_EINPUT(rc, &err, "/optimizer/v", "missing");
    CHECK(got.job_text == NULL);
    /* keep_last = 1 removed step 42. */
    char names[2048];
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000043.h5 latest"));
    fixture_free(&a);
    fixture_free(&b);
    fixture_free(&c);
}

static void test_retention(void)
{
    char dir[1024], p[1024], names[2048], text[256];
    spath(dir, "keep/nested"); /* parents are created */
    fixture_t f;
    if (fixture_init(&f, 10, 4, 0)) {
        CHECK(0);
        return;
    }
    for (int64_t s = 0; s <= 600; s += 100)
        write_step(&f, dir, s, 2, 300);
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000000.h5 ckpt-0000000300.h5 ckpt-0000000500.h5 "
                         "ckpt-0000000600.h5 latest"));
    read_text(spath(p, "keep/nested/latest"), text, sizeof text);
    CHECK(!strcmp(text, "ckpt-0000000600.h5\n"));
    /* A leftover temporary file of an interrupted write goes at the next write. */
    write_text(spath(p, "keep/nested/ckpt-0000000650.h5.tmp"), "partial");
    write_step(&f, dir, 700, 2, 300);
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000000.h5 ckpt-0000000300.h5 ckpt-0000000600.h5 "
                         "ckpt-0000000700.h5 latest"));
    char found[1024];
    dl_err_t err = {0};
    CHECK(dl_ckpt_find(dir, found, sizeof found, NULL, &err) == 1);
    CHECK_CONTAINS(found, "ckpt-0000000700.h5");
    fixture_free(&f);
}

/* Flip one byte of the first occurrence of pat in the file. */
static int flip_pattern(const char *path, const void *pat, size_t len)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    unsigned char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    int rc = -1;
    if (buf && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        for (long i = 0; i + (long)len <= size; i++) {
            if (memcmp(buf + i, pat, len) != 0)
                continue;
            fseek(f, i + (long)len / 2, SEEK_SET);
            fputc(buf[i + (long)len / 2] ^ 0x10, f);
            rc = 0;
            break;
        }
    }
    free(buf);
    fclose(f);
    return rc;
}

/* dl_ckpt_find on dir: returns its result; found and the report lines. */
static int find(const char *dir, char *found, size_t size, char **report)
{
    size_t len = 0;
    FILE *r = open_memstream(report, &len);
    dl_err_t err = {0};
    found[0] = '\0';
    int rc = dl_ckpt_find(dir, found, size, r, &err);
    fclose(r);
    if (rc < 0)
        fprintf(stderr, "dl_ckpt_find: %s\n", err.msg);
    return rc;
}

static void test_corruption(void)
{
    char dir[1024], p[1024], found[1024];
    char *report = NULL;
    dl_err_t err = {0};
    fixture_t f;
    if (fixture_init(&f, 10, 5, 2)) {
        CHECK(0);
        return;
    }
    /* A pattern in the first tensor, /model/layer00.weight, to find in the file. */
    for (int i = 0; i < 64; i++)
        f.m.params[i] = 1234.5f + 0.25f * (float)i;
    spath(dir, "corrupt");
    write_step(&f, dir, 300, 5, 0);
    write_step(&f, dir, 400, 5, 0);
    const char *newest = spath(p, "corrupt/ckpt-0000000400.h5");
    CHECK(flip_pattern(newest, f.m.params + 20, 16 * sizeof(float)) == 0);
    int rc = dl_ckpt_verify(newest, &err);
    CHECK_EINPUT(rc, &err, "/model/layer00.weight", "Fletcher32 checksum");
    CHECK_CONTAINS(err.msg, "ckpt-0000000400.h5");
    fixture_t g;
    if (fixture_init(&g, 10, 6, 2)) {
        CHECK(0);
        return;
    }
    dl_ckpt_meta_t meta;
    rc = dl_ckpt_read(newest, &meta, &g.cm, &err);
    CHECK_EINPUT(rc, &err, "/model/layer00.weight", "checksum");
    CHECK(find(dir, found, sizeof found, &report) == 1);
    CHECK_CONTAINS(found, "corrupt/ckpt-0000000300.h5");
    CHECK_CONTAINS(report, "ckpt-0000000400.h5");
    CHECK_CONTAINS(report, "falling back to ckpt-0000000300.h5");
    CHECK_CONTAINS(report, "checksum");
    CHECK(strchr(report, '\n') == report + strlen(report) - 1); /* one line */
    free(report);

    /* A checksum failure in the optimiser state counts too. */
    spath(dir, "corrupt_opt");
    for (int i = 0; i < 64; i++)
        f.om[1000 + i] = -777.0f - (float)i;
    write_step(&f, dir, 100, 5, 0);
    CHECK(flip_pattern(spath(p, "corrupt_opt/ckpt-0000000100.h5"), f.om + 1010, 32) == 0);
    rc = dl_ckpt_verify(p, &err);
    CHECK_EINPUT(rc, &err, "/optimizer/m", "checksum");
    CHECK(find(dir, found, sizeof found, &report) == 0);
    CHECK_CONTAINS(report, "no older checkpoint");
    free(report);

    /* Truncated to half: falls back as well. */
    spath(dir, "truncated");
    write_step(&f, dir, 100, 5, 0);
    write_step(&f, dir, 200, 5, 0);
    struct stat st;
    CHECK(stat(spath(p, "truncated/ckpt-0000000200.h5"), &st) == 0);
    CHECK(truncate(p, st.st_size / 2) == 0);
    rc = dl_ckpt_verify(p, &err);
    CHECK_EINPUT(rc, &err, "ckpt-0000000200.h5", "truncated");
    CHECK(find(dir, found, sizeof found, &report) == 1);
    CHECK_CONTAINS(found, "truncated/ckpt-0000000100.h5");
    CHECK_CONTAINS(report, "ckpt-0000000200.h5");
    CHECK_CONTAINS(report, "falling back to ckpt-0000000100.h5");
    free(report);
    /* Cut to nothing, or not HDF5 at all. */
    CHECK(truncate(p, 0) == 0);
    rc = dl_ckpt_verify(p, &err);
    CHECK_EINPUT(rc, &err, "ckpt-0000000200.h5", "empty");
    write_text(p, "not a checkpoint\n");
    rc = dl_ckpt_verify(p, &err);
    CHECK_EINPUT(rc, &err, "ckpt-0000000200.h5", "not an HDF5 file");
    rc = dl_ckpt_verify(spath(p, "nothing-here.h5"), &err);
    CHECK_EINPUT(rc, &err, "nothing-here.h5", "no such file");
    rc = dl_ckpt_verify(scratch, &err);
    CHECK_EINPUT(rc, &err, scratch, "not a regular file");

    /* `latest` naming a missing file, or holding garbage: scan instead. */
    spath(dir, "pointer");
    write_step(&f, dir, 100, 5, 0);
    write_step(&f, dir, 200, 5, 0);
    write_text(spath(p, "pointer/latest"), "ckpt-0000000900.h5\n");
    CHECK(find(dir, found, sizeof found, &report) == 1);
    CHECK_CONTAINS(found, "pointer/ckpt-0000000200.h5");
    CHECK_CONTAINS(report, "ckpt-0000000900.h5");
    CHECK_CONTAINS(report, "no such file");
    CHECK_CONTAINS(report, "falling back to ckpt-0000000200.h5");
    free(report);
    write_text(p, "../../etc/passwd\n");
    CHECK(find(dir, found, sizeof found, &report) == 1);
    CHECK_CONTAINS(found, "pointer/ckpt-0000000200.h5");
    CHECK_CONTAINS(report, "does not name a checkpoint file");
    free(report);
    /* latest names an older one that verifies: it wins (it is what was last committed). */
    write_text(p, "ckpt-0000000100.h5\n");
    CHECK(find(dir, found, sizeof found, &report) == 1);
    CHECK_CONTAINS(found, "pointer/ckpt-0000000100.h5");
    CHECK(report[0] == '\0');
    free(report);

    /* Empty and missing directories: nothing to resume from, no error. */
    spath(dir, "empty");
    CHECK(mkdir(dir, 0777) == 0 || errno == EEXIST);
    CHECK(find(dir, found, sizeof found, &report) == 0);
    CHECK(report[0] == '\0');
    free(report);
    CHECK(find(spath(dir, "no/such/dir"), found, sizeof found, &report) == 0);
    free(report);
    fixture_free(&f);
    fixture_free(&g);
}

/* Remove attribute name of object obj in the file at path, or change
 * dltrain_schema; returns 0 on success. */
static int h5_edit(const char *path, const char *obj, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = f >= 0 ? H5Oopen(f, obj, H5P_DEFAULT) : H5I_INVALID_HID;
    int rc = o >= 0 && H5Adelete(o, name) >= 0 ? 0 : -1;
    if (o >= 0)
        H5Oclose(o);
    if (f >= 0)
        H5Fclose(f);
    return rc;
}

/* /ranks/state: every rank's state round trips bit-exact, verifies (it has
 * its Fletcher32 checksum), is ignored by dl_ckpt_read, and reads as absent
 * for another number of ranks or from a file written without it. */
static void test_rank_state(void)
{
    char dir[1024];
    spath(dir, "ranks");
    fixture_t a;
    if (fixture_init(&a, 10, 4, 2)) {
        CHECK(0);
        return;
    }
    dl_ckpt_meta_t meta = meta_for(7), got;
    int64_t ns = a.m.n_state, rows = meta.world_size;
    CHECK(ns > 0);
    float *in = calloc((size_t)(rows * ns), sizeof(float));
    float *out = calloc((size_t)(rows * ns), sizeof(float));
    for (int64_t i = 0; i < rows * ns; i++)
        in[i] = (float)i * 0.25f - 3.0f;
    a.cm.rank_state = in;
    dl_err_t err = {0};
    char written[1024] = "";
    CHECK(dl_ckpt_write(dir, &meta, &a.cm, 5, 0, written, sizeof written, &err) == 0);
    CHECK(dl_ckpt_verify(written, &err) == 0);
    CHECK(dl_ckpt_read(written, &got, &a.cm, &err) == 0);
    free(got.job_text);
    CHECK(dl_ckpt_read_ranks(written, (int)rows, ns, out, &err) == 1);
    CHECK(!memcmp(in, out, (size_t)(rows * ns) * sizeof(float)));
    CHECK(dl_ckpt_read_ranks(written, (int)rows - 1, ns, out, &err) == 0);
    /* The wrong number of values per rank is a damaged file. */
    int rc = dl_ckpt_read_ranks(written, (int)rows, ns + 1, out, &err);
    CHECK_EINPUT(rc, &err, "/ranks/state", "per rank");
    /* A flipped byte in /ranks/state fails its checksum. */
    CHECK(flip_pattern(written, in + 2 * ns, 16 * sizeof(float)) == 0);
    CHECK(dl_ckpt_verify(written, &err) == DL_EINPUT);
    rc = dl_ckpt_read_ranks(written, (int)rows, ns, out, &err);
    CHECK_EINPUT(rc, &err, "/ranks/state", "Fletcher32");
    /* Without rank_state, as older files: none. */
    a.cm.rank_state = NULL;
    meta.step = 8;
    CHECK(dl_ckpt_write(dir, &meta, &a.cm, 5, 0, written, sizeof written, &err) == 0);
    CHECK(dl_ckpt_read_ranks(written, (int)rows, ns, out, &err) == 0);
    free(in);
    free(out);
    fixture_free(&a);
}

/* Metadata a checkpoint must have: each missing piece is named. */
static void test_metadata(void)
{
    char dir[1024];
    dl_err_t err = {0};
    fixture_t f;
    if (fixture_init(&f, 10, 10, 2)) {
        CHECK(0);
        return;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    static const struct {
        const char *obj, *attr, *needle;
    } cases[] = {
        {"/train", "wall_ms", "/train attribute wall_ms is missing"},
        {"/", "dltrain_schema", "root attribute dltrain_schema is missing"},
        {"/job", "config_digest", "/job attribute config_digest is missing"},
        {"/model/layer04.weight", "trainable",
         "/model/layer04.weight attribute trainable is "
         "missing"},
    };
    spath(dir, "metadata");
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        dl_ckpt_meta_t meta = meta_for(i);
        char path[1024];
        CHECK(dl_ckpt_write(dir, &meta, &f.cm, 10, 0, path, sizeof path, &err) == 0);
        CHECK(h5_edit(path, cases[i].obj, cases[i].attr) == 0);
        int rc = dl_ckpt_verify(path, &err);
        CHECK_EINPUT(rc, &err, path, cases[i].needle);
        rc = dl_ckpt_read(path, &meta, &f.cm, &err);
        CHECK_EINPUT(rc, &err, path, cases[i].needle);
    }
    fixture_free(&f);
}

static void test_mismatch(void)
{
    char dir[1024], path[1024];
    dl_err_t err = {0};
    dl_ckpt_meta_t meta;
    fixture_t a, b;
    if (fixture_init(&a, 10, 7, 2) || fixture_init(&b, 7, 8, 2)) {
        CHECK(0);
        return;
    }
    spath(dir, "mismatch");
    CHECK(write_step(&a, dir, 10, 5, 0) == 0);
    spath(path, "mismatch/ckpt-0000000010.h5");
    /* Another number of classes: the last layer's shapes differ. */
    b.cm.n_opt = a.cm.n_opt;
    int rc = dl_ckpt_read(path, &meta, &b.cm, &err);
    CHECK_EINPUT(rc, &err, "/model/layer11.weight", "(10, 128)");
    CHECK_CONTAINS(err.msg, "(7, 128)");
    CHECK_CONTAINS(err.msg, "ckpt-0000000010.h5");
    CHECK(meta.job_text == NULL);
    /* A tensor the model lacks, and one the file lacks. */
    a.cm.n_tensors--;
    CHECK(write_step(&a, dir, 11, 5, 0) == 0);
    a.cm.n_tensors++;
    rc = dl_ckpt_read(spath(path, "mismatch/ckpt-0000000011.h5"), &meta, &a.cm, &err);
    CHECK_EINPUT(rc, &err, "/model/layer11.bias", "missing");
    a.cm.n_tensors--;
    rc = dl_ckpt_read(spath(path, "mismatch/ckpt-0000000010.h5"), &meta, &a.cm, &err);
    CHECK_EINPUT(rc, &err, "/model/layer11.bias", "not a tensor of the model");
    a.cm.n_tensors++;
    /* Another optimiser size. */
    a.cm.n_opt--;
    rc = dl_ckpt_read(path, &meta, &a.cm, &err);
    CHECK_EINPUT(rc, &err, "/optimizer/m", "shape");
    a.cm.n_opt++;
    fixture_free(&a);
    fixture_free(&b);
}

static void test_failed_writes(void)
{
    char dir[1024], p[1024], names[2048], text[256];
    dl_err_t err = {0};
    fixture_t f;
    if (fixture_init(&f, 10, 9, 2)) {
        CHECK(0);
        return;
    }
    dl_ckpt_meta_t meta = meta_for(100);
    /* The directory is a regular file, or lies under one. */
    write_text(spath(dir, "afile"), "x");
    int rc = dl_ckpt_write(dir, &meta, &f.cm, 2, 0, NULL, 0, &err);
    CHECK(rc == DL_EIO);
    CHECK_CONTAINS(err.msg, "afile");
    CHECK_CONTAINS(err.msg, "not a directory");
    rc = dl_ckpt_write(spath(dir, "afile/sub"), &meta, &f.cm, 2, 0, NULL, 0, &err);
    CHECK(rc == DL_EIO);
    CHECK_CONTAINS(err.msg, "afile/sub");

    /* In a directory with checkpoints: a write that fails at the rename (the
     * target is a non-empty directory) and one that fails inside HDF5 (a
     * tensor outside the buffer) leave the files and latest as they were,
     * with no temporary file. */
    spath(dir, "failed");
    write_step(&f, dir, 100, 2, 0);
    write_step(&f, dir, 200, 2, 0);
    CHECK(mkdir(spath(p, "failed/ckpt-0000000300.h5"), 0777) == 0);
    write_text(spath(p, "failed/ckpt-0000000300.h5/x"), "x");
    meta = meta_for(300);
    rc = dl_ckpt_write(dir, &meta, &f.cm, 1, 0, NULL, 0, &err);
    CHECK(rc == DL_EIO);
    CHECK_CONTAINS(err.msg, "ckpt-0000000300.h5");
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000100.h5 ckpt-0000000200.h5 ckpt-0000000300.h5 latest"));
    read_text(spath(p, "failed/latest"), text, sizeof text);
    CHECK(!strcmp(text, "ckpt-0000000200.h5\n"));

    dl_tensor_info_t bad[1] = {f.t[0]};
    bad[0].offset = f.m.n_params; /* outside the buffer */
    dl_ckpt_model_t cm = f.cm;
    cm.tensors = bad;
    cm.n_tensors = 1;
    meta = meta_for(400);
    rc = dl_ckpt_write(dir, &meta, &cm, 1, 0, NULL, 0, &err);
    CHECK(rc == DL_EINTERNAL);
    CHECK_CONTAINS(err.msg, "layer00.weight");
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000100.h5 ckpt-0000000200.h5 ckpt-0000000300.h5 latest"));
    read_text(spath(p, "failed/latest"), text, sizeof text);
    CHECK(!strcmp(text, "ckpt-0000000200.h5\n"));
    char found[1024];
    CHECK(dl_ckpt_find(dir, found, sizeof found, NULL, &err) == 1);
    CHECK_CONTAINS(found, "failed/ckpt-0000000200.h5");

    /* An unwritable directory (only meaningful when not root). */
    if (geteuid() != 0) {
        spath(dir, "readonly");
        write_step(&f, dir, 100, 2, 0);
        CHECK(chmod(dir, 0555) == 0);
        meta = meta_for(200);
        rc = dl_ckpt_write(dir, &meta, &f.cm, 2, 0, NULL, 0, &err);
        CHECK(rc == DL_EIO);
        CHECK_CONTAINS(err.msg, "readonly/ckpt-0000000200.h5.tmp");
        list_dir(dir, names, sizeof names);
        CHECK(!strcmp(names, "ckpt-0000000100.h5 latest"));
        CHECK(chmod(dir, 0755) == 0);
    }
    fixture_free(&f);
}

/* A checkpoint larger than the file size limit (SIGXFSZ ignored: the write
 * fails with EFBIG, as it would with ENOSPC on a full disk): DL_EIO with the
 * OS's reason, the directory as it was, and no HDF5 file left half-open
 * (HDF5 1.10 crashed at exit when its own write had failed). */
static void test_no_room(void)
{
    char dir[1024], p[1024], names[2048], text[256];
    dl_err_t err = {0};
    fixture_t f;
    if (fixture_init(&f, 10, 5, 2)) {
        CHECK(0);
        return;
    }
    spath(dir, "noroom");
    write_step(&f, dir, 100, 2, 0);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 64 * 1024; /* far below the checkpoint's size */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    dl_ckpt_meta_t meta = meta_for(200);
    int rc = dl_ckpt_write(dir, &meta, &f.cm, 2, 0, NULL, 0, &err);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    CHECK(rc == DL_EIO);
    CHECK_CONTAINS(err.msg, "noroom/ckpt-0000000200.h5.tmp");
    CHECK_CONTAINS(err.msg, strerror(EFBIG));
    list_dir(dir, names, sizeof names);
    CHECK(!strcmp(names, "ckpt-0000000100.h5 latest"));
    read_text(spath(p, "noroom/latest"), text, sizeof text);
    CHECK(!strcmp(text, "ckpt-0000000100.h5\n"));
    CHECK(dl_ckpt_verify(spath(p, "noroom/ckpt-0000000100.h5"), &err) == 0);
    fixture_free(&f);
}

/* Remove the scratch tree of an earlier run (rm -r of what this test makes). */
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0755);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_checkpoint SCRATCH_DIR\n");
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s", argv[1]);
    remove_tree(scratch);
    if (mkdir(scratch, 0777) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", scratch, strerror(errno));
        return 1;
    }
    void (*tests[])(void) = {test_round_trip, test_rank_state, test_retention,     test_corruption,
                             test_metadata,   test_mismatch,   test_failed_writes, test_no_room};
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        tests[i]();
        /* Every file, group, dataset, attribute and datatype handle is closed. */
        ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
        if (open_ids != 0)
            fprintf(stderr, "test %zu left %zd HDF5 objects open\n", i, open_ids);
        CHECK(open_ids == 0);
    }
    return CHECK_DONE();
}
