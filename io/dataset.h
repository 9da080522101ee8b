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
 * files with a type error, so the version number stays 1. Samples are read
 * in their stored type; both types are normalised the same way, (x -
 * mean[c]) / std[c], by dl_dataset_normalise, which the consumer of a batch
 * calls (a GPU would normalise on the device, after copying a quarter of
 * the bytes of float32).
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

/* Bytes of one sample as stored: c*h*w, times 4 for float32. */
int64_t dl_dataset_sample_bytes(const dl_dataset_t *ds);

/* Read n samples with global indices idx[0..n-1] (any order, may repeat) as
 * stored: samples gets n x dl_dataset_sample_bytes(ds) bytes, sample k at
 * k * that (uint8 values, or native float32), for dl_dataset_normalise or a
 * device to normalise; labels: n int32. Reads only the requested samples
 * from the files, never whole files. A dataset mapped with dl_dataset_map
 * (every shard stored contiguous, unfiltered, in native byte order, as
 * dltrain-data writes it) copies each sample from the mapping, without a
 * system call per sample; a batch that finds anything amiss there (a label
 * out of range, a file now shorter than when it was mapped, even one cut
 * during the copy) is read again the following way, which says what is
 * wrong. Otherwise such datasets are read with pread(2) at their file
 * offsets, nearby samples in one read, and any other storage (chunked,
 * compressed, ...) through HDF5, one hyperslab read per run of consecutive
 * samples. A label outside 0..num_classes-1 is DL_EINPUT naming the file and
 * index; so is a file found shorter than when it was opened (truncated or
 * rewritten while in use). */
int dl_dataset_read_stored(dl_dataset_t *ds, const int64_t *idx, int n, void *samples,
                           int32_t *labels, dl_err_t *err);

/* Normalise n samples as dl_dataset_read_stored gives them into x: n x
 * (c*h*w) floats, (value - mean[c]) / std[c] computed in double and rounded
 * once (uint8 values through a 256-entry table per channel, which holds
 * exactly those values). For float32 data x may be samples itself. Reads
 * only the statistics, fixed once ds is open (and dl_dataset_normalise_as
 * has run): safe while another thread reads samples from ds. */
void dl_dataset_normalise(const dl_dataset_t *ds, const void *samples, int n, float *x);

/* dl_dataset_read_stored, then dl_dataset_normalise into images: n x
 * (c*h*w) floats. */
int dl_dataset_read(dl_dataset_t *ds, const int64_t *idx, int n, float *images, int32_t *labels,
                    dl_err_t *err);

/* Map the files of a dataset read with pread into memory, read-only, if
 * every shard's /images and /labels are stored that way and the mappings
 * together take at most limit bytes; otherwise (and with limit 0) unmap
 * them and read with pread. Returns the bytes mapped. Pages of a mapping
 * count in the process's resident memory once read (they are the page
 * cache's, shared and clean), so the limit is memory: dl_dataset_open maps
 * up to DL_DATASET_MAP_DEFAULT (at most a quarter of physical memory), and
 * runtime/plan.c maps within [data] memory_budget_mb. A file truncated under
 * a mapping raises SIGBUS when a lost page is read: the first call that
 * maps installs a handler that turns it, during a copy from a mapping, into
 * a re-read with pread (and passes any other SIGBUS to the handler it
 * replaced, or to the default action). Not while another thread reads
 * from ds. */
#define DL_DATASET_MAP_DEFAULT ((int64_t)1 << 30)
int64_t dl_dataset_map(dl_dataset_t *ds, int64_t limit);
/* Bytes mapped by the last dl_dataset_map (or at open). */
int64_t dl_dataset_mapped_bytes(const dl_dataset_t *ds);

/* Read every shard through HDF5 (on != 0) or with a mapping or pread where
 * possible (0, the default): for tests and benchmarks, which compare them. */
void dl_dataset_force_hdf5(dl_dataset_t *ds, int on);

/* Which datasets of shard i can be read with pread (unless forced to HDF5);
 * those are the ones dl_dataset_map maps. */
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
 * does this for the thread that opens. A dl_dataset_t is read by one thread
 * at a time (it keeps scratch buffers); dl_dataset_normalise and
 * dl_dataset_info may be called from another. */
void dl_dataset_thread_init(void);

#endif
