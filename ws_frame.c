/* Licensed under the Apache License, Version 2.0.
 *
 * ws_frame.c: the framing state machine (ws_session) for RFC 6455 and
 * hixie-75/76.
 *
 * Input is consumed as it arrives, whatever the split: the receive side
 * is a small state machine whose every step eats at least one byte (or
 * ends the session), so one byte at a time and one big chunk give the same
 * callbacks.  Data messages are reassembled in a heap buffer that grows
 * with the bytes actually received, never with a length the peer claims;
 * in stream mode the buffer only holds the piece being handed over.
 *
 * Output goes through the write callback, except the payload of frames
 * begun with ws_session_frame_begin, which the caller writes itself.
 *
 * With permessage-deflate (ws_deflate.c) the payload of a compressed
 * message is unmasked a slice at a time and inflated straight into the
 * message buffer (or the piece being handed over), a bounded amount at a
 * time, so that max_message holds for the inflated size while it grows.
 */

#include <stdlib.h>
#include <string.h>

#include "ws_engine.h"

/* Message buffer: first allocation, and the capacity above which it is
 * freed once its message has been delivered. */
#define WS_BUF_MIN   1024
#define WS_BUF_KEEP  (64 * 1024)
/* Stream mode: the largest piece handed over at once; within
 * WS_BUF_KEEP, so the buffer is kept from one message to the next. */
#define WS_PIECE_MAX WS_BUF_KEEP

#define WS_CONTROL_MAX 125

/* Compressed payload is unmasked this much at a time (on the stack), and
 * inflated at most this much at a time: a message over the limit is
 * stopped having produced at most the limit plus one byte. */
#define WS_INFLATE_SLICE  4096
#define WS_INFLATE_CHUNK  (16 * 1024)

/* RFC 6455 header bits */
#define WS_FIN       0x80
#define WS_RSV       0x70
#define WS_RSV1      0x40
#define WS_OPCODE    0x0F
#define WS_MASKED    0x80
#define WS_LEN7      0x7F
#define WS_LEN16     126
#define WS_LEN64     127

/* hixie framing */
#define HIXIE_TEXT_START 0x00
#define HIXIE_TEXT_END   0xFF
#define HIXIE_LENGTH_MORE 0x80
#define HIXIE_LENGTH_BITS 0x7F

typedef enum {
    RX_HEADER,      /* RFC 6455: collecting a frame header */
    RX_PAYLOAD,     /* RFC 6455: payload bytes of the current frame */
    HX_TYPE,        /* hixie: expecting a frame type byte */
    HX_TEXT,        /* hixie: inside 0x00 ... 0xFF */
    HX_LENGTH,      /* hixie: reading a length-prefixed frame's length */
    HX_SKIP,        /* hixie: skipping a length-prefixed frame's bytes */
    HX_DISCARD      /* hixie: discarding an unknown 0xFF-ended frame */
} rx_state_e;

struct ws_session {
    ws_proto_e proto;
    ws_session_config cfg;
    ws_session_callbacks cb;
    void *baton;
    ws_session_state_e state;
    int close_code;
    const char *error;

    rx_state_e rx;

    /* RFC 6455 frame being received */
    unsigned char hdr[14];
    apr_size_t hdr_len, hdr_need;
    int fin, opcode;
    unsigned char mask[4];
    apr_uint64_t frame_pos, frame_len;
    unsigned char control[WS_CONTROL_MAX];

    /* data message being received (msg_opcode 0: none): msg_len bytes
     * so far (inflated when compressed), of which the buffer holds
     * buf_len (all of them, or in stream mode the piece not yet handed
     * over); msg_wire: its payload bytes on the wire */
    int msg_opcode;
    int msg_compressed;     /* RSV1 on its first frame */
    apr_uint64_t msg_len, msg_wire;
    ws_utf8_state utf8;
    char *buf;
    apr_size_t buf_len, buf_cap;

    /* permessage-deflate; NULL: not negotiated */
    ws_deflate *deflate;

    /* hixie length-prefixed frame */
    unsigned char hx_type;
    apr_uint64_t hx_left;

    /* message being sent with ws_session_frame_begin */
    int tx_opcode;          /* its type; 0: none unfinished */
    int tx_frame;           /* a frame is open (begun, not ended) */
    int tx_fin;             /* the open frame is the message's last */
};

/* ------------------------------------------------------------------ */
/* Output                                                              */

/* Hand bytes to the peer; a refusal fails the session. */
static apr_status_t emit(ws_session *s, const void *data, apr_size_t len)
{
    if (len == 0) {
        return APR_SUCCESS;
    }
    if (s->cb.write(s->baton, data, len) != 0) {
        s->state = WS_SESSION_FAILED;
        s->error = "write to the peer failed";
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* Write an unmasked RFC 6455 frame header, length in its shortest form
 * (len below 2^63); rsv1 marks a compressed message's first frame. */
static apr_status_t write_header_rsv(ws_session *s, int fin, int rsv1,
                                     int opcode, apr_uint64_t len)
{
    unsigned char hdr[10];
    apr_size_t hdr_len;

    hdr[0] = (unsigned char)((fin ? WS_FIN : 0) | (rsv1 ? WS_RSV1 : 0)
                             | opcode);
    if (len < WS_LEN16) {
        hdr[1] = (unsigned char)len;
        hdr_len = 2;
    }
    else if (len <= 0xFFFF) {
        hdr[1] = WS_LEN16;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        hdr_len = 4;
    }
    else {
        int i;

        hdr[1] = WS_LEN64;
        for (i = 9; i >= 2; i--, len >>= 8) {
            hdr[i] = (unsigned char)len;
        }
        hdr_len = 10;
    }
    return emit(s, hdr, hdr_len);
}

static apr_status_t write_header(ws_session *s, int fin, int opcode,
                                 apr_uint64_t len)
{
    return write_header_rsv(s, fin, 0, opcode, len);
}

/* Write one unmasked RFC 6455 frame: header, then the payload as is. */
static apr_status_t write_frame(ws_session *s, int fin, int opcode,
                                const void *payload, apr_size_t len)
{
    apr_status_t rv = write_header(s, fin, opcode, len);

    return rv == APR_SUCCESS ? emit(s, payload, len) : rv;
}

/* Write a close frame carrying code (none when 0) and len reason bytes. */
static apr_status_t write_close(ws_session *s, int code,
                                const char *reason, apr_size_t len)
{
    unsigned char payload[WS_CONTROL_MAX];

    if (!code) {
        return write_frame(s, 1, WS_OP_CLOSE, "", 0);
    }
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, len);
    return write_frame(s, 1, WS_OP_CLOSE, payload, 2 + len);
}

/* 0xFF 0x00, after a 0xFF that ends our unfinished text frame if any. */
static apr_status_t write_hixie_close(ws_session *s)
{
    static const unsigned char closing[3] = {
        HIXIE_TEXT_END, HIXIE_TEXT_END, 0x00
    };
    apr_size_t skip = s->tx_opcode ? 0 : 1;

    return emit(s, closing + skip, sizeof(closing) - skip);
}

/* ------------------------------------------------------------------ */
/* Session state                                                       */

static int is_rfc6455(const ws_session *s)
{
    return s->proto == WS_PROTO_RFC6455;
}

/* Fail the session: tell the peer (unless our close is already out) and
 * stop reading. */
static void fail(ws_session *s, int code, const char *why)
{
    if (s->deflate) {
        ws_inflate_abort(s->deflate);
    }
    if (s->state == WS_SESSION_OPEN) {
        if (is_rfc6455(s)) {
            write_close(s, code, "", 0);
        }
        else {
            write_hixie_close(s);
        }
    }
    s->state = WS_SESSION_FAILED;
    s->close_code = code;
    s->error = why;
}

/* The peer closed: reply if the close is theirs to start, then report. */
static void peer_closed(ws_session *s, int code, const char *reason,
                        apr_size_t len)
{
    s->close_code = code;
    if (s->state == WS_SESSION_OPEN) {
        apr_status_t rv = is_rfc6455(s)
            ? write_close(s, code == WS_CLOSE_NO_STATUS ? 0 : code, "", 0)
            : write_hixie_close(s);

        if (rv != APR_SUCCESS) {
            return;
        }
    }
    s->state = WS_SESSION_CLOSED;
    if (s->cb.on_close) {
        s->cb.on_close(s->baton, code, reason, len);
    }
}

static apr_status_t free_buffer(void *data)
{
    ws_session *s = data;

    free(s->buf);
    s->buf = NULL;
    s->buf_len = s->buf_cap = 0;
    return APR_SUCCESS;
}

ws_session *ws_session_create(apr_pool_t *pool, ws_proto_e proto,
                              const ws_session_config *cfg,
                              const ws_session_callbacks *cb, void *baton)
{
    ws_session *s;

    if (proto != WS_PROTO_HIXIE75 && proto != WS_PROTO_HIXIE76
        && proto != WS_PROTO_RFC6455) {
        return NULL;
    }
    s = apr_pcalloc(pool, sizeof(*s));
    s->proto = proto;
    s->cfg = *cfg;
    s->cb = *cb;
    s->baton = baton;
    s->state = WS_SESSION_OPEN;
    s->rx = is_rfc6455(s) ? RX_HEADER : HX_TYPE;
    s->hdr_need = 2;
    apr_pool_cleanup_register(pool, s, free_buffer, apr_pool_cleanup_null);
    if (is_rfc6455(s) && cfg->deflate.enabled) {
        s->deflate = ws_deflate_create(pool, &cfg->deflate);
    }
    else {
        memset(&s->cfg.deflate, 0, sizeof(s->cfg.deflate));
    }
    return s;
}

ws_session_state_e ws_session_state(const ws_session *s)
{
    return s->state;
}

int ws_session_close_code(const ws_session *s)
{
    return s->close_code;
}

const char *ws_session_error(const ws_session *s)
{
    return s->error;
}

/* ------------------------------------------------------------------ */
/* Message buffer                                                      */

static int over_limit(const ws_session *s, apr_uint64_t len)
{
    return (s->cfg.max_message && len > s->cfg.max_message)
        || len > APR_SIZE_MAX;
}

/* Make room for need bytes in all (need is within the limit): double,
 * but never past the limit. */
static int reserve(ws_session *s, apr_size_t need)
{
    apr_size_t cap = s->buf_cap ? s->buf_cap : WS_BUF_MIN;
    char *grown;

    if (need <= s->buf_cap) {
        return 1;
    }
    while (cap < need && cap <= APR_SIZE_MAX / 2) {
        cap *= 2;
    }
    if (s->cfg.max_message && cap > s->cfg.max_message) {
        cap = (apr_size_t)s->cfg.max_message;
    }
    if (cap < need) {
        cap = need;
    }
    grown = realloc(s->buf, cap);
    if (!grown) {
        return 0;
    }
    s->buf = grown;
    s->buf_cap = cap;
    return 1;
}

/* Copy len payload bytes to dst, removing the mask.  The hot path of
 * large messages: the key is rotated to this position once, then applied
 * eight bytes at a time (memcpy keeps it free of alignment assumptions
 * and compiles to plain loads and stores). */
static void unmask_at(const ws_session *s, apr_uint64_t pos,
                      unsigned char *dst, const unsigned char *src,
                      apr_size_t len)
{
    unsigned char key[8];
    apr_uint64_t key64, word;
    apr_size_t i;

    for (i = 0; i < sizeof(key); i++) {
        key[i] = s->mask[(pos + i) & 3];
    }
    memcpy(&key64, key, sizeof(key64));
    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&word, src + i, sizeof(word));
        word ^= key64;
        memcpy(dst + i, &word, sizeof(word));
    }
    for (; i < len; i++) {
        dst[i] = src[i] ^ key[i & 7];
    }
}

/* The same at the current frame position. */
static void unmask(ws_session *s, unsigned char *dst, const unsigned char *src,
                   apr_size_t len)
{
    unmask_at(s, s->frame_pos, dst, src, len);
}

/* Stream mode hands data over in pieces of at most WS_PIECE_MAX bytes:
 * how many of the len bytes at hand the next step may take. */
static apr_size_t piece_size(const ws_session *s, apr_size_t len)
{
    return s->cfg.stream && len > WS_PIECE_MAX ? WS_PIECE_MAX : len;
}

/* Add len (> 0) bytes of message data to the buffer, unmasked for RFC
 * 6455.  Returns where they went, or NULL when the session failed. */
static unsigned char *append(ws_session *s, const unsigned char *src,
                             apr_size_t len)
{
    unsigned char *dst;

    if (!reserve(s, s->buf_len + len)) {
        fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory for a message");
        return NULL;
    }
    dst = (unsigned char *)s->buf + s->buf_len;
    if (is_rfc6455(s)) {
        unmask(s, dst, src, len);
    }
    else {
        memcpy(dst, src, len);
    }
    s->buf_len += len;
    s->msg_len += len;
    return dst;
}

/* Stream mode: hand over the bytes the buffer holds as a piece that does
 * not end its message (none: nothing to do). */
static void deliver_piece(ws_session *s)
{
    if (s->cfg.stream && s->buf_len) {
        s->cb.on_data(s->baton, s->msg_opcode, s->buf, s->buf_len, 0);
        s->buf_len = 0;
    }
}

/* The message is complete: deliver it (stream mode: its last piece) and
 * get ready for the next one. */
static void deliver_message(ws_session *s)
{
    int opcode = s->msg_opcode;
    const char *data = s->buf ? s->buf : "";

    s->msg_opcode = 0;
    s->msg_compressed = 0;
    s->msg_len = s->msg_wire = 0;
    if (s->cfg.stream) {
        s->cb.on_data(s->baton, opcode, data, s->buf_len, 1);
    }
    else {
        s->cb.on_message(s->baton, opcode, data, s->buf_len);
    }
    s->buf_len = 0;
    if (s->buf_cap > WS_BUF_KEEP) {
        free_buffer(s);
    }
}

/* ------------------------------------------------------------------ */
/* RFC 6455 receive                                                    */

static int is_control(int opcode)
{
    return opcode & 0x8;
}

static int close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003)
        || (code >= 1007 && code <= 1014)
        || (code >= 3000 && code <= 4999);
}

/* First header byte: FIN, RSV, opcode and where it falls in a message. */
static void check_first_byte(ws_session *s, unsigned char b)
{
    static const char *const reserved[16] = {
        NULL, NULL, NULL,
        "reserved opcode 0x3", "reserved opcode 0x4", "reserved opcode 0x5",
        "reserved opcode 0x6", "reserved opcode 0x7",
        NULL, NULL, NULL,
        "reserved opcode 0xB", "reserved opcode 0xC", "reserved opcode 0xD",
        "reserved opcode 0xE", "reserved opcode 0xF"
    };

    s->fin = (b & WS_FIN) != 0;
    s->opcode = b & WS_OPCODE;
    /* RSV1 is permessage-deflate's, on a message's first frame only */
    if ((b & WS_RSV) & ~WS_RSV1 || ((b & WS_RSV1) && !s->deflate)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "reserved bit set");
    }
    else if ((b & WS_RSV1) && is_control(s->opcode)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "RSV1 set on a control frame");
    }
    else if ((b & WS_RSV1) && s->opcode == WS_OP_CONTINUATION) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR,
             "RSV1 set on a continuation frame");
    }
    else if (reserved[s->opcode]) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, reserved[s->opcode]);
    }
    else if (is_control(s->opcode) && !s->fin) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame");
    }
    else if (s->opcode == WS_OP_CONTINUATION && !s->msg_opcode) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR,
             "continuation frame outside a message");
    }
    else if (!is_control(s->opcode) && s->opcode != WS_OP_CONTINUATION
             && s->msg_opcode) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR,
             "new message inside a fragmented message");
    }
}

/* Second header byte: mask bit and 7-bit length; sets the header size. */
static void check_second_byte(ws_session *s, unsigned char b)
{
    unsigned int len7 = b & WS_LEN7;

    if (!(b & WS_MASKED)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "unmasked client frame");
    }
    else if (is_control(s->opcode) && len7 > WS_CONTROL_MAX) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes");
    }
    else if (s->opcode == WS_OP_CLOSE && len7 == 1) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
    }
    s->hdr_need = 2 + 4 + (len7 == WS_LEN16 ? 2 : len7 == WS_LEN64 ? 8 : 0);
}

static apr_uint64_t header_payload_length(const ws_session *s)
{
    unsigned int len7 = s->hdr[1] & WS_LEN7;
    apr_size_t i, bytes = len7 == WS_LEN16 ? 2 : len7 == WS_LEN64 ? 8 : 0;
    apr_uint64_t len = bytes ? 0 : len7;

    for (i = 0; i < bytes; i++) {
        len = (len << 8) | s->hdr[2 + i];
    }
    return len;
}

static void end_frame(ws_session *s);

/* The header is complete: check the length and start on the payload. */
static void begin_payload(ws_session *s)
{
    s->frame_len = header_payload_length(s);
    s->frame_pos = 0;
    memcpy(s->mask, s->hdr + s->hdr_len - 4, 4);
    if (s->frame_len >> 63) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "frame length has its top bit set");
        return;
    }
    /* RFC 6455 5.2: "the minimal number of bytes MUST be used"; a peer
     * that ignores that is refused rather than guessed about. */
    if (s->hdr_len > 6 && s->frame_len < (s->hdr_len == 8 ? WS_LEN16
                                                           : 0x10000)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR,
             "frame length not in its shortest form");
        return;
    }
    if (s->opcode == WS_OP_TEXT || s->opcode == WS_OP_BINARY) {
        s->msg_compressed = (s->hdr[0] & WS_RSV1) != 0;
    }
    /* the frame alone, and the message it adds to; checked before a byte
     * of it is stored (control frames have their own 125-byte cap; a
     * compressed message is checked as it inflates) */
    if (!is_control(s->opcode) && !s->msg_compressed
        && over_limit(s, s->msg_len + s->frame_len)) {
        fail(s, WS_CLOSE_TOO_BIG, "message exceeds WebSocketMaxMessageSize");
        return;
    }
    if (s->opcode == WS_OP_TEXT || s->opcode == WS_OP_BINARY) {
        s->msg_opcode = s->opcode;
        ws_utf8_init(&s->utf8);
    }
    s->rx = RX_PAYLOAD;
    if (s->frame_len == 0) {
        end_frame(s);
    }
}

static apr_size_t rx_header(ws_session *s, const unsigned char *p,
                            apr_size_t len)
{
    apr_size_t used = 0;

    while (used < len && s->hdr_len < s->hdr_need
           && s->state != WS_SESSION_FAILED) {
        unsigned char b = p[used++];

        s->hdr[s->hdr_len++] = b;
        if (s->hdr_len == 1) {
            check_first_byte(s, b);
        }
        else if (s->hdr_len == 2) {
            check_second_byte(s, b);
        }
    }
    if (s->hdr_len == s->hdr_need && s->state != WS_SESSION_FAILED) {
        begin_payload(s);
    }
    return used;
}

/* Payload of a data frame: into the message buffer, checking text as it
 * comes (before any of it can be handed over). */
static void take_data(ws_session *s, const unsigned char *p, apr_size_t len)
{
    unsigned char *dst = append(s, p, len);

    if (dst && s->msg_opcode == WS_OP_TEXT
        && ws_utf8_feed(&s->utf8, dst, len) == WS_UTF8_INVALID) {
        fail(s, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
    }
}

/* Take what the decompressor makes of the input it holds, a bounded
 * amount at a time, each checked against max_message (before more is
 * made) and, for text, UTF-8.  Stream mode hands over each full piece.
 * Returns 0 when the session failed. */
static int take_inflated(ws_session *s)
{
    for (;;) {
        apr_size_t room, made;
        int rc;

        if (s->cfg.stream && s->buf_len >= WS_PIECE_MAX) {
            deliver_piece(s);
            if (s->state == WS_SESSION_FAILED) {
                return 0;   /* a write from the callback was refused */
            }
        }
        /* the buffer grows (doubling) as the output does, not by a chunk
         * at a time: a small message keeps a small buffer */
        if (s->buf_len == s->buf_cap && !reserve(s, s->buf_len + 1)) {
            fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory for a message");
            return 0;
        }
        room = s->buf_cap - s->buf_len;
        if (room > WS_INFLATE_CHUNK) {
            room = WS_INFLATE_CHUNK;
        }
        if (s->cfg.stream && room > WS_PIECE_MAX - s->buf_len) {
            room = WS_PIECE_MAX - s->buf_len;
        }
        /* one byte past the limit is enough to know */
        if (s->cfg.max_message
            && room > s->cfg.max_message - s->msg_len + 1) {
            room = (apr_size_t)(s->cfg.max_message - s->msg_len + 1);
        }
        rc = ws_inflate(s->deflate, s->buf + s->buf_len, room, &made);
        /* what came before an error counts first, as it would have had
         * the input come in smaller pieces */
        if (made) {
            int over = over_limit(s, s->msg_len + made);
            /* the bytes within the limit come first: their UTF-8 is
             * judged before the byte that passes it, however the output
             * was cut */
            apr_size_t within = over && s->cfg.max_message
                                && s->msg_len <= s->cfg.max_message
                                ? (apr_size_t)(s->cfg.max_message
                                               - s->msg_len)
                                : made;

            if (s->msg_opcode == WS_OP_TEXT
                && ws_utf8_feed(&s->utf8,
                                (unsigned char *)s->buf + s->buf_len,
                                within) == WS_UTF8_INVALID) {
                fail(s, WS_CLOSE_INVALID_DATA,
                     "invalid UTF-8 in text message");
                return 0;
            }
            if (over) {
                fail(s, WS_CLOSE_TOO_BIG, "message exceeds "
                     "WebSocketMaxMessageSize once decompressed");
                return 0;
            }
            s->buf_len += made;
            s->msg_len += made;
        }
        if (rc == WS_INFLATE_BAD) {
            fail(s, WS_CLOSE_INVALID_DATA,
                 "compressed message does not inflate");
            return 0;
        }
        if (rc == WS_INFLATE_NOMEM) {
            fail(s, WS_CLOSE_INTERNAL_ERROR,
                 "out of memory for decompression");
            return 0;
        }
        if (rc == WS_INFLATE_DONE) {
            return 1;
        }
    }
}

/* Payload of a compressed message: unmasked a slice at a time into the
 * decompressor. */
static void take_compressed(ws_session *s, const unsigned char *p,
                            apr_size_t len)
{
    unsigned char slice[WS_INFLATE_SLICE];
    apr_uint64_t pos = s->frame_pos;

    s->msg_wire += len;
    while (len > 0) {
        apr_size_t n = len < sizeof(slice) ? len : sizeof(slice);

        unmask_at(s, pos, slice, p, n);
        ws_inflate_input(s->deflate, (const char *)slice, n);
        if (!take_inflated(s)) {
            return;
        }
        p += n;
        len -= n;
        pos += n;
    }
}

/* The last frame of a compressed message is in: the tail that the sender
 * removed goes in, what it gives comes out, and the data must have ended
 * on a block boundary.  A message with no compressed bytes at all (sent
 * so by some clients for an empty message) is empty.  Returns 0 when the
 * session failed. */
static int end_compressed(ws_session *s)
{
    if (s->msg_wire == 0) {
        return 1;
    }
    ws_inflate_input_tail(s->deflate);
    if (!take_inflated(s)) {
        return 0;
    }
    if (!ws_inflate_end(s->deflate)) {
        fail(s, WS_CLOSE_INVALID_DATA,
             "compressed message does not end on a deflate block boundary");
        return 0;
    }
    return 1;
}

static apr_size_t rx_payload(ws_session *s, const unsigned char *p,
                             apr_size_t len)
{
    apr_uint64_t left = s->frame_len - s->frame_pos;
    apr_size_t n = piece_size(s, left < len ? (apr_size_t)left : len);

    if (is_control(s->opcode)) {
        unmask(s, s->control + s->frame_pos, p, n);
    }
    else if (s->msg_compressed) {
        take_compressed(s, p, n);
    }
    else {
        take_data(s, p, n);
    }
    s->frame_pos += n;
    if (s->state == WS_SESSION_FAILED) {
        return n;
    }
    if (s->frame_pos == s->frame_len) {
        end_frame(s);
    }
    else {
        deliver_piece(s);
    }
    return n;
}

static void handle_close(ws_session *s)
{
    const char *reason;
    apr_size_t reason_len;
    int code;

    /* a 1-byte payload was refused with the header */
    if (s->frame_len == 0) {
        peer_closed(s, WS_CLOSE_NO_STATUS, "", 0);
        return;
    }
    code = (s->control[0] << 8) | s->control[1];
    reason = (const char *)s->control + 2;
    reason_len = (apr_size_t)s->frame_len - 2;
    if (!close_code_valid(code)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
    }
    else if (!ws_utf8_valid((const unsigned char *)reason, reason_len)) {
        fail(s, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in close reason");
    }
    else {
        peer_closed(s, code, reason, reason_len);
    }
}

static void handle_control(ws_session *s)
{
    const char *data = (const char *)s->control;
    apr_size_t len = (apr_size_t)s->frame_len;

    switch (s->opcode) {
    case WS_OP_PING:
        /* once our close is out, nothing more may follow it */
        if (s->state == WS_SESSION_OPEN
            && write_frame(s, 1, WS_OP_PONG, data, len) != APR_SUCCESS) {
            return;
        }
        if (s->cb.on_ping) {
            s->cb.on_ping(s->baton, data, len);
        }
        break;
    case WS_OP_PONG:
        if (s->cb.on_pong) {
            s->cb.on_pong(s->baton, data, len);
        }
        break;
    default:
        handle_close(s);
        break;
    }
}

static void end_frame(ws_session *s)
{
    s->rx = RX_HEADER;
    s->hdr_len = 0;
    s->hdr_need = 2;
    if (is_control(s->opcode)) {
        handle_control(s);
    }
    else if (!s->fin) {
        deliver_piece(s);
    }
    else if (s->msg_compressed && !end_compressed(s)) {
        return;
    }
    else if (s->msg_opcode == WS_OP_TEXT && s->utf8.need) {
        fail(s, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
    }
    else {
        deliver_message(s);
    }
}

/* ------------------------------------------------------------------ */
/* hixie-75/76 receive                                                 */

static apr_size_t hx_type(ws_session *s, unsigned char b)
{
    if (b == HIXIE_TEXT_START) {
        s->msg_opcode = WS_OP_TEXT;
        s->rx = HX_TEXT;
    }
    else if (b & HIXIE_LENGTH_MORE) {
        s->hx_type = b;
        s->hx_left = 0;
        s->rx = HX_LENGTH;
    }
    else {
        s->rx = HX_DISCARD;
    }
    return 1;
}

/* Text up to the 0xFF that ends it; it is not checked for UTF-8. */
static apr_size_t hx_text(ws_session *s, const unsigned char *p,
                          apr_size_t len)
{
    const unsigned char *end;
    apr_size_t n;

    len = piece_size(s, len);
    end = memchr(p, HIXIE_TEXT_END, len);
    n = end ? (apr_size_t)(end - p) : len;
    if (over_limit(s, s->msg_len + n)) {
        fail(s, WS_CLOSE_TOO_BIG, "message exceeds WebSocketMaxMessageSize");
        return n;
    }
    if (n && !append(s, p, n)) {
        return n;
    }
    if (!end) {
        deliver_piece(s);
        return n;
    }
    s->rx = HX_TYPE;
    deliver_message(s);
    return n + 1;
}

/* One byte of a base-128 big-endian length; the high bit says more. */
static apr_size_t hx_length(ws_session *s, unsigned char b)
{
    if (s->hx_left >> (64 - 7)) {
        fail(s, WS_CLOSE_PROTOCOL_ERROR, "hixie frame length overflows");
        return 1;
    }
    s->hx_left = (s->hx_left << 7) | (b & HIXIE_LENGTH_BITS);
    if (b & HIXIE_LENGTH_MORE) {
        return 1;
    }
    if (s->hx_type == 0xFF && s->hx_left == 0) {
        peer_closed(s, WS_CLOSE_NO_STATUS, "", 0);
    }
    s->rx = s->hx_left ? HX_SKIP : HX_TYPE;
    return 1;
}

/* Skip a length-prefixed frame without keeping any of it. */
static apr_size_t hx_skip(ws_session *s, apr_size_t len)
{
    apr_size_t n = s->hx_left < len ? (apr_size_t)s->hx_left : len;

    s->hx_left -= n;
    if (s->hx_left == 0) {
        s->rx = HX_TYPE;
    }
    return n;
}

/* Drop an unknown 0xFF-terminated frame. */
static apr_size_t hx_discard(ws_session *s, const unsigned char *p,
                             apr_size_t len)
{
    const unsigned char *end = memchr(p, HIXIE_TEXT_END, len);

    if (!end) {
        return len;
    }
    s->rx = HX_TYPE;
    return (apr_size_t)(end - p) + 1;
}

/* ------------------------------------------------------------------ */
/* Feeding                                                             */

/* Consume bytes for the current receive state; returns how many. */
static apr_size_t consume(ws_session *s, const unsigned char *p,
                          apr_size_t len)
{
    switch (s->rx) {
    case RX_HEADER:
        return rx_header(s, p, len);
    case RX_PAYLOAD:
        return rx_payload(s, p, len);
    case HX_TYPE:
        return hx_type(s, *p);
    case HX_TEXT:
        return hx_text(s, p, len);
    case HX_LENGTH:
        return hx_length(s, *p);
    case HX_SKIP:
        return hx_skip(s, len);
    case HX_DISCARD:
        break;
    }
    return hx_discard(s, p, len);
}

ws_session_state_e ws_session_feed(ws_session *s, const char *data,
                                   apr_size_t len)
{
    const unsigned char *p = (const unsigned char *)data;

    while (len > 0 && (s->state == WS_SESSION_OPEN
                       || s->state == WS_SESSION_CLOSING)) {
        apr_size_t used = consume(s, p, len);

        p += used;
        len -= used;
    }
    return s->state;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static apr_status_t send_hixie_text(ws_session *s, const char *data,
                                    apr_size_t len)
{
    static const unsigned char start = HIXIE_TEXT_START;
    static const unsigned char end = HIXIE_TEXT_END;
    apr_status_t rv;

    /* 0xFF would end the frame early; valid UTF-8 never contains it */
    if (len && memchr(data, HIXIE_TEXT_END, len)) {
        return APR_EINVAL;
    }
    if ((rv = emit(s, &start, 1)) != APR_SUCCESS
        || (rv = emit(s, data, len)) != APR_SUCCESS) {
        return rv;
    }
    return emit(s, &end, 1);
}

/* A message as frames of at most fragment_size payload bytes; rsv1 on
 * the first when the payload is compressed. */
static apr_status_t send_fragments(ws_session *s, int opcode, int rsv1,
                                   const char *data, apr_size_t len)
{
    apr_size_t max = s->cfg.fragment_size ? s->cfg.fragment_size : len;

    for (;;) {
        apr_size_t n = len < max ? len : max;
        apr_status_t rv = write_header_rsv(s, n == len, rsv1, opcode, n);

        if (rv == APR_SUCCESS) {
            rv = emit(s, data, n);
        }
        if (rv != APR_SUCCESS || n == len) {
            return rv;
        }
        data += n;
        len -= n;
        opcode = WS_OP_CONTINUATION;
        rsv1 = 0;
    }
}

/* permessage-deflate: the message compressed, or as it is when it cannot
 * be (level 0, empty, out of memory: RFC 7692 lets any message go
 * uncompressed). */
static apr_status_t send_message(ws_session *s, int opcode,
                                 const char *data, apr_size_t len)
{
    char *packed;
    apr_size_t packed_len;
    apr_status_t rv;

    if (!s->deflate || ws_deflate_message(s->deflate, data, len, &packed,
                                          &packed_len) != APR_SUCCESS) {
        return send_fragments(s, opcode, 0, data, len);
    }
    rv = send_fragments(s, opcode, 1, packed, packed_len);
    free(packed);
    return rv;
}

apr_status_t ws_session_send(ws_session *s, int opcode, const char *data,
                             apr_size_t len)
{
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) {
        return APR_EINVAL;
    }
    if (s->state != WS_SESSION_OPEN) {
        return APR_EOF;
    }
    if (s->tx_opcode) {
        return APR_EBUSY;
    }
    if (!is_rfc6455(s)) {
        return opcode == WS_OP_TEXT ? send_hixie_text(s, data, len)
                                    : APR_ENOTIMPL;
    }
    return send_message(s, opcode, data, len);
}

/* Where a frame of opcode may begin in the message being sent. */
static apr_status_t check_frame_sequence(const ws_session *s, int opcode)
{
    if (s->tx_frame) {
        return APR_EBUSY;
    }
    if ((opcode == WS_OP_CONTINUATION) != (s->tx_opcode != 0)) {
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

/* What precedes a frame's payload: RFC 6455 its header; hixie the 0x00
 * that opens a message's text frame. */
static apr_status_t write_frame_start(ws_session *s, int opcode, int fin,
                                      apr_uint64_t len)
{
    static const unsigned char start = HIXIE_TEXT_START;

    if (is_rfc6455(s)) {
        return write_header(s, fin, opcode, len);
    }
    return opcode == WS_OP_CONTINUATION ? APR_SUCCESS : emit(s, &start, 1);
}

apr_status_t ws_session_frame_begin(ws_session *s, int opcode, int fin,
                                    apr_uint64_t len)
{
    apr_status_t rv;

    if ((opcode != WS_OP_CONTINUATION && opcode != WS_OP_TEXT
         && opcode != WS_OP_BINARY) || len >> 63) {
        return APR_EINVAL;
    }
    if (s->state != WS_SESSION_OPEN) {
        return APR_EOF;
    }
    if (!is_rfc6455(s) && opcode == WS_OP_BINARY) {
        return APR_ENOTIMPL;
    }
    if ((rv = check_frame_sequence(s, opcode)) != APR_SUCCESS
        || (rv = write_frame_start(s, opcode, fin, len)) != APR_SUCCESS) {
        return rv;
    }
    if (opcode != WS_OP_CONTINUATION) {
        s->tx_opcode = opcode;
    }
    s->tx_frame = 1;
    s->tx_fin = fin != 0;
    return APR_SUCCESS;
}

apr_status_t ws_session_frame_end(ws_session *s)
{
    static const unsigned char end = HIXIE_TEXT_END;

    if (!s->tx_frame) {
        return APR_EINVAL;
    }
    s->tx_frame = 0;
    if (s->state != WS_SESSION_OPEN) {
        return APR_EOF;
    }
    if (!s->tx_fin) {
        return APR_SUCCESS;
    }
    s->tx_opcode = 0;
    return is_rfc6455(s) ? APR_SUCCESS : emit(s, &end, 1);
}

int ws_session_sending(const ws_session *s)
{
    return s->state == WS_SESSION_OPEN && s->tx_opcode != 0;
}

apr_status_t ws_session_ping(ws_session *s, const char *data,
                             apr_size_t len)
{
    if (!is_rfc6455(s)) {
        return APR_ENOTIMPL;
    }
    if (len > WS_CONTROL_MAX) {
        return APR_EINVAL;
    }
    if (s->state != WS_SESSION_OPEN) {
        return APR_EOF;
    }
    if (s->tx_frame) {
        return APR_EBUSY;
    }
    return write_frame(s, 1, WS_OP_PING, data, len);
}

/* Length of reason cut to max bytes without splitting a UTF-8 sequence. */
static apr_size_t truncate_utf8(const char *reason, apr_size_t max)
{
    apr_size_t len = strlen(reason);

    if (len <= max) {
        return len;
    }
    /* back up to the start of the sequence the cut would split */
    while (max > 0 && ((unsigned char)reason[max] & 0xC0) == 0x80) {
        max--;
    }
    return max;
}

apr_status_t ws_session_close(ws_session *s, int code, const char *reason)
{
    apr_status_t rv;

    if (is_rfc6455(s) && code && !close_code_valid(code)) {
        return APR_EINVAL;
    }
    if (s->state != WS_SESSION_OPEN) {
        return APR_EOF;
    }
    if (s->tx_frame) {
        return APR_EBUSY;
    }
    if (!is_rfc6455(s)) {
        rv = write_hixie_close(s);
    }
    else if (!code) {
        rv = write_close(s, 0, "", 0);
    }
    else {
        reason = reason ? reason : "";
        rv = write_close(s, code, reason,
                         truncate_utf8(reason, WS_CONTROL_MAX - 2));
    }
    if (rv == APR_SUCCESS) {
        s->state = WS_SESSION_CLOSING;
    }
    return rv;
}
