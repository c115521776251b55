/* Licensed under the Apache License, Version 2.0.
 *
 * wsb_ws.c: the client side of the WebSocket protocols -- the upgrade
 * request and its answer (RFC 6455 and hixie-76), masked frames out, and
 * a streaming parser that checks every echoed byte against what was sent
 * without buffering whole messages.  With -z: permessage-deflate (RFC
 * 7692), the client compressing what it sends and inflating the echoes as
 * they stream in.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "wsbench.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_RESPONSE (16 * 1024)
#define ZCHUNK (64 * 1024)
#define PMD "permessage-deflate"

/* Message sizes of the smoke mode, after the one given with -s. */
static const size_t smoke_sizes[] = { 1, 125, 126, 127, 65535, 65536, 70000 };
#define N_SMOKE (sizeof(smoke_sizes) / sizeof(smoke_sizes[0]))

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

size_t wsb_msg_size(const wsb_run *run, uint64_t seq)
{
    uint64_t i;

    if (run->smoke_goal == 0) {
        return run->o.size;
    }
    i = seq % (N_SMOKE + 1);
    return i == 0 ? run->o.size : smoke_sizes[i - 1];
}

/* Message seq carries pattern[seq % 256 ...]; -J spreads the starts
 * over the records (a prime stride). */
static const unsigned char *msg_data(const wsb_run *run, uint64_t seq)
{
    if (run->json_span) {
        return run->pattern + (seq * 1000003u) % run->json_span;
    }
    return run->pattern + seq % 256;
}

static int append(wsb_buf *b, const void *p, size_t len)
{
    if (wsb_buf_reserve(b, len) < 0) {
        return -1;
    }
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Handshake                                                           */

static int rfc6455_request(wsb_run *run, wsb_conn *c, char *extra,
                           size_t size)
{
    unsigned char nonce[16], digest[EVP_MAX_MD_SIZE];
    char key[32], src[80];
    unsigned int dlen;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
    snprintf(src, sizeof(src), "%s%s", key, WS_GUID);
    if (EVP_Digest(src, strlen(src), digest, &dlen, EVP_sha1(), NULL) != 1) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)c->accept, digest, dlen);
    snprintf(extra, size, "Upgrade: websocket\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s",
             key, run->o.deflate ? "Sec-WebSocket-Extensions: " PMD
                                   "; client_max_window_bits\r\n" : "");
    return 0;
}

/* A hixie-76 key: a number times its count of spaces, written with the
 * spaces between the digits and letters at both ends. */
static uint32_t hixie_key(uint32_t *rng, char *out)
{
    uint32_t spaces = 1 + xorshift(rng) % 8;
    uint32_t n = xorshift(rng) % (UINT32_MAX / spaces);
    char digits[16], *p = out;
    uint32_t i, left = spaces;

    snprintf(digits, sizeof(digits), "%lu", (unsigned long)n * spaces);
    *p++ = 'k';
    for (i = 0; digits[i] != '\0'; i++) {
        *p++ = digits[i];
        if (left > 0) {
            *p++ = ' ';
            left--;
        }
    }
    while (left-- > 0) {
        *p++ = ' ';
    }
    *p++ = 'z';
    *p = '\0';
    return n;
}

static int hixie76_request(wsb_run *run, wsb_conn *c, char *extra,
                           size_t size, unsigned char *key3)
{
    char k1[48], k2[48];
    unsigned char src[16];
    uint32_t n1 = hixie_key(&c->rng, k1), n2 = hixie_key(&c->rng, k2);
    unsigned int dlen;
    int i;

    if (RAND_bytes(key3, 8) != 1) {
        return -1;
    }
    for (i = 0; i < 4; i++) {
        src[i] = (unsigned char)(n1 >> (24 - 8 * i));
        src[4 + i] = (unsigned char)(n2 >> (24 - 8 * i));
    }
    memcpy(src + 8, key3, 8);
    if (EVP_Digest(src, 16, c->answer, &dlen, EVP_md5(), NULL) != 1) {
        return -1;
    }
    snprintf(extra, size, "Upgrade: WebSocket\r\nOrigin: http://%s:%s\r\n"
             "Sec-WebSocket-Key1: %s\r\nSec-WebSocket-Key2: %s\r\n",
             run->o.host, run->o.port, k1, k2);
    return 0;
}

int wsb_ws_request(wsb_run *run, wsb_conn *c)
{
    char req[1024], extra[512];
    unsigned char key3[8];
    int n, hixie = run->o.proto == PROTO_HIXIE76;

    if ((hixie ? hixie76_request(run, c, extra, sizeof(extra), key3)
               : rfc6455_request(run, c, extra, sizeof(extra))) < 0) {
        return -1;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                 "Connection: Upgrade\r\n%s\r\n", run->o.path, run->o.host,
                 run->o.port, extra);
    if (append(&c->out, req, (size_t)n) < 0) {
        return -1;
    }
    return hixie ? append(&c->out, key3, sizeof(key3)) : 0;
}

/* The value of header name in the head [p, end), or NULL. */
static const char *find_header(const char *p, const char *end,
                               const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);

    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

        if (eol == NULL) {
            eol = end;
        }
        if ((size_t)(eol - p) > nlen && p[nlen] == ':'
            && strncasecmp(p, name, nlen) == 0) {
            p += nlen + 1;
            while (p < eol && (*p == ' ' || *p == '\t')) {
                p++;
            }
            *vlen = (size_t)(eol - p);
            return p;
        }
        p = eol + 2;
    }
    return NULL;
}

/* The value of parameter name in the answer [v, v + vlen): 1 and *bits
 * (0 without a value) when present, 0 otherwise. */
static int pmd_param(const char *v, size_t vlen, const char *name, int *bits)
{
    size_t nlen = strlen(name);
    const char *p = v, *end = v + vlen;

    while ((p = memmem(p, (size_t)(end - p), name, nlen)) != NULL) {
        const char *after = p + nlen;

        if ((p == v || p[-1] == ' ' || p[-1] == ';')
            && (after == end || *after == ';' || *after == ' '
                || *after == '=')) {
            *bits = after < end && *after == '=' ? atoi(after + 1) : 0;
            return 1;
        }
        p = after;
    }
    return 0;
}

/* The server's permessage-deflate answer: set up both streams. */
static int setup_deflate(wsb_run *run, wsb_conn *c, const char *v,
                         size_t vlen)
{
    int client_bits = 15, server_bits = 15, b;

    if (v == NULL || vlen < strlen(PMD) || memcmp(v, PMD, strlen(PMD)) != 0
        || memchr(v, ',', vlen) != NULL) {
        wsb_fail(run, c, "permessage-deflate not accepted");
        return -1;
    }
    if (pmd_param(v, vlen, "client_max_window_bits", &b) && b) {
        client_bits = b;
    }
    if (pmd_param(v, vlen, "server_max_window_bits", &b) && b) {
        server_bits = b;
    }
    c->client_nct = pmd_param(v, vlen, "client_no_context_takeover", &b);
    c->server_nct = pmd_param(v, vlen, "server_no_context_takeover", &b);
    c->zout = calloc(1, sizeof(*c->zout));
    c->zin = calloc(1, sizeof(*c->zin));
    /* zlib's raw deflate cannot do 8 bits; its 9 stays within 8's reach */
    if (c->zout == NULL || c->zin == NULL
        || deflateInit2(c->zout, run->o.level, Z_DEFLATED,
                        -(client_bits < 9 ? 9 : client_bits), 8,
                        Z_DEFAULT_STRATEGY) != Z_OK
        || inflateInit2(c->zin, -server_bits) != Z_OK) {
        wsb_fail(run, c, "zlib setup failed");
        return -1;
    }
    return 0;
}

static int check_head(wsb_run *run, wsb_conn *c, const char *head,
                      size_t len)
{
    const char *v;
    size_t vlen = 0;

    if (len < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
        wsb_fail(run, c, "handshake refused (no 101)");
        return -1;
    }
    if (run->o.proto == PROTO_RFC6455) {
        v = find_header(head, head + len, "Sec-WebSocket-Accept", &vlen);
        if (v == NULL || vlen != strlen(c->accept)
            || memcmp(v, c->accept, vlen) != 0) {
            wsb_fail(run, c, "wrong Sec-WebSocket-Accept");
            return -1;
        }
        if (run->o.deflate) {
            v = find_header(head, head + len, "Sec-WebSocket-Extensions",
                            &vlen);
            return setup_deflate(run, c, v, vlen);
        }
    }
    return 0;
}

static void opened(wsb_run *run, wsb_conn *c)
{
    c->state = ST_OPEN;
    c->frame_fin = 1;
    run->n_open++;
    run->n_opened++;
    run->n_connecting--;
    c->sent_at = calloc((size_t)run->o.depth, sizeof(*c->sent_at));
    c->sent_wire = calloc((size_t)run->o.depth, sizeof(*c->sent_wire));
    if (!run->o.idle) {
        wsb_buf_reserve(&c->in, 64 * 1024);
    }
}

/* 1: open, 0: more bytes needed, -1: failed. */
int wsb_ws_response(wsb_run *run, wsb_conn *c)
{
    const char *head = (const char *)c->in.buf + c->in.off;
    size_t avail = c->in.len - c->in.off, hlen;
    const char *end = memmem(head, avail, "\r\n\r\n", 4);

    if (end == NULL) {
        if (avail > MAX_RESPONSE) {
            wsb_fail(run, c, "handshake answer too long");
            return -1;
        }
        return 0;
    }
    hlen = (size_t)(end - head) + 4;
    if (check_head(run, c, head, hlen) < 0) {
        return -1;
    }
    if (run->o.proto == PROTO_HIXIE76) {
        if (avail < hlen + 16) {
            return 0;
        }
        if (memcmp(head + hlen, c->answer, 16) != 0) {
            wsb_fail(run, c, "wrong hixie-76 answer");
            return -1;
        }
        hlen += 16;
    }
    c->in.off += hlen;
    opened(run, c);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Frames out                                                          */

static void mask_copy(unsigned char *dst, const unsigned char *src,
                      size_t n, uint32_t key)
{
    uint64_t k8 = (uint64_t)key << 32 | key, w;
    unsigned char m[4];
    size_t i;

    memcpy(m, &key, 4);
    for (; n >= 8; n -= 8, src += 8, dst += 8) {
        memcpy(&w, src, 8);
        w ^= k8;
        memcpy(dst, &w, 8);
    }
    for (i = 0; i < n; i++) {
        dst[i] = src[i] ^ m[i & 3];
    }
}

/* One masked RFC 6455 frame; rsv1: a compressed message. */
static int rfc_frame_rsv(wsb_conn *c, int opcode, int rsv1,
                         const unsigned char *data, size_t len)
{
    unsigned char *p;
    uint32_t key = xorshift(&c->rng);
    int i;

    if (wsb_buf_reserve(&c->out, len + 14) < 0) {
        return -1;
    }
    p = c->out.buf + c->out.len;
    *p++ = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        *p++ = (unsigned char)(0x80 | len);
    }
    else if (len < 65536) {
        *p++ = 0x80 | 126;
        *p++ = (unsigned char)(len >> 8);
        *p++ = (unsigned char)len;
    }
    else {
        *p++ = 0x80 | 127;
        for (i = 7; i >= 0; i--) {
            *p++ = (unsigned char)((uint64_t)len >> (8 * i));
        }
    }
    memcpy(p, &key, 4);
    mask_copy(p + 4, data, len, key);
    c->out.len = (size_t)(p + 4 + len - c->out.buf);
    return 0;
}

static int rfc_frame(wsb_conn *c, int opcode, const unsigned char *data,
                     size_t len)
{
    return rfc_frame_rsv(c, opcode, 0, data, len);
}

/* A compressed message (RFC 7692 7.2.1): Z_SYNC_FLUSH, the 00 00 FF FF
 * tail removed, RSV1 set. */
static int deflate_frame(wsb_run *run, wsb_conn *c, const unsigned char *data,
                         size_t len)
{
    static unsigned char *zbuf;
    static size_t zcap;
    z_stream *z = c->zout;
    size_t need = deflateBound(z, len) + 16, used;

    if (need > zcap) {
        free(zbuf);
        zcap = need;
        if ((zbuf = malloc(zcap)) == NULL) {
            zcap = 0;
            return -1;
        }
    }
    z->next_in = (unsigned char *)data;
    z->avail_in = (uInt)len;
    z->next_out = zbuf;
    z->avail_out = (uInt)zcap;
    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0
        || z->avail_out == 0) {
        return -1;
    }
    used = zcap - z->avail_out;
    if (used < 4 || memcmp(zbuf + used - 4, "\0\0\xff\xff", 4) != 0) {
        return -1;
    }
    if (c->client_nct) {
        deflateReset(z);
    }
    return rfc_frame_rsv(c, run->o.binary ? 2 : 1, 1, zbuf, used - 4);
}

static int hixie_frame(wsb_conn *c, const unsigned char *data, size_t len)
{
    static const unsigned char start = 0x00, end = 0xFF;

    return append(&c->out, &start, 1) < 0 || append(&c->out, data, len) < 0
        || append(&c->out, &end, 1) < 0 ? -1 : 0;
}

int wsb_ws_send(wsb_run *run, wsb_conn *c)
{
    uint64_t seq = c->sent;
    size_t len = wsb_msg_size(run, seq), before = c->out.len;
    const unsigned char *data = msg_data(run, seq);
    int r = run->o.proto == PROTO_HIXIE76 ? hixie_frame(c, data, len)
          : c->zout ? deflate_frame(run, c, data, len)
          : rfc_frame(c, run->o.binary ? 2 : 1, data, len);

    if (r == 0 && run->o.fanout) {
        run->pub_at[seq % (uint64_t)run->o.depth] = wsb_now();
        run->pub_sent++;
    }
    if (r == 0) {
        c->sent_at[seq % (uint64_t)run->o.depth] = wsb_now();
        c->sent_wire[seq % (uint64_t)run->o.depth] =
            (uint32_t)(c->out.len - before);
        c->sent++;
    }
    return r;
}

void wsb_ws_close(wsb_run *run, wsb_conn *c)
{
    static const unsigned char code[2] = { 0x03, 0xE8 };    /* 1000 */
    static const unsigned char hixie[2] = { 0xFF, 0x00 };

    if (c->state == ST_OPEN) {
        if (run->o.proto == PROTO_HIXIE76) {
            append(&c->out, hixie, 2);
        }
        else {
            rfc_frame(c, 8, code, 2);
        }
        wsb_net_flush(c);
    }
    wsb_net_close(run, c);
}

/* ------------------------------------------------------------------ */
/* Frames in                                                           */

/* -F: one more delivery of message seq; once every open connection has
 * it, its latency (publish to last delivery) counts and the publisher
 * may send the next one.  Deliveries count as messages. */
static void fanout_delivered(wsb_run *run, wsb_conn *c, uint64_t seq,
                             uint64_t now)
{
    uint64_t i = seq % (uint64_t)run->o.depth;

    if (run->running && now < run->t_end) {
        run->msgs++;
        run->bytes += wsb_msg_size(run, seq);
    }
    c->echoed++;
    c->msg_off = 0;
    c->msg_wire = 0;
    if (++run->pub_got[i] < run->n_open) {
        return;
    }
    run->pub_got[i] = 0;
    run->pub_done++;
    if (run->running && now < run->t_end) {
        wsb_hist_add(run->hist, now - run->pub_at[i]);
    }
    run->pub_wake = 1;   /* the event loop pumps the publisher */
}

static int message_done(wsb_run *run, wsb_conn *c)
{
    uint64_t now, seq = c->echoed;
    size_t len = wsb_msg_size(run, seq);

    if (c->echoed >= wsb_sent_for(run, c)) {
        wsb_fail(run, c, "a message that was not sent");
        return -1;
    }
    if (c->msg_off != len) {
        wsb_fail(run, c, "echo shorter than the message");
        return -1;
    }
    now = wsb_now();
    if (run->o.fanout) {
        fanout_delivered(run, c, seq, now);
        return 0;
    }
    if (run->running && now < run->t_end) {
        wsb_hist_add(run->hist, now - c->sent_at[seq % (uint64_t)run->o.depth]);
        run->msgs++;
        run->bytes += len;
        run->wire_in += c->msg_wire;
        run->wire_out += c->sent_wire[seq % (uint64_t)run->o.depth];
    }
    c->echoed++;
    c->msg_off = 0;
    c->msg_wire = 0;
    return 0;
}

/* Check n more payload bytes of the message being echoed. */
static int check_payload(wsb_run *run, wsb_conn *c, const unsigned char *p,
                         size_t n)
{
    uint64_t seq = c->echoed;

    if (c->echoed >= wsb_sent_for(run, c)) {
        wsb_fail(run, c, "a message that was not sent");
        return -1;
    }
    if (c->msg_off + n > wsb_msg_size(run, seq)) {
        wsb_fail(run, c, "echo longer than the message");
        return -1;
    }
    if (memcmp(p, msg_data(run, seq) + c->msg_off, n) != 0) {
        wsb_fail(run, c, "echo differs from the message");
        return -1;
    }
    c->msg_off += n;
    return 0;
}

/* Inflate n bytes of a compressed message (tail: the 00 00 FF FF the
 * sender removed) and check what they give. */
static int inflate_check(wsb_run *run, wsb_conn *c, const unsigned char *p,
                         size_t n)
{
    static unsigned char out[ZCHUNK];
    z_stream *z = c->zin;
    int rc;

    z->next_in = (unsigned char *)p;
    z->avail_in = (uInt)n;
    do {
        z->next_out = out;
        z->avail_out = sizeof(out);
        rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            wsb_fail(run, c, "echo does not inflate");
            return -1;
        }
        if (sizeof(out) - z->avail_out > 0
            && check_payload(run, c, out, sizeof(out) - z->avail_out) < 0) {
            return -1;
        }
    } while (z->avail_out == 0 || z->avail_in > 0);
    return 0;
}

/* The last frame of a message is in. */
static int end_message(wsb_run *run, wsb_conn *c)
{
    if (c->msg_compressed) {
        if (inflate_check(run, c, (const unsigned char *)"\0\0\xff\xff",
                          4) < 0) {
            return -1;
        }
        if (c->server_nct) {
            inflateReset(c->zin);
        }
    }
    return message_done(run, c);
}

/* The server's close frame p (len payload bytes) ends the connection. */
static void closed_by_server(wsb_run *run, wsb_conn *c,
                             const unsigned char *p, size_t len)
{
    char why[192];

    if (len >= 2) {
        snprintf(why, sizeof(why), "closed by the server: %d %.*s",
                 p[2] << 8 | p[3], (int)(len - 2), (const char *)p + 4);
    }
    else {
        snprintf(why, sizeof(why), "closed by the server");
    }
    wsb_fail(run, c, why);
}

/* Answer a ping, skip a pong: needs the whole control frame. */
static long control_frame(wsb_run *run, wsb_conn *c, const unsigned char *p,
                          size_t avail, int opcode, size_t len)
{
    if (len > 125 || opcode > 10 || (p[0] & 0x70)) {
        wsb_fail(run, c, "bad control frame");
        return -1;
    }
    if (avail < 2 + len) {
        return 0;
    }
    if (opcode == 8) {
        closed_by_server(run, c, p, len);
        return -1;
    }
    if (opcode == 9 && rfc_frame(c, 10, p + 2, len) < 0) {
        wsb_fail(run, c, "out of memory");
        return -1;
    }
    return (long)(2 + len);
}

/* Bytes of header consumed (> 0), 0 when more are needed, -1: failed. */
static long rfc_header(wsb_run *run, wsb_conn *c, const unsigned char *p,
                       size_t avail)
{
    int opcode = p[0] & 0x0f, i;
    size_t hlen = 2;
    uint64_t len;

    if (avail < 2) {
        return 0;
    }
    if (p[1] & 0x80) {
        wsb_fail(run, c, "masked frame from the server");
        return -1;
    }
    len = p[1] & 0x7f;
    if (opcode >= 8) {
        return control_frame(run, c, p, avail, opcode, (size_t)len);
    }
    /* A message starts with a text or binary frame (the type sent) after
     * a final frame, and goes on with continuation frames. */
    if (opcode != (c->frame_fin ? (run->o.binary ? 2 : 1) : 0)) {
        wsb_fail(run, c, "unexpected opcode");
        return -1;
    }
    /* RSV1 marks a compressed message, on its first frame only */
    if ((p[0] & 0x30) || ((p[0] & 0x40) && (opcode == 0 || !c->zin))) {
        wsb_fail(run, c, "unexpected RSV bits");
        return -1;
    }
    if (opcode != 0) {
        c->msg_compressed = (p[0] & 0x40) != 0;
    }
    hlen += len == 126 ? 2 : len == 127 ? 8 : 0;
    if (avail < hlen) {
        return 0;
    }
    if (len >= 126) {
        for (len = 0, i = 2; (size_t)i < hlen; i++) {
            len = len << 8 | p[i];
        }
    }
    c->frame_fin = (p[0] & 0x80) != 0;
    c->frame_left = len;
    c->in_payload = len > 0;
    c->msg_wire += hlen + len;
    if (len == 0 && c->frame_fin && end_message(run, c) < 0) {
        return -1;
    }
    return (long)hlen;
}

static long rfc_step(wsb_run *run, wsb_conn *c, const unsigned char *p,
                     size_t avail)
{
    size_t n;

    if (!c->in_payload) {
        return rfc_header(run, c, p, avail);
    }
    n = avail < c->frame_left ? avail : (size_t)c->frame_left;
    if ((c->msg_compressed ? inflate_check(run, c, p, n)
                           : check_payload(run, c, p, n)) < 0) {
        return -1;
    }
    c->frame_left -= n;
    if (c->frame_left == 0) {
        c->in_payload = 0;
        if (c->frame_fin && end_message(run, c) < 0) {
            return -1;
        }
    }
    return (long)n;
}

static long hixie_step(wsb_run *run, wsb_conn *c, const unsigned char *p,
                       size_t avail)
{
    const unsigned char *end;
    size_t n;

    if (!c->in_payload) {
        if (p[0] != 0x00) {
            wsb_fail(run, c, p[0] == 0xFF ? "closed by the server"
                                          : "bad hixie frame");
            return -1;
        }
        c->in_payload = 1;
        return 1;
    }
    end = memchr(p, 0xFF, avail);
    n = end != NULL ? (size_t)(end - p) : avail;
    if (check_payload(run, c, p, n) < 0) {
        return -1;
    }
    if (end == NULL) {
        return (long)n;
    }
    c->in_payload = 0;
    return message_done(run, c) < 0 ? -1 : (long)n + 1;
}

int wsb_ws_parse(wsb_run *run, wsb_conn *c)
{
    wsb_buf *b = &c->in;

    while (b->off < b->len) {
        long n = run->o.proto == PROTO_HIXIE76
            ? hixie_step(run, c, b->buf + b->off, b->len - b->off)
            : rfc_step(run, c, b->buf + b->off, b->len - b->off);

        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        b->off += (size_t)n;
    }
    if (b->off == b->len) {
        b->off = b->len = 0;
    }
    return 0;
}
