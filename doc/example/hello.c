/* Licensed under the Apache License, Version 2.0.
 *
 * hello: a complete small mod_websocket plugin (API v2; doc/plugins.md
 * walks through it).  It greets each client, answers every text message
 * with "<greeting>, <text>!", refuses binary messages with close code
 * 1003, reminds a silent client that it is still connected, and logs how
 * each connection ended.
 *
 * Build (websocket_plugin.h is in httpd's include directory after
 * "make install" of mod_websocket; from the source tree add -I and the
 * top directory):
 *
 *     apxs -c -Wc,-Wall -Wc,-Wextra -o mod_hello.la hello.c
 *     cp .libs/mod_hello.so /usr/lib/apache2/modules/
 *
 * Configure:
 *
 *     <Location /hello>
 *         SetHandler websocket-handler
 *         WebSocketHandler /usr/lib/apache2/modules/mod_hello.so hello_init
 *         WebSocketOption Greeting Bonjour
 *         WebSocketOption Reminder 30
 *     </Location>
 *
 *   Greeting   the word used in every answer (1 to 64 bytes; "Hello").
 *   Reminder   seconds of silence from the client after which the server
 *              sends "<greeting>? Still there?" (0 to 86400, 0 for never;
 *              30).
 *
 * A bad value is a configuration error: "httpd -t" reports it.
 */
#include <stdlib.h>
#include <string.h>

#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_strings.h"

/* What init_location made of a location's WebSocketOptions: allocated
 * from the configuration pool, read-only afterwards, shared by all the
 * location's connections (on any loop). */
typedef struct hello_location {
    const char *greeting;
    apr_interval_time_t reminder;      /* 0: none */
} hello_location;

/* What each connection keeps.  The request pool ends when on_open
 * returns, so per-connection state is the plugin's own memory, freed in
 * on_disconnect.  Only ever touched on the connection's loop. */
typedef struct hello_conn {
    const hello_location *loc;
    websocket_timer *reminder;         /* NULL when none is armed */
    int messages;
} hello_conn;

/* Once per WebSocketHandler line, when the configuration is read (also by
 * "httpd -t"): check the options once, instead of at every connection. */
static void *hello_init_location(apr_pool_t *pool, server_rec *s,
                                 const apr_table_t *options,
                                 const char **error)
{
    hello_location *loc = apr_pcalloc(pool, sizeof(*loc));
    const char *greeting = apr_table_get(options, "Greeting");
    const char *reminder = apr_table_get(options, "Reminder");
    apr_int64_t seconds = 30;

    (void)s;
    loc->greeting = greeting ? greeting : "Hello";
    if (*loc->greeting == '\0' || strlen(loc->greeting) > 64) {
        *error = apr_psprintf(pool, "hello: Greeting must be 1 to 64 bytes, "
                              "not \"%s\"", loc->greeting);
        return NULL;
    }
    if (reminder != NULL) {
        char *end;

        seconds = apr_strtoi64(reminder, &end, 10);
        if (end == reminder || *end != '\0' || seconds < 0
            || seconds > 86400) {
            *error = apr_psprintf(pool, "hello: Reminder must be 0 to 86400 "
                                  "seconds, not \"%s\"", reminder);
            return NULL;
        }
    }
    loc->reminder = apr_time_from_sec(seconds);
    return loc;
}

/* Before the 101: accept (OK) or refuse with an HTTP status; choose a
 * subprotocol if the client offered ours; attach per-connection data
 * (from here on, on_disconnect is sure to come and free it). */
static int hello_on_connect(const websocket_server *server,
                            websocket_conn *conn)
{
    hello_conn *hc = calloc(1, sizeof(*hc));

    if (hc == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    hc->loc = server->location_data(conn);
    /* Optional: APR_EINVAL when the client did not offer it. */
    server->subprotocol_set(conn, "hello.v1");
    server->data_set(conn, hc);
    return OK;
}

static void hello_send(const websocket_server *server, websocket_conn *conn,
                       const char *text, apr_size_t len)
{
    /* Queued beyond the high-water mark: stop reading the client (whose
     * messages make us send) until on_drain. */
    if (server->send(conn, WEBSOCKET_TEXT, text, len)
        == WEBSOCKET_SEND_FULL) {
        server->pause_reading(conn, 1);
    }
}

/* A timer's function runs on the connection's loop, like a callback. */
static void hello_remind(const websocket_server *server,
                         websocket_conn *conn, void *baton)
{
    hello_conn *hc = baton;
    char text[96];
    int n;

    hc->reminder = NULL;               /* a one-shot timer ends here */
    n = apr_snprintf(text, sizeof(text), "%s? Still there?",
                     hc->loc->greeting);
    hello_send(server, conn, text, (apr_size_t)n);
}

/* (Re)starts the silence clock: cancel the armed timer, arm a new one. */
static void hello_rearm(const websocket_server *server, websocket_conn *conn,
                        hello_conn *hc)
{
    if (hc->reminder != NULL) {
        server->timer_cancel(conn, hc->reminder);
        hc->reminder = NULL;
    }
    if (hc->loc->reminder > 0) {
        hc->reminder = server->timer_add(conn, hc->loc->reminder, 0,
                                         hello_remind, hc);
    }
}

/* After the 101: the plugin may send. */
static void hello_on_open(const websocket_server *server,
                          websocket_conn *conn)
{
    hello_conn *hc = server->data_get(conn);
    char text[128];
    int n = apr_snprintf(text, sizeof(text), "%s, %s!", hc->loc->greeting,
                         server->client_ip(conn));

    hello_send(server, conn, text, (apr_size_t)n);
    hello_rearm(server, conn, hc);
}

/* A whole message; data is valid only during the call and is not NUL
 * terminated. */
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
    hello_rearm(server, conn, hc);
    /* %.*s takes an int: cut long messages short */
    n = apr_snprintf(reply, sizeof(reply), "%s, %.*s!", hc->loc->greeting,
                     (int)(len > 200 ? 200 : len), data);
    hello_send(server, conn, reply, (apr_size_t)n);
}

/* What was sent has mostly reached the client: listen to it again. */
static void hello_on_drain(const websocket_server *server,
                           websocket_conn *conn)
{
    server->pause_reading(conn, 0);
}

/* The client's closing handshake (1005 when it sent no code). */
static void hello_on_close(const websocket_server *server,
                           websocket_conn *conn, int code,
                           const char *reason, apr_size_t len)
{
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, server->server_rec_of(conn),
                 "hello: %s closed with %d \"%.*s\"",
                 server->client_ip(conn), code, (int)len, reason);
}

/* Exactly once per accepted connection, whatever the cause.  The module
 * has already ended the connection's timers: only our memory is left. */
static void hello_on_disconnect(const websocket_server *server,
                                websocket_conn *conn)
{
    hello_conn *hc = server->data_get(conn);

    ap_log_error(APLOG_MARK, APLOG_INFO, 0, server->server_rec_of(conn),
                 "hello: %s left after %d message(s)",
                 server->client_ip(conn), hc->messages);
    server->data_set(conn, NULL);
    free(hc);
}

/* Designated initializers: the callbacks not named are NULL. */
static websocket_plugin hello_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .init_location = hello_init_location,
    .on_connect    = hello_on_connect,
    .on_open       = hello_on_open,
    .on_message    = hello_on_message,
    .on_close      = hello_on_close,
    .on_disconnect = hello_on_disconnect,
    .on_drain      = hello_on_drain,
};

/* The one exported symbol, named in WebSocketHandler. */
websocket_plugin *hello_init(void)
{
    return &hello_plugin;
}
