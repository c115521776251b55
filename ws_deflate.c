/* Licensed under the Apache License, Version 2.0.
 *
 * ws_deflate.c: permessage-deflate (RFC 7692).
 *
 * Negotiation is a pure function of the Sec-WebSocket-Extensions header
 * and the server's settings.  Compression and decompression use zlib's
 * raw deflate; each direction's stream is made when the first compressed
 * message needs it and, when that direction has no context takeover,
 * freed again after the message, so that an idle connection holds no
 * zlib memory unless the negotiated context takeover requires it.
 *
 * Without context takeover a stream holds nothing between messages: a
 * thread keeps one spare stream of each kind, which a session takes for
 * a message and gives back, reset, when the message is done.  Zlib's
 * buffers (a quarter MiB for a 15-bit compressor) are then neither
 * allocated per message nor held per connection.
 *
 * Decompression is driven by the caller, a piece of output at a time
 * (ws_inflate), so that the caller can count the inflated bytes against
 * its limit before asking for more: a small message that inflates to
 * gigabytes is stopped once the limit is passed, having produced at most
 * the limit plus the last piece.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "ws_engine.h"

#define WS_EXT_NAME "permessage-deflate"

/* The tail a sender removes (RFC 7692 7.2.1) and the receiver puts back:
 * an empty stored block. */
static const unsigned char deflate_tail[4] = { 0x00, 0x00, 0xFF, 0xFF };

/* ------------------------------------------------------------------ */
/* Negotiation                                                         */

/* One offer of permessage-deflate, as parsed. */
typedef struct {
    int server_no_context_takeover;
    int client_no_context_takeover;
    int server_max_window_bits;     /* 0: absent */
    int client_max_window_bits;     /* 0: absent, -1: without a value */
} offer_t;

/* A cursor over a header value. */
typedef struct {
    const char *p;
} lexer_t;

static int is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(lexer_t *lx)
{
    while (*lx->p == ' ' || *lx->p == '\t') {
        lx->p++;
    }
}

/* A token into buf (NUL-terminated, cut at size - 1 characters: a longer
 * token is no name or value this code knows, and stays unknown); 0 when
 * there is none. */
static int lex_token(lexer_t *lx, char *buf, apr_size_t size)
{
    apr_size_t n = 0;

    if (!is_tchar((unsigned char)*lx->p)) {
        return 0;
    }
    while (is_tchar((unsigned char)*lx->p)) {
        if (n + 1 < size) {
            buf[n++] = *lx->p;
        }
        else {
            n = size;   /* too long: make it unrecognisable below */
        }
        lx->p++;
    }
    if (n >= size) {
        buf[0] = '\0';
        strncat(buf, "?", size - 1);
        return 1;
    }
    buf[n] = '\0';
    return 1;
}

/* A token or a quoted-string (unescaped) into buf; 0 when malformed. */
static int lex_value(lexer_t *lx, char *buf, apr_size_t size)
{
    apr_size_t n = 0;
    int too_long = 0;

    if (*lx->p != '"') {
        return lex_token(lx, buf, size);
    }
    lx->p++;
    while (*lx->p != '"') {
        char c = *lx->p;

        if (c == '\0') {
            return 0;
        }
        if (c == '\\') {
            c = *++lx->p;
            if (c == '\0') {
                return 0;
            }
        }
        if (n + 1 < size) {
            buf[n++] = c;
        }
        else {
            too_long = 1;
        }
        lx->p++;
    }
    lx->p++;
    buf[n] = '\0';
    if (too_long) {
        buf[0] = '\0';
        strncat(buf, "?", size - 1);
    }
    return 1;
}

/* Skip to the end of the current list element (past quoted strings);
 * leaves the cursor on the ',' or the NUL. */
static void skip_element(lexer_t *lx)
{
    while (*lx->p && *lx->p != ',') {
        if (*lx->p == '"') {
            lx->p++;
            while (*lx->p && *lx->p != '"') {
                if (*lx->p == '\\' && lx->p[1]) {
                    lx->p++;
                }
                lx->p++;
            }
            if (*lx->p) {
                lx->p++;
            }
        }
        else {
            lx->p++;
        }
    }
}

/* A window size: "8" to "15", no leading zero, nothing else. */
static int window_bits_value(const char *v)
{
    if (v[0] >= '8' && v[0] <= '9' && v[1] == '\0') {
        return v[0] - '0';
    }
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0') {
        return 10 + v[1] - '0';
    }
    return 0;
}

/* One parameter of a permessage-deflate offer; 0 declines the offer. */
static int offer_param(offer_t *o, const char *name, const char *value)
{
    int bits;

    if (!strcasecmp(name, "server_no_context_takeover")) {
        if (value || o->server_no_context_takeover) {
            return 0;
        }
        o->server_no_context_takeover = 1;
    }
    else if (!strcasecmp(name, "client_no_context_takeover")) {
        if (value || o->client_no_context_takeover) {
            return 0;
        }
        o->client_no_context_takeover = 1;
    }
    else if (!strcasecmp(name, "server_max_window_bits")) {
        if (!value || o->server_max_window_bits
            || !(bits = window_bits_value(value))) {
            return 0;
        }
        o->server_max_window_bits = bits;
    }
    else if (!strcasecmp(name, "client_max_window_bits")) {
        if (o->client_max_window_bits) {
            return 0;
        }
        if (!value) {
            o->client_max_window_bits = -1;
        }
        else if (!(bits = window_bits_value(value))) {
            return 0;
        }
        else {
            o->client_max_window_bits = bits;
        }
    }
    else {
        return 0;
    }
    return 1;
}

/* Parse the parameters of the element the cursor is in (after its
 * name).  Returns 1 with the offer filled when the element is a
 * well-formed offer the server can read; 0 otherwise.  Leaves the cursor
 * at the element's end either way. */
static int parse_offer(lexer_t *lx, offer_t *o)
{
    char name[64], value[64];
    int ok = 1;

    memset(o, 0, sizeof(*o));
    for (;;) {
        skip_ows(lx);
        if (*lx->p == '\0' || *lx->p == ',') {
            return ok;
        }
        if (*lx->p != ';') {
            break;
        }
        lx->p++;
        skip_ows(lx);
        if (!lex_token(lx, name, sizeof(name))) {
            break;
        }
        skip_ows(lx);
        if (*lx->p == '=') {
            lx->p++;
            skip_ows(lx);
            if (!lex_value(lx, value, sizeof(value))) {
                break;
            }
            ok = ok && offer_param(o, name, value);
        }
        else {
            ok = ok && offer_param(o, name, NULL);
        }
    }
    skip_element(lx);
    return 0;
}

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* Accept offer o under cfg: fill params and return the answer. */
static const char *accept_offer(apr_pool_t *p, const offer_t *o,
                                const ws_deflate_config *cfg,
                                ws_deflate_params *params)
{
    int max = cfg->max_window_bits;
    int offered_client_bits = o->client_max_window_bits > 0
                              ? o->client_max_window_bits : 15;
    int say_server_bits, say_client_bits = 0;

    if (max < 8 || max > 15) {
        max = 15;
    }
    memset(params, 0, sizeof(*params));
    params->enabled = 1;
    params->level = cfg->level;
    params->mem_level = cfg->mem_level;
    params->server_no_context_takeover = o->server_no_context_takeover
                                         || cfg->no_context_takeover;
    params->client_no_context_takeover = o->client_no_context_takeover
                                         || cfg->no_context_takeover;
    /* Our window: what the client allows, within ours (7.1.2.1).  We may
     * name it even unasked: it lets the client inflate with less. */
    params->server_max_window_bits = min_int(max, o->server_max_window_bits
                                                  ? o->server_max_window_bits
                                                  : 15);
    say_server_bits = o->server_max_window_bits || params->server_max_window_bits < 15;
    /* The client's window: only if it said it can be told (7.1.2.2);
     * otherwise it may use up to its own value, or 15. */
    if (o->client_max_window_bits) {
        params->client_max_window_bits = min_int(max, offered_client_bits);
        say_client_bits = params->client_max_window_bits < 15;
    }
    else {
        params->client_max_window_bits = 15;
    }
    return apr_pstrcat(p, WS_EXT_NAME,
                       params->server_no_context_takeover
                       ? "; server_no_context_takeover" : "",
                       params->client_no_context_takeover
                       ? "; client_no_context_takeover" : "",
                       say_server_bits ? apr_psprintf(
                           p, "; server_max_window_bits=%d",
                           params->server_max_window_bits) : "",
                       say_client_bits ? apr_psprintf(
                           p, "; client_max_window_bits=%d",
                           params->client_max_window_bits) : "",
                       NULL);
}

const char *ws_deflate_negotiate(apr_pool_t *p, const char *header,
                                 const ws_deflate_config *cfg,
                                 ws_deflate_params *params)
{
    lexer_t lx;

    memset(params, 0, sizeof(*params));
    if (!header) {
        return NULL;
    }
    lx.p = header;
    while (*lx.p) {
        char name[64];
        offer_t o;

        skip_ows(&lx);
        if (*lx.p == ',') {             /* empty list element */
            lx.p++;
            continue;
        }
        if (*lx.p == '\0') {
            break;
        }
        if (lex_token(&lx, name, sizeof(name))
            && !strcasecmp(name, WS_EXT_NAME)
            && parse_offer(&lx, &o)) {
            return accept_offer(p, &o, cfg, params);
        }
        skip_element(&lx);
        if (*lx.p == ',') {
            lx.p++;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The streams                                                         */

struct ws_deflate {
    ws_deflate_params p;
    z_stream *in;           /* decompressor; NULL until needed */
    z_stream *out;          /* compressor; NULL until needed */
    int in_ended;           /* the peer ended its deflate stream (BFINAL)
                             * in this message */
};

/* zlib cannot make raw deflate with an 8-bit window (since 1.2.9).  It
 * never emits a match more than 2^bits - 262 bytes back, though, so a
 * 9-bit window reaches at most 250 bytes back: within what an 8-bit
 * window promises the client. */
static int compress_bits(int bits)
{
    return bits < 9 ? 9 : bits > 15 ? 15 : bits;
}

static int inflate_bits(int bits)
{
    return bits < 8 ? 8 : bits > 15 ? 15 : bits;
}

static int compress_level(const ws_deflate_params *p)
{
    return p->level < 1 ? 1 : p->level > 9 ? 9 : p->level;
}

static int compress_mem(const ws_deflate_params *p)
{
    return p->mem_level < 1 ? 8 : p->mem_level > 9 ? 9 : p->mem_level;
}

/* A thread's spare streams, and what they were made for. */
typedef struct {
    z_stream *deflater, *inflater;
    int deflate_bits, deflate_level, deflate_mem, inflate_bits;
} spares_t;

static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static int spares_ok;

static void end_deflater(z_stream *z)
{
    if (z) {
        deflateEnd(z);
        free(z);
    }
}

static void end_inflater(z_stream *z)
{
    if (z) {
        inflateEnd(z);
        free(z);
    }
}

/* At the thread's end. */
static void spares_free(void *data)
{
    spares_t *sp = data;

    end_deflater(sp->deflater);
    end_inflater(sp->inflater);
    free(sp);
}

static void spares_init(void)
{
    spares_ok = pthread_key_create(&spares_key, spares_free) == 0;
}

/* This thread's spares (NULL if there cannot be any). */
static spares_t *thread_spares(void)
{
    spares_t *sp;

    pthread_once(&spares_once, spares_init);
    if (!spares_ok) {
        return NULL;
    }
    sp = pthread_getspecific(spares_key);
    if (!sp && (sp = calloc(1, sizeof(*sp))) != NULL
        && pthread_setspecific(spares_key, sp) != 0) {
        free(sp);
        sp = NULL;
    }
    return sp;
}

static z_stream *new_deflater(const ws_deflate_params *p)
{
    z_stream *z = calloc(1, sizeof(*z));

    if (z && deflateInit2(z, compress_level(p), Z_DEFLATED,
                          -compress_bits(p->server_max_window_bits),
                          compress_mem(p), Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        z = NULL;
    }
    return z;
}

static z_stream *new_inflater(const ws_deflate_params *p)
{
    z_stream *z = calloc(1, sizeof(*z));

    if (z && inflateInit2(z, -inflate_bits(p->client_max_window_bits))
             != Z_OK) {
        free(z);
        z = NULL;
    }
    return z;
}

/* A compressor for one message without context takeover: the thread's
 * spare if it fits. */
static z_stream *take_deflater(const ws_deflate_params *p)
{
    spares_t *sp = thread_spares();
    z_stream *z;

    if (sp && sp->deflater
        && sp->deflate_bits == compress_bits(p->server_max_window_bits)
        && sp->deflate_level == compress_level(p)
        && sp->deflate_mem == compress_mem(p)) {
        z = sp->deflater;
        sp->deflater = NULL;
        return z;
    }
    return new_deflater(p);
}

/* The message is done: keep z as the thread's spare, or free it. */
static void give_back_deflater(z_stream *z, const ws_deflate_params *p)
{
    spares_t *sp = thread_spares();

    if (sp && !sp->deflater && deflateReset(z) == Z_OK) {
        sp->deflater = z;
        sp->deflate_bits = compress_bits(p->server_max_window_bits);
        sp->deflate_level = compress_level(p);
        sp->deflate_mem = compress_mem(p);
        return;
    }
    end_deflater(z);
}

static z_stream *take_inflater(const ws_deflate_params *p)
{
    spares_t *sp = thread_spares();
    z_stream *z;

    if (sp && sp->inflater
        && sp->inflate_bits == inflate_bits(p->client_max_window_bits)) {
        z = sp->inflater;
        sp->inflater = NULL;
        return z;
    }
    return new_inflater(p);
}

static void give_back_inflater(z_stream *z, const ws_deflate_params *p)
{
    spares_t *sp = thread_spares();

    if (sp && !sp->inflater && inflateReset(z) == Z_OK) {
        sp->inflater = z;
        sp->inflate_bits = inflate_bits(p->client_max_window_bits);
        return;
    }
    end_inflater(z);
}

/* Done with the decompressor: without client context takeover it goes
 * back to the thread (also after an error: it is reset), otherwise it
 * is freed. */
static void free_inflater(ws_deflate *d)
{
    if (d->in) {
        if (d->p.client_no_context_takeover) {
            give_back_inflater(d->in, &d->p);
        }
        else {
            end_inflater(d->in);
        }
        d->in = NULL;
    }
    d->in_ended = 0;
}

static void free_deflater(ws_deflate *d)
{
    end_deflater(d->out);
    d->out = NULL;
}

static apr_status_t deflate_cleanup(void *data)
{
    ws_deflate *d = data;

    free_inflater(d);
    free_deflater(d);
    return APR_SUCCESS;
}

ws_deflate *ws_deflate_create(apr_pool_t *pool, const ws_deflate_params *p)
{
    ws_deflate *d = apr_pcalloc(pool, sizeof(*d));

    d->p = *p;
    apr_pool_cleanup_register(pool, d, deflate_cleanup,
                              apr_pool_cleanup_null);
    return d;
}

/* zlib counts in uInt: feed it at most this much at a time. */
#define WS_ZLIB_STEP ((apr_size_t)1 << 30)

apr_status_t ws_deflate_message(ws_deflate *d, const char *data,
                                apr_size_t len, char **out,
                                apr_size_t *out_len)
{
    z_stream *z;
    unsigned char *buf;
    apr_size_t cap, used = 0, left = len;
    int rc, flush;

    *out = NULL;
    *out_len = 0;
    /* an empty message gains nothing (and a flush with no new input is
     * refused by zlib) */
    if (d->p.level <= 0 || len == 0) {
        return APR_ENOTIMPL;
    }
    if (!d->out) {
        d->out = d->p.server_no_context_takeover ? take_deflater(&d->p)
                                                 : new_deflater(&d->p);
        if (!d->out) {
            return APR_ENOMEM;
        }
    }
    z = d->out;
    /* deflateBound covers the data; the sync flush adds a few bytes */
    cap = (apr_size_t)deflateBound(z, (uLong)len) + 16;
    if ((buf = malloc(cap)) == NULL) {
        return APR_ENOMEM;
    }
    do {
        apr_size_t in_now = left < WS_ZLIB_STEP ? left : WS_ZLIB_STEP;
        apr_size_t room;

        if (used == cap) {
            unsigned char *grown = realloc(buf, cap * 2);

            if (!grown) {
                rc = Z_MEM_ERROR;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        room = cap - used < WS_ZLIB_STEP ? cap - used : WS_ZLIB_STEP;
        flush = in_now == left ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        z->next_in = (const Bytef *)data + (len - left);
        z->avail_in = (uInt)in_now;
        z->next_out = buf + used;
        z->avail_out = (uInt)room;
        rc = deflate(z, flush);
        left -= in_now - z->avail_in;
        used += room - z->avail_out;
        if (rc == Z_BUF_ERROR) {
            rc = Z_OK;      /* no progress this time: more room comes */
        }
        /* done once all the input is in and the flush fitted */
    } while (rc == Z_OK && !(flush == Z_SYNC_FLUSH && left == 0
                             && z->avail_out > 0));
    z->next_in = NULL;
    z->avail_in = 0;
    if (rc != Z_OK || used < 4
        || memcmp(buf + used - 4, deflate_tail, 4) != 0) {
        /* the stream is part-way through something: drop it (the client
         * keeps its window, which we then never refer to) */
        free(buf);
        free_deflater(d);
        return rc == Z_MEM_ERROR ? APR_ENOMEM : APR_EGENERAL;
    }
    if (d->p.server_no_context_takeover) {
        give_back_deflater(d->out, &d->p);
        d->out = NULL;
    }
    *out = (char *)buf;
    *out_len = used - 4;
    return APR_SUCCESS;
}

void ws_inflate_input(ws_deflate *d, const char *in, apr_size_t len)
{
    if (!d->in) {
        d->in = d->p.client_no_context_takeover ? take_inflater(&d->p)
                                                : new_inflater(&d->p);
        if (!d->in) {
            return;     /* ws_inflate reports it */
        }
    }
    d->in->next_in = (const Bytef *)in;
    d->in->avail_in = (uInt)len;
}

void ws_inflate_input_tail(ws_deflate *d)
{
    /* A sender that ends its stream (a block with BFINAL) should follow
     * it with a 0x00 so that the tail makes an empty stored block (RFC
     * 7692 7.2.3.4).  When the stream ended right at the end of the data,
     * the tail is left out instead of being taken for a broken block. */
    if (d->in && d->in_ended && d->in->avail_in == 0) {
        return;
    }
    ws_inflate_input(d, (const char *)deflate_tail, sizeof(deflate_tail));
}

/* The peer ended its deflate stream (a block with BFINAL) and sends more:
 * start a new stream that still sees the window (context takeover). */
static int restart_keeping_window(ws_deflate *d)
{
    z_stream *z = d->in;
    const Bytef *next_in = z->next_in;
    uInt avail_in = z->avail_in;
    unsigned char *dict = malloc(1 << 15);
    uInt dict_len = 0;
    int ok;

    if (!dict) {
        return 0;
    }
    ok = inflateGetDictionary(z, dict, &dict_len) == Z_OK
         && inflateReset(z) == Z_OK
         && (dict_len == 0
             || inflateSetDictionary(z, dict, dict_len) == Z_OK);
    free(dict);
    z->next_in = next_in;
    z->avail_in = avail_in;
    d->in_ended = 0;
    return ok;
}

int ws_inflate(ws_deflate *d, char *out, apr_size_t cap,
               apr_size_t *produced)
{
    z_stream *z = d->in;
    int rc;

    *produced = 0;
    if (!z) {
        return WS_INFLATE_NOMEM;
    }
    if (cap > WS_ZLIB_STEP) {
        cap = WS_ZLIB_STEP;
    }
    for (;;) {
        if (d->in_ended && z->avail_in > 0 && !restart_keeping_window(d)) {
            return WS_INFLATE_NOMEM;
        }
        z->next_out = (Bytef *)out + *produced;
        z->avail_out = (uInt)(cap - *produced);
        /* (with no input left, this still gives what zlib holds back
         * from an earlier call whose output space ran out) */
        rc = inflate(z, Z_SYNC_FLUSH);
        *produced = cap - z->avail_out;
        switch (rc) {
        case Z_OK:
        case Z_BUF_ERROR:   /* no progress possible: input used up */
            return z->avail_out == 0 ? WS_INFLATE_MORE : WS_INFLATE_DONE;
        case Z_STREAM_END:
            d->in_ended = 1;
            if (z->avail_in == 0) {
                return WS_INFLATE_DONE;
            }
            if (z->avail_out == 0) {
                return WS_INFLATE_MORE;
            }
            continue;       /* more input after the stream's end */
        case Z_MEM_ERROR:
            return WS_INFLATE_NOMEM;
        default:            /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
            return WS_INFLATE_BAD;
        }
    }
}

int ws_inflate_end(ws_deflate *d)
{
    /* after the tail (an empty stored block) inflate waits for the next
     * block's header: data_type has 128 exactly then */
    int ok = d->in && d->in->avail_in == 0
             && (d->in_ended || (d->in->data_type & 128));

    if (d->in) {
        d->in->next_in = NULL;
    }
    if (d->p.client_no_context_takeover) {
        free_inflater(d);
    }
    return ok;
}

void ws_inflate_abort(ws_deflate *d)
{
    free_inflater(d);
}
