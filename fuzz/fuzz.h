/* Licensed under the Apache License, Version 2.0.
 *
 * fuzz.h: what the libFuzzer harnesses of frames (fuzz_frame.c,
 * fuzz_deflate.c) share: a growable byte buffer, the log records they
 * compare runs by, and CHECK(), which aborts (a finding) saying what
 * failed.  Define FUZZ_NAME (the harness's name) before including it.
 */
#ifndef WS_FUZZ_H
#define WS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz/fuzz.h"
#endif

typedef struct {
    unsigned char *data;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        if (!b->data) {
            abort();
        }
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
}

/* A log record: tag, a number, then len bytes. */
static void log_rec(buf_t *b, char tag, long num, const void *p, size_t len)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "\n%c %ld %lu:", tag, num,
                     (unsigned long)len);

    buf_add(b, head, (size_t)n);
    buf_add(b, p, len);
}

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", FUZZ_NAME, what);
    abort();
}

#define CHECK(cond) do { if (!(cond)) die(#cond); } while (0)

#endif /* WS_FUZZ_H */
