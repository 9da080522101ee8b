/* Internal to the CUDA backend (the .cu files of models/): the model's CUDA
 * resources, error checks that carry file and line, launch shapes, and the
 * row-major matrix product every layer uses. Not part of any interface. */
#ifndef DL_CUDA_CUH
#define DL_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "device.h"
#include "model.h"
}

struct dl_cuda {
    cudaStream_t stream;
    cublasHandle_t blas;
    int tf32;
    float *ones; /* n_ones floats of 1, for bias gradients as products */
    int64_t n_ones;
    double *reduce;      /* small device scratch for reductions (DL_CUDA_REDUCE doubles) */
    double *reduce_host; /* pinned, the same size */
    double *rows;        /* n_rows doubles: per-row scratch of the loss */
    int64_t n_rows;
};
#define DL_CUDA_REDUCE 64

/* The CUDA context of a layer's model (set by the model on CUDA). */
#define LAYER_CUDA(l) ((dl_cuda_t *)(l)->cuda)

/* cuBLAS, opened with dlopen when the first GPU model or benchmark needs it
 * rather than linked: loading libcublasLt makes about 210 MB resident at
 * start-up, which every CPU run of a CUDA build would otherwise pay (and
 * which broke the streaming memory test). The calls dltrain makes: */
typedef struct dl_cublas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasGetStatusString) status_string;
} dl_cublas_api_t;
/* Open cuBLAS once per process (later calls return the first outcome). */
int dl_cublas_load(dl_err_t *err);
/* The table, after dl_cublas_load succeeded. */
const dl_cublas_api_t *dl_cublas(void);

int dl_cuda_fail(dl_err_t *err, cudaError_t rc, const char *what, const char *file, int line);
int dl_cublas_fail(dl_err_t *err, cublasStatus_t rc, const char *what, const char *file, int line);
/* Evaluate a CUDA runtime call; on failure record it in err and return its status. */
#define CUDA_TRY(call, err)                                                                        \
    do {                                                                                           \
        cudaError_t rc_ = (call);                                                                  \
        if (rc_ != cudaSuccess)                                                                    \
            return dl_cuda_fail((err), rc_, #call, __FILE__, __LINE__);                            \
    } while (0)
#define CUBLAS_TRY(call, err)                                                                      \
    do {                                                                                           \
        cublasStatus_t rc_ = (call);                                                               \
        if (rc_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return dl_cublas_fail((err), rc_, #call, __FILE__, __LINE__);                          \
    } while (0)
/* After a kernel launch: a bad launch configuration shows here at once;
 * faults inside the kernel show at the next dl_cuda_sync. */
#define LAUNCH_CHECK(err) CUDA_TRY(cudaGetLastError(), err)

/* A layer pass that failed: its message goes into l->err, which the model
 * reports, and the status is returned. */
#define LAYER_ERR(l) (&(l)->err)

#define THREADS 256
/* Blocks for n threads of THREADS each, capped (kernels loop over the rest). */
static inline unsigned blocks_for(int64_t n)
{
    int64_t b = (n + THREADS - 1) / THREADS;
    if (b < 1)
        b = 1;
    return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}
#define GRID_LOOP(i, n)                                                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* Row-major C[m x n] = alpha * op(A) op(B) + beta * C, with lda, ldb, ldc
 * the row lengths of the stored matrices; cuBLAS is column-major, and a
 * row-major matrix is its transpose in column-major, so this asks for
 * C^T = op(B)^T op(A)^T. */
int dl_cuda_gemm(dl_cuda_t *g, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                 dl_err_t *err);
/* Ones for bias gradients: at least n of them in g->ones. */
int dl_cuda_ones(dl_cuda_t *g, int64_t n, dl_err_t *err);

/* Element-wise activation as activation.c (same formulas, float). */
__device__ __forceinline__ float dl_dev_act(dl_act_t a, float x)
{
    switch (a) {
    case DL_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case DL_ACT_LEAKY: return x > 0.0f ? x : 0.01f * x;
    case DL_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case DL_ACT_TANH: return tanhf(x);
    case DL_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    default: return x;
    }
}
/* dy * f'(x) from x and y = f(x). */
__device__ __forceinline__ float dl_dev_act_grad(dl_act_t a, float x, float y, float dy)
{
    switch (a) {
    case DL_ACT_RELU: return y > 0.0f ? dy : 0.0f;
    case DL_ACT_LEAKY: return y > 0.0f ? dy : 0.01f * dy;
    case DL_ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }
    case DL_ACT_TANH: return dy * (1.0f - y * y);
    case DL_ACT_SIGMOID: return dy * y * (1.0f - y);
    default: return dy;
    }
}

#endif
