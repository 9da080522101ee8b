/* Augmentation; see augment.h. */
#include <string.h>

#include "../models/rng.h"
#include "augment.h"

/* Copy the crop at (dy, dx) of the padded plane back into the sample. */
static void crop_plane(float *plane, int h, int w, int pad, float fill, int dy, int dx,
                       float *scratch)
{
    int pw = w + 2 * pad, ph = h + 2 * pad;
    for (int i = 0; i < ph * pw; i++)
        scratch[i] = fill;
    for (int r = 0; r < h; r++)
        memcpy(scratch + (int64_t)(r + pad) * pw + pad, plane + (int64_t)r * w,
               (size_t)w * sizeof(float));
    for (int r = 0; r < h; r++)
        memcpy(plane + (int64_t)r * w, scratch + (int64_t)(r + dy) * pw + dx,
               (size_t)w * sizeof(float));
}

static void flip_plane(float *plane, int h, int w)
{
    for (int r = 0; r < h; r++) {
        float *row = plane + (int64_t)r * w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

void dl_augment_batch(const dl_augment_t *a, float *x, int n, int64_t epoch, int64_t pos0,
                      float *scratch)
{
    if (!a->crop_padding && !a->flip)
        return;
    int64_t plane = (int64_t)a->h * a->w, size = a->c * plane;
    for (int i = 0; i < n; i++) {
        dl_rng_t rng;
        dl_rng_seed(&rng, a->seed ^ 0x4155474dULL,
                    (uint64_t)epoch * 0x100000000ULL + (uint64_t)(pos0 + i));
        int p = a->crop_padding;
        int dy = p ? (int)dl_rng_below(&rng, 2 * (uint64_t)p + 1) : 0;
        int dx = p ? (int)dl_rng_below(&rng, 2 * (uint64_t)p + 1) : 0;
        int flip = a->flip && (dl_rng_next(&rng) >> 63);
        float *s = x + i * size;
        for (int c = 0; c < a->c; c++) {
            if (p && (dy != p || dx != p))
                crop_plane(s + c * plane, a->h, a->w, p, a->pad_value[c], dy, dx, scratch);
            if (flip)
                flip_plane(s + c * plane, a->h, a->w);
        }
    }
}
