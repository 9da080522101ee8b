/* Process setup; see dist.h. */
#include <cblas.h>
#include <mpi.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"

int dl_dist_init(dl_dist_t *d, int *argc, char ***argv, dl_err_t *err)
{
    memset(d, 0, sizeof *d);
    int provided = 0;
    /* The training thread makes every collective call; the watchdog thread
     * of collectives/ sends and receives heartbeats at the same time, which
     * needs MPI_THREAD_MULTIPLE (without it the watchdog stays off). The
     * data loading thread never calls MPI. */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB,
                      "MPI_Init_thread failed; is Open MPI installed and was the "
                      "program started with mpirun?");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node) !=
        MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Comm_split_type failed while finding ranks per node");
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    MPI_Comm_free(&node);
    if (gethostname(d->host, sizeof d->host - 1) != 0)
        strcpy(d->host, "unknown");
    return 0;
}

void dl_dist_set_threads(dl_dist_t *d, int threads)
{
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (int)(cores / (d->local_size > 0 ? d->local_size : 1)) : 1;
        if (threads < 1)
            threads = 1;
    }
    d->threads = threads;
    openblas_set_num_threads(threads);
}

void dl_dist_finalize(dl_dist_t *d)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done)
        MPI_Finalize();
}
