/* [shortcut] and [flatten] on the GPU, as shortcut.c: y = x + the source's
 * output (subsampled by the stride, on its channels only); flatten copies. */
#include "cuda.cuh"

typedef struct sgeom {
    int ac, ah, aw, c, h, w, s; /* the source's shape, the input's, the stride */
} sgeom_t;

static sgeom_t sgeom_of(const dl_layer_t *l)
{
    sgeom_t g = {l->aux_in.c, l->aux_in.h, l->aux_in.w, l->in.c, l->in.h, l->in.w, l->spec.stride};
    return g;
}

__global__ void shortcut_fwd(const float *x, const float *a, sgeom_t g, int64_t total, float *y)
{
    int64_t plane = (int64_t)g.h * g.w, size = g.c * plane, asize = (int64_t)g.ac * g.ah * g.aw;
    GRID_LOOP(i, total)
    {
        int64_t smp = i / size, e = i % size;
        int ch = (int)(e / plane), r = (int)((e % plane) / g.w), q = (int)(e % g.w);
        float v = x[i];
        if (ch < g.ac)
            v += a[smp * asize + ((int64_t)ch * g.ah + (int64_t)r * g.s) * g.aw + (int64_t)q * g.s];
        y[i] = v;
    }
}

/* aux_dx (the source's shape) = dy where the source contributed, else 0. */
__global__ void shortcut_bwd(const float *dy, sgeom_t g, int64_t total, float *adx)
{
    int64_t plane = (int64_t)g.h * g.w, size = g.c * plane, aplane = (int64_t)g.ah * g.aw;
    int64_t asize = g.ac * aplane;
    GRID_LOOP(i, total)
    {
        int64_t smp = i / asize, e = i % asize;
        int ch = (int)(e / aplane), r = (int)((e % aplane) / g.aw), q = (int)(e % g.aw);
        float v = 0.0f;
        if (r % g.s == 0 && q % g.s == 0)
            v = dy[smp * size + ((int64_t)ch * g.h + r / g.s) * g.w + q / g.s];
        adx[i] = v;
    }
}

static int shortcut_alloc(dl_layer_t *l, int max_batch, dl_err_t *err)
{
    size_t len = (size_t)max_batch * (size_t)l->aux_in.c * l->aux_in.h * l->aux_in.w;
    l->aux_dx = (float *)dl_dev_alloc(DL_DEV_CUDA, len * sizeof(float), err);
    return l->aux_dx ? 0 : DL_ENOMEM;
}

static void shortcut_release(dl_layer_t *l)
{
    dl_dev_free(DL_DEV_CUDA, l->aux_dx);
    l->aux_dx = NULL;
}

static int shortcut_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    int64_t total = (int64_t)n * l->in_size;
    shortcut_fwd<<<blocks_for(total), THREADS, 0, LAYER_CUDA(l)->stream>>>(x, l->aux_x, sgeom_of(l),
                                                                           total, y);
    LAUNCH_CHECK(err);
    return 0;
}

static int shortcut_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                             float *dx, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    cudaStream_t st = LAYER_CUDA(l)->stream;
    if (dx)
        CUDA_TRY(cudaMemcpyAsync(dx, dy, (size_t)n * (size_t)l->in_size * sizeof(float),
                                 cudaMemcpyDeviceToDevice, st),
                 err);
    int64_t total = (int64_t)n * l->aux_in.c * l->aux_in.h * l->aux_in.w;
    shortcut_bwd<<<blocks_for(total), THREADS, 0, st>>>(dy, sgeom_of(l), total, l->aux_dx);
    LAUNCH_CHECK(err);
    return 0;
}

static int flatten_forward(dl_layer_t *l, const float *x, float *y, int n)
{
    dl_err_t *err = LAYER_ERR(l);
    CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)n * (size_t)l->in_size * sizeof(float),
                             cudaMemcpyDeviceToDevice, LAYER_CUDA(l)->stream),
             err);
    return 0;
}

static int flatten_backward(dl_layer_t *l, const float *x, const float *y, const float *dy,
                            float *dx, int n)
{
    return dx ? flatten_forward(l, dy, dx, n) : 0;
}

extern "C" const dl_layer_ops_t dl_shortcut_cuda_ops = {
    .name = "shortcut",
    .alloc = shortcut_alloc,
    .release = shortcut_release,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
};

extern "C" const dl_layer_ops_t dl_flatten_cuda_ops = {
    .name = "flatten",
    .forward = flatten_forward,
    .backward = flatten_backward,
};
