/* The device functions of a build without the CUDA backend (CMake found no
 * CUDA toolkit, or DLTRAIN_CUDA=OFF): the CPU works as ever, and asking for
 * a GPU is an error that says how to get one. See device.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define NO_CUDA                                                                                    \
    "this dltrain was built without CUDA (CMake found no CUDA toolkit, or DLTRAIN_CUDA=OFF); "     \
    "rebuild with the CUDA toolkit installed, or use device = cpu"

const dl_layer_ops_t *dl_cuda_layer_ops(dl_layer_type_t t)
{
    return NULL;
}

int dl_cuda_built(void)
{
    return 0;
}

int dl_cuda_device_count(char *why, size_t why_len)
{
    snprintf(why, why_len, "%s", NO_CUDA);
    return 0;
}

int dl_cuda_use_device(int index, char *name, size_t name_len, dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_CUDA);
}

int dl_cuda_bus_id(int index, char *buf, size_t len, dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_CUDA);
}

int dl_cuda_create(dl_cuda_t **out, int tf32, dl_err_t *err)
{
    *out = NULL;
    return DL_ERR(err, DL_EINPUT, "%s", NO_CUDA);
}

void dl_cuda_destroy(dl_cuda_t *g) {}

void *dl_cuda_stream(dl_cuda_t *g)
{
    return NULL;
}

int dl_cuda_sync(dl_cuda_t *g, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_sgemm_tflops(int n, int reps, dl_sgemm_math_t math, double *tflops, dl_err_t *err)
{
    *tflops = 0.0;
    return DL_ERR(err, DL_EINPUT, "%s", NO_CUDA);
}

void *dl_dev_alloc(dl_dev_t d, size_t bytes, dl_err_t *err)
{
    if (d != DL_DEV_CPU) {
        DL_ERR(err, DL_EINPUT, "%s", NO_CUDA);
        return NULL;
    }
    return dl_calloc(bytes ? bytes : 1, 1, err);
}

void dl_dev_free(dl_dev_t d, void *p)
{
    free(p);
}

void *dl_host_alloc(dl_dev_t d, size_t bytes, dl_err_t *err)
{
    return dl_calloc(bytes ? bytes : 1, 1, err);
}

void dl_host_free(dl_dev_t d, void *p)
{
    free(p);
}

int dl_dev_copy(dl_cuda_t *g, void *dst, const void *src, size_t bytes, dl_copy_t kind,
                dl_err_t *err)
{
    memcpy(dst, src, bytes);
    return 0;
}

int dl_dev_zero(dl_cuda_t *g, void *p, size_t bytes, dl_err_t *err)
{
    memset(p, 0, bytes);
    return 0;
}

/* The kernels below are reached only through a CUDA model, which this
 * build cannot create. */
int dl_cuda_add(dl_cuda_t *g, float *d, const float *s, int64_t len, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_all_finite(dl_cuda_t *g, const float *v, int64_t len, int *finite, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_softmax_xent(dl_cuda_t *g, const float *logits, const int32_t *labels, int n, int k,
                         float smoothing, float scale, float *dlogits, double *loss_sum,
                         int64_t *correct, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_normalize_u8(dl_cuda_t *g, const uint8_t *u8, const float *lut, int64_t n, int c,
                         int64_t plane, float *x, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_sgd_update(dl_cuda_t *g, float *p, const float *grad, float *buf, int64_t n, float lr,
                       float momentum, float weight_decay, int nesterov, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}

int dl_cuda_adamw_update(dl_cuda_t *g, float *p, const float *grad, float *m, float *v, int64_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         float c1, float c2, dl_err_t *err)
{
    return DL_ERR(err, DL_EINTERNAL, "%s", NO_CUDA);
}
