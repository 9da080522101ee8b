/* Pre-emption and time-limit signals. SIGTERM (scheduler pre-emption,
 * scancel) and SIGUSR1 (Slurm's warning before the time limit, with
 * sbatch --signal) only set a flag here; the training loop asks every rank
 * at the next step boundary, and if any rank has one, all of them save a
 * checkpoint and exit with DL_EXIT_REQUEUE. */
#ifndef DL_SIGNALS_H
#define DL_SIGNALS_H

#include "error.h"

int dl_signals_install(dl_err_t *err);
/* The last signal received (0: none). */
int dl_signal_pending(void);
/* "SIGTERM", "SIGUSR1", or "signal N". */
const char *dl_signal_name(int sig, char *buf, int size);

#endif
