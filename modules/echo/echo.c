/* Licensed under the Apache License, Version 2.0.
 *
 * echo: sends every message back as it came, text as text and binary as
 * binary.
 *
 * Backpressure: a client that sends but does not read would make the
 * server queue its echoes without bound.  When a send answers
 * WEBSOCKET_SEND_FULL the plugin stops reading the client until on_drain,
 * so the client's own TCP window fills and it has to wait instead.
 */
#include "websocket_plugin.h"

/* An echo speaks whatever the client speaks: it takes the first
 * subprotocol offered, if any. */
static int echo_on_connect(const websocket_server *server,
                           websocket_conn *conn)
{
    if (server->subprotocol_count(conn) > 0) {
        server->subprotocol_set(conn, server->subprotocol_offered(conn, 0));
    }
    return OK;
}

static void echo_on_message(const websocket_server *server,
                            websocket_conn *conn, int type,
                            const char *data, apr_size_t len)
{
    if (server->send(conn, type, data, len) == WEBSOCKET_SEND_FULL) {
        server->pause_reading(conn, 1);
    }
}

/* The client took enough of its echoes: listen to it again.  (on_drain
 * only follows a WEBSOCKET_SEND_FULL, and every one of those paused.) */
static void echo_on_drain(const websocket_server *server,
                          websocket_conn *conn)
{
    server->pause_reading(conn, 0);
}

static websocket_plugin echo_plugin = {
    .size       = sizeof(websocket_plugin),
    .version    = WEBSOCKET_PLUGIN_VERSION,
    .on_connect = echo_on_connect,
    .on_message = echo_on_message,
    .on_drain   = echo_on_drain,
};

websocket_plugin *echo_init(void)
{
    return &echo_plugin;
}
