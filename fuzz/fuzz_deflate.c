/* Licensed under the Apache License, Version 2.0.
 *
 * fuzz_deflate.c: libFuzzer harness for permessage-deflate in the
 * ws_session state machine (ws_frame.c + ws_deflate.c): the inflate path
 * under the message-size limit, RSV1 rules, and the compressed echo.
 *
 * Input:
 *   byte 0  bits 0-2: client window bits - 8; bit 3:
 *           client_no_context_takeover; bit 4: server_no_context_takeover;
 *           bits 5-7: max_message (index into max_messages[])
 *   byte 1  bits 0-2: server window bits - 8; bits 3-6: level (mod 10);
 *           bit 7: fragment_size 7 (else 0)
 *   byte 2  (mod 16) number k of split lengths that follow
 *   k bytes chunk lengths for the split run (cycled; 0 = empty feed)
 *   rest    records, each [op][len][len bytes], made into masked frames:
 *     op bits 0-1  0 text, 1 binary, 2 continuation, 3 ping
 *        bit 2     FIN
 *        bit 3     RSV1
 *        bit 4     RSV2 too (always an error)
 *        bits 5-6  the payload: 0 the bytes as they are; 1 the bytes
 *                  compressed by the harness's client compressor with
 *                  Z_SYNC_FLUSH, the tail removed when FIN; 2 the same
 *                  with Z_NO_FLUSH (the data continues in a later frame);
 *                  3 with Z_FINISH, then 0x00 (RFC 7692 7.2.3.4), and the
 *                  compressor starts a new stream afterwards
 *        bit 7     reset the client compressor first (forgetting the
 *                  window the server may keep)
 * Raw payloads let the fuzzer reach broken deflate data; compressed ones
 * keep valid streams (with context takeover across messages) common.
 *
 * The stream is fed in one chunk, in the fuzzer's chunks, and (up to
 * BYTEWISE_MAX bytes) one byte at a time; with whole messages and in
 * stream mode.  Every run must log the same messages, output, state,
 * close code and error.  Checked besides:
 *   - no message (nor, in stream mode, the pieces of one) exceeds
 *     max_message, whatever it inflates to; pieces are at most 64 KiB;
 *     text is valid UTF-8
 *   - every received data message is echoed with ws_session_send; the
 *     server's output, read as a client would (inflating with the
 *     negotiated server window, a new decompressor per message without
 *     server context takeover), holds well-formed frames, RSV1 only on
 *     the first frame of a message, and exactly the messages received
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include <apr_general.h>

#include "ws_engine.h"

#define FUZZ_NAME "fuzz_deflate"
#include "fuzz/fuzz.h"

#define MAX_SPLITS   16
#define BYTEWISE_MAX 1024
#define PIECE_MAX    (64 * 1024)

static const apr_uint64_t max_messages[8] = {
    0, 1, 10, 100, 1000, 4096, 65536, 1 << 20
};

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* Building the client's bytes                                         */

static const unsigned char mask_key[4] = { 0x5A, 0x01, 0xC3, 0x7E };

static void client_frame(buf_t *b, int first, const unsigned char *p,
                         size_t len)
{
    unsigned char h[14];
    size_t n = 2, i;

    h[0] = (unsigned char)first;
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    }
    else {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    }
    memcpy(h + n, mask_key, 4);
    buf_add(b, h, n + 4);
    for (i = 0; i < len; i++) {
        unsigned char c = p[i] ^ mask_key[i & 3];

        buf_add(b, &c, 1);
    }
}

static void deflate_into(z_stream *z, const unsigned char *p, size_t len,
                         int flush, buf_t *out)
{
    unsigned char chunk[1024];

    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)len;
    do {
        z->next_out = chunk;
        z->avail_out = sizeof(chunk);
        if (deflate(z, flush) == Z_STREAM_ERROR) {
            abort();
        }
        buf_add(out, chunk, sizeof(chunk) - z->avail_out);
    } while (z->avail_out == 0);
}

/* The records as frames. */
static void build(const unsigned char *p, size_t len, int client_bits,
                  buf_t *out)
{
    z_stream z;
    buf_t payload = { 0 };

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, -(client_bits < 9 ? 9 : client_bits),
                     8, Z_DEFAULT_STRATEGY) != Z_OK) {
        abort();
    }
    while (len >= 2) {
        unsigned op = p[0];
        size_t n = p[1] < len - 2 ? p[1] : len - 2;
        static const int kinds[4] = { 0x1, 0x2, 0x0, 0x9 };
        int fin = (op >> 2) & 1, how = (op >> 5) & 3;
        int first = kinds[op & 3] | (fin ? 0x80 : 0) | ((op & 8) ? 0x40 : 0)
                    | ((op & 16) ? 0x20 : 0);

        p += 2;
        len -= 2;
        payload.len = 0;
        if (op & 0x80) {
            deflateReset(&z);
        }
        switch (how) {
        case 0:
            buf_add(&payload, p, n);
            break;
        case 1:
            deflate_into(&z, p, n, Z_SYNC_FLUSH, &payload);
            if (fin && payload.len >= 4) {
                payload.len -= 4;
            }
            break;
        case 2:
            deflate_into(&z, p, n, Z_NO_FLUSH, &payload);
            break;
        default:
            deflate_into(&z, p, n, Z_FINISH, &payload);
            buf_add(&payload, "", 1);
            deflateReset(&z);
            break;
        }
        if (payload.len > 0xFFFF) {
            payload.len = 0xFFFF;
        }
        if ((first & 0x08) && payload.len > 125) {
            payload.len = 125;
        }
        client_frame(out, first, payload.data, payload.len);
        p += n;
        len -= n;
    }
    deflateEnd(&z);
    free(payload.data);
}

/* ------------------------------------------------------------------ */
/* One run                                                             */

typedef struct {
    ws_session_config cfg;
    int server_bits;
} params_t;

typedef struct {
    const params_t *par;
    ws_session *s;
    buf_t log, out, msg, received;  /* received: every message, framed */
    int msg_opcode;
    ws_utf8_state utf8;
    int ended;
} run_t;

static int cb_write(void *baton, const char *data, apr_size_t len)
{
    run_t *r = baton;

    CHECK(!r->ended && len > 0);
    buf_add(&r->out, data, len);
    return 0;
}

static void message(run_t *r, int opcode, const char *data, apr_size_t len)
{
    apr_uint64_t max = r->par->cfg.max_message;
    unsigned char head[9];
    int i;

    CHECK(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY);
    CHECK(!max || len <= max);
    if (opcode == WS_OP_TEXT) {
        CHECK(ws_utf8_valid((const unsigned char *)data, len));
    }
    log_rec(&r->log, 'M', opcode, data, len);
    head[0] = (unsigned char)opcode;
    for (i = 0; i < 8; i++) {
        head[1 + i] = (unsigned char)((apr_uint64_t)len >> (56 - 8 * i));
    }
    buf_add(&r->received, head, sizeof(head));
    buf_add(&r->received, data, len);
    /* the echo, compressed */
    log_rec(&r->log, 'S', ws_session_send(r->s, opcode, data, len), NULL, 0);
}

static void cb_message(void *baton, int opcode, const char *data,
                       apr_size_t len)
{
    run_t *r = baton;

    CHECK(!r->ended && !r->par->cfg.stream);
    message(r, opcode, data, len);
}

static void cb_data(void *baton, int opcode, const char *data,
                    apr_size_t len, int final)
{
    run_t *r = baton;
    apr_uint64_t max = r->par->cfg.max_message;

    CHECK(!r->ended && r->par->cfg.stream);
    CHECK(!r->msg_opcode || opcode == r->msg_opcode);
    CHECK((len > 0 || final) && len <= PIECE_MAX);
    if (!r->msg_opcode) {
        r->msg_opcode = opcode;
        ws_utf8_init(&r->utf8);
    }
    buf_add(&r->msg, data, len);
    /* the pieces never add up to more than the limit */
    CHECK(!max || r->msg.len <= max);
    if (opcode == WS_OP_TEXT) {
        int v = ws_utf8_feed(&r->utf8, (const unsigned char *)data, len);

        CHECK(v != WS_UTF8_INVALID && (!final || v == WS_UTF8_OK));
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

    CHECK(!r->ended);
    log_rec(&r->log, 'I', 0, data, len);
}

static void cb_close(void *baton, int code, const char *reason,
                     apr_size_t len)
{
    run_t *r = baton;

    CHECK(!r->ended);
    log_rec(&r->log, 'Z', code, reason, len);
}

static const ws_session_callbacks callbacks = {
    cb_write, cb_message, cb_ping, NULL, cb_close, cb_data
};

static void run(run_t *r, const params_t *par, const unsigned char *data,
                size_t len, const unsigned char *splits, size_t nsplits)
{
    apr_pool_t *p;
    size_t pos = 0, i = 0;
    ws_session_state_e st = WS_SESSION_OPEN;

    memset(r, 0, sizeof(*r));
    r->par = par;
    apr_pool_create(&p, root);
    r->s = ws_session_create(p, WS_PROTO_RFC6455, &par->cfg, &callbacks, r);
    CHECK(r->s != NULL);
    do {
        size_t n = nsplits ? splits[i++ % nsplits] : len;

        n = n < len - pos ? n : len - pos;
        st = ws_session_feed(r->s, (const char *)data + pos, n);
        pos += n;
        r->ended = st == WS_SESSION_CLOSED || st == WS_SESSION_FAILED;
        if (nsplits && i > len + nsplits) {
            nsplits = 0;
        }
    } while (pos < len);
    log_rec(&r->log, 'E', st, NULL, 0);
    log_rec(&r->log, 'K', ws_session_close_code(r->s), NULL, 0);
    log_rec(&r->log, 'R', 0, ws_session_error(r->s) ? ws_session_error(r->s)
                                                   : "",
            ws_session_error(r->s) ? strlen(ws_session_error(r->s)) : 0);
    if (st == WS_SESSION_FAILED) {
        CHECK(ws_session_error(r->s) != NULL);
    }
    apr_pool_destroy(p);
}

static void free_run(run_t *r)
{
    free(r->log.data);
    free(r->out.data);
    free(r->msg.data);
    free(r->received.data);
}

static void same(const run_t *a, const run_t *b)
{
    if (a->log.len != b->log.len
        || memcmp(a->log.data, b->log.data, a->log.len) != 0) {
        fprintf(stderr, "fuzz_deflate: logs differ:\n--- one chunk\n%.*s\n"
                "--- other\n%.*s\n", (int)a->log.len, a->log.data,
                (int)b->log.len, b->log.data);
        abort();
    }
    CHECK(a->out.len == b->out.len
          && (!a->out.len || !memcmp(a->out.data, b->out.data, a->out.len)));
}

/* ------------------------------------------------------------------ */
/* Reading the server's output as a client                             */

static void inflate_message(z_stream *z, buf_t *packed, buf_t *out)
{
    unsigned char chunk[4096];
    int rc;

    buf_add(packed, "\0\0\xFF\xFF", 4);
    z->next_in = packed->data;
    z->avail_in = (uInt)packed->len;
    do {
        z->next_out = chunk;
        z->avail_out = sizeof(chunk);
        rc = inflate(z, Z_SYNC_FLUSH);
        CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
        buf_add(out, chunk, sizeof(chunk) - z->avail_out);
    } while (z->avail_out == 0 || z->avail_in > 0);
}

static void check_output(const run_t *r)
{
    const params_t *par = r->par;
    const unsigned char *p = r->out.data;
    size_t pos = 0, rpos = 0;
    int in_message = 0, compressed = 0, opcode = 0, closed = 0;
    buf_t packed = { 0 }, msg = { 0 };
    z_stream z;

    memset(&z, 0, sizeof(z));
    CHECK(inflateInit2(&z, -par->server_bits) == Z_OK);
    while (pos < r->out.len) {
        size_t left = r->out.len - pos, hl = 2;
        apr_uint64_t len;
        int fin, rsv, op, i;

        CHECK(!closed);
        CHECK(left >= 2);
        fin = p[pos] >> 7;
        rsv = (p[pos] >> 4) & 7;
        op = p[pos] & 15;
        CHECK(!(p[pos + 1] & 0x80));
        len = p[pos + 1] & 127;
        if (len == 126) {
            CHECK(left >= 4);
            len = ((apr_uint64_t)p[pos + 2] << 8) | p[pos + 3];
            CHECK(len >= 126);
            hl = 4;
        }
        else if (len == 127) {
            CHECK(left >= 10);
            len = 0;
            for (i = 0; i < 8; i++) {
                len = (len << 8) | p[pos + 2 + i];
            }
            CHECK(len >= 65536);
            hl = 10;
        }
        CHECK(left - hl >= len);
        CHECK(rsv == 0 || rsv == 4);
        if (op & 8) {
            CHECK(rsv == 0 && fin && len <= 125);
            closed = op == WS_OP_CLOSE;
        }
        else {
            CHECK(op <= 2);
            CHECK((op == 0) == in_message);
            if (op) {
                opcode = op;
                compressed = rsv == 4;
            }
            else {
                CHECK(rsv == 0);
            }
            buf_add(compressed ? &packed : &msg, p + pos + hl, (size_t)len);
            in_message = !fin;
            if (fin) {
                size_t want_len = 0;

                if (compressed) {
                    inflate_message(&z, &packed, &msg);
                    if (par->cfg.deflate.server_no_context_takeover) {
                        inflateReset(&z);
                    }
                }
                /* the next message received, echoed */
                CHECK(rpos + 9 <= r->received.len);
                CHECK(r->received.data[rpos] == opcode);
                for (i = 0; i < 8; i++) {
                    want_len = (want_len << 8) | r->received.data[rpos + 1 + i];
                }
                CHECK(msg.len == want_len
                      && (!want_len
                          || !memcmp(msg.data, r->received.data + rpos + 9,
                                     want_len)));
                rpos += 9 + want_len;
                packed.len = msg.len = 0;
            }
        }
        pos += hl + (size_t)len;
    }
    /* every message was echoed (the session may have failed since) */
    CHECK(rpos == r->received.len || closed);
    inflateEnd(&z);
    free(packed.data);
    free(msg.data);
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char one = 1;
    params_t par, streamed;
    run_t whole, other;
    buf_t in = { 0 };
    size_t nsplits;
    const unsigned char *splits;

    if (size < 3) {
        return 0;
    }
    memset(&par, 0, sizeof(par));
    par.cfg.max_message = max_messages[data[0] >> 5];
    par.cfg.deflate.enabled = 1;
    par.cfg.deflate.client_max_window_bits = 8 + (data[0] & 7);
    par.cfg.deflate.client_no_context_takeover = (data[0] >> 3) & 1;
    par.cfg.deflate.server_no_context_takeover = (data[0] >> 4) & 1;
    par.cfg.deflate.server_max_window_bits = 8 + (data[1] & 7);
    par.cfg.deflate.level = (data[1] >> 3 & 15) % 10;
    par.cfg.deflate.mem_level = 1 + data[1] % 9;
    par.cfg.fragment_size = (data[1] & 0x80) ? 7 : 0;
    par.server_bits = par.cfg.deflate.server_max_window_bits;
    nsplits = data[2] % MAX_SPLITS;
    data += 3;
    size -= 3;
    if (nsplits > size) {
        nsplits = size;
    }
    splits = data;
    build(data + nsplits, size - nsplits, par.cfg.deflate.client_max_window_bits,
          &in);
    if (!in.data) {
        buf_add(&in, "", 1);
        in.len = 0;
    }
    streamed = par;
    streamed.cfg.stream = 1;

    run(&whole, &par, in.data, in.len, NULL, 0);
    check_output(&whole);
    run(&other, &par, in.data, in.len, splits, nsplits);
    same(&whole, &other);
    free_run(&other);
    if (in.len <= BYTEWISE_MAX) {
        run(&other, &par, in.data, in.len, &one, 1);
        same(&whole, &other);
        free_run(&other);
    }
    run(&other, &streamed, in.data, in.len, NULL, 0);
    same(&whole, &other);
    free_run(&other);
    run(&other, &streamed, in.data, in.len, splits, nsplits);
    same(&whole, &other);
    free_run(&other);
    if (in.len <= BYTEWISE_MAX) {
        run(&other, &streamed, in.data, in.len, &one, 1);
        same(&whole, &other);
        free_run(&other);
    }
    free_run(&whole);
    free(in.data);
    return 0;
}
