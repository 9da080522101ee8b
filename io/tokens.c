/* Token datasets: conversion from bytes or token-id text, description and
 * verification; see tokens.h for the schema. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "../models/rng.h"
#include "convert.h"
#include "h5err.h"
#include "h5util.h"
#include "tokens.h"

#define TK_CHUNK_BYTES (1u << 20) /* HDF5 chunk of /tokens: good for sequential reads */
#define TK_READ_BYTES (1u << 16)  /* input buffer */
#define TK_WORD 24                /* longest id word shown in messages */

/* ---- input ------------------------------------------------------------------ */

typedef struct tk_in {
    const char *path;
    FILE *f;
    int ids;      /* text of ids (else bytes) */
    int64_t line; /* current line, ids mode */
    unsigned char buf[TK_READ_BYTES];
    size_t pos, len;
} tk_in_t;

/* Next byte of the input, or EOF; a read error is reported through err. */
static int tk_getc(tk_in_t *t, int *rc, dl_err_t *err)
{
    if (t->pos == t->len) {
        t->len = fread(t->buf, 1, sizeof t->buf, t->f);
        t->pos = 0;
        if (t->len == 0) {
            if (ferror(t->f))
                *rc = DL_ERR(err, DL_EIO, "%s: cannot read: %s", t->path, strerror(errno));
            return EOF;
        }
    }
    return t->buf[t->pos++];
}

static int tk_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The next token id: *more = 0 at the end of the input. In ids mode a word
 * must be a decimal number below 2^32. */
static int tk_next(tk_in_t *t, uint32_t *id, int *more, dl_err_t *err)
{
    int rc = 0, c;
    *more = 0;
    if (!t->ids) {
        c = tk_getc(t, &rc, err);
        if (c != EOF)
            *id = (uint32_t)c, *more = 1;
        return rc;
    }
    while ((c = tk_getc(t, &rc, err)) != EOF && tk_space(c))
        t->line += c == '\n';
    if (c == EOF)
        return rc;
    char word[TK_WORD + 4];
    size_t len = 0;
    uint64_t v = 0;
    int bad = 0;
    for (; c != EOF && !tk_space(c); c = tk_getc(t, &rc, err)) {
        bad |= c < '0' || c > '9';
        if (!bad)
            v = v * 10 + (uint64_t)(c - '0');
        bad |= v > UINT32_MAX;
        if (len < TK_WORD)
            word[len++] = (char)c;
        else if (len == TK_WORD)
            memcpy(word + len, "...", 3), len += 3;
    }
    word[len] = '\0';
    if (rc)
        return rc;
    if (bad)
        return DL_ERR(err, DL_EINPUT,
                      "%s:%" PRId64 ": \"%s\" is not a token id; --ids reads whitespace-separated "
                      "whole numbers 0 to 4294967295",
                      t->path, t->line, word);
    if (c == '\n')
        t->pos--; /* let the next call count the line end */
    *id = (uint32_t)v;
    *more = 1;
    return 0;
}

static int tk_in_open(tk_in_t *t, dl_err_t *err)
{
    errno = 0;
    t->f = fopen(t->path, "rb");
    if (!t->f)
        return errno == ENOENT
                   ? DL_ERR(err, DL_EINPUT, "%s: no such file (expected a %s)", t->path,
                            t->ids ? "text file of token ids" : "file of bytes")
                   : DL_ERR(err, DL_EIO, "%s: cannot open: %s", t->path, strerror(errno));
    t->line = 1;
    t->pos = t->len = 0;
    return 0;
}

/* Count the tokens and find the largest id; an id the type cannot hold is
 * DL_EINPUT at its line. */
static int tk_scan(tk_in_t *t, int bits, int64_t *n, uint32_t *max, dl_err_t *err)
{
    struct stat st;
    *n = 0;
    *max = 0;
    if (!t->ids) { /* bytes: the file size says it all */
        if (fstat(fileno(t->f), &st) != 0)
            return DL_ERR(err, DL_EIO, "%s: cannot stat: %s", t->path, strerror(errno));
        *n = (int64_t)st.st_size;
        *max = 255;
        return 0;
    }
    uint32_t id;
    int more = 1, rc = 0;
    while (!rc && more) {
        rc = tk_next(t, &id, &more, err);
        if (!rc && more && bits == 16 && id > UINT16_MAX)
            rc = DL_ERR(err, DL_EINPUT,
                        "%s:%" PRId64 ": token id %" PRIu32 " does not fit in uint16 (0 to "
                        "65535); use --dtype uint32",
                        t->path, t->line, id);
        if (!rc && more) {
            (*n)++;
            *max = id > *max ? id : *max;
        }
    }
    return rc;
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct tk_write {
    tk_in_t *in;
    int bits;
    int64_t vocab;
    void *buf; /* one chunk of tokens */
    int64_t chunk;
} tk_write_t;

/* /tokens of n elements, chunked (a chunk may not exceed a fixed size). */
static int tk_create(hid_t file, const tk_write_t *w, int64_t n, hid_t *d, const char *out,
                     dl_err_t *err)
{
    hsize_t dim = (hsize_t)n, chunk = (hsize_t)(n < w->chunk ? n : w->chunk);
    hid_t sp = H5Screate_simple(1, &dim, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = 0;
    *d = H5I_INVALID_HID;
    if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot set up dataset /tokens", out);
    else if ((*d = H5Dcreate2(file, "tokens", w->bits == 16 ? H5T_STD_U16LE : H5T_STD_U32LE, sp,
                              H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot create dataset /tokens", out);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

/* Fill w->buf with the next k tokens of the input. */
static int tk_fill(tk_write_t *w, int64_t k, dl_err_t *err)
{
    uint32_t id = 0;
    int more = 1, rc = 0;
    for (int64_t i = 0; !rc && i < k; i++) {
        rc = tk_next(w->in, &id, &more, err);
        if (!rc && !more)
            rc = DL_ERR(err, DL_EIO, "%s: the file changed while being converted", w->in->path);
        if (w->bits == 16)
            ((uint16_t *)w->buf)[i] = (uint16_t)id;
        else
            ((uint32_t *)w->buf)[i] = id;
    }
    return rc;
}

static int tk_write_rows(hid_t d, const tk_write_t *w, int64_t i0, int64_t k, const char *out,
                         dl_err_t *err)
{
    hsize_t start = (hsize_t)i0, count = (hsize_t)k;
    hid_t fsp = H5Dget_space(d), msp = H5Screate_simple(1, &count, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select tokens %" PRId64 "..", out, i0);
    else if (H5Dwrite(d, w->bits == 16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32, msp, fsp,
                      H5P_DEFAULT, w->buf) < 0)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot write tokens %" PRId64 "..", out, i0);
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    return rc;
}

/* dl_h5_shard_fn: tokens [lo, hi) of the input, in order. */
static int tk_shard(void *ctx, hid_t file, const char *tmp, int64_t lo, int64_t hi, dl_err_t *err)
{
    tk_write_t *w = ctx;
    hid_t d = H5I_INVALID_HID;
    int rc = dl_h5_root_attrs(file, "tokens", tmp, err);
    if (!rc)
        rc = dl_h5_attr_write(file, "vocab_size", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &w->vocab,
                              tmp, err);
    if (!rc)
        rc = tk_create(file, w, hi - lo, &d, tmp, err);
    uint64_t digest = DL_FNV_INIT;
    for (int64_t i0 = 0; !rc && i0 < hi - lo; i0 += w->chunk) {
        int64_t k = hi - lo - i0 < w->chunk ? hi - lo - i0 : w->chunk;
        rc = tk_fill(w, k, err);
        if (!rc)
            digest = dl_fnv1a64_le(digest, w->buf, (size_t)k, (size_t)w->bits / 8);
        if (!rc)
            rc = tk_write_rows(d, w, i0, k, tmp, err);
    }
    if (!rc) /* what `dltrain-data verify` recomputes */
        rc = dl_h5_attr_write(d, "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &digest, tmp, err);
    if (d >= 0 && H5Dclose(d) < 0 && !rc)
        rc = H5_FAIL(err, DL_EIO, "%s: cannot close dataset /tokens", tmp);
    return rc;
}

static int tk_check_opts(const dl_tokens_opts_t *o, dl_err_t *err)
{
    if (o->bits != 16 && o->bits != 32)
        return DL_ERR(err, DL_EINPUT, "--dtype: token ids are stored as uint16 or uint32");
    if (o->shards < 1)
        return DL_ERR(err, DL_EINPUT, "--shards %d: the number of shards must be at least 1",
                      o->shards);
    return 0;
}

int dl_tokens_convert(const char *in_path, const char *out_path, const dl_tokens_opts_t *o,
                      dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors become dl_err_t messages */
    int rc = tk_check_opts(o, err);
    if (rc)
        return rc;
    tk_in_t *in = dl_calloc(1, sizeof *in, err);
    if (!in)
        return DL_ENOMEM;
    in->path = in_path;
    in->ids = o->ids;
    tk_write_t w = {.in = in, .bits = o->bits, .chunk = TK_CHUNK_BYTES / (o->bits / 8)};
    int64_t n = 0;
    uint32_t max = 0;
    rc = tk_in_open(in, err);
    if (!rc)
        rc = tk_scan(in, o->bits, &n, &max, err);
    if (!rc && n == 0)
        rc = DL_ERR(err, DL_EINPUT, "%s: holds no tokens; a token dataset needs at least 1",
                    in_path);
    if (!rc && o->shards > n)
        rc = DL_ERR(err, DL_EINPUT, "--shards %d: %s has only %" PRId64 " tokens", o->shards,
                    in_path, n);
    if (!rc && o->ids && fseek(in->f, 0, SEEK_SET) != 0) /* the second pass writes */
        rc = DL_ERR(err, DL_EIO, "%s: cannot read it again: %s", in_path, strerror(errno));
    in->line = 1;
    in->pos = in->len = 0;
    w.vocab = (int64_t)max + 1;
    if (!rc && !(w.buf = dl_calloc((size_t)w.chunk, (size_t)o->bits / 8, err)))
        rc = DL_ENOMEM;
    if (!rc)
        rc = dl_h5_write_shards(out_path, o->shards, n, tk_shard, &w, err);
    if (in->f)
        fclose(in->f);
    free(in);
    free(w.buf);
    return rc;
}

/* ---- reading ------------------------------------------------------------------- */

typedef struct tk_shard {
    const char *path;
    hid_t file, tokens;
    int64_t n, vocab;
    int bits;
} tk_shard_t;

static void tk_close(tk_shard_t *s)
{
    if (s->tokens >= 0)
        H5Dclose(s->tokens);
    if (s->file >= 0)
        H5Fclose(s->file);
    s->tokens = s->file = H5I_INVALID_HID;
}

static int tk_check_root(tk_shard_t *s, dl_err_t *err)
{
    char name[64];
    int64_t v = 0;
    int rc = dl_h5_schema_name(s->file, s->path, name, sizeof name, err);
    if (!rc && strcmp(name, "tokens") != 0)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute dltrain_schema is \"%s\"; expected \"tokens\" (every "
                      "shard of a token dataset must be a token dataset)",
                      s->path, name);
    if (!rc)
        rc = dl_h5_attr_get(s->file, s->path, "root", "schema_version", 'i', &v, 1, "the integer 1",
                            err);
    if (!rc && v != 1)
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute schema_version is %" PRId64 "; this dltrain reads "
                      "schema version 1 only",
                      s->path, v);
    if (!rc)
        rc = dl_h5_attr_get(s->file, s->path, "root", "vocab_size", 'i', &s->vocab, 1,
                            "an integer from 1 to 2^32", err);
    if (!rc && (s->vocab < 1 || s->vocab > (int64_t)UINT32_MAX + 1))
        return DL_ERR(err, DL_EINPUT,
                      "%s: root attribute vocab_size is %" PRId64 "; expected an integer from 1 "
                      "to 2^32",
                      s->path, s->vocab);
    return rc;
}

static int tk_check_tokens(tk_shard_t *s, dl_err_t *err)
{
    static const char want[] = "uint16 or uint32 of rank 1";
    htri_t ex = H5Lexists(s->file, "tokens", H5P_DEFAULT);
    if (ex <= 0)
        return ex < 0 ? H5_FAIL(err, DL_ELIB, "%s: cannot look up dataset /tokens", s->path)
                      : DL_ERR(err, DL_EINPUT, "%s: dataset /tokens is missing; expected %s",
                               s->path, want);
    s->tokens = H5Dopen2(s->file, "tokens", H5P_DEFAULT);
    if (s->tokens < 0)
        return H5_FAIL(err, DL_EINPUT, "%s: /tokens cannot be opened as a dataset; expected %s",
                       s->path, want);
    hid_t t = H5Dget_type(s->tokens), sp = H5Dget_space(s->tokens);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, rc = 0;
    size_t size = t >= 0 ? H5Tget_size(t) : 0;
    hsize_t dim = 0;
    char tn[64];
    if (t < 0 || r < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot inspect dataset /tokens", s->path);
    } else if (H5Tget_class(t) != H5T_INTEGER || H5Tget_sign(t) != H5T_SGN_NONE ||
               (size != 2 && size != 4) || r != 1) {
        dl_h5_type_name(t, tn, sizeof tn);
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset /tokens has type %s and rank %d; expected %s",
                    s->path, tn, r, want);
    } else if (H5Sget_simple_extent_dims(sp, &dim, NULL) < 0) {
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot read the shape of dataset /tokens", s->path);
    } else if (dim < 1) {
        rc = DL_ERR(err, DL_EINPUT, "%s: dataset /tokens is empty; a shard needs at least 1",
                    s->path);
    }
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    s->n = (int64_t)dim;
    s->bits = (int)size * 8;
    return rc;
}

/* Open shard path and check it; a later shard must agree with the first. */
static int tk_open(tk_shard_t *s, const char *path, const tk_shard_t *first, dl_err_t *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->file = s->tokens = H5I_INVALID_HID;
    int rc = dl_h5_open_read(path, &s->file, err);
    if (!rc)
        rc = tk_check_root(s, err);
    if (!rc)
        rc = tk_check_tokens(s, err);
    if (!rc && first && (first->bits != s->bits || first->vocab != s->vocab))
        rc = DL_ERR(err, DL_EINPUT,
                    "%s: uint%d tokens with vocab_size %" PRId64 " but %s has uint%d with "
                    "vocab_size %" PRId64 "; all shards of a dataset must agree",
                    path, s->bits, s->vocab, first->path, first->bits, first->vocab);
    if (rc)
        tk_close(s);
    return rc;
}

int dl_tokens_probe(const char *spec, int *is_tokens, dl_err_t *err)
{
    dl_paths_t p;
    dl_err_t quiet = {0}; /* problems are the image reader's to report */
    hid_t file = H5I_INVALID_HID;
    char name[64] = "";
    *is_tokens = 0;
    (void)err;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (dl_paths_expand(&p, spec, &quiet) == 0 && dl_h5_open_read(p.v[0], &file, &quiet) == 0 &&
        H5Aexists(file, "dltrain_schema") > 0 &&
        dl_h5_schema_name(file, p.v[0], name, sizeof name, &quiet) == 0)
        *is_tokens = strcmp(name, "tokens") == 0;
    if (file >= 0)
        H5Fclose(file);
    dl_paths_free(&p);
    return 0;
}

/* Open every shard in turn, calling fn on each (then closing it). */
static int tk_each(const char *spec, int (*fn)(void *, tk_shard_t *, dl_err_t *), void *ctx,
                   dl_err_t *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dl_paths_t p;
    tk_shard_t first = {.file = H5I_INVALID_HID, .tokens = H5I_INVALID_HID}, s;
    int rc = dl_paths_expand(&p, spec, err);
    for (int i = 0; !rc && i < p.n; i++) {
        rc = tk_open(&s, p.v[i], i ? &first : NULL, err);
        if (!rc)
            rc = fn(ctx, &s, err);
        if (!rc && i == 0)
            first = s, first.file = first.tokens = H5I_INVALID_HID;
        tk_close(&s);
    }
    dl_paths_free(&p);
    return rc;
}

typedef struct tk_info_ctx {
    dl_tokens_info_t *info;
    FILE *report;
} tk_info_ctx_t;

static int tk_info_one(void *ctx, tk_shard_t *s, dl_err_t *err)
{
    tk_info_ctx_t *c = ctx;
    c->info->n += s->n;
    c->info->vocab_size = s->vocab;
    c->info->bits = s->bits;
    c->info->n_files++;
    if (c->report)
        fprintf(c->report, "  %s: %" PRId64 " tokens\n", s->path, s->n);
    (void)err;
    return 0;
}

int dl_tokens_info(const char *spec, dl_tokens_info_t *info, FILE *report, dl_err_t *err)
{
    memset(info, 0, sizeof *info);
    tk_info_ctx_t c = {.info = info, .report = report};
    return tk_each(spec, tk_info_one, &c, err);
}

/* Read tokens [i0, i0 + k) of s into buf (native type of s->bits). */
static int tk_read_rows(const tk_shard_t *s, int64_t i0, int64_t k, void *buf, dl_err_t *err)
{
    hsize_t start = (hsize_t)i0, count = (hsize_t)k;
    hid_t fsp = H5Dget_space(s->tokens), msp = H5Screate_simple(1, &count, NULL);
    int rc = 0;
    if (fsp < 0 || msp < 0 ||
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0)
        rc = H5_FAIL(err, DL_ELIB, "%s: cannot select tokens of /tokens", s->path);
    else if (H5Dread(s->tokens, s->bits == 16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32, msp, fsp,
                     H5P_DEFAULT, buf) < 0)
        rc = H5_FAIL(err, DL_EINPUT,
                     "%s: tokens %" PRId64 "..%" PRId64 " of dataset /tokens cannot be read; the "
                     "file is damaged",
                     s->path, i0, i0 + k - 1);
    if (msp >= 0)
        H5Sclose(msp);
    if (fsp >= 0)
        H5Sclose(fsp);
    return rc;
}

typedef struct tk_verify_ctx {
    uint32_t *buf; /* TK_CHUNK_BYTES / 2 elements: room for a chunk of either type */
    FILE *report;
} tk_verify_ctx_t;

static int tk_verify_one(void *ctx, tk_shard_t *s, dl_err_t *err)
{
    tk_verify_ctx_t *c = ctx;
    int64_t slab = TK_CHUNK_BYTES / 2;
    uint64_t stored = 0, digest = DL_FNV_INIT;
    int have = 0;
    int rc = dl_h5_stored_digest(s->tokens, s->path, "tokens", &stored, &have, err);
    for (int64_t i0 = 0; !rc && i0 < s->n; i0 += slab) {
        int64_t k = s->n - i0 < slab ? s->n - i0 : slab;
        rc = tk_read_rows(s, i0, k, c->buf, err);
        for (int64_t j = 0; !rc && j < k; j++) {
            int64_t id = s->bits == 16 ? ((uint16_t *)c->buf)[j] : c->buf[j];
            if (id >= s->vocab)
                rc = DL_ERR(err, DL_EINPUT,
                            "%s: dataset /tokens entry %" PRId64 " is %" PRId64 "; accepted "
                            "ids are 0..%" PRId64 " (root attribute vocab_size = %" PRId64 ")",
                            s->path, i0 + j, id, s->vocab - 1, s->vocab);
        }
        if (!rc)
            digest = dl_fnv1a64_le(digest, c->buf, (size_t)k, (size_t)s->bits / 8);
    }
    if (!rc)
        rc = dl_h5_check_digest(s->path, "tokens", stored, have, digest, err);
    if (!rc && c->report)
        fprintf(c->report, "%s: %" PRId64 " tokens read, ids below vocab_size %" PRId64 ", %s\n",
                s->path, s->n, s->vocab, have ? "checksum matches" : "no stored checksum");
    return rc;
}

int dl_tokens_verify(const char *spec, FILE *report, dl_err_t *err)
{
    tk_verify_ctx_t c = {.report = report};
    c.buf = dl_calloc(TK_CHUNK_BYTES / 2, sizeof *c.buf, err);
    if (!c.buf)
        return DL_ENOMEM;
    int rc = tk_each(spec, tk_verify_one, &c, err);
    free(c.buf);
    return rc;
}
