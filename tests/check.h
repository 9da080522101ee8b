/* Minimal checking macros for dltrain's C tests: a failed check prints the
 * test file, line and values, and the test exits non-zero at the end. */
#ifndef DL_TEST_CHECK_H
#define DL_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_CLOSE(a, b, rel, abs_)                                                               \
    do {                                                                                           \
        double a_ = (a), b_ = (b), d_ = a_ > b_ ? a_ - b_ : b_ - a_;                               \
        double m_ =                                                                                \
            (a_ < 0 ? -a_ : a_) > (b_ < 0 ? -b_ : b_) ? (a_ < 0 ? -a_ : a_) : (b_ < 0 ? -b_ : b_); \
        if (!(d_ <= (rel)*m_ + (abs_))) {                                                          \
            fprintf(stderr, "%s:%d: %s = %.9g but %s = %.9g\n", __FILE__, __LINE__, #a, a_, #b,    \
                    b_);                                                                           \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                           \
    do {                                                                                           \
        if (!strstr((haystack), (needle))) {                                                       \
            fprintf(stderr, "%s:%d: expected \"%s\" in: %s\n", __FILE__, __LINE__, (needle),       \
                    (haystack));                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_DONE()                                                                               \
    (check_failures ? (fprintf(stderr, "%d check(s) failed\n", check_failures), 1)                 \
                    : (printf("all checks passed\n"), 0))

/* With runtime/error.h included first: the call returned DL_EINPUT and its
 * message names both needles. */
#if defined(DL_ERROR_H) && !defined(CHECK_EINPUT)
#define CHECK_EINPUT(rc, err, needle1, needle2)                                                    \
    check_einput((rc), (err), (needle1), (needle2), __FILE__, __LINE__)

static void check_einput(int rc, const dl_err_t *err, const char *n1, const char *n2,
                         const char *file, int line)
{
    if (rc != DL_EINPUT || !strstr(err->msg, n1) || !strstr(err->msg, n2)) {
        fprintf(stderr, "%s:%d: expected DL_EINPUT naming \"%s\" and \"%s\"; got %d: %s\n", file,
                line, n1, n2, rc, err->msg);
        check_failures++;
    }
}
#endif

#endif
