/* IDX -> HDF5 converter: turns an IDX image file and its label file (the
 * MNIST / Fashion-MNIST format, gzip-compressed or plain) into a schema-1
 * dataset as described in dataset.h, through writer.c. Images are streamed
 * in slabs, so memory stays bounded whatever the number of samples. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "convert.h"
#include "writer.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dimension */

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

/* ---- conversion ------------------------------------------------------------ */

/* dl_samples_read_fn: the next k images of the IDX stream. */
static int idx_read_samples(void *ctx, void *buf, int64_t i0, int64_t k, dl_err_t *err)
{
    idx_file_t *im = ctx;
    size_t img = (size_t)im->dims[1] * im->dims[2];
    return idx_read(im, buf, (size_t)k * img, "pixel data", (size_t)i0 * img,
                    (size_t)im->dims[0] * img, err);
}

/* Open both IDX files, check they describe the same samples, read the labels. */
static int idx_load(idx_file_t *im, idx_file_t *lb, int64_t **labels, int64_t *num_classes,
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
    uint8_t *raw = dl_calloc(n, 1, err);
    *labels = raw ? dl_calloc(n, sizeof **labels, err) : NULL;
    rc = *labels ? idx_read(lb, raw, n, "labels", 0, n, err) : DL_ENOMEM;
    int64_t maxl = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        (*labels)[i] = raw[i];
        maxl = raw[i] > maxl ? raw[i] : maxl;
    }
    *num_classes = maxl + 1;
    free(raw);
    return rc;
}

int dl_idx_to_h5(const char *images_path, const char *labels_path, const char *out_path, int shards,
                 dl_err_t *err)
{
    idx_file_t im = {.path = images_path}, lb = {.path = labels_path};
    int64_t *labels = NULL;
    int64_t num_classes = 0;
    int rc = idx_load(&im, &lb, &labels, &num_classes, err);
    if (!rc) {
        dl_samples_t s = {.source = images_path,
                          .n = im.dims[0],
                          .c = 1,
                          .h = (int)im.dims[1],
                          .w = (int)im.dims[2],
                          .labels = labels,
                          .num_classes = num_classes,
                          .read = idx_read_samples,
                          .ctx = &im};
        rc = dl_write_samples(out_path, shards, &s, err);
    }
    if (im.gz)
        gzclose(im.gz);
    if (lb.gz)
        gzclose(lb.gz);
    free(labels);
    return rc;
}
