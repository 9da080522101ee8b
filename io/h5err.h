/* HDF5 error text for io/: turns the current HDF5 error stack into a
 * dl_err_t message. Internal to io/ (dataset.c, idx.c). */
#ifndef DL_H5ERR_H
#define DL_H5ERR_H

#include "../runtime/error.h"

/* Record an error whose cause is the current HDF5 error stack; call it right
 * after the failing HDF5 call, before any other HDF5 call resets the stack.
 * The message is the formatted text followed by HDF5's innermost description. */
int dl_h5_fail(dl_err_t *err, int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define H5_FAIL(err, code, ...) dl_h5_fail((err), (code), __FILE__, __LINE__, __VA_ARGS__)

#endif
