/* What comm_mpi.c shares with the NCCL path of the collectives
 * (comm_nccl.c, comm_nccl_none.c): the watchdog's bookkeeping and a way to
 * attach the NCCL communicator to a dl_comm_t. Only collectives/ includes
 * this header; everything else uses comm.h. */
#ifndef DL_COMM_INTERNAL_H
#define DL_COMM_INTERNAL_H

#include <stddef.h>

#include "comm.h"

/* Something attached to a communicator (the NCCL communicator): abort(arg)
 * is called by whichever thread ends the job through the watchdog or a
 * failed collective (the watchdog's own thread, too), after the message is
 * printed and before the process exits, so that a GPU collective that hangs
 * cannot keep the process alive; release(arg) is called by dl_comm_free
 * first of all, on every rank. */
typedef struct dl_comm_ext {
    void *arg;
    void (*abort)(void *arg);
    void (*release)(void *arg);
} dl_comm_ext_t;
/* Attach ext (NULL: detach). One at a time. */
void dl_comm_set_ext(dl_comm_t *c, const dl_comm_ext_t *ext);
/* The attached ext's arg, or NULL. */
void *dl_comm_ext_arg(const dl_comm_t *c);

/* The calling thread enters, and leaves, a collective that it completes by
 * polling (an NCCL operation): the watchdog watches it as it watches the
 * MPI collectives (heartbeats, the ranks that did not arrive) and calls it
 * the "NCCL initialisation" (init = 1) or the "NCCL all-reduce" (init = 0). */
void dl_comm_enter_nccl(dl_comm_t *c, int init);
void dl_comm_leave_nccl(dl_comm_t *c);

/* The watchdog's timeout in seconds (0: off), and in what (if not NULL)
 * what the job is doing, as dl_comm_watch last said ("start-up" before). */
double dl_comm_watch_state(dl_comm_t *c, char *what, size_t what_size);

/* End the job with status 3 and the message, as a failed collective does
 * (the attached abort first). For the ranks' own checks while they poll a
 * collective: the other ranks may be waiting in it and could not be told
 * otherwise. */
void dl_comm_fatal(dl_comm_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)))
__attribute__((noreturn));

#endif
