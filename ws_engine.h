/* Licensed under the Apache License, Version 2.0.
 *
 * ws_engine.h: the protocol engine of mod_websocket.
 *
 * Nothing here includes an httpd header or touches a socket: bytes go in,
 * callbacks and bytes to write come out.  The engine is split by job:
 *   ws_handshake.c  handshake arithmetic and header parsing (both families)
 *   ws_frame.c      the framing state machine (ws_session) for both families
 *   ws_utf8.c       incremental UTF-8 validation
 *   ws_deflate.c    permessage-deflate (RFC 7692): negotiation, and the
 *                   per-session compressor and decompressor (zlib)
 */
#ifndef WS_ENGINE_H
#define WS_ENGINE_H

#include <apr_pools.h>
#include <apr_tables.h>

/* Protocol families (see DESIGN.md section 2). */
typedef enum {
    WS_PROTO_NONE = 0,
    WS_PROTO_HIXIE75,
    WS_PROTO_HIXIE76,
    WS_PROTO_RFC6455
} ws_proto_e;

/* RFC 6455 opcodes. */
#define WS_OP_CONTINUATION 0x0
#define WS_OP_TEXT         0x1
#define WS_OP_BINARY       0x2
#define WS_OP_CLOSE        0x8
#define WS_OP_PING         0x9
#define WS_OP_PONG         0xA

/* RFC 6455 close codes used by the server. */
#define WS_CLOSE_NORMAL           1000
#define WS_CLOSE_GOING_AWAY       1001
#define WS_CLOSE_PROTOCOL_ERROR   1002
#define WS_CLOSE_UNSUPPORTED      1003
#define WS_CLOSE_NO_STATUS        1005 /* never sent: "close had no code" */
#define WS_CLOSE_ABNORMAL         1006 /* never sent: "no close frame" */
#define WS_CLOSE_INVALID_DATA     1007
#define WS_CLOSE_POLICY           1008
#define WS_CLOSE_TOO_BIG          1009
#define WS_CLOSE_INTERNAL_ERROR   1011

/* ------------------------------------------------------------------ */
/* UTF-8 (ws_utf8.c)                                                   */

/* Incremental validator state; initialise with ws_utf8_init(). */
typedef struct ws_utf8_state {
    unsigned int need;          /* continuation bytes still expected */
    unsigned char lo, hi;       /* allowed range of the next byte */
} ws_utf8_state;

#define WS_UTF8_OK       0  /* valid, and ends on a character boundary */
#define WS_UTF8_PARTIAL  1  /* valid so far, ends inside a character */
#define WS_UTF8_INVALID -1  /* no continuation can make this valid */

void ws_utf8_init(ws_utf8_state *st);
/* Feed the next bytes; returns WS_UTF8_OK, _PARTIAL or _INVALID.  Once
 * _INVALID is returned the state stays invalid.  Overlong forms,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF are invalid,
 * and they are reported at the first byte that makes them so. */
int ws_utf8_feed(ws_utf8_state *st, const unsigned char *data,
                 apr_size_t len);
/* Whole-buffer convenience: non-zero when data is complete valid UTF-8. */
int ws_utf8_valid(const unsigned char *data, apr_size_t len);

/* ------------------------------------------------------------------ */
/* Handshake (ws_handshake.c)                                          */

/* Which family a request speaks, from its headers (NULL when absent).
 * Sec-WebSocket-Key or -Version present: RFC 6455; Key1 or Key2 present:
 * hixie-76; otherwise hixie-75. */
ws_proto_e ws_detect_proto(const char *key, const char *version,
                           const char *key1, const char *key2);

/* hixie-76 key value: the digits of key read as a decimal number divided
 * by the number of spaces.  Returns NULL and sets *value on success, or a
 * static string saying what is wrong (no spaces, no digits, number over
 * 2^32-1, number not an exact multiple of the spaces). */
const char *ws_hixie76_key_value(const char *key, apr_uint32_t *value);

/* hixie-76 answer: MD5 of n1 and n2 as 32-bit big-endian followed by the
 * 8 key bytes. */
void ws_hixie76_answer(apr_uint32_t n1, apr_uint32_t n2,
                       const unsigned char key3[8],
                       unsigned char answer[16]);

/* RFC 6455: NULL when key is the base64 of exactly 16 bytes, otherwise a
 * static string saying what is wrong. */
const char *ws_rfc6455_check_key(const char *key);

/* RFC 6455 Sec-WebSocket-Accept: base64(SHA-1(key + GUID)), 28 chars and
 * a NUL. */
void ws_rfc6455_accept(const char *key, char accept[29]);

/* RFC 6455 versions we speak: 13, 8, 7.  Non-zero when version (a header
 * value, may be NULL) names one of them exactly. */
int ws_rfc6455_version_ok(const char *version);

/* Non-zero when the comma-separated header value list contains token
 * (case-insensitive, optional whitespace around elements). */
int ws_token_list_has(const char *list, const char *token);

/* Split a comma-separated header value into its trimmed, non-empty
 * elements (array of const char *), allocated from p.  list may be NULL. */
apr_array_header_t *ws_token_list_split(apr_pool_t *p, const char *list);

/* ------------------------------------------------------------------ */
/* permessage-deflate, RFC 7692 (ws_deflate.c)                         */

/* What the server is willing to do (the WebSocketCompression*
 * directives). */
typedef struct ws_deflate_config {
    /* zlib compression level of what the server sends, 1-9; 0: the
     * server sends every message uncompressed (RFC 7692 allows it per
     * message) and never allocates a compressor, but still accepts
     * compressed messages. */
    int level;
    /* The largest LZ77 window, as bits (8-15), the server compresses
     * with, and asks the client to compress with when the client's offer
     * lets it choose (client_max_window_bits). */
    int max_window_bits;
    /* zlib memLevel of the compressor, 1-9. */
    int mem_level;
    /* Non-zero: the answer always carries server_no_context_takeover
     * and client_no_context_takeover, so that both sides start every
     * message afresh and the server frees its zlib streams between
     * messages. */
    int no_context_takeover;
} ws_deflate_config;

/* What was negotiated for one connection. */
typedef struct ws_deflate_params {
    int enabled;                     /* 0: no extension */
    int server_no_context_takeover;  /* we reset our compressor */
    int client_no_context_takeover;  /* the client resets its own */
    int server_max_window_bits;      /* 8-15: our window (8: zlib's 9,
                                      * whose matches reach at most 250
                                      * bytes back, within 2^8) */
    int client_max_window_bits;      /* 8-15: the client's window */
    int level;                       /* from ws_deflate_config */
    int mem_level;
} ws_deflate_params;

/* Negotiate permessage-deflate from a Sec-WebSocket-Extensions request
 * header value (several header lines joined with ", "; NULL when absent).
 * The client's offers are considered in order and the first one the
 * server can accept wins (RFC 7692 5); an offer with an unknown or
 * repeated parameter or an invalid value, or that is malformed, is
 * declined, never fatal.  Other extensions are ignored.  Returns the
 * Sec-WebSocket-Extensions answer, allocated from p, and fills *params;
 * or returns NULL (no offer accepted, *params->enabled 0). */
const char *ws_deflate_negotiate(apr_pool_t *p, const char *header,
                                 const ws_deflate_config *cfg,
                                 ws_deflate_params *params);

/* A session's compressor and decompressor.  The zlib streams are made on
 * the first compressed message in each direction and, without context
 * takeover in that direction, freed after every message. */
typedef struct ws_deflate ws_deflate;

/* From pool, with a cleanup that frees the zlib streams. */
ws_deflate *ws_deflate_create(apr_pool_t *pool, const ws_deflate_params *p);

/* Compress one whole message: *out (malloc'd, the caller frees it) gets
 * the payload of a compressed message, its 00 00 FF FF tail removed.
 * APR_ENOTIMPL when the server does not compress (level 0); APR_ENOMEM;
 * APR_EGENERAL when zlib fails.  On failure nothing was sent and the
 * compressor is as it was, so the message may go uncompressed. */
apr_status_t ws_deflate_message(ws_deflate *d, const char *data,
                                apr_size_t len, char **out,
                                apr_size_t *out_len);

/* Decompression, a message at a time.  Give it the message's compressed
 * bytes as they arrive with ws_inflate_input (they must stay valid until
 * ws_inflate says they are used), then after the last frame the tail with
 * ws_inflate_input_tail, and take the output with ws_inflate: */
void ws_inflate_input(ws_deflate *d, const char *in, apr_size_t len);
void ws_inflate_input_tail(ws_deflate *d);
#define WS_INFLATE_DONE     0   /* the input is used up */
#define WS_INFLATE_MORE     1   /* out is full: call again */
#define WS_INFLATE_BAD     -1   /* not valid deflate data */
#define WS_INFLATE_NOMEM   -2
/* Produce at most cap bytes into out (*produced of them). */
int ws_inflate(ws_deflate *d, char *out, apr_size_t cap,
               apr_size_t *produced);
/* The message's tail was inflated: non-zero when its data ended where a
 * deflate block ends (otherwise it was truncated or garbled).  Frees the
 * decompressor without client context takeover. */
int ws_inflate_end(ws_deflate *d);
/* Forget a message abandoned halfway (session failed). */
void ws_inflate_abort(ws_deflate *d);

/* ------------------------------------------------------------------ */
/* Framing: the session state machine (ws_frame.c)                     */

typedef struct ws_session ws_session;

typedef struct ws_session_callbacks {
    /* Bytes for the peer, in order.  A frame may arrive in several calls
     * (header, then payload).  Return non-zero if they cannot be sent;
     * the session then fails. Required. */
    int (*write)(void *baton, const char *data, apr_size_t len);
    /* A complete message: WS_OP_TEXT (valid UTF-8 for RFC 6455) or
     * WS_OP_BINARY.  data is only valid during the call.  Required unless
     * the session streams (cfg.stream); never called when it does. */
    void (*on_message)(void *baton, int opcode, const char *data,
                       apr_size_t len);
    /* A ping arrived; the pong is already written.  Optional. */
    void (*on_ping)(void *baton, const char *data, apr_size_t len);
    /* A pong arrived.  Optional. */
    void (*on_pong)(void *baton, const char *data, apr_size_t len);
    /* The peer's close: code (WS_CLOSE_NO_STATUS when it sent none, and
     * for the hixie 0xFF 0x00) and reason (valid UTF-8, not NUL
     * terminated).  The reply close, if due, is already written.
     * Optional. */
    void (*on_close)(void *baton, int code, const char *reason,
                     apr_size_t len);
    /* Stream mode (cfg.stream): the next piece of a data message, as
     * soon as it has arrived (RFC 6455: unmasked).  opcode is the
     * message's type, WS_OP_TEXT or WS_OP_BINARY, for every piece (also
     * those of continuation frames).  final is 0 on every piece but the
     * message's last, which comes with final 1 once its final frame (or
     * the hixie 0xFF) has arrived, and may be empty; other pieces are
     * never empty, nor larger than 64 KiB.  RFC 6455 text is checked as
     * it goes: a piece is only delivered once all of it is known to be
     * valid UTF-8, and the final one only when the message ends on a
     * character boundary (otherwise the session fails with 1007, and
     * what is left of the message is never delivered).  data is only
     * valid during the call.  Required when the session streams. */
    void (*on_data)(void *baton, int opcode, const char *data,
                    apr_size_t len, int final);
} ws_session_callbacks;

typedef struct ws_session_config {
    /* Largest frame payload and largest message accepted, counted over
     * the message's frames (RFC 6455: from the frame headers, before any
     * of the payload arrives); bigger fails the session with 1009 before
     * anything is allocated for it.  0: no limit. */
    apr_uint64_t max_message;
    /* Messages sent are split into frames of at most this many payload
     * bytes (RFC 6455 only).  0: never split. */
    apr_size_t fragment_size;
    /* Non-zero: data messages are delivered piecewise through on_data,
     * with no more than one piece held at a time, instead of whole
     * through on_message.  0: whole messages. */
    int stream;
    /* permessage-deflate as negotiated (RFC 6455 sessions only; all zero:
     * none).  With it, RSV1 marks the first frame of a compressed message
     * (anywhere else, or without it, RSV1 fails with 1002); compressed
     * messages are inflated as their bytes arrive, max_message applying
     * to the inflated size (checked as it grows, so that at most
     * max_message + 1 bytes are ever produced) and data that does not
     * inflate failing with 1007.  ws_session_send compresses (unless
     * level 0); ws_session_frame_begin frames are sent uncompressed.
     * Control frames are never compressed. */
    ws_deflate_params deflate;
} ws_session_config;

typedef enum {
    WS_SESSION_OPEN = 0,  /* messages flow both ways */
    WS_SESSION_CLOSING,   /* we sent a close, waiting for the peer's */
    WS_SESSION_CLOSED,    /* close handshake complete: close TCP */
    WS_SESSION_FAILED     /* protocol error or write failure: close TCP */
} ws_session_state_e;

/* Create a session for proto (HIXIE75, HIXIE76 or RFC6455).  cfg and cb
 * are copied (cfg->deflate is ignored for the hixie families).  Buffers
 * and zlib streams are released by a cleanup on pool. */
ws_session *ws_session_create(apr_pool_t *pool, ws_proto_e proto,
                              const ws_session_config *cfg,
                              const ws_session_callbacks *cb, void *baton);

/* Feed bytes read from the peer (any split: one byte at a time works).
 * Callbacks run from inside.  On a protocol violation the session writes
 * its close (RFC 6455: a close frame with 1002, 1007 or 1009) and goes
 * FAILED; bytes after a close or a failure are ignored.  Returns the
 * state after the bytes were consumed. */
ws_session_state_e ws_session_feed(ws_session *s, const char *data,
                                   apr_size_t len);

ws_session_state_e ws_session_state(const ws_session *s);

/* The close code sent because of a failure or received from the peer
 * (0 while open); and, after a failure, a static string saying why, for
 * the error log (NULL otherwise). */
int ws_session_close_code(const ws_session *s);
const char *ws_session_error(const ws_session *s);

/* Send a message (WS_OP_TEXT or WS_OP_BINARY), compressed when the
 * session has permessage-deflate (uncompressed if compressing fails or
 * the level is 0).  hixie: text only,
 * binary gives APR_ENOTIMPL, text holding 0xFF APR_EINVAL.  After our
 * close: APR_EOF.  While a message begun with ws_session_frame_begin is
 * unfinished: APR_EBUSY. */
apr_status_t ws_session_send(ws_session *s, int opcode, const char *data,
                             apr_size_t len);

/* Begin one outgoing data frame whose payload, len bytes, the caller
 * writes itself (after all that the write callback was given), then
 * calls ws_session_frame_end.  opcode: WS_OP_TEXT or WS_OP_BINARY for
 * the first frame of a message, WS_OP_CONTINUATION for the next ones;
 * fin non-zero on the message's last frame.
 *   RFC 6455: writes the frame header (unmasked, shortest length form,
 *   RSV1 clear: such a message is never compressed).
 *   hixie (text only; len is not used): writes 0x00 at the first frame
 *   of a message, and ws_session_frame_end writes 0xFF after the last,
 *   so the payload of all the frames forms one hixie text frame (it must
 *   not contain 0xFF, which valid UTF-8 never does).
 * Until ws_session_frame_end the session must not be fed, and it refuses
 * every other send (_send, _ping, _close, _frame_begin) with APR_EBUSY.
 * Between the frames of a message ws_session_send gives APR_EBUSY, while
 * ws_session_ping and _close may be called; our close, the reply to the
 * peer's close and a failure end an unfinished hixie text frame with
 * 0xFF before the hixie close.
 * Returns APR_SUCCESS, or, checked in this order:
 *   APR_EINVAL    another opcode, or len of 2^63 or more
 *   APR_EOF       after our close or a failure
 *   APR_ENOTIMPL  binary on hixie
 *   APR_EBUSY     a frame is open
 *   APR_EINVAL    a continuation with no message started, or a new
 *                 message while one is unfinished
 *   the error of a refused write (the session has then failed). */
apr_status_t ws_session_frame_begin(ws_session *s, int opcode, int fin,
                                    apr_uint64_t len);
/* End the frame begun by ws_session_frame_begin (hixie: writes the 0xFF
 * after the message's last frame).  Returns APR_SUCCESS; APR_EINVAL when
 * no frame is open; APR_EOF, writing nothing, when the session is no
 * longer OPEN (it was fed inside the frame); or the error of a refused
 * write. */
apr_status_t ws_session_frame_end(ws_session *s);
/* Non-zero while the session is OPEN and a message begun with
 * ws_session_frame_begin is unfinished (its fin frame not yet ended). */
int ws_session_sending(const ws_session *s);

/* RFC 6455 ping with up to 125 bytes of payload (hixie: APR_ENOTIMPL).
 * After our close: APR_EOF; inside a frame_begin frame: APR_EBUSY. */
apr_status_t ws_session_ping(ws_session *s, const char *data,
                             apr_size_t len);
/* Start the closing handshake.  RFC 6455: code 0 sends an empty close
 * payload; otherwise code and reason (truncated to fit 125 bytes on a
 * UTF-8 boundary).  hixie: 0xFF 0x00 (after a 0xFF that ends an
 * unfinished ws_session_frame_begin message).  State becomes CLOSING.
 * After our close: APR_EOF; inside a frame_begin frame: APR_EBUSY. */
apr_status_t ws_session_close(ws_session *s, int code, const char *reason);

#endif /* WS_ENGINE_H */
