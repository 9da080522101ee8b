/* The NCCL collectives (collectives/comm_nccl.c, or comm_nccl_none.c in a
 * build without CUDA) on one rank, all a one-GPU machine allows. An MPI
 * program; CTest starts it without mpirun (a singleton).
 *
 *   test_nccl --no-gpu  any build, with CUDA_VISIBLE_DEVICES=-1 (no GPU
 *                       visible): dl_comm_nccl_init fails with DL_EINPUT and
 *                       a sentence that says why (no CUDA in this build, or
 *                       no GPU), the communicator has no NCCL, the all-reduce
 *                       and the wait fail cleanly, and the MPI collectives
 *                       still work.
 *   test_nccl           on GPU 0: all-reduces of GPU buffers (no, one, odd
 *                       and chunk-crossing counts, two queued before one
 *                       wait) leave each value as it was (the sum over one
 *                       rank) and nothing past the end changes; dl_comm_free
 *                       finalizes the communicator.
 *   test_nccl --stall   on GPU 0, with a watchdog timeout of 2 s: an
 *                       all-reduce queued behind a kernel that runs for 60 s
 *                       ends the job (status 3, the watchdog's message) from
 *                       dl_comm_nccl_wait, after aborting the NCCL
 *                       communicator; tests/test_nccl_watchdog.sh checks it.
 *
 * Without a GPU the last two print why and exit 77, which CTest reports as
 * skipped, never as passed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

#include "check.h"
#include "collectives/buckets.h"
#include "collectives/comm.h"
#include "models/device.h"
#include "nccl_stall.h"
#include "runtime/dist.h"

#define SKIP 77
#define PAD 64 /* floats past the end of each buffer that must not change */
#define STALL_TIMEOUT_S 2.0
#define STALL_KERNEL_S 60.0

static dl_dist_t dist;
static dl_comm_t *comm;

static void start(int *argc, char ***argv)
{
    dl_err_t err = {0};
    if (dl_dist_init(&dist, argc, argv, &err) || dl_comm_create_world(&comm, &err)) {
        fprintf(stderr, "MPI start-up failed: %s\n", err.msg);
        exit(1);
    }
}

static int stop(int status)
{
    dl_comm_free(comm);
    dl_dist_finalize(&dist);
    return status;
}

/* No GPU visible: every NCCL call fails cleanly, MPI still works. */
static int test_no_gpu(void)
{
    dl_err_t err = {0};
    int rc = dl_comm_nccl_init(comm, &err);
    if (dl_cuda_built())
        CHECK_EINPUT(rc, &err, "NCCL collectives need a GPU on every rank", "rank 0 has none");
    else
        CHECK_EINPUT(rc, &err, "built without CUDA, so it has no NCCL", "DLTRAIN_CUDA=OFF");
    printf("dl_comm_nccl_init: %s\n", err.msg);
    CHECK(dl_comm_nccl_enabled(comm) == 0);
    float x = 1.0f;
    err = (dl_err_t){0};
    CHECK(dl_comm_nccl_allreduce_sum_f32(comm, &x, 1, NULL, &err) < 0);
    CHECK(err.msg[0] != '\0');
    err = (dl_err_t){0};
    CHECK(dl_comm_nccl_wait(comm, NULL, &err) < 0);
    CHECK(err.msg[0] != '\0');
    err = (dl_err_t){0};
    CHECK(dl_comm_allreduce_sum_f32(comm, &x, 1, &err) == 0 && x == 1.0f);
    return CHECK_DONE();
}

/* GPU 0 made current and a stream on it, or exit 77 without a GPU. */
static dl_cuda_t *gpu_or_skip(void)
{
    char why[256] = "", name[160] = "";
    if (dl_cuda_device_count(why, sizeof why) < 1) {
        printf("skipped: %s\n", why);
        exit(stop(SKIP));
    }
    dl_err_t err = {0};
    dl_cuda_t *g = NULL;
    if (dl_cuda_use_device(0, name, sizeof name, &err) || dl_cuda_create(&g, 0, &err) ||
        dl_comm_nccl_init(comm, &err)) {
        fprintf(stderr, "GPU and NCCL start-up failed: %s\n", err.msg);
        exit(stop(1));
    }
    printf("GPU 0: %s\n", name);
    return g;
}

/* value i of the pattern the buffers hold: small integers, exact in float */
static float pattern(int64_t i)
{
    return (float)(i % 1000 - 500);
}

/* n + PAD floats of the pattern on the GPU; `times` all-reduces of the
 * first n queued, one wait; then every float must be as it was. */
static void check_sum(dl_cuda_t *g, int64_t n, int times)
{
    dl_err_t err = {0};
    size_t bytes = (size_t)(n + PAD) * sizeof(float);
    float *host = dl_host_alloc(DL_DEV_CUDA, bytes, &err);
    float *dev = host ? dl_dev_alloc(DL_DEV_CUDA, bytes, &err) : NULL;
    if (!dev) {
        fprintf(stderr, "n = %lld: %s\n", (long long)n, err.msg);
        check_failures++;
        dl_host_free(DL_DEV_CUDA, host);
        return;
    }
    for (int64_t i = 0; i < n + PAD; i++)
        host[i] = pattern(i);
    int rc = dl_dev_copy(g, dev, host, bytes, DL_COPY_H2D, &err);
    for (int k = 0; !rc && k < times; k++)
        rc = dl_comm_nccl_allreduce_sum_f32(comm, dev, n, dl_cuda_stream(g), &err);
    if (!rc)
        rc = dl_comm_nccl_wait(comm, dl_cuda_stream(g), &err);
    memset(host, 0, bytes);
    if (!rc)
        rc = dl_dev_copy(g, host, dev, bytes, DL_COPY_D2H, &err);
    if (rc) {
        fprintf(stderr, "n = %lld: %s\n", (long long)n, err.msg);
        check_failures++;
    }
    int64_t bad = -1;
    for (int64_t i = 0; !rc && bad < 0 && i < n + PAD; i++)
        if (host[i] != pattern(i))
            bad = i;
    if (bad >= 0) {
        fprintf(stderr, "n = %lld, %d all-reduce(s): element %lld is %g, not %g\n", (long long)n,
                times, (long long)bad, (double)host[bad], (double)pattern(bad));
        check_failures++;
    }
    dl_dev_free(DL_DEV_CUDA, dev);
    dl_host_free(DL_DEV_CUDA, host);
}

/* A count past one piece of the all-reduce (2^30 floats, 4 GiB): the last
 * floats and those past the end, where a piece that went wrong shows. */
static void check_two_pieces(dl_cuda_t *g)
{
    int64_t n = ((int64_t)1 << 30) + 5;
    size_t bytes = (size_t)(n + PAD) * sizeof(float), tail = 2 * PAD * sizeof(float);
    dl_err_t err = {0};
    float host[2 * PAD];
    float *dev = dl_dev_alloc(DL_DEV_CUDA, bytes, &err); /* zeroed */
    if (!dev) {
        printf("not checked: %lld floats in two pieces (%s)\n", (long long)n, err.msg);
        return;
    }
    for (int i = 0; i < 2 * PAD; i++)
        host[i] = pattern(i);
    char *end = (char *)dev + bytes - tail;
    int rc = dl_dev_copy(g, end, host, tail, DL_COPY_H2D, &err);
    if (!rc)
        rc = dl_comm_nccl_allreduce_sum_f32(comm, dev, n, dl_cuda_stream(g), &err);
    if (!rc)
        rc = dl_comm_nccl_wait(comm, dl_cuda_stream(g), &err);
    memset(host, 0, sizeof host);
    if (!rc)
        rc = dl_dev_copy(g, host, end, tail, DL_COPY_D2H, &err);
    if (rc) {
        fprintf(stderr, "two pieces: %s\n", err.msg);
        check_failures++;
    }
    for (int i = 0; !rc && i < 2 * PAD; i++)
        if (host[i] != pattern(i)) {
            fprintf(stderr, "two pieces: float %lld is %g, not %g\n",
                    (long long)(n + PAD - 2 * PAD + i), (double)host[i], (double)pattern(i));
            check_failures++;
            break;
        }
    dl_dev_free(DL_DEV_CUDA, dev);
}

/* Gradient buckets on the GPU (dl_buckets_create_nccl): a backward pass
 * stood in for by copies that fill the buffer from its end on the compute
 * stream, each followed by dl_buckets_ready; after dl_buckets_finish every
 * float is what was written (one rank: the sum is the value). The order of
 * the side stream after the compute stream cannot show on one rank; this
 * checks the calls, the split and that nothing is corrupted. */
static void check_buckets(dl_cuda_t *g)
{
    const int64_t n = 100003, step = 7919;
    dl_err_t err = {0};
    size_t bytes = (size_t)n * sizeof(float);
    float *host = dl_host_alloc(DL_DEV_CUDA, bytes, &err);
    float *dev = host ? dl_dev_alloc(DL_DEV_CUDA, bytes, &err) : NULL;
    dl_buckets_t *bk = NULL;
    int rc = dev ? dl_buckets_create_nccl(&bk, comm, dev, n, 64 * 1024, 10 * 1024,
                                          dl_cuda_stream(g), &err)
                 : err.code;
    for (int pass = 0; !rc && pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++)
            host[i] = pattern(i + pass);
        for (int64_t end = n; !rc && end > 0; end -= step) {
            int64_t from = end > step ? end - step : 0;
            rc = dl_dev_copy(g, dev + from, host + from, (size_t)(end - from) * sizeof(float),
                             DL_COPY_H2D, &err);
            if (!rc)
                rc = dl_buckets_ready(bk, from, &err);
        }
        if (!rc)
            rc = dl_buckets_finish(bk, &err);
        float *back = rc ? NULL : malloc(bytes);
        if (back && !(rc = dl_dev_copy(g, back, dev, bytes, DL_COPY_D2H, &err)))
            for (int64_t i = 0; i < n; i++)
                if (back[i] != pattern(i + pass)) {
                    fprintf(stderr, "buckets, pass %d: float %lld is %g, not %g\n", pass,
                            (long long)i, (double)back[i], (double)pattern(i + pass));
                    check_failures++;
                    break;
                }
        free(back);
    }
    if (rc) {
        fprintf(stderr, "buckets: %s\n", err.msg);
        check_failures++;
    }
    CHECK(!bk || dl_buckets_count(bk) == 1 + (int)((n - 2560 + 16383) / 16384));
    dl_buckets_free(bk);
    dl_dev_free(DL_DEV_CUDA, dev);
    dl_host_free(DL_DEV_CUDA, host);
}

static int test_gpu(void)
{
    dl_cuda_t *g = gpu_or_skip();
    CHECK(dl_comm_nccl_enabled(comm) == 1);
    dl_err_t err = {0};
    CHECK(dl_comm_nccl_init(comm, &err) == DL_EINTERNAL); /* only once */
    const int64_t counts[] = {0, 1, 7, 1000, 1 << 20, (1 << 22) + 3};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        check_sum(g, counts[i], 1);
    check_sum(g, 12345, 2);
    check_two_pieces(g);
    check_buckets(g);
    /* MPI still works beside NCCL */
    double x = 2.0;
    CHECK(dl_comm_allreduce_sum_f64(comm, &x, 1, &err) == 0 && x == 2.0);
    dl_cuda_destroy(g);
    return stop(CHECK_DONE());
}

/* Never returns normally: the watchdog ends the process (status 3). */
static int test_stall(void)
{
    dl_cuda_t *g = gpu_or_skip();
    dl_comm_watch(comm, STALL_TIMEOUT_S, "stall test");
    dl_err_t err = {0};
    float *dev = dl_dev_alloc(DL_DEV_CUDA, 1024 * sizeof(float), &err);
    if (!dev || test_stall_stream(dl_cuda_stream(g), STALL_KERNEL_S) != 0) {
        fprintf(stderr, "stall test: cannot set up: %s\n", dev ? "the kernel failed" : err.msg);
        return stop(1);
    }
    int rc = dl_comm_nccl_allreduce_sum_f32(comm, dev, 1024, dl_cuda_stream(g), &err);
    if (!rc)
        rc = dl_comm_nccl_wait(comm, dl_cuda_stream(g), &err);
    fprintf(stderr, "stall test: the wait returned (%d: %s) though the stream was busy for %g s\n",
            rc, err.msg, STALL_KERNEL_S);
    return stop(1);
}

int main(int argc, char **argv)
{
    start(&argc, &argv);
    if (argc > 1 && !strcmp(argv[1], "--no-gpu"))
        return stop(test_no_gpu());
    if (argc > 1 && !strcmp(argv[1], "--stall"))
        return test_stall();
    return test_gpu();
}
