/* Licensed under the Apache License, Version 2.0.
 *
 * test_frame.c: unit tests for the ws_session state machine (ws_frame.c).
 *
 * Most tests feed bytes through feed_all(), which runs the input in one
 * chunk, one byte at a time and (for short inputs) split in two at every
 * position, both with whole messages and in stream mode, and checks that
 * every run gives the same callbacks, output and final state.  In stream
 * mode the recorder checks each piece and logs the message it adds up to
 * as on_message would, so the two modes log alike.
 */

#include <stdarg.h>
#include <stdlib.h>

#include <apr_general.h>

#include "ws_engine.h"
#include "t/unit/unit.h"
#include "t/unit/client.h"

/* inputs up to this size are also tried split in two at every byte */
#define SPLIT_ALL_MAX 512
/* payloads longer than this are logged as a length and a hash */
#define LOG_PAYLOAD_MAX 64

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* Building client input and expected server output                    */

static void client_close(buf_t *b, int code, const char *reason)
{
    char payload[125];
    apr_size_t len = strlen(reason);

    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    memcpy(payload + 2, reason, len);
    client_frame(b, 0x88, payload, 2 + len);
}

/* A server frame: unmasked. */
static void server_frame(buf_t *b, int first, const void *payload,
                         apr_size_t len)
{
    add_header(b, first, 0, len);
    buf_add(b, payload, len);
}

static void server_close(buf_t *b, int code)
{
    unsigned char payload[2];

    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    server_frame(b, 0x88, payload, 2);
}

/* ------------------------------------------------------------------ */
/* Recording a session                                                 */

typedef struct {
    ws_proto_e proto;
    apr_uint64_t max_message;
    apr_size_t fragment_size;
    int close_on_message;   /* ws_session_close(1000) from on_message */
    int refuse_writes;      /* write callback fails */
    int stream;             /* messages in pieces through on_data */
} setup;

typedef struct {
    const setup *setup;
    ws_session *s;
    buf_t events;           /* callbacks, one line each */
    buf_t out;              /* bytes written to the peer */
    int writes;
    const char *last_write;
    ws_session_state_e state;
    int code;
    const char *error;
    /* stream mode */
    buf_t pieces;           /* every on_data call, one line each */
    buf_t msg;              /* the message's pieces so far */
    int msg_opcode;         /* its type (0: no message started) */
    ws_utf8_state utf8;     /* RFC 6455 text: its pieces so far */
    apr_size_t max_piece;   /* the longest piece */
} recorder;

/* One callback as a line of the event log. */
static void format_event(buf_t *b, const char *what, int n, const char *data,
                         apr_size_t len)
{
    apr_size_t i;

    buf_printf(b, "%s %d %lu ", what, n, (unsigned long)len);
    if (len > LOG_PAYLOAD_MAX) {
        unsigned long hash = 2166136261UL;

        for (i = 0; i < len; i++) {
            hash = ((hash ^ (unsigned char)data[i]) * 16777619UL)
                   & 0xFFFFFFFFUL;
        }
        buf_printf(b, "#%08lx", hash);
    }
    for (i = 0; i < len && len <= LOG_PAYLOAD_MAX; i++) {
        unsigned char c = (unsigned char)data[i];

        if (c >= 0x20 && c < 0x7F && c != '\\') {
            buf_add(b, &c, 1);
        }
        else {
            buf_printf(b, "\\x%02X", c);
        }
    }
    buf_add(b, "\n", 1);
}

static void log_event(recorder *r, const char *what, int n,
                      const char *data, apr_size_t len)
{
    format_event(&r->events, what, n, data, len);
}

static int rec_write(void *baton, const char *data, apr_size_t len)
{
    recorder *r = baton;

    if (r->setup->refuse_writes) {
        return -1;
    }
    r->writes++;
    r->last_write = data;
    buf_add(&r->out, data, len);
    return 0;
}

/* A whole message, from on_message or added up from on_data. */
static void message_event(recorder *r, int opcode, const char *data,
                          apr_size_t len)
{
    log_event(r, opcode == WS_OP_TEXT ? "text" : "binary", opcode, data,
              len);
    if (r->setup->close_on_message) {
        ws_session_close(r->s, 1000, "");
    }
}

static void rec_message(void *baton, int opcode, const char *data,
                        apr_size_t len)
{
    recorder *r = baton;

    if (r->setup->stream) {
        buf_printf(&r->events, "bad: on_message in stream mode\n");
    }
    message_event(r, opcode, data, len);
}

/* What is wrong with a piece, given those before it; NULL: nothing. */
static const char *piece_problem(recorder *r, int opcode, const char *data,
                                 apr_size_t len, int final)
{
    int utf8;

    if (!r->setup->stream) {
        return "on_data without stream mode";
    }
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) {
        return "not a data opcode";
    }
    if (r->msg_opcode && opcode != r->msg_opcode) {
        return "opcode changed inside a message";
    }
    if (!r->msg_opcode) {
        r->msg_opcode = opcode;
        ws_utf8_init(&r->utf8);
    }
    if (len == 0 && !final) {
        return "empty piece";
    }
    if (opcode != WS_OP_TEXT || r->setup->proto != WS_PROTO_RFC6455) {
        return NULL;
    }
    utf8 = ws_utf8_feed(&r->utf8, (const unsigned char *)data, len);
    if (utf8 == WS_UTF8_INVALID || (final && utf8 != WS_UTF8_OK)) {
        return "invalid UTF-8 delivered";
    }
    return NULL;
}

/* A piece: checked and logged apart; the message once it is complete. */
static void rec_data(void *baton, int opcode, const char *data,
                     apr_size_t len, int final)
{
    recorder *r = baton;
    const char *problem = piece_problem(r, opcode, data, len, final);

    if (problem) {
        buf_printf(&r->events, "bad: %s\n", problem);
    }
    format_event(&r->pieces, final ? "final" : "piece", opcode, data, len);
    buf_add(&r->msg, data, len);
    if (len > r->max_piece) {
        r->max_piece = len;
    }
    if (final) {
        r->msg_opcode = 0;
        message_event(r, opcode, buf_str(&r->msg), r->msg.len);
        r->msg.len = 0;
    }
}

static void rec_ping(void *baton, const char *data, apr_size_t len)
{
    log_event(baton, "ping", 0, data, len);
}

static void rec_pong(void *baton, const char *data, apr_size_t len)
{
    log_event(baton, "pong", 0, data, len);
}

static void rec_close(void *baton, int code, const char *reason,
                      apr_size_t len)
{
    log_event(baton, "close", code, reason, len);
}

static const ws_session_callbacks callbacks = {
    rec_write, rec_message, rec_ping, rec_pong, rec_close, rec_data
};

static void rec_open(recorder *r, apr_pool_t *p, const setup *su)
{
    ws_session_config cfg;

    memset(r, 0, sizeof(*r));
    memset(&cfg, 0, sizeof(cfg));
    r->setup = su;
    cfg.max_message = su->max_message;
    cfg.fragment_size = su->fragment_size;
    cfg.stream = su->stream;
    r->s = ws_session_create(p, su->proto, &cfg, &callbacks, r);
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
    buf_free(&r->pieces);
    buf_free(&r->msg);
}

/* Feed in[0..cut) in one call, then the rest step bytes at a time. */
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
        && (a->out.len == 0 || memcmp(a->out.data, b->out.data,
                                      a->out.len) == 0)
        && a->state == b->state && a->code == b->code
        && (a->error == b->error
            || (a->error && b->error && strcmp(a->error, b->error) == 0));
}

/* Does the run of in under su (cut, step: as for run) match ref? */
static int matches(const recorder *ref, const setup *su, const buf_t *in,
                   apr_size_t cut, apr_size_t step, int line)
{
    recorder other;
    int same;

    run(&other, su, in, cut, step);
    same = same_run(ref, &other);
    rec_free(&other);
    if (!same) {
        fprintf(stderr, "%s:%d: %s, cut at %lu, then %lu at a time: "
                "differs\n", __FILE__, line,
                su->stream ? "stream mode" : "whole messages",
                (unsigned long)cut, (unsigned long)step);
    }
    return same;
}

/* Byte by byte and split in two everywhere: all like ref? */
static int matches_splits(const recorder *ref, const setup *su,
                          const buf_t *in, int line)
{
    apr_size_t cut;
    int same = matches(ref, su, in, 0, 1, line);

    for (cut = 1; same && in->len <= SPLIT_ALL_MAX && cut < in->len; cut++) {
        same = matches(ref, su, in, cut, in->len, line);
    }
    return same;
}

/* Run in whole, byte by byte and split in two everywhere, and unless su
 * streams already, all of that in stream mode too; r gets the whole run
 * under su, and every other run must match it. */
static void feed_all(recorder *r, const setup *su, const buf_t *in,
                     int line)
{
    setup streamed = *su;
    int same;

    streamed.stream = 1;
    run(r, su, in, in->len, 1);
    same = matches_splits(r, su, in, line)
           && (su->stream
               || (matches(r, &streamed, in, in->len, 1, line)
                   && matches_splits(r, &streamed, in, line)));
    unit_check(same, __FILE__, line, "same result for any split and mode");
}

#define FEED(r, su, in) feed_all(r, su, in, __LINE__)

static const setup rfc = { WS_PROTO_RFC6455, 0, 0, 0, 0, 0 };
static const setup rfc_stream = { WS_PROTO_RFC6455, 0, 0, 0, 0, 1 };
static const setup hixie76 = { WS_PROTO_HIXIE76, 0, 0, 0, 0, 0 };
static const setup hixie76_stream = { WS_PROTO_HIXIE76, 0, 0, 0, 0, 1 };
static const setup hixie75 = { WS_PROTO_HIXIE75, 0, 0, 0, 0, 0 };

/* The session failed with code, said so to the peer, and told the
 * application nothing. */
static void check_failed(const recorder *r, int code, const char *error,
                         int line)
{
    buf_t want = { 0 };

    if (r->setup->proto == WS_PROTO_RFC6455) {
        server_close(&want, code);
    }
    else {
        buf_add(&want, "\xFF\x00", 2);
    }
    unit_check_long(r->state, WS_SESSION_FAILED, __FILE__, line, "FAILED");
    unit_check_long(r->code, code, __FILE__, line, "close code");
    unit_check_mem(r->out.data, r->out.len, want.data, want.len, __FILE__,
                   line, "close frame written");
    unit_check_str(buf_str(&r->events), "", __FILE__, line, "no events");
    unit_check(r->error != NULL, __FILE__, line, "error string");
    if (error) {
        unit_check_str(r->error, error, __FILE__, line, "error string");
    }
    buf_free(&want);
}

#define CHECK_FAILED(r, code, error) check_failed(r, code, error, __LINE__)

/* ------------------------------------------------------------------ */
/* RFC 6455 receiving                                                  */

static void test_rfc_examples(void)
{
    /* RFC 6455 section 5.7 */
    static const char masked_hello[] =
        "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    static const char unmasked_hello[] = "\x81\x05Hello";
    buf_t in = { 0 };
    recorder r;

    buf_add(&in, masked_hello, sizeof(masked_hello) - 1);
    FEED(&r, &rfc, &in);
    CHECK_STR(buf_str(&r.events), "text 1 5 Hello\n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_INT(r.code, 0);
    CHECK(r.error == NULL);
    CHECK_INT(r.out.len, 0);
    rec_free(&r);

    in.len = 0;
    buf_add(&in, unmasked_hello, sizeof(unmasked_hello) - 1);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1002, "unmasked client frame");
    rec_free(&r);
    buf_free(&in);
}

static void test_messages(void)
{
    static char big[65536 + 10];
    buf_t in = { 0 }, want = { 0 };
    recorder r;
    apr_size_t i;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (char)(i * 7);
    }
    client_frame(&in, 0x81, "", 0);
    client_frame(&in, 0x82, "", 0);
    client_frame(&in, 0x82, "\x00\xFF", 2);
    client_frame(&in, 0x81, "caf\xC3\xA9", 5);
    FEED(&r, &rfc, &in);
    CHECK_STR(buf_str(&r.events),
              "text 1 0 \nbinary 2 0 \nbinary 2 2 \\x00\\xFF\n"
              "text 1 5 caf\\xC3\\xA9\n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);

    /* 16-bit and 64-bit lengths, and the buffer reused after shrinking */
    in.len = 0;
    client_frame(&in, 0x82, big, 126);
    client_frame(&in, 0x82, big, 65535);
    client_frame(&in, 0x82, big, 65536);
    client_frame(&in, 0x82, big, sizeof(big));
    client_frame(&in, 0x82, big, 3);
    FEED(&r, &rfc, &in);
    format_event(&want, "binary", 2, big, 126);
    format_event(&want, "binary", 2, big, 65535);
    format_event(&want, "binary", 2, big, 65536);
    format_event(&want, "binary", 2, big, sizeof(big));
    format_event(&want, "binary", 2, big, 3);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK(strstr(buf_str(&want), "binary 2 3 \\x00\\x07\\x0E\n") != NULL);
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

static void test_fragmentation(void)
{
    buf_t in = { 0 }, want = { 0 };
    recorder r;

    client_frame(&in, 0x01, "Hel", 3);
    client_frame(&in, 0x89, "ping!", 5);
    client_frame(&in, 0x00, "", 0);
    client_frame(&in, 0x00, "l\xE2\x82", 3);      /* euro sign split ... */
    client_frame(&in, 0x8A, "pong", 4);
    client_frame(&in, 0x80, "\xACo", 2);          /* ... across frames */
    client_frame(&in, 0x02, "ab", 2);
    client_frame(&in, 0x89, "", 0);
    client_frame(&in, 0x80, "c", 1);
    FEED(&r, &rfc, &in);
    CHECK_STR(buf_str(&r.events),
              "ping 0 5 ping!\npong 0 4 pong\n"
              "text 1 8 Hell\\xE2\\x82\\xACo\n"
              "ping 0 0 \nbinary 2 3 abc\n");
    server_frame(&want, 0x8A, "ping!", 5);
    server_frame(&want, 0x8A, "", 0);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

/* Each input fails with 1002 and delivers nothing, whatever follows. */
static void test_protocol_errors(void)
{
    static const struct {
        int first;          /* header byte 0 of the offending frame */
        int before;         /* a non-final frame sent first (0: none) */
        apr_size_t len;
        const char *error;
    } cases[] = {
        { 0xC1, 0, 1, "reserved bit set" },
        { 0xA1, 0, 1, "reserved bit set" },
        { 0x91, 0, 1, "reserved bit set" },
        { 0xF2, 0, 1, "reserved bit set" },
        { 0x83, 0, 1, "reserved opcode 0x3" },
        { 0x84, 0, 1, "reserved opcode 0x4" },
        { 0x85, 0, 1, "reserved opcode 0x5" },
        { 0x86, 0, 1, "reserved opcode 0x6" },
        { 0x07, 0, 1, "reserved opcode 0x7" },
        { 0x8B, 0, 1, "reserved opcode 0xB" },
        { 0x8C, 0, 1, "reserved opcode 0xC" },
        { 0x8D, 0, 1, "reserved opcode 0xD" },
        { 0x8E, 0, 1, "reserved opcode 0xE" },
        { 0x8F, 0, 1, "reserved opcode 0xF" },
        { 0x89, 0, 126, "control frame over 125 bytes" },
        { 0x8A, 0, 65535, "control frame over 125 bytes" },
        { 0x88, 0, 126, "control frame over 125 bytes" },
        { 0x09, 0, 1, "fragmented control frame" },
        { 0x0A, 0, 1, "fragmented control frame" },
        { 0x08, 0, 2, "fragmented control frame" },
        { 0x80, 0, 1, "continuation frame outside a message" },
        { 0x00, 0, 1, "continuation frame outside a message" },
        { 0x81, 0x01, 1, "new message inside a fragmented message" },
        { 0x82, 0x01, 1, "new message inside a fragmented message" },
        { 0x01, 0x02, 1, "new message inside a fragmented message" },
        { 0x88, 0, 1, "close frame with a 1-byte payload" }
    };
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static char payload[65535];
        buf_t in = { 0 };
        recorder r;

        if (cases[i].before) {
            client_frame(&in, cases[i].before, "x", 1);
        }
        client_frame(&in, cases[i].first, payload, cases[i].len);
        client_frame(&in, 0x81, "after", 5);
        FEED(&r, &rfc, &in);
        if (!CHECK_STR(r.error, cases[i].error)) {
            fprintf(stderr, "  case %lu\n", (unsigned long)i);
        }
        CHECK_FAILED(&r, 1002, cases[i].error);
        rec_free(&r);
        buf_free(&in);
    }
}

static void test_length_errors(void)
{
    buf_t in = { 0 };
    recorder r;

    /* unmasked: fails on the second header byte */
    add_header(&in, 0x82, 0, 10);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1002, "unmasked client frame");
    rec_free(&r);

    /* a 64-bit length with its top bit set */
    in.len = 0;
    add_header(&in, 0x82, 1, APR_UINT64_C(0x8000000000000000));
    buf_add(&in, "abcd", 4);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1002, "frame length has its top bit set");
    rec_free(&r);

    /* lengths in a longer form than needed: 5 as 16 bits, 65535 as 64 */
    in.len = 0;
    buf_add(&in, "\x82\xfe\x00\x05" "mask" "abcde", 13);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1002, "frame length not in its shortest form");
    rec_free(&r);
    in.len = 0;
    buf_add(&in, "\x82\xff\0\0\0\0\0\0\xff\xff" "mask", 14);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1002, "frame length not in its shortest form");
    rec_free(&r);
    buf_free(&in);
}

static void test_invalid_utf8(void)
{
    buf_t in = { 0 };
    recorder r;
    static const char *const error = "invalid UTF-8 in text message";

    /* in a single frame */
    client_frame(&in, 0x81, "ab\xC0\x80", 4);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);

    /* in a non-final fragment, with no more fragments coming */
    in.len = 0;
    client_frame(&in, 0x01, "ok", 2);
    client_frame(&in, 0x00, "\xED\xA0\x80", 3);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);

    /* before the frame is complete: 5 of its 100 bytes arrived */
    in.len = 0;
    {
        char payload[100];

        memset(payload, 'a', sizeof(payload));
        memcpy(payload, "ab\xF4\x90", 4);
        client_frame(&in, 0x81, payload, sizeof(payload));
        in.len -= 95;
    }
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);

    /* the message ends inside a character */
    in.len = 0;
    client_frame(&in, 0x01, "abc", 3);
    client_frame(&in, 0x80, "\xE2\x82", 2);
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);

    /* binary is not checked */
    in.len = 0;
    client_frame(&in, 0x82, "\xC0\x80", 2);
    FEED(&r, &rfc, &in);
    CHECK_STR(buf_str(&r.events), "binary 2 2 \\xC0\\x80\n");
    rec_free(&r);

    /* close reason */
    in.len = 0;
    client_close(&in, 1000, "bye\xFF");
    FEED(&r, &rfc, &in);
    CHECK_FAILED(&r, 1007, "invalid UTF-8 in close reason");
    rec_free(&r);
    buf_free(&in);
}

static void test_too_big(void)
{
    static const setup small = { WS_PROTO_RFC6455, 10, 0, 0, 0, 0 };
    static const char *const error = "message exceeds WebSocketMaxMessageSize";
    buf_t in = { 0 }, want = { 0 };
    recorder r;
    char payload[1000];

    memset(payload, 'x', sizeof(payload));

    /* at the limit, in one frame and reassembled */
    client_frame(&in, 0x81, payload, 10);
    client_frame(&in, 0x02, payload, 5);
    client_frame(&in, 0x80, payload, 5);
    client_frame(&in, 0x89, payload, 125);    /* control frames: no limit */
    FEED(&r, &small, &in);
    format_event(&want, "text", 1, payload, 10);
    format_event(&want, "binary", 2, payload, 10);
    format_event(&want, "ping", 0, payload, 125);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    buf_free(&want);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);

    /* one byte over, refused on the header alone */
    in.len = 0;
    add_header(&in, 0x81, 1, 11);
    FEED(&r, &small, &in);
    CHECK_FAILED(&r, 1009, error);
    rec_free(&r);

    /* reassembled: refused on the second header */
    in.len = 0;
    client_frame(&in, 0x01, payload, 6);
    add_header(&in, 0x80, 1, 5);
    FEED(&r, &small, &in);
    CHECK_FAILED(&r, 1009, error);
    rec_free(&r);

    /* a claim of 2^63-1 bytes: 1009 before any allocation */
    in.len = 0;
    add_header(&in, 0x82, 1, APR_UINT64_C(0x7FFFFFFFFFFFFFFF));
    buf_add(&in, payload, 10);
    FEED(&r, &small, &in);
    CHECK_FAILED(&r, 1009, error);
    rec_free(&r);

    /* with no limit the same claim only grows the buffer with what
     * arrives (the sanitizers would catch an allocation of 2^63) */
    FEED(&r, &rfc, &in);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_STR(buf_str(&r.events), "");
    rec_free(&r);
    buf_free(&in);
}

/* Every close code from 0 to 5000: accepted and echoed, or 1002. */
static void test_close_codes(void)
{
    int code;

    for (code = 0; code <= 5000; code++) {
        int valid = (code >= 1000 && code <= 1003)
                    || (code >= 1007 && code <= 1011)
                    || (code >= 1012 && code <= 1014)
                    || (code >= 3000 && code <= 4999);
        buf_t in = { 0 }, want = { 0 };
        recorder r;

        client_close(&in, code, "");
        FEED(&r, &rfc, &in);
        if (valid) {
            char event[64];

            snprintf(event, sizeof(event), "close %d 0 \n", code);
            server_close(&want, code);
            CHECK_INT(r.state, WS_SESSION_CLOSED);
            CHECK_INT(r.code, code);
            CHECK_STR(buf_str(&r.events), event);
            CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
        }
        else {
            CHECK_FAILED(&r, 1002, "invalid close code");
        }
        rec_free(&r);
        buf_free(&in);
        buf_free(&want);
    }
}

static void test_peer_close(void)
{
    buf_t in = { 0 }, want = { 0 };
    recorder r;

    /* no code: empty reply, 1005 reported; later bytes ignored */
    client_frame(&in, 0x88, "", 0);
    client_frame(&in, 0x81, "late", 4);
    client_frame(&in, 0x89, "late", 4);
    FEED(&r, &rfc, &in);
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    CHECK_INT(r.code, 1005);
    CHECK(r.error == NULL);
    CHECK_STR(buf_str(&r.events), "close 1005 0 \n");
    CHECK_MEM(r.out.data, r.out.len, "\x88\x00", 2);
    rec_free(&r);

    /* a reason is reported but not echoed */
    in.len = 0;
    client_close(&in, 1001, "going away \xE2\x82\xAC");
    FEED(&r, &rfc, &in);
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    CHECK_STR(buf_str(&r.events),
              "close 1001 14 going away \\xE2\\x82\\xAC\n");
    server_close(&want, 1001);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    rec_free(&r);

    /* the longest reason */
    in.len = 0;
    {
        char reason[124];

        memset(reason, 'r', 123);
        reason[123] = '\0';
        client_close(&in, 4999, reason);
    }
    FEED(&r, &rfc, &in);
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    CHECK_INT(r.code, 4999);
    rec_free(&r);

    /* a close inside a fragmented message ends it undelivered */
    in.len = 0;
    client_frame(&in, 0x01, "part", 4);
    client_close(&in, 1000, "");
    FEED(&r, &rfc, &in);
    CHECK_STR(buf_str(&r.events), "close 1000 0 \n");
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

/* We close from on_message: what follows is still delivered, a ping gets
 * no pong after our close, and the peer's close completes the
 * handshake without a second close frame. */
static void test_close_from_callback(void)
{
    static const setup closer = { WS_PROTO_RFC6455, 0, 0, 1, 0, 0 };
    buf_t in = { 0 }, want = { 0 };
    recorder r;

    client_frame(&in, 0x81, "one", 3);
    client_frame(&in, 0x82, "two", 3);
    client_frame(&in, 0x89, "p", 1);
    client_close(&in, 1000, "ok");
    client_frame(&in, 0x81, "late", 4);
    FEED(&r, &closer, &in);
    CHECK_STR(buf_str(&r.events),
              "text 1 3 one\nbinary 2 3 two\nping 0 1 p\nclose 1000 2 ok\n");
    server_close(&want, 1000);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    CHECK_INT(r.code, 1000);
    rec_free(&r);

    /* a protocol error after our close: no second close frame */
    in.len = 0;
    client_frame(&in, 0x81, "one", 3);
    client_frame(&in, 0x83, "", 0);
    FEED(&r, &closer, &in);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    CHECK_INT(r.state, WS_SESSION_FAILED);
    CHECK_INT(r.code, 1002);
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

/* ------------------------------------------------------------------ */
/* Stream mode receiving (every FEED above also runs in stream mode)   */

/* in fed in one chunk and one byte at a time under su: the pieces. */
static void check_pieces(const setup *su, const buf_t *in,
                         const char *whole, const char *bytewise, int line)
{
    recorder r;

    run(&r, su, in, in->len, 1);
    unit_check_str(buf_str(&r.pieces), whole, __FILE__, line,
                   "pieces, one chunk");
    rec_free(&r);
    run(&r, su, in, 0, 1);
    unit_check_str(buf_str(&r.pieces), bytewise, __FILE__, line,
                   "pieces, byte by byte");
    rec_free(&r);
}

#define CHECK_PIECES(su, in, whole, bytewise) \
    check_pieces(su, in, whole, bytewise, __LINE__)

static void test_stream_pieces(void)
{
    buf_t in = { 0 };
    recorder r;

    client_frame(&in, 0x01, "Hel", 3);
    client_frame(&in, 0x89, "p", 1);
    client_frame(&in, 0x00, "", 0);
    client_frame(&in, 0x80, "lo", 2);
    client_frame(&in, 0x82, "ab", 2);
    client_frame(&in, 0x02, "cd", 2);
    client_frame(&in, 0x80, "", 0);
    FEED(&r, &rfc_stream, &in);
    CHECK_STR(buf_str(&r.events),
              "ping 0 1 p\ntext 1 5 Hello\nbinary 2 2 ab\nbinary 2 2 cd\n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);
    /* the final flag comes with the last bytes, or alone */
    CHECK_PIECES(&rfc_stream, &in,
                 "piece 1 3 Hel\nfinal 1 2 lo\nfinal 2 2 ab\n"
                 "piece 2 2 cd\nfinal 2 0 \n",
                 "piece 1 1 H\npiece 1 1 e\npiece 1 1 l\npiece 1 1 l\n"
                 "final 1 1 o\npiece 2 1 a\nfinal 2 1 b\npiece 2 1 c\n"
                 "piece 2 1 d\nfinal 2 0 \n");
    buf_free(&in);
}

/* Pieces are handed over as soon as they arrive, not with the frame. */
static void test_stream_at_once(void)
{
    buf_t in = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc_stream);
    client_frame(&in, 0x81, "abcdef", 6);
    ws_session_feed(r.s, in.data, in.len - 2);
    CHECK_STR(buf_str(&r.pieces), "piece 1 4 abcd\n");
    ws_session_feed(r.s, in.data + in.len - 2, 2);
    CHECK_STR(buf_str(&r.pieces), "piece 1 4 abcd\nfinal 1 2 ef\n");
    CHECK_STR(buf_str(&r.events), "text 1 6 abcdef\n");
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&in);
}

/* Invalid UTF-8 fails before the piece holding it is handed over. */
static void test_stream_invalid_utf8(void)
{
    static const char *const error = "invalid UTF-8 in text message";
    buf_t in = { 0 };
    recorder r;

    client_frame(&in, 0x81, "ab\xC0\x80", 4);
    FEED(&r, &rfc_stream, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);
    CHECK_PIECES(&rfc_stream, &in, "", "piece 1 1 a\npiece 1 1 b\n");

    /* in a later frame, after a character begun in the first */
    in.len = 0;
    client_frame(&in, 0x01, "caf\xC3", 4);
    client_frame(&in, 0x80, "\xA9!\xFF", 3);
    FEED(&r, &rfc_stream, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);
    CHECK_PIECES(&rfc_stream, &in, "piece 1 4 caf\\xC3\n",
                 "piece 1 1 c\npiece 1 1 a\npiece 1 1 f\npiece 1 1 \\xC3\n"
                 "piece 1 1 \\xA9\npiece 1 1 !\n");

    /* the message ends inside a character: no final piece */
    in.len = 0;
    client_frame(&in, 0x01, "abc", 3);
    client_frame(&in, 0x80, "d\xE2\x82", 3);
    FEED(&r, &rfc_stream, &in);
    CHECK_FAILED(&r, 1007, error);
    rec_free(&r);
    CHECK_PIECES(&rfc_stream, &in, "piece 1 3 abc\n",
                 "piece 1 1 a\npiece 1 1 b\npiece 1 1 c\npiece 1 1 d\n"
                 "piece 1 1 \\xE2\n");
    buf_free(&in);
}

static void test_stream_too_big(void)
{
    static const setup small = { WS_PROTO_RFC6455, 10, 0, 0, 0, 1 };
    static const char *const error = "message exceeds WebSocketMaxMessageSize";
    buf_t in = { 0 };
    recorder r;

    /* at the limit, over three frames */
    client_frame(&in, 0x01, "0123", 4);
    client_frame(&in, 0x00, "456", 3);
    client_frame(&in, 0x80, "789", 3);
    FEED(&r, &small, &in);
    CHECK_STR(buf_str(&r.events), "text 1 10 0123456789\n");
    rec_free(&r);

    /* one byte over: refused on the header of the frame that would
     * cross the limit, after the pieces before it were handed over */
    in.len = 0;
    client_frame(&in, 0x01, "012345", 6);
    add_header(&in, 0x80, 1, 5);
    FEED(&r, &small, &in);
    CHECK_FAILED(&r, 1009, error);
    rec_free(&r);
    CHECK_PIECES(&small, &in, "piece 1 6 012345\n",
                 "piece 1 1 0\npiece 1 1 1\npiece 1 1 2\npiece 1 1 3\n"
                 "piece 1 1 4\npiece 1 1 5\n");

    /* a claim of 2^63-1 bytes with no limit: handed over as it comes */
    in.len = 0;
    add_header(&in, 0x82, 1, APR_UINT64_C(0x7FFFFFFFFFFFFFFF));
    buf_add(&in, "\x37\xFA\x21\x3D", 4);
    FEED(&r, &rfc_stream, &in);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_STR(buf_str(&r.pieces), "piece 2 4 \\x00\\x00\\x00\\x00\n");
    rec_free(&r);
    buf_free(&in);
}

/* A large message fed at once: pieces of at most 64 KiB. */
static void test_stream_large(void)
{
    static char big[300000];
    buf_t in = { 0 }, want = { 0 };
    recorder r;
    apr_size_t i;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (char)('a' + i % 26);
    }
    client_frame(&in, 0x01, big, 100000);
    client_frame(&in, 0x80, big + 100000, sizeof(big) - 100000);
    FEED(&r, &rfc_stream, &in);
    format_event(&want, "text", 1, big, sizeof(big));
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK_INT(r.max_piece, 65536);
    rec_free(&r);

    in.len = 0;
    buf_add(&in, "\x00", 1);
    buf_add(&in, big, sizeof(big));
    buf_add(&in, "\xFF", 1);
    FEED(&r, &hixie76_stream, &in);
    CHECK_STR(buf_str(&r.events), buf_str(&want));
    CHECK_INT(r.max_piece, 65536);
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

static void test_stream_hixie(void)
{
    buf_t in = { 0 };
    recorder r;

    buf_add(&in, "\x00Hi\xFF\x00\xFF", 6);
    buf_add(&in, "\x80\x02xy", 4);                   /* skipped */
    buf_add(&in, "\x00\xC0\x80", 3);                 /* not checked */
    FEED(&r, &hixie76_stream, &in);
    CHECK_STR(buf_str(&r.events), "text 1 2 Hi\ntext 1 0 \n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);
    CHECK_PIECES(&hixie76_stream, &in,
                 "final 1 2 Hi\nfinal 1 0 \npiece 1 2 \\xC0\\x80\n",
                 "piece 1 1 H\npiece 1 1 i\nfinal 1 0 \nfinal 1 0 \n"
                 "piece 1 1 \\xC0\npiece 1 1 \\x80\n");
    buf_free(&in);
}

/* ------------------------------------------------------------------ */
/* RFC 6455 sending                                                    */

static void test_send_lengths(void)
{
    static const apr_size_t sizes[] = { 0, 1, 125, 126, 65535, 65536 };
    static char data[65536];
    apr_size_t i;

    memset(data, 'd', sizeof(data));
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        apr_pool_t *p;
        buf_t want = { 0 };
        recorder r;

        apr_pool_create(&p, root);
        rec_open(&r, p, &rfc);
        CHECK_INT(ws_session_send(r.s, WS_OP_BINARY, data, sizes[i]),
                  APR_SUCCESS);
        server_frame(&want, 0x82, data, sizes[i]);
        CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
        /* the payload is handed over as is, not copied */
        CHECK_INT(r.writes, sizes[i] ? 2 : 1);
        CHECK(sizes[i] == 0 || r.last_write == data);
        apr_pool_destroy(p);
        rec_free(&r);
        buf_free(&want);
    }
}

static void check_fragments(apr_size_t fragment_size, int opcode,
                            apr_size_t len, int line)
{
    setup su = rfc;
    static const char data[] = "abcdefghijklmnopqrstuvwxyz";
    buf_t want = { 0 };
    apr_size_t off = 0;
    apr_pool_t *p;
    recorder r;

    su.fragment_size = fragment_size;
    do {
        apr_size_t n = len - off < fragment_size ? len - off : fragment_size;
        int fin = off + n == len ? 0x80 : 0;

        server_frame(&want, fin | (off ? 0 : opcode), data + off, n);
        off += n;
    } while (off < len);
    apr_pool_create(&p, root);
    rec_open(&r, p, &su);
    unit_check_long(ws_session_send(r.s, opcode, data, len), APR_SUCCESS,
                    __FILE__, line, "send");
    unit_check_mem(r.out.data, r.out.len, want.data, want.len, __FILE__,
                   line, "fragments");
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&want);
}

static void test_send_fragments(void)
{
    check_fragments(10, WS_OP_TEXT, 25, __LINE__);     /* 10 + 10 + 5 */
    check_fragments(10, WS_OP_BINARY, 20, __LINE__);   /* 10 + 10 */
    check_fragments(10, WS_OP_TEXT, 10, __LINE__);     /* one frame */
    check_fragments(10, WS_OP_TEXT, 0, __LINE__);
    check_fragments(1, WS_OP_BINARY, 3, __LINE__);
    check_fragments(26, WS_OP_TEXT, 26, __LINE__);
}

static void test_send_ping_and_errors(void)
{
    static char data[126];
    buf_t want = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    CHECK_INT(ws_session_ping(r.s, data, 125), APR_SUCCESS);
    CHECK_INT(ws_session_ping(r.s, "", 0), APR_SUCCESS);
    CHECK_INT(ws_session_ping(r.s, data, 126), APR_EINVAL);
    CHECK_INT(ws_session_send(r.s, WS_OP_PING, "x", 1), APR_EINVAL);
    CHECK_INT(ws_session_send(r.s, WS_OP_CLOSE, "x", 1), APR_EINVAL);
    CHECK_INT(ws_session_close(r.s, 1005, NULL), APR_EINVAL);
    CHECK_INT(ws_session_close(r.s, 999, NULL), APR_EINVAL);
    CHECK_INT(ws_session_state(r.s), WS_SESSION_OPEN);
    server_frame(&want, 0x89, data, 125);
    server_frame(&want, 0x89, "", 0);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&want);
}

/* ws_session_close(code, reason) writes want_len bytes of reason. */
static void check_close(int code, const char *reason, apr_size_t want_len,
                        int line)
{
    buf_t want = { 0 };
    apr_pool_t *p;
    recorder r;

    if (code) {
        char payload[125];

        payload[0] = (char)(code >> 8);
        payload[1] = (char)code;
        memcpy(payload + 2, reason ? reason : "", want_len);
        server_frame(&want, 0x88, payload, 2 + want_len);
    }
    else {
        server_frame(&want, 0x88, "", 0);
    }
    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    unit_check_long(ws_session_close(r.s, code, reason), APR_SUCCESS,
                    __FILE__, line, "close");
    unit_check_mem(r.out.data, r.out.len, want.data, want.len, __FILE__,
                   line, "close frame");
    unit_check_long(ws_session_state(r.s), WS_SESSION_CLOSING, __FILE__,
                    line, "CLOSING");
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&want);
}

static void test_send_close(void)
{
    char reason[300];

    check_close(0, "ignored", 0, __LINE__);
    check_close(1000, NULL, 0, __LINE__);
    check_close(4000, "bye", 3, __LINE__);
    memset(reason, 'a', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    check_close(1001, reason, 123, __LINE__);
    /* a 2-byte character that fits exactly, and one that would be cut */
    strcpy(reason + 121, "\xC3\xA9");
    check_close(1001, reason, 123, __LINE__);
    strcpy(reason + 122, "\xC3\xA9");
    check_close(1001, reason, 122, __LINE__);
    /* 3- and 4-byte characters across the edge */
    strcpy(reason + 121, "\xE2\x82\xAC");
    check_close(1001, reason, 121, __LINE__);
    strcpy(reason + 120, "\xF0\x9F\x98\x80" "bb");
    check_close(1001, reason, 120, __LINE__);
}

/* After our close: nothing more may be sent; the peer's data is still
 * delivered and its close completes the handshake. */
static void test_after_our_close(void)
{
    buf_t in = { 0 }, want = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    CHECK_INT(ws_session_close(r.s, 1001, "going"), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "x", 1), APR_EOF);
    CHECK_INT(ws_session_ping(r.s, "x", 1), APR_EOF);
    CHECK_INT(ws_session_close(r.s, 1000, NULL), APR_EOF);
    CHECK_INT(ws_session_close_code(r.s), 0);
    client_frame(&in, 0x81, "still", 5);
    client_frame(&in, 0x89, "p", 1);
    client_close(&in, 1001, "");
    CHECK_INT(ws_session_feed(r.s, in.data, in.len), WS_SESSION_CLOSED);
    CHECK_STR(buf_str(&r.events), "text 1 5 still\nping 0 1 p\n"
              "close 1001 0 \n");
    CHECK_INT(ws_session_close_code(r.s), 1001);
    CHECK(ws_session_error(r.s) == NULL);
    server_frame(&want, 0x88, "\x03\xE9going", 7);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "x", 1), APR_EOF);
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&in);
    buf_free(&want);
}

static void test_write_failure(void)
{
    static const setup refuse = { WS_PROTO_RFC6455, 0, 0, 0, 1, 0 };
    buf_t in = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &refuse);
    CHECK(ws_session_send(r.s, WS_OP_TEXT, "x", 1) != APR_SUCCESS);
    CHECK_INT(ws_session_state(r.s), WS_SESSION_FAILED);
    CHECK(ws_session_error(r.s) != NULL);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "x", 1), APR_EOF);
    apr_pool_destroy(p);
    rec_free(&r);

    /* the pong cannot be written */
    client_frame(&in, 0x89, "p", 1);
    client_frame(&in, 0x81, "late", 4);
    FEED(&r, &refuse, &in);
    CHECK_INT(r.state, WS_SESSION_FAILED);
    CHECK_STR(buf_str(&r.events), "");
    rec_free(&r);
    buf_free(&in);
}

/* ------------------------------------------------------------------ */
/* Frames whose payload the caller writes (ws_session_frame_begin)     */

/* One frame: begin, the caller's payload, end. */
static void caller_frame(recorder *r, int opcode, int fin, const char *data,
                         apr_size_t len, int line)
{
    unit_check_long(ws_session_frame_begin(r->s, opcode, fin, len),
                    APR_SUCCESS, __FILE__, line, "frame_begin");
    buf_add(&r->out, data, len);
    unit_check_long(ws_session_frame_end(r->s), APR_SUCCESS, __FILE__, line,
                    "frame_end");
}

#define CALLER_FRAME(r, opcode, fin, data, len) \
    caller_frame(r, opcode, fin, data, len, __LINE__)

static void test_frame_begin_rfc(void)
{
    static char data[65536];
    buf_t want = { 0 };
    apr_pool_t *p;
    recorder r;

    memset(data, 'd', sizeof(data));
    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    CHECK(!ws_session_sending(r.s));
    CALLER_FRAME(&r, WS_OP_TEXT, 0, "Hello", 5);
    CHECK(ws_session_sending(r.s));
    CHECK_INT(ws_session_ping(r.s, "p", 1), APR_SUCCESS);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 0, data, 125);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 0, data, 126);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 0, data, 65535);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 1, data, 65536);
    CHECK(!ws_session_sending(r.s));
    CALLER_FRAME(&r, WS_OP_BINARY, 1, "", 0);
    buf_add(&want, "\x01\x05" "Hello", 7);
    buf_add(&want, "\x89\x01p", 3);
    buf_add(&want, "\x00\x7D", 2);
    buf_add(&want, data, 125);
    buf_add(&want, "\x00\x7E\x00\x7E", 4);
    buf_add(&want, data, 126);
    buf_add(&want, "\x00\x7E\xFF\xFF", 4);
    buf_add(&want, data, 65535);
    buf_add(&want, "\x80\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    buf_add(&want, data, 65536);
    buf_add(&want, "\x82\x00", 2);
    CHECK_MEM(r.out.data, r.out.len, want.data, want.len);

    /* the largest length; the header alone is written */
    r.out.len = 0;
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_BINARY, 1,
                                     APR_UINT64_C(0x7FFFFFFFFFFFFFFF)),
              APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len,
              "\x82\x7F\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 10);
    CHECK_INT(ws_session_frame_end(r.s), APR_SUCCESS);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_BINARY, 1,
                                     APR_UINT64_C(0x8000000000000000)),
              APR_EINVAL);
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&want);
}

/* The same frames as ws_session_send with fragment_size. */
static void test_frame_begin_like_send(void)
{
    static const setup frag = { WS_PROTO_RFC6455, 0, 3, 0, 0, 0 };
    apr_pool_t *p;
    recorder sent, begun;

    apr_pool_create(&p, root);
    rec_open(&sent, p, &frag);
    rec_open(&begun, p, &frag);
    CHECK_INT(ws_session_send(sent.s, WS_OP_TEXT, "abcdefg", 7),
              APR_SUCCESS);
    CALLER_FRAME(&begun, WS_OP_TEXT, 0, "abc", 3);
    CALLER_FRAME(&begun, WS_OP_CONTINUATION, 0, "def", 3);
    CALLER_FRAME(&begun, WS_OP_CONTINUATION, 1, "g", 1);
    CHECK_MEM(begun.out.data, begun.out.len, sent.out.data, sent.out.len);
    apr_pool_destroy(p);
    rec_free(&sent);
    rec_free(&begun);
}

static void test_frame_begin_misuse(void)
{
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    CHECK_INT(ws_session_frame_end(r.s), APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 1, 1),
              APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_PING, 1, 1), APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CLOSE, 1, 0), APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, 0x3, 1, 0), APR_EINVAL);
    CHECK_INT(r.out.len, 0);

    /* inside a frame: everything but frame_end is busy */
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 0, 1), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "x", 1), APR_EBUSY);
    CHECK_INT(ws_session_ping(r.s, "x", 1), APR_EBUSY);
    CHECK_INT(ws_session_close(r.s, 1000, NULL), APR_EBUSY);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 1, 1),
              APR_EBUSY);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 1), APR_EBUSY);
    CHECK_INT(r.out.len, 2);
    buf_add(&r.out, "x", 1);
    CHECK_INT(ws_session_frame_end(r.s), APR_SUCCESS);
    CHECK_INT(ws_session_frame_end(r.s), APR_EINVAL);

    /* between frames: no whole message, no new message */
    CHECK_INT(ws_session_send(r.s, WS_OP_BINARY, "x", 1), APR_EBUSY);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_BINARY, 1, 1), APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 1), APR_EINVAL);
    CHECK_INT(r.out.len, 3);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 1, "", 0);
    CHECK_INT(ws_session_send(r.s, WS_OP_BINARY, "x", 1), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len, "\x01\x01x\x80\x00\x82\x01x", 8);
    apr_pool_destroy(p);
    rec_free(&r);
}

static void test_frame_begin_ended(void)
{
    static const setup refuse = { WS_PROTO_RFC6455, 0, 0, 0, 1, 0 };
    apr_pool_t *p;
    recorder r;

    /* our close between frames ends the message where it is */
    apr_pool_create(&p, root);
    rec_open(&r, p, &rfc);
    CALLER_FRAME(&r, WS_OP_BINARY, 0, "y", 1);
    CHECK_INT(ws_session_close(r.s, 1000, NULL), APR_SUCCESS);
    CHECK(!ws_session_sending(r.s));
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 1, 0),
              APR_EOF);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 0), APR_EOF);
    CHECK_MEM(r.out.data, r.out.len, "\x02\x01y\x88\x02\x03\xE8", 7);
    apr_pool_destroy(p);
    rec_free(&r);

    /* fed inside a frame (which it must not be): frame_end writes nothing */
    apr_pool_create(&p, root);
    rec_open(&r, p, &hixie76);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 1), APR_SUCCESS);
    CHECK_INT(ws_session_feed(r.s, "\xFF\x00", 2), WS_SESSION_CLOSED);
    CHECK_INT(ws_session_frame_end(r.s), APR_EOF);
    CHECK_MEM(r.out.data, r.out.len, "\x00\xFF\xFF\x00", 4);
    apr_pool_destroy(p);
    rec_free(&r);

    /* a refused header fails the session; no frame is open */
    apr_pool_create(&p, root);
    rec_open(&r, p, &refuse);
    CHECK(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 1) != APR_SUCCESS);
    CHECK_INT(ws_session_state(r.s), WS_SESSION_FAILED);
    CHECK_INT(ws_session_frame_end(r.s), APR_EINVAL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_TEXT, 1, 1), APR_EOF);
    CHECK(!ws_session_sending(r.s));
    apr_pool_destroy(p);
    rec_free(&r);
}

static void test_frame_begin_hixie(void)
{
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &hixie76);
    CALLER_FRAME(&r, WS_OP_TEXT, 1, "hi", 2);
    CALLER_FRAME(&r, WS_OP_TEXT, 0, "abc", 3);
    CHECK(ws_session_sending(r.s));
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 0, "de", 2);
    CALLER_FRAME(&r, WS_OP_CONTINUATION, 1, "", 0);
    CHECK(!ws_session_sending(r.s));
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_BINARY, 1, 1),
              APR_ENOTIMPL);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 1, 1),
              APR_EINVAL);
    CHECK_MEM(r.out.data, r.out.len, "\x00hi\xFF\x00" "abcde\xFF", 11);

    /* our close ends an unfinished text frame first */
    r.out.len = 0;
    CALLER_FRAME(&r, WS_OP_TEXT, 0, "x", 1);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "y", 1), APR_EBUSY);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 0, 1),
              APR_SUCCESS);
    CHECK_INT(ws_session_close(r.s, 1000, NULL), APR_EBUSY);
    buf_add(&r.out, "z", 1);
    CHECK_INT(ws_session_frame_end(r.s), APR_SUCCESS);
    CHECK_INT(ws_session_close(r.s, 1000, NULL), APR_SUCCESS);
    CHECK_MEM(r.out.data, r.out.len, "\x00xz\xFF\xFF\x00", 6);
    CHECK_INT(ws_session_frame_begin(r.s, WS_OP_CONTINUATION, 1, 0),
              APR_EOF);
    apr_pool_destroy(p);
    rec_free(&r);
}

/* The reply to the peer's close and a failure end it too. */
static void test_frame_begin_hixie_ended(void)
{
    buf_t in = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &hixie76);
    CALLER_FRAME(&r, WS_OP_TEXT, 0, "x", 1);
    buf_add(&in, "\xFF\x00", 2);
    CHECK_INT(ws_session_feed(r.s, in.data, in.len), WS_SESSION_CLOSED);
    CHECK_MEM(r.out.data, r.out.len, "\x00x\xFF\xFF\x00", 5);
    apr_pool_destroy(p);
    rec_free(&r);
    apr_pool_create(&p, root);
    rec_open(&r, p, &hixie75);
    CALLER_FRAME(&r, WS_OP_TEXT, 0, "x", 1);
    in.len = 0;
    buf_add(&in, "\x80\x82\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F", 11);
    CHECK_INT(ws_session_feed(r.s, in.data, in.len), WS_SESSION_FAILED);
    CHECK_MEM(r.out.data, r.out.len, "\x00x\xFF\xFF\x00", 5);
    CHECK(!ws_session_sending(r.s));
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&in);
}

/* ------------------------------------------------------------------ */
/* hixie-75/76                                                         */

static void test_hixie_receive(void)
{
    static char skipped[128];
    buf_t in = { 0 };
    recorder r;

    memset(skipped, 0xFF, sizeof(skipped));
    buf_add(&in, "\x00Hello\xFF\x00\xFF", 9);
    buf_add(&in, "\x80\x03" "abc", 5);               /* skipped */
    buf_add(&in, "\x00hi\xFF", 4);
    buf_add(&in, "\x80\x81\x00", 3);                 /* 128 bytes skipped */
    buf_add(&in, skipped, sizeof(skipped));
    buf_add(&in, "\xFF\x02\xFF\x00", 4);             /* 0xFF, 2 bytes */
    buf_add(&in, "\x80\x00", 2);                     /* empty, skipped */
    buf_add(&in, "\x01junk\x00\xFF", 7);             /* discarded */
    buf_add(&in, "\x00\xC0\x80\xFF", 4);             /* not checked */
    FEED(&r, &hixie76, &in);
    CHECK_STR(buf_str(&r.events),
              "text 1 5 Hello\ntext 1 0 \ntext 1 2 hi\n"
              "text 1 2 \\xC0\\x80\n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_INT(r.out.len, 0);
    rec_free(&r);
    buf_free(&in);
}

static void test_hixie_huge_skip(void)
{
    static char filler[1000];
    buf_t in = { 0 };
    recorder r;

    /* a claim of 2^63-1 bytes is counted down, not buffered */
    buf_add(&in, "\x80\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F", 10);
    buf_add(&in, filler, sizeof(filler));
    FEED(&r, &hixie76, &in);
    CHECK_INT(r.state, WS_SESSION_OPEN);
    CHECK_STR(buf_str(&r.events), "");
    rec_free(&r);

    /* a length that does not fit in 64 bits */
    in.len = 0;
    buf_add(&in, "\x80\x82\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F", 11);
    FEED(&r, &hixie76, &in);
    CHECK_FAILED(&r, 1002, "hixie frame length overflows");
    rec_free(&r);
    buf_free(&in);
}

static void test_hixie_close(void)
{
    buf_t in = { 0 };
    recorder r;

    buf_add(&in, "\x00" "a\xFF\xFF\x00\x00" "late\xFF", 10);
    FEED(&r, &hixie76, &in);
    CHECK_STR(buf_str(&r.events), "text 1 1 a\nclose 1005 0 \n");
    CHECK_MEM(r.out.data, r.out.len, "\xFF\x00", 2);
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    CHECK_INT(r.code, 1005);
    rec_free(&r);

    /* hixie-75 frames the same way */
    FEED(&r, &hixie75, &in);
    CHECK_STR(buf_str(&r.events), "text 1 1 a\nclose 1005 0 \n");
    CHECK_INT(r.state, WS_SESSION_CLOSED);
    rec_free(&r);
    buf_free(&in);
}

static void test_hixie_too_big(void)
{
    static const setup small = { WS_PROTO_HIXIE76, 5, 0, 0, 0, 0 };
    buf_t in = { 0 };
    recorder r;

    buf_add(&in, "\x00" "12345\xFF", 7);
    FEED(&r, &small, &in);
    CHECK_STR(buf_str(&r.events), "text 1 5 12345\n");
    CHECK_INT(r.state, WS_SESSION_OPEN);
    rec_free(&r);

    in.len = 0;
    buf_add(&in, "\x00" "123456", 7);
    FEED(&r, &small, &in);
    CHECK_FAILED(&r, 1009, "message exceeds WebSocketMaxMessageSize");
    rec_free(&r);
    buf_free(&in);
}

static void test_hixie_send(void)
{
    buf_t in = { 0 };
    apr_pool_t *p;
    recorder r;

    apr_pool_create(&p, root);
    rec_open(&r, p, &hixie76);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "hi", 2), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "", 0), APR_SUCCESS);
    CHECK_INT(ws_session_send(r.s, WS_OP_BINARY, "hi", 2), APR_ENOTIMPL);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "a\xFF", 2), APR_EINVAL);
    CHECK_INT(ws_session_ping(r.s, "hi", 2), APR_ENOTIMPL);
    CHECK_INT(ws_session_close(r.s, 1000, "bye"), APR_SUCCESS);
    CHECK_INT(ws_session_state(r.s), WS_SESSION_CLOSING);
    CHECK_INT(ws_session_send(r.s, WS_OP_TEXT, "hi", 2), APR_EOF);
    CHECK_MEM(r.out.data, r.out.len, "\x00hi\xFF\x00\xFF\xFF\x00", 8);

    /* the peer's data still arrives, then its close ends the handshake */
    buf_add(&in, "\x00late\xFF\xFF\x00", 8);
    CHECK_INT(ws_session_feed(r.s, in.data, in.len), WS_SESSION_CLOSED);
    CHECK_STR(buf_str(&r.events), "text 1 4 late\nclose 1005 0 \n");
    CHECK_INT(r.out.len, 8);
    apr_pool_destroy(p);
    rec_free(&r);
    buf_free(&in);
}

static void test_create(void)
{
    ws_session_config cfg;

    memset(&cfg, 0, sizeof(cfg));

    CHECK(ws_session_create(root, WS_PROTO_NONE, &cfg, &callbacks, NULL)
          == NULL);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&root, NULL);
    test_rfc_examples();
    test_messages();
    test_fragmentation();
    test_protocol_errors();
    test_length_errors();
    test_invalid_utf8();
    test_too_big();
    test_close_codes();
    test_peer_close();
    test_close_from_callback();
    test_stream_pieces();
    test_stream_at_once();
    test_stream_invalid_utf8();
    test_stream_too_big();
    test_stream_large();
    test_stream_hixie();
    test_send_lengths();
    test_send_fragments();
    test_send_ping_and_errors();
    test_send_close();
    test_after_our_close();
    test_write_failure();
    test_frame_begin_rfc();
    test_frame_begin_like_send();
    test_frame_begin_misuse();
    test_frame_begin_ended();
    test_frame_begin_hixie();
    test_frame_begin_hixie_ended();
    test_hixie_receive();
    test_hixie_huge_skip();
    test_hixie_close();
    test_hixie_too_big();
    test_hixie_send();
    test_create();
    apr_pool_destroy(root);
    apr_terminate();
    return UNIT_DONE();
}
