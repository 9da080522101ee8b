/* Schema-1 dataset writer; see writer.h. Each shard is one HDF5 file with
 * root attributes, /labels and /images (contiguous, so that training's
 * random single-sample reads stay one small read each). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/rng.h"
#include "h5err.h"
#include "h5util.h"
#include "writer.h"

#define WR_MAX_C 16               /* channels the reader accepts */
#define WR_SLAB_BYTES (8u << 20)  /* input pulled and written per HDF5 write */
#define WR_MAX_VALUES (1ll << 30) /* values per sample the reader accepts */

/* Running per-channel statistics of one shard. uint8 values keep exact
 * integer sums; float values are combined slab by slab (Chan et al.), which
 * stays accurate when the mean is large compared with the spread. */
typedef struct wr_stats {
    uint64_t sum[WR_MAX_C], sumsq[WR_MAX_C];
    double mean[WR_MAX_C], m2[WR_MAX_C];
    double count; /* values per channel so far */
} wr_stats_t;

typedef struct wr_ctx {
    const dl_samples_t *s;
    int shards, k; /* shard being written, for messages */
    void *buf;     /* slab of samples from s->read */
    int64_t slab;  /* samples per slab */
} wr_ctx_t;

/* A contiguous dataset of file type ftype in *d. */
static int wr_create(hid_t file, const char *name, hid_t ftype, int rank, const hsize_t *dims,
                     hid_t *d, const char *out, dl_err_t *err)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = 0;
    *d = H5I_INVALID_HID;
    if (sp < 0 || dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up dataset /%s", out, name);
    else if ((*d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot create dataset /%s", out, name);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

static int wr_close(hid_t d, const char *name, const char *out, int rc, dl_err_t *err)
{
    if (d >= 0 && H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset /%s", out, name);
    return rc;
}

/* /labels: uint8 when every label fits, else int32, with its checksum. */
static int wr_labels(hid_t file, const int64_t *labels, int64_t n, int64_t num_classes,
                     const char *out, dl_err_t *err)
{
    int small = num_classes <= 256;
    size_t elem = small ? 1 : 4;
    void *buf = dl_calloc((size_t)n, elem, err);
    if (!buf)
        return DL_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        if (small)
            ((uint8_t *)buf)[i] = (uint8_t)labels[i];
        else
            ((int32_t *)buf)[i] = (int32_t)labels[i];
    }
    hsize_t dim = (hsize_t)n;
    hid_t d;
    int rc = wr_create(file, "labels", small ? H5T_STD_U8LE : H5T_STD_I32LE, 1, &dim, &d, out, err);
    uint64_t digest = dl_fnv1a64_le(DL_FNV_INIT, buf, (size_t)n, elem);
    if (!rc && H5Dwrite(d, small ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                        H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write dataset /labels", out);
    if (!rc) /* what `dltrain-data verify` recomputes */
        rc = dl_h5_attr_write(d, "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &digest, out, err);
    rc = wr_close(d, "labels", out, rc, err);
    free(buf);
    return rc;
}

/* Write samples [i0, i0 + k) of the shard's /images from buf. */
static int wr_slab(hid_t d, const dl_samples_t *s, const void *buf, hsize_t i0, hsize_t k,
                   const char *out, dl_err_t *err)
{
    hsize_t start[4] = {i0, 0, 0, 0};
    hsize_t count[4] = {k, (hsize_t)s->c, (hsize_t)s->h, (hsize_t)s->w};
    hid_t fsp = H5Dget_space(d);
    hid_t msp = H5Screate_simple(4, count, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select samples %llu..%llu", out,
                     (unsigned long long)i0, (unsigned long long)(i0 + k - 1));
    else if (H5Dwrite(d, s->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT,
                      buf) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write samples %llu..%llu", out,
                     (unsigned long long)i0, (unsigned long long)(i0 + k - 1));
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    return rc;
}

/* Add k uint8 samples to the statistics. */
static void wr_stats_u8(wr_stats_t *st, const dl_samples_t *s, const uint8_t *buf, int64_t k)
{
    size_t hw = (size_t)s->h * s->w;
    for (int64_t i = 0; i < k; i++)
        for (int c = 0; c < s->c; c++) {
            const uint8_t *p = buf + ((size_t)i * s->c + c) * hw;
            uint64_t sum = 0, sumsq = 0;
            for (size_t j = 0; j < hw; j++) {
                sum += p[j];
                sumsq += (uint64_t)p[j] * p[j];
            }
            st->sum[c] += sum;
            st->sumsq[c] += sumsq;
        }
    st->count += (double)k * (double)hw;
}

/* Add k float samples (sample i0 first) to the statistics; a value that is
 * not finite is DL_EINPUT naming the sample. */
static int wr_stats_f32(wr_stats_t *st, const dl_samples_t *s, const float *buf, int64_t i0,
                        int64_t k, dl_err_t *err)
{
    size_t hw = (size_t)s->h * s->w, chw = (size_t)s->c * hw;
    for (size_t j = 0; j < (size_t)k * chw; j++)
        if (!isfinite(buf[j]))
            return DL_ERR(err, DL_EINPUT,
                          "%s: sample %" PRId64 " (value %zu of it) is %g; dltrain needs "
                          "finite values within the float32 range",
                          s->source, i0 + (int64_t)(j / chw), j % chw, (double)buf[j]);
    double nb = (double)k * (double)hw;
    for (int c = 0; c < s->c; c++) {
        double sum = 0, m2 = 0;
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < hw; j++)
                sum += buf[((size_t)i * s->c + c) * hw + j];
        double mb = sum / nb;
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < hw; j++) {
                double d = buf[((size_t)i * s->c + c) * hw + j] - mb;
                m2 += d * d;
            }
        double na = st->count, delta = mb - st->mean[c];
        st->mean[c] += delta * nb / (na + nb);
        st->m2[c] += m2 + delta * delta * na * nb / (na + nb);
    }
    st->count += nb;
    return 0;
}

/* Per-channel mean and population std; a std of 0 is DL_EINPUT. */
static int wr_stats_finish(const wr_stats_t *st, const wr_ctx_t *x, int64_t lo, int64_t hi,
                           double *mean, double *sd, dl_err_t *err)
{
    const dl_samples_t *s = x->s;
    for (int c = 0; c < s->c; c++) {
        double var;
        if (s->is_float) {
            mean[c] = st->mean[c];
            var = st->m2[c] / st->count;
        } else {
            mean[c] = (double)st->sum[c] / st->count;
            var = (double)st->sumsq[c] / st->count - mean[c] * mean[c];
        }
        sd[c] = sqrt(var > 0 ? var : 0);
        if (sd[c] > 0)
            continue;
        char chan[32] = "", shard[96] = "";
        if (s->c > 1)
            snprintf(chan, sizeof chan, " of channel %d", c);
        if (x->shards > 1)
            snprintf(shard, sizeof shard, " in shard %d (samples %" PRId64 "..%" PRId64 ")", x->k,
                     lo, hi - 1);
        return DL_ERR(err, DL_EINPUT,
                      "%s: every %s%s%s has the value %g, so the standard deviation is 0 and the "
                      "%s cannot be normalised",
                      s->source, s->is_float ? "value" : "pixel", chan, shard, mean[c],
                      s->is_float ? "features" : "images");
    }
    return 0;
}

/* /images of one shard: samples [lo, hi) pulled from the converter. */
static int wr_images(hid_t file, wr_ctx_t *x, int64_t lo, int64_t hi, const char *out,
                     dl_err_t *err)
{
    const dl_samples_t *s = x->s;
    size_t chw = (size_t)s->c * s->h * s->w, elem = s->is_float ? 4 : 1;
    hsize_t dims[4] = {(hsize_t)(hi - lo), (hsize_t)s->c, (hsize_t)s->h, (hsize_t)s->w};
    hid_t d;
    int rc = wr_create(file, "images", s->is_float ? H5T_IEEE_F32LE : H5T_STD_U8LE, 4, dims, &d,
                       out, err);
    wr_stats_t st;
    memset(&st, 0, sizeof st);
    uint64_t digest = DL_FNV_INIT;
    for (int64_t i0 = lo; !rc && i0 < hi; i0 += x->slab) {
        int64_t k = hi - i0 < x->slab ? hi - i0 : x->slab;
        rc = s->read(s->ctx, x->buf, i0, k, err);
        if (!rc && s->is_float)
            rc = wr_stats_f32(&st, s, x->buf, i0, k, err);
        else if (!rc)
            wr_stats_u8(&st, s, x->buf, k);
        if (!rc)
            digest = dl_fnv1a64_le(digest, x->buf, (size_t)k * chw, elem);
        if (!rc)
            rc = wr_slab(d, s, x->buf, (hsize_t)(i0 - lo), (hsize_t)k, out, err);
    }
    double mean[WR_MAX_C], sd[WR_MAX_C];
    if (!rc)
        rc = wr_stats_finish(&st, x, lo, hi, mean, sd, err);
    hsize_t nc = (hsize_t)s->c;
    if (!rc)
        rc = dl_h5_attr_write(d, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nc, mean, out, err);
    if (!rc)
        rc = dl_h5_attr_write(d, "std", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nc, sd, out, err);
    if (!rc) /* what `dltrain-data verify` recomputes */
        rc = dl_h5_attr_write(d, "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &digest, out, err);
    return wr_close(d, "images", out, rc, err);
}

/* dl_h5_shard_fn: one whole shard. num_classes is the whole dataset's, so
 * that the shards agree. */
static int wr_shard(void *ctx, hid_t file, const char *tmp, int64_t lo, int64_t hi, dl_err_t *err)
{
    wr_ctx_t *x = ctx;
    int32_t num_classes = (int32_t)x->s->num_classes;
    int rc = dl_h5_root_attrs(file, "image-classification", tmp, err);
    if (!rc)
        rc = dl_h5_attr_write(file, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &num_classes,
                              tmp, err);
    if (!rc)
        rc = wr_labels(file, x->s->labels + lo, hi - lo, x->s->num_classes, tmp, err);
    if (!rc)
        rc = wr_images(file, x, lo, hi, tmp, err);
    x->k++;
    return rc;
}

/* The limits the reader enforces, checked before anything is written. */
static int wr_check(int shards, const dl_samples_t *s, dl_err_t *err)
{
    if (shards < 1)
        return DL_ERR(err, DL_EINPUT, "--shards %d: the number of shards must be at least 1",
                      shards);
    if (s->n < 1)
        return DL_ERR(err, DL_EINPUT, "%s: holds no samples; a dataset needs at least 1",
                      s->source);
    if (shards > s->n)
        return DL_ERR(err, DL_EINPUT, "--shards %d: %s has only %" PRId64 " samples", shards,
                      s->source, s->n);
    if (s->c < 1 || s->c > WR_MAX_C)
        return DL_ERR(err, DL_EINPUT, "%s: samples have %d channels; dltrain reads 1 to %d",
                      s->source, s->c, WR_MAX_C);
    if (s->h < 1 || s->w < 1 || (int64_t)s->c * s->h * s->w > WR_MAX_VALUES)
        return DL_ERR(err, DL_EINPUT,
                      "%s: samples of %d x %d x %d values are not accepted; dltrain reads 1 to "
                      "2^30 values per sample",
                      s->source, s->c, s->h, s->w);
    if (s->num_classes < 1 || s->num_classes > INT32_MAX)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the largest label is %" PRId64 "; labels must be 0 to %d", s->source,
                      s->num_classes - 1, INT32_MAX - 1);
    return 0;
}

int dl_write_samples(const char *out_path, int shards, const dl_samples_t *s, dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    int rc = wr_check(shards, s, err);
    if (rc)
        return rc;
    size_t bytes = (size_t)s->c * s->h * s->w * (s->is_float ? 4 : 1);
    wr_ctx_t x = {.s = s, .shards = shards};
    x.slab = bytes >= WR_SLAB_BYTES ? 1 : (int64_t)(WR_SLAB_BYTES / bytes);
    if (x.slab > s->n)
        x.slab = s->n;
    x.buf = dl_calloc((size_t)x.slab, bytes, err);
    if (!x.buf)
        return DL_ENOMEM;
    rc = dl_h5_write_shards(out_path, shards, s->n, wr_shard, &x, err);
    free(x.buf);
    return rc;
}
