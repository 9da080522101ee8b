/* Converters that write dltrain image-classification datasets (the schema of
 * dataset.h) from other formats: IDX (idx.c), NumPy .npy (npy.c) and CSV
 * (csv.c). All write through io/writer.c, which computes the per-channel
 * mean and std and the checksums, and splits the samples into shards.
 *
 * With shards = 1 the output is out_path; with more, out_path without its
 * ".h5" followed by "-KKKKK-of-NNNNN.h5", shard k holding samples
 * [k*N/shards, (k+1)*N/shards). Files are written under a ".tmp" suffix and
 * renamed once all are complete, so a failed conversion leaves no file.
 * Bad input is DL_EINPUT with a message naming the input file (and for CSV
 * the line and column) and what is accepted. */
#ifndef DL_CONVERT_H
#define DL_CONVERT_H

#include <stddef.h>

#include "../runtime/error.h"

/* IDX image file and IDX label file (gzip-compressed or plain): uint8 images
 * N x H x W stored as N x 1 x H x W, uint8 labels. */
int dl_idx_to_h5(const char *images_path, const char *labels_path, const char *out_path, int shards,
                 dl_err_t *err);

/* NumPy .npy files (format versions 1, 2 and 3, little-endian, C order).
 * Features: uint8, float32 or float64 of shape N x C x H x W, N x H x W
 * (C = 1) or N x D (stored as C = 1, H = 1, W = D); uint8 is stored as
 * uint8, floats as float32. Labels: any integer type, shape (N,), values
 * >= 0; num_classes = largest label + 1. */
int dl_npy_to_h5(const char *features_path, const char *labels_path, const char *out_path,
                 int shards, dl_err_t *err);

/* CSV header handling: detect (a first line with a non-numeric field is a
 * header), or force one way. */
typedef enum { DL_CSV_HEADER_AUTO, DL_CSV_HEADER_YES, DL_CSV_HEADER_NO } dl_csv_header_t;

typedef struct dl_csv_opts {
    const char *label_column; /* a header name or a 0-based index (negative: from the end);
                                 NULL: the last column */
    dl_csv_header_t header;
    int shards;
} dl_csv_opts_t;

/* CSV of numeric feature columns and one integer label column (>= 0).
 * Features are stored as float32, N x 1 x 1 x D. */
int dl_csv_to_h5(const char *csv_path, const char *out_path, const dl_csv_opts_t *opts,
                 dl_err_t *err);

/* Shard k's file name: out itself (then suffix) for one shard, else out
 * without its ".h5", then "-KKKKK-of-NNNNN.h5" and suffix. Caller frees. */
char *dl_shard_name(const char *out, int k, int shards, const char *suffix, dl_err_t *err);

/* A dataset spec naming every shard written for out: out itself for one
 * shard, else the glob "OUT-*-of-NNNNN.h5". -1 if buf is too small. */
int dl_shard_spec(const char *out, int shards, char *buf, size_t size);

#endif
