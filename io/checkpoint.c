/* Checkpoint files; see checkpoint.h for the layout and the contract.
 *
 * Every HDF5 handle is closed before the function that opened it returns,
 * on every path; the file access property list asks for a strong close, so
 * closing the file also closes anything a failure path missed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "h5err.h"
#include "params.h"

#ifndef DLTRAIN_VERSION
#define DLTRAIN_VERSION "unknown"
#endif

#define CK_SCHEMA "checkpoint"
#define CK_SCHEMA_VERSION 1
#define CK_CHUNK_BYTES ((hsize_t)1 << 20)
#define CK_PATH 4096
#define CK_SCHED 8

/* ---- small helpers --------------------------------------------------------- */

static void ck_close(hid_t *h, herr_t (*close)(hid_t))
{
    if (*h >= 0)
        close(*h);
    *h = H5I_INVALID_HID;
}

/* The error code of a failed call whose err may be NULL. */
static int ck_code(const dl_err_t *err, int fallback)
{
    return err && err->code ? err->code : fallback;
}

/* "(a, b, c)" for messages. */
static void ck_shape(char *buf, size_t size, int ndim, const hsize_t *dims)
{
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)dims[d]);
    if (n < size)
        snprintf(buf + n, size - n, "%s)", ndim == 1 ? "," : "");
}

typedef struct ck_walk {
    int fletcher;
} ck_walk_t;

static herr_t ck_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    ck_walk_t *w = data;
    (void)n;
    if (e->desc && (strstr(e->desc, "Fletcher32") || strstr(e->desc, "checksum")))
        w->fletcher = 1;
    return 0;
}

/* After a failed H5Dread: DL_EINPUT saying whether a checksum failed. Walks
 * the error stack first (walking does not reset it). */
static int ck_read_fail(dl_err_t *err, const char *path, const char *dset)
{
    ck_walk_t w = {0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, ck_walk_cb, &w);
    if (w.fletcher)
        return H5_FAIL(err, DL_EINPUT,
                       "%s: dataset %s fails its Fletcher32 checksum; the file is corrupt", path,
                       dset);
    return H5_FAIL(err, DL_EINPUT,
                   "%s: dataset %s cannot be read; the file is truncated or damaged", path, dset);
}

/* ---- writing --------------------------------------------------------------- */

static int ck_attr_write(hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                         const void *val, const char *path, dl_err_t *err)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot create a dataspace for %s attribute %s", path, obj,
                       name);
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot create %s attribute %s", path, obj, name);
    else if (H5Awrite(a, mtype, val) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write %s attribute %s", path, obj, name);
    if (a >= 0 && H5Aclose(a) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close %s attribute %s", path, obj, name);
    H5Sclose(sp);
    return rc;
}

static int ck_attr_i64(hid_t loc, const char *obj, const char *name, int64_t v, const char *path,
                       dl_err_t *err)
{
    return ck_attr_write(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, path, err);
}

static int ck_attr_u64(hid_t loc, const char *obj, const char *name, uint64_t v, const char *path,
                       dl_err_t *err)
{
    return ck_attr_write(loc, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, path, err);
}

static int ck_attr_i32(hid_t loc, const char *obj, const char *name, int32_t v, const char *path,
                       dl_err_t *err)
{
    return ck_attr_write(loc, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, path, err);
}

/* A fixed-length, NUL-terminated ASCII string attribute. */
static int ck_attr_str(hid_t loc, const char *obj, const char *name, const char *s,
                       const char *path, dl_err_t *err)
{
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0 || H5Tset_size(st, strlen(s) + 1) < 0) {
        int rc = H5_FAIL(err, DL_ELIB, "%s: cannot make a string type", path);
        ck_close(&st, H5Tclose);
        return rc;
    }
    int rc = ck_attr_write(loc, obj, name, st, st, s, path, err);
    H5Tclose(st);
    return rc;
}

/* Create dataset name in loc with the Fletcher32 filter, chunked in pieces of
 * at most CK_CHUNK_BYTES (whole trailing dimensions first), and write buf.
 * *out (if not NULL) gets the open dataset, which the caller closes. */
static int ck_dset_write(hid_t loc, const char *label, const char *name, hid_t ftype, hid_t mtype,
                         int ndim, const hsize_t *dims, const void *buf, hid_t *out,
                         const char *path, dl_err_t *err)
{
    size_t es = H5Tget_size(ftype);
    if (es == 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot size the type of dataset %s", path, label);
    hsize_t chunk[4], maxdims[4], budget = CK_CHUNK_BYTES / es, points = 1;
    if (budget < 1)
        budget = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        chunk[d] = dims[d] < budget ? dims[d] : budget;
        if (chunk[d] < 1)
            chunk[d] = 1;
        else /* equal chunks: the last one would be allocated whole anyway */
            chunk[d] = (dims[d] + (dims[d] + chunk[d] - 1) / chunk[d] - 1) /
                       ((dims[d] + chunk[d] - 1) / chunk[d]);
        budget = (budget / chunk[d]) ? budget / chunk[d] : 1;
        /* A zero-length dimension can be chunked only when it may grow. */
        maxdims[d] = dims[d] ? dims[d] : H5S_UNLIMITED;
        points *= dims[d];
    }
    hid_t sp = H5Screate_simple(ndim, dims, maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = H5I_INVALID_HID;
    int rc = 0;
    if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up dataset %s", path, label);
    else if ((d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot create dataset %s", path, label);
    else if (points && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write dataset %s", path, label);
    ck_close(&dcpl, H5Pclose);
    ck_close(&sp, H5Sclose);
    if (!rc && out) {
        *out = d;
        return 0;
    }
    if (d >= 0 && H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset %s", path, label);
    return rc;
}

static int ck_group_create(hid_t file, const char *name, hid_t *out, const char *path,
                           dl_err_t *err)
{
    *out = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    return *out < 0 ? H5_FAIL(err, DL_EIO, "%s: cannot create group %s", path, name) : 0;
}

static int ck_group_close(hid_t *g, const char *name, const char *path, dl_err_t *err, int rc)
{
    if (*g >= 0 && H5Gclose(*g) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close group %s", path, name);
    *g = H5I_INVALID_HID;
    return rc;
}

static int ck_write_train(hid_t file, const dl_ckpt_meta_t *m, const char *path, dl_err_t *err)
{
    hid_t g = H5I_INVALID_HID;
    int rc = ck_group_create(file, "/train", &g, path, err);
    const char *o = "/train";
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"step", m->step},
        {"epoch", m->epoch},
        {"global_batch", m->global_batch},
        {"world_size", m->world_size},
        {"data_epoch", m->data.epoch},
        {"data_offset", m->data.offset},
        {"opt_t", m->opt_t},
        {"wall_ms", m->wall_ms},
    };
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++)
        rc = ck_attr_i64(g, o, ints[i].name, ints[i].v, path, err);
    if (!rc)
        rc = ck_attr_u64(g, o, "seed", m->seed, path, err);
    if (!rc)
        rc = ck_attr_u64(g, o, "config_digest", m->config_digest, path, err);
    if (!rc)
        rc = ck_attr_u64(g, o, "data_seed", m->data.seed, path, err);
    hsize_t n = CK_SCHED;
    if (!rc)
        rc = ck_dset_write(g, "/train/schedule_state", "schedule_state", H5T_IEEE_F64LE,
                           H5T_NATIVE_DOUBLE, 1, &n, m->sched, NULL, path, err);
    hsize_t c = (hsize_t)m->input_c;
    if (!rc && c > 0 && c <= 16)
        rc = ck_dset_write(g, "/train/input_mean", "input_mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                           1, &c, m->input_mean, NULL, path, err);
    if (!rc && c > 0 && c <= 16)
        rc = ck_dset_write(g, "/train/input_std", "input_std", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                           1, &c, m->input_std, NULL, path, err);
    return ck_group_close(&g, o, path, err, rc);
}

/* /job: the job file text as one fixed-length string (h5py: f["job"][0] is
 * the bytes), null-padded; an empty text is one NUL. */
static int ck_write_job(hid_t file, const dl_ckpt_meta_t *m, const char *path, dl_err_t *err)
{
    const char *text = m->job_text ? m->job_text : "";
    size_t len = strlen(text);
    char *buf = dl_calloc(len + 1, 1, err);
    if (!buf)
        return DL_ENOMEM;
    memcpy(buf, text, len + 1);
    hid_t st = H5Tcopy(H5T_C_S1), d = H5I_INVALID_HID;
    int rc = 0;
    if (st < 0 || H5Tset_size(st, len ? len : 1) < 0 || H5Tset_strpad(st, H5T_STR_NULLPAD) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot make a string type", path);
    hsize_t one = 1;
    if (!rc)
        rc = ck_dset_write(file, "/job", "/job", st, st, 1, &one, buf, &d, path, err);
    if (!rc)
        rc = ck_attr_u64(d, "/job", "config_digest", m->config_digest, path, err);
    if (d >= 0 && H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset /job", path);
    ck_close(&st, H5Tclose);
    free(buf);
    return rc;
}

static int ck_write_model(hid_t file, const dl_ckpt_model_t *mo, const char *path, dl_err_t *err)
{
    hid_t g = H5I_INVALID_HID;
    int rc = ck_group_create(file, "/model", &g, path, err);
    for (int i = 0; !rc && i < mo->n_tensors; i++) {
        const dl_tensor_info_t *t = &mo->tensors[i];
        const float *base = t->is_state ? mo->state : mo->params;
        int64_t have = t->is_state ? mo->n_state : mo->n_params;
        char label[96];
        snprintf(label, sizeof label, "/model/%s", t->name);
        if (t->ndim < 1 || t->ndim > 4 || t->offset < 0 || t->count < 0 ||
            t->offset + t->count > have || !base) {
            rc = DL_ERR(err, DL_EINTERNAL,
                        "%s: tensor %s (offset %lld, %lld values) lies outside the model's %s "
                        "buffer of %lld values",
                        path, t->name, (long long)t->offset, (long long)t->count,
                        t->is_state ? "state" : "parameter", (long long)have);
            break;
        }
        hsize_t dims[4];
        for (int k = 0; k < t->ndim; k++)
            dims[k] = (hsize_t)t->dims[k];
        hid_t d = H5I_INVALID_HID;
        rc = ck_dset_write(g, label, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim, dims,
                           base + t->offset, &d, path, err);
        if (!rc)
            rc = ck_attr_i32(d, label, "trainable", !t->is_state, path, err);
        if (!rc)
            rc = ck_attr_i32(d, label, "index", i, path, err);
        if (d >= 0 && H5Dclose(d) < 0 && !rc)
            rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset %s", path, label);
    }
    rc = ck_group_close(&g, "/model", path, err, rc);
    if (rc)
        return rc;
    rc = ck_group_create(file, "/optimizer", &g, path, err);
    hsize_t n = (hsize_t)mo->n_opt;
    if (!rc && mo->opt_m)
        rc = ck_dset_write(g, "/optimizer/m", "m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n,
                           mo->opt_m, NULL, path, err);
    if (!rc && mo->opt_v)
        rc = ck_dset_write(g, "/optimizer/v", "v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n,
                           mo->opt_v, NULL, path, err);
    return ck_group_close(&g, "/optimizer", path, err, rc);
}

/* /ranks/state: every rank's state, one row per rank. */
static int ck_write_ranks(hid_t file, const dl_ckpt_meta_t *meta, const dl_ckpt_model_t *mo,
                          const char *path, dl_err_t *err)
{
    hid_t g = H5I_INVALID_HID;
    int rc = ck_group_create(file, "/ranks", &g, path, err);
    hsize_t dims[2] = {(hsize_t)meta->world_size, (hsize_t)mo->n_state};
    if (!rc)
        rc = ck_dset_write(g, "/ranks/state", "state", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims,
                           mo->rank_state, NULL, path, err);
    return ck_group_close(&g, "/ranks", path, err, rc);
}

/* The memory of a checkpoint being built: HDF5's core driver allocates,
 * grows and frees it through these callbacks, and the one free at the
 * file's close is skipped, so the bytes of the closed (complete) file stay
 * here, size bytes at buf. H5Fget_file_image is no substitute: HDF5 1.10
 * clears the superblock's status flags in the copy without updating its
 * checksum, which makes the copy unreadable. */
typedef struct ck_image {
    void *buf;
    size_t size;
    int closed;
} ck_image_t;

static void *ck_image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    ck_image_t *im = udata;
    (void)op;
    im->buf = malloc(size ? size : 1);
    im->size = im->buf ? size : 0;
    return im->buf;
}

static void *ck_image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                             void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dest, src, size);
}

static void *ck_image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    ck_image_t *im = udata;
    (void)op;
    void *p = realloc(ptr, size ? size : 1);
    if (p) {
        im->buf = p;
        im->size = size;
    }
    return p;
}

static herr_t ck_image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    ck_image_t *im = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && ptr == im->buf) {
        im->closed = 1; /* kept: the bytes of the file, now the caller's */
        return 0;
    }
    if (ptr == im->buf) {
        im->buf = NULL;
        im->size = 0;
    }
    free(ptr);
    return 0;
}

/* The property lists HDF5 copies share the one ck_image_t. */
static void *ck_image_udata_copy(void *udata)
{
    return udata;
}

static herr_t ck_image_udata_free(void *udata)
{
    (void)udata;
    return 0;
}

/* File access for building a checkpoint: in memory (HDF5's core driver,
 * nothing written to disk; increment: its growth step in bytes; im: where
 * the bytes go), the newer file format (at least 1.8's: checksummed
 * superblock, object headers and chunk indexes; HDF5 >= 1.10 reads it) and
 * a strong close. dltrain then writes the bytes itself, because HDF5 (1.10
 * at least) cannot close a file whose write failed (disk full, file size
 * limit): the handle stays half-open and the library crashes when it tries
 * again at exit. */
static hid_t ck_fapl_memory(const char *path, size_t increment, ck_image_t *im, dl_err_t *err)
{
    H5FD_file_image_callbacks_t cb = {.image_malloc = ck_image_malloc,
                                      .image_memcpy = ck_image_memcpy,
                                      .image_realloc = ck_image_realloc,
                                      .image_free = ck_image_free,
                                      .udata_copy = ck_image_udata_copy,
                                      .udata_free = ck_image_udata_free,
                                      .udata = im};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, increment, 0) < 0 ||
        H5Pset_file_image_callbacks(fapl, &cb) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5_FAIL(err, DL_ELIB, "%s: cannot set up file access properties", path);
        ck_close(&fapl, H5Pclose);
    }
    return fapl;
}

/* File access for reading: as above on disk, and no file locking (network
 * file systems often refuse the locks; a checkpoint has one writer and is
 * renamed into place only when complete). */
static hid_t ck_fapl(const char *path, dl_err_t *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 0, 1) < 0) {
        H5_FAIL(err, DL_ELIB, "%s: cannot set up file access properties", path);
        ck_close(&fapl, H5Pclose);
    }
    return fapl;
}

/* Build the whole HDF5 file in memory; *image (malloc'd, the caller frees)
 * and *size get its bytes. path names the file in messages. */
static int ck_build_image(const char *path, const dl_ckpt_meta_t *meta,
                          const dl_ckpt_model_t *model, void **image, size_t *size, dl_err_t *err)
{
    ck_image_t im = {0};
    *image = NULL;
    *size = 0;
    hid_t fapl = ck_fapl_memory(path, CK_CHUNK_BYTES, &im, err);
    if (fapl < 0)
        return ck_code(err, DL_ELIB);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int rc = f < 0 ? H5_FAIL(err, DL_ELIB, "cannot create the checkpoint %s in memory", path) : 0;
    H5Pclose(fapl);
    if (rc)
        return rc;
    rc = ck_attr_str(f, "root", "dltrain_schema", CK_SCHEMA, path, err);
    if (!rc)
        rc = ck_attr_i64(f, "root", "schema_version", CK_SCHEMA_VERSION, path, err);
    if (!rc)
        rc = ck_attr_str(f, "root", "dltrain_version", DLTRAIN_VERSION, path, err);
    if (!rc)
        rc = ck_write_train(f, meta, path, err);
    if (!rc)
        rc = ck_write_job(f, meta, path, err);
    if (!rc)
        rc = ck_write_model(f, model, path, err);
    if (!rc && model->rank_state && model->n_state > 0)
        rc = ck_write_ranks(f, meta, model, path, err);
    /* The file's end (HDF5's end of allocated space): the memory beyond it
     * is the driver's growth step. */
    ssize_t end = -1;
    if (!rc && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = H5_FAIL(err, DL_ENOMEM, "%s: cannot complete the checkpoint in memory", path);
    if (!rc && (end = H5Fget_file_image(f, NULL, 0)) <= 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot size the checkpoint in memory", path);
    if (H5Fclose(f) < 0 && !rc)
        rc = H5_FAIL(err, DL_ENOMEM, "%s: cannot complete the checkpoint in memory", path);
    if (!rc && (!im.closed || !im.buf || (size_t)end > im.size))
        rc = DL_ERR(err, DL_EINTERNAL,
                    "%s: the checkpoint built in memory is not where HDF5 said (%zu of %lld "
                    "bytes)",
                    path, im.size, (long long)end);
    if (rc) {
        if (im.closed)
            free(im.buf);
        return rc;
    }
    *image = im.buf;
    *size = (size_t)end;
    return 0;
}

static int ck_fsync_path(const char *path, int dir, dl_err_t *err)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return DL_ERR(err, DL_EIO, "cannot open %s to flush it to disk: %s", path, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0)
        rc = DL_ERR(err, DL_EIO, "flushing %s to disk failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* mkdir -p dir, then check that it is a directory. */
static int ck_mkdirs(const char *dir, dl_err_t *err)
{
    char buf[CK_PATH];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return DL_ERR(err, DL_EINPUT, "checkpoint directory name too long: %s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return DL_ERR(err, DL_EIO, "cannot create the checkpoint directory %s: %s (at %s)", dir,
                          strerror(errno), buf);
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return DL_ERR(err, DL_EIO, "cannot create the checkpoint directory %s: %s", dir,
                      strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0)
        return DL_ERR(err, DL_EIO, "cannot use the checkpoint directory %s: %s", dir,
                      strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return DL_ERR(err, DL_EIO, "cannot use the checkpoint directory %s: it is not a directory",
                      dir);
    return 0;
}

/* Step of a checkpoint file name "ckpt-<digits>.h5" (with tmp: followed by
 * ".tmp"), or -1. */
static int64_t ck_name_step(const char *name, int tmp)
{
    if (strncmp(name, "ckpt-", 5) != 0)
        return -1;
    const char *p = name + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (step > (INT64_MAX - 9) / 10)
            return -1;
        step = step * 10 + (*p - '0');
    }
    if (!digits || strcmp(p, tmp ? ".h5.tmp" : ".h5") != 0)
        return -1;
    return step;
}

typedef struct ck_entry {
    int64_t step;
    char name[256];
} ck_entry_t;

static int ck_entry_newest_first(const void *a, const void *b)
{
    const ck_entry_t *x = a, *y = b;
    return (x->step < y->step) - (x->step > y->step);
}

/* The checkpoint files of dir (tmp: the leftover temporary files), newest
 * first. A missing dir is an empty list. */
static int ck_list(const char *dir, int tmp, ck_entry_t **out, int *n, dl_err_t *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return DL_ERR(err, DL_EIO, "cannot list the checkpoint directory %s: %s", dir,
                      strerror(errno));
    }
    ck_entry_t *list = NULL;
    int cap = 0, rc = 0;
    struct dirent *e;
    while (!rc && (errno = 0, e = readdir(d)) != NULL) {
        int64_t step = ck_name_step(e->d_name, tmp);
        if (step < 0 || strlen(e->d_name) >= sizeof list->name)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            ck_entry_t *p = realloc(list, (size_t)cap * sizeof *p);
            if (!p) {
                rc = DL_ERR(err, DL_ENOMEM, "out of memory listing %s", dir);
                break;
            }
            list = p;
        }
        list[*n].step = step;
        snprintf(list[*n].name, sizeof list[*n].name, "%s", e->d_name);
        (*n)++;
    }
    if (!rc && errno != 0)
        rc = DL_ERR(err, DL_EIO, "cannot list the checkpoint directory %s: %s", dir,
                    strerror(errno));
    closedir(d);
    if (rc) {
        free(list);
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(list, (size_t)*n, sizeof *list, ck_entry_newest_first);
    *out = list;
    return 0;
}

/* Delete old checkpoints (see dl_ckpt_write) and leftover temporary files. */
static int ck_prune(const char *dir, int64_t written, int keep_last, int64_t keep_every,
                    dl_err_t *err)
{
    ck_entry_t *list = NULL;
    int n = 0, rc = 0;
    char p[CK_PATH + 256];
    for (int tmp = 0; !rc && tmp <= 1; tmp++) {
        rc = ck_list(dir, tmp, &list, &n, err);
        for (int i = 0; !rc && i < n; i++) {
            int64_t s = list[i].step;
            if (!tmp && (s == written || i < keep_last || (keep_every > 0 && s % keep_every == 0)))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, list[i].name);
            if (unlink(p) != 0 && errno != ENOENT)
                rc = DL_ERR(err, DL_EIO, "cannot delete the old checkpoint file %s: %s", p,
                            strerror(errno));
        }
        free(list);
        list = NULL;
    }
    return rc;
}

int dl_ckpt_write(const char *dir, const dl_ckpt_meta_t *meta, const dl_ckpt_model_t *model,
                  int keep_last, int64_t keep_every, char *path_out, size_t path_size,
                  dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    if (keep_last < 1 || keep_every < 0 || meta->step < 0 || meta->world_size < 1)
        return DL_ERR(err, DL_EINTERNAL,
                      "dl_ckpt_write: bad arguments (keep_last %d, keep_every %lld, step %lld, "
                      "world_size %d)",
                      keep_last, (long long)keep_every, (long long)meta->step, meta->world_size);
    char name[64], final[CK_PATH], latest[CK_PATH];
    snprintf(name, sizeof name, "ckpt-%010" PRId64 ".h5", meta->step);
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(latest, sizeof latest, "%s/latest", dir) >= (int)sizeof latest)
        return DL_ERR(err, DL_EINPUT, "checkpoint directory name too long: %s", dir);
    int rc = ck_mkdirs(dir, err);
    if (rc)
        return rc;
    /* Built in memory, then written through tmp: the file is complete and
     * fsync'd before it takes its name. */
    void *image = NULL;
    size_t size = 0;
    rc = ck_build_image(final, meta, model, &image, &size, err);
    struct stat st;
    int existed = stat(final, &st) == 0; /* rewriting a step: never delete that file below */
    if (!rc)
        rc = dl_write_file_atomic(final, image, size, err);
    free(image);
    if (rc)
        return rc;
    char line[80];
    snprintf(line, sizeof line, "%s\n", name);
    rc = ck_fsync_path(dir, 1, err);
    if (!rc)
        rc = dl_write_file_atomic(latest, line, strlen(line), err);
    if (!rc)
        rc = ck_fsync_path(dir, 1, err);
    if (rc) {
        /* latest still names the previous checkpoint: leave the directory as it was. */
        if (!existed)
            unlink(final);
        return rc;
    }
    if (path_out && path_size)
        snprintf(path_out, path_size, "%s", final);
    return ck_prune(dir, meta->step, keep_last, keep_every, err);
}

/* ---- reading --------------------------------------------------------------- */

/* Open path read-only, telling a missing, empty, truncated or foreign file apart. */
static int ck_open(const char *path, hid_t *out, dl_err_t *err)
{
    *out = H5I_INVALID_HID;
    struct stat st;
    if (stat(path, &st) != 0)
        return DL_ERR(err, DL_EINPUT, "%s: %s", path,
                      errno == ENOENT ? "no such file" : strerror(errno));
    if (!S_ISREG(st.st_mode))
        return DL_ERR(err, DL_EINPUT, "%s: not a regular file; expected a checkpoint file", path);
    if (st.st_size == 0)
        return DL_ERR(err, DL_EINPUT, "%s: the file is empty (truncated)", path);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot read the file", path);
    if (is == 0)
        return DL_ERR(err, DL_EINPUT, "%s: not an HDF5 file (truncated or overwritten?)", path);
    hid_t fapl = ck_fapl(path, err);
    if (fapl < 0)
        return ck_code(err, DL_ELIB);
    *out = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    /* It passed H5Fis_hdf5, so a failure here is a damaged file: bad input. */
    int rc = *out < 0 ? H5_FAIL(err, DL_EINPUT,
                                "%s: cannot open the HDF5 file; it is truncated or damaged", path)
                      : 0;
    H5Pclose(fapl); /* after H5_FAIL: any HDF5 call resets the error stack */
    return rc;
}

/* Read scalar attribute name of loc (obj names it in messages) as mtype
 * (an integer type) into v. */
static int ck_attr_read(hid_t loc, const char *obj, const char *name, hid_t mtype, void *v,
                        const char *path, dl_err_t *err)
{
    htri_t ex = H5Aexists(loc, name);
    if (ex < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot look up %s attribute %s", path, obj, name);
    if (!ex)
        return DL_ERR(err, DL_EINPUT, "%s: %s attribute %s is missing; not a complete checkpoint",
                      path, obj, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t sp = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    int rc = 0;
    if (a < 0 || t < 0 || sp < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot open %s attribute %s", path, obj, name);
    else if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp) != 1)
        rc = DL_ERR(err, DL_EINPUT, "%s: %s attribute %s is not one integer", path, obj, name);
    else if (H5Aread(a, mtype, v) < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s attribute %s", path, obj, name);
    ck_close(&t, H5Tclose);
    ck_close(&sp, H5Sclose);
    ck_close(&a, H5Aclose);
    return rc;
}

/* Read a string attribute (fixed- or variable-length) into buf. */
static int ck_attr_read_str(hid_t loc, const char *obj, const char *name, char *buf, size_t size,
                            const char *path, dl_err_t *err)
{
    htri_t ex = H5Aexists(loc, name);
    if (ex < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot look up %s attribute %s", path, obj, name);
    if (!ex)
        return DL_ERR(err, DL_EINPUT,
                      "%s: %s attribute %s is missing; not a dltrain checkpoint file", path, obj,
                      name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID, mt = H5I_INVALID_HID;
    int rc = 0;
    if (a < 0 || ft < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot open %s attribute %s", path, obj, name);
    else if (H5Tget_class(ft) != H5T_STRING)
        rc = DL_ERR(err, DL_EINPUT, "%s: %s attribute %s is not a string", path, obj, name);
    else if ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot make a string type", path);
    else if (H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0)
            rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s attribute %s", path, obj, name);
        else
            snprintf(buf, size, "%s", s ? s : "");
        H5free_memory(s);
    } else {
        size_t fs = H5Tget_size(ft);
        char *s = dl_calloc(fs + 1, 1, err);
        if (!s)
            rc = DL_ENOMEM;
        else if (H5Tset_size(mt, fs + 1) < 0 || H5Aread(a, mt, s) < 0)
            rc = H5_FAIL(err, DL_EINPUT, "%s: cannot read %s attribute %s", path, obj, name);
        else
            snprintf(buf, size, "%s", s);
        free(s);
    }
    ck_close(&mt, H5Tclose);
    ck_close(&ft, H5Tclose);
    ck_close(&a, H5Aclose);
    return rc;
}

/* Open dataset name (label: its full name for messages). */
static int ck_dset_open(hid_t loc, const char *name, const char *label, const char *want,
                        hid_t *out, const char *path, dl_err_t *err)
{
    *out = H5I_INVALID_HID;
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot look up dataset %s", path, label);
    if (!ex)
        return DL_ERR(err, DL_EINPUT, "%s: dataset %s is missing; expected %s", path, label, want);
    *out = H5Dopen2(loc, name, H5P_DEFAULT);
    return *out < 0 ? H5_FAIL(err, DL_EINPUT, "%s: %s cannot be opened as a dataset", path, label)
                    : 0;
}

/* Open a float dataset and check that its shape is exactly want_dims. */
static int ck_float_open(hid_t loc, const char *name, const char *label, int ndim,
                         const hsize_t *want_dims, hid_t *out, const char *path, dl_err_t *err)
{
    char want[128];
    ck_shape(want, sizeof want, ndim, want_dims);
    char what[160];
    snprintf(what, sizeof what, "float32 of shape %s", want);
    int rc = ck_dset_open(loc, name, label, what, out, path, err);
    if (rc)
        return rc;
    hid_t t = H5Dget_type(*out), sp = H5Dget_space(*out);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[H5S_MAX_RANK];
    if (t < 0 || r < 0 || r > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot inspect dataset %s", path, label);
    } else if (H5Tget_class(t) != H5T_FLOAT) {
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset %s is not floating point; expected %s", path,
                    label, what);
    } else {
        int same = r == ndim;
        for (int d = 0; same && d < r; d++)
            same = dims[d] == want_dims[d];
        if (!same) {
            char got[128];
            ck_shape(got, sizeof got, r, dims);
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: dataset %s has shape %s but the model expects %s; the checkpoint "
                        "was written for another model",
                        path, label, got, want);
        }
    }
    ck_close(&t, H5Tclose);
    ck_close(&sp, H5Sclose);
    if (rc)
        ck_close(out, H5Dclose);
    return rc;
}

/* Read a whole float dataset of the given shape into dst. */
static int ck_read_float(hid_t loc, const char *name, const char *label, int ndim,
                         const hsize_t *dims, float *dst, const char *path, dl_err_t *err)
{
    hid_t d;
    int rc = ck_float_open(loc, name, label, ndim, dims, &d, path, err);
    if (rc)
        return rc;
    hsize_t points = 1;
    for (int k = 0; k < ndim; k++)
        points *= dims[k];
    if (points && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = ck_read_fail(err, path, label);
    H5Dclose(d);
    return rc;
}

/* /job: the text (malloc'd into *text) and its config_digest attribute. */
static int ck_read_job(hid_t f, char **text, uint64_t *digest, const char *path, dl_err_t *err)
{
    *text = NULL;
    hid_t d;
    int rc = ck_dset_open(f, "/job", "/job", "the job file text as one string", &d, path, err);
    if (rc)
        return rc;
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    size_t fs = ft >= 0 ? H5Tget_size(ft) : 0;
    char *buf = NULL;
    if (ft < 0 || sp < 0)
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot inspect dataset /job", path);
    else if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) != 0 ||
             H5Sget_simple_extent_npoints(sp) != 1)
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset /job is not one fixed-length string", path);
    else if (!(buf = dl_calloc(fs + 1, 1, err)))
        rc = DL_ENOMEM;
    else if (H5Dread(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = ck_read_fail(err, path, "/job");
    if (!rc)
        rc = ck_attr_read(d, "/job", "config_digest", H5T_NATIVE_UINT64, digest, path, err);
    ck_close(&ft, H5Tclose);
    ck_close(&sp, H5Sclose);
    H5Dclose(d);
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf; /* null padding: the text ends at the first NUL */
    return 0;
}

/* Root attributes, /train and /job into meta (job_text malloc'd). */
static int ck_read_meta(hid_t f, dl_ckpt_meta_t *m, const char *path, dl_err_t *err)
{
    char schema[64];
    int64_t version = 0;
    memset(m, 0, sizeof *m);
    int rc = ck_attr_read_str(f, "root", "dltrain_schema", schema, sizeof schema, path, err);
    if (!rc && strcmp(schema, CK_SCHEMA) != 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute dltrain_schema is \"%s\"; expected \"%s\" (a dltrain "
                      "checkpoint file)",
                      path, schema, CK_SCHEMA);
    if (!rc)
        rc = ck_attr_read(f, "root", "schema_version", H5T_NATIVE_INT64, &version, path, err);
    if (!rc && version != CK_SCHEMA_VERSION)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute schema_version is %" PRId64
                      "; this dltrain reads checkpoint schema version %d only",
                      path, version, CK_SCHEMA_VERSION);
    if (rc)
        return rc;
    htri_t ex = H5Lexists(f, "/train", H5P_DEFAULT);
    if (ex <= 0)
        return ex < 0 ? H5_FAIL(err, DL_EINPUT, "%s: cannot look up group /train", path)
                      : DL_ERR(err, DL_EINPUT, "%s: group /train is missing", path);
    hid_t g = H5Gopen2(f, "/train", H5P_DEFAULT);
    if (g < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: cannot open group /train", path);
    int64_t world = 0;
    const struct {
        const char *name;
        int64_t *v;
    } ints[] = {
        {"step", &m->step},     {"epoch", &m->epoch},           {"global_batch", &m->global_batch},
        {"world_size", &world}, {"data_epoch", &m->data.epoch}, {"data_offset", &m->data.offset},
        {"opt_t", &m->opt_t},   {"wall_ms", &m->wall_ms},
    };
    const struct {
        const char *name;
        uint64_t *v;
    } uints[] = {
        {"seed", &m->seed}, {"config_digest", &m->config_digest}, {"data_seed", &m->data.seed}};
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++)
        rc = ck_attr_read(g, "/train", ints[i].name, H5T_NATIVE_INT64, ints[i].v, path, err);
    for (size_t i = 0; !rc && i < sizeof uints / sizeof uints[0]; i++)
        rc = ck_attr_read(g, "/train", uints[i].name, H5T_NATIVE_UINT64, uints[i].v, path, err);
    if (!rc && (world < 1 || world > INT32_MAX || m->step < 0))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: /train attributes world_size = %" PRId64 " and step = %" PRId64
                    " are out of range",
                    path, world, m->step);
    m->world_size = (int)world;
    hsize_t n = CK_SCHED;
    hid_t d;
    if (!rc)
        rc =
            ck_dset_open(g, "schedule_state", "/train/schedule_state", "float64[8]", &d, path, err);
    if (!rc) {
        hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
        if (sp < 0 || t < 0 || H5Tget_class(t) != H5T_FLOAT ||
            H5Sget_simple_extent_npoints(sp) != (hssize_t)n)
            rc =
                DL_ERR(err, DL_EINPUT, "%s: dataset /train/schedule_state is not float64[8]", path);
        else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->sched) < 0)
            rc = ck_read_fail(err, path, "/train/schedule_state");
        ck_close(&sp, H5Sclose);
        ck_close(&t, H5Tclose);
        H5Dclose(d);
    }
    H5Gclose(g);
    uint64_t job_digest = 0;
    if (!rc)
        rc = ck_read_job(f, &m->job_text, &job_digest, path, err);
    if (!rc && job_digest != m->config_digest)
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: /job attribute config_digest (%016" PRIx64 ") differs from /train "
                    "attribute config_digest (%016" PRIx64 "); the file is damaged",
                    path, job_digest, m->config_digest);
    if (rc) {
        free(m->job_text);
        m->job_text = NULL;
    }
    return rc;
}

/* Check that /model holds only tensors of the model, with the right
 * trainable flag, then read each one. */
static int ck_read_model(hid_t f, const dl_ckpt_model_t *mo, const char *path, dl_err_t *err)
{
    htri_t ex = H5Lexists(f, "/model", H5P_DEFAULT);
    if (ex <= 0)
        return ex < 0 ? H5_FAIL(err, DL_EINPUT, "%s: cannot look up group /model", path)
                      : DL_ERR(err, DL_EINPUT, "%s: group /model is missing", path);
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    H5G_info_t gi;
    if (g < 0 || H5Gget_info(g, &gi) < 0) {
        int rc = H5_FAIL(err, DL_EINPUT, "%s: cannot open group /model", path);
        ck_close(&g, H5Gclose);
        return rc;
    }
    int rc = 0;
    for (hsize_t i = 0; !rc && i < gi.nlinks; i++) {
        char name[256];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                         H5P_DEFAULT);
        if (len < 0) {
            rc = H5_FAIL(err, DL_EINPUT, "%s: cannot list group /model", path);
            break;
        }
        int found = 0;
        for (int k = 0; !found && k < mo->n_tensors; k++)
            found = !strcmp(name, mo->tensors[k].name);
        if (!found)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: dataset /model/%s is not a tensor of the model (which has %d "
                        "tensors, the first %s); the checkpoint was written for another model",
                        path, name, mo->n_tensors, mo->n_tensors ? mo->tensors[0].name : "(none)");
    }
    for (int k = 0; !rc && k < mo->n_tensors; k++) {
        const dl_tensor_info_t *t = &mo->tensors[k];
        float *base = t->is_state ? mo->state : mo->params;
        int64_t have = t->is_state ? mo->n_state : mo->n_params;
        char label[96];
        snprintf(label, sizeof label, "/model/%s", t->name);
        if (t->ndim < 1 || t->ndim > 4 || t->offset < 0 || t->offset + t->count > have || !base) {
            rc = DL_ERR(err, DL_EINTERNAL, "%s: tensor %s lies outside the model's buffers", path,
                        t->name);
            break;
        }
        hsize_t dims[4];
        for (int d = 0; d < t->ndim; d++)
            dims[d] = (hsize_t)t->dims[d];
        rc = ck_read_float(g, t->name, label, t->ndim, dims, base + t->offset, path, err);
        if (rc)
            break;
        hid_t d = H5Dopen2(g, t->name, H5P_DEFAULT);
        int32_t trainable = -1;
        rc = d < 0 ? H5_FAIL(err, DL_EINPUT, "%s: cannot open dataset %s", path, label)
                   : ck_attr_read(d, label, "trainable", H5T_NATIVE_INT32, &trainable, path, err);
        if (!rc && trainable != !t->is_state)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: dataset %s has attribute trainable = %d but the model's tensor is %s",
                        path, label, (int)trainable,
                        t->is_state ? "non-trainable state" : "a trainable parameter");
        ck_close(&d, H5Dclose);
    }
    H5Gclose(g);
    hsize_t n = (hsize_t)mo->n_opt;
    if (!rc && mo->opt_m)
        rc = ck_read_float(f, "/optimizer/m", "/optimizer/m", 1, &n, mo->opt_m, path, err);
    if (!rc && mo->opt_v)
        rc = ck_read_float(f, "/optimizer/v", "/optimizer/v", 1, &n, mo->opt_v, path, err);
    return rc;
}

int dl_ckpt_read(const char *path, dl_ckpt_meta_t *meta, const dl_ckpt_model_t *model,
                 dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    memset(meta, 0, sizeof *meta);
    hid_t f;
    int rc = ck_open(path, &f, err);
    if (rc)
        return rc;
    rc = ck_read_meta(f, meta, path, err);
    if (!rc)
        rc = ck_read_model(f, model, path, err);
    H5Fclose(f);
    if (rc) {
        free(meta->job_text);
        meta->job_text = NULL;
    }
    return rc;
}

int dl_ckpt_read_ranks(const char *path, int n_ranks, int64_t n_state, float *rows, dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f;
    int rc = ck_open(path, &f, err);
    if (rc)
        return rc;
    htri_t ex = H5Lexists(f, "/ranks", H5P_DEFAULT);
    if (ex > 0)
        ex = H5Lexists(f, "/ranks/state", H5P_DEFAULT);
    hid_t d = ex > 0 ? H5Dopen2(f, "/ranks/state", H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hsize_t dims[H5S_MAX_RANK] = {0};
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (ex < 0 || (ex > 0 && (r < 0 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0)))
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot open dataset /ranks/state", path);
    else if (ex > 0 && (r != 2 || dims[1] != (hsize_t)n_state))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: dataset /ranks/state is not one row of %lld values (the model's state) "
                    "per rank; the file is damaged",
                    path, (long long)n_state);
    ck_close(&sp, H5Sclose);
    ck_close(&d, H5Dclose);
    if (!rc && ex > 0 && dims[0] == (hsize_t)n_ranks) {
        hsize_t want[2] = {(hsize_t)n_ranks, (hsize_t)n_state};
        rc = ck_read_float(f, "/ranks/state", "/ranks/state", 2, want, rows, path, err);
        if (!rc)
            rc = 1;
    }
    H5Fclose(f);
    return rc;
}

/* ---- verifying --------------------------------------------------------------- */

typedef struct ck_visit {
    const char *path;
    dl_err_t *err;
    int rc;
} ck_visit_t;

/* Read dataset name (under file) in slabs of whole chunks along its first
 * dimension: every chunk passes through the Fletcher32 filter. */
static int ck_verify_dset(hid_t file, const char *name, ck_visit_t *v)
{
    const char *path = v->path;
    dl_err_t *err = v->err;
    char label[300];
    snprintf(label, sizeof label, "/%s", name);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : H5I_INVALID_HID;
    hid_t ft = d >= 0 ? H5Dget_type(d) : H5I_INVALID_HID;
    hid_t fsp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hid_t mt = H5I_INVALID_HID, msp = H5I_INVALID_HID;
    hsize_t dims[H5S_MAX_RANK] = {0}, chunk[H5S_MAX_RANK] = {0};
    int r = fsp >= 0 ? H5Sget_simple_extent_ndims(fsp) : -1, rc = 0;
    unsigned flags = 0;
    void *buf = NULL;
    if (d < 0 || dcpl < 0 || ft < 0 || r < 0 || H5Sget_simple_extent_dims(fsp, dims, NULL) < 0) {
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot open dataset %s", path, label);
    } else if (r < 1 || H5Pget_layout(dcpl) != H5D_CHUNKED ||
               H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, NULL, NULL, 0, NULL,
                                    NULL) < 0) {
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: dataset %s has no Fletcher32 checksum; every dataset of a checkpoint "
                    "has one",
                    path, label);
    } else if (H5Pget_chunk(dcpl, r, chunk) < 0 ||
               (mt = H5Tget_native_type(ft, H5T_DIR_ASCEND)) < 0) {
        rc = H5_FAIL(err, DL_EINPUT, "%s: cannot inspect dataset %s", path, label);
    }
    hsize_t row = 1, start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    size_t es = rc ? 0 : H5Tget_size(mt);
    for (int k = 1; !rc && k < r; k++)
        row *= dims[k];
    if (!rc && dims[0] && row && !(buf = dl_calloc((size_t)(chunk[0] * row), es, err)))
        rc = DL_ENOMEM;
    for (hsize_t i = 0; !rc && buf && i < dims[0]; i += chunk[0]) {
        memcpy(count, dims, sizeof dims);
        start[0] = i;
        count[0] = dims[0] - i < chunk[0] ? dims[0] - i : chunk[0];
        hsize_t n = count[0] * row;
        ck_close(&msp, H5Sclose);
        if ((msp = H5Screate_simple(1, &n, NULL)) < 0 ||
            H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
            rc = H5_FAIL(err, DL_ELIB, "%s: cannot select rows of dataset %s", path, label);
        else if (H5Dread(d, mt, msp, fsp, H5P_DEFAULT, buf) < 0)
            rc = ck_read_fail(err, path, label);
    }
    if (!rc && !strncmp(name, "model/", 6)) {
        int32_t trainable;
        rc = ck_attr_read(d, label, "trainable", H5T_NATIVE_INT32, &trainable, path, err);
    }
    free(buf);
    ck_close(&msp, H5Sclose);
    ck_close(&mt, H5Tclose);
    ck_close(&fsp, H5Sclose);
    ck_close(&ft, H5Tclose);
    ck_close(&dcpl, H5Pclose);
    ck_close(&d, H5Dclose);
    return rc;
}

static herr_t ck_visit_cb(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    ck_visit_t *v = data;
    if (info->type != H5O_TYPE_DATASET)
        return 0;
    v->rc = ck_verify_dset(obj, name, v);
    return v->rc ? -1 : 0;
}

int dl_ckpt_verify(const char *path, dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f;
    int rc = ck_open(path, &f, err);
    if (rc)
        return rc;
    dl_ckpt_meta_t meta;
    rc = ck_read_meta(f, &meta, path, err);
    free(meta.job_text);
    htri_t ex = rc ? 1 : H5Lexists(f, "/model", H5P_DEFAULT);
    if (ex <= 0)
        rc = ex < 0 ? H5_FAIL(err, DL_EINPUT, "%s: cannot look up group /model", path)
                    : DL_ERR(err, DL_EINPUT, "%s: group /model is missing", path);
    ck_visit_t v = {.path = path, .err = err};
    if (!rc && H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, ck_visit_cb, &v, H5O_INFO_BASIC) < 0)
        rc = v.rc ? v.rc
                  : H5_FAIL(err, DL_EINPUT,
                            "%s: cannot walk the objects of the file; it is damaged", path);
    H5Fclose(f);
    return rc;
}

/* ---- finding ----------------------------------------------------------------- */

/* The file name DIR/latest points to, or "" when there is no latest. A
 * latest that is not one checkpoint file name is reported and ignored. */
static void ck_read_latest(const char *dir, char *name, size_t size, FILE *report)
{
    char p[CK_PATH + 16], line[300] = "";
    name[0] = '\0';
    snprintf(p, sizeof p, "%s/latest", dir);
    FILE *f = fopen(p, "r");
    if (!f)
        return;
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (ok && ck_name_step(line, 0) >= 0 && strlen(line) < size) {
        snprintf(name, size, "%s", line);
        return;
    }
    if (report)
        fprintf(report,
                "dltrain: %s does not name a checkpoint file (it holds \"%s\"); looking for "
                "checkpoints in %s\n",
                p, line, dir);
}

int dl_ckpt_find(const char *dir, char *path, size_t path_size, FILE *report, dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char latest[256];
    ck_read_latest(dir, latest, sizeof latest, report);
    ck_entry_t *list = NULL;
    int n = 0;
    int rc = ck_list(dir, 0, &list, &n, err);
    if (rc)
        return rc;
    /* Candidates: latest's target, then the listed files without it. */
    int n_cand = 0, cap = n + 1;
    const char **cand = calloc((size_t)cap, sizeof *cand);
    if (!cand) {
        free(list);
        return DL_ERR(err, DL_ENOMEM, "out of memory listing %s", dir);
    }
    if (latest[0])
        cand[n_cand++] = latest;
    for (int i = 0; i < n; i++)
        if (strcmp(list[i].name, latest) != 0)
            cand[n_cand++] = list[i].name;
    int found = 0;
    for (int i = 0; !found && i < n_cand; i++) {
        char p[CK_PATH + 256];
        snprintf(p, sizeof p, "%s/%s", dir, cand[i]);
        dl_err_t e = {0};
        int vrc = dl_ckpt_verify(p, &e);
        if (!vrc) {
            if (snprintf(path, path_size, "%s", p) >= (int)path_size)
                rc = DL_ERR(err, DL_EINTERNAL, "checkpoint path too long: %s", p);
            else
                found = 1;
            break;
        }
        if (vrc == DL_ENOMEM || vrc == DL_EINTERNAL) {
            if (err)
                *err = e;
            rc = vrc;
            break;
        }
        if (report) {
            /* The message starts with the path, which the line names already. */
            size_t pl = strlen(p);
            const char *why =
                !strncmp(e.msg, p, pl) && !strncmp(e.msg + pl, ": ", 2) ? e.msg + pl + 2 : e.msg;
            const char *by = i == 0 && latest[0] ? " (named by latest)" : "";
            if (i + 1 < n_cand)
                fprintf(report, "dltrain: checkpoint %s%s is unusable (%s); falling back to %s\n",
                        p, by, why, cand[i + 1]);
            else
                fprintf(report,
                        "dltrain: checkpoint %s%s is unusable (%s); no older checkpoint to fall "
                        "back to\n",
                        p, by, why);
        }
    }
    free(cand);
    free(list);
    return rc ? rc : found;
}
