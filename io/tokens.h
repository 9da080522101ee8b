/* dltrain token datasets for language models, stored in HDF5.
 *
 * Schema (version 1), one or more files ("shards"), each holding:
 *   /tokens  uint16 or uint32, rank 1 (one token id after another), chunked
 *            in 1 MiB chunks for sequential reads; attribute fnv1a64 (uint64)
 *            the FNV-1a checksum of its bytes as stored (little-endian)
 *   root attributes: dltrain_schema = "tokens" (string),
 *                    schema_version = 1 (int), vocab_size (int, every id is
 *                    below it)
 * Every shard of one dataset has the same type and vocab_size; the shards in
 * order, concatenated, are the token stream.
 *
 * dltrain does not train language models yet: dl_dataset_open (training)
 * rejects these files; dltrain-data makes, describes and verifies them. */
#ifndef DL_TOKENS_H
#define DL_TOKENS_H

#include <stdint.h>
#include <stdio.h>

#include "../runtime/error.h"

typedef struct dl_tokens_opts {
    int ids;    /* 0: every byte of the input is a token (vocab_size 256);
                   1: the input is text of whitespace-separated decimal token ids */
    int bits;   /* stored type: 16 (uint16) or 32 (uint32) */
    int shards; /* output files, named as in convert.h */
} dl_tokens_opts_t;

typedef struct dl_tokens_info {
    int64_t n;          /* tokens over all shards */
    int64_t vocab_size; /* every id is below it */
    int bits;           /* 16 or 32 */
    int n_files;
} dl_tokens_info_t;

/* Convert in_path to a token dataset at out_path (shards, naming, .tmp files
 * and renaming as in convert.h). The input is read twice in --ids mode (to
 * size the shards and vocab_size first), never held in memory. A bad word
 * ("IN:LINE: ...") or an id too large for the type is DL_EINPUT. */
int dl_tokens_convert(const char *in_path, const char *out_path, const dl_tokens_opts_t *o,
                      dl_err_t *err);

/* *is_tokens = 1 if the first file of spec is a token dataset. Files that
 * are missing or unreadable give 0 (the image-dataset reader then names the
 * problem); never fails otherwise. */
int dl_tokens_probe(const char *spec, int *is_tokens, dl_err_t *err);

/* Open and check every shard of spec, fill info, and write one line per
 * shard ("  PATH: N tokens") to report (may be NULL). */
int dl_tokens_info(const char *spec, dl_tokens_info_t *info, FILE *report, dl_err_t *err);

/* Read every token of every shard, check every id is below vocab_size and
 * compare the stored checksum; one line per shard to report (may be NULL).
 * Problems are DL_EINPUT naming the file and dataset. */
int dl_tokens_verify(const char *spec, FILE *report, dl_err_t *err);

#endif
