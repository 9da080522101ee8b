/* CSV -> HDF5 converter: numeric feature columns and one integer label
 * column into a schema-1 dataset of float32 features (N x 1 x 1 x D)
 * through writer.c.
 *
 * Accepted CSV: comma-separated fields, optionally double-quoted ("" is a
 * quote inside quotes; a quoted field does not span lines), spaces around
 * fields ignored, blank lines skipped, LF or CRLF line ends. The first line
 * is a header when it has a non-numeric field (or when told so). Columns
 * are numbered from 0, as in NumPy and pandas. The whole file is parsed
 * into memory (4 bytes per value) before anything is written, so a bad
 * cell anywhere leaves no output. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert.h"
#include "writer.h"

typedef struct csv_vec {
    void *v;
    size_t n, cap, elem;
} csv_vec_t;

typedef struct csv_doc {
    const char *path;
    char *text;    /* the whole file, NUL-terminated; lines and fields are cut in place */
    char *next;    /* start of the next line */
    int64_t line;  /* number of the line last cut (1-based) */
    char **fields; /* fields of the current line */
    int nf, fields_cap;
    char **names; /* header names (NULL when there is no header) */
    int ncols;    /* columns of the first line */
    int label;    /* label column */
    csv_vec_t x;  /* float features, row after row */
    csv_vec_t y;  /* int64 labels */
} csv_doc_t;

/* ---- building blocks ------------------------------------------------------- */

/* Append one element (elem bytes at p) to v, doubling its capacity. */
static int csv_push(csv_vec_t *v, const void *p, dl_err_t *err)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 1024;
        if (cap > SIZE_MAX / v->elem)
            return DL_ERR(err, DL_ENOMEM, "CSV data too large for memory");
        void *nv = realloc(v->v, cap * v->elem);
        if (!nv)
            return DL_ERR(err, DL_ENOMEM, "out of memory reading CSV data (%zu values)", v->n);
        v->v = nv;
        v->cap = cap;
    }
    memcpy((char *)v->v + v->n * v->elem, p, v->elem);
    v->n++;
    return 0;
}

static int csv_load(csv_doc_t *d, dl_err_t *err)
{
    errno = 0;
    FILE *f = fopen(d->path, "rb");
    if (!f)
        return errno == ENOENT
                   ? DL_ERR(err, DL_EINPUT, "%s: no such file (expected a CSV file)", d->path)
                   : DL_ERR(err, DL_EIO, "%s: cannot open: %s", d->path, strerror(errno));
    struct stat st;
    int rc = fstat(fileno(f), &st) != 0
                 ? DL_ERR(err, DL_EIO, "%s: cannot stat: %s", d->path, strerror(errno))
                 : 0;
    size_t len = rc ? 0 : (size_t)st.st_size;
    if (!rc && !(d->text = dl_calloc(len + 1, 1, err)))
        rc = DL_ENOMEM;
    if (!rc && fread(d->text, 1, len, f) != len)
        rc = DL_ERR(err, DL_EIO, "%s: cannot read: %s", d->path,
                    ferror(f) ? strerror(errno) : "the file shrank while being read");
    fclose(f);
    if (!rc && memchr(d->text, '\0', len))
        rc = DL_ERR(err, DL_EINPUT, "%s: holds NUL bytes; expected a text (CSV) file", d->path);
    d->next = d->text;
    return rc;
}

/* Cut the next non-blank line out of the text; 0 when there is none. */
static char *csv_next_line(csv_doc_t *d)
{
    while (d->next && *d->next) {
        char *s = d->next, *nl = strchr(s, '\n');
        d->next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        d->line++;
        size_t len = strlen(s);
        if (len && s[len - 1] == '\r')
            s[--len] = '\0';
        if (s[strspn(s, " \t")])
            return s;
    }
    return NULL;
}

static int csv_add_field(csv_doc_t *d, char *f, dl_err_t *err)
{
    if (d->nf == d->fields_cap) {
        int cap = d->fields_cap ? 2 * d->fields_cap : 16;
        char **v = realloc(d->fields, (size_t)cap * sizeof *v);
        if (!v)
            return DL_ERR(err, DL_ENOMEM, "out of memory splitting CSV fields");
        d->fields = v;
        d->fields_cap = cap;
    }
    d->fields[d->nf++] = f;
    return 0;
}

/* A quoted field starting at *p (on the opening quote): unquoted in place.
 * Moves *p past the closing quote. */
static int csv_unquote(csv_doc_t *d, char **p, dl_err_t *err)
{
    char *r = *p + 1, *w = *p;
    for (;; r++) {
        if (!*r)
            return DL_ERR(err, DL_EINPUT,
                          "%s:%" PRId64 ": a quoted field has no closing quote (quoted fields "
                          "cannot span lines)",
                          d->path, d->line);
        if (*r == '"' && r[1] == '"')
            *w++ = '"', r++;
        else if (*r == '"')
            break;
        else
            *w++ = *r;
    }
    *w = '\0';
    *p = r + 1;
    return 0;
}

/* Split line into d->fields (trimmed, unquoted, NUL-terminated in place). */
static int csv_split(csv_doc_t *d, char *line, dl_err_t *err)
{
    d->nf = 0;
    for (char *p = line;;) {
        p += strspn(p, " \t");
        char *start = p, *end;
        int rc = 0;
        if (*p == '"') {
            rc = csv_unquote(d, &p, err);
            p += strspn(p, " \t");
            if (!rc && *p && *p != ',')
                rc = DL_ERR(err, DL_EINPUT,
                            "%s:%" PRId64 ": column %d: text after the closing quote of a "
                            "quoted field",
                            d->path, d->line, d->nf);
            end = NULL;
        } else {
            p += strcspn(p, ",");
            end = p;
        }
        char sep = *p;
        if (!rc)
            rc = csv_add_field(d, start, err);
        if (rc)
            return rc;
        if (end) {
            while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        }
        if (sep == ',')
            *p++ = '\0';
        if (end)
            *end = '\0';
        if (sep != ',')
            return 0;
    }
}

/* The whole field is a number (strtod's syntax, which includes nan and inf). */
static int csv_is_number(const char *s, double *v)
{
    char *end;
    if (!*s)
        return 0;
    errno = 0;
    *v = strtod(s, &end);
    return *end == '\0';
}

/* "column 3" or "column 3 ("petal_width")" for messages. */
static void csv_col_name(const csv_doc_t *d, int col, char *buf, size_t size)
{
    if (d->names)
        snprintf(buf, size, "column %d (\"%.64s\")", col, d->names[col]);
    else
        snprintf(buf, size, "column %d", col);
}

/* ---- header and label column -------------------------------------------------- */

/* First line: the number of columns, and the header if there is one.
 * *is_data: the first line is a data row, left split in d->fields. */
static int csv_first_line(csv_doc_t *d, dl_csv_header_t mode, int *is_data, dl_err_t *err)
{
    char *line = csv_next_line(d);
    if (!line)
        return DL_ERR(err, DL_EINPUT, "%s: the file is empty; expected CSV rows of numbers",
                      d->path);
    int rc = csv_split(d, line, err);
    if (rc)
        return rc;
    d->ncols = d->nf;
    int header = mode == DL_CSV_HEADER_YES;
    double v;
    for (int i = 0; mode == DL_CSV_HEADER_AUTO && i < d->nf; i++)
        header |= !csv_is_number(d->fields[i], &v);
    *is_data = !header;
    if (!header)
        return 0;
    d->names = dl_calloc((size_t)d->nf, sizeof *d->names, err);
    if (!d->names)
        return DL_ENOMEM;
    for (int i = 0; i < d->nf; i++)
        d->names[i] = d->fields[i]; /* pointers into the text */
    return 0;
}

/* Resolve --label-column (NULL: the last column) to an index. */
static int csv_label_column(csv_doc_t *d, const char *spec, dl_err_t *err)
{
    if (!spec) {
        d->label = d->ncols - 1;
        return 0;
    }
    char *end;
    errno = 0;
    long idx = strtol(spec, &end, 10);
    if (*spec && !*end && !errno) {
        if (idx < -d->ncols || idx >= d->ncols)
            return DL_ERR(err, DL_EINPUT,
                          "--label-column %s: %s has %d columns, numbered 0 to %d (or -1 for "
                          "the last)",
                          spec, d->path, d->ncols, d->ncols - 1);
        d->label = (int)(idx < 0 ? idx + d->ncols : idx);
        return 0;
    }
    if (!d->names)
        return DL_ERR(err, DL_EINPUT,
                      "--label-column %s: %s has no header line, so its columns have no names; "
                      "give a column number (from 0), or --header if the first line is one",
                      spec, d->path);
    for (int i = 0; i < d->ncols; i++)
        if (!strcmp(d->names[i], spec)) {
            d->label = i;
            return 0;
        }
    return DL_ERR(err, DL_EINPUT,
                  "--label-column %s: %s has no column of that name in its header (line 1 has "
                  "%d columns, the first \"%.40s\")",
                  spec, d->path, d->ncols, d->names[0]);
}

/* ---- rows ------------------------------------------------------------------------ */

/* One feature cell: a finite number within the float32 range. */
static int csv_feature(const csv_doc_t *d, int col, const char *s, float *out, dl_err_t *err)
{
    char name[96];
    double v;
    csv_col_name(d, col, name, sizeof name);
    if (!*s)
        return DL_ERR(err, DL_EINPUT,
                      "%s:%" PRId64 ": %s: the cell is empty; every feature cell must hold a "
                      "number",
                      d->path, d->line, name);
    if (!csv_is_number(s, &v))
        return DL_ERR(err, DL_EINPUT, "%s:%" PRId64 ": %s: \"%.40s\" is not a number", d->path,
                      d->line, name, s);
    *out = (float)v;
    if (!isfinite(v) || !isfinite(*out))
        return DL_ERR(err, DL_EINPUT,
                      "%s:%" PRId64 ": %s: \"%.40s\" is not a finite number within the float32 "
                      "range (about +-3.4e38)",
                      d->path, d->line, name, s);
    return 0;
}

/* The label cell: a whole number 0 .. 2^31 - 2 ("3" or "3.0"). */
static int csv_label(const csv_doc_t *d, const char *s, int64_t *out, dl_err_t *err)
{
    char name[96];
    double v;
    if (csv_is_number(s, &v) && v >= 0 && v <= INT32_MAX - 1 && v == floor(v)) {
        *out = (int64_t)v;
        return 0;
    }
    csv_col_name(d, d->label, name, sizeof name);
    return DL_ERR(err, DL_EINPUT,
                  "%s:%" PRId64 ": %s: label \"%.40s\" is not a class number; labels must be "
                  "whole numbers 0, 1, 2, ... (the label column is %d; choose another with "
                  "--label-column)",
                  d->path, d->line, name, s, d->label);
}

/* The fields of one data line (split already): as many columns as the
 * first line, the label column a class number, every other a number. */
static int csv_row_fields(csv_doc_t *d, dl_err_t *err)
{
    int rc = 0;
    if (d->nf != d->ncols)
        rc = DL_ERR(err, DL_EINPUT,
                    "%s:%" PRId64 ": %d column%s but the first line has %d; every row needs the "
                    "same number of columns",
                    d->path, d->line, d->nf, d->nf == 1 ? "" : "s", d->ncols);
    for (int i = 0; !rc && i < d->nf; i++) {
        if (i == d->label) {
            int64_t y;
            rc = csv_label(d, d->fields[i], &y, err);
            if (!rc)
                rc = csv_push(&d->y, &y, err);
        } else {
            float x;
            rc = csv_feature(d, i, d->fields[i], &x, err);
            if (!rc)
                rc = csv_push(&d->x, &x, err);
        }
    }
    return rc;
}

static int csv_parse(csv_doc_t *d, const dl_csv_opts_t *o, dl_err_t *err)
{
    int first_is_data = 0;
    int rc = csv_load(d, err);
    if (!rc)
        rc = csv_first_line(d, o->header, &first_is_data, err);
    if (!rc)
        rc = csv_label_column(d, o->label_column, err);
    if (!rc && d->ncols < 2)
        rc = DL_ERR(err, DL_EINPUT,
                    "%s:%" PRId64 ": 1 column; a CSV dataset needs at least one feature column "
                    "and a label column (fields are separated by commas)",
                    d->path, d->line);
    if (!rc && first_is_data) /* its fields are still in d->fields */
        rc = csv_row_fields(d, err);
    for (char *line; !rc && (line = csv_next_line(d));) {
        rc = csv_split(d, line, err);
        if (!rc)
            rc = csv_row_fields(d, err);
    }
    if (!rc && d->y.n == 0)
        rc = DL_ERR(err, DL_EINPUT, "%s: has a header line but no data rows", d->path);
    return rc;
}

/* ---- conversion ------------------------------------------------------------------- */

typedef struct csv_src {
    const float *x;
    size_t d; /* features per row */
} csv_src_t;

/* dl_samples_read_fn: rows [i0, i0 + k) of the parsed features. */
static int csv_read_samples(void *ctx, void *buf, int64_t i0, int64_t k, dl_err_t *err)
{
    const csv_src_t *s = ctx;
    memcpy(buf, s->x + (size_t)i0 * s->d, (size_t)k * s->d * sizeof *s->x);
    (void)err;
    return 0;
}

int dl_csv_to_h5(const char *csv_path, const char *out_path, const dl_csv_opts_t *opts,
                 dl_err_t *err)
{
    csv_doc_t d = {.path = csv_path, .x = {.elem = sizeof(float)}, .y = {.elem = sizeof(int64_t)}};
    int rc = csv_parse(&d, opts, err);
    if (!rc) {
        int64_t maxl = 0;
        const int64_t *y = d.y.v;
        for (size_t i = 0; i < d.y.n; i++)
            maxl = y[i] > maxl ? y[i] : maxl;
        csv_src_t src = {.x = d.x.v, .d = (size_t)d.ncols - 1};
        dl_samples_t s = {.source = csv_path,
                          .n = (int64_t)d.y.n,
                          .c = 1,
                          .h = 1,
                          .w = d.ncols - 1,
                          .is_float = 1,
                          .labels = y,
                          .num_classes = maxl + 1,
                          .read = csv_read_samples,
                          .ctx = &src};
        rc = dl_write_samples(out_path, opts->shards, &s, err);
    }
    free(d.text);
    free(d.fields);
    free(d.names);
    free(d.x.v);
    free(d.y.v);
    return rc;
}
