/* Augmentation: a flip mirrors rows, a crop shifts the image inside black
 * padding, and the choice per sample depends only on (seed, epoch, position),
 * so any split of a batch across ranks augments it identically. */
#include <stdlib.h>

#include "check.h"
#include "io/augment.h"

#define C 2
#define HH 4
#define WW 5
#define N 64

static void fill(float *x, int n)
{
    for (int i = 0; i < n * C * HH * WW; i++)
        x[i] = (float)(i % 97) + 1.0f; /* no zeros: padding is told apart */
}

int main(void)
{
    const float pad_value[C] = {-1.0f, -2.0f};
    float scratch[(HH + 8) * (WW + 8)];
    static float a[N * C * HH * WW], b[N * C * HH * WW], orig[N * C * HH * WW];
    const int size = C * HH * WW;

    /* Flip only: every sample is itself or its mirror image, about half flipped. */
    dl_augment_t flip = {.c = C, .h = HH, .w = WW, .flip = 1, .pad_value = pad_value, .seed = 3};
    fill(a, N);
    fill(orig, N);
    dl_augment_batch(&flip, a, N, 0, 0, scratch);
    int flipped = 0;
    for (int i = 0; i < N; i++) {
        const float *s = a + i * size, *o = orig + i * size;
        int same = 1, mirror = 1;
        for (int k = 0; k < size; k++) {
            int c = k / (HH * WW), r = (k / WW) % HH, q = k % WW;
            same &= s[k] == o[k];
            mirror &= s[k] == o[c * HH * WW + r * WW + (WW - 1 - q)];
        }
        CHECK(same || mirror);
        flipped += mirror && !same;
    }
    CHECK(flipped > N / 4 && flipped < 3 * N / 4);

    /* Crop only: each plane is the original shifted by (dy, dx) in -p..p,
     * with the padding value where it moved in from outside. */
    dl_augment_t crop = {
        .c = C, .h = HH, .w = WW, .crop_padding = 2, .pad_value = pad_value, .seed = 3};
    fill(a, N);
    dl_augment_batch(&crop, a, N, 1, 0, scratch);
    int moved = 0;
    for (int i = 0; i < N; i++) {
        int found = 0;
        for (int dy = -2; dy <= 2 && !found; dy++)
            for (int dx = -2; dx <= 2 && !found; dx++) {
                int ok = 1;
                for (int k = 0; k < size && ok; k++) {
                    int c = k / (HH * WW), r = (k / WW) % HH + dy, q = k % WW + dx;
                    float want = r < 0 || r >= HH || q < 0 || q >= WW
                                     ? pad_value[c]
                                     : orig[i * size + c * HH * WW + r * WW + q];
                    ok = a[i * size + k] == want;
                }
                if (ok) {
                    found = 1;
                    moved += dy || dx;
                }
            }
        CHECK(found);
    }
    CHECK(moved > N / 2);

    /* Rank independence: the batch in one call, or split in two calls at
     * their positions, gives the same result; another epoch differs. */
    dl_augment_t both = {
        .c = C, .h = HH, .w = WW, .crop_padding = 1, .flip = 1, .pad_value = pad_value, .seed = 9};
    fill(a, N);
    fill(b, N);
    dl_augment_batch(&both, a, N, 5, 100, scratch);
    dl_augment_batch(&both, b, N / 2, 5, 100, scratch);
    dl_augment_batch(&both, b + (N / 2) * size, N / 2, 5, 100 + N / 2, scratch);
    CHECK(memcmp(a, b, sizeof a) == 0);
    fill(b, N);
    dl_augment_batch(&both, b, N, 6, 100, scratch);
    CHECK(memcmp(a, b, sizeof a) != 0);

    /* Off: nothing changes. */
    dl_augment_t off = {.c = C, .h = HH, .w = WW, .pad_value = pad_value, .seed = 9};
    fill(a, N);
    dl_augment_batch(&off, a, N, 0, 0, scratch);
    CHECK(memcmp(a, orig, sizeof a) == 0);
    return CHECK_DONE();
}
