/* Licensed under the Apache License, Version 2.0.
 *
 * tcp_proxy: bridges each WebSocket to its own TCP connection to a
 * backend, in the spirit of websockify:
 *
 *     WebSocketOption Backend host:port       (required; [v6addr]:port too)
 *     WebSocketOption ConnectTimeout seconds  (optional, default 5)
 *
 * Both are checked when the configuration is read, so "httpd -t" fails on
 * a missing, bad or unknown option; the host is resolved then too, so
 * the loop never waits for DNS.
 *
 * Subprotocols (websockify's):
 *   binary   backend bytes go out as binary messages; any message from the
 *            client goes to the backend as it is.
 *   base64   text messages carry the base64 of the bytes, both ways.
 * An RFC 6455 client offering "binary" gets binary; else one offering
 * "base64" gets base64; one offering neither gets binary semantics with no
 * Sec-WebSocket-Protocol in the answer.  hixie clients have no binary
 * messages, so they always get base64 (the header only if they asked).
 *
 * No thread of its own: everything runs in the connection's callbacks on
 * its loop; the backend socket is non-blocking and watched there
 * (proxy_backend.c).
 *   on_open      starts a non-blocking connect (each resolved address in
 *                turn, within ConnectTimeout); on failure the client gets
 *                close 1011 "backend unavailable".
 *   on_fragment  every message streams to the backend as it arrives, so
 *                one of any size (1 GiB...) is never held whole; base64 is
 *                decoded as it comes, a quantum cut between fragments
 *                kept for the next.  Invalid base64 closes with 1007, a
 *                binary message in base64 mode with 1003.
 *   on_drain     the client took what was queued: read the backend again.
 *   on_close     the client closes: what waits for the backend is written
 *                out, then our sending side is shut down (half-close);
 *                what the backend still sends is read and dropped.
 *   on_disconnect  the same as far as it goes without waiting, then the
 *                socket is closed and the connection's state freed.  The
 *                module calls it right after the closing handshake, and
 *                the plugin has nothing left to wait with: what the
 *                backend has not taken by then, or sends later, is lost
 *                (a backend still answering sees a reset).
 * A backend that closes on its own gets the client closed with 1000
 * "backend closed" after all it sent; one that fails, or takes nothing
 * for the server's Timeout, with 1011 "backend gone"; both are logged.
 */
#include "tcp_proxy.h"

#include "apr_base64.h"
#include "apr_strings.h"

#include <stdlib.h>

/* base64 characters decoded at a time (whole quanta) */
#define PROXY_B64_BATCH 4096

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

static void *proxy_init_location(apr_pool_t *pool, server_rec *s,
                                 const apr_table_t *options,
                                 const char **error)
{
    proxy_location *loc = apr_pcalloc(pool, sizeof(*loc));
    const apr_array_header_t *arr = apr_table_elts(options);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    char *host = NULL, *scope = NULL, *end;
    apr_port_t port = 0;
    apr_status_t rv;
    double seconds;
    int i;

    (void)s;
    loc->connect_timeout = PROXY_CONNECT_TIMEOUT;
    for (i = 0; i < arr->nelts; i++) {
        if (strcasecmp(e[i].key, "Backend") == 0) {
            loc->backend = e[i].val;
        }
        else if (strcasecmp(e[i].key, "ConnectTimeout") == 0) {
            seconds = strtod(e[i].val, &end);
            if (end == e[i].val || *end != '\0' || !(seconds > 0)
                || seconds > 3600) {
                *error = apr_psprintf(pool, "WebSocketOption ConnectTimeout "
                                      "\"%s\" is not a number of seconds "
                                      "(at most 3600)", e[i].val);
                return NULL;
            }
            loc->connect_timeout = apr_time_from_msec(seconds * 1000);
        }
        else {
            *error = apr_psprintf(pool, "unknown WebSocketOption %s (tcp_proxy "
                                  "knows Backend and ConnectTimeout)",
                                  e[i].key);
            return NULL;
        }
    }
    if (loc->backend == NULL) {
        *error = "missing \"WebSocketOption Backend host:port\"";
        return NULL;
    }
    if (apr_parse_addr_port(&host, &scope, &port, loc->backend, pool)
            != APR_SUCCESS || host == NULL || scope != NULL || port == 0) {
        *error = apr_psprintf(pool, "WebSocketOption Backend \"%s\" is not "
                              "host:port", loc->backend);
        return NULL;
    }
    rv = apr_sockaddr_info_get(&loc->addrs, host, APR_UNSPEC, port, 0, pool);
    if (rv != APR_SUCCESS) {
        *error = apr_psprintf(pool, "WebSocketOption Backend \"%s\": cannot "
                              "resolve %s: %pm", loc->backend, host, &rv);
        return NULL;
    }
    return loc;
}

/* ------------------------------------------------------------------ */
/* Client to backend                                                   */

static int proxy_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Decode n characters of whole quanta (NUL-terminated) into the buffer
 * for the backend. */
static void proxy_b64_decode(proxy_conn *pc, const char *coded, apr_size_t n)
{
    char *room = proxy_reserve(pc, n / 4 * 3);

    if (room == NULL) {
        proxy_failed(pc, APR_ENOMEM, "buffering for ");
        return;
    }
    pc->end += apr_base64_decode_binary((unsigned char *)room, coded);
}

/* The next characters of a base64 message: whole quanta are checked and
 * decoded, the rest kept for the next fragment.  Padding ("xx==",
 * "xxx=") may only end the message.  0 on invalid base64. */
static int proxy_b64_feed(proxy_conn *pc, const char *data, apr_size_t len)
{
    char coded[PROXY_B64_BATCH + 1];
    const char *q = pc->quantum;
    apr_size_t n = 0;

    while (len > 0) {
        pc->quantum[pc->qlen++] = *data++;
        len--;
        if (pc->qlen < 4) {
            continue;
        }
        pc->qlen = 0;
        if (pc->padded || !proxy_b64_char(q[0]) || !proxy_b64_char(q[1])
            || !(proxy_b64_char(q[2]) || (q[2] == '=' && q[3] == '='))
            || !(proxy_b64_char(q[3]) || q[3] == '=')) {
            return 0;
        }
        pc->padded = q[3] == '=';
        memcpy(coded + n, q, 4);
        if ((n += 4) == PROXY_B64_BATCH) {
            coded[n] = '\0';
            proxy_b64_decode(pc, coded, n);
            n = 0;
        }
    }
    if (n > 0) {
        coded[n] = '\0';
        proxy_b64_decode(pc, coded, n);
    }
    return 1;
}

/* The next bytes of a client message (transient buckets: copied or
 * written before returning). */
static void proxy_on_fragment(const websocket_server *server,
                              websocket_conn *conn, int type,
                              apr_bucket_brigade *bb, int final)
{
    proxy_conn *pc = server->data_get(conn);
    apr_bucket *b;
    const char *data;
    apr_size_t len;
    apr_status_t rv;

    while (!APR_BRIGADE_EMPTY(bb)) {
        b = APR_BRIGADE_FIRST(bb);
        if (pc->closing || pc->done || APR_BUCKET_IS_METADATA(b)) {
            /* dropped */
        }
        else if (pc->base64 && type != WEBSOCKET_TEXT) {
            proxy_close_client(pc, 1003, "base64 expects text messages");
        }
        else if ((rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ))
                     != APR_SUCCESS) {
            proxy_failed(pc, rv, "reading the client's message for ");
        }
        else if (!pc->base64) {
            proxy_write(pc, data, len);
        }
        else if (!proxy_b64_feed(pc, data, len)) {
            proxy_close_client(pc, 1007, "invalid base64");
        }
        apr_bucket_delete(b);
    }
    if (final) {
        if (pc->base64 && pc->qlen != 0) {
            proxy_close_client(pc, 1007, "invalid base64");
        }
        pc->qlen = pc->padded = 0;
    }
    if (pc->connected && !pc->done) {
        proxy_flush(pc);    /* what base64 decoded; half-close if closing */
    }
    proxy_update(pc);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

static int proxy_on_connect(const websocket_server *server,
                            websocket_conn *conn)
{
    const proxy_location *loc = server->location_data(conn);
    int rfc = server->protocol_family(conn) == WEBSOCKET_PROTOCOL_RFC6455;
    apr_pool_t *pool;
    proxy_conn *pc;

    if (loc == NULL || apr_pool_create_unmanaged(&pool) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    pc = apr_pcalloc(pool, sizeof(*pc));
    pc->server = server;
    pc->conn = conn;
    pc->loc = loc;
    pc->pool = pool;
    if (!rfc || server->subprotocol_set(conn, "binary") != APR_SUCCESS) {
        pc->base64 = server->subprotocol_set(conn, "base64") == APR_SUCCESS
                     || !rfc;
    }
    server->data_set(conn, pc);
    return OK;
}

static void proxy_on_open(const websocket_server *server,
                          websocket_conn *conn)
{
    proxy_connect(server->data_get(conn));
}

static void proxy_on_drain(const websocket_server *server,
                           websocket_conn *conn)
{
    proxy_conn *pc = server->data_get(conn);

    pc->full = 0;
    proxy_update(pc);
}

static void proxy_on_close(const websocket_server *server,
                           websocket_conn *conn, int code,
                           const char *reason, apr_size_t len)
{
    proxy_conn *pc = server->data_get(conn);

    (void)code;
    (void)reason;
    (void)len;
    pc->closing = 1;
    if (pc->connected && !pc->done) {
        proxy_flush(pc);
    }
    proxy_update(pc);
}

static void proxy_on_disconnect(const websocket_server *server,
                                websocket_conn *conn)
{
    proxy_conn *pc = server->data_get(conn);

    proxy_close_backend(pc);
    server->data_set(conn, NULL);
    apr_pool_destroy(pc->pool);
}

static websocket_plugin tcp_proxy_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    proxy_init_location,
    proxy_on_connect,
    proxy_on_open,
    NULL,                       /* on_message: on_fragment streams */
    proxy_on_fragment,
    proxy_on_close,
    proxy_on_disconnect,
    proxy_on_drain,
    NULL,                       /* on_ping */
    NULL,                       /* on_pong */
    NULL                        /* destroy */
};

websocket_plugin *tcp_proxy_init(void)
{
    return &tcp_proxy_plugin;
}
