/* dltrain HDF5 dataset reader; see dataset.h for the schema and the contract.
 *
 * Each shard keeps its file and its /images and /labels dataset handles open
 * for the life of the dl_dataset_t; every other HDF5 handle is closed before
 * the function that opened it returns, on every path. */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "../models/rng.h"
#include "dataset.h"
#include "h5err.h"

#define DS_MAX_C 16 /* channels: dl_dataset_info_t has room for 16 */
#define DS_SIEVE_BYTES 4096

typedef struct ds_shard {
    char *path;
    hid_t file, images, labels; /* H5I_INVALID_HID when not open */
    int64_t n;
    int c, h, w, num_classes;
    double mean[DS_MAX_C], std[DS_MAX_C];
} ds_shard_t;

typedef struct ds_req {
    int64_t g; /* global sample index */
    int pos;   /* position in the caller's request */
} ds_req_t;

struct dl_dataset {
    dl_dataset_info_t info;
    int n_shards, cap_shards;
    ds_shard_t *shards;
    int64_t *offsets;                  /* n_shards + 1: first global index of each shard, then n */
    float lut[DS_MAX_C][256];          /* (pixel - mean[c]) / std[c] for every pixel value */
    ds_req_t *reqs;                    /* scratch: requests sorted by global index */
    uint8_t *pix;                      /* scratch: unique samples of one shard, c*h*w bytes each */
    int32_t *lab;                      /* scratch: their labels */
    size_t reqs_cap, pix_cap, lab_cap; /* in elements */
};

static void h5_close_space(hid_t *s)
{
    if (*s >= 0)
        H5Sclose(*s);
    *s = H5I_INVALID_HID;
}

/* Human-readable datatype for messages, e.g. "64-bit float". */
static void h5_type_name(hid_t t, char *buf, size_t size)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    if (cls == H5T_INTEGER)
        snprintf(buf, size, "%zu-bit %s integer", bits,
                 H5Tget_sign(t) == H5T_SGN_NONE ? "unsigned" : "signed");
    else if (cls == H5T_FLOAT)
        snprintf(buf, size, "%zu-bit float", bits);
    else if (cls == H5T_STRING)
        snprintf(buf, size, "string");
    else
        snprintf(buf, size, "a non-numeric type (class %d)", (int)cls);
}

/* ---- spec expansion -------------------------------------------------------- */

static int ds_add_path(dl_dataset_t *ds, const char *path, dl_err_t *err)
{
    if (ds->n_shards == ds->cap_shards) {
        int cap = ds->cap_shards ? 2 * ds->cap_shards : 8;
        ds_shard_t *s = realloc(ds->shards, (size_t)cap * sizeof *s);
        if (!s)
            return DL_ERR(err, DL_ENOMEM, "out of memory listing dataset shards");
        ds->shards = s;
        ds->cap_shards = cap;
    }
    ds_shard_t *sh = &ds->shards[ds->n_shards];
    memset(sh, 0, sizeof *sh);
    sh->file = sh->images = sh->labels = H5I_INVALID_HID;
    sh->path = dl_calloc(strlen(path) + 1, 1, err);
    if (!sh->path)
        return DL_ENOMEM;
    memcpy(sh->path, path, strlen(path) + 1);
    ds->n_shards++;
    return 0;
}

/* Add one list entry: a literal path, or a glob pattern expanded in sorted order. */
static int ds_add_entry(dl_dataset_t *ds, const char *entry, dl_err_t *err)
{
    if (!strpbrk(entry, "*?["))
        return ds_add_path(ds, entry, err);
    glob_t g;
    int grc = glob(entry, 0, NULL, &g); /* no GLOB_NOSORT: shards come sorted */
    if (grc == GLOB_NOMATCH)
        return DL_ERR(err, DL_EINPUT, "%s: glob pattern matches no files", entry);
    if (grc != 0) {
        if (grc != GLOB_NOSPACE)
            globfree(&g);
        return DL_ERR(err, grc == GLOB_NOSPACE ? DL_ENOMEM : DL_EIO,
                      "%s: cannot expand glob pattern (a directory could not be read)", entry);
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < g.gl_pathc; i++)
        rc = ds_add_path(ds, g.gl_pathv[i], err);
    globfree(&g);
    return rc;
}

/* Split spec on commas (spaces around entries ignored) and expand each entry. */
static int ds_expand_spec(dl_dataset_t *ds, const char *spec, dl_err_t *err)
{
    size_t len = strlen(spec);
    char *buf = dl_calloc(len + 1, 1, err);
    if (!buf)
        return DL_ENOMEM;
    memcpy(buf, spec, len + 1);
    int rc = 0;
    char *p = buf;
    while (!rc) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (*p == ' ')
            p++;
        for (char *e = p + strlen(p); e > p && e[-1] == ' ';)
            *--e = '\0';
        if (!*p)
            rc = DL_ERR(err, DL_EINPUT,
                        "dataset \"%s\": empty entry in the comma-separated list of files", spec);
        else
            rc = ds_add_entry(ds, p, err);
        if (!comma)
            break;
        p = comma + 1;
    }
    free(buf);
    return rc;
}

/* ---- attributes ------------------------------------------------------------ */

/* Open attribute name of loc; label names it in messages (e.g. "root attribute
 * num_classes"), want says what is accepted. Checks class and value count. */
static int ds_attr_open(hid_t loc, const char *path, const char *label, const char *name,
                        H5T_class_t cls, hssize_t npts, const char *want, hid_t *out, dl_err_t *err)
{
    htri_t ex = H5Aexists(loc, name);
    if (ex < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot look up %s", path, label);
    if (ex == 0)
        return DL_ERR(err, DL_EINPUT, "%s: %s is missing; expected %s", path, label, want);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot open %s", path, label);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = 0;
    if (t < 0 || sp < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect %s", path, label);
    } else if (H5Tget_class(t) != cls) {
        char tn[64];
        h5_type_name(t, tn, sizeof tn);
        rc = DL_ERR(err, DL_EINPUT, "%s: %s is a %s; expected %s", path, label, tn, want);
    } else if (H5Sget_simple_extent_npoints(sp) != npts) {
        rc = DL_ERR(err, DL_EINPUT, "%s: %s has %lld values; expected %s", path, label,
                    (long long)H5Sget_simple_extent_npoints(sp), want);
    }
    if (t >= 0)
        H5Tclose(t);
    h5_close_space(&sp);
    if (rc)
        H5Aclose(a);
    else
        *out = a;
    return rc;
}

/* Read a string attribute stored either fixed-length or variable-length. */
static int ds_attr_str(hid_t a, const char *path, const char *label, char *buf, size_t size,
                       dl_err_t *err)
{
    hid_t ft = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    htri_t vl = ft >= 0 ? H5Tis_variable_str(ft) : -1;
    size_t fs = ft >= 0 ? H5Tget_size(ft) : 0;
    int rc = 0;
    /* Match the character set: HDF5 will not convert between ASCII and UTF-8. */
    if (ft < 0 || mt < 0 || vl < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect %s", path, label);
    } else if (vl) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0)
            rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s", path, label);
        else
            snprintf(buf, size, "%s", s ? s : "");
        H5free_memory(s);
    } else if (fs + 1 > size) {
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: %s is a %zu-character string; expected "
                    "\"image-classification\"",
                    path, label, fs);
    } else if (H5Tset_size(mt, fs + 1) < 0 || H5Aread(a, mt, buf) < 0) {
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s", path, label);
    } else {
        buf[fs] = '\0';
    }
    if (ft >= 0)
        H5Tclose(ft);
    if (mt >= 0)
        H5Tclose(mt);
    return rc;
}

/* Open, check and read a scalar/array attribute in one call. kind: 's' string
 * (into buf of size n), 'i' one int64 (into buf), 'd' n doubles (into buf). */
static int ds_attr_get(hid_t loc, const char *path, const char *obj, const char *name, char kind,
                       void *buf, int n, const char *want, dl_err_t *err)
{
    char label[96];
    snprintf(label, sizeof label, "%s attribute %s", obj, name);
    H5T_class_t cls = kind == 's' ? H5T_STRING : kind == 'i' ? H5T_INTEGER : H5T_FLOAT;
    hid_t a = H5I_INVALID_HID;
    int rc = ds_attr_open(loc, path, label, name, cls, kind == 'd' ? n : 1, want, &a, err);
    if (rc)
        return rc;
    if (kind == 's')
        rc = ds_attr_str(a, path, label, buf, (size_t)n, err);
    else if (H5Aread(a, kind == 'i' ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, buf) < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s", path, label);
    H5Aclose(a);
    return rc;
}

/* Root attributes: schema name and version, number of classes. */
static int ds_check_root(ds_shard_t *sh, dl_err_t *err)
{
    static const char schema[] = "image-classification";
    const char *p = sh->path;
    char s[64];
    int64_t v = 0;
    int rc = ds_attr_get(sh->file, p, "root", "dltrain_schema", 's', s, sizeof s,
                         "the string \"image-classification\"", err);
    if (!rc && strcmp(s, schema) != 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute dltrain_schema is \"%s\"; dltrain reads only "
                      "\"image-classification\" datasets",
                      p, s);
    if (!rc)
        rc = ds_attr_get(sh->file, p, "root", "schema_version", 'i', &v, 1, "the integer 1", err);
    if (!rc && v != 1)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute schema_version is %" PRId64 "; this dltrain reads "
                      "schema version 1 only",
                      p, v);
    if (!rc)
        rc = ds_attr_get(sh->file, p, "root", "num_classes", 'i', &v, 1, "an integer >= 1", err);
    if (!rc && (v < 1 || v > INT_MAX))
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute num_classes is %" PRId64 "; it must be an integer "
                      "from 1 to %d",
                      p, v, INT_MAX);
    sh->num_classes = (int)v;
    return rc;
}

/* ---- datasets ---------------------------------------------------------------- */

/* Open dataset /name, check it is an integer dataset of the given rank and
 * return its dimensions. u8: require 8-bit unsigned. */
static int ds_open_dset(ds_shard_t *sh, const char *name, int rank, int u8, const char *want,
                        hid_t *out, hsize_t *dims, dl_err_t *err)
{
    htri_t ex = H5Lexists(sh->file, name, H5P_DEFAULT);
    if (ex < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot look up dataset /%s", sh->path, name);
    if (ex == 0)
        return DL_ERR(err, DL_EINPUT, "%s: dataset /%s is missing; expected %s", sh->path, name,
                      want);
    hid_t d = H5Dopen2(sh->file, name, H5P_DEFAULT);
    if (d < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: /%s cannot be opened as a dataset; expected %s",
                       sh->path, name, want);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    int rc = 0;
    char tn[64];
    if (t < 0 || r < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect dataset /%s", sh->path, name);
    } else if (H5Tget_class(t) != H5T_INTEGER ||
               (u8 && (H5Tget_size(t) != 1 || H5Tget_sign(t) != H5T_SGN_NONE))) {
        h5_type_name(t, tn, sizeof tn);
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset /%s has type %s; expected %s", sh->path, name, tn,
                    want);
    } else if (r != rank) {
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset /%s has rank %d; expected %s", sh->path, name, r,
                    want);
    } else if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot read the shape of dataset /%s", sh->path, name);
    }
    if (t >= 0)
        H5Tclose(t);
    h5_close_space(&sp);
    if (rc)
        H5Dclose(d);
    else
        *out = d;
    return rc;
}

static int ds_check_images(ds_shard_t *sh, dl_err_t *err)
{
    static const char want[] = "uint8 (8-bit unsigned integers) of rank 4: N x C x H x W";
    hsize_t d[4];
    int rc = ds_open_dset(sh, "images", 4, 1, want, &sh->images, d, err);
    if (rc)
        return rc;
    if (d[0] < 1)
        return DL_ERR(err, DL_EINPUT, "%s: dataset /images has 0 samples; a shard needs at least 1",
                      sh->path);
    if (d[1] < 1 || d[1] > DS_MAX_C)
        return DL_ERR(err, DL_EINPUT, "%s: dataset /images has %llu channels; accepted: 1 to %d",
                      sh->path, (unsigned long long)d[1], DS_MAX_C);
    if (d[2] < 1 || d[3] < 1 || d[1] * d[2] * d[3] > (1u << 30))
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /images has images of %llu x %llu pixels; accepted: 1 to 2^30 "
                      "values per sample",
                      sh->path, (unsigned long long)d[2], (unsigned long long)d[3]);
    sh->n = (int64_t)d[0];
    sh->c = (int)d[1];
    sh->h = (int)d[2];
    sh->w = (int)d[3];
    return 0;
}

static int ds_check_labels(ds_shard_t *sh, dl_err_t *err)
{
    hsize_t d[1];
    int rc = ds_open_dset(sh, "labels", 1, 0, "integers of rank 1: one label per sample",
                          &sh->labels, d, err);
    if (!rc && (int64_t)d[0] != sh->n)
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: dataset /labels has %llu entries but /images has %" PRId64
                    "; the two must have one entry per sample",
                    sh->path, (unsigned long long)d[0], sh->n);
    return rc;
}

/* /images attributes mean and std: C float64 values each, std > 0. */
static int ds_check_stats(ds_shard_t *sh, dl_err_t *err)
{
    char want[96];
    snprintf(want, sizeof want, "%d float64 value%s (one per channel, pixel units 0..255)", sh->c,
             sh->c > 1 ? "s" : "");
    int rc = ds_attr_get(sh->images, sh->path, "/images", "mean", 'd', sh->mean, sh->c, want, err);
    if (!rc)
        rc = ds_attr_get(sh->images, sh->path, "/images", "std", 'd', sh->std, sh->c, want, err);
    for (int c = 0; !rc && c < sh->c; c++) {
        if (!isfinite(sh->mean[c]))
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: /images attribute mean[%d] is %g; expected a finite "
                        "number",
                        sh->path, c, sh->mean[c]);
        else if (!(sh->std[c] > 0) || !isfinite(sh->std[c]))
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: /images attribute std[%d] is %g; expected a finite "
                        "number > 0",
                        sh->path, c, sh->std[c]);
    }
    return rc;
}

/* Check that path exists and is an HDF5 file, then open it read-only. */
static int ds_open_file(ds_shard_t *sh, dl_err_t *err)
{
    struct stat st;
    if (stat(sh->path, &st) != 0) {
        if (errno == ENOENT)
            return DL_ERR(err, DL_EINPUT, "%s: no such file", sh->path);
        return DL_ERR(err, DL_EINPUT, "%s: cannot access: %s", sh->path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return DL_ERR(err, DL_EINPUT, "%s: is a directory; expected an HDF5 file", sh->path);
    htri_t is = H5Fis_hdf5(sh->path);
    if (is < 0)
        return H5_FAIL(err, DL_EIO, "%s: cannot read the file", sh->path);
    if (is == 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: not an HDF5 file; a dataset shard is an HDF5 file with /images and "
                      "/labels (convert IDX files with `dltrain-data idx`)",
                      sh->path);
    /* No file locking: network file systems such as NFS and Lustre often do
     * not support the locks (the open then fails), and read-only training
     * data, never modified while training, needs none. */
    /* A small sieve buffer: samples are read as many small scattered runs, and
     * HDF5's default 64 KiB sieve would copy 64 KiB around every one of them. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_file_locking(fapl, 0, 1) < 0 ||
        H5Pset_sieve_buf_size(fapl, DS_SIEVE_BYTES) < 0) {
        int rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up file access properties", sh->path);
        if (fapl >= 0)
            H5Pclose(fapl);
        return rc;
    }
    sh->file = H5Fopen(sh->path, H5F_ACC_RDONLY, fapl);
    /* It passed H5Fis_hdf5 above, so a failure here is a damaged file: bad input. */
    int rc = sh->file < 0
                 ? H5_FAIL(err, DL_EINPUT, "%s: cannot open the HDF5 file; it is damaged", sh->path)
                 : 0;
    H5Pclose(fapl); /* after H5_FAIL: any HDF5 call resets the error stack */
    return rc;
}

static int ds_open_shard(ds_shard_t *sh, dl_err_t *err)
{
    int rc = ds_open_file(sh, err);
    if (!rc)
        rc = ds_check_root(sh, err);
    if (!rc)
        rc = ds_check_images(sh, err);
    if (!rc)
        rc = ds_check_labels(sh, err);
    if (!rc)
        rc = ds_check_stats(sh, err);
    return rc;
}

/* Every shard must agree with the first on C, H, W and num_classes. */
static int ds_check_agree(const ds_shard_t *a, const ds_shard_t *b, dl_err_t *err)
{
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /images holds samples of C x H x W = %d x %d x %d but %s has "
                      "%d x %d x %d; all shards of a dataset must have the same image shape",
                      b->path, b->c, b->h, b->w, a->path, a->c, a->h, a->w);
    if (a->num_classes != b->num_classes)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute num_classes is %d but %s has %d; all shards of a "
                      "dataset must have the same number of classes",
                      b->path, b->num_classes, a->path, a->num_classes);
    return 0;
}

/* Fill info and offsets. The dataset's mean and std are those of all samples
 * together (pooled from the shards' own statistics), so every sample is
 * normalised the same way whichever shard holds it. */
static int ds_finish(dl_dataset_t *ds, dl_err_t *err)
{
    dl_dataset_info_t *in = &ds->info;
    const ds_shard_t *s0 = &ds->shards[0];
    ds->offsets = dl_calloc((size_t)ds->n_shards + 1, sizeof *ds->offsets, err);
    if (!ds->offsets)
        return DL_ENOMEM;
    for (int i = 0; i < ds->n_shards; i++)
        ds->offsets[i + 1] = ds->offsets[i] + ds->shards[i].n;
    in->n = ds->offsets[ds->n_shards];
    in->c = s0->c, in->h = s0->h, in->w = s0->w;
    in->num_classes = s0->num_classes;
    in->n_files = ds->n_shards;
    for (int c = 0; c < in->c; c++) {
        double m = 0, v = 0, nn = (double)in->n;
        for (int i = 0; i < ds->n_shards; i++)
            m += (double)ds->shards[i].n / nn * ds->shards[i].mean[c];
        for (int i = 0; i < ds->n_shards; i++) {
            const ds_shard_t *s = &ds->shards[i];
            double d = s->mean[c] - m;
            v += (double)s->n / nn * (s->std[c] * s->std[c] + d * d);
        }
        in->mean[c] = m;
        in->std[c] = sqrt(v);
        for (int p = 0; p < 256; p++)
            ds->lut[c][p] = (float)(((double)p - m) / in->std[c]);
    }
    return 0;
}

int dl_dataset_open(const char *spec, dl_dataset_t **out, dl_err_t *err)
{
    *out = NULL;
    if (!spec || !*spec)
        return DL_ERR(err, DL_EINPUT,
                      "empty dataset name; give an HDF5 file, a comma-separated "
                      "list of files or a glob pattern");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    dl_dataset_t *ds = dl_calloc(1, sizeof *ds, err);
    if (!ds)
        return DL_ENOMEM;
    int rc = ds_expand_spec(ds, spec, err);
    for (int i = 0; !rc && i < ds->n_shards; i++) {
        rc = ds_open_shard(&ds->shards[i], err);
        if (!rc && i > 0)
            rc = ds_check_agree(&ds->shards[0], &ds->shards[i], err);
    }
    if (!rc)
        rc = ds_finish(ds, err);
    if (rc) {
        dl_dataset_close(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

const dl_dataset_info_t *dl_dataset_info(const dl_dataset_t *ds)
{
    return &ds->info;
}

int64_t dl_dataset_shard_size(const dl_dataset_t *ds, int i)
{
    return ds->offsets[i + 1] - ds->offsets[i];
}

void dl_dataset_close(dl_dataset_t *ds)
{
    if (!ds)
        return;
    for (int i = 0; i < ds->n_shards; i++) {
        ds_shard_t *s = &ds->shards[i];
        if (s->labels >= 0)
            H5Dclose(s->labels);
        if (s->images >= 0)
            H5Dclose(s->images);
        if (s->file >= 0)
            H5Fclose(s->file);
        free(s->path);
    }
    free(ds->shards);
    free(ds->offsets);
    free(ds->reqs);
    free(ds->pix);
    free(ds->lab);
    free(ds);
}

/* ---- reading ----------------------------------------------------------------- */

/* Grow *buf to hold at least n elements of size bytes. */
static int ds_reserve(void **buf, size_t *cap, size_t n, size_t size, dl_err_t *err)
{
    if (n <= *cap)
        return 0;
    void *p = dl_calloc(n, size, err);
    if (!p)
        return DL_ENOMEM;
    free(*buf);
    *buf = p;
    *cap = n;
    return 0;
}

static int ds_req_cmp(const void *a, const void *b)
{
    const ds_req_t *x = a, *y = b;
    if (x->g != y->g)
        return x->g < y->g ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Shard holding global index g: the last i with offsets[i] <= g. */
static int ds_find_shard(const dl_dataset_t *ds, int64_t g)
{
    int lo = 0, hi = ds->n_shards - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (ds->offsets[mid] <= g)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Select the runs of consecutive local indices of r[0..m-1] (sorted) in the
 * image and label file spaces; returns the number of distinct samples. */
static int64_t ds_select_runs(const dl_dataset_t *ds, const ds_req_t *r, int m, int64_t off,
                              hid_t isp, hid_t lsp, const char *path, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    int64_t uniq = 0;
    H5S_seloper_t op = H5S_SELECT_SET;
    for (int j = 0; j < m;) {
        int64_t start = r[j].g, end = start; /* run [start, end] */
        while (j < m && (r[j].g == end || r[j].g == end + 1))
            end = r[j++].g;
        hsize_t s4[4] = {(hsize_t)(start - off), 0, 0, 0};
        hsize_t c4[4] = {(hsize_t)(end - start + 1), (hsize_t)in->c, (hsize_t)in->h,
                         (hsize_t)in->w};
        if (H5Sselect_hyperslab(isp, op, s4, NULL, c4, NULL) < 0 ||
            H5Sselect_hyperslab(lsp, op, s4, NULL, c4, NULL) < 0)
            return H5_FAIL(err, DL_ELIB, "%s: cannot select samples %" PRId64 "..%" PRId64, path,
                           start - off, end - off);
        op = H5S_SELECT_OR;
        uniq += end - start + 1;
    }
    return uniq;
}

/* Copy distinct samples (in sorted order) back to the caller's positions,
 * normalising pixels and checking labels. */
static int ds_scatter(const dl_dataset_t *ds, const ds_shard_t *sh, const ds_req_t *r, int m,
                      int64_t off, float *images, int32_t *labels, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t hw = (size_t)in->h * in->w, chw = (size_t)in->c * hw;
    int64_t row = -1, prev = -1;
    for (int j = 0; j < m; j++) {
        if (r[j].g != prev)
            row++, prev = r[j].g;
        int32_t lab = ds->lab[row];
        if (lab < 0 || lab >= in->num_classes)
            return DL_ERR(err, DL_EINPUT,
                          "%s: dataset /labels entry %" PRId64 " (global sample %" PRId64
                          ") is %d; accepted labels are 0..%d (root attribute num_classes = %d)",
                          sh->path, r[j].g - off, r[j].g, (int)lab, in->num_classes - 1,
                          in->num_classes);
        labels[r[j].pos] = lab;
        const uint8_t *src = ds->pix + (size_t)row * chw;
        float *dst = images + (size_t)r[j].pos * chw;
        for (int c = 0; c < in->c; c++)
            for (size_t i = 0; i < hw; i++)
                dst[c * hw + i] = ds->lut[c][src[c * hw + i]];
    }
    return 0;
}

/* Read the requests r[0..m-1] (sorted, all in shard s): one H5Dread for the
 * images and one for the labels, then scatter to the caller's order. */
static int ds_read_shard(dl_dataset_t *ds, int s, const ds_req_t *r, int m, float *images,
                         int32_t *labels, dl_err_t *err)
{
    const ds_shard_t *sh = &ds->shards[s];
    const dl_dataset_info_t *in = &ds->info;
    size_t chw = (size_t)in->c * in->h * in->w;
    int64_t off = ds->offsets[s];
    hid_t isp = H5Dget_space(sh->images), lsp = H5Dget_space(sh->labels);
    hid_t imsp = H5I_INVALID_HID, lmsp = H5I_INVALID_HID;
    int rc = 0;
    int64_t uniq = 0;
    if (isp < 0 || lsp < 0)
        rc =
            H5_FAIL(err, DL_ELIB, "%s: cannot get the dataspaces of /images and /labels", sh->path);
    if (!rc && (uniq = ds_select_runs(ds, r, m, off, isp, lsp, sh->path, err)) < 0)
        rc = (int)uniq;
    if (!rc)
        rc = ds_reserve((void **)&ds->pix, &ds->pix_cap, (size_t)uniq * chw, 1, err);
    if (!rc)
        rc = ds_reserve((void **)&ds->lab, &ds->lab_cap, (size_t)uniq, sizeof(int32_t), err);
    hsize_t ni = (hsize_t)uniq * chw, nl = (hsize_t)uniq;
    if (!rc && ((imsp = H5Screate_simple(1, &ni, NULL)) < 0 ||
                (lmsp = H5Screate_simple(1, &nl, NULL)) < 0))
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot create memory dataspaces", sh->path);
    if (!rc && H5Dread(sh->images, H5T_NATIVE_UINT8, imsp, isp, H5P_DEFAULT, ds->pix) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot read dataset /images", sh->path);
    if (!rc && H5Dread(sh->labels, H5T_NATIVE_INT32, lmsp, lsp, H5P_DEFAULT, ds->lab) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot read dataset /labels", sh->path);
    h5_close_space(&isp);
    h5_close_space(&lsp);
    h5_close_space(&imsp);
    h5_close_space(&lmsp);
    if (!rc)
        rc = ds_scatter(ds, sh, r, m, off, images, labels, err);
    return rc;
}

int dl_dataset_read(dl_dataset_t *ds, const int64_t *idx, int n, float *images, int32_t *labels,
                    dl_err_t *err)
{
    if (n < 0 || (n > 0 && (!idx || !images || !labels)))
        return DL_ERR(err, DL_EINTERNAL, "dl_dataset_read: bad arguments (n = %d)", n);
    if (n == 0)
        return 0;
    int rc = ds_reserve((void **)&ds->reqs, &ds->reqs_cap, (size_t)n, sizeof(ds_req_t), err);
    if (rc)
        return rc;
    for (int k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= ds->info.n)
            return DL_ERR(err, DL_EINTERNAL,
                          "dl_dataset_read: sample index %" PRId64 " (position %d) is outside "
                          "0..%" PRId64,
                          idx[k], k, ds->info.n - 1);
        ds->reqs[k].g = idx[k];
        ds->reqs[k].pos = k;
    }
    /* Sorted requests turn into few, ascending hyperslab runs per shard. */
    qsort(ds->reqs, (size_t)n, sizeof *ds->reqs, ds_req_cmp);
    for (int k = 0; !rc && k < n;) {
        int s = ds_find_shard(ds, ds->reqs[k].g), end = k;
        while (end < n && ds->reqs[end].g < ds->offsets[s + 1])
            end++;
        rc = ds_read_shard(ds, s, ds->reqs + k, end - k, images, labels, err);
        k = end;
    }
    return rc;
}

void dl_dataset_thread_init(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---- verification ---------------------------------------------------------- */

/* The checksum stored on a dataset by dltrain-data; 0 and *have = 0 if none. */
static int ds_stored_digest(hid_t d, const char *path, const char *name, uint64_t *v, int *have,
                            dl_err_t *err)
{
    *have = 0;
    htri_t ex = H5Aexists(d, "fnv1a64");
    if (ex < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot look up /%s attribute fnv1a64", path, name);
    if (!ex)
        return 0;
    hid_t a = H5Aopen(d, "fnv1a64", H5P_DEFAULT);
    int rc = a < 0 || H5Aread(a, H5T_NATIVE_UINT64, v) < 0
                 ? H5_FAIL(err, DL_EINPUT, "%s: cannot read /%s attribute fnv1a64", path, name)
                 : 0;
    if (a >= 0)
        H5Aclose(a);
    *have = !rc;
    return rc;
}

/* Read rows [i0, i0 + k) of a dataset whose rows have `row` values, as
 * 8-bit unsigned integers. */
static int ds_read_rows_u8(hid_t d, int rank, int64_t i0, int64_t k, size_t row, uint8_t *buf,
                           const char *path, const char *name, dl_err_t *err)
{
    hid_t fsp = H5Dget_space(d);
    hsize_t start[4] = {(hsize_t)i0, 0, 0, 0}, count[4] = {(hsize_t)k, 1, 1, 1};
    if (fsp >= 0 && rank == 4)
        H5Sget_simple_extent_dims(fsp, count, NULL), count[0] = (hsize_t)k;
    hsize_t n = (hsize_t)k * row;
    hid_t msp = H5Screate_simple(1, &n, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select rows of /%s", path, name);
    else if (H5Dread(d, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EINPUT,
                     "%s: samples %lld..%lld of dataset /%s cannot be read; the file is damaged",
                     path, (long long)i0, (long long)(i0 + k - 1), name);
    if (fsp >= 0)
        H5Sclose(fsp);
    if (msp >= 0)
        H5Sclose(msp);
    return rc;
}

static int ds_check_digest(const char *path, const char *name, uint64_t stored, int have,
                           uint64_t computed, dl_err_t *err)
{
    if (have && stored != computed)
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /%s does not match its stored checksum (fnv1a64 %016llx, "
                      "computed %016llx); the file is corrupt",
                      path, name, (unsigned long long)stored, (unsigned long long)computed);
    return 0;
}

int dl_dataset_verify(dl_dataset_t *ds, FILE *report, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t chw = (size_t)in->c * in->h * in->w;
    const int64_t slab = 4096;
    uint8_t *buf = dl_calloc((size_t)slab, chw, err);
    if (!buf)
        return DL_ENOMEM;
    int rc = 0;
    for (int s = 0; !rc && s < ds->n_shards; s++) {
        const ds_shard_t *sh = &ds->shards[s];
        uint64_t si = 0, sl = 0, di = DL_FNV_INIT, dlab = DL_FNV_INIT;
        int hi = 0, hl = 0;
        rc = ds_stored_digest(sh->images, sh->path, "images", &si, &hi, err);
        if (!rc)
            rc = ds_stored_digest(sh->labels, sh->path, "labels", &sl, &hl, err);
        for (int64_t i0 = 0; !rc && i0 < sh->n; i0 += slab) {
            int64_t k = sh->n - i0 < slab ? sh->n - i0 : slab;
            rc = ds_read_rows_u8(sh->images, 4, i0, k, chw, buf, sh->path, "images", err);
            if (!rc)
                di = dl_fnv1a64(di, buf, (size_t)k * chw);
            if (!rc)
                rc = ds_read_rows_u8(sh->labels, 1, i0, k, 1, buf, sh->path, "labels", err);
            for (int64_t j = 0; !rc && j < k; j++)
                if (buf[j] >= in->num_classes)
                    rc = DL_ERR(err, DL_EINPUT,
                                "%s: dataset /labels entry %lld is %d; accepted labels are 0..%d",
                                sh->path, (long long)(i0 + j), buf[j], in->num_classes - 1);
            if (!rc)
                dlab = dl_fnv1a64(dlab, buf, (size_t)k);
        }
        if (!rc)
            rc = ds_check_digest(sh->path, "images", si, hi, di, err);
        if (!rc)
            rc = ds_check_digest(sh->path, "labels", sl, hl, dlab, err);
        if (!rc && report)
            fprintf(report, "%s: %lld samples read, labels in range, %s\n", sh->path,
                    (long long)sh->n,
                    hi && hl ? "checksums match"
                             : "no stored checksums (written by an older dltrain-data)");
    }
    free(buf);
    return rc;
}
