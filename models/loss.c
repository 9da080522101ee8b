/* Softmax cross-entropy, computed with the log-sum-exp shift for stability. */
#include <math.h>

#include "model.h"

double dl_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float scale,
                       float *dlogits, int64_t *correct)
{
    double total = 0.0;
    int64_t hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[best])
                best = j;
        double zmax = z[best], sum = 0.0;
        for (int j = 0; j < k; j++)
            sum += exp((double)z[j] - zmax);
        double lse = zmax + log(sum);
        total += lse - z[labels[i]];
        hits += best == labels[i];
        if (dlogits) {
            float *d = dlogits + (int64_t)i * k;
            for (int j = 0; j < k; j++)
                d[j] = scale * (float)exp((double)z[j] - lse);
            d[labels[i]] -= scale;
        }
    }
    if (correct)
        *correct = hits;
    return total;
}
