/* Licensed under the Apache License, Version 2.0.
 *
 * unit.h: minimal assertions for the engine's C unit tests.
 *
 * Each check counts as passed or failed; a failure prints file:line and
 * what was expected.  UNIT_DONE() prints "N passed, M failed" and gives
 * the exit status.
 */
#ifndef WS_UNIT_H
#define WS_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

static inline int unit_check(int ok, const char *file, int line,
                             const char *what)
{
    if (ok) {
        unit_passed++;
    }
    else {
        unit_failed++;
        fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
    }
    return ok;
}

static inline int unit_check_long(long long got, long long want,
                                  const char *file, int line,
                                  const char *what)
{
    if (got != want) {
        fprintf(stderr, "%s:%d: got %lld, want %lld\n", file, line, got,
                want);
    }
    return unit_check(got == want, file, line, what);
}

static inline int unit_check_str(const char *got, const char *want,
                                 const char *file, int line,
                                 const char *what)
{
    int ok = (got == NULL && want == NULL)
             || (got && want && strcmp(got, want) == 0);

    if (!ok) {
        fprintf(stderr, "%s:%d: got \"%s\"\n%s:%d: want \"%s\"\n",
                file, line, got ? got : "(null)", file, line,
                want ? want : "(null)");
    }
    return unit_check(ok, file, line, what);
}

static inline int unit_check_mem(const void *got, size_t got_len,
                                 const void *want, size_t want_len,
                                 const char *file, int line,
                                 const char *what)
{
    int ok = got_len == want_len
             && (want_len == 0 || memcmp(got, want, want_len) == 0);

    if (!ok) {
        size_t i;

        fprintf(stderr, "%s:%d: got %lu bytes:", file, line,
                (unsigned long)got_len);
        for (i = 0; i < got_len && i < 32; i++) {
            fprintf(stderr, " %02x", ((const unsigned char *)got)[i]);
        }
        fprintf(stderr, "\n%s:%d: want %lu bytes:", file, line,
                (unsigned long)want_len);
        for (i = 0; i < want_len && i < 32; i++) {
            fprintf(stderr, " %02x", ((const unsigned char *)want)[i]);
        }
        fprintf(stderr, "\n");
    }
    return unit_check(ok, file, line, what);
}

#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_INT(got, want) \
    unit_check_long((long long)(got), (long long)(want), __FILE__, __LINE__, \
                    #got " == " #want)
#define CHECK_STR(got, want) \
    unit_check_str((got), (want), __FILE__, __LINE__, #got " == " #want)
#define CHECK_MEM(got, got_len, want, want_len) \
    unit_check_mem((got), (got_len), (want), (want_len), __FILE__, __LINE__, \
                   #got " == " #want)

#define UNIT_DONE() \
    (printf("%d passed, %d failed\n", unit_passed, unit_failed), \
     unit_failed ? 1 : 0)

#endif /* WS_UNIT_H */
