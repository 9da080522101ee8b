/* Softmax cross-entropy with label smoothing, computed with the log-sum-exp
 * shift for stability. With smoothing e over k classes the target is
 * (1 - e) * onehot + e / k, as in torch.nn.functional.cross_entropy. */
#include <math.h>

#include "model.h"

double dl_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float smoothing,
                       float scale, float *dlogits, int64_t *correct)
{
    double total = 0.0;
    int64_t hits = 0;
    const double e = smoothing, off = e / k, on = 1.0 - e + off;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[best])
                best = j;
        double zmax = z[best], sum = 0.0, zsum = 0.0;
        for (int j = 0; j < k; j++) {
            sum += exp((double)z[j] - zmax);
            zsum += z[j];
        }
        double lse = zmax + log(sum);
        /* -sum_j target_j log p_j = lse - (1 - e) z_label - (e / k) sum_j z_j */
        total += lse - (1.0 - e) * z[labels[i]] - off * zsum;
        hits += best == labels[i];
        if (dlogits) {
            float *d = dlogits + (int64_t)i * k;
            for (int j = 0; j < k; j++)
                d[j] = (float)(scale * (exp((double)z[j] - lse) - off));
            d[labels[i]] -= (float)(scale * (on - off));
        }
    }
    if (correct)
        *correct = hits;
    return total;
}
