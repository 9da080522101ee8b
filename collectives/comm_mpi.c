/* MPI implementation of the collectives interface (the CPU path).
 *
 * The watchdog (see comm.h) is a thread. The collectives are the ordinary
 * blocking MPI calls; around each one the calling thread only records which
 * collective it is in and since when. The one exception, the gradient
 * buckets' MPI_Iallreduce, is numbered when it starts and recorded while
 * dl_comm_wait_all waits for it, which is where a rank waits for the
 * others then. The watchdog thread wakes a few times a second: a rank that
 * has waited in a collective for a while tells rank 0 so with a heartbeat
 * (the collective's number, the same on every rank as all ranks call the
 * same collectives in the same order), again every second or so while it
 * waits, and rank 0, once it has waited past the timeout, names the ranks
 * that never said they were there. A rank whose heartbeats keep coming from
 * an earlier collective also counts as there: it waits too, in a
 * collective that rank 0 has already finished (a non-blocking all-reduce
 * can complete on rank 0 and not yet on rank 1 when rank 2 stops halfway
 * through it, since its ranks move it on only while inside MPI calls). A
 * process that is stopped or stuck sends nothing, whether it hangs before
 * the collective or inside it. A healthy job sends no heartbeats. MPI is
 * then called from two threads: dist.c asks for MPI_THREAD_MULTIPLE, and
 * without it the watchdog stays off. */
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "comm_internal.h"

struct dl_comm {
    MPI_Comm comm;
    MPI_Comm hb; /* heartbeats to rank 0, apart from the collectives' traffic */
    int rank, size;
    int64_t seq; /* collectives called so far: the same count on every rank */
    /* Written by the calling thread around each collective, read by the
     * watchdog: the collective's number (0 when in none), since when (ns)
     * and which operation (an index into op_names). */
    _Atomic int64_t busy_seq, busy_since_ns;
    _Atomic int busy_op;
    /* The watchdog thread; mu guards stop, timeout_s and what. */
    pthread_t thread;
    int locks, thread_started, stop;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    double timeout_s; /* 0: no watchdog */
    char what[160];   /* what the job is doing, for the watchdog's message */
    int64_t *seen;    /* rank 0: per rank, the newest collective it said it waits in */
    int64_t *seen_ns; /* rank 0: per rank, when its last heartbeat came in */
    int64_t hb_val;   /* the heartbeat being sent, when, and its request */
    int64_t hb_sent_ns;
    MPI_Request hb_req;
    dl_comm_ext_t ext; /* the NCCL communicator beside this one (comm_internal.h) */
    /* Non-blocking sums started and not yet waited for, and the collective
     * number of the newest one. */
    MPI_Request *pending;
    int n_pending, cap_pending;
    int64_t pending_seq;
};

enum { OP_ALLREDUCE, OP_BROADCAST, OP_BARRIER, OP_GATHER, OP_SCATTER, OP_NCCL_INIT, OP_NCCL };
static const char *const op_names[] = {"all-reduce",     "broadcast", "barrier",
                                       "gather",         "scatter",   "NCCL initialisation",
                                       "NCCL all-reduce"};

/* A rank that has waited this long at a collective tells rank 0 (seconds,
 * at most a quarter of the timeout). */
#define HEARTBEAT_AFTER_S 1.0
/* Ranks other than 0 wait this much longer than the timeout before they end
 * the job themselves, so that rank 0's message, which names the missing
 * ranks, comes first. */
#define NONROOT_GRACE_S 3.0
/* How often the watchdog thread looks (seconds, at most). */
#define WATCH_PERIOD_S 0.1
#define TAG_HEARTBEAT 1

/* MPI counts are int: larger buffers go in pieces of at most this many items. */
#define CHUNK ((int64_t)1 << 30)

static int mpi_fail(dl_err_t *err, int rc, const char *what, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = '\0';
    return dl_err_set(err, DL_ELIB, file, line, "%s failed: %s", what, msg);
}

/* End the job from inside a collective: the other ranks are (or will be)
 * blocked in it, so returning an error would leave them hanging. */
static void fatal(dl_comm_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)))
__attribute__((noreturn));
static void fatal(dl_comm_t *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dltrain: error (rank %d): %s; ending the job (exit status %d)\n", c->rank, msg,
            DL_EXIT_ABORT);
    fflush(stderr);
    fflush(stdout);
    if (c->ext.abort) /* the NCCL communicator, whose kernels could keep the process */
        c->ext.abort(c->ext.arg);
    MPI_Abort(MPI_COMM_WORLD, DL_EXIT_ABORT);
    abort(); /* not reached: MPI_Abort does not return */
}

/* A collective call that failed in MPI. */
#define MPI_COLL(c, call, op)                                                                      \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS)                                                                    \
            coll_failed((c), rc_, (op), #call, __FILE__, __LINE__);                                \
    } while (0)
static void coll_failed(dl_comm_t *c, int rc, const char *op, const char *call, const char *file,
                        int line)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = '\0';
    fatal(c, "%s: the %s failed in MPI: %s [%s at %s:%d]", c->what[0] ? c->what : "start-up", op,
          msg, call, file, line);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dl_comm_watch(dl_comm_t *c, double timeout_s, const char *what, ...)
{
    pthread_mutex_lock(&c->mu);
    c->timeout_s = timeout_s > 0 ? timeout_s : 0;
    va_list ap;
    va_start(ap, what);
    vsnprintf(c->what, sizeof c->what, what, ap);
    va_end(ap);
    pthread_mutex_unlock(&c->mu);
}

/* The calling thread waits in collective number seq (from now on). */
static void waits_in(dl_comm_t *c, int op, int64_t seq)
{
    atomic_store(&c->busy_op, op);
    atomic_store(&c->busy_since_ns, now_ns());
    atomic_store(&c->busy_seq, seq);
}
/* The calling thread enters and leaves collective number c->seq. */
static void enter(dl_comm_t *c, int op)
{
    c->seq++;
    waits_in(c, op, c->seq);
}
static void leave(dl_comm_t *c)
{
    atomic_store(&c->busy_seq, 0);
}

/* Rank 0's watchdog: take every heartbeat that has come in. */
static void drain_heartbeats(dl_comm_t *c)
{
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_HEARTBEAT, c->hb, &flag, &st) != MPI_SUCCESS || !flag)
            return;
        int64_t v = -1;
        if (MPI_Recv(&v, 1, MPI_INT64_T, st.MPI_SOURCE, TAG_HEARTBEAT, c->hb, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
            return;
        if (v > c->seen[st.MPI_SOURCE])
            c->seen[st.MPI_SOURCE] = v;
        c->seen_ns[st.MPI_SOURCE] = now_ns();
    }
}

/* Seconds of waiting after which a rank tells rank 0, and tells it again. */
static double heartbeat_after(double timeout)
{
    return timeout / 4 < HEARTBEAT_AFTER_S ? timeout / 4 : HEARTBEAT_AFTER_S;
}

/* A rank waiting at a collective sends a heartbeat every heartbeat_after
 * seconds; one no older than this (s) shows that it waits now. */
static double heartbeat_fresh_s(double timeout)
{
    return 2.0 * heartbeat_after(timeout) + 2.0 * WATCH_PERIOD_S;
}

/* Other ranks' watchdogs: tell rank 0 that this rank waits in collective seq. */
static void send_heartbeat(dl_comm_t *c, int64_t seq)
{
    if (c->hb_req != MPI_REQUEST_NULL) { /* the last one is long delivered (small, eager) */
        int done = 0;
        MPI_Test(&c->hb_req, &done, MPI_STATUS_IGNORE);
        if (!done)
            return;
    }
    c->hb_val = seq;
    c->hb_sent_ns = now_ns();
    if (MPI_Isend(&c->hb_val, 1, MPI_INT64_T, 0, TAG_HEARTBEAT, c->hb, &c->hb_req) != MPI_SUCCESS)
        c->hb_req = MPI_REQUEST_NULL;
}

/* The watchdog has seen enough: say who is missing and end the job. Rank 0
 * may look again later instead (see below). */
static void timed_out(dl_comm_t *c, int64_t seq, const char *op, double waited, double timeout)
{
    char what[sizeof c->what];
    pthread_mutex_lock(&c->mu);
    snprintf(what, sizeof what, "%s", c->what[0] ? c->what : "start-up");
    pthread_mutex_unlock(&c->mu);
    if (c->rank != 0)
        fatal(c,
              "watchdog: %s: waited %.0f s for the other ranks at the %s; rank 0, which names "
              "the ranks that did not arrive, has not ended the job, so rank 0 itself has "
              "probably stopped (it did not arrive here)",
              what, waited, op);
    drain_heartbeats(c);
    char list[512] = "";
    int n = 0, behind = 0;
    size_t len = 0;
    for (int r = 1; r < c->size; r++) {
        if (c->seen[r] >= seq)
            continue;
        double age = 1e-9 * (double)(now_ns() - c->seen_ns[r]);
        if (c->seen[r] > 0 && age <= heartbeat_fresh_s(timeout)) { /* waits before seq */
            behind++;
            continue;
        }
        if (n < 32 && len < sizeof list - 16)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", n ? ", " : "", r);
        n++;
    }
    if (n > 32)
        snprintf(list + len, sizeof list - len, " and %d more", n - 32);
    /* A rank that left the earlier collective and then stopped goes quiet
     * within heartbeat_fresh_s: look again until then (before the other
     * ranks' NONROOT_GRACE_S runs out). */
    if (n == 0 && behind && waited < timeout + heartbeat_fresh_s(timeout) + 2.0 * WATCH_PERIOD_S)
        return;
    if (n == 0) /* every rank said it waits */
        fatal(c,
              "watchdog: %s: every rank reached the %s%s but it has not completed in %.0f s; MPI "
              "or the network is stuck",
              what, op, behind ? " or waits in a collective before it" : "", waited);
    fatal(c,
          "watchdog: %s: rank%s %s did not reach the %s within the timeout of %g s, while the "
          "other ranks waited there; the rank%s stopped or %s stuck",
          what, n > 1 ? "s" : "", list, op, timeout, n > 1 ? "s" : "", n > 1 ? "are" : "is");
}

/* One look at the calling thread's collective (see the top of this file). */
static void watch_once(dl_comm_t *c, double timeout)
{
    if (c->rank == 0)
        drain_heartbeats(c);
    int64_t seq = atomic_load(&c->busy_seq);
    if (seq == 0 || timeout <= 0)
        return;
    int64_t since = atomic_load(&c->busy_since_ns);
    int op = atomic_load(&c->busy_op);
    if (atomic_load(&c->busy_seq) != seq) /* it moved on meanwhile */
        return;
    double waited = 1e-9 * (double)(now_ns() - since);
    double every = heartbeat_after(timeout);
    if (c->rank != 0 && waited >= every &&
        (c->hb_val != seq || 1e-9 * (double)(now_ns() - c->hb_sent_ns) >= every))
        send_heartbeat(c, seq);
    if (waited >= timeout + (c->rank ? NONROOT_GRACE_S : 0.0))
        timed_out(c, seq, op_names[op], waited, timeout);
}

static void *watchdog(void *arg)
{
    dl_comm_t *c = arg;
    int64_t last = now_ns();
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        double period = c->timeout_s > 0 && c->timeout_s / 20 < WATCH_PERIOD_S ? c->timeout_s / 20
                                                                               : WATCH_PERIOD_S;
        int64_t t = now_ns() + (int64_t)(1e9 * period);
        struct timespec until = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
        pthread_cond_timedwait(&c->wake, &c->mu, &until);
        if (c->stop)
            break;
        double timeout = c->timeout_s;
        pthread_mutex_unlock(&c->mu);
        /* A wake-up far later than asked for means this process itself was
         * stopped (SIGSTOP, a frozen node) and has just been continued: its
         * clock says nothing about the other ranks then. */
        int64_t now = now_ns();
        if (now - last < (int64_t)1e9 + (int64_t)(2e9 * period))
            watch_once(c, timeout);
        last = now;
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Start the watchdog thread, when there are other ranks to watch and MPI
 * may be called from it. */
static int start_watchdog(dl_comm_t *c, dl_err_t *err)
{
    pthread_condattr_t mono;
    if (pthread_condattr_init(&mono) || pthread_condattr_setclock(&mono, CLOCK_MONOTONIC) ||
        pthread_mutex_init(&c->mu, NULL) || pthread_cond_init(&c->wake, &mono))
        return DL_ERR(err, DL_ELIB, "cannot create the watchdog's locks");
    pthread_condattr_destroy(&mono);
    c->locks = 1;
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (c->size == 1 || level < MPI_THREAD_MULTIPLE)
        return 0;
    if (c->rank == 0 && (!(c->seen = dl_calloc((size_t)c->size, sizeof *c->seen, err)) ||
                         !(c->seen_ns = dl_calloc((size_t)c->size, sizeof *c->seen_ns, err))))
        return DL_ENOMEM;
    if (pthread_create(&c->thread, NULL, watchdog, c) != 0)
        return DL_ERR(err, DL_ELIB, "cannot start the watchdog thread");
    c->thread_started = 1;
    return 0;
}

int dl_comm_create_world(dl_comm_t **out, dl_err_t *err)
{
    dl_comm_t *c = dl_calloc(1, sizeof *c, err);
    if (!c)
        return DL_ENOMEM;
    /* Our own duplicate keeps dltrain's traffic apart from anyone else's. */
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (rc != MPI_SUCCESS) {
        free(c);
        return mpi_fail(err, rc, "MPI_Comm_dup", __FILE__, __LINE__);
    }
    /* Errors come back as return codes rather than aborting the job, so they
     * can be reported with context. */
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    c->hb_req = MPI_REQUEST_NULL;
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->hb);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&c->comm);
        free(c);
        return mpi_fail(err, rc, "MPI_Comm_dup", __FILE__, __LINE__);
    }
    MPI_Comm_set_errhandler(c->hb, MPI_ERRORS_RETURN);
    rc = start_watchdog(c, err);
    if (rc) {
        dl_comm_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void dl_comm_free(dl_comm_t *c)
{
    if (!c)
        return;
    if (c->ext.release)
        c->ext.release(c->ext.arg);
    c->ext = (dl_comm_ext_t){0};
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    if (c->seen)
        drain_heartbeats(c);
    if (c->hb_req != MPI_REQUEST_NULL)
        MPI_Wait(&c->hb_req, MPI_STATUS_IGNORE);
    if (c->locks) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->wake);
    }
    /* Sums still pending (a backward pass that failed) are not waited for:
     * the ranks they need may be gone, and MPI cannot cancel them. */
    MPI_Comm_free(&c->hb);
    MPI_Comm_free(&c->comm);
    free(c->pending);
    free(c->seen);
    free(c->seen_ns);
    free(c);
}

void dl_comm_set_ext(dl_comm_t *c, const dl_comm_ext_t *ext)
{
    c->ext = ext ? *ext : (dl_comm_ext_t){0};
}

void *dl_comm_ext_arg(const dl_comm_t *c)
{
    return c->ext.arg;
}

void dl_comm_enter_nccl(dl_comm_t *c, int init)
{
    enter(c, init ? OP_NCCL_INIT : OP_NCCL);
}

void dl_comm_leave_nccl(dl_comm_t *c)
{
    leave(c);
}

double dl_comm_watch_state(dl_comm_t *c, char *what, size_t what_size)
{
    pthread_mutex_lock(&c->mu);
    double t = c->timeout_s;
    if (what)
        snprintf(what, what_size, "%s", c->what[0] ? c->what : "start-up");
    pthread_mutex_unlock(&c->mu);
    return t;
}

void dl_comm_fatal(dl_comm_t *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fatal(c, "%s", msg);
}

int dl_comm_watchdog_running(const dl_comm_t *c)
{
    return c->thread_started || c->size == 1;
}

int dl_comm_rank(const dl_comm_t *c)
{
    return c->rank;
}
int dl_comm_size(const dl_comm_t *c)
{
    return c->size;
}

static int allreduce(dl_comm_t *c, void *buf, int64_t n, size_t item, MPI_Datatype t, MPI_Op op,
                     dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    char *p = buf;
    enter(c, OP_ALLREDUCE);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_COLL(c, MPI_Allreduce(MPI_IN_PLACE, p + off * (int64_t)item, (int)k, t, op, c->comm),
                 "all-reduce");
    }
    leave(c);
    return 0;
}

int dl_comm_allreduce_sum_f32(dl_comm_t *c, float *buf, int64_t n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(float), MPI_FLOAT, MPI_SUM, err);
}

int dl_comm_allreduce_sum_f64(dl_comm_t *c, double *buf, int64_t n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(double), MPI_DOUBLE, MPI_SUM, err);
}

int dl_comm_iallreduce_sum_f32(dl_comm_t *c, float *buf, int64_t n, dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    int pieces = (int)((n + CHUNK - 1) / CHUNK);
    if (c->n_pending + pieces > c->cap_pending) {
        /* grows to the number of buckets in the first step, then stays */
        int cap = 2 * (c->n_pending + pieces);
        MPI_Request *p = realloc(c->pending, (size_t)cap * sizeof *p);
        if (!p) /* the other ranks would wait for this sum: end the job */
            fatal(c, "%s: out of memory starting an all-reduce", c->what[0] ? c->what : "start-up");
        c->pending = p;
        c->cap_pending = cap;
    }
    c->seq++;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_COLL(c,
                 MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, c->comm,
                                &c->pending[c->n_pending]),
                 "all-reduce");
        c->n_pending++;
    }
    c->pending_seq = c->seq;
    return 0;
}

int dl_comm_progress(dl_comm_t *c, dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    int done = 0;
    if (c->n_pending) {
        MPI_COLL(c, MPI_Testall(c->n_pending, c->pending, &done, MPI_STATUSES_IGNORE),
                 "all-reduce");
        if (done)
            c->n_pending = 0;
    }
    return 0;
}

int dl_comm_wait_all(dl_comm_t *c, dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    if (!c->n_pending)
        return 0;
    /* Every rank waits for the same sums here, so the newest one's number
     * tells rank 0 who has arrived, as for a blocking collective. */
    waits_in(c, OP_ALLREDUCE, c->pending_seq);
    MPI_COLL(c, MPI_Waitall(c->n_pending, c->pending, MPI_STATUSES_IGNORE), "all-reduce");
    leave(c);
    c->n_pending = 0;
    return 0;
}

int dl_comm_allreduce_min_i64(dl_comm_t *c, int64_t *buf, int n, dl_err_t *err)
{
    return allreduce(c, buf, n, sizeof(int64_t), MPI_INT64_T, MPI_MIN, err);
}

int dl_comm_broadcast(dl_comm_t *c, void *buf, int64_t bytes, int root, dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    char *p = buf;
    enter(c, OP_BROADCAST);
    for (int64_t off = 0; off < bytes; off += CHUNK) {
        int64_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_COLL(c, MPI_Bcast(p + off, (int)k, MPI_BYTE, root, c->comm), "broadcast");
    }
    leave(c);
    return 0;
}

int dl_comm_barrier(dl_comm_t *c, dl_err_t *err)
{
    (void)err; /* failures end the job (see comm.h) */
    enter(c, OP_BARRIER);
    MPI_COLL(c, MPI_Barrier(c->comm), "barrier");
    leave(c);
    return 0;
}

void dl_comm_abort(int status)
{
    MPI_Abort(MPI_COMM_WORLD, status);
}

/* A block of k bytes whose extent is stride bytes: one rank's piece of a
 * gather or scatter buffer that goes in pieces of at most CHUNK bytes. */
static int strided_block(int64_t k, int64_t stride, MPI_Datatype *out, dl_err_t *err)
{
    MPI_Datatype t;
    int rc = MPI_Type_contiguous((int)k, MPI_BYTE, &t);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "MPI_Type_contiguous", __FILE__, __LINE__);
    rc = MPI_Type_create_resized(t, 0, (MPI_Aint)stride, out);
    MPI_Type_free(&t);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "MPI_Type_create_resized", __FILE__, __LINE__);
    rc = MPI_Type_commit(out);
    if (rc != MPI_SUCCESS) {
        MPI_Type_free(out);
        return mpi_fail(err, rc, "MPI_Type_commit", __FILE__, __LINE__);
    }
    return 0;
}

/* Gather (scatter 0) or scatter (1) `bytes` per rank, in pieces. */
static int gather_scatter(dl_comm_t *c, int scatter, const void *send, void *recv, int64_t bytes,
                          int root, dl_err_t *err)
{
    int is_root = c->rank == root;
    const char *s = send;
    char *r = recv;
    enter(c, scatter ? OP_SCATTER : OP_GATHER);
    for (int64_t off = 0; off < bytes; off += CHUNK) {
        int64_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_Datatype block;
        int rc = strided_block(k, bytes, &block, err);
        if (rc) {
            leave(c);
            return rc;
        }
        if (scatter)
            rc = MPI_Scatter(is_root ? s + off : NULL, 1, block, r + off, (int)k, MPI_BYTE, root,
                             c->comm);
        else
            rc = MPI_Gather(s + off, (int)k, MPI_BYTE, is_root ? r + off : NULL, 1, block, root,
                            c->comm);
        MPI_Type_free(&block);
        if (rc != MPI_SUCCESS)
            coll_failed(c, rc, op_names[scatter ? OP_SCATTER : OP_GATHER],
                        scatter ? "MPI_Scatter" : "MPI_Gather", __FILE__, __LINE__);
    }
    leave(c);
    return 0;
}

int dl_comm_gather(dl_comm_t *c, const void *send, void *recv, int64_t bytes, int root,
                   dl_err_t *err)
{
    return gather_scatter(c, 0, send, recv, bytes, root, err);
}

int dl_comm_scatter(dl_comm_t *c, const void *send, void *recv, int64_t bytes, int root,
                    dl_err_t *err)
{
    return gather_scatter(c, 1, send, recv, bytes, root, err);
}
