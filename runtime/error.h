/* dltrain error reporting: every failing call fills a dl_err_t with a status,
 * the source file and line where it was detected, and a sentence for the user.
 * Functions return 0 or a negative DL_E* status and carry the dl_err_t upward
 * to the place that can tell the user what to do. */
#ifndef DL_ERROR_H
#define DL_ERROR_H

#include <stddef.h>

enum {
    DL_OK = 0,
    DL_EINPUT = -2,    /* bad configuration, data or command line: exit status 2 */
    DL_EIO = -3,       /* a file could not be read or written */
    DL_ENOMEM = -4,    /* an allocation failed */
    DL_ELIB = -5,      /* a library call (MPI, HDF5, BLAS) failed */
    DL_EINTERNAL = -6, /* a bug: an invariant of dltrain itself does not hold */
    DL_EREQUEUE = -7,  /* stopped by a signal with the state saved: exit status 75 */
    DL_EABORT = -8     /* a collective failed or the watchdog fired: exit status 3 */
};

/* Exit statuses, the same for every dltrain program (docs/user-guide.md). */
#define DL_EXIT_INPUT 2    /* bad input or configuration */
#define DL_EXIT_ABORT 3    /* aborted by the watchdog or a failed collective */
#define DL_EXIT_REQUEUE 75 /* EX_TEMPFAIL: state saved after a signal, requeue me */

typedef struct dl_err {
    int code;         /* one of DL_E*, 0 when no error */
    const char *file; /* source file that detected the error */
    int line;         /* line in that file */
    char msg[1024];   /* plain sentence for the user */
} dl_err_t;

/* Record an error in *e (e may be NULL) and return code, so callers can write
 * `return DL_ERR(e, DL_EINPUT, "...", ...);`. */
int dl_err_set(dl_err_t *e, int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define DL_ERR(e, code, ...) dl_err_set((e), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Process exit status for an error code: 0 for DL_OK, 2 for DL_EINPUT, 75 for
 * DL_EREQUEUE, 3 for DL_EABORT, 1 otherwise. */
int dl_err_exit_status(int code);

/* Print "dltrain: error: <msg>" to stderr, with " [file:line]" appended when
 * the environment variable DLTRAIN_DEBUG is set. prog names the program. */
void dl_err_print(const char *prog, const dl_err_t *e);

/* Allocation helpers that record DL_ENOMEM with the caller's file and line. */
void *dl_calloc_impl(size_t n, size_t size, dl_err_t *e, const char *file, int line);
#define dl_calloc(n, size, e) dl_calloc_impl((n), (size), (e), __FILE__, __LINE__)

#endif
