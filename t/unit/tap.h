/*
 * Minimal TAP producer for the C unit tests (prove runs them via t/NN-*.t).
 *
 *   ok(cond, "name %d", i);  is_int(got, want, "name");
 *   is_str(got, want, "name");  is_mem(p, n, q, m, "name");
 *   return tap_done();       -- prints the plan, exit status 1 on failure
 */
#ifndef BL_TAP_H
#define BL_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int  tap_n;
static int  tap_failed;

static int
tap_vok(int cond, const char *fmt, va_list ap)
{
    tap_n++;
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    vprintf(fmt, ap);
    printf("\n");
    if (!cond) {
        tap_failed++;
    }
    fflush(stdout);
    return cond;
}

static int __attribute__((format(printf, 2, 3), unused))
ok(int cond, const char *fmt, ...)
{
    va_list  ap;
    int      r;

    va_start(ap, fmt);
    r = tap_vok(cond, fmt, ap);
    va_end(ap);
    return r;
}

#define is_int(got, want, ...)                                                \
    do {                                                                      \
        long long g_ = (long long) (got), w_ = (long long) (want);            \
        if (!ok(g_ == w_, __VA_ARGS__)) {                                     \
            printf("#   got: %lld\n#  want: %lld\n", g_, w_);                 \
        }                                                                     \
    } while (0)

#define is_str(got, want, ...)                                                \
    do {                                                                      \
        const char *g_ = (got), *w_ = (want);                                 \
        if (!ok(g_ != NULL && w_ != NULL ? strcmp(g_, w_) == 0 : g_ == w_,    \
                __VA_ARGS__))                                                 \
        {                                                                     \
            printf("#   got: '%s'\n#  want: '%s'\n", g_ ? g_ : "(null)",      \
                   w_ ? w_ : "(null)");                                       \
        }                                                                     \
    } while (0)

#define is_mem(p, n, q, m, ...)                                               \
    do {                                                                      \
        size_t n_ = (n), m_ = (m);                                            \
        if (!ok(n_ == m_ && (n_ == 0 || memcmp((p), (q), n_) == 0),           \
                __VA_ARGS__))                                                 \
        {                                                                     \
            printf("#   got: '%.*s' (%zu)\n#  want: '%.*s' (%zu)\n",          \
                   (int) n_, (const char *) (p), n_, (int) m_,                \
                   (const char *) (q), m_);                                   \
        }                                                                     \
    } while (0)

static void __attribute__((unused))
diag(const char *msg)
{
    printf("# %s\n", msg);
}

static int __attribute__((unused))
tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif /* BL_TAP_H */
