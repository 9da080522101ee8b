/* Training-data augmentation on normalised samples: random crop after
 * padding, and random horizontal flip, as torchvision's RandomCrop(padding)
 * and RandomHorizontalFlip. The choice for each sample depends only on the
 * seed, the epoch and the sample's position in the epoch's order, so it is
 * the same whatever the number of ranks. */
#ifndef DL_AUGMENT_H
#define DL_AUGMENT_H

#include <stdint.h>

typedef struct dl_augment {
    int c, h, w;
    int crop_padding;       /* 0 = no cropping */
    int flip;               /* 1 = flip half the samples */
    const float *pad_value; /* c values: a black pixel, normalised */
    uint64_t seed;
} dl_augment_t;

/* Augment n samples x (n x c*h*w) in place; sample i has position pos0 + i
 * in epoch `epoch`. scratch holds (h + 2*crop_padding) * (w + 2*crop_padding)
 * floats. */
void dl_augment_batch(const dl_augment_t *a, float *x, int n, int64_t epoch, int64_t pos0,
                      float *scratch);

#endif
