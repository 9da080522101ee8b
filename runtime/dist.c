#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
/* Process setup; see dist.h. */
#include <cblas.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"

/* An environment variable holding a whole non-negative number, else -1. */
static long env_count(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return *end || n < 0 ? -1 : n;
}

/* The launcher's view against MPI's (see dist.h). */
static void check_launch(dl_dist_t *d)
{
    long ntasks = env_count("SLURM_NTASKS"), ompi_local = env_count("OMPI_COMM_WORLD_LOCAL_RANK");
    long slurm_local = env_count("SLURM_LOCALID");
    if (ntasks > 0 && ntasks != d->size)
        snprintf(d->launch_problem, sizeof d->launch_problem,
                 "Slurm started %ld tasks (SLURM_NTASKS), but this MPI job has %d rank(s): "
                 "srun with an MPI library that does not talk to it starts %ld separate jobs of "
                 "one rank each, or mpirun -np asks for fewer ranks than the allocation has. "
                 "Start dltrain with mpirun -np %ld inside the allocation (or srun --mpi=pmix), "
                 "or ask for as many tasks as ranks",
                 ntasks, d->size, ntasks, ntasks);
    else if (ompi_local >= 0 && ompi_local != d->local_rank)
        snprintf(d->launch_problem, sizeof d->launch_problem,
                 "rank %d on %s: mpirun says its local rank is %ld (OMPI_COMM_WORLD_LOCAL_RANK) "
                 "but the ranks that share this node's memory make it %d: the ranks of one "
                 "node do not see each other (separate containers?), so devices and threads "
                 "per node would be wrong",
                 d->rank, d->host, ompi_local, d->local_rank);
    else if (ompi_local < 0 && slurm_local >= 0 && getenv("SLURM_STEP_ID") &&
             slurm_local != d->local_rank)
        snprintf(d->launch_problem, sizeof d->launch_problem,
                 "rank %d on %s: srun says its local rank is %ld (SLURM_LOCALID) but the ranks "
                 "that share this node's memory make it %d: the ranks of one node do not see "
                 "each other (separate containers?), so devices and threads per node would be "
                 "wrong",
                 d->rank, d->host, slurm_local, d->local_rank);
}

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
    check_launch(d);
    return 0;
}

void dl_dist_set_threads(dl_dist_t *d, int threads)
{
    if (threads <= 0) {
        /* The cores this process may run on: mpirun's binding (to a core,
         * a socket) and Slurm's cpuset narrow them, and on a shared node
         * the whole machine's count would oversubscribe. A set shared by
         * several local ranks is divided among them; a rank bound to fewer
         * cores than there are local ranks has them to itself. */
        cpu_set_t set;
        long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                                 : sysconf(_SC_NPROCESSORS_ONLN);
        int local = d->local_size > 0 ? d->local_size : 1;
        threads = cores >= local ? (int)(cores / local) : (int)cores;
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
