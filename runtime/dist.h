/* Process setup for a distributed run: MPI initialisation, rank, local rank
 * on the node (shared-memory split), and BLAS threads per rank. */
#ifndef DL_DIST_H
#define DL_DIST_H

#include "error.h"

typedef struct dl_dist {
    int rank, size;             /* in the world */
    int local_rank, local_size; /* among the ranks sharing this node */
    int threads;                /* BLAS threads this rank uses */
    char host[256];
    /* What is wrong with how this rank was started, as a sentence for the
     * user ("" if nothing): the launcher's idea of the world or of the local
     * rank differs from MPI's. Found by dl_dist_init, acted on by
     * dl_dist_check once the ranks can agree. */
    char launch_problem[512];
} dl_dist_t;

/* Initialise MPI (MPI_THREAD_MULTIPLE, see dist.c), find rank, world size
 * and local rank by a shared-memory split of the world, and cross-check
 * them against the launcher: SLURM_NTASKS against the world size (srun
 * without MPI support starts N separate one-rank jobs), and the local rank
 * against OMPI_COMM_WORLD_LOCAL_RANK (mpirun) or SLURM_LOCALID (srun). */
int dl_dist_init(dl_dist_t *d, int *argc, char ***argv, dl_err_t *err);
/* Set the BLAS threads of this rank; 0 = the node's cores / local ranks. */
void dl_dist_set_threads(dl_dist_t *d, int threads);
void dl_dist_finalize(dl_dist_t *d);

#endif
