/* A tiny TAP producer for unit tests: ok(cond, fmt, ...), is_int, is_str,
 * subtest, note, done_testing(). Each test program prints a plan at the end
 * and exits non-zero when any check failed. */
#ifndef PT_TAP_H
#define PT_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count, tap_failed;
static const char *tap_subtest = "";

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    tap_count++;
    printf("%sok %d - %s%s", cond ? "" : "not ", tap_count, tap_subtest, *tap_subtest ? ": " : "");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        tap_failed++;
        printf("#   failed at %s:%d\n", file, line);
    }
    fflush(stdout);
    return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, name) do { \
        long long g_ = (long long) (got), w_ = (long long) (want); \
        if (!ok(g_ == w_, "%s", name)) printf("#   got %lld, want %lld\n", g_, w_); \
    } while (0)
#define is_str(got, want, name) do { \
        const char *g_ = (got), *w_ = (want); \
        if (!ok(g_ && w_ && strcmp(g_, w_) == 0, "%s", name)) \
            printf("#   got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
    } while (0)
#define is_strn(got, glen, want, name) do { \
        const char *g_ = (got), *w_ = (want); size_t gl_ = (glen); \
        if (!ok(g_ && strlen(w_) == gl_ && memcmp(g_, w_, gl_) == 0, "%s", name)) \
            printf("#   got \"%.*s\", want \"%s\"\n", (int) gl_, g_ ? g_ : "", w_); \
    } while (0)
#define note(...) do { printf("# "); printf(__VA_ARGS__); printf("\n"); } while (0)
#define subtest(name, fn) do { tap_subtest = (name); fn(); tap_subtest = ""; } while (0)

static inline int done_testing(void)
{
    printf("1..%d\n", tap_count);
    if (tap_failed)
        printf("# %d of %d checks failed\n", tap_failed, tap_count);
    return tap_failed ? 1 : 0;
}

#endif
