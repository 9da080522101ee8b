/* Background batch loading; see loader.h.
 *
 * Requests go into a ring of depth entries. Three counters, guarded by one
 * mutex, say where everything is: requested (made by the consumer), done
 * (read by the I/O thread) and taken (handed back by dl_loader_take); entry
 * k % depth holds request k. The batches themselves go into depth + 1 data
 * slots: up to depth requests outstanding, plus the one the consumer holds.
 * The I/O thread takes a slot for each request as it starts reading it, the
 * one freed last (a stack), whose lines are most likely still in its cache:
 * when the consumer keeps up, two or three slots do all the work, however
 * deep the prefetch, where a ring of slots would write through all depth + 1
 * batches in turn and find them gone from the cache. The thread reads
 * without holding the mutex. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader.h"

/* How long dl_loader_take looks for a batch, yielding the core in between
 * (sched_yield, about 0.3 us here), before it sleeps on the condition
 * variable: a few times the read of a small batch (a shuffled batch of 128
 * Fashion-MNIST samples takes about 20 us), short against any step. */
#define LOADER_SPIN_S 100e-6

typedef struct request {
    dl_dataset_t *ds;
    int64_t *idx;
    int n;
    int slot; /* the data slot it is read into, set by the I/O thread */
} request_t;

typedef struct slot {
    uint8_t *x; /* stored samples */
    int32_t *y;
    int rc;
    dl_err_t err;
} slot_t;

struct dl_loader {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;  /* a request was made, or stop */
    pthread_cond_t ready; /* a request was read */
    int depth, nslots, max_batch, stop, started;
    double timeout_s; /* longest wait in dl_loader_take; 0 = none */
    int64_t sample_bytes;
    int64_t requested, done, taken;
    request_t *reqs; /* depth entries */
    slot_t *slots;   /* nslots = depth + 1 */
    int *free_slots; /* a stack of nfree slot numbers, the last freed on top */
    int nfree, held; /* held: the consumer's slot, -1 before its first take */
    float *norm;     /* dl_loader_next's normalised batch, made at its first call */
    size_t norm_cap;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *io_thread(void *arg)
{
    dl_loader_t *l = arg;
    dl_dataset_thread_init();
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->done == l->requested && !l->stop)
            pthread_cond_wait(&l->wake, &l->mu);
        if (l->stop)
            break;
        /* Never empty: at most depth - 1 read and not taken, and one held. */
        request_t *r = &l->reqs[l->done % l->depth];
        r->slot = l->free_slots[--l->nfree];
        slot_t *s = &l->slots[r->slot];
        pthread_mutex_unlock(&l->mu);
        memset(&s->err, 0, sizeof s->err);
        s->rc = dl_dataset_read_stored(r->ds, r->idx, r->n, s->x, s->y, &s->err);
        pthread_mutex_lock(&l->mu);
        /* Atomic: dl_loader_take's spin reads it without the mutex. */
        __atomic_store_n(&l->done, l->done + 1, __ATOMIC_RELEASE);
        /* Signalled with the mutex released, so that the consumer, woken,
         * does not block on it at once (loader 5% faster in medians of 10
         * runs of shuffled batches taken with no compute). */
        pthread_mutex_unlock(&l->mu);
        pthread_cond_signal(&l->ready);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void free_slots(dl_loader_t *l)
{
    for (int i = 0; l->reqs && i < l->depth; i++)
        free(l->reqs[i].idx);
    for (int i = 0; l->slots && i < l->nslots; i++) {
        free(l->slots[i].x);
        free(l->slots[i].y);
    }
    free(l->reqs);
    free(l->slots);
    free(l->free_slots);
    free(l->norm);
}

int dl_loader_start(dl_loader_t **out, int depth, int max_batch, int64_t sample_bytes,
                    dl_err_t *err)
{
    *out = NULL;
    if (depth < 1 || max_batch < 1 || sample_bytes < 1)
        return DL_ERR(err, DL_EINTERNAL,
                      "dl_loader_start: depth %d, max_batch %d, %lld bytes per sample", depth,
                      max_batch, (long long)sample_bytes);
    dl_loader_t *l = dl_calloc(1, sizeof *l, err);
    if (!l)
        return DL_ENOMEM;
    l->depth = depth;
    l->nslots = depth + 1;
    l->max_batch = max_batch;
    l->sample_bytes = sample_bytes;
    l->held = -1;
    l->reqs = dl_calloc((size_t)depth, sizeof *l->reqs, err);
    l->slots = l->reqs ? dl_calloc((size_t)l->nslots, sizeof *l->slots, err) : NULL;
    l->free_slots = l->slots ? dl_calloc((size_t)l->nslots, sizeof *l->free_slots, err) : NULL;
    int rc = l->free_slots ? 0 : DL_ENOMEM;
    for (int i = 0; !rc && i < depth; i++)
        if (!(l->reqs[i].idx = dl_calloc((size_t)max_batch, sizeof *l->reqs[i].idx, err)))
            rc = DL_ENOMEM;
    for (int i = 0; !rc && i < l->nslots; i++) {
        slot_t *s = &l->slots[i];
        s->x = dl_calloc((size_t)max_batch * (size_t)sample_bytes, 1, err);
        s->y = dl_calloc((size_t)max_batch, sizeof *s->y, err);
        if (!s->x || !s->y)
            rc = DL_ENOMEM;
        /* Slot 0 on top: the first reads take the slots in order. */
        l->free_slots[l->nfree++] = l->nslots - 1 - i;
    }
    /* ready is waited on with a deadline: on the monotonic clock, which
     * does not jump when the wall clock is set. */
    pthread_condattr_t mono;
    int attr = pthread_condattr_init(&mono) == 0;
    if (!rc && (!attr || pthread_condattr_setclock(&mono, CLOCK_MONOTONIC) ||
                pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->wake, NULL) ||
                pthread_cond_init(&l->ready, &mono)))
        rc = DL_ERR(err, DL_ELIB, "cannot create the data loader's locks");
    if (attr)
        pthread_condattr_destroy(&mono);
    if (!rc && pthread_create(&l->thread, NULL, io_thread, l) != 0)
        rc = DL_ERR(err, DL_ELIB, "cannot start the data loader's I/O thread");
    if (rc) {
        free_slots(l);
        free(l);
        return rc;
    }
    l->started = 1;
    *out = l;
    return 0;
}

int dl_loader_request(dl_loader_t *l, dl_dataset_t *ds, const int64_t *idx, int n, dl_err_t *err)
{
    if (n < 1 || n > l->max_batch)
        return DL_ERR(err, DL_EINTERNAL, "dl_loader_request: %d samples (at most %d)", n,
                      l->max_batch);
    if (dl_dataset_sample_bytes(ds) > l->sample_bytes)
        return DL_ERR(err, DL_EINTERNAL,
                      "dl_loader_request: samples of %lld bytes (the loader holds %lld)",
                      (long long)dl_dataset_sample_bytes(ds), (long long)l->sample_bytes);
    pthread_mutex_lock(&l->mu);
    int full = l->requested - l->taken >= l->depth;
    pthread_mutex_unlock(&l->mu);
    if (full) /* waiting here would wait forever: only the caller takes */
        return DL_ERR(err, DL_EINTERNAL, "dl_loader_request: %d requests already outstanding",
                      l->depth);
    /* Only this thread writes entries that are not yet requested. */
    request_t *r = &l->reqs[l->requested % l->depth];
    r->ds = ds;
    r->n = n;
    memcpy(r->idx, idx, (size_t)n * sizeof *idx);
    pthread_mutex_lock(&l->mu);
    l->requested++;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int dl_loader_take(dl_loader_t *l, dl_loader_batch_t *b, double *wait_s, dl_err_t *err)
{
    double t0 = now_s();
    pthread_mutex_lock(&l->mu);
    if (l->taken == l->requested) {
        pthread_mutex_unlock(&l->mu);
        return DL_ERR(err, DL_EINTERNAL, "dl_loader_take: nothing was requested");
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double end = (double)deadline.tv_sec + 1e-9 * (double)deadline.tv_nsec + l->timeout_s;
    deadline.tv_sec = (time_t)end;
    deadline.tv_nsec = (long)(1e9 * (end - (double)deadline.tv_sec));
    if (l->done == l->taken) {
        /* Not read yet: look again for a short while before sleeping. A batch
         * that is nearly read then arrives without the futex sleep and wake
         * (several microseconds, against tens for a whole batch). A bound of
         * 50 looks (15 us) was shorter than the read of a shuffled batch:
         * the consumer still slept in three takes of four, and none now. */
        pthread_mutex_unlock(&l->mu);
        int64_t want = l->taken;
        while (__atomic_load_n(&l->done, __ATOMIC_ACQUIRE) == want && now_s() - t0 < LOADER_SPIN_S)
            sched_yield();
        pthread_mutex_lock(&l->mu);
    }
    while (l->done == l->taken) {
        if (l->timeout_s <= 0) {
            pthread_cond_wait(&l->ready, &l->mu);
        } else if (pthread_cond_timedwait(&l->ready, &l->mu, &deadline) == ETIMEDOUT &&
                   l->done == l->taken) {
            pthread_mutex_unlock(&l->mu);
            return DL_ERR(err, DL_EABORT,
                          "the data loader has not delivered a batch in %.0f s: a read of the "
                          "data files is stuck (a hung network file system?)",
                          l->timeout_s);
        }
    }
    /* The batch taken before is given up now, on top of the free stack. */
    const request_t *r = &l->reqs[l->taken % l->depth];
    if (l->held >= 0)
        l->free_slots[l->nfree++] = l->held;
    l->held = r->slot;
    slot_t *s = &l->slots[r->slot];
    l->taken++;
    pthread_mutex_unlock(&l->mu);
    if (wait_s)
        *wait_s = now_s() - t0;
    if (s->rc) {
        *err = s->err;
        return s->rc;
    }
    *b = (dl_loader_batch_t){.ds = r->ds, .x = s->x, .y = s->y, .n = r->n};
    return 0;
}

int dl_loader_next(dl_loader_t *l, float **x, int32_t **y, int *n, double *wait_s, dl_err_t *err)
{
    dl_loader_batch_t b;
    int rc = dl_loader_take(l, &b, wait_s, err);
    if (rc)
        return rc;
    const dl_dataset_info_t *in = dl_dataset_info(b.ds);
    size_t need = (size_t)b.n * (size_t)in->c * (size_t)in->h * (size_t)in->w;
    if (need > l->norm_cap) {
        float *p = dl_calloc(need, sizeof *p, err);
        if (!p)
            return DL_ENOMEM;
        free(l->norm);
        l->norm = p;
        l->norm_cap = need;
    }
    dl_dataset_normalise(b.ds, b.x, b.n, l->norm);
    *x = l->norm;
    *y = b.y;
    *n = b.n;
    return 0;
}

void dl_loader_set_timeout(dl_loader_t *l, double timeout_s)
{
    l->timeout_s = timeout_s > 0 ? timeout_s : 0;
}

void dl_loader_stop(dl_loader_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->ready);
    free_slots(l);
    free(l);
}
