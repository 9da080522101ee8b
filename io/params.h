/* Parameter files (params.bin) and atomic file writes.
 *
 * params.bin: the 8 bytes "DLTPARAM", uint32 version (2), uint32 0, int64
 * number of parameters, int64 number of state values, then the parameters
 * and the state (batch-norm running statistics) as little-endian float32,
 * layer after layer. Version 1 files (no state count, no state) are read too. */
#ifndef DL_PARAMS_H
#define DL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/error.h"

/* Write bytes to path through path.tmp, fsync and rename, so readers see the
 * old file or the new one, never a partial one. */
int dl_write_file_atomic(const char *path, const void *data, size_t len, dl_err_t *err);

int dl_params_write(const char *path, const float *params, int64_t n_params, const float *state,
                    int64_t n_state, dl_err_t *err);

/* Read a params.bin whose counts must equal n_params and n_state (a version 1
 * file has no state: state is left as it is). Mismatches, truncation and a
 * wrong magic number are DL_EINPUT naming the file. */
int dl_params_read(const char *path, float *params, int64_t n_params, float *state, int64_t n_state,
                   dl_err_t *err);

#endif
