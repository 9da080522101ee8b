/* HDF5 error text; see h5err.h. */
#include <stdarg.h>
#include <stdio.h>

#include <hdf5.h>

#include "h5err.h"

typedef struct h5_msg {
    char text[512];
} h5_msg_t;

/* Keep the most specific description: the walk goes upward from the
 * innermost error, so the first non-empty one wins. */
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_msg_t *m = data;
    (void)n;
    if (!m->text[0] && e->desc && e->desc[0])
        snprintf(m->text, sizeof m->text, "%s", e->desc);
    return 0;
}

int dl_h5_fail(dl_err_t *err, int code, const char *file, int line, const char *fmt, ...)
{
    char what[512];
    h5_msg_t m = {{0}};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &m);
    return dl_err_set(err, code, file, line, "%s (HDF5: %s)", what,
                      m.text[0] ? m.text : "no details");
}
