/* Licensed under the Apache License, Version 2.0.
 *
 * hello: a complete minimal mod_websocket plugin (doc/plugins.md walks
 * through it).  It greets each client, answers every text message with
 * "<greeting>, <text>!", refuses binary messages with close code 1003 and
 * logs how each connection ended.
 *
 * Build and install (websocket_plugin.h is in httpd's include directory
 * after "make install" of mod_websocket; from the source tree add -I.):
 *
 *     apxs -c -o mod_hello.la hello.c
 *     cp .libs/mod_hello.so /usr/lib/apache2/modules/
 *
 * Configure:
 *
 *     <Location /hello>
 *         SetHandler websocket-handler
 *         WebSocketHandler /usr/lib/apache2/modules/mod_hello.so hello_init
 *         WebSocketOption Greeting Bonjour
 *     </Location>
 */
#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_strings.h"

/* What each connection keeps: allocated from the request pool, which
 * lives until on_disconnect returns. */
typedef struct hello_conn {
    const char *greeting;
    int messages;
} hello_conn;

/* Before the 101: accept (OK) or refuse with an HTTP status; choose a
 * subprotocol if the client offered ours; attach per-connection data. */
static int hello_on_connect(const websocket_server *server,
                            websocket_conn *conn)
{
    request_rec *r = server->request(conn);
    hello_conn *hc = apr_pcalloc(r->pool, sizeof(*hc));

    hc->greeting = server->option(conn, "Greeting");
    if (hc->greeting == NULL) {
        hc->greeting = "Hello";
    }
    /* Optional: APR_EINVAL when the client did not offer it. */
    server->subprotocol_set(conn, "hello.v1");
    server->data_set(conn, hc);
    return OK;
}

/* After the 101: the plugin may send. */
static void hello_on_open(const websocket_server *server,
                          websocket_conn *conn)
{
    hello_conn *hc = server->data_get(conn);
    const char *text = apr_psprintf(server->request(conn)->pool,
                                    "%s, %s!", hc->greeting,
                                    server->client_ip(conn));

    server->send(conn, WEBSOCKET_TEXT, text, strlen(text));
}

/* A whole message; data is valid only during the call. */
static void hello_on_message(const websocket_server *server,
                             websocket_conn *conn, int type,
                             const char *data, apr_size_t len)
{
    hello_conn *hc = server->data_get(conn);
    char reply[256];
    int n;

    if (type != WEBSOCKET_TEXT) {
        server->close(conn, 1003, "text only, please");
        return;
    }
    hc->messages++;
    /* %.*s takes an int: cut long messages short */
    n = apr_snprintf(reply, sizeof(reply), "%s, %.*s!", hc->greeting,
                     (int)(len > 200 ? 200 : len), data);
    server->send(conn, WEBSOCKET_TEXT, reply, (apr_size_t)n);
}

/* The client's closing handshake (1005 when it sent no code). */
static void hello_on_close(const websocket_server *server,
                           websocket_conn *conn, int code,
                           const char *reason, apr_size_t len)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, server->request(conn),
                  "hello: client closed with %d \"%.*s\"", code,
                  (int)len, reason);
}

/* Exactly once per accepted connection, whatever the cause. */
static void hello_on_disconnect(const websocket_server *server,
                                websocket_conn *conn)
{
    hello_conn *hc = server->data_get(conn);

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, server->request(conn),
                  "hello: %s left after %d message(s)",
                  server->client_ip(conn), hc->messages);
    server->data_set(conn, NULL);
}

static websocket_plugin hello_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    hello_on_connect,
    hello_on_open,
    hello_on_message,
    hello_on_close,
    hello_on_disconnect,
    NULL                /* destroy */
};

/* The one exported symbol, named in WebSocketHandler. */
websocket_plugin *hello_init(void)
{
    return &hello_plugin;
}
