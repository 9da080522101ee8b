/* MPI implementation of the collectives interface (the CPU path). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "comm.h"

struct dl_comm {
    MPI_Comm comm;
    int rank, size;
};

/* MPI counts are int: larger buffers go in pieces of at most this many items. */
#define CHUNK ((int64_t)1 << 30)

static int mpi_fail(dl_err_t *err, int rc, const char *what, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = '\0';
    return dl_err_set(err, DL_ELIB, file, line, "%s failed: %s", what, msg);
}
#define MPI_CHECK(call, err)                                                                       \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS)                                                                    \
            return mpi_fail((err), rc_, #call, __FILE__, __LINE__);                                \
    } while (0)

int dl_comm_create_world(dl_comm_t **out, dl_err_t *err)
{
    dl_comm_t *c = dl_calloc(1, sizeof *c, err);
    if (!c)
        return DL_ENOMEM;
    /* Our own duplicate keeps dltrain's traffic apart from anyone else's. */
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (rc != MPI_SUCCESS) {
        free(c);
        return mpi_fail(err, rc, "MPI_Comm_dup", __FILE__, __LINE__);
    }
    /* Errors come back as return codes rather than aborting the job, so they
     * can be reported with context. */
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    *out = c;
    return 0;
}

void dl_comm_free(dl_comm_t *c)
{
    if (!c)
        return;
    MPI_Comm_free(&c->comm);
    free(c);
}

int dl_comm_rank(const dl_comm_t *c)
{
    return c->rank;
}
int dl_comm_size(const dl_comm_t *c)
{
    return c->size;
}

static int allreduce(dl_comm_t *c, void *buf, int64_t n, size_t item, MPI_Datatype t, MPI_Op op,
                     dl_err_t *err)
{
    char *p = buf;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * (int64_t)item, (int)k, t, op, c->comm),
                  err);
    }
    return 0;
}

int dl_comm_allreduce_sum_f32(dl_comm_t *c, float *buf, int64_t n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(float), MPI_FLOAT, MPI_SUM, err);
}

int dl_comm_allreduce_sum_f64(dl_comm_t *c, double *buf, int64_t n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(double), MPI_DOUBLE, MPI_SUM, err);
}

int dl_comm_allreduce_min_i64(dl_comm_t *c, int64_t *buf, int n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(int64_t), MPI_INT64_T, MPI_MIN, err);
}

int dl_comm_broadcast(dl_comm_t *c, void *buf, int64_t bytes, int root, dl_err_t *err)
{
    char *p = buf;
    for (int64_t off = 0; off < bytes; off += CHUNK) {
        int64_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_CHECK(MPI_Bcast(p + off, (int)k, MPI_BYTE, root, c->comm), err);
    }
    return 0;
}

int dl_comm_barrier(dl_comm_t *c, dl_err_t *err)
{
    MPI_CHECK(MPI_Barrier(c->comm), err);
    return 0;
}

void dl_comm_abort(int status)
{
    MPI_Abort(MPI_COMM_WORLD, status);
}
