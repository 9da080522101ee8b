/* ref_layers: run one dltrain model on arrays written by
 * tests/reference/check_layers.py and write the results back, so that the
 * script can compare them with PyTorch's.
 *
 * usage: ref_layers CASE_DIR
 *
 * CASE_DIR/case.txt describes the case, one directive per line (blank lines
 * and lines starting with '#' are ignored):
 *   input C H W            per-sample input shape
 *   batch N                samples
 *   mode train|eval        ctx.training
 *   seed S                 ctx.seed (dropout masks; default 1)
 *   loss smoothing=E       optional: the output is logits fed to softmax
 *                          cross-entropy with labels.npy; the gradient of the
 *                          mean loss replaces dy.npy, and loss.npy is written
 *   TYPE key=value ...     one layer section, in order; TYPE is dense, conv,
 *                          maxpool, avgpool, batchnorm, activation, dropout,
 *                          shortcut or flatten; keys are the dl_layer_spec_t
 *                          fields units, filters, size, stride, pad, groups,
 *                          act, bias, rate, momentum, eps, from
 * Inputs (.npy v1.0, little-endian, C order): x.npy float32 N x C x H x W,
 * params.npy float32 (the model's flat parameter buffer), state.npy float32
 * (the state buffer, possibly empty), dy.npy float32 (gradient of the output,
 * N x out_size elements in any shape; absent with `loss`), labels.npy int32 N
 * (with `loss`).
 * Outputs: y.npy (N x C' x H' x W'), dx.npy (N x C x H x W), dparams.npy,
 * state_out.npy (the state after the forward pass), loss.npy (with `loss`:
 * one float32, the mean loss over the batch).
 *
 * Exit status 0 on success, 1 on any error (with a message on stderr). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/model.h"

#define MAX_SECTIONS 64
#define MAX_DIMS 8
#define PATH_LEN 4096

static const char *case_dir;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ref_layers: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void case_path(char *out, const char *name)
{
    if (snprintf(out, PATH_LEN, "%s/%s", case_dir, name) >= PATH_LEN)
        die("path too long: %s/%s", case_dir, name);
}

/* ---- .npy v1.0 ----------------------------------------------------------- */

typedef struct npy {
    char kind; /* 'f' (<f4) or 'i' (<i4) */
    int ndim;
    int64_t shape[MAX_DIMS];
    int64_t count;
    void *data; /* count 4-byte elements */
} npy_t;

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Parse the shape tuple at s ("(2, 3)", "(4,)", "()"). Returns 0 or -1. */
static int parse_shape(const char *s, npy_t *a)
{
    while (*s == ' ')
        s++;
    if (*s++ != '(')
        return -1;
    a->ndim = 0;
    a->count = 1;
    for (;;) {
        while (*s == ' ')
            s++;
        if (*s == ')')
            return 0;
        if (*s < '0' || *s > '9' || a->ndim == MAX_DIMS)
            return -1;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || v < 0 || v > ((int64_t)1 << 40))
            return -1;
        a->shape[a->ndim++] = v;
        a->count *= v;
        if (a->count > ((int64_t)1 << 40))
            return -1;
        s = end;
        while (*s == ' ')
            s++;
        if (*s == ',')
            s++;
        else if (*s != ')')
            return -1;
    }
}

/* Read path as a .npy v1.0 array of kind 'f' (<f4) or 'i' (<i4), C order. */
static void npy_read(const char *path, char kind, npy_t *a)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    unsigned char pre[10];
    if (fread(pre, 1, sizeof pre, f) != sizeof pre || memcmp(pre, "\x93NUMPY", 6) != 0)
        die("%s: not a .npy file", path);
    if (pre[6] != 1 || pre[7] != 0)
        die("%s: unsupported .npy version (only 1.0 is read)", path);
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    char *h = malloc(hlen + 1);
    if (!h)
        die("out of memory reading %s", path);
    if (fread(h, 1, hlen, f) != hlen)
        die("%s: truncated .npy header", path);
    h[hlen] = '\0';
    if ((10 + hlen) % 16 != 0 || hlen == 0 || h[hlen - 1] != '\n')
        die("%s: malformed .npy header (not padded to 16 bytes, or no newline)", path);
    const char *want = kind == 'f' ? "'descr': '<f4'" : "'descr': '<i4'";
    if (!strstr(h, want))
        die("%s: expected %s", path, kind == 'f' ? "float32 '<f4'" : "int32 '<i4'");
    if (!strstr(h, "'fortran_order': False"))
        die("%s: expected a C-order array (fortran_order False)", path);
    const char *sh = strstr(h, "'shape':");
    if (!sh || parse_shape(sh + 8, a) != 0)
        die("%s: malformed shape in the .npy header", path);
    free(h);
    a->kind = kind;
    a->data = malloc((size_t)(a->count > 0 ? a->count : 1) * 4);
    if (!a->data)
        die("out of memory reading %s", path);
    if (fread(a->data, 4, (size_t)a->count, f) != (size_t)a->count)
        die("%s: truncated .npy data", path);
    if (fgetc(f) != EOF)
        die("%s: trailing bytes after the .npy data", path);
    if (ferror(f) || fclose(f) != 0)
        die("%s: read error", path);
}

/* Write count 4-byte elements of kind 'f' or 'i' with the given shape. */
static void npy_write(const char *path, char kind, const void *data, int ndim, const int64_t *shape)
{
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       kind == 'f' ? "<f4" : "<i4");
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        /* a 1-tuple needs its trailing comma: (4,) */
        const char *sep = ndim == 1 ? "," : i + 1 < ndim ? ", " : "";
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld%s", (long long)shape[i], sep);
        count *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* pad with spaces so that magic + version + length + header is a multiple of 64 */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    if (len + pad + 1 >= (int)sizeof dict)
        die("%s: .npy header too long", path);
    memset(dict + len, ' ', (size_t)pad);
    dict[len + pad] = '\n';
    int hlen = len + pad + 1;
    unsigned char pre[10];
    memcpy(pre, "\x93NUMPY\x01\x00", 8);
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot create %s: %s", path, strerror(errno));
    if (fwrite(pre, 1, sizeof pre, f) != sizeof pre ||
        fwrite(dict, 1, (size_t)hlen, f) != (size_t)hlen ||
        fwrite(data, 4, (size_t)count, f) != (size_t)count || fclose(f) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

static void read_case_array(const char *name, char kind, int64_t want, npy_t *a)
{
    char path[PATH_LEN];
    case_path(path, name);
    npy_read(path, kind, a);
    if (a->count != want)
        die("%s: %lld elements, expected %lld", path, (long long)a->count, (long long)want);
}

static void write_case_array(const char *name, char kind, const void *data, int ndim,
                             const int64_t *shape)
{
    char path[PATH_LEN];
    case_path(path, name);
    npy_write(path, kind, data, ndim, shape);
}

/* ---- case.txt ------------------------------------------------------------ */

typedef struct ref_case {
    dl_shape_t in;
    int n, training, has_loss;
    uint64_t seed;
    double smoothing;
    int n_specs;
    dl_layer_spec_t specs[MAX_SECTIONS];
} ref_case_t;

static const struct {
    const char *name;
    dl_layer_type_t type;
} type_names[] = {
    {"dense", DL_LAYER_DENSE},         {"conv", DL_LAYER_CONV},
    {"maxpool", DL_LAYER_MAXPOOL},     {"avgpool", DL_LAYER_AVGPOOL},
    {"batchnorm", DL_LAYER_BATCHNORM}, {"activation", DL_LAYER_ACTIVATION},
    {"dropout", DL_LAYER_DROPOUT},     {"shortcut", DL_LAYER_SHORTCUT},
    {"flatten", DL_LAYER_FLATTEN},
};

static const char *const act_names[] = {"none", "relu", "leaky", "gelu", "tanh", "sigmoid"};

static int parse_int(const char *v, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < -1000000 || x > 1000000)
        return -1;
    *out = (int)x;
    return 0;
}

static int parse_double(const char *v, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    return errno || end == v || *end ? -1 : 0;
}

/* Set one key of a layer spec; returns 0 or -1 for an unknown key or bad value. */
static int set_key(dl_layer_spec_t *s, const char *key, const char *val)
{
    if (!strcmp(key, "units"))
        return parse_int(val, &s->units);
    if (!strcmp(key, "filters"))
        return parse_int(val, &s->filters);
    if (!strcmp(key, "size"))
        return parse_int(val, &s->size);
    if (!strcmp(key, "stride"))
        return parse_int(val, &s->stride);
    if (!strcmp(key, "pad"))
        return parse_int(val, &s->pad);
    if (!strcmp(key, "groups"))
        return parse_int(val, &s->groups);
    if (!strcmp(key, "bias"))
        return parse_int(val, &s->bias);
    if (!strcmp(key, "from"))
        return parse_int(val, &s->from);
    if (!strcmp(key, "rate"))
        return parse_double(val, &s->rate);
    if (!strcmp(key, "momentum"))
        return parse_double(val, &s->momentum);
    if (!strcmp(key, "eps"))
        return parse_double(val, &s->eps);
    if (!strcmp(key, "act")) {
        for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
            if (!strcmp(val, act_names[i])) {
                s->act = (dl_act_t)i;
                return 0;
            }
        return -1;
    }
    return -1;
}

static void parse_case(const char *path, ref_case_t *c)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    memset(c, 0, sizeof *c);
    c->seed = 1;
    int have_in = 0, have_n = 0, have_mode = 0;
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char where[64];
        snprintf(where, sizeof where, "line %d", lineno);
        if (!strchr(line, '\n') && !feof(f))
            die("%s: %s is too long", path, where);
        char *save = NULL, *word = strtok_r(line, " \t\r\n", &save);
        if (!word || word[0] == '#')
            continue;
        if (!strcmp(word, "input")) {
            char *a = strtok_r(NULL, " \t\r\n", &save), *b = strtok_r(NULL, " \t\r\n", &save),
                 *d = strtok_r(NULL, " \t\r\n", &save);
            if (!a || !b || !d || parse_int(a, &c->in.c) || parse_int(b, &c->in.h) ||
                parse_int(d, &c->in.w) || c->in.c < 1 || c->in.h < 1 || c->in.w < 1)
                die("%s: %s: expected 'input C H W' with positive integers", path, where);
            have_in = 1;
        } else if (!strcmp(word, "batch")) {
            char *a = strtok_r(NULL, " \t\r\n", &save);
            if (!a || parse_int(a, &c->n) || c->n < 1)
                die("%s: %s: expected 'batch N' with N >= 1", path, where);
            have_n = 1;
        } else if (!strcmp(word, "mode")) {
            char *a = strtok_r(NULL, " \t\r\n", &save);
            if (!a || (strcmp(a, "train") && strcmp(a, "eval")))
                die("%s: %s: expected 'mode train' or 'mode eval'", path, where);
            c->training = !strcmp(a, "train");
            have_mode = 1;
        } else if (!strcmp(word, "seed")) {
            char *a = strtok_r(NULL, " \t\r\n", &save), *end;
            if (!a || (c->seed = strtoull(a, &end, 10), *end))
                die("%s: %s: expected 'seed S'", path, where);
        } else if (!strcmp(word, "loss")) {
            char *a = strtok_r(NULL, " \t\r\n", &save);
            if (!a || strncmp(a, "smoothing=", 10) || parse_double(a + 10, &c->smoothing))
                die("%s: %s: expected 'loss smoothing=E'", path, where);
            c->has_loss = 1;
        } else {
            int t = -1;
            for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
                if (!strcmp(word, type_names[i].name))
                    t = (int)type_names[i].type;
            if (t < 0)
                die("%s: %s: unknown directive or layer type", path, where);
            if (c->n_specs == MAX_SECTIONS)
                die("%s: %s: too many layer sections", path, where);
            dl_layer_spec_t *s = &c->specs[c->n_specs++];
            *s = (dl_layer_spec_t){.type = (dl_layer_type_t)t,
                                   .bias = 1,
                                   .groups = 1,
                                   .stride = 1,
                                   .momentum = 0.1,
                                   .eps = 1e-5,
                                   .line = lineno};
            char *kv;
            while ((kv = strtok_r(NULL, " \t\r\n", &save))) {
                char *eq = strchr(kv, '=');
                if (!eq)
                    die("%s: %s: expected key=value", path, where);
                *eq = '\0';
                if (set_key(s, kv, eq + 1))
                    die("%s: %s: unknown key or bad value", path, where);
            }
        }
    }
    if (ferror(f))
        die("%s: read error", path);
    fclose(f);
    if (!have_in || !have_n || !have_mode || c->n_specs == 0)
        die("%s: needs input, batch, mode and at least one layer section", path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ref_layers CASE_DIR\n");
        return 1;
    }
    if (!little_endian())
        die("this program reads little-endian .npy files on little-endian hosts only");
    case_dir = argv[1];
    char path[PATH_LEN];
    case_path(path, "case.txt");
    ref_case_t c;
    parse_case(path, &c);

    dl_model_t m;
    dl_err_t err = {0};
    if (dl_model_build(&m, c.specs, c.n_specs, c.in, c.n, &err) != 0)
        die("cannot build the model: %s", err.msg);
    m.input_grad = 1;
    m.ctx.training = c.training;
    m.ctx.seed = c.seed;

    npy_t x, params, state, dy = {0}, labels = {0};
    read_case_array("x.npy", 'f', (int64_t)c.n * m.in_size, &x);
    if (x.ndim != 4 || x.shape[0] != c.n || x.shape[1] != c.in.c || x.shape[2] != c.in.h ||
        x.shape[3] != c.in.w)
        die("%s/x.npy: expected shape (%d, %d, %d, %d) as case.txt says", case_dir, c.n, c.in.c,
            c.in.h, c.in.w);
    read_case_array("params.npy", 'f', m.n_params, &params);
    read_case_array("state.npy", 'f', m.n_state, &state);
    memcpy(m.params, params.data, (size_t)m.n_params * sizeof(float));
    memcpy(m.state, state.data, (size_t)m.n_state * sizeof(float));

    const float *y = dl_model_forward(&m, x.data, c.n, &err);
    if (!y)
        die("forward failed: %s", err.msg);
    float *dout = NULL;
    float loss = 0.0f;
    if (c.has_loss) {
        read_case_array("labels.npy", 'i', c.n, &labels);
        const int32_t *lab = labels.data;
        for (int i = 0; i < c.n; i++)
            if (lab[i] < 0 || lab[i] >= m.out_size)
                die("labels.npy: a label is outside 0 .. classes - 1");
        dout = malloc((size_t)c.n * (size_t)m.out_size * sizeof(float));
        if (!dout)
            die("out of memory");
        loss = (float)(dl_softmax_xent(y, lab, c.n, (int)m.out_size, (float)c.smoothing,
                                       1.0f / (float)c.n, dout, NULL) /
                       c.n);
    } else {
        read_case_array("dy.npy", 'f', (int64_t)c.n * m.out_size, &dy);
        dout = dy.data;
    }
    /* The state as the forward pass left it (train mode updates running statistics). */
    int64_t yshape[4] = {c.n, m.out_shape.c, m.out_shape.h, m.out_shape.w};
    write_case_array("y.npy", 'f', y, 4, yshape);
    int64_t sshape[1] = {m.n_state};
    write_case_array("state_out.npy", 'f', m.state, 1, sshape);

    if (dl_model_backward(&m, dout, c.n, &err) != 0)
        die("backward failed: %s", err.msg);
    int64_t xshape[4] = {c.n, c.in.c, c.in.h, c.in.w};
    write_case_array("dx.npy", 'f', m.dacts[0], 4, xshape);
    int64_t pshape[1] = {m.n_params};
    write_case_array("dparams.npy", 'f', m.grads, 1, pshape);
    if (c.has_loss) {
        int64_t lshape[1] = {1};
        write_case_array("loss.npy", 'f', &loss, 1, lshape);
        free(dout);
    }
    free(x.data);
    free(params.data);
    free(state.data);
    free(dy.data);
    free(labels.data);
    dl_model_free(&m);
    return 0;
}
