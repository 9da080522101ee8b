/* Batch normalisation on the GPU, with batchnorm.c's definition (biased
 * variance to normalise, unbiased for the running variance, torch's
 * momentum). Per-channel sums take one block per channel, in double, in a
 * fixed order. With spec.sync the sums go through the context's all-reduce,
 * which on the GPU is handed device pointers. */
#include "cuda.cuh"

typedef struct bn_work {
    float *mean, *invstd; /* c each, device: the statistics of the last forward */
    float *sums;          /* 2c + 1, device */
} bn_work_t;

static int bn_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    int c = l->in.c;
    bn_work_t *w = (bn_work_t *)dl_calloc(1, sizeof *w, err);
    if (!w)
        return DL_ENOMEM;
    l->work = w;
    w->mean = (float *)dl_dev_alloc(DL_DEV_CUDA, (size_t)c * 4, err);
    w->invstd = w->mean ? (float *)dl_dev_alloc(DL_DEV_CUDA, (size_t)c * 4, err) : NULL;
    w->sums = w->invstd ? (float *)dl_dev_alloc(DL_DEV_CUDA, (2 * (size_t)c + 1) * 4, err) : NULL;
    return w->sums ? 0 : DL_ENOMEM;
}

static void bn_release(dl_layer_t *l)
{
    bn_work_t *w = (bn_work_t *)l->work;
    if (!w)
        return;
    dl_dev_free(DL_DEV_CUDA, w->mean);
    dl_dev_free(DL_DEV_CUDA, w->invstd);
    dl_dev_free(DL_DEV_CUDA, w->sums);
    free(w);
    l->work = NULL;
}

/* Sum of v over the block's threads, in thread 0 (blockDim.x == THREADS). */
__device__ double block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s)
            sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* Block ch: out[ch] = sum over the channel of x, or of (x - mean[ch])^2
 * when centered; out[c] = the element count. */
__global__ void channel_sums(const float *x, int n, int c, int64_t hw, const float *mean,
                             int centered, float *out)
{
    __shared__ double sh[THREADS];
    int ch = blockIdx.x;
    double m = centered ? mean[ch] : 0.0, s = 0.0;
    int64_t total = (int64_t)n * hw;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
        double d = x[(i / hw) * c * hw + (int64_t)ch * hw + i % hw] - m;
        s += centered ? d * d : d;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        out[ch] = (float)s;
        if (ch == 0 && !centered)
            out[c] = (float)n * (float)hw;
    }
}

__global__ void set_mean(const float *sums, int c, float *mean)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c)
        mean[ch] = (float)(sums[ch] / (double)sums[c]);
}

/* From the variance sums (count in cnt): invstd and the running statistics. */
__global__ void finish_stats(const float *sums, const float *cnt, int c, double eps, double mom,
                             const float *mean, float *invstd, float *run_mean, float *run_var)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c)
        return;
    double count = *cnt, var = sums[ch] / count;
    invstd[ch] = (float)(1.0 / sqrt(var + eps));
    double unbiased = count > 1 ? sums[ch] / (count - 1) : var;
    run_mean[ch] = (float)((1.0 - mom) * run_mean[ch] + mom * mean[ch]);
    run_var[ch] = (float)((1.0 - mom) * run_var[ch] + mom * unbiased);
}

__global__ void running_stats(const float *state, int c, double eps, float *mean, float *invstd)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) {
        mean[ch] = state[ch];
        invstd[ch] = (float)(1.0 / sqrt((double)state[c + ch] + eps));
    }
}

__global__ void normalize(const float *x, int64_t total, int c, int64_t hw, const float *gamma,
                          const float *beta, const float *mean, const float *invstd, float *y)
{
    GRID_LOOP(i, total)
    {
        int ch = (int)((i / hw) % c);
        float scale = gamma[ch] * invstd[ch], shift = beta[ch] - mean[ch] * scale;
        y[i] = x[i] * scale + shift;
    }
}

/* Block ch: db = sum dy, dw = sum dy * xhat, also into sums[ch], sums[c + ch];
 * sums[2c] = the count. */
__global__ void grad_sums(const float *x, const float *dy, int n, int c, int64_t hw,
                          const float *mean, const float *invstd, float *dgamma, float *dbeta,
                          float *sums)
{
    __shared__ double sh[THREADS];
    int ch = blockIdx.x;
    float m = mean[ch], is = invstd[ch];
    double sdy = 0.0, sdyx = 0.0;
    int64_t total = (int64_t)n * hw;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
        int64_t at = (i / hw) * c * hw + (int64_t)ch * hw + i % hw;
        sdy += dy[at];
        sdyx += (double)dy[at] * (x[at] - m) * is;
    }
    sdy = block_sum(sdy, sh);
    sdyx = block_sum(sdyx, sh);
    if (threadIdx.x == 0) {
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)sdyx;
        sums[ch] = (float)sdy;
        sums[c + ch] = (float)sdyx;
        if (ch == 0)
            sums[2 * c] = (float)n * (float)hw;
    }
}

__global__ void input_grad(const float *x, const float *dy, int64_t total, int c, int64_t hw,
                           const float *gamma, const float *mean, const float *invstd,
                           const float *sums, int training, float *dx)
{
    GRID_LOOP(i, total)
    {
        int ch = (int)((i / hw) % c);
        float m = mean[ch], is = invstd[ch], k1 = gamma[ch] * is;
        double count = sums[2 * c];
        float mdy = training ? (float)(sums[ch] / count) : 0.0f;
        float mdyx = training ? (float)(sums[c + ch] / count) : 0.0f;
        dx[i] = k1 * (dy[i] - mdy - (x[i] - m) * is * mdyx);
    }
}

static int reduce(dl_layer_t *l, float *buf, int64_t len)
{
    if (!l->spec.sync || !l->ctx || !l->ctx->allreduce_sum)
        return 0;
    return l->ctx->allreduce_sum(l->ctx->comm, buf, len);
}

static int bn_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    bn_work_t *w = (bn_work_t *)l->work;
    cudaStream_t st = LAYER_CUDA(l)->stream;
    int c = l->in.c, cb = (c + THREADS - 1) / THREADS;
    int64_t hw = (int64_t)l->in.h * l->in.w;
    if (l->ctx && l->ctx->training) {
        channel_sums<<<c, THREADS, 0, st>>>(x, n, c, hw, NULL, 0, w->sums);
        LAUNCH_CHECK(err);
        int rc = reduce(l, w->sums, c + 1);
        if (rc)
            return rc;
        set_mean<<<cb, THREADS, 0, st>>>(w->sums, c, w->mean);
        LAUNCH_CHECK(err);
        /* the variance pass leaves the count in sums[c] */
        channel_sums<<<c, THREADS, 0, st>>>(x, n, c, hw, w->mean, 1, w->sums);
        LAUNCH_CHECK(err);
        rc = reduce(l, w->sums, c);
        if (rc)
            return rc;
        finish_stats<<<cb, THREADS, 0, st>>>(w->sums, w->sums + c, c, l->spec.eps, l->spec.momentum,
                                             w->mean, w->invstd, l->state, l->state + c);
    } else {
        running_stats<<<cb, THREADS, 0, st>>>(l->state, c, l->spec.eps, w->mean, w->invstd);
    }
    LAUNCH_CHECK(err);
    int64_t total = (int64_t)n * l->in_size;
    normalize<<<blocks_for(total), THREADS, 0, st>>>(x, total, c, hw, l->w, l->b, w->mean,
                                                     w->invstd, y);
    LAUNCH_CHECK(err);
    return 0;
}

static int bn_backward(dl_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                       int n)
{
    dl_err_t *err = LAYER_ERR(l);
    bn_work_t *w = (bn_work_t *)l->work;
    cudaStream_t st = LAYER_CUDA(l)->stream;
    int c = l->in.c;
    int64_t hw = (int64_t)l->in.h * l->in.w;
    grad_sums<<<c, THREADS, 0, st>>>(x, dy, n, c, hw, w->mean, w->invstd, l->dw, l->db, w->sums);
    LAUNCH_CHECK(err);
    if (!dx)
        return 0;
    int training = l->ctx && l->ctx->training;
    if (training) {
        int rc = reduce(l, w->sums, 2 * (int64_t)c + 1);
        if (rc)
            return rc;
    }
    int64_t total = (int64_t)n * l->in_size;
    input_grad<<<blocks_for(total), THREADS, 0, st>>>(x, dy, total, c, hw, l->w, w->mean, w->invstd,
                                                      w->sums, training, dx);
    LAUNCH_CHECK(err);
    return 0;
}

extern "C" const dl_layer_ops_t dl_batchnorm_cuda_ops = {
    .name = "batchnorm",
    .alloc = bn_alloc,
    .release = bn_release,
    .forward = bn_forward,
    .backward = bn_backward,
};
