/* Licensed under the Apache License, Version 2.0.
 *
 * tcp_proxy: bridges each WebSocket to its own TCP connection to the
 * backend named by
 *
 *     WebSocketOption Backend host:port
 *     WebSocketOption ConnectTimeout seconds    (optional, default 5)
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
 * Life of a connection:
 *   on_open     connects (on the owner thread, bounded by ConnectTimeout);
 *               on failure the client gets close 1011 "backend
 *               unavailable", so it learns why rather than seeing a
 *               refused handshake.  Then starts the pump thread
 *               (proxy_pump.c), which talks to the backend both ways,
 *               with backpressure both ways.
 *   on_message  client -> backend: decoded and handed to the pump, never
 *               waiting for the backend; the pump pauses reading the
 *               client while too much waits (server->pause_reading).  A
 *               backend that takes nothing for the server's Timeout gets
 *               the client closed with 1011.  Invalid base64 closes with
 *               1007, binary in base64 mode with 1003.
 *   on_close    the client's close: the pump writes what is still
 *               buffered, then shuts down our sending side to the backend
 *               (half-close); the backend sees EOF and may still answer.
 *   on_disconnect  the same if not done; the pump drains the backend
 *               until EOF (at most a few seconds); joins it, closes the
 *               socket.
 * A backend that closes on its own gets the client closed with 1000
 * "backend closed", one that fails with 1011 "backend gone", after what
 * it sent before; both are logged.
 *
 * The backend socket is non-blocking (APR timeout 0); once connected,
 * only the pump uses it (until on_disconnect has joined the pump).
 */
#include "tcp_proxy.h"

#include "http_log.h"
#include "apr_base64.h"
#include "apr_strings.h"

#include <limits.h>
#include <stdlib.h>

#define PROXY_CONNECT_TIMEOUT apr_time_from_sec(5)

#define PROXY_B64_ALPHABET \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/* ------------------------------------------------------------------ */
/* Setup                                                               */

static proxy_mode_e proxy_choose_mode(const websocket_server *server,
                                      websocket_conn *conn)
{
    int rfc = server->protocol_family(conn) == WEBSOCKET_PROTOCOL_RFC6455;

    if (rfc && server->subprotocol_set(conn, "binary") == APR_SUCCESS) {
        return PROXY_BINARY;
    }
    if (server->subprotocol_set(conn, "base64") == APR_SUCCESS || !rfc) {
        return PROXY_BASE64;
    }
    return PROXY_BINARY;
}

/* WebSocketOption ConnectTimeout: seconds (fractions allowed). */
static apr_interval_time_t proxy_connect_timeout(const websocket_server *srv,
                                                 websocket_conn *conn)
{
    const char *value = srv->option(conn, "ConnectTimeout");
    char *end;
    double seconds;

    if (value == NULL) {
        return PROXY_CONNECT_TIMEOUT;
    }
    seconds = strtod(value, &end);
    if (end == value || *end != '\0' || seconds <= 0 || seconds > 3600) {
        return PROXY_CONNECT_TIMEOUT;
    }
    return (apr_interval_time_t)(seconds * APR_USEC_PER_SEC);
}

/* A missing or malformed Backend is a configuration error: refuse with
 * 500 (logged) rather than accept a connection that cannot work. */
static int proxy_on_connect(const websocket_server *server,
                            websocket_conn *conn)
{
    request_rec *r = server->request(conn);
    proxy_conn *pc = apr_pcalloc(r->pool, sizeof(*pc));
    char *host = NULL, *scope = NULL;

    pc->backend = server->option(conn, "Backend");
    if (pc->backend == NULL
        || apr_parse_addr_port(&host, &scope, &pc->port, pc->backend,
                               r->pool) != APR_SUCCESS
        || host == NULL || pc->port == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "tcp_proxy: %s needs "
                      "\"WebSocketOption Backend host:port\" (got %s)",
                      r->uri, pc->backend ? pc->backend : "none");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    pc->server = server;
    pc->conn = conn;
    pc->host = host;
    pc->mode = proxy_choose_mode(server, conn);
    server->data_set(conn, pc);
    return OK;
}

static apr_status_t proxy_connect(proxy_conn *pc, apr_pool_t *p)
{
    apr_sockaddr_t *sa;
    apr_socket_t *sock = NULL;
    apr_status_t rv;

    rv = apr_sockaddr_info_get(&sa, pc->host, APR_UNSPEC, pc->port, 0, p);
    for (; rv == APR_SUCCESS && sa != NULL; sa = sa->next) {
        rv = apr_socket_create(&sock, sa->family, SOCK_STREAM, APR_PROTO_TCP,
                               p);
        if (rv != APR_SUCCESS) {
            break;
        }
        apr_socket_opt_set(sock, APR_TCP_NODELAY, 1);
        apr_socket_timeout_set(sock, proxy_connect_timeout(pc->server,
                                                           pc->conn));
        rv = apr_socket_connect(sock, sa);
        if (rv == APR_SUCCESS) {
            pc->sock = sock;
            /* Non-blocking from now on: see the top of the file. */
            return apr_socket_timeout_set(sock, 0);
        }
        apr_socket_close(sock);
        if (sa->next != NULL) {
            rv = APR_SUCCESS;   /* try the next address */
        }
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Client to backend (owner thread)                                    */

/* Exactly base64 of whole quanta: only the alphabet, a length that is a
 * multiple of 4, at most two '=' at the end.  s is NUL-terminated. */
static int proxy_base64_valid(const char *s, apr_size_t len)
{
    apr_size_t n = strspn(s, PROXY_B64_ALPHABET);

    if (len % 4 != 0 || n + 2 < len) {
        return 0;
    }
    while (n < len && s[n] == '=') {
        n++;
    }
    return n == len;
}

/* Decode a base64 text message and hand it to the pump.  Bad input
 * closes the client (1007) and counts as handled. */
static apr_status_t proxy_write_base64(proxy_conn *pc, const char *data,
                                       apr_size_t len)
{
    char *coded, *plain = NULL;
    apr_status_t rv = APR_SUCCESS;

    if (len > INT_MAX / 2) {
        pc->stopped = 1;
        pc->server->close(pc->conn, 1009, "message too big");
        return APR_SUCCESS;
    }
    if ((coded = malloc(len + 1)) == NULL) {
        return APR_ENOMEM;
    }
    memcpy(coded, data, len);
    coded[len] = '\0';
    if (!proxy_base64_valid(coded, len)) {
        pc->stopped = 1;
        pc->server->close(pc->conn, 1007, "invalid base64");
    }
    else if ((plain = malloc(apr_base64_decode_len(coded))) == NULL) {
        rv = APR_ENOMEM;
    }
    else {
        rv = proxy_queue(pc, plain, apr_base64_decode_binary(
                                        (unsigned char *)plain, coded));
    }
    free(plain);
    free(coded);
    return rv;
}

static void proxy_on_message(const websocket_server *server,
                             websocket_conn *conn, int type,
                             const char *data, apr_size_t len)
{
    proxy_conn *pc = server->data_get(conn);
    apr_status_t rv;

    if (pc == NULL || pc->pump == NULL || pc->stopped) {
        return;
    }
    if (pc->mode == PROXY_BINARY) {
        rv = proxy_queue(pc, data, len);
    }
    else if (type == WEBSOCKET_TEXT) {
        rv = proxy_write_base64(pc, data, len);
    }
    else {
        pc->stopped = 1;
        server->close(conn, 1003, "base64 expects text messages");
        return;
    }
    if (rv != APR_SUCCESS) {
        pc->stopped = 1;
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, server->request(conn),
                      "tcp_proxy: %s: buffering for backend %s failed",
                      pc->uri, pc->backend);
        server->close(conn, 1011, "backend gone");
    }
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

static apr_status_t proxy_start_pump(proxy_conn *pc, apr_pool_t *p)
{
    apr_status_t rv;

    pc->rbuf = apr_palloc(p, PROXY_CHUNK);
    pc->ebuf = apr_palloc(p, apr_base64_encode_len(PROXY_CHUNK));
    rv = apr_thread_mutex_create(&pc->mutex, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_pollset_create(&pc->pollset, 1, p, APR_POLLSET_WAKEABLE);
    }
    if (rv != APR_SUCCESS) {
        pc->pollset = NULL;
        return rv;
    }
    pc->server->retain(pc->conn);   /* released by the pump */
    rv = apr_thread_create(&pc->pump, NULL, proxy_pump_main, pc, p);
    if (rv != APR_SUCCESS) {
        pc->pump = NULL;
        pc->server->release(pc->conn);
    }
    return rv;
}

static void proxy_on_open(const websocket_server *server,
                          websocket_conn *conn)
{
    proxy_conn *pc = server->data_get(conn);
    request_rec *r = server->request(conn);
    apr_status_t rv;

    if (pc == NULL) {
        return;
    }
    pc->s = r->server;
    pc->uri = apr_pstrdup(r->pool, r->uri);
    pc->client_ip = server->client_ip(conn);
    pc->write_timeout = r->server->timeout;
    if ((rv = proxy_connect(pc, r->pool)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "tcp_proxy: %s: cannot "
                      "connect to backend %s", r->uri, pc->backend);
        server->close(conn, 1011, "backend unavailable");
    }
    else if ((rv = proxy_start_pump(pc, r->pool)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "tcp_proxy: %s: cannot "
                      "start the pump thread", r->uri);
        pc->stopped = 1;
        server->close(conn, 1011, "cannot start pump");
    }
}

static void proxy_on_close(const websocket_server *server,
                           websocket_conn *conn, int code,
                           const char *reason, apr_size_t len)
{
    proxy_conn *pc = server->data_get(conn);

    (void)code;
    (void)reason;
    (void)len;
    if (pc != NULL && pc->pump != NULL) {
        proxy_finish(pc);
    }
}

static void proxy_on_disconnect(const websocket_server *server,
                                websocket_conn *conn)
{
    proxy_conn *pc = server->data_get(conn);
    apr_status_t thread_rv;

    if (pc == NULL) {
        return;
    }
    if (pc->pump != NULL) {
        proxy_finish(pc);
        apr_thread_join(&thread_rv, pc->pump);
    }
    if (pc->sock != NULL) {
        apr_socket_close(pc->sock);
    }
    server->data_set(conn, NULL);
}

static websocket_plugin tcp_proxy_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    proxy_on_connect,
    proxy_on_open,
    proxy_on_message,
    proxy_on_close,
    proxy_on_disconnect,
    NULL                /* destroy */
};

websocket_plugin *tcp_proxy_init(void)
{
    return &tcp_proxy_plugin;
}
