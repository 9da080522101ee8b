/* NCCL implementation of the GPU collectives of comm.h: an NCCL
 * communicator over the ranks of an MPI one (comm_mpi.c), which carries its
 * unique id and watches it.
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0): no NCCL
 * call blocks; a call may return ncclInProgress, and the calling thread then
 * polls ncclCommGetAsyncError (and cudaStreamQuery, in dl_comm_nccl_wait)
 * until the operation is done. While it polls, the thread is in a
 * collective for the watchdog of comm_mpi.c (heartbeats, the ranks that did
 * not arrive), which ends a job that hangs, and aborts this communicator
 * first (ncclCommAbort, through the hook of comm_internal.h) so that a GPU
 * collective that never completes cannot keep the process alive. The abort
 * can come from the watchdog's thread while this one polls; NCCL calls on
 * one communicator must not overlap, so a mutex guards the communicator,
 * held only around non-blocking calls. Where no watchdog thread runs (one
 * rank, or MPI without MPI_THREAD_MULTIPLE) the polling thread applies the
 * timeout itself.
 *
 * Failures inside an operation end the job (status 3), as a failed MPI
 * collective does: the other ranks may be blocked in it. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../models/device.h"
#include "comm_internal.h"

/* NCCL counts are size_t, but large buffers go in pieces of at most this many
 * items, as comm_mpi.c does for MPI. */
#define CHUNK ((int64_t)1 << 30)
/* How long the thread that ends the job waits for ncclCommAbort before it
 * ends the process anyway (seconds): an abort that hangs must not keep the
 * job. */
#define ABORT_WAIT_S 10.0
/* How long dl_comm_free waits for ncclCommFinalize when the watchdog is off
 * (seconds); with it on, the watchdog's timeout. */
#define FINALIZE_LIMIT_S 60.0
/* Polls of the first this many seconds of an operation only yield the CPU;
 * later ones sleep POLL_SLEEP_NS between looks. */
#define POLL_SPIN_S 2e-3
#define POLL_SLEEP_NS 50000L

typedef struct nccl {
    dl_comm_t *c;
    pthread_mutex_t mu; /* guards comm and aborted */
    ncclComm_t comm;    /* NULL once aborted or destroyed */
    int aborted;        /* the job is ending: NCCL must not be called again */
    /* The thread that runs ncclCommAbort says so here (see nccl_abort). */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    int done;
    /* dl_comm_nccl_stream and dl_comm_nccl_after: a side stream and the
     * event that orders it after another stream (made on first use). */
    cudaStream_t side;
    cudaEvent_t ev;
} nccl_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L};
    nanosleep(&ts, NULL);
}

/* Take s->mu to call NCCL. If the job is ending (the communicator was
 * aborted), never return: the process is about to be ended. */
static void lock_live(nccl_t *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->aborted)
        return;
    pthread_mutex_unlock(&s->mu);
    for (;;)
        sleep_ns(100000000L);
}

/* The words of a failed NCCL call r, with NCCL's own message (NCCL keeps
 * the last one per process; comm may be NULL). Under s->mu. */
static void nccl_words(nccl_t *s, ncclResult_t r, char *out, size_t size)
{
    const char *last = ncclGetLastError(s->comm);
    snprintf(out, size, "%s%s%s", ncclGetErrorString(r), last && last[0] ? ": " : "",
             last ? last : "");
}

/* Runs ncclCommAbort for nccl_abort, in a thread of its own so that an abort
 * that hangs cannot keep the job. */
static void *abort_thread(void *arg)
{
    nccl_t *s = arg;
    pthread_mutex_lock(&s->mu);
    if (!s->aborted && s->comm) {
        s->aborted = 1;
        ncclCommAbort(s->comm); /* its status does not matter: the process ends next */
        s->comm = NULL;
    }
    s->aborted = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->done_mu);
    s->done = 1;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->done_mu);
    return NULL;
}

/* The hook comm_mpi.c calls just before it ends the job (any thread):
 * abort the communicator, waiting for that at most ABORT_WAIT_S. */
static void nccl_abort(void *arg)
{
    nccl_t *s = arg;
    pthread_attr_t attr;
    pthread_t t;
    int started = pthread_attr_init(&attr) == 0 &&
                  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                  pthread_create(&t, &attr, abort_thread, s) == 0;
    pthread_attr_destroy(&attr);
    int done = 0;
    if (started) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)ABORT_WAIT_S;
        pthread_mutex_lock(&s->done_mu);
        while (!s->done && pthread_cond_timedwait(&s->done_cv, &s->done_mu, &until) == 0)
            ;
        done = s->done;
        pthread_mutex_unlock(&s->done_mu);
    }
    if (!done) {
        fprintf(stderr,
                "dltrain: (rank %d) the NCCL communicator could not be aborted within %.0f s; "
                "ending the process without it\n",
                dl_comm_rank(s->c), ABORT_WAIT_S);
        fflush(stderr);
    }
}

/* Poll until the operation is done: with on_stream, until everything
 * queued on stream has run; otherwise until the communicator's state is no
 * longer ncclInProgress (a call that returned it: initialisation, a queued
 * all-reduce). A failure, or no progress within the timeout where no
 * watchdog thread applies it, ends the job. op names the operation for the
 * messages ("NCCL all-reduce"). */
static void poll_done(nccl_t *s, int on_stream, cudaStream_t stream, const char *op)
{
    dl_comm_t *c = s->c;
    char what[160];
    double timeout = dl_comm_watch_state(c, what, sizeof what);
    int self = timeout > 0 && (dl_comm_size(c) == 1 || !dl_comm_watchdog_running(c));
    double t0 = now_s();
    for (;;) {
        char failed[900] = "";
        int done = 0;
        lock_live(s);
        if (on_stream) {
            cudaError_t q = cudaStreamQuery(stream);
            if (q == cudaSuccess)
                done = 1;
            else if (q != cudaErrorNotReady)
                snprintf(failed, sizeof failed, "CUDA reports %s (%s)", cudaGetErrorString(q),
                         cudaGetErrorName(q));
        }
        if (!failed[0]) {
            ncclResult_t state = ncclSuccess, r = ncclCommGetAsyncError(s->comm, &state);
            if (r != ncclSuccess)
                nccl_words(s, r, failed, sizeof failed);
            else if (state != ncclSuccess && state != ncclInProgress)
                nccl_words(s, state, failed, sizeof failed);
            else if (!on_stream)
                done = state == ncclSuccess;
        }
        pthread_mutex_unlock(&s->mu);
        if (failed[0])
            dl_comm_fatal(c, "%s: the %s failed: %s", what, op, failed);
        if (done)
            return;
        double waited = now_s() - t0;
        if (self && waited >= timeout)
            dl_comm_fatal(c, "watchdog: %s: the %s has not completed in %.0f s (the timeout)%s",
                          what, op, waited,
                          dl_comm_size(c) == 1
                              ? "; the GPU or NCCL is stuck"
                              : "; the watchdog thread does not run (MPI without "
                                "MPI_THREAD_MULTIPLE), so the ranks that did not arrive are "
                                "not known");
        if (waited < POLL_SPIN_S)
            sched_yield();
        else
            sleep_ns(POLL_SLEEP_NS);
    }
}

/* A call that did not return ncclSuccess or ncclInProgress, inside op. */
static void call_failed(nccl_t *s, const char *op, const char *call, ncclResult_t r)
{
    char words[900], what[160];
    pthread_mutex_lock(&s->mu);
    nccl_words(s, r, words, sizeof words);
    pthread_mutex_unlock(&s->mu);
    dl_comm_watch_state(s->c, what, sizeof what);
    dl_comm_fatal(s->c, "%s: the %s failed in NCCL: %s [%s]", what, op, words, call);
}

/* dl_comm_free's part: finalize (all ranks do it together) and destroy;
 * abort when finalizing fails or does not end in time. */
static void nccl_release(void *arg)
{
    nccl_t *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->comm && !s->aborted) {
        double limit = dl_comm_watch_state(s->c, NULL, 0);
        limit = limit > 0 ? limit : FINALIZE_LIMIT_S;
        ncclResult_t state = ncclCommFinalize(s->comm);
        for (double t0 = now_s(); state == ncclInProgress && now_s() - t0 < limit;) {
            sleep_ns(1000000L);
            if (ncclCommGetAsyncError(s->comm, &state) != ncclSuccess)
                state = ncclInternalError;
        }
        if (state == ncclSuccess) {
            ncclCommDestroy(s->comm);
        } else {
            char words[900];
            nccl_words(s, state, words, sizeof words);
            fprintf(stderr,
                    "dltrain: warning (rank %d): the NCCL communicator did not finalize (%s); "
                    "aborted it instead\n",
                    dl_comm_rank(s->c), words);
            ncclCommAbort(s->comm);
        }
        s->comm = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (s->ev)
        cudaEventDestroy(s->ev);
    if (s->side)
        cudaStreamDestroy(s->side);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->done_mu);
    pthread_cond_destroy(&s->done_cv);
    free(s);
}

/* The lowest rank whose ok is 0 and its error code, or size when every rank
 * is ok: one all-reduce, so that no rank goes on to wait for a rank that
 * has given up. */
static int agree(dl_comm_t *c, int ok, int code, int *bad_code, dl_err_t *err)
{
    int size = dl_comm_size(c);
    int64_t v = ok ? INT64_MAX : (int64_t)dl_comm_rank(c) * 100 + (-code % 100);
    int rc = dl_comm_allreduce_min_i64(c, &v, 1, err);
    if (rc)
        return rc;
    if (v == INT64_MAX)
        return size;
    *bad_code = -(int)(v % 100);
    return (int)(v / 100);
}

/* Everything but the NCCL communicator: locks whose condition variable
 * uses the monotonic clock (nccl_abort waits with it). */
static nccl_t *nccl_new(dl_comm_t *c, dl_err_t *err)
{
    nccl_t *s = dl_calloc(1, sizeof *s, err);
    if (!s)
        return NULL;
    s->c = c;
    pthread_condattr_t mono;
    int ok = pthread_condattr_init(&mono) == 0;
    ok = ok && pthread_condattr_setclock(&mono, CLOCK_MONOTONIC) == 0;
    ok = ok && pthread_cond_init(&s->done_cv, &mono) == 0;
    if (ok && pthread_mutex_init(&s->mu, NULL) != 0) {
        pthread_cond_destroy(&s->done_cv);
        ok = 0;
    }
    if (ok && pthread_mutex_init(&s->done_mu, NULL) != 0) {
        pthread_cond_destroy(&s->done_cv);
        pthread_mutex_destroy(&s->mu);
        ok = 0;
    }
    pthread_condattr_destroy(&mono);
    if (!ok) {
        free(s);
        DL_ERR(err, DL_ELIB, "cannot create the locks of the NCCL communicator");
        return NULL;
    }
    return s;
}

int dl_comm_nccl_init(dl_comm_t *c, dl_err_t *err)
{
    if (dl_comm_ext_arg(c))
        return DL_ERR(err, DL_EINTERNAL, "dl_comm_nccl_init: this communicator has NCCL already");
    int rank = dl_comm_rank(c), size = dl_comm_size(c);

    /* Every rank has a GPU, made current by the caller. */
    dl_err_t mine = {0};
    char why[256];
    int dev = -1;
    cudaError_t ce = cudaSuccess;
    if (dl_cuda_device_count(why, sizeof why) == 0)
        DL_ERR(&mine, DL_EINPUT,
               "the NCCL collectives need a GPU on every rank, and rank %d has none: %s", rank,
               why);
    else if ((ce = cudaGetDevice(&dev)) != cudaSuccess)
        DL_ERR(&mine, DL_ELIB,
               "rank %d cannot tell its GPU for NCCL: CUDA call cudaGetDevice failed: %s", rank,
               cudaGetErrorString(ce));
    int bad_code = 0, bad = agree(c, mine.code == 0, mine.code, &bad_code, err);
    if (bad < 0)
        return bad;
    if (bad == rank) {
        *err = mine;
        return mine.code;
    }
    if (bad < size)
        return DL_ERR(err, bad_code, "rank %d cannot use a GPU for NCCL (its own message says why)",
                      bad);

    /* Rank 0's unique id, over MPI; its status goes with it, so that the
     * other ranks stop too when it could not make one. */
    struct {
        int64_t status;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    if (rank == 0)
        msg.status = (int64_t)ncclGetUniqueId(&msg.id);
    int rc = dl_comm_broadcast(c, &msg, (int64_t)sizeof msg, 0, err);
    if (rc)
        return rc;
    if (msg.status != ncclSuccess)
        return DL_ERR(err, DL_ELIB, "rank 0 could not make NCCL's unique id (ncclGetUniqueId): %s",
                      ncclGetErrorString((ncclResult_t)msg.status));

    nccl_t *s = nccl_new(c, err);
    if (!s) /* the others would wait for this rank in NCCL's initialisation */
        dl_comm_fatal(c, "start-up: %s", err->msg);
    /* Non-blocking, then polled as a collective: a rank that never joins is
     * reported by the watchdog, which aborts the communicator. */
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    dl_comm_enter_nccl(c, 1);
    ncclResult_t r = ncclCommInitRankConfig(&s->comm, size, msg.id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        if (s->comm) {
            ncclCommAbort(s->comm);
            s->comm = NULL;
        }
        call_failed(s, "NCCL initialisation", "ncclCommInitRankConfig", r);
    }
    dl_comm_set_ext(c, &(dl_comm_ext_t){.arg = s, .abort = nccl_abort, .release = nccl_release});
    poll_done(s, 0, NULL, "NCCL initialisation");
    dl_comm_leave_nccl(c);
    return 0;
}

int dl_comm_nccl_enabled(const dl_comm_t *c)
{
    return dl_comm_ext_arg(c) != NULL;
}

/* The NCCL state of c, or an error for a call made before dl_comm_nccl_init. */
static nccl_t *state_of(dl_comm_t *c, const char *fn, dl_err_t *err)
{
    nccl_t *s = dl_comm_ext_arg(c);
    if (!s)
        DL_ERR(err, DL_EINTERNAL,
               "%s: this communicator has no NCCL (call dl_comm_nccl_init first)", fn);
    return s;
}

int dl_comm_nccl_allreduce_sum_f32(dl_comm_t *c, float *dev_buf, int64_t n, void *stream,
                                   dl_err_t *err)
{
    nccl_t *s = state_of(c, "dl_comm_nccl_allreduce_sum_f32", err);
    if (!s)
        return DL_EINTERNAL;
    if (n < 0 || (n > 0 && !dev_buf))
        return DL_ERR(err, DL_EINTERNAL, "NCCL all-reduce of %lld floats at %p", (long long)n,
                      (void *)dev_buf);
    dl_comm_enter_nccl(c, 0);
    for (int64_t off = 0; off < n; off += CHUNK) {
        size_t k = (size_t)(n - off < CHUNK ? n - off : CHUNK);
        lock_live(s);
        ncclResult_t r = ncclAllReduce(dev_buf + off, dev_buf + off, k, ncclFloat32, ncclSum,
                                       s->comm, (cudaStream_t)stream);
        pthread_mutex_unlock(&s->mu);
        if (r == ncclInProgress) /* being queued: done when the state says so */
            poll_done(s, 0, NULL, "NCCL all-reduce");
        else if (r != ncclSuccess)
            call_failed(s, "NCCL all-reduce", "ncclAllReduce", r);
    }
    dl_comm_leave_nccl(c);
    return 0;
}

int dl_comm_nccl_wait(dl_comm_t *c, void *stream, dl_err_t *err)
{
    nccl_t *s = state_of(c, "dl_comm_nccl_wait", err);
    if (!s)
        return DL_EINTERNAL;
    dl_comm_enter_nccl(c, 0);
    poll_done(s, 1, (cudaStream_t)stream, "NCCL all-reduce");
    dl_comm_leave_nccl(c);
    return 0;
}

/* A failed CUDA call of the two functions below, as a dl error. */
static int cuda_failed(cudaError_t r, const char *call, dl_err_t *err)
{
    return DL_ERR(err, DL_ELIB, "%s failed: %s", call, cudaGetErrorString(r));
}

int dl_comm_nccl_stream(dl_comm_t *c, void **stream, dl_err_t *err)
{
    *stream = NULL;
    nccl_t *s = state_of(c, "dl_comm_nccl_stream", err);
    if (!s)
        return DL_EINTERNAL;
    cudaError_t r;
    if (!s->side && (r = cudaStreamCreateWithFlags(&s->side, cudaStreamNonBlocking)) != cudaSuccess)
        return cuda_failed(r, "cudaStreamCreateWithFlags", err);
    if (!s->ev && (r = cudaEventCreateWithFlags(&s->ev, cudaEventDisableTiming)) != cudaSuccess)
        return cuda_failed(r, "cudaEventCreateWithFlags", err);
    *stream = (void *)s->side;
    return 0;
}

int dl_comm_nccl_after(dl_comm_t *c, void *stream, void *after, dl_err_t *err)
{
    nccl_t *s = state_of(c, "dl_comm_nccl_after", err);
    if (!s)
        return DL_EINTERNAL;
    if (!s->ev)
        return DL_ERR(err, DL_EINTERNAL, "dl_comm_nccl_after before dl_comm_nccl_stream");
    cudaError_t r = cudaEventRecord(s->ev, (cudaStream_t)after);
    if (r != cudaSuccess)
        return cuda_failed(r, "cudaEventRecord", err);
    r = cudaStreamWaitEvent((cudaStream_t)stream, s->ev, 0);
    return r == cudaSuccess ? 0 : cuda_failed(r, "cudaStreamWaitEvent", err);
}
