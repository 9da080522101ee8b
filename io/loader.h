/* Background batch loading: one I/O thread per rank makes every dataset
 * read while training runs, and reads up to `depth` batches ahead of the
 * step that needs them, in the datasets' stored types (uint8 images are a
 * quarter of their normalised floats: the consumer normalises, where it
 * uses them). Requests are served in the order they were made. The
 * datasets are opened before the loader starts and closed after it stops.
 * Checkpoints are written by the training thread while this thread reads:
 * that relies on Debian's thread-safe libhdf5, which serialises calls
 * (reads of contiguous datasets, from mappings or with pread, make no HDF5
 * call). */
#ifndef DL_LOADER_H
#define DL_LOADER_H

#include <stdint.h>

#include "dataset.h"

typedef struct dl_loader dl_loader_t; /* opaque */

/* Start the I/O thread. Batches have at most max_batch samples of at most
 * sample_bytes bytes as stored (dl_dataset_sample_bytes of every dataset
 * it will read); depth (>= 1) requests may be outstanding at once. */
int dl_loader_start(dl_loader_t **out, int depth, int max_batch, int64_t sample_bytes,
                    dl_err_t *err);

/* Ask for the samples idx[0..n-1] (copied) of ds. Returns at once; with
 * depth requests already outstanding it is DL_EINTERNAL (waiting would wait
 * forever: only the caller takes batches). */
int dl_loader_request(dl_loader_t *l, dl_dataset_t *ds, const int64_t *idx, int n, dl_err_t *err);

/* A batch as the I/O thread read it: samples in ds's stored type, as
 * dl_dataset_read_stored gives them, for the consumer to normalise with
 * dl_dataset_normalise (on the CPU, or on a device after copying them). */
typedef struct dl_loader_batch {
    const dl_dataset_t *ds; /* the dataset of the request */
    const void *x;          /* n x dl_dataset_sample_bytes(ds) bytes */
    int32_t *y;             /* n labels */
    int n;
} dl_loader_batch_t;

/* Wait for the oldest outstanding request. *b stays valid until the next
 * call of dl_loader_take or dl_loader_next; *wait_s (if not NULL) gets the
 * time spent waiting. A read error of the request is returned here, with
 * its message. */
int dl_loader_take(dl_loader_t *l, dl_loader_batch_t *b, double *wait_s, dl_err_t *err);

/* dl_loader_take, then dl_dataset_normalise on the calling thread into a
 * buffer the loader keeps: *x (n x c*h*w floats, writable) and *y stay
 * valid until the next call of dl_loader_take or dl_loader_next. */
int dl_loader_next(dl_loader_t *l, float **x, int32_t **y, int *n, double *wait_s, dl_err_t *err);

/* Make dl_loader_take give up with DL_EABORT after waiting timeout_s
 * seconds for a batch (0, the default: wait without a limit). The I/O
 * thread is then stuck in a read: the caller must end the process rather
 * than call dl_loader_stop, which would wait for that read. */
void dl_loader_set_timeout(dl_loader_t *l, double timeout_s);

/* Stop the thread (after it finishes the read under way) and free
 * everything; requests not yet taken are dropped. l may be NULL. */
void dl_loader_stop(dl_loader_t *l);

#endif
