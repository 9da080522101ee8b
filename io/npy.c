/* NumPy .npy -> HDF5 converter: a features array and a labels array (two
 * files written by numpy.save) into a schema-1 dataset through writer.c.
 *
 * The .npy format (numpy.lib.format): the magic "\x93NUMPY", a major and a
 * minor version byte, the header length (2 bytes little-endian in version 1,
 * 4 bytes in versions 2 and 3), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (150, 4), }
 * padded with spaces to a multiple of 64 bytes, then the raw array data.
 * Only little-endian, C-ordered arrays of plain numeric types are accepted;
 * the features are streamed, so memory stays bounded. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert.h"
#include "writer.h"

#define NPY_MAX_RANK 8
#define NPY_MAX_HEADER (1 << 20)

typedef struct npy_file {
    const char *path;
    FILE *f;
    char descr[32]; /* as written, e.g. "<f4" */
    char kind;      /* 'u' unsigned, 'i' signed integer, 'f' float, other: rejected */
    int size;       /* bytes per element */
    int rank;
    int64_t shape[NPY_MAX_RANK];
    int64_t count;      /* elements */
    unsigned char *raw; /* staging for conversions, raw_cap bytes */
    size_t raw_cap;
} npy_file_t;

/* ---- header ---------------------------------------------------------------- */

typedef struct npy_parse {
    const char *p;    /* cursor in the header text */
    const char *path; /* for messages */
    dl_err_t *err;
} npy_parse_t;

static int npy_bad_header(npy_parse_t *ps, const char *why)
{
    return DL_ERR(ps->err, DL_EINPUT,
                  "%s: malformed .npy header (%s at \"%.24s\"); save arrays with numpy.save",
                  ps->path, why, ps->p);
}

static void npy_skip_ws(npy_parse_t *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

/* A quoted Python string ('...' or "...") into buf. */
static int npy_string(npy_parse_t *ps, char *buf, size_t size)
{
    npy_skip_ws(ps);
    char q = *ps->p;
    if (q != '\'' && q != '"')
        return npy_bad_header(ps, "expected a quoted string");
    const char *end = strchr(ps->p + 1, q);
    if (!end)
        return npy_bad_header(ps, "unterminated string");
    size_t len = (size_t)(end - ps->p - 1);
    if (len + 1 > size)
        return npy_bad_header(ps, "string too long");
    memcpy(buf, ps->p + 1, len);
    buf[len] = '\0';
    ps->p = end + 1;
    return 0;
}

static int npy_bool(npy_parse_t *ps, int *v)
{
    npy_skip_ws(ps);
    if (!strncmp(ps->p, "True", 4))
        *v = 1, ps->p += 4;
    else if (!strncmp(ps->p, "False", 5))
        *v = 0, ps->p += 5;
    else
        return npy_bad_header(ps, "expected True or False");
    return 0;
}

/* A tuple of non-negative integers: (), (5,), (3, 4) ... */
static int npy_shape(npy_parse_t *ps, npy_file_t *f)
{
    npy_skip_ws(ps);
    if (*ps->p != '(')
        return npy_bad_header(ps, "expected a shape tuple");
    ps->p++;
    f->rank = 0;
    for (;;) {
        npy_skip_ws(ps);
        if (*ps->p == ')')
            break;
        if (*ps->p < '0' || *ps->p > '9')
            return npy_bad_header(ps, "expected a dimension");
        if (f->rank == NPY_MAX_RANK)
            return npy_bad_header(ps, "more than 8 dimensions");
        char *end;
        errno = 0;
        long long d = strtoll(ps->p, &end, 10);
        if (errno || d < 0)
            return npy_bad_header(ps, "dimension out of range");
        f->shape[f->rank++] = d;
        ps->p = end;
        npy_skip_ws(ps);
        if (*ps->p == ',')
            ps->p++;
        else if (*ps->p != ')')
            return npy_bad_header(ps, "expected ',' or ')'");
    }
    ps->p++;
    return 0;
}

/* descr '<f4', '|u1' ...: kind and size; big-endian data is refused here. */
static int npy_descr(npy_file_t *f, dl_err_t *err)
{
    const char *d = f->descr;
    char order = d[0];
    if (!strchr("<>|=", order) || !d[1] || d[2] < '1' || d[2] > '9')
        return DL_ERR(err, DL_EINPUT,
                      "%s: dtype '%s' is not a plain numeric type; accepted: integer and "
                      "floating-point arrays (structured and object arrays are not)",
                      f->path, d);
    char *end;
    long size = strtol(d + 2, &end, 10);
    if (*end || size < 1 || size > 16)
        return DL_ERR(err, DL_EINPUT, "%s: dtype '%s' is not a plain numeric type", f->path, d);
    if (order == '>' && size > 1)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the data is big-endian (dtype '%s'); dltrain reads little-endian "
                      ".npy files: save arr.astype('<%s') instead",
                      f->path, d, d + 1);
    f->kind = d[1];
    f->size = (int)size;
    return 0;
}

/* The header dict: exactly the keys descr, fortran_order and shape. */
static int npy_parse_dict(npy_file_t *f, const char *text, dl_err_t *err)
{
    npy_parse_t ps = {.p = text, .path = f->path, .err = err};
    int have = 0, fortran = 0, rc = 0;
    npy_skip_ws(&ps);
    if (*ps.p != '{')
        return npy_bad_header(&ps, "expected '{'");
    ps.p++;
    for (;;) {
        char key[32];
        npy_skip_ws(&ps);
        if (*ps.p == '}')
            break;
        rc = npy_string(&ps, key, sizeof key);
        npy_skip_ws(&ps);
        if (!rc && *ps.p++ != ':')
            rc = npy_bad_header(&ps, "expected ':'");
        npy_skip_ws(&ps);
        if (rc)
            return rc;
        if (!strcmp(key, "descr") && *ps.p == '[')
            return DL_ERR(err, DL_EINPUT,
                          "%s: the array has a structured dtype; accepted: plain integer and "
                          "floating-point arrays",
                          f->path);
        if (!strcmp(key, "descr"))
            rc = npy_string(&ps, f->descr, sizeof f->descr), have |= 1;
        else if (!strcmp(key, "fortran_order"))
            rc = npy_bool(&ps, &fortran), have |= 2;
        else if (!strcmp(key, "shape"))
            rc = npy_shape(&ps, f), have |= 4;
        else
            rc =
                DL_ERR(err, DL_EINPUT, "%s: malformed .npy header: unknown key '%s'", f->path, key);
        if (rc)
            return rc;
        npy_skip_ws(&ps);
        if (*ps.p == ',')
            ps.p++;
        else if (*ps.p != '}')
            return npy_bad_header(&ps, "expected ',' or '}'");
    }
    if (have != 7)
        return DL_ERR(err, DL_EINPUT,
                      "%s: malformed .npy header: it lacks '%s'; a .npy header has 'descr', "
                      "'fortran_order' and 'shape'",
                      f->path,
                      !(have & 1)   ? "descr"
                      : !(have & 2) ? "fortran_order"
                                    : "shape");
    if (fortran)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the array is stored in Fortran (column-major) order; dltrain reads "
                      "C-ordered arrays: save numpy.ascontiguousarray(arr) instead",
                      f->path);
    return npy_descr(f, err);
}

/* ---- file ---------------------------------------------------------------------- */

static uint64_t npy_le(const unsigned char *b, int size)
{
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Read exactly len bytes of f; a short read is a truncated file. */
static int npy_read(npy_file_t *f, void *buf, size_t len, const char *what, dl_err_t *err)
{
    if (fread(buf, 1, len, f->f) == len)
        return 0;
    if (ferror(f->f))
        return DL_ERR(err, DL_EIO, "%s: cannot read %s: %s", f->path, what, strerror(errno));
    return DL_ERR(err, DL_EINPUT, "%s: file is truncated: it ends inside the %s", f->path, what);
}

/* Magic and version; returns the header length through hlen. */
static int npy_preamble(npy_file_t *f, size_t *hlen, size_t *pre, dl_err_t *err)
{
    unsigned char b[12];
    size_t got = fread(b, 1, 10, f->f);
    if (got < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: not a NumPy .npy file (bad magic: it does not start with "
                      "\"\\x93NUMPY\"); save arrays with numpy.save",
                      f->path);
    if (b[6] < 1 || b[6] > 3)
        return DL_ERR(err, DL_EINPUT,
                      "%s: .npy format version %d.%d is not supported; accepted: 1.0, 2.0 and 3.0",
                      f->path, b[6], b[7]);
    *pre = b[6] == 1 ? 10 : 12;
    int rc = b[6] > 1 ? npy_read(f, b + 10, 2, ".npy header", err) : 0;
    if (rc)
        return rc;
    *hlen = (size_t)npy_le(b + 8, b[6] == 1 ? 2 : 4);
    if (*hlen > NPY_MAX_HEADER)
        return DL_ERR(err, DL_EINPUT, "%s: .npy header of %zu bytes is too long (max %d)", f->path,
                      *hlen, NPY_MAX_HEADER);
    return 0;
}

/* The data must be exactly what the header promises. */
static int npy_check_size(npy_file_t *f, size_t data_off, dl_err_t *err)
{
    struct stat st;
    if (fstat(fileno(f->f), &st) != 0)
        return DL_ERR(err, DL_EIO, "%s: cannot stat: %s", f->path, strerror(errno));
    if (f->size < 1) /* npy_descr sets it first */
        return DL_ERR(err, DL_EINTERNAL, "%s: .npy element size unknown", f->path);
    f->count = 1;
    for (int i = 0; i < f->rank; i++) {
        if (f->shape[i] && f->count > INT64_MAX / f->size / f->shape[i])
            return DL_ERR(err, DL_EINPUT, "%s: the array shape is too large", f->path);
        f->count *= f->shape[i];
    }
    int64_t want = f->count * f->size, have = (int64_t)st.st_size - (int64_t)data_off;
    if (have < want)
        return DL_ERR(err, DL_EINPUT,
                      "%s: file is truncated: the header promises %" PRId64 " bytes of array data "
                      "(dtype '%s') but only %" PRId64 " follow",
                      f->path, want, f->descr, have);
    if (have > want)
        return DL_ERR(err, DL_EINPUT,
                      "%s: %" PRId64 " bytes follow the array data; expected a file holding one "
                      "array as written by numpy.save",
                      f->path, have - want);
    return 0;
}

static int npy_open(npy_file_t *f, dl_err_t *err)
{
    errno = 0;
    f->f = fopen(f->path, "rb");
    if (!f->f)
        return errno == ENOENT
                   ? DL_ERR(err, DL_EINPUT, "%s: no such file (expected a NumPy .npy file)",
                            f->path)
                   : DL_ERR(err, DL_EIO, "%s: cannot open: %s", f->path, strerror(errno));
    size_t hlen = 0, pre = 0;
    int rc = npy_preamble(f, &hlen, &pre, err);
    char *text = rc ? NULL : dl_calloc(hlen + 1, 1, err);
    if (!rc && !text)
        rc = DL_ENOMEM;
    if (!rc)
        rc = npy_read(f, text, hlen, ".npy header", err);
    if (!rc)
        rc = npy_parse_dict(f, text, err);
    if (!rc)
        rc = npy_check_size(f, pre + hlen, err);
    free(text);
    return rc;
}

static void npy_close(npy_file_t *f)
{
    if (f->f)
        fclose(f->f);
    free(f->raw);
}

/* Shape as text, e.g. "(150, 4)". */
static void npy_shape_str(const npy_file_t *f, char *buf, size_t size)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < f->rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%" PRId64, i ? ", " : "", f->shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, f->rank == 1 ? ",)" : ")");
}

/* ---- features and labels ----------------------------------------------------------- */

/* Check the features' dtype and shape; fill the sample layout of s. */
static int npy_features(const npy_file_t *f, dl_samples_t *s, dl_err_t *err)
{
    char shape[160];
    npy_shape_str(f, shape, sizeof shape);
    int u8 = f->kind == 'u' && f->size == 1, fl = f->kind == 'f' && (f->size == 4 || f->size == 8);
    if (!u8 && !fl)
        return DL_ERR(err, DL_EINPUT,
                      "%s: dtype '%s' is not accepted for features; accepted: uint8 ('|u1'), "
                      "float32 ('<f4') or float64 ('<f8')",
                      f->path, f->descr);
    if (f->rank < 2 || f->rank > 4)
        return DL_ERR(err, DL_EINPUT,
                      "%s: features of shape %s; accepted: N x D, N x H x W or N x C x H x W",
                      f->path, shape);
    for (int i = 1; i < f->rank; i++)
        if (f->shape[i] < 1 || f->shape[i] > (1 << 30))
            return DL_ERR(err, DL_EINPUT,
                          "%s: features of shape %s; every dimension after N must be 1 to 2^30",
                          f->path, shape);
    s->n = f->shape[0];
    s->is_float = fl;
    s->c = f->rank == 4 ? (int)f->shape[1] : 1;
    s->h = f->rank == 2 ? 1 : (int)f->shape[f->rank - 2];
    s->w = (int)f->shape[f->rank - 1];
    return 0;
}

/* Read and check the labels: integers, shape (N,), values >= 0. */
static int npy_labels(npy_file_t *f, int64_t n, const char *features, int64_t **labels,
                      int64_t *num_classes, dl_err_t *err)
{
    char shape[160];
    npy_shape_str(f, shape, sizeof shape);
    if ((f->kind != 'i' && f->kind != 'u') ||
        (f->size != 1 && f->size != 2 && f->size != 4 && f->size != 8))
        return DL_ERR(err, DL_EINPUT,
                      "%s: dtype '%s' is not accepted for labels; accepted: integer types "
                      "('|u1', '<i2', '<i4', '<i8', '<u2', ...)",
                      f->path, f->descr);
    if (f->rank != 1)
        return DL_ERR(err, DL_EINPUT,
                      "%s: labels of shape %s; expected one label per sample, shape (N,) "
                      "(save labels.ravel())",
                      f->path, shape);
    if (f->shape[0] != n)
        return DL_ERR(err, DL_EINPUT,
                      "%s has %" PRId64 " labels but %s has %" PRId64 " samples; the two files "
                      "must have one entry per sample",
                      f->path, f->shape[0], features, n);
    unsigned char *raw = dl_calloc((size_t)n, (size_t)f->size, err);
    *labels = raw ? dl_calloc((size_t)n, sizeof **labels, err) : NULL;
    int rc = *labels ? npy_read(f, raw, (size_t)n * f->size, "label data", err) : DL_ENOMEM;
    int64_t maxl = -1;
    for (int64_t i = 0; !rc && i < n; i++) {
        uint64_t u = npy_le(raw + i * f->size, f->size);
        int bits = 8 * f->size;
        int neg = f->kind == 'i' && (u >> (bits - 1)) & 1;
        if (neg) /* two's complement: the value is u - 2^bits */
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: label of sample %" PRId64 " is -%" PRIu64 "; labels are class "
                        "numbers 0, 1, 2, ...",
                        f->path, i, (uint64_t)(bits == 64 ? ~u + 1 : (UINT64_C(1) << bits) - u));
        else if (u > INT32_MAX - 1)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: label of sample %" PRId64 " is %" PRIu64 "; labels are class "
                        "numbers 0 to %d",
                        f->path, i, u, INT32_MAX - 1);
        (*labels)[i] = (int64_t)u;
        maxl = (int64_t)u > maxl ? (int64_t)u : maxl;
    }
    *num_classes = maxl + 1;
    free(raw);
    return rc;
}

/* dl_samples_read_fn: the next k samples, converted to the stored type. */
static int npy_read_samples(void *ctx, void *buf, int64_t i0, int64_t k, dl_err_t *err)
{
    npy_file_t *f = ctx;
    size_t vals = (size_t)(f->count / f->shape[0]) * (size_t)k;
    if (f->kind == 'u') /* uint8: stored as is */
        return npy_read(f, buf, vals, "array data", err);
    if (f->raw_cap < vals * f->size) {
        free(f->raw);
        f->raw_cap = 0;
        if (!(f->raw = dl_calloc(vals, (size_t)f->size, err)))
            return DL_ENOMEM;
        f->raw_cap = vals * f->size;
    }
    int rc = npy_read(f, f->raw, vals * f->size, "array data", err);
    float *out = buf;
    for (size_t j = 0; !rc && j < vals; j++) {
        uint64_t bits = npy_le(f->raw + j * f->size, f->size);
        if (f->size == 4) {
            uint32_t b32 = (uint32_t)bits;
            memcpy(&out[j], &b32, 4);
        } else {
            double d;
            memcpy(&d, &bits, 8);
            out[j] = (float)d; /* beyond the float32 range: inf, refused by the writer */
        }
    }
    (void)i0;
    return rc;
}

int dl_npy_to_h5(const char *features_path, const char *labels_path, const char *out_path,
                 int shards, dl_err_t *err)
{
    npy_file_t fe = {.path = features_path}, lb = {.path = labels_path};
    dl_samples_t s = {.source = features_path, .read = npy_read_samples, .ctx = &fe};
    int64_t *labels = NULL;
    int rc = npy_open(&fe, err);
    if (!rc)
        rc = npy_features(&fe, &s, err);
    if (!rc)
        rc = npy_open(&lb, err);
    if (!rc)
        rc = npy_labels(&lb, s.n, features_path, &labels, &s.num_classes, err);
    s.labels = labels;
    if (!rc)
        rc = dl_write_samples(out_path, shards, &s, err);
    npy_close(&fe);
    npy_close(&lb);
    free(labels);
    return rc;
}
