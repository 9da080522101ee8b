/* dltrain HDF5 dataset reader; see dataset.h for the schema and the contract.
 *
 * Each shard keeps its file and its /images and /labels dataset handles open
 * for the life of the dl_dataset_t; every other HDF5 handle is closed before
 * the function that opened it returns, on every path.
 *
 * Samples are read in their stored type, three ways. A dataset stored
 * contiguous, unfiltered and in the native type it is read as (what
 * dltrain-data and h5py write) has its file offset from HDF5 once, at open.
 * If every shard is stored so and the files fit the mapping limit, they are
 * mapped and a batch is a memcpy per sample out of the page cache: a
 * shuffled batch of small samples was one pread per sample, and the calls
 * cost more than the copies. Otherwise such datasets are read with pread(2)
 * (HDF5's own work around each read, selections, dataspaces and locks, cost
 * more than the read). Anything else (chunked, compressed, other byte
 * orders) is read through HDF5. All three give the same bytes. */
#define _GNU_SOURCE /* preadv2 and RWF_NOWAIT (Linux), where the C library has them */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hdf5.h>

#include "../models/rng.h"
#include "dataset.h"
#include "h5err.h"
#include "h5util.h"

#define DS_MAX_C 16 /* channels: dl_dataset_info_t has room for 16 */

/* pread reads: samples closer than DS_GAP_BYTES are read with the bytes
 * between them in one call (a pread costs about as much as copying a few KiB
 * out of the page cache), and one call reads at most DS_SPAN_BYTES (or one
 * sample, if larger), so the staging buffer stays in cache while it is
 * normalised. */
#define DS_GAP_BYTES ((size_t)4 << 10)
#define DS_SPAN_BYTES ((size_t)256 << 10)

/* Reads from the page cache alone (preadv2 with RWF_NOWAIT, Linux 4.14 and
 * later) tell a batch in memory from one that needs the disk. One read in
 * DS_PROBE_EVERY is such a probe: preadv2 costs a fifth more than pread,
 * 5 to 8% of a shuffled batch read from memory if every read were one. */
#define DS_PROBE_EVERY 8
#ifdef RWF_NOWAIT
#define DS_HAVE_NOWAIT 1
#else
#define DS_HAVE_NOWAIT 0
#endif

/* Where a dataset's elements lie in its file, for pread (see ds_probe_raw). */
typedef struct ds_raw {
    int64_t pos;   /* file offset of element 0; -1: read through HDF5 */
    size_t esize;  /* bytes per element */
    int is_signed; /* integers: two's complement */
} ds_raw_t;

typedef struct ds_shard {
    char *path;
    hid_t file, images, labels; /* H5I_INVALID_HID when not open */
    int64_t n;
    int c, h, w, num_classes;
    int is_float; /* /images is float32 (else uint8) */
    double mean[DS_MAX_C], std[DS_MAX_C];
    int fd;             /* HDF5's read-only descriptor of the file; -1: none (not sec2) */
    int64_t file_bytes; /* the file's size when opened */
    ds_raw_t raw_images, raw_labels;
    /* dl_dataset_map: element 0 of /images and /labels in mappings of the
     * file (NULL: not mapped), and the mappings themselves */
    const uint8_t *map_images, *map_labels;
    void *map_base[2];
    size_t map_len[2];
    uint64_t stamp; /* the last mapped batch that read from this shard */
} ds_shard_t;

typedef struct ds_req {
    int64_t g; /* global sample index */
    int pos;   /* position in the caller's request */
} ds_req_t;

struct dl_dataset {
    dl_dataset_info_t info;
    int n_shards;
    ds_shard_t *shards;
    int64_t *offsets;         /* n_shards + 1: first global index of each shard, then n */
    float lut[DS_MAX_C][256]; /* uint8 data: (pixel - mean[c]) / std[c] for every value */
    int force_hdf5;           /* read every shard through HDF5 (dl_dataset_force_hdf5) */
    int nowait;               /* try RWF_NOWAIT reads (until the kernel refuses one) */
    ds_req_t *reqs;           /* scratch: n requests sorted by global index, then n spare (below) */
    void *spare;    /* reqs + n: sort space, then the HDF5 path's label points and labels */
    void *pix;      /* scratch: unique samples of one shard, c*h*w values each (HDF5 path) */
    uint8_t *stage; /* scratch: bytes of one pread */
    size_t reqs_cap, pix_cap, stage_cap; /* in elements */
    int64_t mapped;                      /* bytes mapped (dl_dataset_map); 0: none */
    uint64_t map_batch;                  /* batches read from the mappings so far (shard stamps) */
    struct ds_src *srcs;                 /* scratch: where each sample of a mapped batch lies */
    int *touched;                        /* scratch: the shards a mapped batch read from */
    uint8_t *stored;                     /* scratch: dl_dataset_read's uint8 samples */
    size_t srcs_cap, touched_cap, stored_cap;
};

static void h5_close_space(hid_t *s)
{
    if (*s >= 0)
        H5Sclose(*s);
    *s = H5I_INVALID_HID;
}

/* ---- root attributes ------------------------------------------------------- */

/* Root attributes: schema name and version, number of classes. */
static int ds_check_root(ds_shard_t *sh, dl_err_t *err)
{
    static const char schema[] = "image-classification";
    const char *p = sh->path;
    char s[64];
    int64_t v = 0;
    int rc = dl_h5_schema_name(sh->file, p, s, sizeof s, err);
    if (!rc && strcmp(s, "tokens") == 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: a token dataset (dltrain_schema = \"tokens\"); training reads "
                      "image-classification datasets; token datasets are for language-model "
                      "jobs, which dltrain does not train yet",
                      p);
    if (!rc && strcmp(s, schema) != 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute dltrain_schema is \"%s\"; dltrain reads only "
                      "\"image-classification\" datasets",
                      p, s);
    if (!rc)
        rc =
            dl_h5_attr_get(sh->file, p, "root", "schema_version", 'i', &v, 1, "the integer 1", err);
    if (!rc && v != 1)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute schema_version is %" PRId64 "; this dltrain reads "
                      "schema version 1 only",
                      p, v);
    if (!rc)
        rc = dl_h5_attr_get(sh->file, p, "root", "num_classes", 'i', &v, 1, "an integer >= 1", err);
    if (!rc && (v < 1 || v > INT_MAX))
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute num_classes is %" PRId64 "; it must be an integer "
                      "from 1 to %d",
                      p, v, INT_MAX);
    sh->num_classes = (int)v;
    return rc;
}

/* ---- datasets ---------------------------------------------------------------- */

/* The element types accepted: any integer (labels), or the image types,
 * uint8 or float32 (*is_float says which). */
static int ds_type_ok(hid_t t, int images, int *is_float)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    *is_float = cls == H5T_FLOAT;
    if (!images)
        return cls == H5T_INTEGER;
    if (cls == H5T_FLOAT)
        return size == 4;
    return cls == H5T_INTEGER && size == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
}

/* Open dataset /name, check its type (ds_type_ok) and rank, and return its
 * dimensions. */
static int ds_open_dset(ds_shard_t *sh, const char *name, int rank, int images, const char *want,
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
    int rc = 0, is_float = 0;
    char tn[64];
    if (t < 0 || r < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect dataset /%s", sh->path, name);
    } else if (!ds_type_ok(t, images, &is_float)) {
        dl_h5_type_name(t, tn, sizeof tn);
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
    if (images)
        sh->is_float = is_float;
    return rc;
}

static int ds_check_images(ds_shard_t *sh, dl_err_t *err)
{
    static const char want[] =
        "uint8 (8-bit unsigned integers) or float32 (32-bit floats) of rank 4: N x C x H x W";
    hsize_t d[4] = {0};
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
    hsize_t d[1] = {0};
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
    char want[128];
    snprintf(want, sizeof want, "%d float64 value%s (one per channel, %s)", sh->c,
             sh->c > 1 ? "s" : "",
             sh->is_float ? "in the units of the stored values" : "pixel units 0..255");
    int rc =
        dl_h5_attr_get(sh->images, sh->path, "/images", "mean", 'd', sh->mean, sh->c, want, err);
    if (!rc)
        rc = dl_h5_attr_get(sh->images, sh->path, "/images", "std", 'd', sh->std, sh->c, want, err);
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

/* ---- where pread can read ---------------------------------------------------- */

/* HDF5's own descriptor of the open file, for pread: only with the sec2
 * driver (the default, which dl_h5_open_read keeps), whose handle is a plain
 * descriptor opened read-only. Reusing it rather than opening the path again
 * guarantees the same file as HDF5's offsets describe (a path renamed over
 * between two opens would not be) and costs no descriptor per shard. Any
 * other driver leaves fd at -1: every read then goes through HDF5. */
static int ds_file_fd(ds_shard_t *sh, dl_err_t *err)
{
    hid_t fapl = H5Fget_access_plist(sh->file);
    if (fapl < 0)
        return H5_FAIL(err, DL_ELIB, "%s: cannot get the file access properties", sh->path);
    void *h = NULL;
    if (H5Pget_driver(fapl) == H5FD_SEC2 && H5Fget_vfd_handle(sh->file, fapl, &h) >= 0 && h)
        sh->fd = *(int *)h;
    H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
    struct stat st;
    if (sh->fd >= 0 && fstat(sh->fd, &st) != 0)
        return DL_ERR(err, DL_EIO, "%s: cannot get the file's size: %s", sh->path, strerror(errno));
    sh->file_bytes = sh->fd >= 0 ? (int64_t)st.st_size : -1;
    return 0;
}

/* Whether dataset d of shard sh can be read with pread, and where: stored
 * contiguous, with no filters and no external files, allocated whole, and
 * of a type equal to the native type it is read as (want; H5I_INVALID_HID:
 * the native type of its own, for integer labels of any size). Sets
 * raw->pos to -1 when not. */
static int ds_probe_raw(const ds_shard_t *sh, hid_t d, const char *name, hid_t want, ds_raw_t *raw,
                        dl_err_t *err)
{
    raw->pos = -1;
    if (sh->fd < 0)
        return 0;
    hid_t dcpl = H5Dget_create_plist(d), ft = H5Dget_type(d), sp = H5Dget_space(d);
    hid_t nt = ft >= 0 ? H5Tget_native_type(ft, H5T_DIR_ASCEND) : H5I_INVALID_HID;
    int rc = 0;
    if (dcpl < 0 || sp < 0 || nt < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect the storage of dataset /%s", sh->path, name);
    } else {
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        size_t es = H5Tget_size(ft);
        haddr_t at = H5Dget_offset(d); /* HADDR_UNDEF unless contiguous and allocated */
        int plain = H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
                    H5Pget_external_count(dcpl) == 0 && H5Tequal(ft, want >= 0 ? want : nt) > 0 &&
                    (es == 1 || es == 2 || es == 4 || es == 8) && np > 0 && at != HADDR_UNDEF &&
                    at < (haddr_t)INT64_MAX / 2 &&
                    H5Dget_storage_size(d) == (hsize_t)np * (hsize_t)es;
        if (plain) {
            raw->pos = (int64_t)at;
            raw->esize = es;
            raw->is_signed = H5Tget_sign(ft) == H5T_SGN_2;
        }
    }
    if (nt >= 0)
        H5Tclose(nt);
    if (ft >= 0)
        H5Tclose(ft);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    h5_close_space(&sp);
    H5Eclear2(H5E_DEFAULT); /* H5Dget_offset leaves an error when it returns HADDR_UNDEF */
    return rc;
}

static int ds_probe_shard(ds_shard_t *sh, dl_err_t *err)
{
    int rc = ds_file_fd(sh, err);
    if (!rc)
        rc = ds_probe_raw(sh, sh->images, "images",
                          sh->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, &sh->raw_images, err);
    if (!rc)
        rc = ds_probe_raw(sh, sh->labels, "labels", H5I_INVALID_HID, &sh->raw_labels, err);
    return rc;
}

static int ds_open_shard(ds_shard_t *sh, dl_err_t *err)
{
    int rc = dl_h5_open_read(sh->path, &sh->file, err);
    if (!rc)
        rc = ds_check_root(sh, err);
    if (!rc)
        rc = ds_check_images(sh, err);
    if (!rc)
        rc = ds_check_labels(sh, err);
    if (!rc)
        rc = ds_check_stats(sh, err);
    if (!rc)
        rc = ds_probe_shard(sh, err);
    return rc;
}

static const char *ds_type_word(const ds_shard_t *s)
{
    return s->is_float ? "float32" : "uint8";
}

/* Every shard must agree with the first on the image type, C, H, W and
 * num_classes. */
static int ds_check_agree(const ds_shard_t *a, const ds_shard_t *b, dl_err_t *err)
{
    if (a->is_float != b->is_float)
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /images holds %s values but %s holds %s; all shards of a "
                      "dataset must store the same type",
                      b->path, ds_type_word(b), a->path, ds_type_word(a));
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
    in->is_float = s0->is_float;
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
    }
    dl_dataset_normalise_as(ds, in);
    return 0;
}

void dl_dataset_normalise_as(dl_dataset_t *ds, const dl_dataset_info_t *like)
{
    dl_dataset_info_t *in = &ds->info;
    for (int c = 0; c < in->c; c++) {
        in->mean[c] = like->mean[c];
        in->std[c] = like->std[c];
        for (int p = 0; p < 256; p++)
            ds->lut[c][p] = (float)(((double)p - in->mean[c]) / in->std[c]);
    }
}

/* ---- mappings (dl_dataset_map) ------------------------------------------------ */

/* Where a SIGBUS during a copy from a mapping on this thread jumps back to
 * (ds_map_guarded); NULL outside such copies. volatile: only the handler
 * reads it, so the compiler would otherwise drop the store before the copy
 * as dead (it did). */
static _Thread_local sigjmp_buf *volatile ds_bus_jump;
static struct sigaction ds_bus_prev; /* SIGBUS's action before ds_on_sigbus */
static pthread_once_t ds_bus_once = PTHREAD_ONCE_INIT;
static int ds_bus_ready; /* ds_on_sigbus is installed */

/* SIGBUS: a read of a mapped page that now lies beyond the end of its file.
 * During a copy from a mapping: back to where the copy began, which then
 * reads the batch with pread (and says what happened to the file). Any
 * other SIGBUS goes to the handler installed before, or takes the default
 * action (the faulting access runs again once this returns). */
static void ds_on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    sigjmp_buf *jump = ds_bus_jump;
    if (jump) {
        ds_bus_jump = NULL;
        siglongjmp(*jump, 1);
    }
    if (ds_bus_prev.sa_flags & SA_SIGINFO) {
        ds_bus_prev.sa_sigaction(sig, info, ctx);
    } else if (ds_bus_prev.sa_handler != SIG_DFL && ds_bus_prev.sa_handler != SIG_IGN) {
        ds_bus_prev.sa_handler(sig);
    } else {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGBUS, &dfl, NULL);
    }
}

/* Install ds_on_sigbus for the process, once. SA_NODEFER leaves SIGBUS
 * unblocked in the handler, so that jumping out of it (sigsetjmp without
 * saving the mask, which costs a system call) leaves the mask as it was. */
static void ds_bus_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ds_on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    ds_bus_ready = sigemptyset(&sa.sa_mask) == 0 && sigaction(SIGBUS, &sa, &ds_bus_prev) == 0;
}

static void ds_unmap(dl_dataset_t *ds)
{
    for (int i = 0; i < ds->n_shards; i++) {
        ds_shard_t *sh = &ds->shards[i];
        for (int k = 0; k < 2; k++)
            if (sh->map_base[k])
                munmap(sh->map_base[k], sh->map_len[k]);
        memset(sh->map_base, 0, sizeof sh->map_base);
        memset(sh->map_len, 0, sizeof sh->map_len);
        sh->map_images = sh->map_labels = NULL;
    }
    ds->mapped = 0;
}

/* Map len bytes of sh's file from pos (mapping k of the shard); *at gets
 * pos's address. mmap wants an offset that is a multiple of the page. */
static int ds_map_range(ds_shard_t *sh, int k, int64_t pos, int64_t len, const uint8_t **at)
{
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE), start = pos - pos % page;
    size_t n = (size_t)(pos - start + len);
    void *p = mmap(NULL, n, PROT_READ, MAP_SHARED, sh->fd, (off_t)start);
    if (p == MAP_FAILED)
        return -1;
    sh->map_base[k] = p;
    sh->map_len[k] = n;
    *at = (const uint8_t *)p + (pos - start);
    return 0;
}

int64_t dl_dataset_map(dl_dataset_t *ds, int64_t limit)
{
    ds_unmap(ds);
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE), total = 0, sample = dl_dataset_sample_bytes(ds);
    for (int i = 0; i < ds->n_shards; i++) {
        const ds_shard_t *sh = &ds->shards[i];
        if (sh->raw_images.pos < 0 || sh->raw_labels.pos < 0)
            return 0;
        int64_t img = sh->n * sample, lab = sh->n * (int64_t)sh->raw_labels.esize;
        if (sh->raw_images.pos + img > sh->file_bytes || sh->raw_labels.pos + lab > sh->file_bytes)
            return 0; /* cut short already: pread says so when it reads there */
        total += sh->raw_images.pos % page + img + sh->raw_labels.pos % page + lab;
    }
    if (limit <= 0 || total > limit)
        return 0;
    pthread_once(&ds_bus_once, ds_bus_install);
    if (!ds_bus_ready)
        return 0;
    int64_t mapped = 0;
    for (int i = 0; i < ds->n_shards; i++) {
        ds_shard_t *sh = &ds->shards[i];
        if (ds_map_range(sh, 0, sh->raw_images.pos, sh->n * sample, &sh->map_images) != 0 ||
            ds_map_range(sh, 1, sh->raw_labels.pos, sh->n * (int64_t)sh->raw_labels.esize,
                         &sh->map_labels) != 0) {
            ds_unmap(ds); /* a file system without mmap, or no address space: pread */
            return 0;
        }
        mapped += (int64_t)(sh->map_len[0] + sh->map_len[1]);
    }
    ds->mapped = mapped;
    return mapped;
}

int64_t dl_dataset_mapped_bytes(const dl_dataset_t *ds)
{
    return ds->mapped;
}

int64_t dl_dataset_sample_bytes(const dl_dataset_t *ds)
{
    const dl_dataset_info_t *in = &ds->info;
    return (int64_t)in->c * in->h * in->w * (in->is_float ? (int64_t)sizeof(float) : 1);
}

/* The default mapping limit: DL_DATASET_MAP_DEFAULT, at most a quarter of
 * physical memory. */
static int64_t ds_map_default(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    int64_t quarter = pages > 0 && size > 0 ? (int64_t)pages * size / 4 : 0;
    return quarter < DL_DATASET_MAP_DEFAULT ? quarter : DL_DATASET_MAP_DEFAULT;
}

/* One shard per path of the spec, none open yet. */
static int ds_make_shards(dl_dataset_t *ds, const char *spec, dl_err_t *err)
{
    dl_paths_t paths;
    int rc = dl_paths_expand(&paths, spec, err);
    if (!rc && !(ds->shards = dl_calloc((size_t)paths.n, sizeof *ds->shards, err)))
        rc = DL_ENOMEM;
    for (int i = 0; !rc && i < paths.n; i++) {
        ds_shard_t *sh = &ds->shards[i];
        sh->file = sh->images = sh->labels = H5I_INVALID_HID;
        sh->fd = -1;
        sh->raw_images.pos = sh->raw_labels.pos = -1;
        sh->path = paths.v[i]; /* the shard owns it now */
        paths.v[i] = NULL;
        ds->n_shards++;
    }
    dl_paths_free(&paths);
    return rc;
}

int dl_dataset_open(const char *spec, dl_dataset_t **out, dl_err_t *err)
{
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    dl_dataset_t *ds = dl_calloc(1, sizeof *ds, err);
    if (!ds)
        return DL_ENOMEM;
    ds->nowait = DS_HAVE_NOWAIT;
    int rc = ds_make_shards(ds, spec, err);
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
    dl_dataset_map(ds, ds_map_default());
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
    ds_unmap(ds);
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
    free(ds->stage);
    free(ds->srcs);
    free(ds->touched);
    free(ds->stored);
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

/* Sort r[0..n-1] by global index, equal indices staying in request order:
 * a bottom-up merge sort through tmp (n entries) with the comparison inline:
 * 2.3 us for a shuffled batch of 128, where qsort and its callback per
 * comparison took 8.8 us (8% of the batch's read time). */
static void ds_sort_reqs(ds_req_t *r, ds_req_t *tmp, int n)
{
    ds_req_t *a = r, *b = tmp;
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = a[j].g < a[i].g ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        ds_req_t *t = a;
        a = b, b = t;
    }
    if (a != r)
        memcpy(r, a, (size_t)n * sizeof *r);
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

/* ---- normalisation ------------------------------------------------------------- */

/* dst[i] = lut[src[i]] for n pixels of one channel: (pixel - mean) / std
 * computed in double and rounded once, so that the values are exactly what
 * docs/data.md and the PyTorch reference tests compute. Vectorised float
 * arithmetic ((x - mean) * (1/std)) is faster (17 against 29 us for a batch
 * of 128 Fashion-MNIST images) but differs by a few ulps; a batch's
 * normalisation is still a small part of a training step. restrict lets the
 * compiler keep the table's address in a register instead of recomputing
 * it around every store (a float store could otherwise alias the table). */
static void ds_norm_u8_row(const float *restrict lut, const uint8_t *restrict src,
                           float *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = lut[src[i]];
}

/* Normalise one sample of c*h*w stored values (uint8 or float32) into dst. */
static void ds_norm_sample(const dl_dataset_t *ds, const void *src, float *dst)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t hw = (size_t)in->h * in->w;
    for (int c = 0; c < in->c; c++) {
        if (!in->is_float) {
            ds_norm_u8_row(ds->lut[c], (const uint8_t *)src + c * hw, dst + c * hw, hw);
            continue;
        }
        const float *s = (const float *)src + c * hw;
        double m = in->mean[c], sd = in->std[c];
        for (size_t i = 0; i < hw; i++)
            dst[c * hw + i] = (float)(((double)s[i] - m) / sd);
    }
}

/* A label read for global sample g (local index g - off) must be in
 * 0..num_classes-1. */
static int ds_check_label(const dl_dataset_t *ds, const ds_shard_t *sh, int64_t g, int64_t off,
                          int32_t lab, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    if (lab >= 0 && lab < in->num_classes)
        return 0;
    return DL_ERR(err, DL_EINPUT,
                  "%s: dataset /labels entry %" PRId64 " (global sample %" PRId64
                  ") is %d; accepted labels are 0..%d (root attribute num_classes = %d)",
                  sh->path, g - off, g, (int)lab, in->num_classes - 1, in->num_classes);
}

/* ---- reading with pread ----------------------------------------------------------- */

/* The pread reads of one dataset for the requests of one shard. An entry is
 * what one request needs from the dataset: a sample's values, or a label. */
typedef struct ds_rd {
    const ds_shard_t *sh;
    const char *name; /* "images" or "labels", for messages */
    const ds_raw_t *raw;
    size_t row;        /* bytes per entry */
    int64_t most;      /* entries one pread may cover */
    const ds_req_t *r; /* the requests, sorted, all in sh */
    int m;
    int64_t off; /* global index of sh's first sample */
    int probe;   /* spans read so far, or -1 once hinted (ds_read_span) */
} ds_rd_t;

/* Set up rd. One pread covers at most DS_SPAN_BYTES, and never more than
 * the stored bytes of the m samples requested (the reader's scratch stays
 * within what runtime/plan.c estimates), but always one entry. */
static void ds_rd_init(ds_rd_t *rd, const dl_dataset_t *ds, const ds_shard_t *sh, int labels,
                       const ds_req_t *r, int m, int64_t off)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t sample = (size_t)in->c * in->h * in->w * (in->is_float ? sizeof(float) : 1);
    size_t cap = (size_t)m * sample < DS_SPAN_BYTES ? (size_t)m * sample : DS_SPAN_BYTES;
    *rd = (ds_rd_t){.sh = sh, .r = r, .m = m, .off = off};
    rd->name = labels ? "labels" : "images";
    rd->raw = labels ? &sh->raw_labels : &sh->raw_images;
    rd->row = labels ? sh->raw_labels.esize : sample;
    rd->most = cap / rd->row > 1 ? (int64_t)(cap / rd->row) : 1;
}

/* The requests read by one pread, starting with r[j]: entries r[j] ..
 * *last, where a gap of more than DS_GAP_BYTES or a span of more than
 * rd->most entries ends it. Returns the index of the first request not
 * covered. */
static int ds_span(const ds_rd_t *rd, int j, int64_t *last)
{
    int64_t first = rd->r[j].g - rd->off, gap = (int64_t)(DS_GAP_BYTES / rd->row);
    *last = first;
    int k = j + 1;
    for (; k < rd->m; k++) {
        int64_t l = rd->r[k].g - rd->off;
        if (l - *last - 1 > gap || l - first >= rd->most)
            break;
        *last = l;
    }
    return k;
}

/* Read entries first..last into buf. A read that ends early means the file
 * is now shorter than when it was opened: DL_EINPUT naming it, never stale
 * or zero bytes. */
static int ds_pread(uint8_t *buf, const ds_rd_t *rd, int64_t first, int64_t last, dl_err_t *err)
{
    const ds_shard_t *sh = rd->sh;
    size_t len = (size_t)(last - first + 1) * rd->row, got = 0;
    int64_t pos = rd->raw->pos + first * (int64_t)rd->row;
    int rc = 0;
    while (!rc && got < len) {
        ssize_t k = pread(sh->fd, buf + got, len - got, (off_t)(pos + (int64_t)got));
        if (k > 0) {
            got += (size_t)k;
        } else if (k < 0 && errno != EINTR) {
            rc = DL_ERR(err, DL_EIO,
                        "%s: cannot read entries %" PRId64 "..%" PRId64 " of dataset /%s: %s",
                        sh->path, first, last, rd->name, strerror(errno));
        } else if (k == 0) {
            struct stat st;
            long long now = fstat(sh->fd, &st) == 0 ? (long long)st.st_size : -1;
            rc = DL_ERR(err, DL_EINPUT,
                        "%s: entries %" PRId64 "..%" PRId64 " of dataset /%s lie at bytes "
                        "%" PRId64 "..%" PRId64 " of the file, which now has %lld bytes (%" PRId64
                        " when opened): the file was truncated or rewritten while in use",
                        sh->path, first, last, rd->name, pos, pos + (int64_t)len - 1, now,
                        sh->file_bytes);
        }
    }
    return rc;
}

/* Ask the kernel to start reading the spans of r[j..m-1] now
 * (POSIX_FADV_WILLNEED), so that they come from the disk together rather
 * than one round trip per pread. Advice: a failure changes nothing. */
static void ds_hint(const ds_rd_t *rd, int j)
{
    while (j < rd->m) {
        int64_t first = rd->r[j].g - rd->off, last;
        j = ds_span(rd, j, &last);
        (void)posix_fadvise(rd->sh->fd, (off_t)(rd->raw->pos + first * (int64_t)rd->row),
                            (off_t)((last - first + 1) * (int64_t)rd->row), POSIX_FADV_WILLNEED);
    }
}

/* Read the span of r[j..] that ends at entry last into dst, or into
 * ds->stage if dst is NULL.
 * rd->probe counts the spans read so far, or is -1: every DS_PROBE_EVERY-th
 * span is first read from the page cache alone (RWF_NOWAIT), and the first
 * such probe that misses sets rd->probe to -1 and hints every span from this
 * one to r[m-1] (ds_hint) before reading it. A batch in memory costs no
 * extra call; a batch from the disk has all its reads under way at once:
 * 1.2 to 1.5 times the samples/s of shuffled batches from an evicted
 * Fashion-MNIST file here (hints before one pread per sample, alone: 2). */
static int ds_read_span(dl_dataset_t *ds, ds_rd_t *rd, int j, int64_t last, uint8_t *dst,
                        dl_err_t *err)
{
    int64_t first = rd->r[j].g - rd->off;
    int rc =
        dst ? 0
            : ds_reserve((void **)&ds->stage, &ds->stage_cap, (size_t)rd->most * rd->row, 1, err);
    if (rc)
        return rc;
    if (!dst)
        dst = ds->stage;
#if DS_HAVE_NOWAIT
    if (rd->probe >= 0 && rd->probe++ % DS_PROBE_EVERY == 0 && ds->nowait) {
        size_t len = (size_t)(last - first + 1) * rd->row;
        struct iovec io = {dst, len};
        ssize_t k = preadv2(rd->sh->fd, &io, 1, (off_t)(rd->raw->pos + first * (int64_t)rd->row),
                            RWF_NOWAIT);
        if (k == (ssize_t)len)
            return 0;
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            ds->nowait = 0; /* not here (an old kernel, or a file system without it) */
        rd->probe = -1;
        ds_hint(rd, j);
    }
#endif
    return ds_pread(dst, rd, first, last, err);
}

/* Label at p, stored as raw says, converted to int32 as HDF5 converts it:
 * values beyond the int32 range become its nearest end. */
static int32_t ds_raw_label(const uint8_t *p, const ds_raw_t *raw)
{
    if (raw->is_signed) {
        int64_t v;
        int8_t v1;
        int16_t v2;
        int32_t v4;
        switch (raw->esize) {
        case 1: memcpy(&v1, p, 1), v = v1; break;
        case 2: memcpy(&v2, p, 2), v = v2; break;
        case 4: memcpy(&v4, p, 4), v = v4; break;
        default: memcpy(&v, p, 8); break;
        }
        return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
    }
    uint64_t u;
    uint8_t u1;
    uint16_t u2;
    uint32_t u4;
    switch (raw->esize) {
    case 1: memcpy(&u1, p, 1), u = u1; break;
    case 2: memcpy(&u2, p, 2), u = u2; break;
    case 4: memcpy(&u4, p, 4), u = u4; break;
    default: memcpy(&u, p, 8); break;
    }
    return u > INT32_MAX ? INT32_MAX : (int32_t)u;
}

/* The labels of r[0..m-1] (sorted, all in shard sh) with pread, checked and
 * put at the caller's positions. */
static int ds_raw_labels(dl_dataset_t *ds, const ds_shard_t *sh, const ds_req_t *r, int m,
                         int64_t off, int32_t *labels, dl_err_t *err)
{
    ds_rd_t rd;
    ds_rd_init(&rd, ds, sh, 1, r, m, off);
    for (int j = 0; j < m;) {
        int64_t first = r[j].g - off, last;
        int k = ds_span(&rd, j, &last);
        int rc = ds_read_span(ds, &rd, j, last, NULL, err);
        for (; !rc && j < k; j++) {
            int32_t lab = ds_raw_label(ds->stage + (size_t)(r[j].g - off - first) * rd.row, rd.raw);
            rc = ds_check_label(ds, sh, r[j].g, off, lab, err);
            labels[r[j].pos] = lab;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Whether the requests r[j..k-1], a span of entries first..last, are each
 * entry once and at consecutive places of the batch: then the span can be
 * read straight into the batch (a batch in file order is all such spans). */
static int ds_in_place(const ds_req_t *r, int j, int k, int64_t first, int64_t last)
{
    if (k - j != last - first + 1)
        return 0;
    for (int i = j + 1; i < k; i++)
        if (r[i].pos != r[j].pos + (i - j))
            return 0;
    return 1;
}

/* The images of r[0..m-1] with pread into their places in out (stored
 * samples): each span straight there where it can be (ds_in_place), else
 * through the staging buffer. */
static int ds_raw_images(dl_dataset_t *ds, const ds_shard_t *sh, const ds_req_t *r, int m,
                         int64_t off, uint8_t *out, dl_err_t *err)
{
    ds_rd_t rd;
    ds_rd_init(&rd, ds, sh, 0, r, m, off);
    for (int j = 0; j < m;) {
        int64_t first = r[j].g - off, last;
        int k = ds_span(&rd, j, &last);
        uint8_t *dst = ds_in_place(r, j, k, first, last) ? out + (size_t)r[j].pos * rd.row : NULL;
        int rc = ds_read_span(ds, &rd, j, last, dst, err);
        if (rc)
            return rc;
        for (; !dst && j < k; j++)
            memcpy(out + (size_t)r[j].pos * rd.row,
                   ds->stage + (size_t)(r[j].g - off - first) * rd.row, rd.row);
        j = k;
    }
    return 0;
}

/* ---- reading through HDF5 ----------------------------------------------------------- */

/* The images of r[0..m-1] (sorted) through HDF5: into ds->pix, one H5Dread
 * per run of consecutive local indices, then copied to their places in out
 * (stored samples). One read per run costs less than building a hyperslab
 * union of the runs: HDF5 1.10 merges each OR into the union in time growing
 * with its size, and that merging was half of a shuffled batch's read time. */
static int ds_h5_images(dl_dataset_t *ds, const ds_shard_t *sh, const ds_req_t *r, int m,
                        int64_t off, uint8_t *out, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t chw = (size_t)in->c * in->h * in->w, esize = in->is_float ? sizeof(float) : 1;
    hid_t itype = in->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    hid_t isp = H5Dget_space(sh->images), imsp = H5I_INVALID_HID;
    hsize_t ni = (hsize_t)m * chw;
    int rc = ds_reserve((void **)&ds->pix, &ds->pix_cap, (size_t)m * chw, esize, err);
    if (!rc && (isp < 0 || (imsp = H5Screate_simple(1, &ni, NULL)) < 0))
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot create the dataspaces of /images", sh->path);
    size_t uniq = 0;
    for (int j = 0; !rc && j < m;) {
        int64_t start = r[j].g, end = start; /* run [start, end] */
        while (j < m && (r[j].g == end || r[j].g == end + 1))
            end = r[j++].g;
        hsize_t s4[4] = {(hsize_t)(start - off), 0, 0, 0};
        hsize_t c4[4] = {(hsize_t)(end - start + 1), (hsize_t)in->c, (hsize_t)in->h,
                         (hsize_t)in->w};
        hsize_t m0 = 0, mn = c4[0] * chw;
        if (H5Sselect_hyperslab(isp, H5S_SELECT_SET, s4, NULL, c4, NULL) < 0 ||
            H5Sselect_hyperslab(imsp, H5S_SELECT_SET, &m0, NULL, &mn, NULL) < 0)
            rc = H5_FAIL(err, DL_ELIB, "%s: cannot select samples %" PRId64 "..%" PRId64, sh->path,
                         start - off, end - off);
        else if (H5Dread(sh->images, itype, imsp, isp, H5P_DEFAULT,
                         (char *)ds->pix + uniq * chw * esize) < 0)
            rc = H5_FAIL(err, DL_EIO, "%s: cannot read dataset /images", sh->path);
        uniq += (size_t)c4[0];
    }
    h5_close_space(&isp);
    h5_close_space(&imsp);
    int64_t row = -1, prev = -1;
    for (int j = 0; !rc && j < m; j++) {
        if (r[j].g != prev)
            row++, prev = r[j].g;
        memcpy(out + (size_t)r[j].pos * chw * esize,
               (const char *)ds->pix + (size_t)row * chw * esize, chw * esize);
    }
    return rc;
}

/* The labels of r[0..m-1] (sorted) through HDF5: one H5Dread of a point
 * selection of the distinct local indices, checked and put at the caller's
 * positions. */
static int ds_h5_labels(dl_dataset_t *ds, const ds_shard_t *sh, const ds_req_t *r, int m,
                        int64_t off, int32_t *labels, dl_err_t *err)
{
    /* The distinct local indices and their labels, in the spare entries
     * after the requests: 12 of each entry's 16 bytes, m <= n entries. */
    hsize_t *coord = ds->spare;
    int32_t *lab = (int32_t *)(coord + m);
    int rc = 0;
    size_t uniq = 0;
    for (int j = 0; j < m; j++)
        if (j == 0 || r[j].g != r[j - 1].g)
            coord[uniq++] = (hsize_t)(r[j].g - off);
    /* A type conversion buffer just big enough for these labels (at most 64
     * bits each): HDF5's default is a 1 MiB buffer, zeroed on every read. */
    hsize_t nl = (hsize_t)uniq;
    hid_t lsp = H5Dget_space(sh->labels), lmsp = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    if (lsp < 0 || (lmsp = H5Screate_simple(1, &nl, NULL)) < 0 ||
        H5Sselect_elements(lsp, H5S_SELECT_SET, uniq, coord) < 0 ||
        (dxpl = H5Pcreate(H5P_DATASET_XFER)) < 0 ||
        H5Pset_buffer(dxpl, uniq * sizeof(int64_t), NULL, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select the labels of %zu samples", sh->path, uniq);
    if (!rc && H5Dread(sh->labels, H5T_NATIVE_INT32, lmsp, lsp, dxpl, lab) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot read dataset /labels", sh->path);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    h5_close_space(&lsp);
    h5_close_space(&lmsp);
    int64_t row = -1, prev = -1;
    for (int j = 0; !rc && j < m; j++) {
        if (r[j].g != prev)
            row++, prev = r[j].g;
        rc = ds_check_label(ds, sh, r[j].g, off, lab[row], err);
        labels[r[j].pos] = lab[row];
    }
    return rc;
}

/* HDF5 reads a file cut short as zeros, without an error: a file smaller
 * than when it was opened is DL_EINPUT naming it instead. */
static int ds_check_size(const ds_shard_t *sh, dl_err_t *err)
{
    struct stat st;
    if (sh->fd < 0)
        return 0;
    if (fstat(sh->fd, &st) != 0)
        return DL_ERR(err, DL_EIO, "%s: cannot get the file's size: %s", sh->path, strerror(errno));
    if ((int64_t)st.st_size < sh->file_bytes)
        return DL_ERR(err, DL_EINPUT,
                      "%s: the file has %lld bytes but had %" PRId64 " when opened: it was "
                      "truncated or rewritten while in use",
                      sh->path, (long long)st.st_size, sh->file_bytes);
    return 0;
}

/* Read the requests r[0..m-1] (sorted, all in shard s), labels first, each
 * of /labels and /images with pread where the shard allows it, else through
 * HDF5; samples to their places in out. */
static int ds_read_shard(dl_dataset_t *ds, int s, const ds_req_t *r, int m, uint8_t *out,
                         int32_t *labels, dl_err_t *err)
{
    const ds_shard_t *sh = &ds->shards[s];
    int64_t off = ds->offsets[s];
    int raw_lab = !ds->force_hdf5 && sh->raw_labels.pos >= 0;
    int raw_img = !ds->force_hdf5 && sh->raw_images.pos >= 0;
    int h5 = !(raw_lab && raw_img); /* HDF5 reads some: check the size before and after */
    int rc = h5 ? ds_check_size(sh, err) : 0;
    if (!rc)
        rc = raw_lab ? ds_raw_labels(ds, sh, r, m, off, labels, err)
                     : ds_h5_labels(ds, sh, r, m, off, labels, err);
    if (!rc)
        rc = raw_img ? ds_raw_images(ds, sh, r, m, off, out, err)
                     : ds_h5_images(ds, sh, r, m, off, out, err);
    if (!rc && h5)
        rc = ds_check_size(sh, err);
    return rc;
}

/* ---- reading from the mappings ---------------------------------------------------- */

/* Where sample k of a mapped batch lies. */
typedef struct ds_src {
    const uint8_t *image, *label;
    const ds_raw_t *raw; /* how the label is stored */
} ds_src_t;

/* Copy n samples and labels from where src says, in order, into out and
 * labels; 1 if a label is out of range. The samples are scattered over the
 * mappings: the first bytes of the one DS_AHEAD places on are fetched into
 * the cache while this one is copied, as the hardware does not guess them.
 * (Shuffled Fashion-MNIST batches: 4 ahead about 5% faster than none, in
 * medians of 12 runs.) They are fetched with locality hint 1 (prefetcht2,
 * into the outer caches), not 3 (prefetcht0, into L1 as well): this loop
 * waits for memory (perf puts 89% of the function's time on the prefetch
 * loop with either hint), and with hint 1 it waits less: in 24 interleaved
 * pairs of runs, shuffled batches were read 11% faster directly and 8%
 * faster through the loader (medians of the per-pair ratios; bench_loader
 * --order shuffled --reps 5). */
#define DS_AHEAD 4
#define DS_AHEAD_BYTES 1024
static int ds_map_copy(const ds_src_t *src, int n, size_t sample, int num_classes, uint8_t *out,
                       int32_t *labels)
{
    int bad = 0;
    size_t ahead = sample < DS_AHEAD_BYTES ? sample : DS_AHEAD_BYTES;
    for (int k = 0; k < n; k++) {
        if (k + DS_AHEAD < n)
            for (size_t b = 0; b < ahead; b += 64)
                __builtin_prefetch(src[k + DS_AHEAD].image + b, 0, 1);
        memcpy(out + (size_t)k * sample, src[k].image, sample);
        int32_t lab = ds_raw_label(src[k].label, src[k].raw);
        bad |= lab < 0 || lab >= num_classes;
        labels[k] = lab;
    }
    return bad;
}

/* ds_map_copy, with SIGBUS (a page of a file cut under its mapping) caught:
 * 1 if it came, or if a label is out of range. Its own function, so that
 * nothing of the caller lives across sigsetjmp. */
static int ds_map_guarded(const dl_dataset_t *ds, int n, uint8_t *out, int32_t *labels)
{
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0)
        return 1;
    ds_bus_jump = &jump;
    int again = ds_map_copy(ds->srcs, n, (size_t)dl_dataset_sample_bytes(ds), ds->info.num_classes,
                            out, labels);
    ds_bus_jump = NULL;
    return again;
}

/* A shard's file is now shorter than when it was opened (or cannot be
 * looked at). */
static int ds_shrunk(const ds_shard_t *sh)
{
    struct stat st;
    return fstat(sh->fd, &st) != 0 || (int64_t)st.st_size < sh->file_bytes;
}

/* The batch idx[0..n-1] (checked) copied from the mappings into out and
 * labels, in request order: no sorting, no system call but one fstat per
 * shard read from. Returns 0 when done, an error, or 1 when the batch must
 * be read the other way, which says what is wrong: a label out of range, a
 * SIGBUS during the copy, or a file now shorter than when opened, checked
 * after the copy (a file cut during it reads as zeros from its last page). */
static int ds_map_batch(dl_dataset_t *ds, const int64_t *idx, int n, uint8_t *out, int32_t *labels,
                        dl_err_t *err)
{
    int rc = ds_reserve((void **)&ds->srcs, &ds->srcs_cap, (size_t)n, sizeof *ds->srcs, err);
    if (!rc)
        rc = ds_reserve((void **)&ds->touched, &ds->touched_cap, (size_t)n, sizeof(int), err);
    if (rc)
        return rc;
    size_t sample = (size_t)dl_dataset_sample_bytes(ds);
    uint64_t batch = ++ds->map_batch;
    int nt = 0;
    for (int k = 0; k < n; k++) {
        int s = ds->n_shards > 1 ? ds_find_shard(ds, idx[k]) : 0;
        ds_shard_t *sh = &ds->shards[s];
        size_t local = (size_t)(idx[k] - ds->offsets[s]);
        ds->srcs[k] = (ds_src_t){.image = sh->map_images + local * sample,
                                 .label = sh->map_labels + local * sh->raw_labels.esize,
                                 .raw = &sh->raw_labels};
        if (sh->stamp != batch) {
            sh->stamp = batch;
            ds->touched[nt++] = s;
        }
    }
    int again = ds_map_guarded(ds, n, out, labels);
    for (int i = 0; !again && i < nt; i++)
        again = ds_shrunk(&ds->shards[ds->touched[i]]);
    return again;
}

/* ---- reading a batch ------------------------------------------------------------ */

int dl_dataset_read_stored(dl_dataset_t *ds, const int64_t *idx, int n, void *samples,
                           int32_t *labels, dl_err_t *err)
{
    if (n < 0 || (n > 0 && (!idx || !samples || !labels)))
        return DL_ERR(err, DL_EINTERNAL, "dl_dataset_read: bad arguments (n = %d)", n);
    if (n == 0)
        return 0;
    int sorted = 1;
    for (int k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= ds->info.n)
            return DL_ERR(err, DL_EINTERNAL,
                          "dl_dataset_read: sample index %" PRId64 " (position %d) is outside "
                          "0..%" PRId64,
                          idx[k], k, ds->info.n - 1);
        sorted &= k == 0 || idx[k] >= idx[k - 1];
    }
    uint8_t *out = samples;
    int rc = ds->mapped && !ds->force_hdf5 ? ds_map_batch(ds, idx, n, out, labels, err) : 1;
    if (rc <= 0)
        return rc;
    /* The requests, then as many spare entries (sort space, label points). */
    rc = ds_reserve((void **)&ds->reqs, &ds->reqs_cap, 2 * (size_t)n, sizeof(ds_req_t), err);
    if (rc)
        return rc;
    ds->spare = ds->reqs + n;
    for (int k = 0; k < n; k++) {
        ds->reqs[k].g = idx[k];
        ds->reqs[k].pos = k;
    }
    /* Sorted requests turn into few, ascending reads per shard (a batch in
     * file order is sorted already). */
    if (!sorted)
        ds_sort_reqs(ds->reqs, ds->spare, n);
    for (int k = 0; !rc && k < n;) {
        int s = ds_find_shard(ds, ds->reqs[k].g), end = k;
        while (end < n && ds->reqs[end].g < ds->offsets[s + 1])
            end++;
        rc = ds_read_shard(ds, s, ds->reqs + k, end - k, out, labels, err);
        k = end;
    }
    return rc;
}

void dl_dataset_normalise(const dl_dataset_t *ds, const void *samples, int n, float *x)
{
    size_t chw = (size_t)ds->info.c * ds->info.h * ds->info.w;
    size_t sample = (size_t)dl_dataset_sample_bytes(ds);
    for (int k = 0; k < n; k++)
        ds_norm_sample(ds, (const uint8_t *)samples + (size_t)k * sample, x + (size_t)k * chw);
}

int dl_dataset_read(dl_dataset_t *ds, const int64_t *idx, int n, float *images, int32_t *labels,
                    dl_err_t *err)
{
    if (n <= 0 || ds->info.is_float) { /* float32 samples are as large as their normalised values */
        int rc = dl_dataset_read_stored(ds, idx, n, images, labels, err);
        if (!rc)
            dl_dataset_normalise(ds, images, n, images);
        return rc;
    }
    int rc = ds_reserve((void **)&ds->stored, &ds->stored_cap,
                        (size_t)n * (size_t)dl_dataset_sample_bytes(ds), 1, err);
    if (!rc)
        rc = dl_dataset_read_stored(ds, idx, n, ds->stored, labels, err);
    if (!rc)
        dl_dataset_normalise(ds, ds->stored, n, images);
    return rc;
}

void dl_dataset_force_hdf5(dl_dataset_t *ds, int on)
{
    ds->force_hdf5 = on != 0;
}

int dl_dataset_shard_pread(const dl_dataset_t *ds, int i)
{
    const ds_shard_t *sh = &ds->shards[i];
    return (sh->raw_images.pos >= 0 ? DL_DATASET_PREAD_IMAGES : 0) |
           (sh->raw_labels.pos >= 0 ? DL_DATASET_PREAD_LABELS : 0);
}

void dl_dataset_thread_init(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---- verification ---------------------------------------------------------- */

/* Read rows [i0, i0 + k) of a dataset of the given rank (1 or 4) in memory
 * type mtype, into buf. */
static int ds_read_rows(hid_t d, int rank, int64_t i0, int64_t k, hid_t mtype, void *buf,
                        const char *path, const char *name, dl_err_t *err)
{
    hid_t fsp = H5Dget_space(d);
    hsize_t start[4] = {(hsize_t)i0, 0, 0, 0}, count[4] = {(hsize_t)k, 1, 1, 1};
    if (fsp >= 0 && rank == 4)
        H5Sget_simple_extent_dims(fsp, count, NULL), count[0] = (hsize_t)k;
    hsize_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= count[i];
    hid_t msp = H5Screate_simple(1, &n, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select rows of /%s", path, name);
    else if (H5Dread(d, mtype, msp, fsp, H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EINPUT,
                     "%s: samples %lld..%lld of dataset /%s cannot be read; the file is damaged",
                     path, (long long)i0, (long long)(i0 + k - 1), name);
    if (fsp >= 0)
        H5Sclose(fsp);
    if (msp >= 0)
        H5Sclose(msp);
    return rc;
}

/* How /labels is read for verification: in the native type matching the
 * stored one, so that its bytes hash to the stored checksum. */
typedef struct ds_ltype {
    hid_t mtype; /* native memory type; close with H5Tclose */
    size_t size; /* bytes per label: 1, 2, 4 or 8 */
    int is_signed;
} ds_ltype_t;

static int ds_label_type(const ds_shard_t *sh, ds_ltype_t *lt, dl_err_t *err)
{
    hid_t ft = H5Dget_type(sh->labels);
    lt->mtype = ft >= 0 ? H5Tget_native_type(ft, H5T_DIR_ASCEND) : H5I_INVALID_HID;
    int rc =
        lt->mtype < 0 ? H5_FAIL(err, DL_ELIB, "%s: cannot inspect dataset /labels", sh->path) : 0;
    if (ft >= 0)
        H5Tclose(ft);
    if (rc)
        return rc;
    lt->size = H5Tget_size(lt->mtype);
    lt->is_signed = H5Tget_sign(lt->mtype) == H5T_SGN_2;
    if (lt->size != 1 && lt->size != 2 && lt->size != 4 && lt->size != 8) {
        H5Tclose(lt->mtype);
        return DL_ERR(err, DL_EINPUT,
                      "%s: dataset /labels has %zu-byte integers; accepted: 1, 2, 4 or 8 bytes",
                      sh->path, lt->size);
    }
    return 0;
}

/* Label i of buf, whose labels are of type lt. Unsigned 64-bit values beyond
 * INT64_MAX come out negative: out of range either way. */
static int64_t ds_label_at(const void *buf, int64_t i, const ds_ltype_t *lt)
{
    switch (lt->size) {
    case 1: return lt->is_signed ? ((const int8_t *)buf)[i] : ((const uint8_t *)buf)[i];
    case 2: return lt->is_signed ? ((const int16_t *)buf)[i] : ((const uint16_t *)buf)[i];
    case 4: return lt->is_signed ? (int64_t)((const int32_t *)buf)[i] : ((const uint32_t *)buf)[i];
    default: return ((const int64_t *)buf)[i];
    }
}

/* Every float value finite (the converter never writes others). */
static int ds_check_finite(const ds_shard_t *sh, const float *v, int64_t i0, int64_t k, size_t chw,
                           dl_err_t *err)
{
    for (size_t j = 0; j < (size_t)k * chw; j++)
        if (!isfinite(v[j]))
            return DL_ERR(err, DL_EINPUT,
                          "%s: dataset /images sample %lld (value %zu of it) is %g; accepted: "
                          "finite numbers",
                          sh->path, (long long)(i0 + (int64_t)(j / chw)), j % chw, (double)v[j]);
    return 0;
}

static int ds_check_label_range(const ds_shard_t *sh, const void *lab, int64_t i0, int64_t k,
                                const ds_ltype_t *lt, int num_classes, dl_err_t *err)
{
    for (int64_t j = 0; j < k; j++) {
        int64_t v = ds_label_at(lab, j, lt);
        if (v < 0 || v >= num_classes)
            return DL_ERR(err, DL_EINPUT,
                          "%s: dataset /labels entry %lld is %lld; accepted labels are 0..%d",
                          sh->path, (long long)(i0 + j), (long long)v, num_classes - 1);
    }
    return 0;
}

/* Scratch for verifying: slab samples of images and of labels. */
typedef struct ds_vbuf {
    void *img, *lab;
    int64_t slab;
} ds_vbuf_t;

/* Read all of one shard, check values and labels, compare checksums. */
static int ds_verify_shard(const dl_dataset_t *ds, const ds_shard_t *sh, ds_vbuf_t *b, FILE *report,
                           dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t chw = (size_t)in->c * in->h * in->w, elem = in->is_float ? 4 : 1;
    hid_t itype = in->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    uint64_t si = 0, sl = 0, di = DL_FNV_INIT, dlab = DL_FNV_INIT;
    int hi = 0, hl = 0;
    ds_ltype_t lt;
    int rc = ds_label_type(sh, &lt, err);
    if (rc)
        return rc;
    rc = dl_h5_stored_digest(sh->images, sh->path, "images", &si, &hi, err);
    if (!rc)
        rc = dl_h5_stored_digest(sh->labels, sh->path, "labels", &sl, &hl, err);
    for (int64_t i0 = 0; !rc && i0 < sh->n; i0 += b->slab) {
        int64_t k = sh->n - i0 < b->slab ? sh->n - i0 : b->slab;
        rc = ds_read_rows(sh->images, 4, i0, k, itype, b->img, sh->path, "images", err);
        if (!rc && in->is_float)
            rc = ds_check_finite(sh, b->img, i0, k, chw, err);
        if (!rc)
            di = dl_fnv1a64_le(di, b->img, (size_t)k * chw, elem);
        if (!rc)
            rc = ds_read_rows(sh->labels, 1, i0, k, lt.mtype, b->lab, sh->path, "labels", err);
        if (!rc)
            rc = ds_check_label_range(sh, b->lab, i0, k, &lt, in->num_classes, err);
        if (!rc)
            dlab = dl_fnv1a64_le(dlab, b->lab, (size_t)k, lt.size);
    }
    H5Tclose(lt.mtype);
    if (!rc)
        rc = dl_h5_check_digest(sh->path, "images", si, hi, di, err);
    if (!rc)
        rc = dl_h5_check_digest(sh->path, "labels", sl, hl, dlab, err);
    if (!rc && report)
        fprintf(report, "%s: %lld samples read, %slabels in range, %s\n", sh->path,
                (long long)sh->n, in->is_float ? "values finite, " : "",
                hi && hl ? "checksums match"
                         : "no stored checksums (written by an older dltrain-data)");
    return rc;
}

int dl_dataset_verify(dl_dataset_t *ds, FILE *report, dl_err_t *err)
{
    const dl_dataset_info_t *in = &ds->info;
    size_t bytes = (size_t)in->c * in->h * in->w * (in->is_float ? 4 : 1);
    ds_vbuf_t b = {.slab = bytes >= (8u << 20) ? 1 : (int64_t)((8u << 20) / bytes)};
    b.img = dl_calloc((size_t)b.slab, bytes, err);
    b.lab = b.img ? dl_calloc((size_t)b.slab, 8, err) : NULL;
    int rc = b.lab ? 0 : DL_ENOMEM;
    for (int s = 0; !rc && s < ds->n_shards; s++)
        rc = ds_verify_shard(ds, &ds->shards[s], &b, report, err);
    free(b.img);
    free(b.lab);
    return rc;
}
