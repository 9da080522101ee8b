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
} dl_dist_t;

int dl_dist_init(dl_dist_t *d, int *argc, char ***argv, dl_err_t *err);
/* Set the BLAS threads of this rank; 0 = the node's cores / local ranks. */
void dl_dist_set_threads(dl_dist_t *d, int threads);
void dl_dist_finalize(dl_dist_t *d);

#endif
