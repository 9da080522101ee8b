/* HDF5 helpers shared by io/'s readers (dataset.c, tokens.c) and writers
 * (writer.c, tokens.c): dataset specs, opening files read-only, attributes,
 * checksums, and writing shards atomically. Internal to io/; every message
 * names the file and the dataset or attribute concerned. */
#ifndef DL_H5UTIL_H
#define DL_H5UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "../runtime/error.h"

/* Human-readable datatype for messages, e.g. "64-bit float". */
void dl_h5_type_name(hid_t t, char *buf, size_t size);

/* FNV-1a over count elements of elem bytes each, hashed as little-endian
 * bytes whatever the host, so a stored fnv1a64 attribute is the checksum of
 * the bytes in the file (io/ writes little-endian types only). */
uint64_t dl_fnv1a64_le(uint64_t h, const void *data, size_t count, size_t elem);

/* ---- reading --------------------------------------------------------------- */

/* The files of a dataset spec: one path, a comma-separated list, or glob
 * patterns (expanded in sorted order). */
typedef struct dl_paths {
    char **v;
    int n, cap;
} dl_paths_t;

int dl_paths_expand(dl_paths_t *p, const char *spec, dl_err_t *err);
void dl_paths_free(dl_paths_t *p);

/* Open an existing HDF5 file read-only, without file locking and with a
 * small sieve buffer. A missing, empty, non-HDF5 or damaged (for example
 * truncated) file is DL_EINPUT naming the file. */
int dl_h5_open_read(const char *path, hid_t *file, dl_err_t *err);

/* Open, check and read an attribute in one call. obj names the object in
 * messages ("root", "/images"); want says what is accepted. kind: 's' a
 * string (into buf of n bytes), 'i' one int64, 'd' n doubles. */
int dl_h5_attr_get(hid_t loc, const char *path, const char *obj, const char *name, char kind,
                   void *buf, int n, const char *want, dl_err_t *err);

/* The schema name of an open file (root attribute dltrain_schema). */
int dl_h5_schema_name(hid_t file, const char *path, char *buf, size_t size, dl_err_t *err);

/* The checksum stored on dataset d (attribute fnv1a64); *have = 0 if none. */
int dl_h5_stored_digest(hid_t d, const char *path, const char *name, uint64_t *v, int *have,
                        dl_err_t *err);

/* DL_EINPUT naming path and dataset /name if have and stored != computed. */
int dl_h5_check_digest(const char *path, const char *name, uint64_t stored, int have,
                       uint64_t computed, dl_err_t *err);

/* ---- writing --------------------------------------------------------------- */

/* Write attribute name of loc: n values (0: a scalar) of file type ftype
 * from val in memory type mtype. out names the file in messages. */
int dl_h5_attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
                     const void *val, const char *out, dl_err_t *err);

/* Root attributes every dltrain file carries: dltrain_schema (fixed-length
 * ASCII string) and schema_version = 1. */
int dl_h5_root_attrs(hid_t file, const char *schema, const char *out, dl_err_t *err);

/* Write the whole content of one shard: elements [lo, hi) of the n being
 * converted, in order (the shards are written first to last), into file. */
typedef int (*dl_h5_shard_fn)(void *ctx, hid_t file, const char *tmp, int64_t lo, int64_t hi,
                              dl_err_t *err);

/* Split n elements into `shards` balanced contiguous pieces (shard k holds
 * [k*n/shards, (k+1)*n/shards)), named as dl_shard_name says, and call fn
 * for each on a new file under a ".tmp" name. Only when every shard is
 * complete are they all renamed to their final names; on any failure every
 * temporary file is removed, so a failed conversion leaves nothing behind. */
int dl_h5_write_shards(const char *out, int shards, int64_t n, dl_h5_shard_fn fn, void *ctx,
                       dl_err_t *err);

#endif
