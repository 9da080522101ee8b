/* Background batch loading: one I/O thread per rank makes every dataset
 * read while training runs, and reads up to `depth` batches ahead of the
 * step that needs them. Requests are served in the order they were made. The
 * datasets are opened before the loader starts and closed after it stops.
 * Checkpoints are written by the training thread while this thread reads:
 * that relies on Debian's thread-safe libhdf5, which serialises calls
 * (reads of contiguous datasets use pread and make no HDF5 call). */
#ifndef DL_LOADER_H
#define DL_LOADER_H

#include <stdint.h>

#include "dataset.h"

typedef struct dl_loader dl_loader_t; /* opaque */

/* Start the I/O thread. Batches have at most max_batch samples of in_size
 * floats; depth (>= 1) requests may be outstanding at once. */
int dl_loader_start(dl_loader_t **out, int depth, int max_batch, int64_t in_size, dl_err_t *err);

/* Ask for the samples idx[0..n-1] (copied) of ds. Returns at once, unless
 * depth requests are already outstanding: then it waits for the oldest to be
 * taken with dl_loader_next first (the caller must not do that). */
int dl_loader_request(dl_loader_t *l, dl_dataset_t *ds, const int64_t *idx, int n, dl_err_t *err);

/* Wait for the oldest outstanding request. *x (n x in_size normalised
 * floats, writable) and *y stay valid until the next call of
 * dl_loader_next; *wait_s (if not NULL) gets the time spent waiting. A read
 * error of the request is returned here, with its message. */
int dl_loader_next(dl_loader_t *l, float **x, int32_t **y, int *n, double *wait_s, dl_err_t *err);

/* Make dl_loader_next give up with DL_EABORT after waiting timeout_s
 * seconds for a batch (0, the default: wait without a limit). The I/O
 * thread is then stuck in a read: the caller must end the process rather
 * than call dl_loader_stop, which would wait for that read. */
void dl_loader_set_timeout(dl_loader_t *l, double timeout_s);

/* Stop the thread (after it finishes the read under way) and free
 * everything; requests not yet taken are dropped. l may be NULL. */
void dl_loader_stop(dl_loader_t *l);

#endif
