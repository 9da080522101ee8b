/* dltrain devices: where a model's buffers live and its passes run. The CPU
 * needs nothing; the CUDA backend (one GPU per rank, cuBLAS and dltrain's
 * own kernels) is compiled only when the CUDA toolkit is found (CMake
 * DLTRAIN_CUDA). A build without it links cuda_none.c, whose functions say
 * so in their errors, so no caller needs #ifdef: the same binary runs on
 * either device when CUDA was found. Nothing here depends on MPI or HDF5.
 *
 * Pointers called "device" below are GPU memory on DL_DEV_CUDA and host
 * memory on DL_DEV_CPU. */
#ifndef DL_DEVICE_H
#define DL_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DL_DEV_CPU, DL_DEV_CUDA } dl_dev_t;

/* 1 if this build has the CUDA backend. */
int dl_cuda_built(void);
/* The number of GPUs this process can use (CUDA_VISIBLE_DEVICES applies):
 * 0 with a sentence in why when there are none or CUDA cannot start (no
 * driver, no CUDA in this build). */
int dl_cuda_device_count(char *why, size_t why_len);
/* Make GPU `index` (0-based among the visible ones) this thread's device;
 * name (if not NULL) gets its name and total memory, e.g. "NVIDIA H100 80GB
 * HBM3, 79.1 GiB". */
int dl_cuda_use_device(int index, char *name, size_t name_len, dl_err_t *err);

/* The PCI bus id of visible GPU `index` ("0000:1b:00.0"): two ranks with
 * the same id on one node share a GPU, which NCCL refuses. */
int dl_cuda_bus_id(int index, char *buf, size_t len, dl_err_t *err);

/* One model's CUDA resources: its stream, cuBLAS handle and small scratch.
 * tf32: let cuBLAS use TF32 tensor cores for fp32 products. Opaque. */
typedef struct dl_cuda dl_cuda_t;
int dl_cuda_create(dl_cuda_t **out, int tf32, dl_err_t *err);
void dl_cuda_destroy(dl_cuda_t *g);
/* The stream every pass of the model runs on (a cudaStream_t). */
void *dl_cuda_stream(dl_cuda_t *g);
/* Wait until everything queued on the model's stream has run; reports the
 * first error of a kernel that failed since the last check. */
int dl_cuda_sync(dl_cuda_t *g, dl_err_t *err);

/* cuBLAS math modes for dl_cuda_sgemm_tflops: plain fp32 (the default mode,
 * no tensor cores, what a model with tf32 = 0 uses) and TF32 tensor cores
 * (what a model with tf32 = 1 uses). */
typedef enum { DL_SGEMM_FP32, DL_SGEMM_TF32 } dl_sgemm_math_t;
/* The GPU's practical matrix-product peak, for benchmarks: TFLOP/s of a
 * square n x n x n cublasSgemm on the current device in the given math
 * mode, the median of reps products (1..64) timed with CUDA events after
 * one warm-up, on data that is not all zeros. Uses its own stream, handle
 * and buffers (3 n^2 floats), all freed before it returns. */
int dl_cuda_sgemm_tflops(int n, int reps, dl_sgemm_math_t math, double *tflops, dl_err_t *err);

/* Memory. dl_dev_alloc returns zeroed memory or NULL with err set. */
void *dl_dev_alloc(dl_dev_t d, size_t bytes, dl_err_t *err);
void dl_dev_free(dl_dev_t d, void *p);
/* Pinned host memory for fast asynchronous copies (plain calloc on the
 * CPU); freed with dl_host_free. */
void *dl_host_alloc(dl_dev_t d, size_t bytes, dl_err_t *err);
void dl_host_free(dl_dev_t d, void *p);
typedef enum { DL_COPY_H2D, DL_COPY_D2H, DL_COPY_D2D } dl_copy_t;
/* Copy bytes on g's stream (g NULL: the CPU, a memcpy). D2H copies wait
 * for the stream, so dst is ready on return; the others are queued. */
int dl_dev_copy(dl_cuda_t *g, void *dst, const void *src, size_t bytes, dl_copy_t kind,
                dl_err_t *err);
int dl_dev_zero(dl_cuda_t *g, void *p, size_t bytes, dl_err_t *err);

/* ---- kernels the model and the optimisers call (device pointers) ---- */

/* d[i] += g[i] for i < len. */
int dl_cuda_add(dl_cuda_t *g, float *d, const float *s, int64_t len, dl_err_t *err);
/* *finite = 1 if every v[i] (i < len) is finite, else 0 (waits for it). */
int dl_cuda_all_finite(dl_cuda_t *g, const float *v, int64_t len, int *finite, dl_err_t *err);
/* Softmax cross-entropy over n rows of k logits on the GPU, as
 * dl_softmax_xent (model.h): labels are device int32; *loss_sum and
 * *correct come back to the host (the call waits for them); dlogits (may
 * be NULL) receives scale * (softmax - target). */
int dl_cuda_softmax_xent(dl_cuda_t *g, const float *logits, const int32_t *labels, int n, int k,
                         float smoothing, float scale, float *dlogits, double *loss_sum,
                         int64_t *correct, dl_err_t *err);
/* x[i] = (float)((u8[i] - mean[c]) / std[c]) for n samples of c planes of
 * plane floats each, through the 256-entry table lut (c x 256 floats,
 * device) that the CPU uses, so both give the same bits. */
int dl_cuda_normalize_u8(dl_cuda_t *g, const uint8_t *u8, const float *lut, int64_t n, int c,
                         int64_t plane, float *x, dl_err_t *err);
/* Optimiser updates over n parameters, with the formulas of
 * runtime/optim.c (as torch.optim.SGD and AdamW). */
int dl_cuda_sgd_update(dl_cuda_t *g, float *p, const float *grad, float *buf, int64_t n, float lr,
                       float momentum, float weight_decay, int nesterov, dl_err_t *err);
int dl_cuda_adamw_update(dl_cuda_t *g, float *p, const float *grad, float *m, float *v, int64_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         float c1, float c2, dl_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
