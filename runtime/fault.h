/* Fault injection, for testing how dltrain handles faults (docs/user-guide.md,
 * "Testing fault handling"). The environment says where a fault happens:
 *
 *   DLTRAIN_FAULT_NAN=RANK:STEP[,RANK:STEP...]
 *       on rank RANK, the gradient of (1-based) step STEP is made NaN as
 *       the backward pass makes it final, before any of it is all-reduced,
 *       the first time this process runs that step (a roll-back that
 *       repeats the step does not inject again).
 *
 * Unset, nothing happens and the cost is one comparison per step. Which
 * injections have fired is process state, so it lives here in runtime/. */
#ifndef DL_FAULT_H
#define DL_FAULT_H

#include <stdint.h>

#include "error.h"

/* Read the fault variables; DL_EINPUT naming the variable if one is
 * malformed. Every rank calls it (they see the same environment). */
int dl_fault_init(dl_err_t *err);

/* Before the backward pass of 0-based step `step` on rank `rank`: 1 if
 * DLTRAIN_FAULT_NAN lists this rank and step and it has not fired yet (it
 * fires now and says so on stderr); the caller then makes every gradient
 * of the step NaN before it is all-reduced. */
int dl_fault_nan_due(int rank, int64_t step);

#endif
