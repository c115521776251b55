/* Licensed under the Apache License, Version 2.0.
 *
 * fuzz_frame.c: libFuzzer harness for the ws_session framing state
 * machine (ws_frame.c), RFC 6455 and hixie-75/76.
 *
 * Input:
 *   byte 0  bits 0-1: family (0 RFC 6455, 1 hixie-76, 2 hixie-75, 3 RFC
 *           6455); bits 2-4: max_message (index into max_messages[]);
 *           bits 5-7: fragment_size (index into fragment_sizes[])
 *   byte 1  what the callbacks do (ACT_* bits)
 *   byte 2  the write call that fails (0: none), counted from 1
 *   byte 3  (mod 16) number k of split lengths that follow
 *   k bytes chunk lengths for the split run (cycled; 0 = empty feed)
 *   rest    the bytes the peer sends
 *
 * The stream is fed three ways: in one chunk, in the fuzzer's chunks,
 * and (up to BYTEWISE_MAX bytes) one byte at a time; and all three again
 * in stream mode (cfg.stream), where the pieces on_data delivers are
 * added up and handled as on_message would handle the message, and
 * where the echo (when byte 2 refuses no write) goes out through
 * ws_session_frame_begin/_end in the frames ws_session_send would use.
 * Each run logs every callback, every write and the return value of
 * every call the callbacks make; the logs, final state, close code and
 * error must be identical to those of the one-chunk run of whole
 * messages.  Independently of the engine's code the harness also checks:
 *   - the server's output is well formed: RFC 6455 frames unmasked, RSV
 *     clear, known opcodes, control frames final and <= 125 bytes, close
 *     payloads empty or a valid code plus valid UTF-8, data frames in
 *     proper message sequences; hixie frames 00..FF or the FF 00 close;
 *     and nothing at all after a close
 *   - RFC 6455 text messages and close reasons are valid UTF-8; messages
 *     respect max_message; hixie delivers text only
 *   - stream mode: pieces are non-empty (but the final one), at most
 *     64 KiB, keep their message's type, never add up to more than
 *     max_message nor (RFC 6455 text) to invalid UTF-8; on_message is
 *     never called; inside a frame_begin frame and between the frames of
 *     the echo the other sends are refused as ws_engine.h says
 *   - send/ping/close return what ws_engine.h promises for the state
 *   - no callback after CLOSED/FAILED, and further feeds change nothing
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "ws_engine.h"

#define FUZZ_NAME "fuzz_frame"
#include "fuzz/fuzz.h"

#define MAX_SPLITS   16
#define BYTEWISE_MAX 1024

/* callback actions (byte 1) */
#define ACT_ECHO        0x01  /* on_message: send the message back */
#define ACT_PING        0x02  /* on_message: ping with its bytes */
#define ACT_CLOSE       0x04  /* on_message: start the closing handshake */
#define ACT_PING_SEND   0x08  /* on_ping: send its payload as text */
#define ACT_BAD_CODE    0x10  /* ACT_CLOSE takes the code from the data */
#define ACT_PONG_CLOSE  0x20  /* on_pong: start the closing handshake */
#define ACT_SECOND      0x40  /* ACT_CLOSE waits for the second message */
#define ACT_ODD_SENDS   0x80  /* on_message: a message over 64 KiB, text
                               * holding 0xFF, a control opcode */

/* over 64 KiB, for the 64-bit length of RFC 6455 frames */
#define BIG_MESSAGE 70000

static const apr_uint64_t max_messages[8] = {
    0, 1, 2, 10, 125, 126, 1000, 65536
};
static const apr_size_t fragment_sizes[8] = { 0, 1, 2, 3, 125, 126, 200, 0 };

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* One run                                                             */

typedef struct {
    ws_proto_e proto;
    ws_session_config cfg;
    unsigned actions;
    unsigned fail_write;        /* 1-based write call to refuse; 0 none */
} params_t;

typedef struct {
    const params_t *par;
    ws_session *s;
    buf_t log;                  /* everything that happened */
    buf_t out;                  /* bytes written to the peer */
    unsigned writes;
    int refused;                /* a write was refused */
    unsigned messages;
    int ended;                  /* state was CLOSED or FAILED */
    const char *error;          /* ws_session_error at the end */
    /* stream mode: the message being received */
    buf_t msg;                  /* its pieces so far */
    int msg_opcode;             /* its type (0: none started) */
    ws_utf8_state utf8;         /* RFC 6455 text: its pieces so far */
} run_t;

static int is_rfc(const run_t *r)
{
    return r->par->proto == WS_PROTO_RFC6455;
}

static void no_callback_after_end(run_t *r)
{
    CHECK(!r->ended);
}

static int cb_write(void *baton, const char *data, apr_size_t len)
{
    run_t *r = baton;

    no_callback_after_end(r);
    CHECK(len > 0);
    CHECK(!r->refused);         /* a refused write fails the session */
    r->writes++;
    if (r->writes == r->par->fail_write) {
        log_rec(&r->log, 'X', (long)len, NULL, 0);
        r->refused = 1;
        return 1;
    }
    log_rec(&r->log, 'W', 0, data, len);
    buf_add(&r->out, data, len);
    return 0;
}

/* Log a call's status and check it against the state before the call. */
static void log_status(run_t *r, char tag, apr_status_t rv,
                       ws_session_state_e before, apr_status_t want)
{
    log_rec(&r->log, tag, (long)rv, NULL, 0);
    if (before != WS_SESSION_OPEN && want == APR_SUCCESS) {
        want = APR_EOF;
    }
    /* a refused write gives some error and fails the session */
    if (want == APR_SUCCESS && rv != APR_SUCCESS) {
        CHECK(ws_session_state(r->s) == WS_SESSION_FAILED);
        return;
    }
    CHECK(rv == want);
}

static void do_send(run_t *r, int opcode, const char *data, apr_size_t len)
{
    ws_session_state_e before = ws_session_state(r->s);
    apr_status_t want = APR_SUCCESS;

    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) {
        want = APR_EINVAL;
    }
    else if (!is_rfc(r) && opcode == WS_OP_BINARY) {
        want = before == WS_SESSION_OPEN ? APR_ENOTIMPL : APR_EOF;
    }
    else if (!is_rfc(r) && memchr(data, 0xFF, len)) {
        want = before == WS_SESSION_OPEN ? APR_EINVAL : APR_EOF;
    }
    log_status(r, 'S', ws_session_send(r->s, opcode, data, len), before,
               want);
}

static void do_ping(run_t *r, const char *data, apr_size_t len)
{
    ws_session_state_e before = ws_session_state(r->s);
    apr_status_t want = !is_rfc(r) ? APR_ENOTIMPL
                      : len > 125 ? APR_EINVAL : APR_SUCCESS;

    log_status(r, 'P', ws_session_ping(r->s, data, len), before, want);
}

static int code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014)
        || (code >= 3000 && code <= 4999);
}

static void do_close(run_t *r, int code, const char *reason)
{
    ws_session_state_e before = ws_session_state(r->s);
    apr_status_t want = APR_SUCCESS;

    if (is_rfc(r) && code && !code_valid(code)) {
        want = APR_EINVAL;
    }
    log_status(r, 'C', ws_session_close(r->s, code, reason), before, want);
    if (ws_session_state(r->s) == WS_SESSION_OPEN) {
        CHECK(want != APR_SUCCESS || before != WS_SESSION_OPEN);
    }
}

/* Close from on_message: the reason is the text up to its first NUL
 * (valid UTF-8 stays valid), or "bye" for binary data. */
static void close_from_message(run_t *r, int opcode, const char *data,
                               apr_size_t len)
{
    char *reason = malloc(len + 1);
    int code = WS_CLOSE_NORMAL;

    if (!reason) {
        abort();
    }
    if (opcode == WS_OP_TEXT && is_rfc(r)) {
        memcpy(reason, data, len);
        reason[len] = '\0';
    }
    else {
        strcpy(reason, len >= 3 ? "bye" : "");
    }
    if ((r->par->actions & ACT_BAD_CODE) && len >= 2) {
        code = ((unsigned char)data[0] << 8) | (unsigned char)data[1];
    }
    do_close(r, code, reason);
    free(reason);
}

static void odd_sends(run_t *r)
{
    static char big[BIG_MESSAGE];

    if (!big[0]) {
        memset(big, 'a', sizeof(big));
    }
    /* not in 1..3-byte fragments: too slow for what it adds */
    if (r->par->cfg.fragment_size == 0 || r->par->cfg.fragment_size > 100) {
        do_send(r, WS_OP_TEXT, big, sizeof(big));
    }
    if (!is_rfc(r)) {
        do_send(r, WS_OP_TEXT, "a\xff", 2);    /* refused: APR_EINVAL */
    }
    do_send(r, WS_OP_PING, "", 0);
}

/* Stream mode: inside a frame_begin frame everything else is busy. */
static void check_in_frame(run_t *r, int opcode)
{
    CHECK(ws_session_sending(r->s));
    CHECK(ws_session_send(r->s, opcode, "x", 1) == APR_EBUSY);
    CHECK(ws_session_close(r->s, 0, NULL) == APR_EBUSY);
    CHECK(ws_session_frame_begin(r->s, WS_OP_CONTINUATION, 1, 0)
          == APR_EBUSY);
    if (is_rfc(r)) {
        CHECK(ws_session_ping(r->s, "", 0) == APR_EBUSY);
    }
}

/* Stream mode: between the frames of a message, no whole message, no new
 * one, no frame_end. */
static void check_between_frames(run_t *r, int opcode)
{
    CHECK(ws_session_sending(r->s));
    CHECK(ws_session_send(r->s, opcode, "x", 1) == APR_EBUSY);
    CHECK(ws_session_frame_begin(r->s, opcode, 1, 0) == APR_EINVAL);
    CHECK(ws_session_frame_end(r->s) == APR_EINVAL);
}

/* do_send through ws_session_frame_begin/_end, the payload written here
 * (counted and logged as the engine's writes are, never refused). */
static void send_frames(run_t *r, int opcode, const char *data,
                        apr_size_t len)
{
    ws_session_state_e before = ws_session_state(r->s);
    apr_size_t max = is_rfc(r) && r->par->cfg.fragment_size
                     ? r->par->cfg.fragment_size : len;
    int op = opcode;
    apr_status_t rv;

    if (!is_rfc(r) && (opcode == WS_OP_BINARY || memchr(data, 0xFF, len))) {
        do_send(r, opcode, data, len);      /* refused, nothing written */
        return;
    }
    for (;;) {
        apr_size_t n = len < max ? len : max;

        if ((rv = ws_session_frame_begin(r->s, op, n == len, n))
            != APR_SUCCESS) {
            break;
        }
        check_in_frame(r, opcode);
        if (n) {
            CHECK(cb_write(r, data, n) == 0);
        }
        if ((rv = ws_session_frame_end(r->s)) != APR_SUCCESS || n == len) {
            break;
        }
        check_between_frames(r, opcode);
        data += n;
        len -= n;
        op = WS_OP_CONTINUATION;
    }
    CHECK(!ws_session_sending(r->s));
    log_status(r, 'S', rv, before, APR_SUCCESS);
}

/* A whole message, from on_message or added up from on_data. */
static void message(run_t *r, int opcode, const char *data, apr_size_t len)
{
    unsigned act = r->par->actions;

    CHECK(opcode == WS_OP_TEXT || (opcode == WS_OP_BINARY && is_rfc(r)));
    CHECK(!r->par->cfg.max_message || len <= r->par->cfg.max_message);
    if (is_rfc(r) && opcode == WS_OP_TEXT) {
        CHECK(ws_utf8_valid((const unsigned char *)data, len));
    }
    log_rec(&r->log, 'M', opcode, data, len);
    r->messages++;
    if ((act & ACT_ECHO) && r->par->cfg.stream && !r->par->fail_write) {
        send_frames(r, opcode, data, len);
    }
    else if (act & ACT_ECHO) {
        do_send(r, opcode, data, len);
    }
    if (act & ACT_PING) {
        do_ping(r, data, len);
    }
    if ((act & ACT_ODD_SENDS) && r->messages == 1) {
        odd_sends(r);
    }
    if ((act & ACT_CLOSE) && r->messages == ((act & ACT_SECOND) ? 2u : 1u)) {
        close_from_message(r, opcode, data, len);
    }
}

static void cb_message(void *baton, int opcode, const char *data,
                       apr_size_t len)
{
    run_t *r = baton;

    no_callback_after_end(r);
    CHECK(!r->par->cfg.stream);
    message(r, opcode, data, len);
}

/* Check a piece against those before it; the message once complete. */
static void cb_data(void *baton, int opcode, const char *data,
                    apr_size_t len, int final)
{
    run_t *r = baton;
    apr_uint64_t max = r->par->cfg.max_message;

    no_callback_after_end(r);
    CHECK(r->par->cfg.stream);
    CHECK(opcode == WS_OP_TEXT || (opcode == WS_OP_BINARY && is_rfc(r)));
    CHECK(!r->msg_opcode || opcode == r->msg_opcode);
    CHECK((len > 0 || final) && len <= 64 * 1024);
    if (!r->msg_opcode) {
        r->msg_opcode = opcode;
        ws_utf8_init(&r->utf8);
    }
    buf_add(&r->msg, data, len);
    CHECK(!max || r->msg.len <= max);
    if (is_rfc(r) && opcode == WS_OP_TEXT) {
        int utf8 = ws_utf8_feed(&r->utf8, (const unsigned char *)data, len);

        CHECK(utf8 != WS_UTF8_INVALID && (!final || utf8 == WS_UTF8_OK));
    }
    if (final) {
        r->msg_opcode = 0;
        message(r, opcode, r->msg.data ? (const char *)r->msg.data : "",
                r->msg.len);
        r->msg.len = 0;
    }
}

static void cb_ping(void *baton, const char *data, apr_size_t len)
{
    run_t *r = baton;

    no_callback_after_end(r);
    CHECK(is_rfc(r) && len <= 125);
    log_rec(&r->log, 'I', 0, data, len);
    if (r->par->actions & ACT_PING_SEND) {
        do_send(r, WS_OP_BINARY, data, len);
    }
}

static void cb_pong(void *baton, const char *data, apr_size_t len)
{
    run_t *r = baton;

    no_callback_after_end(r);
    CHECK(is_rfc(r) && len <= 125);
    log_rec(&r->log, 'O', 0, data, len);
    if (r->par->actions & ACT_PONG_CLOSE) {
        do_close(r, 0, NULL);
    }
}

static void cb_close(void *baton, int code, const char *reason,
                     apr_size_t len)
{
    run_t *r = baton;

    no_callback_after_end(r);
    CHECK(ws_session_state(r->s) == WS_SESSION_CLOSED);
    CHECK(code == WS_CLOSE_NO_STATUS || (is_rfc(r) && code_valid(code)));
    CHECK(len <= 123 && ws_utf8_valid((const unsigned char *)reason, len));
    CHECK(ws_session_close_code(r->s) == code);
    log_rec(&r->log, 'Z', code, reason, len);
    /* nothing may be sent once the close handshake is complete */
    do_send(r, WS_OP_TEXT, "late", 4);
    do_ping(r, "", 0);
    do_close(r, 0, NULL);
}

/* ------------------------------------------------------------------ */
/* Output checks                                                       */

/* Parse an output frame header; returns its size, or 0 when the frame
 * is cut short, which only a refused write may cause. */
static size_t rfc_frame_header(const unsigned char *p, size_t len,
                               apr_uint64_t *plen, int refused)
{
    size_t i, extra;

    if (len < 2) {
        CHECK(refused);
        return 0;
    }
    CHECK(!(p[1] & 0x80));                  /* servers never mask */
    *plen = p[1] & 0x7F;
    extra = *plen == 126 ? 2 : *plen == 127 ? 8 : 0;
    if (len < 2 + extra) {
        CHECK(refused);
        return 0;
    }
    if (extra) {
        *plen = 0;
        for (i = 0; i < extra; i++) {
            *plen = (*plen << 8) | p[2 + i];
        }
        /* shortest length encoding */
        CHECK(*plen >= (extra == 2 ? 126u : 65536u));
    }
    if (len - 2 - extra < *plen) {
        CHECK(refused);
        return 0;
    }
    return 2 + extra;
}

static void check_rfc_close_payload(const unsigned char *p, size_t len)
{
    CHECK(len != 1);
    if (len >= 2) {
        CHECK(code_valid((p[0] << 8) | p[1]));
        CHECK(ws_utf8_valid(p + 2, len - 2));
    }
}

static void check_rfc_output(const buf_t *out, int refused)
{
    size_t pos = 0;
    int in_message = 0;

    while (pos < out->len) {
        const unsigned char *p = out->data + pos;
        apr_uint64_t plen;
        size_t hlen = rfc_frame_header(p, out->len - pos, &plen, refused);
        int fin = p[0] & 0x80, op = p[0] & 0x0F;

        if (!hlen) {
            return;
        }
        CHECK(!(p[0] & 0x70));
        if (op & 0x8) {
            CHECK(fin && plen <= 125);
            CHECK(op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG);
        }
        else {
            CHECK(op <= WS_OP_BINARY);
            CHECK((op == WS_OP_CONTINUATION) == in_message);
            in_message = !fin;
        }
        pos += hlen + (size_t)plen;
        if (op == WS_OP_CLOSE) {
            check_rfc_close_payload(p + hlen, (size_t)plen);
            CHECK(pos == out->len);         /* nothing after our close */
        }
    }
}

static void check_hixie_output(const buf_t *out, int refused)
{
    size_t pos = 0;

    while (pos < out->len) {
        const unsigned char *p = out->data + pos;
        const unsigned char *end;

        if (p[0] == 0xFF) {
            CHECK(out->len - pos == 2 && p[1] == 0x00);
            return;
        }
        CHECK(p[0] == 0x00);
        end = memchr(p + 1, 0xFF, out->len - pos - 1);
        if (!end) {
            CHECK(refused);
            return;
        }
        pos = (size_t)(end - out->data) + 1;
    }
}

static void check_end_state(run_t *r)
{
    ws_session_state_e st = ws_session_state(r->s);
    int code = ws_session_close_code(r->s);

    if (st == WS_SESSION_FAILED) {
        CHECK(ws_session_error(r->s) != NULL);
    }
    else {
        CHECK(ws_session_error(r->s) == NULL);
    }
    if (st == WS_SESSION_OPEN || st == WS_SESSION_CLOSING) {
        CHECK(code == 0);
    }
    if (st == WS_SESSION_CLOSED) {
        CHECK(code != 0);
    }
    if (is_rfc(r)) {
        check_rfc_output(&r->out, r->refused);
    }
    else {
        check_hixie_output(&r->out, r->refused);
    }
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

static const ws_session_callbacks callbacks = {
    cb_write, cb_message, cb_ping, cb_pong, cb_close, cb_data
};

/* Feed data in chunks of the given lengths (none: one chunk). */
static void run(run_t *r, const params_t *par, const unsigned char *data,
                size_t len, const unsigned char *splits, size_t nsplits)
{
    apr_pool_t *p;
    size_t pos = 0, i = 0;
    ws_session_state_e st = WS_SESSION_OPEN;

    memset(r, 0, sizeof(*r));
    r->par = par;
    apr_pool_create(&p, root);
    r->s = ws_session_create(p, par->proto, &par->cfg, &callbacks, r);
    CHECK(r->s != NULL);
    do {
        size_t n = nsplits ? splits[i++ % nsplits] : len;

        n = n < len - pos ? n : len - pos;
        st = ws_session_feed(r->s, (const char *)data + pos, n);
        CHECK(st == ws_session_state(r->s));
        pos += n;
        r->ended = st == WS_SESSION_CLOSED || st == WS_SESSION_FAILED;
        if (nsplits && i > len + nsplits) {
            nsplits = 0;                    /* all zero: finish at once */
        }
    } while (pos < len);
    log_rec(&r->log, 'E', st, NULL, 0);
    log_rec(&r->log, 'K', ws_session_close_code(r->s), NULL, 0);
    r->error = ws_session_error(r->s);
    check_end_state(r);
    if (r->ended) {
        /* further bytes are ignored */
        CHECK(ws_session_feed(r->s, (const char *)data, len) == st);
    }
    apr_pool_destroy(p);
}

static void same(const run_t *a, const run_t *b)
{
    if (a->log.len != b->log.len
        || memcmp(a->log.data, b->log.data, a->log.len) != 0) {
        fprintf(stderr, "fuzz_frame: logs differ:\n--- one chunk\n%.*s\n"
                "--- split\n%.*s\n", (int)a->log.len, a->log.data,
                (int)b->log.len, b->log.data);
        abort();
    }
    CHECK(a->error == b->error);
}

static void free_run(run_t *r)
{
    free(r->log.data);
    free(r->out.data);
    free(r->msg.data);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    apr_initialize();
    if (apr_pool_create(&root, NULL) != APR_SUCCESS) {
        abort();
    }
    return 0;
}

static void parse_params(params_t *par, const uint8_t *data)
{
    static const ws_proto_e protos[4] = {
        WS_PROTO_RFC6455, WS_PROTO_HIXIE76, WS_PROTO_HIXIE75, WS_PROTO_RFC6455
    };

    memset(par, 0, sizeof(*par));
    par->proto = protos[data[0] & 3];
    par->cfg.max_message = max_messages[(data[0] >> 2) & 7];
    par->cfg.fragment_size = fragment_sizes[(data[0] >> 5) & 7];
    par->actions = data[1];
    par->fail_write = data[2];
}

/* Feed data in the fuzzer's chunks and (if short) byte by byte: each
 * run must match whole, the one-chunk run of whole messages. */
static void check_splits(const run_t *whole, const params_t *par,
                         const unsigned char *data, size_t len,
                         const unsigned char *splits, size_t nsplits)
{
    static const unsigned char one = 1;
    run_t other;

    run(&other, par, data, len, splits, nsplits);
    same(whole, &other);
    free_run(&other);
    if (len <= BYTEWISE_MAX) {
        run(&other, par, data, len, &one, 1);
        same(whole, &other);
        free_run(&other);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    params_t par, streamed;
    run_t whole, other;
    size_t nsplits;

    if (size < 4) {
        return 0;
    }
    parse_params(&par, data);
    streamed = par;
    streamed.cfg.stream = 1;
    nsplits = data[3] % MAX_SPLITS;
    data += 4;
    size -= 4;
    if (nsplits > size) {
        nsplits = size;
    }
    run(&whole, &par, data + nsplits, size - nsplits, NULL, 0);
    check_splits(&whole, &par, data + nsplits, size - nsplits, data,
                 nsplits);
    run(&other, &streamed, data + nsplits, size - nsplits, NULL, 0);
    same(&whole, &other);
    free_run(&other);
    check_splits(&whole, &streamed, data + nsplits, size - nsplits, data,
                 nsplits);
    free_run(&whole);
    return 0;
}
