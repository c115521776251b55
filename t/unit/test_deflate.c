/* Licensed under the Apache License, Version 2.0.
 *
 * test_deflate.c: unit tests for permessage-deflate (RFC 7692): the
 * negotiation (ws_deflate.c) and compressed framing in ws_session
 * (ws_frame.c).
 *
 * The test plays the client with zlib: it compresses what it sends
 * (raw deflate, Z_SYNC_FLUSH, the 00 00 FF FF tail removed) and inflates
 * what the server sends.  Received input is fed in one chunk, one byte at
 * a time and (for short inputs) split in two at every position, with
 * whole messages and in stream mode, and every run must give the same
 * events, output and end state.
 */

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <zlib.h>

#include <apr_general.h>

#include "ws_engine.h"
#include "t/unit/unit.h"
#include "t/unit/client.h"

#define SPLIT_ALL_MAX 400

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* Negotiation                                                         */

static const ws_deflate_config cfg_default = { 6, 15, 8, 0 };

static void nego(const char *header, const ws_deflate_config *cfg,
                 const char *want, int line)
{
    ws_deflate_params p;
    const char *got;

    memset(&p, 0x55, sizeof(p));
    got = ws_deflate_negotiate(root, header, cfg, &p);
    unit_check_str(got, want, __FILE__, line, header ? header : "(null)");
    unit_check_long(p.enabled, want != NULL, __FILE__, line, "enabled");
}

#define NEGO(h, want) nego(h, &cfg_default, want, __LINE__)
#define NEGO_CFG(h, cfg, want) nego(h, cfg, want, __LINE__)

static void test_negotiate_accepts(void)
{
    ws_deflate_params p;

    NEGO("permessage-deflate", "permessage-deflate");
    NEGO("Permessage-Deflate", "permessage-deflate");
    /* Chromium's and Firefox's offer */
    NEGO("permessage-deflate; client_max_window_bits",
         "permessage-deflate");
    NEGO("permessage-deflate; client_max_window_bits=15",
         "permessage-deflate");
    NEGO("permessage-deflate; client_max_window_bits=12",
         "permessage-deflate; client_max_window_bits=12");
    NEGO("permessage-deflate; client_max_window_bits=8",
         "permessage-deflate; client_max_window_bits=8");
    NEGO("permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10");
    NEGO("permessage-deflate; server_max_window_bits=15",
         "permessage-deflate; server_max_window_bits=15");
    /* 8 is answered as 8: the compressor uses zlib's 9, whose matches
     * stay within 256 bytes (test_window_8) */
    NEGO("permessage-deflate; server_max_window_bits=8",
         "permessage-deflate; server_max_window_bits=8");
    NEGO("permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover");
    NEGO("permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover");
    NEGO("permessage-deflate; client_no_context_takeover; "
         "server_no_context_takeover; server_max_window_bits=9; "
         "client_max_window_bits=11",
         "permessage-deflate; server_no_context_takeover; "
         "client_no_context_takeover; server_max_window_bits=9; "
         "client_max_window_bits=11");
    /* syntax: quoted values (7.1: unescaped, then a token), white space,
     * parameter names in any case, empty list elements */
    NEGO("permessage-deflate; server_max_window_bits=\"10\"",
         "permessage-deflate; server_max_window_bits=10");
    NEGO("permessage-deflate; server_max_window_bits=\"1\\0\"",
         "permessage-deflate; server_max_window_bits=10");
    NEGO("  permessage-deflate\t;  server_max_window_bits = 10 ,x",
         "permessage-deflate; server_max_window_bits=10");
    NEGO("permessage-deflate; Server_No_Context_Takeover",
         "permessage-deflate; server_no_context_takeover");
    NEGO(" , ,permessage-deflate,", "permessage-deflate");

    /* the parameters */
    CHECK(ws_deflate_negotiate(root, "permessage-deflate; "
                               "server_max_window_bits=10; "
                               "client_max_window_bits=12",
                               &cfg_default, &p) != NULL);
    CHECK_INT(p.enabled, 1);
    CHECK_INT(p.server_max_window_bits, 10);
    CHECK_INT(p.client_max_window_bits, 12);
    CHECK_INT(p.server_no_context_takeover, 0);
    CHECK_INT(p.client_no_context_takeover, 0);
    CHECK_INT(p.level, 6);
    CHECK_INT(p.mem_level, 8);
    CHECK(ws_deflate_negotiate(root, "permessage-deflate", &cfg_default, &p)
          != NULL);
    CHECK_INT(p.server_max_window_bits, 15);
    CHECK_INT(p.client_max_window_bits, 15);
    CHECK(ws_deflate_negotiate(root, "permessage-deflate; "
                               "client_no_context_takeover; "
                               "server_no_context_takeover",
                               &cfg_default, &p) != NULL);
    CHECK_INT(p.server_no_context_takeover, 1);
    CHECK_INT(p.client_no_context_takeover, 1);
}

static void test_negotiate_server_settings(void)
{
    static const ws_deflate_config small = { 1, 10, 4, 0 };
    static const ws_deflate_config eight = { 6, 8, 8, 0 };
    static const ws_deflate_config nct = { 6, 15, 8, 1 };
    ws_deflate_params p;

    /* a smaller window is named even unasked; the client's only when its
     * offer lets the server choose */
    NEGO_CFG("permessage-deflate", &small,
             "permessage-deflate; server_max_window_bits=10");
    NEGO_CFG("permessage-deflate; client_max_window_bits", &small,
             "permessage-deflate; server_max_window_bits=10; "
             "client_max_window_bits=10");
    NEGO_CFG("permessage-deflate; client_max_window_bits=9; "
             "server_max_window_bits=12", &small,
             "permessage-deflate; server_max_window_bits=10; "
             "client_max_window_bits=9");
    CHECK(ws_deflate_negotiate(root, "permessage-deflate", &small, &p));
    CHECK_INT(p.server_max_window_bits, 10);
    CHECK_INT(p.client_max_window_bits, 15);   /* it was not asked */
    CHECK_INT(p.level, 1);
    CHECK_INT(p.mem_level, 4);
    NEGO_CFG("permessage-deflate; client_max_window_bits", &eight,
             "permessage-deflate; server_max_window_bits=8; "
             "client_max_window_bits=8");
    /* the server's no-context-takeover setting asks for both */
    NEGO_CFG("permessage-deflate", &nct,
             "permessage-deflate; server_no_context_takeover; "
             "client_no_context_takeover");
    NEGO_CFG("permessage-deflate; server_no_context_takeover", &nct,
             "permessage-deflate; server_no_context_takeover; "
             "client_no_context_takeover");
}

static void test_negotiate_declines(void)
{
    static const char *const bad[] = {
        /* values out of range or not decimal without leading zero */
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=9.0",
        "permessage-deflate; server_max_window_bits=1e1",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"10 \"",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=09",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover=\"\"",
        "permessage-deflate; client_no_context_takeover=true",
        /* unknown parameters */
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_max_window_bit=10",
        "permessage-deflate; client_max_window_bits; x-extra=\"a,b\"",
        "permessage-deflate; aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        /* repeated parameters */
        "permessage-deflate; server_no_context_takeover; "
        "server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; "
        "client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; "
        "server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=10; "
        "client_max_window_bits",
        /* malformed */
        "permessage-deflate;",
        "permessage-deflate; ; server_no_context_takeover",
        "permessage-deflate server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; server_max_window_bits=10 11",
        "permessage-deflate; =10",
        "permessage-deflate; server_max_window_bits==10",
        "\"permessage-deflate\"",
        "permessage-deflate/2",
        /* other extensions, and nothing */
        "x-webkit-deflate-frame",
        "deflate-frame; no_context_takeover",
        "permessage-deflate-x",
        "foo, bar; baz=1",
        "",
        "   ",
        ",",
        NULL
    };
    const char *const *b;

    NEGO(NULL, NULL);
    for (b = bad; *b; b++) {
        NEGO(*b, NULL);
    }
}

static void test_negotiate_order(void)
{
    /* the first offer the server can accept wins */
    NEGO("permessage-deflate; server_max_window_bits=7, "
         "permessage-deflate; client_max_window_bits",
         "permessage-deflate");
    NEGO("permessage-deflate; foo, permessage-deflate; bar, "
         "permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover");
    /* RFC 7692 7.1.3's example: the first is accepted */
    NEGO("permessage-deflate; client_max_window_bits; "
         "server_max_window_bits=10, permessage-deflate; "
         "client_max_window_bits",
         "permessage-deflate; server_max_window_bits=10");
    NEGO("x-webkit-deflate-frame, permessage-deflate; "
         "client_max_window_bits=10",
         "permessage-deflate; client_max_window_bits=10");
    /* a comma or a name inside a foreign extension's quoted value */
    NEGO("foo; a=\"x, permessage-deflate\", "
         "permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover");
    NEGO("foo; a=\"x\\\", permessage-deflate\", permessage-deflate",
         "permessage-deflate");
    NEGO("foo; a=\"x, permessage-deflate", NULL);
    /* a malformed element ends at its comma; the next one counts */
    NEGO("permessage-deflate; ;;, permessage-deflate",
         "permessage-deflate");
}

/* ------------------------------------------------------------------ */
/* The client side: compressing, framing, inflating                    */

/* A client's compressor, raw deflate with bits (9 for 8, as zlib
 * needs). */
static void zc_init(z_stream *z, int bits)
{
    memset(z, 0, sizeof(*z));
    if (deflateInit2(z, 6, Z_DEFLATED, -(bits < 9 ? 9 : bits), 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        abort();
    }
}

/* Compress data into out: flush, and (strip) without the tail. */
static void zc_compress(z_stream *z, const void *data, apr_size_t len,
                        int flush, int strip, buf_t *out)
{
    unsigned char chunk[4096];

    z->next_in = (Bytef *)(apr_uintptr_t)data;
    z->avail_in = (uInt)len;
    do {
        z->next_out = chunk;
        z->avail_out = sizeof(chunk);
        if (deflate(z, flush) == Z_STREAM_ERROR) {
            abort();
        }
        buf_add(out, chunk, sizeof(chunk) - z->avail_out);
    } while (z->avail_out == 0);
    if (strip) {
        if (out->len < 4
            || memcmp(out->data + out->len - 4, "\0\0\xFF\xFF", 4)) {
            abort();
        }
        out->len -= 4;
    }
}

/* One whole compressed message (Z_SYNC_FLUSH, tail removed). */
static void zc_message(z_stream *z, const void *data, apr_size_t len,
                       buf_t *out)
{
    zc_compress(z, data, len, Z_SYNC_FLUSH, 1, out);
}

/* A client's decompressor for what the server sends. */
static void zd_init(z_stream *z, int bits)
{
    memset(z, 0, sizeof(*z));
    if (inflateInit2(z, -bits) != Z_OK) {
        abort();
    }
}

/* Inflate a message payload plus the tail; 0 when zlib objects. */
static int zd_message(z_stream *z, const void *data, apr_size_t len,
                      buf_t *out)
{
    unsigned char chunk[4096];
    buf_t in = { 0 };
    int rc;

    buf_add(&in, data, len);
    buf_add(&in, "\0\0\xFF\xFF", 4);
    z->next_in = (Bytef *)in.data;
    z->avail_in = (uInt)in.len;
    do {
        z->next_out = chunk;
        z->avail_out = sizeof(chunk);
        rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            buf_free(&in);
            return 0;
        }
        buf_add(out, chunk, sizeof(chunk) - z->avail_out);
    } while (z->avail_out == 0 || z->avail_in > 0);
    buf_free(&in);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Recording a session                                                 */

typedef struct {
    ws_deflate_params deflate;
    apr_uint64_t max_message;
    apr_size_t fragment_size;
    int stream;
    ws_proto_e proto;           /* 0: RFC 6455 */
    int count_only;             /* stream mode: keep no message bytes */
} setup;

typedef struct {
    const setup *su;
    ws_session *s;
    buf_t events, out, msg;
    int msg_opcode;
    apr_size_t max_piece;
    apr_uint64_t delivered;     /* bytes handed over, all messages */
    ws_session_state_e state;
    int code;
    const char *error;
} recorder;

static void format_event(buf_t *b, const char *what, int n, const char *data,
                         apr_size_t len)
{
    apr_size_t i;

    buf_printf(b, "%s %d %lu ", what, n, (unsigned long)len);
    if (len > 64) {
        unsigned long hash = 2166136261UL;

        for (i = 0; i < len; i++) {
            hash = ((hash ^ (unsigned char)data[i]) * 16777619UL)
                   & 0xFFFFFFFFUL;
        }
        buf_printf(b, "#%08lx", hash);
    }
    else {
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char)data[i];

            if (c >= 0x20 && c < 0x7F && c != '\\') {
                buf_add(b, &c, 1);
            }
            else {
                buf_printf(b, "\\x%02X", c);
            }
        }
    }
    buf_add(b, "\n", 1);
}

static int rec_write(void *baton, const char *data, apr_size_t len)
{
    recorder *r = baton;

    buf_add(&r->out, data, len);
    return 0;
}

static void rec_message(void *baton, int opcode, const char *data,
                        apr_size_t len)
{
    recorder *r = baton;

    if (r->su->stream) {
        buf_printf(&r->events, "bad: on_message in stream mode\n");
    }
    r->delivered += len;
    format_event(&r->events, opcode == WS_OP_TEXT ? "text" : "binary",
                 opcode, data, len);
}

static void rec_data(void *baton, int opcode, const char *data,
                     apr_size_t len, int final)
{
    recorder *r = baton;

    if (!r->su->stream) {
        buf_printf(&r->events, "bad: on_data in whole mode\n");
    }
    if ((len == 0 && !final) || len > 64 * 1024
        || (r->msg_opcode && r->msg_opcode != opcode)) {
        buf_printf(&r->events, "bad piece\n");
    }
    r->msg_opcode = opcode;
    r->delivered += len;
    if (len > r->max_piece) {
        r->max_piece = len;
    }
    if (!r->su->count_only) {
        buf_add(&r->msg, data, len);
    }
    if (final) {
        format_event(&r->events, opcode == WS_OP_TEXT ? "text" : "binary",
                     opcode, buf_str(&r->msg), r->msg.len);
        r->msg.len = 0;
        r->msg_opcode = 0;
    }
}

static void rec_ping(void *baton, const char *data, apr_size_t len)
{
    format_event(&((recorder *)baton)->events, "ping", 0, data, len);
}

static void rec_pong(void *baton, const char *data, apr_size_t len)
{
    format_event(&((recorder *)baton)->events, "pong", 0, data, len);
}

static void rec_close(void *baton, int code, const char *reason,
                      apr_size_t len)
{
    format_event(&((recorder *)baton)->events, "close", code, reason, len);
}

static const ws_session_callbacks callbacks = {
    rec_write, rec_message, rec_ping, rec_pong, rec_close, rec_data
};

static void rec_open(recorder *r, apr_pool_t *p, const setup *su)
{
    ws_session_config cfg;

    memset(r, 0, sizeof(*r));
    memset(&cfg, 0, sizeof(cfg));
    r->su = su;
    cfg.max_message = su->max_message;
    cfg.fragment_size = su->fragment_size;
    cfg.stream = su->stream;
    cfg.deflate = su->deflate;
    r->s = ws_session_create(p, su->proto ? su->proto : WS_PROTO_RFC6455,
                             &cfg, &callbacks, r);
}

static void rec_finish(recorder *r)
{
    r->state = ws_session_state(r->s);
    r->code = ws_session_close_code(r->s);
    r->error = ws_session_error(r->s);
}

static void rec_free(recorder *r)
{
    buf_free(&r->events);
    buf_free(&r->out);
    buf_free(&r->msg);
}

/* Feed in[0..cut) at once, then the rest step bytes at a time. */
static void run(recorder *r, const setup *su, const buf_t *in,
                apr_size_t cut, apr_size_t step)
{
    apr_pool_t *p;
    apr_size_t off;

    apr_pool_create(&p, root);
    rec_open(r, p, su);
    if (cut) {
        ws_session_feed(r->s, in->data, cut);
    }
    for (off = cut; off < in->len; off += step) {
        apr_size_t n = in->len - off < step ? in->len - off : step;

        ws_session_feed(r->s, in->data + off, n);
    }
    rec_finish(r);
    apr_pool_destroy(p);
    r->s = NULL;
}

static int same_run(const recorder *a, const recorder *b)
{
    return strcmp(buf_str(&a->events), buf_str(&b->events)) == 0
        && a->out.len == b->out.len
        && (a->out.len == 0
            || memcmp(a->out.data, b->out.data, a->out.len) == 0)
        && a->state == b->state && a->code == b->code
        && (a->error == b->error
            || (a->error && b->error && !strcmp(a->error, b->error)));
}

static int matches(const recorder *ref, const setup *su, const buf_t *in,
                   apr_size_t cut, apr_size_t step, int line)
{
    recorder other;
    int same;

    run(&other, su, in, cut, step);
    same = same_run(ref, &other);
    if (!same) {
        fprintf(stderr, "%s:%d: %s, cut at %lu then %lu at a time "
                "differs:\n%s--- vs\n%s", __FILE__, line,
                su->stream ? "stream" : "whole", (unsigned long)cut,
                (unsigned long)step, buf_str(&ref->events),
                buf_str(&other.events));
    }
    rec_free(&other);
    return same;
}

/* r gets the one-chunk run of whole messages; every other split and the
 * stream mode must match it. */
static void feed_all(recorder *r, const setup *su, const buf_t *in,
                     int line)
{
    setup streamed = *su;
    int same = 1, mode;
    apr_size_t cut;

    streamed.stream = 1;
    run(r, su, in, in->len, 1);
    for (mode = 0; mode < 2 && same; mode++) {
        const setup *m = mode ? &streamed : su;

        same = (mode == 0 || matches(r, m, in, in->len, 1, line))
               && matches(r, m, in, 0, 1, line);
        for (cut = 1; same && in->len <= SPLIT_ALL_MAX && cut < in->len;
             cut++) {
            same = matches(r, m, in, cut, in->len, line);
        }
    }
    unit_check(same, __FILE__, line, "same result for any split and mode");
}

#define FEED(r, su, in) feed_all(r, su, in, __LINE__)

/* deflate as negotiated for a plain offer: context takeover, 15 bits */
static setup deflated(void)
{
    setup su;

    memset(&su, 0, sizeof(su));
    su.deflate.enabled = 1;
    su.deflate.server_max_window_bits = 15;
    su.deflate.client_max_window_bits = 15;
    su.deflate.level = 6;
    su.deflate.mem_level = 8;
    return su;
}

static void server_close(buf_t *b, int code)
{
    unsigned char h[4];

    h[0] = 0x88;
    h[1] = 2;
    h[2] = (unsigned char)(code >> 8);
    h[3] = (unsigned char)code;
    buf_add(b, h, 4);
}

/* The session failed with code and said so, delivering nothing. */
static void check_failed(const recorder *r, int code, const char *error,
                         const char *events, int line)
{
    buf_t want = { 0 };

    server_close(&want, code);
    unit_check_long(r->state, WS_SESSION_FAILED, __FILE__, line, "FAILED");
    unit_check_long(r->code, code, __FILE__, line, "close code");
    unit_check_mem(r->out.data, r->out.len, want.data, want.len, __FILE__,
                   line, "close frame written");
    unit_check_str(buf_str(&r->events), events, __FILE__, line, "events");
    if (error) {
        unit_check_str(r->error, error, __FILE__, line, "error string");
    }
    buf_free(&want);
}

#define CHECK_FAILED(r, code, error, events) \
    check_failed(r, code, error, events, __LINE__)

/* ------------------------------------------------------------------ */
/* Receiving                                                           */

static void test_rfc7692_examples(void)
{
    setup su = deflated();
    buf_t in = { 0 };
    recorder r;

    /* 7.2.3.1: "Hello" in one compressed frame, and in two */
    client_frame(&in, 0xC1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    client_frame(&in, 0x41, "\xf2\x48\xcd", 3);
    client_frame(&in, 0x80, "\xc9\xc9\x07\x00", 4);
    /* 7.2.3.2: the second "Hello" refers to the first (takeover) */
    client_frame(&in, 0xC1, "\xf2\x00\x11\x00\x00", 5);
    /* 7.2.3.3: a stored block */
    client_frame(&in, 0xC1, "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00",
                 11);
    /* 7.2.3.4: a block with BFINAL, then a byte after the stream's end */
    client_frame(&in, 0xC1, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8);
    /* and after it, the window is still there */
    client_frame(&in, 0xC1, "\xf2\x00\x11\x00\x00", 5);
    /* 7.2.3.6: an empty message */
    client_frame(&in, 0xC1, "\x00", 1);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), "text 1 5 Hello\ntext 1 5 Hello\n"
              "text 1 5 Hello\ntext 1 5 Hello\ntext 1 5 Hello\n"
              "text 1 5 Hello\ntext 1 0 \n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_INT(r.out.len, 0);
    rec_free(&r);
    buf_free(&in);
}

/* A compressible text of about n bytes. */
static void json_like(buf_t *b, int seed, apr_size_t n)
{
    int i = 0;

    while (b->len < n) {
        buf_printf(b, "{\"id\":%d,\"user\":\"user%d\",\"score\":%d,"
                   "\"tags\":[\"a\",\"b%d\"],\"ok\":true},", seed + i,
                   (seed + i) % 17, (seed * 31 + i * 7) % 1000, i % 5);
        i++;
    }
    b->len = n;
    b->data[n] = '\0';
}

/* Every way of cutting a compressed message into two and three frames,
 * with a ping between them, in every feed split. */
static void test_frame_splits(void)
{
    setup su = deflated();
    buf_t text = { 0 }, packed = { 0 }, in = { 0 }, want = { 0 };
    z_stream z;
    recorder r;
    apr_size_t k, j;

    json_like(&text, 1, 300);
    zc_init(&z, 15);
    zc_message(&z, text.data, text.len, &packed);
    deflateEnd(&z);
    CHECK(packed.len < 200);
    format_event(&want, "text", 1, text.data, text.len);
    for (k = 0; k <= packed.len; k++) {
        in.len = 0;
        client_frame(&in, 0x41, packed.data, k);
        client_frame(&in, 0x89, "p", 1);
        client_frame(&in, 0x80, packed.data + k, packed.len - k);
        FEED(&r, &su, &in);
        CHECK(strstr(buf_str(&r.events), buf_str(&want)) != NULL);
        CHECK_INT(r.state, WS_SESSION_OPEN);
        rec_free(&r);
    }
    /* three frames (and empty ones), fed in one go and byte by byte */
    for (k = 0; k <= packed.len; k += 7) {
        for (j = k; j <= packed.len; j += 11) {
            in.len = 0;
            client_frame(&in, 0x41, packed.data, k);
            client_frame(&in, 0x00, packed.data + k, j - k);
            client_frame(&in, 0x80, packed.data + j, packed.len - j);
            run(&r, &su, &in, in.len, 1);
            CHECK_STR(buf_str(&r.events), buf_str(&want));
            CHECK(matches(&r, &su, &in, 0, 1, __LINE__));
            rec_free(&r);
        }
    }
    buf_free(&text);
    buf_free(&packed);
    buf_free(&in);
    buf_free(&want);
}

/* Messages that refer to earlier ones, plain ones between, binary. */
static void test_context_takeover(void)
{
    setup su = deflated();
    buf_t a = { 0 }, b = { 0 }, p = { 0 }, in = { 0 }, want = { 0 };
    z_stream z;
    recorder r;
    int i;

    zc_init(&z, 15);
    for (i = 0; i < 6; i++) {
        a.len = 0;
        p.len = 0;
        json_like(&a, i, 1000 + 37 * i);
        if (i == 3) {
            /* uncompressed, as a sender may do any time */
            client_frame(&in, 0x81, a.data, a.len);
        }
        else {
            zc_message(&z, a.data, a.len, &p);
            client_frame(&in, i == 4 ? 0xC2 : 0xC1, p.data, p.len);
        }
        format_event(&want, i == 4 ? "binary" : "text", i == 4 ? 2 : 1,
                     a.data, a.len);
    }
    /* with context, a repeat is tiny */
    p.len = 0;
    zc_message(&z, a.data, a.len, &p);
    CHECK(p.len < 20);
    client_frame(&in, 0xC1, p.data, p.len);
    format_event(&want, "text", 1, a.data, a.len);
    deflateEnd(&z);
    run(&r, &su, &in, in.len, 1);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK(matches(&r, &su, &in, 0, 1, __LINE__));
    CHECK(matches(&r, &su, &in, 0, 1000, __LINE__));
    rec_free(&r);

    /* client_no_context_takeover negotiated: the server's decompressor
     * starts afresh with each message, so a client that refers back is
     * caught (1007), and one that starts afresh is fine */
    su.deflate.client_no_context_takeover = 1;
    in.len = 0;
    client_frame(&in, 0xC1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    client_frame(&in, 0xC1, "\xf2\x00\x11\x00\x00", 5);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "compressed message does not inflate",
                 "text 1 5 Hello\n");
    rec_free(&r);
    in.len = 0;
    want.len = 0;
    for (i = 0; i < 4; i++) {
        a.len = 0;
        p.len = 0;
        json_like(&a, 7, 500);
        zc_init(&z, 15);
        zc_message(&z, a.data, a.len, &p);
        deflateEnd(&z);
        client_frame(&in, 0xC1, p.data, p.len);
        format_event(&want, "text", 1, a.data, a.len);
    }
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    rec_free(&r);

    /* a client that ends its deflate stream (BFINAL, without the 0x00
     * after it that RFC 7692 7.2.3.4 shows) and carries on with a new one
     * that knows the window */
    su.deflate.client_no_context_takeover = 0;
    in.len = 0;
    want.len = 0;
    a.len = 0;
    b.len = 0;
    p.len = 0;
    json_like(&a, 3, 700);
    json_like(&b, 3, 900);
    zc_init(&z, 15);
    zc_compress(&z, a.data, a.len, Z_FINISH, 0, &p);
    client_frame(&in, 0xC1, p.data, p.len);
    deflateReset(&z);
    deflateSetDictionary(&z, (Bytef *)a.data, (uInt)a.len);
    p.len = 0;
    zc_message(&z, b.data, b.len, &p);
    CHECK(p.len < 100);
    client_frame(&in, 0xC1, p.data, p.len);
    deflateEnd(&z);
    format_event(&want, "text", 1, a.data, a.len);
    format_event(&want, "text", 1, b.data, b.len);
    run(&r, &su, &in, in.len, 1);

    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK(matches(&r, &su, &in, 0, 1, __LINE__));
    rec_free(&r);

    buf_free(&a);
    buf_free(&b);
    buf_free(&p);
    buf_free(&in);
    buf_free(&want);
}

/* The client's window sizes the server inflates with. */
static void test_client_windows(void)
{
    setup su = deflated();
    buf_t a = { 0 }, p = { 0 }, in = { 0 }, want = { 0 };
    z_stream z;
    recorder r;
    int bits;

    for (bits = 8; bits <= 15; bits++) {
        su.deflate.client_max_window_bits = bits;
        in.len = 0;
        want.len = 0;
        a.len = 0;
        p.len = 0;
        json_like(&a, bits, 3000);
        zc_init(&z, bits);
        zc_message(&z, a.data, a.len, &p);
        client_frame(&in, 0xC1, p.data, p.len);
        p.len = 0;
        zc_message(&z, a.data, a.len, &p);
        client_frame(&in, 0xC1, p.data, p.len);
        deflateEnd(&z);
        format_event(&want, "text", 1, a.data, a.len);
        format_event(&want, "text", 1, a.data, a.len);
        run(&r, &su, &in, in.len, 1);
        CHECK_STR(buf_str(&r.events), buf_str(&want));
        CHECK(matches(&r, &su, &in, 0, 1, __LINE__));
        rec_free(&r);
    }
    /* a window bigger than negotiated is refused by the decompressor */
    su.deflate.client_max_window_bits = 9;
    in.len = 0;
    a.len = 0;
    p.len = 0;
    json_like(&a, 1, 3000);
    zc_init(&z, 15);
    zc_message(&z, a.data, a.len, &p);
    zc_message(&z, a.data, a.len, &p);
    deflateEnd(&z);
    p.len = 0;
    zc_init(&z, 15);
    zc_message(&z, a.data, a.len, &p);
    p.len = 0;
    zc_message(&z, a.data, a.len, &p);     /* refers 3000 bytes back */
    deflateEnd(&z);
    client_frame(&in, 0xC1, p.data, p.len);
    run(&r, &su, &in, in.len, 1);
    CHECK_INT(r.code, 1007);
    rec_free(&r);
    buf_free(&a);
    buf_free(&p);
    buf_free(&in);
    buf_free(&want);
}

static void test_rsv_misuse(void)
{
    setup su = deflated(), plain;
    buf_t in = { 0 };
    recorder r;

    memset(&plain, 0, sizeof(plain));
    /* RSV1 without the extension */
    client_frame(&in, 0xC1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    FEED(&r, &plain, &in);
    CHECK_FAILED(&r, 1002, "reserved bit set", "");
    rec_free(&r);
    /* ... and on hixie sessions the extension does not exist */

    /* with it: RSV1 on control frames and continuations, RSV2, RSV3:
     * one or two frames each */
    {
        static const struct {
            int line;
            int first[2];
            const char *payload[2];
            apr_size_t len[2];
            const char *error;
        } cases[] = {
            { __LINE__, { 0xC9 }, { "x" }, { 1 },
              "RSV1 set on a control frame" },
            { __LINE__, { 0xCA }, { "x" }, { 1 },
              "RSV1 set on a control frame" },
            { __LINE__, { 0xC8 }, { "\x03\xe8" }, { 2 },
              "RSV1 set on a control frame" },
            { __LINE__, { 0x41, 0xC0 }, { "\xf2\x48\xcd", "\xc9\xc9\x07\x00" },
              { 3, 4 }, "RSV1 set on a continuation frame" },
            { __LINE__, { 0x01, 0xC0 }, { "Hel", "lo" }, { 3, 2 },
              "RSV1 set on a continuation frame" },
            { __LINE__, { 0xA1 }, { "Hello" }, { 5 }, "reserved bit set" },
            { __LINE__, { 0x91 }, { "Hello" }, { 5 }, "reserved bit set" },
            { __LINE__, { 0xE1 }, { "\xf2\x48\xcd\xc9\xc9\x07\x00" }, { 7 },
              "reserved bit set" },
        };
        size_t i, f;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            in.len = 0;
            for (f = 0; f < 2 && cases[i].payload[f]; f++) {
                client_frame(&in, cases[i].first[f], cases[i].payload[f],
                             cases[i].len[f]);
            }
            feed_all(&r, &su, &in, cases[i].line);
            check_failed(&r, 1002, cases[i].error, "", cases[i].line);
            rec_free(&r);
        }
    }
    /* an uncompressed message is still fine */
    in.len = 0;
    client_frame(&in, 0x81, "Hello", 5);
    client_frame(&in, 0x02, "ab", 2);
    client_frame(&in, 0x80, "c", 1);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), "text 1 5 Hello\nbinary 2 3 abc\n");
    rec_free(&r);
    /* hixie: the negotiated parameters are ignored */
    su.proto = WS_PROTO_HIXIE76;
    in.len = 0;
    buf_add(&in, "\x00hi\xFF", 4);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), "text 1 2 hi\n");
    rec_free(&r);
    buf_free(&in);
}

static void test_bad_data(void)
{
    setup su = deflated();
    buf_t in = { 0 }, a = { 0 }, p = { 0 };
    z_stream z;
    recorder r;

    /* not deflate at all (BTYPE 11 is reserved) */
    client_frame(&in, 0xC1, "\xff\xff\xff", 3);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "compressed message does not inflate", "");
    rec_free(&r);
    /* ... also in a first frame that is not the last */
    in.len = 0;
    client_frame(&in, 0x42, "\x07\xff\xff\xff", 4);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "compressed message does not inflate", "");
    rec_free(&r);
    /* truncated: the data stops inside a block */
    json_like(&a, 2, 2000);
    zc_init(&z, 15);
    zc_message(&z, a.data, a.len, &p);
    deflateEnd(&z);
    in.len = 0;
    client_frame(&in, 0xC1, p.data, p.len - 5);
    FEED(&r, &su, &in);
    CHECK_INT(r.code, 1007);
    CHECK_STR(buf_str(&r.events), "");
    rec_free(&r);
    /* the tail left in: the one put back is then no block (RFC 7692
     * 7.2.1: the sender must remove it) */
    in.len = 0;
    client_frame(&in, 0xC1, "\xf2\x48\xcd\xc9\xc9\x07\x00\x00\x00\xff\xff",
                 11);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "compressed message does not end on a deflate "
                 "block boundary", "");
    rec_free(&r);
    /* a message with no compressed bytes at all is empty */
    in.len = 0;
    client_frame(&in, 0xC1, "", 0);
    client_frame(&in, 0x42, "", 0);
    client_frame(&in, 0x80, "", 0);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), "text 1 0 \nbinary 2 0 \n");
    rec_free(&r);
    /* invalid UTF-8 in compressed text; fine as binary */
    in.len = 0;
    p.len = 0;
    zc_init(&z, 15);
    zc_message(&z, "ok \xed\xa0\x80 no", 9, &p);
    deflateEnd(&z);
    client_frame(&in, 0xC1, p.data, p.len);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "invalid UTF-8 in text message", "");
    rec_free(&r);
    in.len = 0;
    client_frame(&in, 0xC2, p.data, p.len);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), "binary 2 9 ok \\xED\\xA0\\x80 no\n");
    rec_free(&r);
    /* text that ends inside a character */
    in.len = 0;
    p.len = 0;
    zc_init(&z, 15);
    zc_message(&z, "caf\xc3", 4, &p);
    deflateEnd(&z);
    client_frame(&in, 0xC1, p.data, p.len);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1007, "invalid UTF-8 in text message", "");
    rec_free(&r);
    buf_free(&in);
    buf_free(&a);
    buf_free(&p);
}

/* max_message counts inflated bytes. */
static void test_limits(void)
{
    setup su = deflated();
    buf_t in = { 0 }, a = { 0 }, p = { 0 }, want = { 0 };
    z_stream z;
    recorder r;

    su.max_message = 1000;
    json_like(&a, 5, 1000);
    zc_init(&z, 15);
    zc_message(&z, a.data, a.len, &p);
    deflateEnd(&z);
    client_frame(&in, 0xC1, p.data, p.len);
    format_event(&want, "text", 1, a.data, a.len);
    FEED(&r, &su, &in);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);
    /* one more byte */
    buf_add(&a, "x", 1);
    p.len = 0;
    zc_init(&z, 15);
    zc_message(&z, a.data, a.len, &p);
    deflateEnd(&z);
    in.len = 0;
    client_frame(&in, 0xC1, p.data, p.len);
    FEED(&r, &su, &in);
    CHECK_FAILED(&r, 1009, "message exceeds WebSocketMaxMessageSize once "
                 "decompressed", "");
    rec_free(&r);
    /* over the limit across frames */
    in.len = 0;
    client_frame(&in, 0x41, p.data, p.len / 2);
    client_frame(&in, 0x80, p.data + p.len / 2, p.len - p.len / 2);
    FEED(&r, &su, &in);
    CHECK_INT(r.code, 1009);
    rec_free(&r);
    /* the compressed size does not count: a 1000-byte text whose
     * compressed form, in 1-byte frames, takes far more on the wire */
    {
        apr_size_t i;

        a.len = 1000;
        p.len = 0;
        in.len = 0;
        zc_init(&z, 15);
        zc_compress(&z, a.data, a.len, Z_NO_FLUSH, 0, &p);
        zc_compress(&z, "", 0, Z_SYNC_FLUSH, 1, &p);
        deflateEnd(&z);
        for (i = 0; i < p.len; i++) {
            client_frame(&in, i == 0 ? 0x41 : i + 1 == p.len ? 0x80 : 0x00,
                         p.data + i, 1);
        }
        client_frame(&in, 0x81, "end", 3);
        run(&r, &su, &in, in.len, 1);
        CHECK(strstr(buf_str(&r.events), "text 1 3 end\n") != NULL);
        CHECK_INT(r.state, WS_SESSION_OPEN);
        rec_free(&r);
    }
    buf_free(&in);
    buf_free(&a);
    buf_free(&p);
    buf_free(&want);
}

/* Under AddressSanitizer freed memory sits in quarantine: RSS says
 * nothing there. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

static long max_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* A message of 512 MiB of zeros, compressed (about 500 KiB). */
static void make_bomb(buf_t *p)
{
    static char zeros[1024 * 1024];
    z_stream z;
    int i;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY)
        != Z_OK) {
        abort();
    }
    for (i = 0; i < 512; i++) {
        zc_compress(&z, zeros, sizeof(zeros), Z_NO_FLUSH, 0, p);
    }
    zc_compress(&z, "", 0, Z_SYNC_FLUSH, 1, p);
    deflateEnd(&z);
}

/* The bomb against a 1 MiB and the default 16 MiB limit, both modes: it
 * stops at once, the memory does not follow. */
static void test_bomb(void)
{
    static const apr_uint64_t limits[2] = { 1024 * 1024,
                                            16 * 1024 * 1024 };
    setup su = deflated();
    buf_t p = { 0 }, in = { 0 };
    recorder r;
    long rss0;
    int i, stream;

    make_bomb(&p);
    CHECK(p.len < 1024 * 1024);
    client_frame(&in, 0xC2, p.data, p.len);
    rss0 = max_rss_kb();
    for (i = 0; i < 2; i++) {
        for (stream = 0; stream < 2; stream++) {
            double t0 = now();

            su.max_message = limits[i];
            su.stream = stream;
            run(&r, &su, &in, in.len, 1);
            CHECK_INT(r.code, 1009);
            CHECK_STR(r.error, "message exceeds WebSocketMaxMessageSize "
                      "once decompressed");
            /* whole messages: nothing delivered; stream mode: pieces up
             * to the limit at most */
            CHECK(r.delivered <= limits[i]);
            CHECK(stream || r.delivered == 0);
            CHECK(now() - t0 < 10);
            rec_free(&r);
            /* fed in 4 KiB reads, as a connection would */
            run(&r, &su, &in, 0, 4096);
            CHECK_INT(r.code, 1009);
            rec_free(&r);
        }
    }
    /* the largest limit plus the message buffer's doubling, not 512 MiB */
    CHECK(!RSS_MEANINGFUL || max_rss_kb() - rss0 < 48 * 1024);
    fprintf(stderr, "test_bomb: max RSS grew by %ld KiB\n",
            max_rss_kb() - rss0);
    /* unlimited, in stream mode: all 512 MiB come, 64 KiB at a time */
    su.max_message = 0;
    su.stream = 1;
    su.count_only = 1;
    run(&r, &su, &in, in.len, 1);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK(r.delivered == (apr_uint64_t)512 * 1024 * 1024);
    CHECK(r.max_piece <= 64 * 1024);
    CHECK(!RSS_MEANINGFUL || max_rss_kb() - rss0 < 48 * 1024);
    rec_free(&r);
    buf_free(&p);
    buf_free(&in);
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

/* A server frame parsed from out at *pos. */
typedef struct {
    int fin, rsv, opcode;
    const char *payload;
    apr_size_t len;
} sframe;

static int next_frame(const buf_t *out, apr_size_t *pos, sframe *f)
{
    const unsigned char *p = (const unsigned char *)out->data + *pos;
    apr_size_t left = out->len - *pos, hl = 2;
    apr_uint64_t len;
    int i;

    if (left < 2) {
        return 0;
    }
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 15;
    len = p[1] & 127;
    if (len == 126) {
        len = ((apr_uint64_t)p[2] << 8) | p[3];
        hl = 4;
    }
    else if (len == 127) {
        len = 0;
        for (i = 2; i < 10; i++) {
            len = (len << 8) | p[i];
        }
        hl = 10;
    }
    if (left < hl + len) {
        return 0;
    }
    f->payload = (const char *)p + hl;
    f->len = (apr_size_t)len;
    *pos += hl + (apr_size_t)len;
    return 1;
}

/* Read the server's data messages from out with a client decompressor
 * (z NULL: none negotiated); log them like the recorder does.  Frames
 * are checked: RSV1 only on a compressed message's first frame. */
static void client_reads(const buf_t *out, z_stream *z, int fresh_bits,
                         buf_t *log)
{
    apr_size_t pos = 0;
    sframe f;
    buf_t msg = { 0 }, packed = { 0 };
    int opcode = 0, compressed = 0;

    while (next_frame(out, &pos, &f)) {
        if (f.opcode & 8) {
            if (f.rsv) {
                buf_printf(log, "bad: RSV on a control frame\n");
            }
            continue;
        }
        if (f.opcode) {
            opcode = f.opcode;
            compressed = f.rsv == 4;
            if (f.rsv & 3 || (compressed && !z)) {
                buf_printf(log, "bad: RSV %d\n", f.rsv);
            }
        }
        else if (f.rsv) {
            buf_printf(log, "bad: RSV on a continuation\n");
        }
        buf_add(compressed ? &packed : &msg, f.payload, f.len);
        if (!f.fin) {
            continue;
        }
        if (compressed) {
            z_stream fresh;

            if (fresh_bits) {
                /* no context takeover: any new decompressor will do */
                zd_init(&fresh, fresh_bits);
            }
            if (!zd_message(fresh_bits ? &fresh : z, packed.data,
                            packed.len, &msg)) {
                buf_printf(log, "bad: does not inflate\n");
            }
            if (fresh_bits) {
                inflateEnd(&fresh);
            }
            buf_printf(log, "z ");
        }
        format_event(log, opcode == 1 ? "text" : "binary", opcode,
                     buf_str(&msg), msg.len);
        msg.len = 0;
        packed.len = 0;
    }
    if (pos != out->len) {
        buf_printf(log, "bad: %lu bytes left\n",
                   (unsigned long)(out->len - pos));
    }
    buf_free(&msg);
    buf_free(&packed);
}

static void test_send_examples(void)
{
    setup su = deflated();
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    /* RFC 7692 7.2.3.1 and 7.2.3.2: the same bytes as zlib's */
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00"
              "\xc1\x05\xf2\x00\x11\x00\x00", 16);
    /* empty: uncompressed; control frames never compressed */
    r.out.len = 0;
    CHECK_INT(ws_session_send(r.s, WS_OP_BINARY, "", 0), APR_SUCCESS);
    CHECK_INT(ws_session_ping(r.s, "Hello", 5), APR_SUCCESS);
    CHECK_INT(ws_session_close(r.s, 1000, "Hello"), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\x82\x00\x89\x05Hello\x88\x07\x03\xe8Hello", 18);
    apr_pool_destroy(p);
    rec_free(&r);

    /* server_no_context_takeover: every message alone */
    su.deflate.server_no_context_takeover = 1;
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00"
              "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 18);
    apr_pool_destroy(p);
    rec_free(&r);

    /* fragments: RSV1 on the first only */
    su.deflate.server_no_context_takeover = 0;
    su.fragment_size = 3;
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\x41\x03\xf2\x48\xcd" "\x00\x03\xc9\xc9\x07" "\x80\x01\x00",
              13);
    apr_pool_destroy(p);
    rec_free(&r);

    /* level 0: everything goes uncompressed */
    su.fragment_size = 0;
    su.deflate.level = 0;
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len, "\x81\x05Hello", 7);
    apr_pool_destroy(p);
    rec_free(&r);

    /* frame_begin: uncompressed */
    su.deflate.level = 6;
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 5), APR_SUCCESS);
    rec_write(&r, "Hello", 5);
    CHECK_INT(ws_session_frame_end(r.s), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "Hello", 5), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\x81\x05Hello\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 16);
    apr_pool_destroy(p);
    rec_free(&r);
}

/* Round trips through a client decompressor: every window size, with
 * and without context takeover, memory levels, levels, fragments. */
static void test_send_round_trips(void)
{
    static const apr_size_t sizes[] = { 1, 10, 200, 1000, 5000, 70000,
                                        1 << 20 };
    static const apr_size_t frags[] = { 0, 1, 100 };
    setup su = deflated();
    buf_t want = { 0 }, got = { 0 }, a = { 0 };
    int bits, nct, fi;
    apr_size_t i;

    for (bits = 8; bits <= 15; bits++) {
        for (nct = 0; nct < 2; nct++) {
            for (fi = 0; fi < 3; fi++) {
                apr_pool_t *p;
                recorder r;
                z_stream z;

                if (frags[fi] == 1 && bits != 8 && bits != 15) {
                    continue;
                }
                su.deflate.server_max_window_bits = bits;
                su.deflate.server_no_context_takeover = nct;
                su.deflate.mem_level = 1 + bits % 9;
                su.deflate.level = 1 + (bits + nct) % 9;
                su.fragment_size = frags[fi];
                want.len = got.len = 0;
                apr_pool_create(&p, root);
                rec_open(&r, p, &su);
                for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                    if (frags[fi] == 1 && sizes[i] > 5000) {
                        continue;
                    }
                    a.len = 0;
                    json_like(&a, (int)i, sizes[i]);
                    CHECK_INT(ws_session_send(r.s, i & 1 ? WS_OP_BINARY
                                                         : WS_OP_TEXT,
                                              a.data, a.len), APR_SUCCESS);
                    buf_printf(&want, "z ");
                    format_event(&want, i & 1 ? "binary" : "text",
                                 i & 1 ? 2 : 1, a.data, a.len);
                }
                /* the client inflates with exactly the negotiated
                 * window: an 8-bit one for 8 */
                zd_init(&z, bits);
                client_reads(&r.out, &z, nct ? bits : 0, &got);
                inflateEnd(&z);
                unit_check_str(buf_str(&got), buf_str(&want), __FILE__,
                               __LINE__, "round trip");
                if (strcmp(buf_str(&got), buf_str(&want))) {
                    fprintf(stderr, "bits %d nct %d frag %lu\n", bits,
                            nct, (unsigned long)frags[fi]);
                }
                apr_pool_destroy(p);
                rec_free(&r);
            }
        }
    }
    buf_free(&want);
    buf_free(&got);
    buf_free(&a);
}

/* server_max_window_bits=8: the compressor is zlib's 9-bit one, whose
 * matches never reach more than 250 bytes back, so that a client with a
 * 256-byte window inflates it.  Data with repeats 251 to 511 bytes apart
 * would break it otherwise. */
static void test_window_8(void)
{
    setup su = deflated();
    buf_t a = { 0 }, got = { 0 }, want = { 0 };
    apr_pool_t *p;
    recorder r;
    z_stream z;
    unsigned int x = 12345;
    int d, k;

    for (d = 251; d < 512; d += 13) {
        apr_size_t start = a.len;

        for (k = 0; k < d; k++) {
            char c;

            x = x * 1103515245 + 12345;
            c = (char)('a' + (x >> 16) % 26);
            buf_add(&a, &c, 1);
        }
        {
            char copy[512];

            memcpy(copy, a.data + start, d);
            buf_add(&a, copy, d);           /* a repeat d bytes back */
        }
    }
    su.deflate.server_max_window_bits = 8;
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    for (k = 0; k < 3; k++) {
        CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, a.data, a.len),
                  APR_SUCCESS);
        buf_printf(&want, "z ");
        format_event(&want, "text", 1, a.data, a.len);
    }
    zd_init(&z, 8);
    client_reads(&r.out, &z, 0, &got);
    inflateEnd(&z);
    CHECK_STR(buf_str(&got), buf_str(&want));
    /* the same data compressed with a real 9-bit window does not fit */
    {
        buf_t packed = { 0 }, out = { 0 };
        z_stream c;

        zc_init(&c, 15);
        zc_message(&c, a.data, a.len, &packed);
        deflateEnd(&c);
        zd_init(&z, 8);
        CHECK(!zd_message(&z, packed.data, packed.len, &out));
        inflateEnd(&z);
        buf_free(&packed);
        buf_free(&out);
    }
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&a);
    buf_free(&got);
    buf_free(&want);
}

/* A session that echoes what it receives, compressed both ways, in both
 * modes: a plugin sees plain messages. */
static void echo_message(void *baton, int opcode, const char *data,
                         apr_size_t len)
{
    recorder *r = baton;

    ws_session_send(r->s, opcode, data, len);
}

static void test_echo(void)
{
    static const ws_session_callbacks echo_cbs = {
        rec_write, echo_message, NULL, NULL, NULL, NULL
    };
    setup su = deflated();
    ws_session_config cfg;
    buf_t in = { 0 }, p = { 0 }, a = { 0 }, want = { 0 }, got = { 0 };
    apr_pool_t *pool;
    recorder r;
    z_stream zc, zd;
    int i;

    zc_init(&zc, 15);
    for (i = 0; i < 20; i++) {
        a.len = 0;
        p.len = 0;
        json_like(&a, i % 3, 100 + 300 * i);
        zc_message(&zc, a.data, a.len, &p);
        client_frame(&in, 0xC1, p.data, p.len);
        buf_printf(&want, "z ");
        format_event(&want, "text", 1, a.data, a.len);
    }
    deflateEnd(&zc);
    memset(&cfg, 0, sizeof(cfg));
    cfg.deflate = su.deflate;
    memset(&r, 0, sizeof(r));
    r.su = &su;
    apr_pool_create(&pool, root);
    r.s = ws_session_create(pool, WS_PROTO_RFC6455, &cfg, &echo_cbs, &r);
    CHECK_INT(ws_session_feed(r.s, in.data, in.len), WS_SESSION_OPEN);
    zd_init(&zd, 15);
    client_reads(&r.out, &zd, 0, &got);
    inflateEnd(&zd);
    CHECK_STR(buf_str(&got), buf_str(&want));
    apr_pool_destroy(pool);
    rec_free(&r);
    buf_free(&in);
    buf_free(&p);
    buf_free(&a);
    buf_free(&want);
    buf_free(&got);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&root, NULL);
    test_negotiate_accepts();
    test_negotiate_server_settings();
    test_negotiate_declines();
    test_negotiate_order();
    test_rfc7692_examples();
    test_frame_splits();
    test_context_takeover();
    test_client_windows();
    test_rsv_misuse();
    test_bad_data();
    test_limits();
    test_send_examples();
    test_send_round_trips();
    test_window_8();
    test_echo();
    test_bomb();
    apr_pool_destroy(root);
    apr_terminate();
    return UNIT_DONE();
}
