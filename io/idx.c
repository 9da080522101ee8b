/* IDX -> HDF5 converter: turns an IDX image file and its label file (the
 * MNIST / Fashion-MNIST format, gzip-compressed or plain) into one schema-1
 * shard as described in dataset.h. Images are streamed in slabs, so memory
 * stays bounded whatever the number of samples. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <zlib.h>

#include "../models/rng.h"
#include "dataset.h"
#include "h5err.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dimension */
#define IDX_SLAB 1024                /* images converted per HDF5 write */

typedef struct idx_file {
    gzFile gz;
    const char *path;
    uint32_t dims[3]; /* N, H, W for images; N for labels */
} idx_file_t;

/* ---- reading IDX ---------------------------------------------------------- */

/* Read exactly len bytes; done_before/total only make the message precise. */
static int idx_read(idx_file_t *f, void *buf, size_t len, const char *what, size_t done_before,
                    size_t total, dl_err_t *err)
{
    size_t done = 0;
    while (done < len) {
        size_t left = len - done;
        unsigned chunk = left > (1u << 30) ? (1u << 30) : (unsigned)left;
        int got = gzread(f->gz, (char *)buf + done, chunk);
        if (got <= 0) {
            int zerr = Z_OK;
            const char *zmsg = gzerror(f->gz, &zerr);
            /* A cut-off gzip stream reports Z_BUF_ERROR: it is a truncation. */
            if (got == 0 || zerr == Z_BUF_ERROR)
                return DL_ERR(err, DL_EINPUT,
                              "%s: file is truncated: expected %zu bytes of %s but it ends "
                              "after %zu",
                              f->path, total, what, done_before + done);
            return DL_ERR(err, DL_EINPUT, "%s: cannot read %s: %s (damaged gzip data?)", f->path,
                          what, zmsg);
        }
        done += (size_t)got;
    }
    return 0;
}

static uint32_t idx_be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Open an IDX file and read its header: magic, then ndims big-endian sizes. */
static int idx_open(idx_file_t *f, const char *path, uint32_t magic, int ndims, dl_err_t *err)
{
    unsigned char hdr[16];
    const char *kind = ndims == 3 ? "image" : "label";
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        if (errno == ENOENT)
            return DL_ERR(err, DL_EINPUT, "%s: no such file (expected an IDX %s file)", path, kind);
        return DL_ERR(err, DL_EIO, "%s: cannot open: %s", path,
                      errno ? strerror(errno) : "out of memory");
    }
    size_t hlen = 4 + 4 * (size_t)ndims;
    int rc = idx_read(f, hdr, hlen, "IDX header", 0, hlen, err);
    if (rc)
        return rc;
    uint32_t got = idx_be32(hdr);
    if (got != magic)
        return DL_ERR(err, DL_EINPUT,
                      "%s: bad IDX magic number 0x%08x; an IDX %s file starts with 0x%08x "
                      "(unsigned bytes, %d dimension%s)",
                      path, (unsigned)got, kind, (unsigned)magic, ndims, ndims > 1 ? "s" : "");
    for (int i = 0; i < ndims; i++) {
        f->dims[i] = idx_be32(hdr + 4 + 4 * i);
        if (f->dims[i] == 0)
            return DL_ERR(err, DL_EINPUT, "%s: IDX dimension %d is 0; every dimension must be >= 1",
                          path, i);
    }
    return 0;
}

/* ---- writing HDF5 --------------------------------------------------------- */

static int h5_attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
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

/* Root attributes: dltrain_schema (fixed-length string), schema_version, num_classes. */
static int h5_root_attrs(hid_t file, int32_t num_classes, const char *out, dl_err_t *err)
{
    static const char schema[] = "image-classification";
    int32_t version = 1;
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0 || H5Tset_size(st, sizeof schema) < 0) {
        int rc = H5_FAIL(err, DL_ELIB, "%s: cannot make a string type", out);
        if (st >= 0)
            H5Tclose(st);
        return rc;
    }
    int rc = h5_attr_write(file, "dltrain_schema", st, st, 0, schema, out, err);
    H5Tclose(st);
    if (!rc)
        rc = h5_attr_write(file, "schema_version", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &version,
                           out, err);
    if (!rc)
        rc = h5_attr_write(file, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &num_classes,
                           out, err);
    return rc;
}

/* Create a contiguous uint8 dataset: contiguous because training reads random
 * single samples, which chunking or compression would turn into whole-chunk
 * reads and decompression. */
static hid_t h5_create_u8(hid_t file, const char *name, int rank, const hsize_t *dims,
                          const char *out, dl_err_t *err)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = H5I_INVALID_HID;
    if (sp < 0 || dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0)
        H5_FAIL(err, DL_ELIB, "%s: cannot set up dataset %s", out, name);
    else if ((d = H5Dcreate2(file, name, H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        H5_FAIL(err, DL_EIO, "%s: cannot create dataset %s", out, name);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return d;
}

/* Write images [i0, i0+k) of a N x 1 x H x W dataset from buf. */
static int h5_write_slab(hid_t dset, const uint8_t *buf, hsize_t i0, hsize_t k, hsize_t h,
                         hsize_t w, const char *out, dl_err_t *err)
{
    hsize_t start[4] = {i0, 0, 0, 0}, count[4] = {k, 1, h, w};
    hid_t fsp = H5Dget_space(dset);
    hid_t msp = H5Screate_simple(4, count, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select images %llu..%llu", out,
                     (unsigned long long)i0, (unsigned long long)(i0 + k - 1));
    else if (H5Dwrite(dset, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write images %llu..%llu", out, (unsigned long long)i0,
                     (unsigned long long)(i0 + k - 1));
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    return rc;
}

/* Stream the next n images of the IDX file into /images, accumulating the
 * exact integer sum and sum of squares for the mean and std attributes. */
static int h5_images(hid_t file, idx_file_t *im, hsize_t n, const char *out, dl_err_t *err)
{
    hsize_t h = im->dims[1], w = im->dims[2];
    hsize_t dims[4] = {n, 1, h, w};
    size_t img = (size_t)h * (size_t)w, total = (size_t)n * img;
    uint8_t *buf = dl_calloc((size_t)IDX_SLAB, img, err);
    if (!buf)
        return err ? err->code : DL_ENOMEM;
    hid_t d = h5_create_u8(file, "images", 4, dims, out, err);
    int rc = d < 0 ? (err ? err->code : DL_ELIB) : 0;
    uint64_t sum = 0, sumsq = 0, digest = DL_FNV_INIT;
    for (hsize_t i0 = 0; !rc && i0 < n; i0 += IDX_SLAB) {
        hsize_t k = n - i0 < IDX_SLAB ? n - i0 : IDX_SLAB;
        rc = idx_read(im, buf, (size_t)k * img, "pixel data", (size_t)i0 * img, total, err);
        for (size_t j = 0; !rc && j < (size_t)k * img; j++) {
            sum += buf[j];
            sumsq += (uint64_t)buf[j] * buf[j];
        }
        if (!rc)
            digest = dl_fnv1a64(digest, buf, (size_t)k * img);
        if (!rc)
            rc = h5_write_slab(d, buf, i0, k, h, w, out, err);
    }
    double cnt = (double)total, mean = (double)sum / cnt;
    double var = (double)sumsq / cnt - mean * mean;
    double sd = sqrt(var > 0 ? var : 0);
    if (!rc && !(sd > 0))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: every pixel has the value %.0f, so the standard deviation is 0 and "
                    "the images cannot be normalised",
                    im->path, mean);
    if (!rc)
        rc = h5_attr_write(d, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &mean, out, err);
    if (!rc)
        rc = h5_attr_write(d, "std", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &sd, out, err);
    if (!rc) /* what `dltrain-data verify` recomputes */
        rc = h5_attr_write(d, "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &digest, out, err);
    if (d >= 0 && H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset images", out);
    free(buf);
    return rc;
}

static int h5_labels(hid_t file, const uint8_t *labels, hsize_t n, const char *out, dl_err_t *err)
{
    hid_t d = h5_create_u8(file, "labels", 1, &n, out, err);
    if (d < 0)
        return err ? err->code : DL_ELIB;
    int rc = 0;
    uint64_t digest = dl_fnv1a64(DL_FNV_INIT, labels, (size_t)n);
    if (H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write dataset labels", out);
    if (!rc)
        rc = h5_attr_write(d, "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &digest, out, err);
    if (H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset labels", out);
    return rc;
}

/* Write a shard of n samples (the next n images of im, labels[0..n-1]) to
 * tmp; the file is closed (and flushed) on return. */
static int h5_write_shard(const char *tmp, idx_file_t *im, const uint8_t *labels, hsize_t n,
                          int32_t num_classes, dl_err_t *err)
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
    rc = h5_root_attrs(file, num_classes, tmp, err);
    if (!rc)
        rc = h5_labels(file, labels, n, tmp, err);
    if (!rc)
        rc = h5_images(file, im, n, tmp, err);
    if (H5Fclose(file) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close (flush) file", tmp);
    return rc;
}

/* Open both IDX files, check they describe the same samples, read the labels. */
static int idx_load(idx_file_t *im, idx_file_t *lb, uint8_t **labels, int32_t *num_classes,
                    dl_err_t *err)
{
    int rc = idx_open(im, im->path, IDX_MAGIC_IMAGES, 3, err);
    if (!rc)
        rc = idx_open(lb, lb->path, IDX_MAGIC_LABELS, 1, err);
    if (rc)
        return rc;
    if (im->dims[0] != lb->dims[0])
        return DL_ERR(err, DL_EINPUT,
                      "%s has %u labels but %s has %u images; the two IDX files must have one "
                      "entry per sample",
                      lb->path, (unsigned)lb->dims[0], im->path, (unsigned)im->dims[0]);
    if ((uint64_t)im->dims[1] * im->dims[2] > (1u << 30))
        return DL_ERR(err, DL_EINPUT, "%s: images of %u x %u pixels are too large (max 2^30)",
                      im->path, (unsigned)im->dims[1], (unsigned)im->dims[2]);
    size_t n = lb->dims[0];
    *labels = dl_calloc(n, 1, err);
    if (!*labels)
        return DL_ENOMEM;
    rc = idx_read(lb, *labels, n, "labels", 0, n, err);
    int32_t maxl = 0;
    for (size_t i = 0; !rc && i < n; i++)
        maxl = (*labels)[i] > maxl ? (*labels)[i] : maxl;
    *num_classes = maxl + 1;
    return rc;
}

/* Shard k's file name: OUT itself for one shard, else OUT without its .h5
 * suffix, then -KKKKK-of-NNNNN.h5 (so "data/train-*.h5" names them all). */
static char *shard_name(const char *out, int k, int shards, const char *suffix, dl_err_t *err)
{
    size_t len = strlen(out), base = len;
    if (shards > 1 && len > 3 && !strcmp(out + len - 3, ".h5"))
        base = len - 3;
    size_t size = base + 40;
    char *name = dl_calloc(size, 1, err);
    if (!name)
        return NULL;
    if (shards == 1)
        snprintf(name, size, "%s%s", out, suffix);
    else
        snprintf(name, size, "%.*s-%05d-of-%05d.h5%s", (int)base, out, k, shards, suffix);
    return name;
}

int dl_idx_to_h5(const char *images_path, const char *labels_path, const char *out_path, int shards,
                 dl_err_t *err)
{
    idx_file_t im = {.path = images_path}, lb = {.path = labels_path};
    uint8_t *labels = NULL;
    int32_t num_classes = 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    if (shards < 1)
        return DL_ERR(err, DL_EINPUT, "--shards %d: the number of shards must be at least 1",
                      shards);
    int rc = idx_load(&im, &lb, &labels, &num_classes, err);
    int64_t n = rc ? 0 : im.dims[0];
    if (!rc && shards > n)
        rc = DL_ERR(err, DL_EINPUT, "--shards %d: %s has only %lld samples", shards, images_path,
                    (long long)n);
    /* Shard k holds samples [k*n/shards, (k+1)*n/shards): sizes differ by at
     * most one. All are written under temporary names and renamed only when
     * every one is complete, so a failed conversion leaves nothing behind.
     * num_classes is the whole dataset's, so that the shards agree. */
    int written = 0;
    for (int k = 0; !rc && k < shards; k++) {
        int64_t lo = n * k / shards, hi = n * (k + 1) / shards;
        char *tmp = shard_name(out_path, k, shards, ".tmp", err);
        rc = tmp ? h5_write_shard(tmp, &im, labels + lo, (hsize_t)(hi - lo), num_classes, err)
                 : DL_ENOMEM;
        free(tmp);
        written = k + 1;
    }
    for (int k = 0; k < written; k++) {
        char *tmp = shard_name(out_path, k, shards, ".tmp", err);
        char *final = shard_name(out_path, k, shards, "", err);
        /* rename() is atomic: readers never see a half-written shard. */
        if (!rc && tmp && final && rename(tmp, final) != 0)
            rc = DL_ERR(err, DL_EIO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        if (rc && tmp)
            remove(tmp);
        free(tmp);
        free(final);
    }
    if (im.gz)
        gzclose(im.gz);
    if (lb.gz)
        gzclose(lb.gz);
    free(labels);
    return rc;
}
