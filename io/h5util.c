/* HDF5 helpers shared by io/'s readers and writers; see h5util.h.
 * Every HDF5 handle opened here is closed before the function returns, on
 * every path, except the file handle dl_h5_open_read hands back. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../models/rng.h"
#include "convert.h"
#include "h5err.h"
#include "h5util.h"

/* HDF5's sieve buffer (per open dataset): one fill serves the nearby labels
 * of a batch, and an image run smaller than it still reads all of it, so it
 * stays near one small image (28 x 28). 4 KiB cost 13% more per shuffled
 * batch of 128, 64 KiB (HDF5's default) far more. */
#define H5U_SIEVE_BYTES 1024

void dl_h5_type_name(hid_t t, char *buf, size_t size)
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

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

uint64_t dl_fnv1a64_le(uint64_t h, const void *data, size_t count, size_t elem)
{
    if (elem <= 1 || host_is_little_endian())
        return dl_fnv1a64(h, data, count * elem);
    const unsigned char *p = data;
    for (size_t i = 0; i < count; i++)
        for (size_t b = elem; b-- > 0;)
            h = dl_fnv1a64(h, p + i * elem + b, 1);
    return h;
}

/* ---- dataset specs ----------------------------------------------------------- */

static int paths_add(dl_paths_t *p, const char *path, dl_err_t *err)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        char **v = realloc(p->v, (size_t)cap * sizeof *v);
        if (!v)
            return DL_ERR(err, DL_ENOMEM, "out of memory listing dataset shards");
        p->v = v;
        p->cap = cap;
    }
    size_t len = strlen(path) + 1;
    char *s = dl_calloc(len, 1, err);
    if (!s)
        return DL_ENOMEM;
    memcpy(s, path, len);
    p->v[p->n++] = s;
    return 0;
}

/* Add one list entry: a literal path, or a glob pattern expanded in sorted order. */
static int paths_add_entry(dl_paths_t *p, const char *entry, dl_err_t *err)
{
    if (!strpbrk(entry, "*?["))
        return paths_add(p, entry, err);
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
        rc = paths_add(p, g.gl_pathv[i], err);
    globfree(&g);
    return rc;
}

int dl_paths_expand(dl_paths_t *p, const char *spec, dl_err_t *err)
{
    memset(p, 0, sizeof *p);
    if (!spec || !*spec)
        return DL_ERR(err, DL_EINPUT,
                      "empty dataset name; give an HDF5 file, a comma-separated "
                      "list of files or a glob pattern");
    size_t len = strlen(spec);
    char *buf = dl_calloc(len + 1, 1, err);
    if (!buf)
        return DL_ENOMEM;
    memcpy(buf, spec, len + 1);
    int rc = 0;
    char *s = buf;
    while (!rc) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        while (*s == ' ')
            s++;
        for (char *e = s + strlen(s); e > s && e[-1] == ' ';)
            *--e = '\0';
        if (!*s)
            rc = DL_ERR(err, DL_EINPUT,
                        "dataset \"%s\": empty entry in the comma-separated list of files", spec);
        else
            rc = paths_add_entry(p, s, err);
        if (!comma)
            break;
        s = comma + 1;
    }
    free(buf);
    return rc;
}

void dl_paths_free(dl_paths_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ---- opening ------------------------------------------------------------------ */

/* The file exists, is a regular file with content, and HDF5 recognises it. */
static int h5u_check_file(const char *path, dl_err_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return DL_ERR(err, DL_EINPUT, "%s: no such file", path);
        return DL_ERR(err, DL_EINPUT, "%s: cannot access: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return DL_ERR(err, DL_EINPUT, "%s: is a directory; expected an HDF5 file", path);
    if (st.st_size == 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the file is empty (0 bytes); expected an HDF5 file made by "
                      "dltrain-data (was a conversion interrupted, or a copy cut short?)",
                      path);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0)
        return H5_FAIL(err, DL_EIO, "%s: cannot read the file", path);
    if (is == 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: not an HDF5 file; a dataset shard is an HDF5 file made by "
                      "dltrain-data (convert IDX, .npy, CSV or token files with `dltrain-data`)",
                      path);
    return 0;
}

int dl_h5_open_read(const char *path, hid_t *file, dl_err_t *err)
{
    *file = H5I_INVALID_HID;
    int rc = h5u_check_file(path, err);
    if (rc)
        return rc;
    /* No file locking: network file systems such as NFS and Lustre often do
     * not support the locks (the open then fails), and read-only training
     * data, never modified while training, needs none. */
    /* A small sieve buffer: samples are read as many small scattered runs, and
     * HDF5's default 64 KiB sieve would copy 64 KiB around every one of them. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_file_locking(fapl, 0, 1) < 0 ||
        H5Pset_sieve_buf_size(fapl, H5U_SIEVE_BYTES) < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up file access properties", path);
        if (fapl >= 0)
            H5Pclose(fapl);
        return rc;
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    /* It passed H5Fis_hdf5, so a failure here is a damaged file: bad input.
     * A file cut short (an interrupted copy) is the usual cause; HDF5's own
     * words ("truncated file: eof = ...") follow in the message. */
    rc = *file < 0 ? H5_FAIL(err, DL_EINPUT,
                             "%s: cannot open the HDF5 file; it is damaged or truncated", path)
                   : 0;
    H5Pclose(fapl); /* after H5_FAIL: any HDF5 call resets the error stack */
    return rc;
}

/* ---- attributes ----------------------------------------------------------------- */

/* Open attribute name of loc; label names it in messages (e.g. "root attribute
 * num_classes"), want says what is accepted. Checks class and value count. */
static int h5u_attr_open(hid_t loc, const char *path, const char *label, const char *name,
                         H5T_class_t cls, hssize_t npts, const char *want, hid_t *out,
                         dl_err_t *err)
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
        dl_h5_type_name(t, tn, sizeof tn);
        rc = DL_ERR(err, DL_EINPUT, "%s: %s is a %s; expected %s", path, label, tn, want);
    } else if (H5Sget_simple_extent_npoints(sp) != npts) {
        rc = DL_ERR(err, DL_EINPUT, "%s: %s has %lld values; expected %s", path, label,
                    (long long)H5Sget_simple_extent_npoints(sp), want);
    }
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    if (rc)
        H5Aclose(a);
    else
        *out = a;
    return rc;
}

/* Read a string attribute stored either fixed-length or variable-length. */
static int h5u_attr_str(hid_t a, const char *path, const char *label, char *buf, size_t size,
                        const char *want, dl_err_t *err)
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
        rc = DL_ERR(err, DL_EINPUT, "%s: %s is a %zu-character string; expected %s", path, label,
                    fs, want);
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

int dl_h5_attr_get(hid_t loc, const char *path, const char *obj, const char *name, char kind,
                   void *buf, int n, const char *want, dl_err_t *err)
{
    char label[96];
    snprintf(label, sizeof label, "%s attribute %s", obj, name);
    H5T_class_t cls = kind == 's' ? H5T_STRING : kind == 'i' ? H5T_INTEGER : H5T_FLOAT;
    hid_t a = H5I_INVALID_HID;
    int rc = h5u_attr_open(loc, path, label, name, cls, kind == 'd' ? n : 1, want, &a, err);
    if (rc)
        return rc;
    if (kind == 's')
        rc = h5u_attr_str(a, path, label, buf, (size_t)n, want, err);
    else if (H5Aread(a, kind == 'i' ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, buf) < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s", path, label);
    H5Aclose(a);
    return rc;
}

int dl_h5_schema_name(hid_t file, const char *path, char *buf, size_t size, dl_err_t *err)
{
    return dl_h5_attr_get(file, path, "root", "dltrain_schema", 's', buf, (int)size,
                          "the string \"image-classification\" or \"tokens\"", err);
}

/* ---- checksums -------------------------------------------------------------------- */

int dl_h5_stored_digest(hid_t d, const char *path, const char *name, uint64_t *v, int *have,
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

int dl_h5_check_digest(const char *path, const char *name, uint64_t stored, int have,
                       uint64_t computed, dl_err_t *err)
{
    if (have && stored != computed)
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /%s does not match its stored checksum (fnv1a64 %016llx, "
                      "computed %016llx); the file is corrupt",
                      path, name, (unsigned long long)stored, (unsigned long long)computed);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------ */

int dl_h5_attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
                     const void *val, const char *out, dl_err_t *err)
{
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot create dataspace for attribute %s", out, name);
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot create attribute %s", out, name);
    else if (H5Awrite(a, mtype, val) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write attribute %s", out, name);
    if (a >= 0 && H5Aclose(a) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close attribute %s", out, name);
    H5Sclose(sp);
    return rc;
}

int dl_h5_root_attrs(hid_t file, const char *schema, const char *out, dl_err_t *err)
{
    int32_t version = 1;
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0 || H5Tset_size(st, strlen(schema) + 1) < 0) {
        int rc = H5_FAIL(err, DL_ELIB, "%s: cannot make a string type", out);
        if (st >= 0)
            H5Tclose(st);
        return rc;
    }
    int rc = dl_h5_attr_write(file, "dltrain_schema", st, st, 0, schema, out, err);
    H5Tclose(st);
    if (!rc)
        rc = dl_h5_attr_write(file, "schema_version", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &version,
                              out, err);
    return rc;
}

/* Create tmp, let fn fill it with elements [lo, hi), close (and flush) it. */
static int h5u_write_one(const char *tmp, int64_t lo, int64_t hi, dl_h5_shard_fn fn, void *ctx,
                         dl_err_t *err)
{
    /* The converter is the only process touching tmp; locks would only make
     * the conversion fail on file systems (NFS, Lustre) that lack them. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_file_locking(fapl, 0, 1) < 0) {
        int rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up file access properties", tmp);
        if (fapl >= 0)
            H5Pclose(fapl);
        return rc;
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int rc = file < 0 ? H5_FAIL(err, DL_EIO, "%s: cannot create file", tmp) : 0;
    H5Pclose(fapl); /* after H5_FAIL: any HDF5 call resets the error stack */
    if (rc)
        return rc;
    rc = fn(ctx, file, tmp, lo, hi, err);
    if (H5Fclose(file) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close (flush) file", tmp);
    return rc;
}

int dl_h5_write_shards(const char *out, int shards, int64_t n, dl_h5_shard_fn fn, void *ctx,
                       dl_err_t *err)
{
    if (shards < 1 || shards > n)
        return DL_ERR(err, DL_EINTERNAL, "dl_h5_write_shards: %d shards of %lld elements", shards,
                      (long long)n);
    int rc = 0, written = 0;
    for (int k = 0; !rc && k < shards; k++) {
        char *tmp = dl_shard_name(out, k, shards, ".tmp", err);
        written = k + 1; /* a failed shard may have left its file: remove it too */
        rc = tmp ? h5u_write_one(tmp, n * k / shards, n * (k + 1) / shards, fn, ctx, err)
                 : DL_ENOMEM;
        free(tmp);
    }
    for (int k = 0; k < written; k++) {
        char *tmp = dl_shard_name(out, k, shards, ".tmp", err);
        char *final = dl_shard_name(out, k, shards, "", err);
        if (!tmp || !final)
            rc = rc ? rc : DL_ENOMEM;
        /* rename() is atomic: readers never see a half-written shard. */
        if (!rc && rename(tmp, final) != 0)
            rc = DL_ERR(err, DL_EIO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        if (rc && tmp)
            remove(tmp);
        free(tmp);
        free(final);
    }
    return rc;
}

/* ---- shard names (declared in convert.h) ------------------------------------------ */

char *dl_shard_name(const char *out, int k, int shards, const char *suffix, dl_err_t *err)
{
    size_t len = strlen(out), base = len;
    if (shards > 1 && len > 3 && !strcmp(out + len - 3, ".h5"))
        base = len - 3;
    size_t size = base + strlen(suffix) + 32;
    char *name = dl_calloc(size, 1, err);
    if (!name)
        return NULL;
    if (shards == 1)
        snprintf(name, size, "%s%s", out, suffix);
    else
        snprintf(name, size, "%.*s-%05d-of-%05d.h5%s", (int)base, out, k, shards, suffix);
    return name;
}

int dl_shard_spec(const char *out, int shards, char *buf, size_t size)
{
    size_t len = strlen(out);
    int base = (int)(shards > 1 && len > 3 && !strcmp(out + len - 3, ".h5") ? len - 3 : len);
    int w = shards > 1 ? snprintf(buf, size, "%.*s-*-of-%05d.h5", base, out, shards)
                       : snprintf(buf, size, "%s", out);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}
