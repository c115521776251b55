/* Licensed under the Apache License, Version 2.0.
 *
 * client.h: what the engine's C unit tests of frames (test_frame.c,
 * test_deflate.c) build their input with: a growable byte buffer
 * (NUL-terminated, for the event logs) and masked RFC 6455 client frames.
 * Include after unit.h and ws_engine.h.
 */
#ifndef WS_UNIT_CLIENT_H
#define WS_UNIT_CLIENT_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr.h>

/* ------------------------------------------------------------------ */
/* Growable byte buffer                                                */

typedef struct {
    char *data;
    apr_size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, apr_size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data) {
            abort();
        }
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(buf_t *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    buf_add(b, line, (apr_size_t)n < sizeof(line) ? (apr_size_t)n
                                                  : sizeof(line) - 1);
}

static void buf_free(buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static const char *buf_str(const buf_t *b)
{
    return b->data ? b->data : "";
}


/* ------------------------------------------------------------------ */
/* Client frames                                                       */

static const unsigned char mask_key[4] = { 0x37, 0xFA, 0x21, 0x3D };

/* An RFC 6455 frame header with the shortest length encoding. */
static void add_header(buf_t *b, int first, int masked, apr_uint64_t len)
{
    unsigned char h[10];
    apr_size_t n;
    int i;

    h[0] = (unsigned char)first;
    if (len < 126) {
        h[1] = (unsigned char)len;
        n = 2;
    }
    else if (len <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    }
    else {
        h[1] = 127;
        for (i = 9; i >= 2; i--, len >>= 8) {
            h[i] = (unsigned char)len;
        }
        n = 10;
    }
    if (masked) {
        h[1] |= 0x80;
    }
    buf_add(b, h, n);
    if (masked) {
        buf_add(b, mask_key, 4);
    }
}

/* A client frame: masked, header first byte `first`. */
static void client_frame(buf_t *b, int first, const void *payload,
                         apr_size_t len)
{
    apr_size_t i;

    add_header(b, first, 1, len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)(((const char *)payload)[i]
                                          ^ mask_key[i & 3]);

        buf_add(b, &c, 1);
    }
}

#endif /* WS_UNIT_CLIENT_H */
