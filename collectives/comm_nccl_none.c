/* The NCCL collectives of a build without CUDA (CMake found no CUDA
 * toolkit, or DLTRAIN_CUDA=OFF): every call fails with DL_EINPUT and a
 * sentence that says so, and the MPI collectives work as ever. See comm.h. */
#include "comm.h"

#define NO_NCCL                                                                                    \
    "this dltrain was built without CUDA, so it has no NCCL collectives (CMake found no CUDA "     \
    "toolkit, or DLTRAIN_CUDA=OFF); rebuild with the CUDA toolkit and NCCL installed, or use "     \
    "device = cpu, whose collectives are MPI's"

int dl_comm_nccl_init(dl_comm_t *c, dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

int dl_comm_nccl_enabled(const dl_comm_t *c)
{
    return 0;
}

int dl_comm_nccl_allreduce_sum_f32(dl_comm_t *c, float *dev_buf, int64_t n, void *stream,
                                   dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

int dl_comm_nccl_wait(dl_comm_t *c, void *stream, dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

int dl_comm_nccl_stream(dl_comm_t *c, void **stream, dl_err_t *err)
{
    *stream = NULL;
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}

int dl_comm_nccl_after(dl_comm_t *c, void *stream, void *after, dl_err_t *err)
{
    return DL_ERR(err, DL_EINPUT, "%s", NO_NCCL);
}
