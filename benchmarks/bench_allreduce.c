/* Our collectives layer against raw MPI_Allreduce (or, with --nccl, our
 * NCCL path against raw ncclAllReduce), measured the way nccl-tests
 * measures all-reduce, in the same run on the same buffer. A benchmark: it
 * prints figures and never fails on time.
 *
 *   mpirun -np N bench_allreduce [--nccl] [--min-bytes 8] [--max-bytes 256M] [--factor 2]
 *                                [--reps 15] [--target-ms 20]
 *                                [--bucket-mb MB [--first-bucket-mb MB]]
 *   mpirun -np N bench_allreduce --model cnn [--batch 64] [--steps 10] [--threads 1]
 *                                [--reps 15] [--bucket-mb 25] [--first-bucket-mb 1]
 *
 * For each size (float32 counts, min-bytes to max-bytes, times factor) two
 * implementations take turns on one buffer:
 *   ours  dl_comm_allreduce_sum_f32 (collectives/comm_mpi.c): the call
 *         runtime/train.c makes for the gradients with [train] bucket_mb = 0,
 *         with its watchdog bookkeeping and the watchdog thread running;
 *   raw   MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM,
 *         MPI_COMM_WORLD);
 * and with --bucket-mb a third:
 *   bucketed  the buffer in gradient buckets (collectives/buckets.h) of that
 *         size, all started at once and waited for: what buckets cost when
 *         nothing overlaps them (non-blocking MPI_Iallreduce per bucket).
 * MPI is initialised by dl_dist_init, as dltrain does (MPI_THREAD_MULTIPLE),
 * so all run under the same thread level. A measurement is `iters` calls
 * timed together after a barrier (iters chosen per size so that it takes
 * about --target-ms), its time per call the largest over ranks. After one
 * warm-up measurement of each, --reps repetitions rotate which goes first;
 * the table gives the median time of each and the median of the
 * per-repetition ratios. As in nccl-tests, algbw = bytes / time and busbw =
 * algbw x 2(n-1)/n, the bytes each rank's link carries in a ring.
 *
 * --nccl: the buffer is GPU memory (each rank uses the GPU of its local
 * rank, or GPU 0 where it sees only one), and the two are
 *   ours  dl_comm_nccl_allreduce_sum_f32 (collectives/comm_nccl.c) on the
 *         non-blocking NCCL communicator dltrain uses, with the watchdog's
 *         bookkeeping, and dl_comm_nccl_wait, which polls for the end;
 *   raw   ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum) on a second
 *         communicator with NCCL's default (blocking) configuration, and
 *         cudaStreamSynchronize;
 * both on the same stream. As in nccl-tests, a measurement queues its
 * `iters` calls back to back and waits once at the end. Without a GPU, or
 * in a build without CUDA, it stops with a message (exit status 2); it
 * does not combine with --bucket-mb or --model.
 *
 * --model times training steps of a preset model (as bench_train: synthetic
 * 1 x 28 x 28 inputs, 10 classes, no optimiser update) on every rank, in
 * three ways taking turns: compute only (no all-reduce: the floor), one
 * all-reduce after the backward pass (bucket_mb = 0), and the buckets
 * started during the backward pass as dltrain starts them; per step, the
 * time and the wait after the backward pass (dltrain's allreduce_ms),
 * averaged over ranks, medians of the repetitions. */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_nccl.h"
#include "bench_util.h"

#include <cblas.h>

#include "collectives/buckets.h"
#include "collectives/comm.h"
#include "models/device.h"
#include "models/model.h"
#include "models/presets.h"
#include "models/rng.h"
#include "runtime/dist.h"

#define MAX_REPS 64
#define MAX_ITERS 100000
#define MIB ((int64_t)1 << 20)
#define WATCHDOG_TIMEOUT_S 600.0 /* dltrain's default train.timeout */

typedef struct opts {
    int64_t min_bytes, max_bytes;
    int factor, reps;
    double target_s;
    double bucket_mb, first_mb; /* bucket_mb > 0: the bucketed all-reduce as well */
    const char *model;          /* --model: training steps of this preset */
    int batch, steps, threads;
    int nccl; /* --nccl */
} opts_t;

/* --nccl: this rank's GPU, its stream, the GPU buffer, pinned host memory
 * for the checks and the raw communicator. */
typedef struct gpu {
    dl_cuda_t *g;
    void *stream;
    float *dev, *host;
    bench_raw_nccl_t *raw;
    int index;
    char name[160];
} gpu_t;

/* The implementations a row compares. */
enum { IMPL_RAW, IMPL_OURS, IMPL_BUCKETED, N_IMPL };

/* A row of the table: median seconds per call and the median ratios. */
typedef struct row {
    int64_t bytes, count;
    int iters, buckets;
    double ours_s, raw_s, ratio;
    double ratio_lo, ratio_hi; /* the smallest and largest per-repetition ratio */
    double bkt_s, bkt_ratio;   /* bucketed: median time and bucketed/ours */
} row_t;

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* "1048576", "1024K", "1M", "256M", "1G" (binary units); 0 or -1. */
static int parse_bytes(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 1)
        return -1;
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end || v > (1LL << 40) >> shift)
        return -1;
    *out = (int64_t)v << shift;
    return 0;
}

/* An integer option from lo to hi; 0 or -1. */
static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.min_bytes = 8,
                  .max_bytes = 256 * MIB,
                  .factor = 2,
                  .reps = 15,
                  .target_s = 0.02,
                  .first_mb = 1.0,
                  .batch = 64,
                  .steps = 10,
                  .threads = 1};
    int bucket_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--nccl")) {
            o->nccl = 1;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--min-bytes")) {
            if (parse_bytes(v, &o->min_bytes))
                return -1;
        } else if (!strcmp(a, "--max-bytes")) {
            if (parse_bytes(v, &o->max_bytes))
                return -1;
        } else if (!strcmp(a, "--factor")) {
            if (parse_int(v, 2, 4, &o->factor) || o->factor == 3)
                return -1;
        } else if (!strcmp(a, "--reps")) {
            if (parse_int(v, 1, MAX_REPS, &o->reps))
                return -1;
        } else if (!strcmp(a, "--target-ms")) {
            o->target_s = 1e-3 * strtod(v, &end);
            if (*end || !(o->target_s > 0) || o->target_s > 10)
                return -1;
        } else if (!strcmp(a, "--bucket-mb") || !strcmp(a, "--first-bucket-mb")) {
            double mb = strtod(v, &end);
            if (*end || end == v || !(mb > 0) || mb > 1e6)
                return -1;
            if (a[2] == 'b')
                o->bucket_mb = mb, bucket_given = 1;
            else
                o->first_mb = mb;
        } else if (!strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "--batch")) {
            if (parse_int(v, 1, 1 << 16, &o->batch))
                return -1;
        } else if (!strcmp(a, "--steps")) {
            if (parse_int(v, 1, 1 << 20, &o->steps))
                return -1;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(v, 1, 1024, &o->threads))
                return -1;
        } else {
            return -1;
        }
    }
    if (o->nccl && (o->model || bucket_given)) /* buckets are the CPU path's, for now */
        return -1;
    if (o->model && !bucket_given) /* dltrain's default */
        o->bucket_mb = 25.0;
    /* whole float32 counts, at least one */
    o->min_bytes = o->min_bytes < 4 ? 4 : o->min_bytes / 4 * 4;
    o->max_bytes = o->max_bytes / 4 * 4;
    return o->max_bytes >= o->min_bytes ? 0 : -1;
}

static int64_t mib_bytes(double mb)
{
    return (int64_t)(mb * (double)MIB);
}

/* "8 B", "64 KiB", "256 MiB": sizes as the table's first column shows them. */
static void size_label(int64_t b, char *out, size_t size)
{
    if (b >= MIB && b % MIB == 0)
        snprintf(out, size, "%lld MiB", (long long)(b / MIB));
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(out, size, "%lld KiB", (long long)(b / 1024));
    else
        snprintf(out, size, "%lld B", (long long)b);
}

/* One in-place sum of buf[0..n-1] by implementation impl (bk: the buckets
 * over buf, for IMPL_BUCKETED); on the GPU (gpu not NULL) only queued. */
static int sum_once(dl_comm_t *c, gpu_t *gpu, int impl, dl_buckets_t *bk, float *buf, int64_t n,
                    dl_err_t *err)
{
    if (gpu && impl == IMPL_OURS)
        return dl_comm_nccl_allreduce_sum_f32(c, buf, n, gpu->stream, err);
    if (gpu)
        return bench_raw_nccl_allreduce(gpu->raw, buf, n, gpu->stream, err);
    if (impl == IMPL_OURS)
        return dl_comm_allreduce_sum_f32(c, buf, n, err);
    if (impl == IMPL_BUCKETED)
        return dl_buckets_finish(bk, err); /* starts every bucket, then waits */
    if (MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Allreduce of %lld floats failed", (long long)n);
    return 0;
}

/* Wait for the sums queued on the GPU: ours polls (dl_comm_nccl_wait), raw
 * synchronises the stream. Nothing to wait for on the CPU. */
static int finish(dl_comm_t *c, gpu_t *gpu, int impl, dl_err_t *err)
{
    if (!gpu)
        return 0;
    return impl == IMPL_OURS ? dl_comm_nccl_wait(c, gpu->stream, err) : dl_cuda_sync(gpu->g, err);
}

/* iters in-place sums of buf[0..n-1] by impl, started together after a
 * barrier (on the GPU: queued back to back, then one wait): seconds per
 * call, the largest over ranks (the slowest rank sets the pace of a
 * collective), the same on every rank. */
static int measure(dl_comm_t *c, gpu_t *gpu, int impl, dl_buckets_t *bk, float *buf, int64_t n,
                   int iters, double *out, dl_err_t *err)
{
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Barrier failed");
    int rc = 0;
    double t0 = bench_now_s();
    for (int i = 0; !rc && i < iters; i++)
        rc = sum_once(c, gpu, impl, bk, buf, n, err);
    if (!rc)
        rc = finish(c, gpu, impl, err);
    double t = (bench_now_s() - t0) / iters;
    if (!rc &&
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        rc = DL_ERR(err, DL_ELIB, "MPI_Allreduce of the timings failed");
    *out = t;
    return rc;
}

/* Every implementation must give the sum over ranks: every rank puts
 * rank + 1 everywhere, ours sums once (n(n+1)/2), raw sums that again, the
 * buckets (if any) once more. All values are small integers, exact in
 * float32. The buffer is zeroed after, so the timed sums never overflow or
 * go subnormal. On the GPU the values are filled and checked through the
 * pinned host copy. */
static int verify(dl_comm_t *c, gpu_t *gpu, dl_buckets_t *bk, float *buf, int64_t n, dl_err_t *err)
{
    int rank = dl_comm_rank(c), size = dl_comm_size(c), rc = 0;
    float *seen = gpu ? gpu->host : buf;
    for (int64_t i = 0; i < n; i++)
        seen[i] = (float)(rank + 1);
    if (gpu)
        rc = dl_dev_copy(gpu->g, buf, seen, (size_t)n * sizeof *buf, DL_COPY_H2D, err);
    float want = (float)size * (float)(size + 1) / 2.0f;
    const int order[] = {IMPL_OURS, IMPL_RAW, IMPL_BUCKETED};
    int64_t bad = -1;
    for (int k = 0; !rc && bad < 0 && k < (bk ? 3 : 2); k++) {
        rc = sum_once(c, gpu, order[k], bk, buf, n, err);
        if (!rc)
            rc = finish(c, gpu, order[k], err);
        if (!rc && gpu)
            rc = dl_dev_copy(gpu->g, seen, buf, (size_t)n * sizeof *buf, DL_COPY_D2H, err);
        for (int64_t i = 0; !rc && bad < 0 && i < n; i++)
            if (seen[i] != want)
                bad = i;
        want *= (float)size;
    }
    if (!rc && bad >= 0)
        rc = DL_ERR(err, DL_EINTERNAL,
                    "all-reduce of %lld floats: element %lld is %g on rank %d, not the sum over "
                    "ranks",
                    (long long)n, (long long)bad, (double)seen[bad], rank);
    if (gpu) {
        int zrc = dl_dev_zero(gpu->g, buf, (size_t)n * sizeof *buf, err);
        if (!zrc)
            zrc = dl_cuda_sync(gpu->g, err);
        rc = rc ? rc : zrc;
    } else {
        memset(buf, 0, (size_t)n * sizeof *buf);
    }
    return rc;
}

/* One row: check, choose iters, warm up, then the repetitions in turns. */
static int run_size(dl_comm_t *c, gpu_t *gpu, const opts_t *o, float *buf, int64_t bytes, row_t *r,
                    dl_err_t *err)
{
    int64_t n = bytes / 4;
    *r = (row_t){.bytes = bytes, .count = n, .iters = 1};
    dl_buckets_t *bk = NULL;
    int rc = o->bucket_mb > 0 ? dl_buckets_create(&bk, c, buf, n, mib_bytes(o->bucket_mb),
                                                  mib_bytes(o->first_mb), err)
                              : 0;
    int n_impl = bk ? N_IMPL : IMPL_BUCKETED;
    if (bk)
        r->buckets = dl_buckets_count(bk);
    if (!rc)
        rc = verify(c, gpu, bk, buf, n, err);
    /* iters from one call (the first call of a size pays for first touches),
     * then from a longer probe when a call is short */
    double t = 0;
    for (int probe = 0; !rc && probe < 2; probe++) {
        int k = probe == 0 ? 1 : (int)fmin(MAX_ITERS, ceil(2e-3 / fmax(t, 1e-7)));
        rc = measure(c, gpu, IMPL_OURS, bk, buf, n, k, &t, err);
    }
    if (!rc)
        r->iters = (int)fmax(1, fmin(MAX_ITERS, ceil(o->target_s / fmax(t, 1e-9))));
    double times[N_IMPL][MAX_REPS], ratio[MAX_REPS], bkt_ratio[MAX_REPS];
    for (int k = 0; !rc && k < n_impl; k++) /* warm-up of each */
        rc = measure(c, gpu, k, bk, buf, n, r->iters, &t, err);
    for (int i = 0; !rc && i < o->reps; i++) {
        for (int j = 0; !rc && j < n_impl; j++) { /* repetition i starts with impl i mod n_impl */
            int k = (i + j) % n_impl;
            rc = measure(c, gpu, k, bk, buf, n, r->iters, &times[k][i], err);
        }
        ratio[i] = times[IMPL_OURS][i] / times[IMPL_RAW][i];
        bkt_ratio[i] = bk ? times[IMPL_BUCKETED][i] / times[IMPL_OURS][i] : 0;
    }
    if (!rc) {
        r->ours_s = median(times[IMPL_OURS], o->reps);
        r->raw_s = median(times[IMPL_RAW], o->reps);
        r->ratio = median(ratio, o->reps);
        r->ratio_lo = r->ratio_hi = ratio[0];
        for (int i = 1; i < o->reps; i++) {
            r->ratio_lo = fmin(r->ratio_lo, ratio[i]);
            r->ratio_hi = fmax(r->ratio_hi, ratio[i]);
        }
        if (bk) {
            r->bkt_s = median(times[IMPL_BUCKETED], o->reps);
            r->bkt_ratio = median(bkt_ratio, o->reps);
        }
    }
    dl_buckets_free(bk);
    return rc;
}

static const char *thread_level(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "unknown";
    }
}

/* The machine, MPI and the watchdog: the lines every mode begins with. */
static void print_machine(dl_comm_t *c, const dl_dist_t *d)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "?";
    int len = 0, level = MPI_THREAD_SINGLE;
    if (MPI_Get_library_version(lib, &len) == MPI_SUCCESS)
        lib[strcspn(lib, ",\n")] = '\0'; /* "Open MPI v4.1.4" */
    MPI_Query_thread(&level);
    struct utsname u;
    if (uname(&u) != 0)
        strcpy(u.release, "?");
    int n = dl_comm_size(c);
    printf("machine: %s, %ld cores online, Linux %s, %s; %d rank(s), %d on this node%s; "
           "threads per rank: 1 calling + the watchdog's\n",
           d->host, sysconf(_SC_NPROCESSORS_ONLN), u.release, lib, n, d->local_size,
           n > sysconf(_SC_NPROCESSORS_ONLN) ? " (more ranks than cores: oversubscribed)" : "");
    printf("MPI initialised by dl_dist_init as dltrain does: MPI_THREAD_MULTIPLE asked, %s "
           "provided; the watchdog thread is %s\n",
           thread_level(level),
           n == 1                        ? "not started (1 rank)"
           : dl_comm_watchdog_running(c) ? "running, as in dltrain"
                                         : "off (MPI_THREAD_MULTIPLE not provided)");
}

static void print_header(dl_comm_t *c, const dl_dist_t *d, const opts_t *o, const gpu_t *gpu)
{
    int n = dl_comm_size(c), bk = o->bucket_mb > 0;
    if (gpu) {
        char nccl[64];
        bench_nccl_version(nccl, sizeof nccl);
        printf("bench_allreduce --nccl: dl_comm_nccl_allreduce_sum_f32 + dl_comm_nccl_wait (ours, "
               "collectives/comm_nccl.c: non-blocking communicator, polled, watched by the "
               "watchdog) against raw ncclAllReduce(ncclFloat32, ncclSum) on a default (blocking) "
               "communicator + cudaStreamSynchronize, the same GPU buffer and stream, in the same "
               "run\n");
        printf("%s; rank 0's GPU: %d, %s; each measurement queues its iters calls back to back "
               "and waits once, as nccl-tests does\n",
               nccl, gpu->index, gpu->name);
    } else {
        printf("bench_allreduce: dl_comm_allreduce_sum_f32 (ours, collectives/comm_mpi.c) against "
               "raw MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM) on MPI_COMM_WORLD%s, the same "
               "buffer, in the same run\n",
               bk ? " and against the buffer in gradient buckets (collectives/buckets.h)" : "");
    }
    print_machine(c, d);
    if (bk)
        printf("bucketed: buckets of %g MiB (the first %g MiB) split from the end of the buffer, "
               "all started at once (MPI_Iallreduce each) and then waited for, with no compute "
               "to overlap\n",
               o->bucket_mb, o->first_mb < o->bucket_mb ? o->first_mb : o->bucket_mb);
    printf("each row: a check of the sums, a warm-up of each, then the median of %d "
           "repetitions taking turns (about %.0f ms each: iters calls timed together, the "
           "slowest rank's time per call); ours/raw = median of the per-repetition time "
           "ratios; algbw = size / time, busbw = algbw x 2(n-1)/n = algbw x %.3f\n\n",
           o->reps, 1e3 * o->target_s, 2.0 * (n - 1) / n);
    printf("%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s", "", "", "", "", "ours", "", "",
           gpu ? "raw NCCL" : "raw MPI", "", "", "");
    if (bk)
        printf(" | %8s %11s %9s %9s", "bucketed", "", "", "");
    printf("\n%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s", "size", "bytes", "count",
           "iters", "time (us)", "algbw", "busbw", "time (us)", "algbw", "busbw", "ours/raw");
    if (bk)
        printf(" | %8s %11s %9s %9s", "buckets", "time (us)", "busbw", "bkt/ours");
    printf("\n%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s", "", "", "(float)", "", "",
           "(GB/s)", "(GB/s)", "", "(GB/s)", "(GB/s)", "(time)");
    if (bk)
        printf(" | %8s %11s %9s %9s", "", "", "(GB/s)", "(time)");
    printf("\n");
    fflush(stdout);
}

static void print_row(const row_t *r, int n, int bk)
{
    char label[32];
    size_label(r->bytes, label, sizeof label);
    double bus = 2.0 * (n - 1) / n, b = (double)r->bytes * 1e-9;
    printf("%12s %10lld %11lld %6d | %11.2f %9.3f %9.3f | %11.2f %9.3f %9.3f | %8.3f", label,
           (long long)r->bytes, (long long)r->count, r->iters, 1e6 * r->ours_s, b / r->ours_s,
           bus * b / r->ours_s, 1e6 * r->raw_s, b / r->raw_s, bus * b / r->raw_s, r->ratio);
    if (bk)
        printf(" | %8d %11.2f %9.3f %9.3f", r->buckets, 1e6 * r->bkt_s, bus * b / r->bkt_s,
               r->bkt_ratio);
    printf("\n");
    fflush(stdout);
}

/* The summary: the worst ratio at >= 1 MiB against the 5% target, with its
 * spread over repetitions (how much of it is noise), the median ratio over
 * those sizes (a steady overhead would show there), and the average bus
 * bandwidths over those sizes (nccl-tests averages over all); with buckets,
 * the median bucketed/ours over those sizes. */
static void print_summary(const row_t *rows, int n_rows, int n, int bk, const char *raw)
{
    int worst = -1, k = 0;
    double ours_bus = 0, raw_bus = 0, bus = 2.0 * (n - 1) / n, ratios[64], bkt[64];
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].bytes < MIB)
            continue;
        if (worst < 0 || rows[i].ratio > rows[worst].ratio)
            worst = i;
        ours_bus += bus * (double)rows[i].bytes * 1e-9 / rows[i].ours_s;
        raw_bus += bus * (double)rows[i].bytes * 1e-9 / rows[i].raw_s;
        bkt[k] = rows[i].bkt_ratio;
        ratios[k++] = rows[i].ratio;
    }
    printf("\n");
    if (worst < 0) {
        printf("summary: no size of 1 MiB or more measured (target: ours within 5%% of %s at 1 "
               "MiB and above)\n",
               raw);
        return;
    }
    char label[32];
    size_label(rows[worst].bytes, label, sizeof label);
    printf("summary: worst ours/raw at >= 1 MiB: %.3f (at %s; its repetitions ranged %.3f to "
           "%.3f); target: within 5%% of %s (<= 1.05): %s\n",
           rows[worst].ratio, label, rows[worst].ratio_lo, rows[worst].ratio_hi, raw,
           rows[worst].ratio <= 1.05 ? "met" : "not met");
    printf("median ours/raw over the %d sizes >= 1 MiB: %.3f\n", k, median(ratios, k));
    printf("average busbw at >= 1 MiB (%d sizes): ours %.3f GB/s, %s %.3f GB/s\n", k, ours_bus / k,
           raw, raw_bus / k);
    if (bk)
        printf("median bucketed/ours over the %d sizes >= 1 MiB: %.3f (the cost of buckets "
               "when nothing overlaps them)\n",
               k, median(bkt, k));
}

/* --nccl: the GPU of this rank's local rank (GPU 0 where the rank sees only
 * one, as when CUDA_VISIBLE_DEVICES gives each rank its own), its stream,
 * bytes of GPU and pinned host memory, and both NCCL communicators. */
static int gpu_open(gpu_t *gpu, dl_comm_t *c, const dl_dist_t *d, int64_t bytes, dl_err_t *err)
{
    char why[256];
    int count = dl_cuda_device_count(why, sizeof why);
    if (d->local_rank >= count && count != 1)
        return DL_ERR(err, DL_EINPUT,
                      "bench_allreduce --nccl: rank %d is local rank %d on %s, which shows %d "
                      "GPU(s); start at most one rank per GPU",
                      d->rank, d->local_rank, d->host, count);
    gpu->index = d->local_rank < count ? d->local_rank : 0;
    int rc = dl_cuda_use_device(gpu->index, gpu->name, sizeof gpu->name, err);
    if (!rc)
        rc = dl_cuda_create(&gpu->g, 0, err);
    if (!rc) {
        gpu->stream = dl_cuda_stream(gpu->g);
        gpu->dev = dl_dev_alloc(DL_DEV_CUDA, (size_t)bytes, err);
        gpu->host = gpu->dev ? dl_host_alloc(DL_DEV_CUDA, (size_t)bytes, err) : NULL;
        if (!gpu->host)
            rc = err->code;
    }
    if (!rc)
        rc = dl_comm_nccl_init(c, err);
    if (!rc)
        rc = bench_raw_nccl_open(&gpu->raw, c, err);
    return rc;
}

/* --nccl: does every rank see a GPU? Agreed over the ranks, so that all
 * stop together, with rank 0 saying why (DL_EINPUT), when one does not. */
static int gpu_check(dl_comm_t *c, const dl_dist_t *d, dl_err_t *err)
{
    char why[256];
    int64_t none = dl_cuda_device_count(why, sizeof why) > 0 ? INT64_MAX : d->rank;
    int rc = dl_comm_allreduce_min_i64(c, &none, 1, err);
    if (rc || none == INT64_MAX)
        return rc;
    if (none == d->rank)
        return DL_ERR(err, DL_EINPUT,
                      "bench_allreduce --nccl needs a GPU for each rank, and rank %d has none: %s",
                      d->rank, why);
    return DL_ERR(err, DL_EINPUT,
                  "bench_allreduce --nccl needs a GPU for each rank, and rank %lld has none",
                  (long long)none);
}

static void gpu_close(gpu_t *gpu)
{
    bench_raw_nccl_close(gpu->raw);
    dl_host_free(DL_DEV_CUDA, gpu->host);
    dl_dev_free(DL_DEV_CUDA, gpu->dev);
    dl_cuda_destroy(gpu->g);
}

/* ---- --model: training steps with and without buckets ------------------ */

enum { STEP_COMPUTE, STEP_ONE, STEP_BUCKETED, N_STEP_MODES };
static const char *const step_mode_names[] = {
    "compute only (no all-reduce)", "one all-reduce after backward", "buckets during backward"};

/* The hook dltrain sets (runtime/train.c): start the buckets now final. */
static int bench_grads_ready(void *arg, int64_t from)
{
    dl_err_t err = {0};
    return dl_buckets_ready(arg, from, &err);
}

/* A preset model with synthetic data, for the step mode. */
typedef struct step_bench {
    dl_model_t m;
    dl_buckets_t *bk;
    float *x, *dlogits;
    int32_t *y;
    int batch;
} step_bench_t;

static int step_setup(step_bench_t *s, dl_comm_t *c, const opts_t *o, dl_err_t *err)
{
    const char *name = strcmp(o->model, "cnn") ? o->model : "cnn2";
    int preset = -1;
    for (int i = 1; dl_preset_names[i]; i++)
        if (!strcmp(dl_preset_names[i], name))
            preset = i;
    if (preset < 0)
        return DL_ERR(err, DL_EINPUT,
                      "--model %s: not a preset (mlp, lenet, cnn or cnn2, "
                      "cnn2bn, resnet8)",
                      o->model);
    dl_layer_spec_t specs[64];
    int n_specs = dl_preset_specs(preset, specs, 64);
    for (int i = 0; i < n_specs; i++)
        if (specs[i].type == DL_LAYER_DENSE && specs[i].units == DL_UNITS_CLASSES)
            specs[i].units = 10;
    s->batch = o->batch;
    int rc = dl_model_build(&s->m, specs, n_specs, (dl_shape_t){1, 28, 28}, o->batch, err);
    if (rc)
        return rc;
    dl_model_init_params(&s->m, 1);
    s->m.ctx.training = 1;
    s->m.ctx.seed = 1;
    s->m.ctx.rank = dl_comm_rank(c);
    rc = dl_buckets_create(&s->bk, c, s->m.grads, s->m.n_params, mib_bytes(o->bucket_mb),
                           mib_bytes(o->first_mb), err);
    if (rc)
        return rc;
    int64_t nx = (int64_t)o->batch * s->m.in_size;
    s->x = dl_calloc((size_t)nx, sizeof(float), err);
    s->dlogits = dl_calloc((size_t)o->batch * 10, sizeof(float), err);
    s->y = dl_calloc((size_t)o->batch, sizeof(int32_t), err);
    if (!s->x || !s->dlogits || !s->y)
        return DL_ENOMEM;
    dl_rng_t rng;
    dl_rng_seed(&rng, 7, (uint64_t)dl_comm_rank(c));
    for (int64_t i = 0; i < nx; i++)
        s->x[i] = (float)dl_rng_normal(&rng);
    for (int i = 0; i < o->batch; i++)
        s->y[i] = (int32_t)dl_rng_below(&rng, 10);
    return 0;
}

static void step_free(step_bench_t *s)
{
    dl_buckets_free(s->bk);
    dl_model_free(&s->m);
    free(s->x);
    free(s->dlogits);
    free(s->y);
}

/* steps training steps in one mode after a barrier: seconds per step and
 * seconds per step waiting after the backward pass, averaged over ranks. */
static int step_measure(step_bench_t *s, dl_comm_t *c, int mode, int steps, double *step_s,
                        double *wait_s, dl_err_t *err)
{
    dl_model_t *m = &s->m;
    m->ctx.grads_ready = mode == STEP_BUCKETED ? bench_grads_ready : NULL;
    m->ctx.grads_arg = s->bk;
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Barrier failed");
    int rc = 0;
    double wait = 0, t0 = bench_now_s();
    for (int i = 0; !rc && i < steps; i++) {
        m->ctx.step++;
        const float *logits = dl_model_forward(m, s->x, s->batch, err);
        if (!logits)
            return err->code;
        dl_softmax_xent(logits, s->y, s->batch, 10, 0.0f, 1.0f / (float)s->batch, s->dlogits, NULL);
        rc = dl_model_backward(m, s->dlogits, s->batch, err);
        double tw = bench_now_s();
        if (!rc && mode == STEP_ONE)
            rc = dl_comm_allreduce_sum_f32(c, m->grads, m->n_params, err);
        else if (!rc && mode == STEP_BUCKETED)
            rc = dl_buckets_finish(s->bk, err);
        wait += bench_now_s() - tw;
    }
    double v[2] = {(bench_now_s() - t0) / steps, wait / steps};
    if (!rc &&
        MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        rc = DL_ERR(err, DL_ELIB, "MPI_Allreduce of the timings failed");
    *step_s = v[0] / dl_comm_size(c);
    *wait_s = v[1] / dl_comm_size(c);
    return rc;
}

static int run_model(dl_comm_t *c, const dl_dist_t *d, const opts_t *o, dl_err_t *err)
{
    openblas_set_num_threads(o->threads);
    step_bench_t s = {0};
    int rc = step_setup(&s, c, o, err);
    double step[N_STEP_MODES][MAX_REPS], wait[N_STEP_MODES][MAX_REPS], ratio[MAX_REPS], t, w;
    for (int k = 0; !rc && k < N_STEP_MODES; k++) /* warm-up of each */
        rc = step_measure(&s, c, k, o->steps, &t, &w, err);
    for (int i = 0; !rc && i < o->reps; i++) {
        for (int j = 0; !rc && j < N_STEP_MODES; j++) { /* repetition i starts with mode i mod 3 */
            int k = (i + j) % N_STEP_MODES;
            rc = step_measure(&s, c, k, o->steps, &step[k][i], &wait[k][i], err);
        }
        ratio[i] = step[STEP_BUCKETED][i] / step[STEP_ONE][i];
    }
    if (!rc && d->rank == 0) {
        printf("bench_allreduce --model: training steps of %s with the gradient all-reduce in "
               "one call or in buckets, in the same run\n",
               o->model);
        print_machine(c, d);
        printf("model: %s, %lld parameters (%.2f MiB of gradients), input 1x28x28, batch %d per "
               "rank, %d BLAS thread(s) per rank; buckets: %d of %g MiB (the first %g MiB)\n",
               o->model, (long long)s.m.n_params, (double)s.m.n_params * 4.0 / (double)MIB,
               o->batch, o->threads, dl_buckets_count(s.bk), o->bucket_mb,
               o->first_mb < o->bucket_mb ? o->first_mb : o->bucket_mb);
        printf("per step (forward, loss, backward, all-reduce; no optimiser update), averaged "
               "over ranks; medians of %d repetitions of %d steps taking turns after a "
               "warm-up; wait = time after the backward pass until the gradients are summed "
               "(dltrain's allreduce_ms)\n\n",
               o->reps, o->steps);
        printf("| mode | step ms | wait ms |\n| --- | --- | --- |\n");
        for (int k = 0; k < N_STEP_MODES; k++)
            printf("| %s | %.3f | %.3f |\n", step_mode_names[k], 1e3 * median(step[k], o->reps),
                   1e3 * median(wait[k], o->reps));
        double one = median(step[STEP_ONE], o->reps), bkt = median(step[STEP_BUCKETED], o->reps),
               floor = median(step[STEP_COMPUTE], o->reps);
        printf("\nbuckets/one call, step time: %.3f (median of the per-repetition ratios); the "
               "all-reduce added %.3f ms per step in one call and %.3f ms in buckets over "
               "compute only\n",
               median(ratio, o->reps), 1e3 * (one - floor), 1e3 * (bkt - floor));
    }
    step_free(&s);
    return rc;
}

int main(int argc, char **argv)
{
    dl_err_t err = {0};
    dl_dist_t d;
    int rc = dl_dist_init(&d, &argc, &argv, &err);
    if (rc) {
        dl_err_print("bench_allreduce", &err);
        return dl_err_exit_status(rc);
    }
    opts_t o;
    if (parse(argc, argv, &o) != 0) {
        if (d.rank == 0)
            fprintf(stderr,
                    "usage: mpirun -np N bench_allreduce [--min-bytes B] [--max-bytes B] "
                    "[--factor 2|4] [--reps 1..%d] [--target-ms MS] [--nccl | --bucket-mb MB "
                    "[--first-bucket-mb MB]]\n"
                    "       mpirun -np N bench_allreduce --model cnn|mlp|... [--batch N] "
                    "[--steps N] [--threads N] [--reps N] [--bucket-mb MB] "
                    "[--first-bucket-mb MB]\n"
                    "  --nccl: GPU buffers, our NCCL path against raw ncclAllReduce\n"
                    "  B: bytes, or with K, M or G (binary units), e.g. 256M; MB: MiB\n",
                    MAX_REPS);
        dl_dist_finalize(&d);
        return DL_EXIT_INPUT;
    }
    dl_comm_t *c = NULL;
    rc = dl_comm_create_world(&c, &err);
    if (!rc)
        dl_comm_watch(c, WATCHDOG_TIMEOUT_S, "bench_allreduce");
    if (!rc && o.model) {
        rc = run_model(c, &d, &o, &err);
        if (rc)
            dl_err_print("bench_allreduce", &err);
        dl_comm_free(c);
        if (rc)
            dl_comm_abort(dl_err_exit_status(rc));
        dl_dist_finalize(&d);
        return 0;
    }
    float *buf = NULL;
    gpu_t gpu_state = {0}, *gpu = o.nccl ? &gpu_state : NULL;
    if (!rc && gpu && gpu_check(c, &d, &err) == DL_EINPUT) { /* every rank stops here */
        if (d.rank == 0)
            dl_err_print("bench_allreduce", &err);
        dl_comm_free(c);
        dl_dist_finalize(&d);
        return DL_EXIT_INPUT;
    }
    if (!rc && gpu) {
        rc = gpu_open(gpu, c, &d, o.max_bytes, &err);
        buf = gpu->dev;
    } else if (!rc && !(buf = malloc((size_t)o.max_bytes))) {
        rc = DL_ERR(&err, DL_ENOMEM, "cannot allocate --max-bytes %lld bytes",
                    (long long)o.max_bytes);
    }
    row_t rows[64];
    int n_rows = 0, n = c ? dl_comm_size(c) : 1, bk = o.bucket_mb > 0;
    if (!rc && d.rank == 0)
        print_header(c, &d, &o, gpu);
    for (int64_t b = o.min_bytes; !rc && b <= o.max_bytes && n_rows < 64; b *= o.factor) {
        rc = run_size(c, gpu, &o, buf, b / 4 * 4, &rows[n_rows], &err);
        if (!rc && d.rank == 0)
            print_row(&rows[n_rows], n, bk);
        n_rows++;
    }
    if (!rc && d.rank == 0)
        print_summary(rows, n_rows, n, bk, gpu ? "raw NCCL" : "raw MPI");
    if (rc)
        dl_err_print("bench_allreduce", &err);
    if (gpu)
        gpu_close(gpu);
    else
        free(buf);
    dl_comm_free(c);
    if (rc)
        dl_comm_abort(dl_err_exit_status(rc));
    dl_dist_finalize(&d);
    return 0;
}
