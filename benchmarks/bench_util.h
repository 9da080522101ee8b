/* Helpers every benchmark program times with: a monotonic clock and the
 * comparison for sorting repetition times (medians). Header-only: each
 * benchmark is one program. */
#ifndef DL_BENCH_UTIL_H
#define DL_BENCH_UTIL_H

#include <time.h>

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
