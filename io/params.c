/* Parameter files and atomic writes; see params.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "params.h"

#define PATH_BYTES 4096

int dl_write_file_atomic(const char *path, const void *data, size_t len, dl_err_t *err)
{
    char tmp[PATH_BYTES + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return DL_ERR(err, DL_EIO, "cannot write %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return DL_ERR(err, DL_EIO, "writing %s failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return DL_ERR(err, DL_EIO, "flushing %s failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return DL_ERR(err, DL_EIO, "renaming %s to %s failed: %s", tmp, path, strerror(e));
    }
    return 0;
}

int dl_params_write(const char *path, const float *params, int64_t n_params, const float *state,
                    int64_t n_state, dl_err_t *err)
{
    size_t bytes = 32 + (size_t)(n_params + n_state) * sizeof(float);
    char *buf = malloc(bytes);
    if (!buf)
        return DL_ERR(err, DL_ENOMEM, "out of memory writing %s", path);
    uint32_t version = 2, reserved = 0;
    memcpy(buf, "DLTPARAM", 8);
    memcpy(buf + 8, &version, 4);
    memcpy(buf + 12, &reserved, 4);
    memcpy(buf + 16, &n_params, 8);
    memcpy(buf + 24, &n_state, 8);
    memcpy(buf + 32, params, (size_t)n_params * sizeof(float));
    if (n_state)
        memcpy(buf + 32 + (size_t)n_params * sizeof(float), state, (size_t)n_state * sizeof(float));
    int rc = dl_write_file_atomic(path, buf, bytes, err);
    free(buf);
    return rc;
}

static int read_exact(FILE *f, void *buf, size_t len)
{
    return fread(buf, 1, len, f) == len;
}

int dl_params_read(const char *path, float *params, int64_t n_params, float *state, int64_t n_state,
                   dl_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return DL_ERR(err, DL_EINPUT, "%s: cannot open the parameter file: %s", path,
                      strerror(errno));
    char magic[8];
    uint32_t version = 0, reserved;
    int64_t np = -1, ns = 0;
    int rc = 0;
    if (!read_exact(f, magic, 8) || memcmp(magic, "DLTPARAM", 8) != 0 ||
        !read_exact(f, &version, 4) || (version != 1 && version != 2) ||
        !read_exact(f, &reserved, 4) || !read_exact(f, &np, 8) ||
        (version == 2 && !read_exact(f, &ns, 8)))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: not a dltrain parameter file (expected the DLTPARAM header of version 1 "
                    "or 2, as dltrain writes to params.bin)",
                    path);
    else if (np != n_params || (version == 2 && ns != n_state))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s holds %lld parameters and %lld state values but the model has %lld and "
                    "%lld; it was written for another model",
                    path, (long long)np, (long long)ns, (long long)n_params, (long long)n_state);
    else if (!read_exact(f, params, (size_t)np * sizeof(float)) ||
             (ns && !read_exact(f, state, (size_t)ns * sizeof(float))))
        rc = DL_ERR(err, DL_EINPUT, "%s is truncated", path);
    fclose(f);
    return rc;
}
