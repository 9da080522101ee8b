/* Our collectives layer against raw MPI_Allreduce (or, with --nccl, our
 * NCCL path against raw ncclAllReduce), measured the way nccl-tests
 * measures all-reduce, in the same run on the same buffer. A benchmark: it
 * prints figures and never fails on time.
 *
 *   mpirun -np N bench_allreduce [--nccl] [--min-bytes 8] [--max-bytes 256M] [--factor 2]
 *                                [--reps 15] [--target-ms 20]
 *
 * For each size (float32 counts, min-bytes to max-bytes, times factor) two
 * implementations take turns on one buffer:
 *   ours  dl_comm_allreduce_sum_f32 (collectives/comm_mpi.c): the call
 *         runtime/train.c makes for the gradients, with its watchdog
 *         bookkeeping and the watchdog thread running;
 *   raw   MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM,
 *         MPI_COMM_WORLD).
 * MPI is initialised by dl_dist_init, as dltrain does (MPI_THREAD_MULTIPLE),
 * so both run under the same thread level. A measurement is `iters` calls
 * timed together after a barrier (iters chosen per size so that it takes
 * about --target-ms), its time per call the largest over ranks. After one
 * warm-up measurement of each, --reps repetitions alternate which goes first;
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
 * in a build without CUDA, it stops with a message (exit status 2). */
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

#include "collectives/comm.h"
#include "models/device.h"
#include "runtime/dist.h"

#define MAX_REPS 64
#define MAX_ITERS 100000
#define MIB ((int64_t)1 << 20)
#define WATCHDOG_TIMEOUT_S 600.0 /* dltrain's default train.timeout */

typedef struct opts {
    int64_t min_bytes, max_bytes;
    int factor, reps;
    double target_s;
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

/* A row of the table: median seconds per call and the median ratio. */
typedef struct row {
    int64_t bytes, count;
    int iters;
    double ours_s, raw_s, ratio;
    double ratio_lo, ratio_hi; /* the smallest and largest per-repetition ratio */
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

static int parse(int argc, char **argv, opts_t *o)
{
    *o =
        (opts_t){.min_bytes = 8, .max_bytes = 256 * MIB, .factor = 2, .reps = 15, .target_s = 0.02};
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
            o->factor = (int)strtol(v, &end, 10);
            if (*end || (o->factor != 2 && o->factor != 4))
                return -1;
        } else if (!strcmp(a, "--reps")) {
            o->reps = (int)strtol(v, &end, 10);
            if (*end || o->reps < 1 || o->reps > MAX_REPS)
                return -1;
        } else if (!strcmp(a, "--target-ms")) {
            o->target_s = 1e-3 * strtod(v, &end);
            if (*end || !(o->target_s > 0) || o->target_s > 10)
                return -1;
        } else {
            return -1;
        }
    }
    /* whole float32 counts, at least one */
    o->min_bytes = o->min_bytes < 4 ? 4 : o->min_bytes / 4 * 4;
    o->max_bytes = o->max_bytes / 4 * 4;
    return o->max_bytes >= o->min_bytes ? 0 : -1;
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

/* One in-place sum of buf[0..n-1], ours (1) or raw (0); on the GPU
 * (gpu not NULL) only queued. */
static int allreduce(dl_comm_t *c, gpu_t *gpu, int ours, float *buf, int64_t n, dl_err_t *err)
{
    if (gpu && ours)
        return dl_comm_nccl_allreduce_sum_f32(c, buf, n, gpu->stream, err);
    if (gpu)
        return bench_raw_nccl_allreduce(gpu->raw, buf, n, gpu->stream, err);
    if (ours)
        return dl_comm_allreduce_sum_f32(c, buf, n, err);
    if (MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Allreduce of %lld floats failed", (long long)n);
    return 0;
}

/* Wait for the sums queued on the GPU: ours polls (dl_comm_nccl_wait), raw
 * synchronises the stream. Nothing to wait for on the CPU. */
static int finish(dl_comm_t *c, gpu_t *gpu, int ours, dl_err_t *err)
{
    if (!gpu)
        return 0;
    return ours ? dl_comm_nccl_wait(c, gpu->stream, err) : dl_cuda_sync(gpu->g, err);
}

/* iters in-place sums of buf[0..n-1], ours (1) or raw (0), started
 * together after a barrier (on the GPU: queued back to back, then one
 * wait): seconds per call, the largest over ranks (the slowest rank sets
 * the pace of a collective), the same on every rank. */
static int measure(dl_comm_t *c, gpu_t *gpu, int ours, float *buf, int64_t n, int iters,
                   double *out, dl_err_t *err)
{
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        return DL_ERR(err, DL_ELIB, "MPI_Barrier failed");
    int rc = 0;
    double t0 = bench_now_s();
    for (int i = 0; !rc && i < iters; i++)
        rc = allreduce(c, gpu, ours, buf, n, err);
    if (!rc)
        rc = finish(c, gpu, ours, err);
    double t = (bench_now_s() - t0) / iters;
    if (!rc &&
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        rc = DL_ERR(err, DL_ELIB, "MPI_Allreduce of the timings failed");
    *out = t;
    return rc;
}

/* One sum, ours or raw, waited for; then the first element of buf (on the
 * GPU: of its copy in *seen) that is not want, -1 if none, or a (negative,
 * below -1) dl error code when a call failed. */
static int64_t sum_and_check(dl_comm_t *c, gpu_t *gpu, int ours, float *buf, int64_t n, float want,
                             float **seen, dl_err_t *err)
{
    *seen = buf;
    int rc = allreduce(c, gpu, ours, buf, n, err);
    if (!rc)
        rc = finish(c, gpu, ours, err);
    if (!rc && gpu) {
        rc = dl_dev_copy(gpu->g, gpu->host, buf, (size_t)n * sizeof *buf, DL_COPY_D2H, err);
        *seen = gpu->host;
    }
    if (rc)
        return rc;
    for (int64_t i = 0; i < n; i++)
        if ((*seen)[i] != want)
            return i;
    return -1;
}

/* Both implementations must give the sum over ranks: every rank puts
 * rank + 1 everywhere, ours sums once (n(n+1)/2), raw sums that again. All
 * values are small integers, exact in float32. The buffer is zeroed after,
 * so the timed sums never overflow or go subnormal. */
static int verify(dl_comm_t *c, gpu_t *gpu, float *buf, int64_t n, dl_err_t *err)
{
    int rank = dl_comm_rank(c), size = dl_comm_size(c), rc = 0;
    float *fill = gpu ? gpu->host : buf, *seen = buf;
    for (int64_t i = 0; i < n; i++)
        fill[i] = (float)(rank + 1);
    if (gpu)
        rc = dl_dev_copy(gpu->g, buf, fill, (size_t)n * sizeof *buf, DL_COPY_H2D, err);
    float want = (float)size * (float)(size + 1) / 2.0f;
    int64_t bad = rc ? rc : sum_and_check(c, gpu, 1, buf, n, want, &seen, err);
    if (bad == -1)
        bad = sum_and_check(c, gpu, 0, buf, n, want * (float)size, &seen, err);
    if (bad < -1)
        rc = (int)bad;
    else if (bad >= 0)
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

/* One row: check, choose iters, warm up, then the interleaved repetitions. */
static int run_size(dl_comm_t *c, gpu_t *gpu, const opts_t *o, float *buf, int64_t bytes, row_t *r,
                    dl_err_t *err)
{
    int64_t n = bytes / 4;
    *r = (row_t){.bytes = bytes, .count = n, .iters = 1};
    int rc = verify(c, gpu, buf, n, err);
    /* iters from one call (the first call of a size pays for first touches),
     * then from a longer probe when a call is short */
    double t = 0;
    for (int probe = 0; !rc && probe < 2; probe++) {
        int k = probe == 0 ? 1 : (int)fmin(MAX_ITERS, ceil(2e-3 / fmax(t, 1e-7)));
        rc = measure(c, gpu, 1, buf, n, k, &t, err);
    }
    if (!rc)
        r->iters = (int)fmax(1, fmin(MAX_ITERS, ceil(o->target_s / fmax(t, 1e-9))));
    double ours[MAX_REPS], raw[MAX_REPS], ratio[MAX_REPS];
    if (!rc) /* warm-up of both */
        rc = measure(c, gpu, 1, buf, n, r->iters, &t, err);
    if (!rc)
        rc = measure(c, gpu, 0, buf, n, r->iters, &t, err);
    for (int i = 0; !rc && i < o->reps; i++) {
        int first = i % 2 == 0; /* ours first in even repetitions, raw first in odd */
        rc = measure(c, gpu, first, buf, n, r->iters, first ? &ours[i] : &raw[i], err);
        if (!rc)
            rc = measure(c, gpu, !first, buf, n, r->iters, first ? &raw[i] : &ours[i], err);
        ratio[i] = ours[i] / raw[i];
    }
    if (!rc) {
        r->ours_s = median(ours, o->reps);
        r->raw_s = median(raw, o->reps);
        r->ratio = median(ratio, o->reps);
        r->ratio_lo = r->ratio_hi = ratio[0];
        for (int i = 1; i < o->reps; i++) {
            r->ratio_lo = fmin(r->ratio_lo, ratio[i]);
            r->ratio_hi = fmax(r->ratio_hi, ratio[i]);
        }
    }
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

static void print_header(dl_comm_t *c, const dl_dist_t *d, const opts_t *o, const gpu_t *gpu)
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
               "raw MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM) on MPI_COMM_WORLD, the same "
               "buffer, in the same run\n");
    }
    printf("machine: %s, %ld cores online, Linux %s, %s; %d rank(s), %d on this node%s; "
           "threads per rank: 1 calling + the watchdog's\n",
           d->host, sysconf(_SC_NPROCESSORS_ONLN), u.release, lib, n, d->local_size,
           n > sysconf(_SC_NPROCESSORS_ONLN) ? " (more ranks than cores: oversubscribed)" : "");
    printf("MPI initialised by dl_dist_init as dltrain does: MPI_THREAD_MULTIPLE asked, %s "
           "provided; raw MPI runs under that thread level too; the watchdog thread is %s\n",
           thread_level(level),
           n == 1                        ? "not started (1 rank)"
           : dl_comm_watchdog_running(c) ? "running, as in dltrain"
                                         : "off (MPI_THREAD_MULTIPLE not provided)");
    printf("each row: a check of both sums, a warm-up of each, then the median of %d "
           "repetitions taking turns (about %.0f ms each: iters calls timed together, the "
           "slowest rank's time per call); ours/raw = median of the per-repetition time "
           "ratios; algbw = size / time, busbw = algbw x 2(n-1)/n = algbw x %.3f\n\n",
           o->reps, 1e3 * o->target_s, 2.0 * (n - 1) / n);
    printf("%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s\n", "", "", "", "", "ours", "",
           "", gpu ? "raw NCCL" : "raw MPI", "", "", "");
    printf("%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s\n", "size", "bytes", "count",
           "iters", "time (us)", "algbw", "busbw", "time (us)", "algbw", "busbw", "ours/raw");
    printf("%12s %10s %11s %6s | %11s %9s %9s | %11s %9s %9s | %8s\n", "", "", "(float)", "", "",
           "(GB/s)", "(GB/s)", "", "(GB/s)", "(GB/s)", "(time)");
    fflush(stdout);
}

static void print_row(const row_t *r, int n)
{
    char label[32];
    size_label(r->bytes, label, sizeof label);
    double bus = 2.0 * (n - 1) / n, b = (double)r->bytes * 1e-9;
    printf("%12s %10lld %11lld %6d | %11.2f %9.3f %9.3f | %11.2f %9.3f %9.3f | %8.3f\n", label,
           (long long)r->bytes, (long long)r->count, r->iters, 1e6 * r->ours_s, b / r->ours_s,
           bus * b / r->ours_s, 1e6 * r->raw_s, b / r->raw_s, bus * b / r->raw_s, r->ratio);
    fflush(stdout);
}

/* The summary: the worst ratio at >= 1 MiB against the 5% target, with its
 * spread over repetitions (how much of it is noise), the median ratio over
 * those sizes (a steady overhead would show there), and the average bus
 * bandwidths over those sizes (nccl-tests averages over all). */
static void print_summary(const row_t *rows, int n_rows, int n, const char *raw)
{
    int worst = -1, k = 0;
    double ours_bus = 0, raw_bus = 0, bus = 2.0 * (n - 1) / n, ratios[64];
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].bytes < MIB)
            continue;
        if (worst < 0 || rows[i].ratio > rows[worst].ratio)
            worst = i;
        ours_bus += bus * (double)rows[i].bytes * 1e-9 / rows[i].ours_s;
        raw_bus += bus * (double)rows[i].bytes * 1e-9 / rows[i].raw_s;
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
                    "usage: mpirun -np N bench_allreduce [--nccl] [--min-bytes B] [--max-bytes B] "
                    "[--factor 2|4] [--reps 1..%d] [--target-ms MS]\n"
                    "  --nccl: GPU buffers, our NCCL path against raw ncclAllReduce\n"
                    "  B: bytes, or with K, M or G (binary units), e.g. 256M\n",
                    MAX_REPS);
        dl_dist_finalize(&d);
        return DL_EXIT_INPUT;
    }
    dl_comm_t *c = NULL;
    rc = dl_comm_create_world(&c, &err);
    float *buf = NULL;
    gpu_t gpu_state = {0}, *gpu = o.nccl ? &gpu_state : NULL;
    if (!rc) {
        dl_comm_watch(c, WATCHDOG_TIMEOUT_S, "bench_allreduce");
        if (gpu && gpu_check(c, &d, &err) == DL_EINPUT) { /* every rank stops here */
            if (d.rank == 0)
                dl_err_print("bench_allreduce", &err);
            dl_comm_free(c);
            dl_dist_finalize(&d);
            return DL_EXIT_INPUT;
        }
        if (gpu) {
            rc = gpu_open(gpu, c, &d, o.max_bytes, &err);
            buf = gpu->dev;
        } else if (!(buf = malloc((size_t)o.max_bytes))) {
            rc = DL_ERR(&err, DL_ENOMEM, "cannot allocate --max-bytes %lld bytes",
                        (long long)o.max_bytes);
        }
    }
    row_t rows[64];
    int n_rows = 0, n = c ? dl_comm_size(c) : 1;
    if (!rc && d.rank == 0)
        print_header(c, &d, &o, gpu);
    for (int64_t b = o.min_bytes; !rc && b <= o.max_bytes && n_rows < 64; b *= o.factor) {
        rc = run_size(c, gpu, &o, buf, b / 4 * 4, &rows[n_rows], &err);
        if (!rc && d.rank == 0)
            print_row(&rows[n_rows], n);
        n_rows++;
    }
    if (!rc && d.rank == 0)
        print_summary(rows, n_rows, n, gpu ? "raw NCCL" : "raw MPI");
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
