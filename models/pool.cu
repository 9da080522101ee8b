/* Max and average pooling on the GPU, with pool.c's definitions: windows
 * clipped to the input, the first maximum in scan order (a NaN wins), the
 * average always divided by k*k, size 0 a global average. Backward passes
 * gather: each input element sums the windows that chose or cover it, so
 * no atomics are needed and the results are the same on every run. */
#include "cuda.cuh"

typedef struct pgeom {
    int c, h, w, k, s, p, ho, wo;
} pgeom_t;

static pgeom_t pgeom_of(const dl_layer_t *l)
{
    pgeom_t g = {l->in.c,        l->in.h,     l->in.w,  l->spec.size,
                 l->spec.stride, l->spec.pad, l->out.h, l->out.w};
    return g;
}

/* Outputs along an axis whose window covers input i: [*lo, *hi). */
__device__ __forceinline__ void covering(int i, int k, int s, int p, int nout, int *lo, int *hi)
{
    int a = i + p - k + 1; /* the smallest o*s with o*s - p + k - 1 >= i */
    int o0 = a <= 0 ? 0 : (a + s - 1) / s;
    int o1 = (i + p) / s + 1;
    *lo = o0;
    *hi = o1 < nout ? o1 : nout;
}

/* Inputs [*lo, *hi) along an axis of n that output o's window covers,
 * clipped to the input (pool.c's pool_window). */
__device__ __forceinline__ void window(int o, int k, int s, int p, int n, int *lo, int *hi)
{
    int a = o * s - p;
    *lo = max(a, 0);
    *hi = min(a + k, n);
}

typedef struct maxpool_work {
    int32_t *arg; /* per output element: the offset in its plane of the chosen maximum */
} maxpool_work_t;

static int maxpool_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    maxpool_work_t *wk = (maxpool_work_t *)dl_calloc(1, sizeof *wk, err);
    if (!wk)
        return DL_ENOMEM;
    l->work = wk;
    size_t n = (size_t)(max_batch > 0 ? max_batch : 1) * (size_t)l->out_size;
    wk->arg = (int32_t *)dl_dev_alloc(DL_DEV_CUDA, n * sizeof(int32_t), err);
    return wk->arg ? 0 : DL_ENOMEM;
}

static void maxpool_release(dl_layer_t *l)
{
    maxpool_work_t *wk = (maxpool_work_t *)l->work;
    if (!wk)
        return;
    dl_dev_free(DL_DEV_CUDA, wk->arg);
    free(wk);
    l->work = NULL;
}

__global__ void maxpool_fwd(const float *x, pgeom_t g, int64_t planes, float *y, int32_t *arg)
{
    int64_t opl = (int64_t)g.ho * g.wo, ipl = (int64_t)g.h * g.w;
    GRID_LOOP(i, planes * opl)
    {
        int64_t pl = i / opl;
        int oy = (int)((i % opl) / g.wo), ox = (int)(i % g.wo);
        int h0, h1, w0, w1;
        window(oy, g.k, g.s, g.p, g.h, &h0, &h1);
        window(ox, g.k, g.s, g.p, g.w, &w0, &w1);
        const float *xc = x + pl * ipl;
        int best = h0 * g.w + w0;
        float v = xc[best];
        for (int hh = h0; hh < h1; hh++)
            for (int ww = w0; ww < w1; ww++) {
                float e = xc[hh * g.w + ww];
                if (e > v || (e != e && v == v)) {
                    v = e;
                    best = hh * g.w + ww;
                }
            }
        y[i] = v;
        arg[i] = best;
    }
}

__global__ void maxpool_bwd(const float *dy, const int32_t *arg, pgeom_t g, int64_t planes,
                            float *dx)
{
    int64_t opl = (int64_t)g.ho * g.wo, ipl = (int64_t)g.h * g.w;
    GRID_LOOP(i, planes * ipl)
    {
        int64_t pl = i / ipl;
        int e = (int)(i % ipl), iy = e / g.w, ix = e % g.w;
        int y0, y1, x0, x1;
        covering(iy, g.k, g.s, g.p, g.ho, &y0, &y1);
        covering(ix, g.k, g.s, g.p, g.wo, &x0, &x1);
        float sum = 0.0f;
        for (int oy = y0; oy < y1; oy++)
            for (int ox = x0; ox < x1; ox++) {
                int64_t o = pl * opl + (int64_t)oy * g.wo + ox;
                if (arg[o] == e)
                    sum += dy[o];
            }
        dx[i] = sum;
    }
}

static int maxpool_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    pgeom_t g = pgeom_of(l);
    int64_t planes = (int64_t)n * g.c;
    maxpool_fwd<<<blocks_for(planes * g.ho * g.wo), THREADS, 0, LAYER_CUDA(l)->stream>>>(
        x, g, planes, y, ((maxpool_work_t *)l->work)->arg);
    LAUNCH_CHECK(err);
    return 0;
}

static int maxpool_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    if (!dx)
        return 0;
    pgeom_t g = pgeom_of(l);
    int64_t planes = (int64_t)n * g.c;
    maxpool_bwd<<<blocks_for(planes * g.h * g.w), THREADS, 0, LAYER_CUDA(l)->stream>>>(
        dy, ((maxpool_work_t *)l->work)->arg, g, planes, dx);
    LAUNCH_CHECK(err);
    return 0;
}

/* One warp per plane for the global average; windows otherwise. */
__global__ void avgpool_global_fwd(const float *x, int64_t planes, int64_t hw, float *y)
{
    int64_t pl = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (pl >= planes)
        return;
    float sum = 0.0f;
    for (int64_t q = lane; q < hw; q += 32)
        sum += x[pl * hw + q];
    for (int off = 16; off > 0; off /= 2)
        sum += __shfl_down_sync(0xffffffffu, sum, off);
    if (lane == 0)
        y[pl] = sum / (float)hw;
}

__global__ void avgpool_global_bwd(const float *dy, int64_t planes, int64_t hw, float *dx)
{
    GRID_LOOP(i, planes * hw)
    dx[i] = dy[i / hw] / (float)hw;
}

__global__ void avgpool_fwd(const float *x, pgeom_t g, int64_t planes, float *y)
{
    int64_t opl = (int64_t)g.ho * g.wo, ipl = (int64_t)g.h * g.w;
    float scale = 1.0f / (float)(g.k * g.k);
    GRID_LOOP(i, planes * opl)
    {
        int64_t pl = i / opl;
        int oy = (int)((i % opl) / g.wo), ox = (int)(i % g.wo);
        int h0, h1, w0, w1;
        window(oy, g.k, g.s, g.p, g.h, &h0, &h1);
        window(ox, g.k, g.s, g.p, g.w, &w0, &w1);
        float sum = 0.0f;
        for (int hh = h0; hh < h1; hh++)
            for (int ww = w0; ww < w1; ww++)
                sum += x[pl * ipl + hh * g.w + ww];
        y[i] = sum * scale;
    }
}

__global__ void avgpool_bwd(const float *dy, pgeom_t g, int64_t planes, float *dx)
{
    int64_t opl = (int64_t)g.ho * g.wo, ipl = (int64_t)g.h * g.w;
    float scale = 1.0f / (float)(g.k * g.k);
    GRID_LOOP(i, planes * ipl)
    {
        int64_t pl = i / ipl;
        int e = (int)(i % ipl), iy = e / g.w, ix = e % g.w;
        int y0, y1, x0, x1;
        covering(iy, g.k, g.s, g.p, g.ho, &y0, &y1);
        covering(ix, g.k, g.s, g.p, g.wo, &x0, &x1);
        float sum = 0.0f;
        for (int oy = y0; oy < y1; oy++)
            for (int ox = x0; ox < x1; ox++)
                sum += dy[pl * opl + (int64_t)oy * g.wo + ox] * scale;
        dx[i] = sum;
    }
}

static int avgpool_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    pgeom_t g = pgeom_of(l);
    int64_t planes = (int64_t)n * g.c, hw = (int64_t)g.h * g.w;
    cudaStream_t st = LAYER_CUDA(l)->stream;
    if (g.k == 0)
        avgpool_global_fwd<<<blocks_for(planes * 32), THREADS, 0, st>>>(x, planes, hw, y);
    else
        avgpool_fwd<<<blocks_for(planes * g.ho * g.wo), THREADS, 0, st>>>(x, g, planes, y);
    LAUNCH_CHECK(err);
    return 0;
}

static int avgpool_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    if (!dx)
        return 0;
    pgeom_t g = pgeom_of(l);
    int64_t planes = (int64_t)n * g.c, hw = (int64_t)g.h * g.w;
    cudaStream_t st = LAYER_CUDA(l)->stream;
    if (g.k == 0)
        avgpool_global_bwd<<<blocks_for(planes * hw), THREADS, 0, st>>>(dy, planes, hw, dx);
    else
        avgpool_bwd<<<blocks_for(planes * hw), THREADS, 0, st>>>(dy, g, planes, dx);
    LAUNCH_CHECK(err);
    return 0;
}

extern "C" const dl_layer_ops_t dl_maxpool_cuda_ops = {
    .name = "maxpool",
    .alloc = maxpool_alloc,
    .release = maxpool_release,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

extern "C" const dl_layer_ops_t dl_avgpool_cuda_ops = {
    .name = "avgpool",
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};
