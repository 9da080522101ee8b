/* The CUDA backend's device, memory, matrix products and the small kernels
 * the model, the loss and the optimisers use; see device.h. The layers'
 * kernels sit beside their CPU versions (dense.cu next to dense.c). */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.cuh"

extern "C" const dl_layer_ops_t dl_dense_cuda_ops, dl_activation_cuda_ops, dl_conv_cuda_ops,
    dl_maxpool_cuda_ops, dl_avgpool_cuda_ops, dl_batchnorm_cuda_ops, dl_dropout_cuda_ops,
    dl_shortcut_cuda_ops, dl_flatten_cuda_ops;

extern "C" const dl_layer_ops_t *dl_cuda_layer_ops(dl_layer_type_t t)
{
    switch (t) {
    case DL_LAYER_DENSE: return &dl_dense_cuda_ops;
    case DL_LAYER_ACTIVATION: return &dl_activation_cuda_ops;
    case DL_LAYER_CONV: return &dl_conv_cuda_ops;
    case DL_LAYER_MAXPOOL: return &dl_maxpool_cuda_ops;
    case DL_LAYER_AVGPOOL: return &dl_avgpool_cuda_ops;
    case DL_LAYER_BATCHNORM: return &dl_batchnorm_cuda_ops;
    case DL_LAYER_DROPOUT: return &dl_dropout_cuda_ops;
    case DL_LAYER_SHORTCUT: return &dl_shortcut_cuda_ops;
    case DL_LAYER_FLATTEN: return &dl_flatten_cuda_ops;
    default: return NULL;
    }
}

int dl_cuda_fail(dl_err_t *err, cudaError_t rc, const char *what, const char *file, int line)
{
    return dl_err_set(err, DL_ELIB, file, line, "CUDA call %s failed: %s (%s)", what,
                      cudaGetErrorString(rc), cudaGetErrorName(rc));
}

/* The one process-wide table in models/: written once under pthread_once,
 * read-only after (the library stays open for the process's life). */
static dl_cublas_api_t cublas_api;
static pthread_once_t cublas_once = PTHREAD_ONCE_INIT;
static char cublas_error[512];

#define CUBLAS_STR2(x) #x
#define CUBLAS_STR(x) CUBLAS_STR2(x)
#define CUBLAS_SONAME "libcublas.so." CUBLAS_STR(CUBLAS_VER_MAJOR)

/* Resolve one symbol into *slot; a missing one leaves cublas_error set. */
template <typename F> static void resolve(void *lib, const char *name, F *slot)
{
    *slot = (F)dlsym(lib, name);
    if (!*slot && !cublas_error[0])
        snprintf(cublas_error, sizeof cublas_error, "%s has no %s", CUBLAS_SONAME, name);
}

static void open_cublas(void)
{
    void *lib = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(cublas_error, sizeof cublas_error, "cannot load %s: %s", CUBLAS_SONAME, dlerror());
        return;
    }
    resolve(lib, "cublasCreate_v2", &cublas_api.create);
    resolve(lib, "cublasDestroy_v2", &cublas_api.destroy);
    resolve(lib, "cublasSetStream_v2", &cublas_api.set_stream);
    resolve(lib, "cublasSetMathMode", &cublas_api.set_math_mode);
    resolve(lib, "cublasSgemm_v2", &cublas_api.sgemm);
    resolve(lib, "cublasGetStatusString", &cublas_api.status_string);
}

int dl_cublas_load(dl_err_t *err)
{
    if (pthread_once(&cublas_once, open_cublas) != 0)
        return DL_ERR(err, DL_ELIB, "pthread_once failed while loading cuBLAS");
    if (cublas_error[0])
        return DL_ERR(err, DL_ELIB,
                      "%s; the GPU backend needs the CUDA %d toolkit's cuBLAS on the library "
                      "path (LD_LIBRARY_PATH or ldconfig)",
                      cublas_error, CUBLAS_VER_MAJOR);
    return 0;
}

const dl_cublas_api_t *dl_cublas(void)
{
    return &cublas_api;
}

int dl_cublas_fail(dl_err_t *err, cublasStatus_t rc, const char *what, const char *file, int line)
{
    return dl_err_set(err, DL_ELIB, file, line, "cuBLAS call %s failed: %s", what,
                      cublas_api.status_string ? cublas_api.status_string(rc) : "?");
}

extern "C" int dl_cuda_built(void)
{
    return 1;
}

extern "C" int dl_cuda_device_count(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        snprintf(why, why_len, "CUDA cannot start here: %s", cudaGetErrorString(rc));
        return 0;
    }
    if (n == 0)
        snprintf(why, why_len, "CUDA sees no GPU here (CUDA_VISIBLE_DEVICES=%s)",
                 getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    return n;
}

extern "C" int dl_cuda_use_device(int index, char *name, size_t name_len, dl_err_t *err)
{
    CUDA_TRY(cudaSetDevice(index), err);
    if (name) {
        cudaDeviceProp p;
        CUDA_TRY(cudaGetDeviceProperties(&p, index), err);
        snprintf(name, name_len, "%s, %.1f GiB", p.name,
                 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    }
    return 0;
}

extern "C" int dl_cuda_bus_id(int index, char *buf, size_t len, dl_err_t *err)
{
    CUDA_TRY(cudaDeviceGetPCIBusId(buf, (int)len, index), err);
    return 0;
}

extern "C" int dl_cuda_create(dl_cuda_t **out, int tf32, dl_err_t *err)
{
    *out = NULL;
    dl_cuda_t *g = (dl_cuda_t *)dl_calloc(1, sizeof *g, err);
    if (!g)
        return DL_ENOMEM;
    g->tf32 = tf32;
    int rc = 0;
    cudaError_t c = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    if (c != cudaSuccess)
        rc = dl_cuda_fail(err, c, "cudaStreamCreateWithFlags", __FILE__, __LINE__);
    if (!rc)
        rc = dl_cublas_load(err);
    cublasStatus_t b = rc ? CUBLAS_STATUS_SUCCESS : dl_cublas()->create(&g->blas);
    if (!rc && b != CUBLAS_STATUS_SUCCESS)
        rc = dl_cublas_fail(err, b, "cublasCreate", __FILE__, __LINE__);
    if (!rc && (b = dl_cublas()->set_stream(g->blas, g->stream)) != CUBLAS_STATUS_SUCCESS)
        rc = dl_cublas_fail(err, b, "cublasSetStream", __FILE__, __LINE__);
    /* TF32 off unless asked for (cuBLAS's default math keeps fp32 products
     * in fp32): results then match the CPU to about 1e-6. */
    cublasMath_t mode = tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (!rc && (b = dl_cublas()->set_math_mode(g->blas, mode)) != CUBLAS_STATUS_SUCCESS)
        rc = dl_cublas_fail(err, b, "cublasSetMathMode", __FILE__, __LINE__);
    if (!rc && (c = cudaMalloc(&g->reduce, DL_CUDA_REDUCE * sizeof(double))) != cudaSuccess)
        rc = dl_cuda_fail(err, c, "cudaMalloc", __FILE__, __LINE__);
    if (!rc &&
        (c = cudaMallocHost(&g->reduce_host, DL_CUDA_REDUCE * sizeof(double))) != cudaSuccess)
        rc = dl_cuda_fail(err, c, "cudaMallocHost", __FILE__, __LINE__);
    if (rc) {
        dl_cuda_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

extern "C" void dl_cuda_destroy(dl_cuda_t *g)
{
    if (!g)
        return;
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    if (g->blas)
        dl_cublas()->destroy(g->blas);
    cudaFree(g->ones);
    cudaFree(g->rows);
    cudaFree(g->reduce);
    cudaFreeHost(g->reduce_host);
    if (g->stream)
        cudaStreamDestroy(g->stream);
    free(g);
}

extern "C" void *dl_cuda_stream(dl_cuda_t *g)
{
    return (void *)g->stream;
}

extern "C" int dl_cuda_sync(dl_cuda_t *g, dl_err_t *err)
{
    CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    CUDA_TRY(cudaGetLastError(), err);
    return 0;
}

/* Values in [-1, 1) from a hash of the index: a product of zeros would run
 * faster than real data (less switching power), so the peak uses these. */
__global__ void hash_fill_kernel(float *p, int64_t n, uint32_t seed)
{
    GRID_LOOP(i, n)
    {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
}

/* What dl_cuda_sgemm_tflops holds; released by sgemm_bench_free. */
typedef struct sgemm_bench {
    cudaStream_t stream;
    cublasHandle_t blas;
    float *a, *b, *c;
    cudaEvent_t ev[65];
    int n_ev;
} sgemm_bench_t;

static void sgemm_bench_free(sgemm_bench_t *s)
{
    if (s->stream)
        cudaStreamSynchronize(s->stream);
    for (int i = 0; i < s->n_ev; i++)
        cudaEventDestroy(s->ev[i]);
    if (s->blas)
        dl_cublas()->destroy(s->blas);
    cudaFree(s->a);
    cudaFree(s->b);
    cudaFree(s->c);
    if (s->stream)
        cudaStreamDestroy(s->stream);
}

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* The body of dl_cuda_sgemm_tflops: reps products, each between two events. */
static int sgemm_bench_run(sgemm_bench_t *s, int n, int reps, dl_sgemm_math_t math, double *tflops,
                           dl_err_t *err)
{
    size_t bytes = (size_t)n * (size_t)n * sizeof(float);
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), err);
    int rc = dl_cublas_load(err);
    if (rc)
        return rc;
    CUBLAS_TRY(dl_cublas()->create(&s->blas), err);
    CUBLAS_TRY(dl_cublas()->set_stream(s->blas, s->stream), err);
    cublasMath_t mode = math == DL_SGEMM_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    CUBLAS_TRY(dl_cublas()->set_math_mode(s->blas, mode), err);
    CUDA_TRY(cudaMalloc(&s->a, bytes), err);
    CUDA_TRY(cudaMalloc(&s->b, bytes), err);
    CUDA_TRY(cudaMalloc(&s->c, bytes), err);
    int64_t len = (int64_t)n * n;
    hash_fill_kernel<<<blocks_for(len), THREADS, 0, s->stream>>>(s->a, len, 1u);
    LAUNCH_CHECK(err);
    hash_fill_kernel<<<blocks_for(len), THREADS, 0, s->stream>>>(s->b, len, 2u);
    LAUNCH_CHECK(err);
    for (; s->n_ev <= reps; s->n_ev++)
        CUDA_TRY(cudaEventCreate(&s->ev[s->n_ev]), err);
    const float one = 1.0f, zero = 0.0f;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up */
        if (r >= 0)
            CUDA_TRY(cudaEventRecord(s->ev[r], s->stream), err);
        CUBLAS_TRY(dl_cublas()->sgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, s->a, n,
                                      s->b, n, &zero, s->c, n),
                   err);
    }
    CUDA_TRY(cudaEventRecord(s->ev[reps], s->stream), err);
    CUDA_TRY(cudaEventSynchronize(s->ev[reps]), err);
    float ms[64];
    for (int r = 0; r < reps; r++)
        CUDA_TRY(cudaEventElapsedTime(&ms[r], s->ev[r], s->ev[r + 1]), err);
    qsort(ms, (size_t)reps, sizeof ms[0], cmp_float);
    double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    *tflops = 2.0 * (double)n * n * n / (med * 1e-3) * 1e-12;
    return 0;
}

extern "C" int dl_cuda_sgemm_tflops(int n, int reps, dl_sgemm_math_t math, double *tflops,
                                    dl_err_t *err)
{
    *tflops = 0.0;
    if (n < 1 || reps < 1 || reps > 64)
        return DL_ERR(err, DL_EINPUT, "sgemm peak: n = %d and reps = %d (n >= 1, reps 1..64)", n,
                      reps);
    sgemm_bench_t s;
    memset(&s, 0, sizeof s);
    int rc = sgemm_bench_run(&s, n, reps, math, tflops, err);
    sgemm_bench_free(&s);
    return rc;
}

extern "C" void *dl_dev_alloc(dl_dev_t d, size_t bytes, dl_err_t *err)
{
    if (d == DL_DEV_CPU)
        return dl_calloc(bytes ? bytes : 1, 1, err);
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 1);
    if (rc != cudaSuccess) {
        dl_err_set(err, DL_ENOMEM, __FILE__, __LINE__,
                   "the GPU has no room for %.1f MiB more (%s); use a smaller batch or model",
                   (double)bytes / (1024.0 * 1024.0), cudaGetErrorString(rc));
        return NULL;
    }
    if ((rc = cudaMemset(p, 0, bytes)) != cudaSuccess) {
        dl_cuda_fail(err, rc, "cudaMemset", __FILE__, __LINE__);
        cudaFree(p);
        return NULL;
    }
    return p;
}

extern "C" void dl_dev_free(dl_dev_t d, void *p)
{
    if (d == DL_DEV_CPU)
        free(p);
    else if (p)
        cudaFree(p);
}

extern "C" void *dl_host_alloc(dl_dev_t d, size_t bytes, dl_err_t *err)
{
    if (d == DL_DEV_CPU)
        return dl_calloc(bytes ? bytes : 1, 1, err);
    void *p = NULL;
    cudaError_t rc = cudaMallocHost(&p, bytes ? bytes : 1);
    if (rc != cudaSuccess) {
        dl_cuda_fail(err, rc, "cudaMallocHost", __FILE__, __LINE__);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

extern "C" void dl_host_free(dl_dev_t d, void *p)
{
    if (d == DL_DEV_CPU)
        free(p);
    else if (p)
        cudaFreeHost(p);
}

extern "C" int dl_dev_copy(dl_cuda_t *g, void *dst, const void *src, size_t bytes, dl_copy_t kind,
                           dl_err_t *err)
{
    if (!g) {
        memcpy(dst, src, bytes);
        return 0;
    }
    static const cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                           cudaMemcpyDeviceToDevice};
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kinds[kind], g->stream), err);
    if (kind == DL_COPY_D2H)
        CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    return 0;
}

extern "C" int dl_dev_zero(dl_cuda_t *g, void *p, size_t bytes, dl_err_t *err)
{
    if (!g) {
        memset(p, 0, bytes);
        return 0;
    }
    CUDA_TRY(cudaMemsetAsync(p, 0, bytes, g->stream), err);
    return 0;
}

int dl_cuda_gemm(dl_cuda_t *g, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                 dl_err_t *err)
{
    CUBLAS_TRY(dl_cublas()->sgemm(g->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                                  lda, &beta, c, ldc),
               err);
    return 0;
}

__global__ void fill_kernel(float *p, int64_t n, float v)
{
    GRID_LOOP(i, n)
    p[i] = v;
}

int dl_cuda_ones(dl_cuda_t *g, int64_t n, dl_err_t *err)
{
    if (n <= g->n_ones)
        return 0;
    CUDA_TRY(cudaStreamSynchronize(g->stream), err); /* the old vector may be in use */
    cudaFree(g->ones);
    g->ones = NULL;
    g->n_ones = 0;
    CUDA_TRY(cudaMalloc(&g->ones, (size_t)n * sizeof(float)), err);
    fill_kernel<<<blocks_for(n), THREADS, 0, g->stream>>>(g->ones, n, 1.0f);
    LAUNCH_CHECK(err);
    g->n_ones = n;
    return 0;
}

/* ---- small kernels (device.h) ---- */

__global__ void add_kernel(float *d, const float *s, int64_t n)
{
    GRID_LOOP(i, n)
    d[i] += s[i];
}

extern "C" int dl_cuda_add(dl_cuda_t *g, float *d, const float *s, int64_t len, dl_err_t *err)
{
    if (len <= 0)
        return 0;
    add_kernel<<<blocks_for(len), THREADS, 0, g->stream>>>(d, s, len);
    LAUNCH_CHECK(err);
    return 0;
}

/* flag stays 1 unless some element is not finite (every writer writes 0). */
__global__ void finite_kernel(const float *v, int64_t n, double *flag)
{
    GRID_LOOP(i, n)
    if (!isfinite(v[i]))
        *flag = 0.0;
}

__global__ void set_kernel(double *p, double v)
{
    *p = v;
}

extern "C" int dl_cuda_all_finite(dl_cuda_t *g, const float *v, int64_t len, int *finite,
                                  dl_err_t *err)
{
    set_kernel<<<1, 1, 0, g->stream>>>(g->reduce, 1.0);
    LAUNCH_CHECK(err);
    if (len > 0) {
        finite_kernel<<<blocks_for(len), THREADS, 0, g->stream>>>(v, len, g->reduce);
        LAUNCH_CHECK(err);
    }
    CUDA_TRY(cudaMemcpyAsync(g->reduce_host, g->reduce, sizeof(double), cudaMemcpyDeviceToHost,
                             g->stream),
             err);
    CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    *finite = g->reduce_host[0] == 1.0;
    return 0;
}

/* One warp per row: the row's loss (double) and hit into loss[row], hit[row];
 * dlogits as dl_softmax_xent writes them. */
__global__ void xent_kernel(const float *logits, const int32_t *labels, int n, int k, double e,
                            float scale, float *dlogits, double *loss, double *hit)
{
    int row = (int)(((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32);
    int lane = threadIdx.x % 32;
    if (row >= n)
        return;
    const float *z = logits + (int64_t)row * k;
    /* arg-max with the lowest index among equal maxima, as the CPU's scan */
    float best = -INFINITY;
    int besti = k;
    for (int j = lane; j < k; j += 32)
        if (besti == k || z[j] > best) {
            best = z[j];
            besti = j;
        }
    for (int off = 16; off > 0; off /= 2) {
        float ob = __shfl_down_sync(0xffffffffu, best, off);
        int oi = __shfl_down_sync(0xffffffffu, besti, off);
        if (oi < k && (besti == k || ob > best || (ob == best && oi < besti))) {
            best = ob;
            besti = oi;
        }
    }
    best = __shfl_sync(0xffffffffu, best, 0);
    besti = __shfl_sync(0xffffffffu, besti, 0);
    double sum = 0.0, zsum = 0.0;
    for (int j = lane; j < k; j += 32) {
        sum += exp((double)z[j] - (double)best);
        zsum += z[j];
    }
    for (int off = 16; off > 0; off /= 2) {
        sum += __shfl_down_sync(0xffffffffu, sum, off);
        zsum += __shfl_down_sync(0xffffffffu, zsum, off);
    }
    sum = __shfl_sync(0xffffffffu, sum, 0);
    zsum = __shfl_sync(0xffffffffu, zsum, 0);
    double lse = (double)best + log(sum), off_t = e / k, on = 1.0 - e + off_t;
    int y = labels[row];
    if (lane == 0) {
        loss[row] = lse - (1.0 - e) * z[y] - off_t * zsum;
        hit[row] = besti == y;
    }
    if (dlogits) {
        float *d = dlogits + (int64_t)row * k;
        for (int j = lane; j < k; j += 32) {
            float v = (float)(scale * (exp((double)z[j] - lse) - off_t));
            d[j] = j == y ? v - (float)(scale * (on - off_t)) : v;
        }
    }
}

/* Sum n doubles of a and of b into out[0], out[1] (one block, fixed order). */
__global__ void sum2_kernel(const double *a, const double *b, int n, double *out)
{
    __shared__ double sa[THREADS], sb[THREADS];
    double x = 0.0, y = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        x += a[i];
        y += b[i];
    }
    sa[threadIdx.x] = x;
    sb[threadIdx.x] = y;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) {
            sa[threadIdx.x] += sa[threadIdx.x + s];
            sb[threadIdx.x] += sb[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[0] = sa[0];
        out[1] = sb[0];
    }
}

extern "C" int dl_cuda_softmax_xent(dl_cuda_t *g, const float *logits, const int32_t *labels, int n,
                                    int k, float smoothing, float scale, float *dlogits,
                                    double *loss_sum, int64_t *correct, dl_err_t *err)
{
    if (2 * (int64_t)n > g->n_rows) { /* grown once, kept for the next batches */
        CUDA_TRY(cudaStreamSynchronize(g->stream), err);
        cudaFree(g->rows);
        g->rows = NULL;
        g->n_rows = 0;
        CUDA_TRY(cudaMalloc(&g->rows, 2 * (size_t)n * sizeof(double)), err);
        g->n_rows = 2 * (int64_t)n;
    }
    double *rows = g->rows;
    int64_t threads = (int64_t)n * 32;
    xent_kernel<<<(unsigned)((threads + THREADS - 1) / THREADS), THREADS, 0, g->stream>>>(
        logits, labels, n, k, (double)smoothing, scale, dlogits, rows, rows + n);
    LAUNCH_CHECK(err);
    sum2_kernel<<<1, THREADS, 0, g->stream>>>(rows, rows + n, n, g->reduce);
    LAUNCH_CHECK(err);
    CUDA_TRY(cudaMemcpyAsync(g->reduce_host, g->reduce, 2 * sizeof(double), cudaMemcpyDeviceToHost,
                             g->stream),
             err);
    CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    *loss_sum = g->reduce_host[0];
    if (correct)
        *correct = (int64_t)g->reduce_host[1];
    return 0;
}

__global__ void normalize_u8_kernel(const uint8_t *u8, const float *lut, int64_t total, int c,
                                    int64_t plane, float *x)
{
    GRID_LOOP(i, total)
    {
        int ch = (int)((i / plane) % c);
        x[i] = lut[ch * 256 + u8[i]];
    }
}

extern "C" int dl_cuda_normalize_u8(dl_cuda_t *g, const uint8_t *u8, const float *lut, int64_t n,
                                    int c, int64_t plane, float *x, dl_err_t *err)
{
    int64_t total = n * c * plane;
    if (total <= 0)
        return 0;
    normalize_u8_kernel<<<blocks_for(total), THREADS, 0, g->stream>>>(u8, lut, total, c, plane, x);
    LAUNCH_CHECK(err);
    return 0;
}

/* The loops of runtime/optim.c, one element per thread. */
__global__ void sgd_kernel(float *p, const float *g, float *buf, int64_t n, float lr, float mu,
                           float wd, int nesterov)
{
    GRID_LOOP(i, n)
    {
        float gi = g[i] + wd * p[i];
        if (mu == 0.0f) {
            p[i] -= lr * gi;
            continue;
        }
        float b = mu * buf[i] + gi;
        buf[i] = b;
        p[i] -= lr * (nesterov ? gi + mu * b : b);
    }
}

extern "C" int dl_cuda_sgd_update(dl_cuda_t *g, float *p, const float *grad, float *buf, int64_t n,
                                  float lr, float momentum, float weight_decay, int nesterov,
                                  dl_err_t *err)
{
    if (n <= 0)
        return 0;
    sgd_kernel<<<blocks_for(n), THREADS, 0, g->stream>>>(p, grad, buf, n, lr, momentum,
                                                         weight_decay, nesterov);
    LAUNCH_CHECK(err);
    return 0;
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, float b1,
                             float b2, float eps, float decay, float step, float c2)
{
    GRID_LOOP(i, n)
    {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step * mi / (sqrtf(vi) / c2 + eps);
    }
}

extern "C" int dl_cuda_adamw_update(dl_cuda_t *g, float *p, const float *grad, float *m, float *v,
                                    int64_t n, float lr, float beta1, float beta2, float eps,
                                    float weight_decay, float c1, float c2, dl_err_t *err)
{
    if (n <= 0)
        return 0;
    adamw_kernel<<<blocks_for(n), THREADS, 0, g->stream>>>(p, grad, m, v, n, beta1, beta2, eps,
                                                           1.0f - lr * weight_decay, lr / c1, c2);
    LAUNCH_CHECK(err);
    return 0;
}
