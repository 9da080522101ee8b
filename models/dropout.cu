/* Dropout on the GPU, with dropout.c's mask: element i is dropped when the
 * counter-based uniform of (dl_dropout_key, i) is below the rate, so both
 * devices drop the same elements. The mask is recomputed in backward
 * instead of stored. */
#include "cuda.cuh"

/* dl_rng_hash and dl_rng_hash_uniform of rng.c, on the device. */
__device__ __forceinline__ double hash_uniform(uint64_t key, uint64_t i)
{
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

__global__ void drop_apply(const float *x, float *y, int64_t len, uint64_t key, double rate,
                           float keep)
{
    GRID_LOOP(i, len)
    y[i] = hash_uniform(key, (uint64_t)i) < rate ? 0.0f : x[i] * keep;
}

static int active(const dl_layer_t *l)
{
    return l->ctx && l->ctx->training && l->spec.rate > 0.0;
}

/* y = x * mask (the identity when not training). */
static int apply(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    cudaStream_t st = LAYER_CUDA(l)->stream;
    int64_t len = (int64_t)n * l->in_size;
    if (!active(l)) {
        CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)len * sizeof(float), cudaMemcpyDeviceToDevice, st),
                 err);
        return 0;
    }
    float keep = (float)(1.0 / (1.0 - l->spec.rate));
    drop_apply<<<blocks_for(len), THREADS, 0, st>>>(x, y, len, dl_dropout_key(l->ctx, l->index),
                                                    l->spec.rate, keep);
    LAUNCH_CHECK(err);
    return 0;
}

static int drop_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    return apply(l, x, y, n);
}

static int drop_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                         int n)
{
    return dx ? apply(l, dy, dx, n) : 0;
}

extern "C" const dl_layer_ops_t dl_dropout_cuda_ops = {
    .name = "dropout",
    .forward = drop_forward,
    .backward = drop_backward,
};
