/* Writer of schema-1 image-classification datasets (see dataset.h), shared by
 * the IDX, .npy and CSV converters: N samples into K balanced shards, each
 * with its own per-channel mean and std, the whole dataset's num_classes and
 * fnv1a64 checksums. Samples are pulled from the converter in slabs, so
 * memory stays bounded whatever N. Internal to io/. */
#ifndef DL_WRITER_H
#define DL_WRITER_H

#include <stdint.h>

#include "../runtime/error.h"

/* Fill buf with samples [i0, i0 + k) in order, c*h*w values each (uint8_t or
 * float, as dl_samples_t.is_float says). Called with i0 ascending and
 * contiguous from 0, so a converter can read its input sequentially. */
typedef int (*dl_samples_read_fn)(void *ctx, void *buf, int64_t i0, int64_t k, dl_err_t *err);

typedef struct dl_samples {
    const char *source;    /* input file, named in messages about the values */
    int64_t n;             /* samples */
    int c, h, w;           /* values per sample: c*h*w, layout C x H x W */
    int is_float;          /* 0: uint8 values, stored as uint8; 1: float, stored as float32 */
    const int64_t *labels; /* n labels, 0 .. num_classes-1 */
    int64_t num_classes;
    dl_samples_read_fn read;
    void *ctx;
} dl_samples_t;

/* Write s to out_path in `shards` files (naming and atomicity as in
 * convert.h). Labels are stored as uint8 when num_classes <= 256, else as
 * int32. Checks the shape limits the reader accepts, that float values are
 * finite and that no channel is constant (its std would be 0), each a
 * DL_EINPUT naming s->source. */
int dl_write_samples(const char *out_path, int shards, const dl_samples_t *s, dl_err_t *err);

#endif
