/* Fault injection; see fault.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

#define FAULT_MAX 64

typedef struct fault_nan {
    int rank;
    int64_t step; /* 1-based, as the user counts */
    int fired;
} fault_nan_t;

static fault_nan_t nan_at[FAULT_MAX];
static int n_nan;

/* One "RANK:STEP" from *p, which is moved past it; 0 or -1. */
static int parse_pair(const char **p, fault_nan_t *f)
{
    char *end;
    errno = 0;
    long rank = strtol(*p, &end, 10);
    if (end == *p || *end != ':' || errno || rank < 0 || rank > INT_MAX)
        return -1;
    const char *s = end + 1;
    long long step = strtoll(s, &end, 10);
    if (end == s || errno || step < 1 || (*end != ',' && *end != '\0'))
        return -1;
    *f = (fault_nan_t){.rank = (int)rank, .step = step};
    *p = *end == ',' ? end + 1 : end;
    return 0;
}

int dl_fault_init(dl_err_t *err)
{
    n_nan = 0;
    const char *v = getenv("DLTRAIN_FAULT_NAN");
    if (!v || !*v)
        return 0;
    for (const char *p = v; *p;) {
        if (n_nan == FAULT_MAX)
            return DL_ERR(err, DL_EINPUT, "DLTRAIN_FAULT_NAN=%s: at most %d RANK:STEP pairs", v,
                          FAULT_MAX);
        if (parse_pair(&p, &nan_at[n_nan]) != 0) {
            n_nan = 0;
            return DL_ERR(err, DL_EINPUT,
                          "DLTRAIN_FAULT_NAN=%s: expected RANK:STEP[,RANK:STEP...] with RANK >= 0 "
                          "and STEP >= 1 (for example 1:50,1:51)",
                          v);
        }
        n_nan++;
    }
    return 0;
}

int dl_fault_nan_due(int rank, int64_t step)
{
    int due = 0;
    for (int i = 0; i < n_nan; i++) {
        fault_nan_t *f = &nan_at[i];
        if (f->fired || f->rank != rank || f->step != step + 1)
            continue;
        f->fired = due = 1;
        fprintf(stderr,
                "dltrain: fault injection (DLTRAIN_FAULT_NAN): rank %d, step %lld: NaN "
                "gradient\n",
                rank, (long long)step + 1);
    }
    return due;
}
