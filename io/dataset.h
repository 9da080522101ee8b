/* dltrain image-classification datasets stored in HDF5.
 *
 * Schema (version 1), one or more files ("shards"), each holding:
 *   /images  uint8 or float32, rank 4, N x C x H x W, contiguous layout
 *   /labels  any integer type, rank 1, N (values 0 .. num_classes-1)
 *   root attributes: dltrain_schema = "image-classification" (string),
 *                    schema_version = 1 (int), num_classes (int)
 *   /images attributes: mean, std (float64, length C, in the units of the
 *                       stored values: pixel units 0..255 for uint8)
 *   optional fnv1a64 (uint64) on /images and /labels: FNV-1a checksum of the
 *                    dataset's bytes as stored (little-endian), for verify
 * Every shard of one dataset must agree on the /images type, C, H, W and
 * num_classes. float32 /images (tabular features, made by `dltrain-data npy`
 * or `csv`; N x D features are stored as C = 1, H = 1, W = D) are an
 * additive extension of version 1: readers that predate it reject such
 * files with a type error, so the version number stays 1. Both types are
 * normalised the same way, (x - mean[c]) / std[c].
 *
 * Token datasets (dltrain_schema = "tokens", see tokens.h) share the file
 * conventions but are not image-classification datasets: dl_dataset_open
 * rejects them with a message saying so.
 *
 * The reader knows nothing about MPI: the caller passes the global sample
 * indices it wants, and reads only those samples.
 * Converters that write this schema are declared in convert.h. */
#ifndef DL_DATASET_H
#define DL_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "../runtime/error.h"

typedef struct dl_dataset dl_dataset_t; /* opaque */

typedef struct dl_dataset_info {
    int64_t n;   /* samples over all shards */
    int c, h, w; /* channels, height, width */
    int num_classes;
    int n_files;     /* number of shard files */
    int is_float;    /* 1: /images is float32; 0: uint8 */
    double mean[16]; /* per channel, stored units (only c entries used) */
    double std[16];
} dl_dataset_info_t;

/* Open a dataset. spec is one path, a comma-separated list of paths, or a glob
 * pattern (e.g. "data/train-*.h5"); shards are ordered as listed, globs sorted.
 * Validates the schema of every shard; on mismatch returns DL_EINPUT with a
 * message naming the file and the dataset/attribute and what is accepted.
 * A missing file is DL_EINPUT too. Files are opened read-only with HDF5 file
 * locking disabled. */
int dl_dataset_open(const char *spec, dl_dataset_t **out, dl_err_t *err);

const dl_dataset_info_t *dl_dataset_info(const dl_dataset_t *ds);
/* Normalise ds's samples with like's mean and std (same channel count)
 * instead of its own: test data with the training data's statistics, as a
 * model sees inputs in use. */
void dl_dataset_normalise_as(dl_dataset_t *ds, const dl_dataset_info_t *like);
/* Samples in shard i (0 <= i < n_files), in the order of the spec. */
int64_t dl_dataset_shard_size(const dl_dataset_t *ds, int i);

/* Read n samples with global indices idx[0..n-1] (any order, may repeat).
 * images: n x (c*h*w) floats, normalised as (value - mean[c]) / std[c]
 * (uint8 values in float arithmetic, as (value - mean[c]) * (1 / std[c]));
 * labels: n int32. Reads only the requested samples from the files, never
 * whole files: /images and /labels stored contiguous, unfiltered and in
 * native byte order (as dltrain-data writes them) with pread(2) at their
 * file offsets, nearby samples in one read; any other storage (chunked,
 * compressed, ...) through HDF5, one hyperslab read per run of consecutive
 * samples. A label outside 0..num_classes-1 is DL_EINPUT naming the file and
 * index; so is a file found shorter than when it was opened (truncated or
 * rewritten while in use). */
int dl_dataset_read(dl_dataset_t *ds, const int64_t *idx, int n, float *images, int32_t *labels,
                    dl_err_t *err);

/* Read every shard through HDF5 (on != 0) or with pread where possible (0,
 * the default): for tests and benchmarks, which compare the two. */
void dl_dataset_force_hdf5(dl_dataset_t *ds, int on);

/* Which datasets of shard i are read with pread (unless forced to HDF5). */
enum { DL_DATASET_PREAD_IMAGES = 1, DL_DATASET_PREAD_LABELS = 2 };
int dl_dataset_shard_pread(const dl_dataset_t *ds, int i);

void dl_dataset_close(dl_dataset_t *ds);

/* Read every sample of every shard, check every label (and that float
 * values are finite), and compare the images' and labels' FNV-1a checksums
 * with the ones dltrain-data stored (attribute fnv1a64). Writes one line per
 * shard to report (may be NULL). Unreadable data, a label out of range, a
 * value that is not finite and a checksum mismatch are DL_EINPUT naming the
 * file and dataset. */
int dl_dataset_verify(dl_dataset_t *ds, FILE *report, dl_err_t *err);

/* Prepare the calling thread for dataset reads: HDF5 keeps its error
 * printing per thread, and dltrain reports errors itself. dl_dataset_open
 * does this for the thread that opens. A dl_dataset_t is used by one thread
 * at a time (it keeps scratch buffers). */
void dl_dataset_thread_init(void);

#endif
