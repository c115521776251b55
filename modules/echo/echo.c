/* Licensed under the Apache License, Version 2.0.
 *
 * echo: sends every message back as it came, text as text and binary as
 * binary.
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
    server->send(conn, type, data, len);
}

static websocket_plugin echo_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    echo_on_connect,
    NULL,               /* on_open */
    echo_on_message,
    NULL,               /* on_close */
    NULL,               /* on_disconnect */
    NULL                /* destroy */
};

websocket_plugin *echo_init(void)
{
    return &echo_plugin;
}
