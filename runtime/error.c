/* dltrain error reporting; see error.h. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"

int dl_err_set(dl_err_t *e, int code, const char *file, int line, const char *fmt, ...)
{
    if (e) {
        e->code = code;
        e->file = file;
        e->line = line;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int dl_err_exit_status(int code)
{
    if (code == DL_OK)
        return 0;
    switch (code) {
    case DL_EINPUT: return DL_EXIT_INPUT;
    case DL_EREQUEUE: return DL_EXIT_REQUEUE;
    case DL_EABORT: return DL_EXIT_ABORT;
    default: return 1;
    }
}

void dl_err_print(const char *prog, const dl_err_t *e)
{
    if (getenv("DLTRAIN_DEBUG") && e->file)
        fprintf(stderr, "%s: error: %s [%s:%d]\n", prog, e->msg, e->file, e->line);
    else
        fprintf(stderr, "%s: error: %s\n", prog, e->msg);
}

void *dl_calloc_impl(size_t n, size_t size, dl_err_t *e, const char *file, int line)
{
    if (n == 0 || size == 0)
        n = size = 1;
    if (size && n > SIZE_MAX / size) {
        dl_err_set(e, DL_ENOMEM, file, line, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = calloc(n, size);
    if (!p)
        dl_err_set(e, DL_ENOMEM, file, line, "out of memory allocating %zu bytes", n * size);
    return p;
}
