/* Licensed under the Apache License, Version 2.0.
 *
 * chat: every message a client sends goes to every client of the same
 * location (in this httpd child), the sender included; text as text,
 * binary as binary (the module skips hixie clients for binary, they
 * cannot receive it).  Joins and departures are announced as
 * "* <client address> joined" and "* <client address> left".
 *
 * broadcast copies the payload once and shares it among all receivers,
 * on whatever loop each of them runs.  A client that stops reading does
 * not hold up the others: nobody waits for it, and once its output
 * exceeds WebSocketMaxPendingBytes the module closes it with 1008.
 */
#include "websocket_plugin.h"

#include "apr_strings.h"

static void chat_announce(const websocket_server *server,
                          websocket_conn *conn, const char *what)
{
    char text[128];
    apr_size_t len = apr_snprintf(text, sizeof(text), "* %s %s",
                                  server->client_ip(conn), what);

    server->broadcast(conn, WEBSOCKET_TEXT, text, len);
}

/* Joining: the newcomer is already among the location's connections, so
 * it sees its own notice too. */
static void chat_on_open(const websocket_server *server, websocket_conn *conn)
{
    chat_announce(server, conn, "joined");
}

static void chat_on_message(const websocket_server *server,
                            websocket_conn *conn, int type,
                            const char *data, apr_size_t len)
{
    server->broadcast(conn, type, data, len);
}

/* Leaving: by now the connection is no longer among the location's, so
 * only the others see the notice. */
static void chat_on_disconnect(const websocket_server *server,
                               websocket_conn *conn)
{
    chat_announce(server, conn, "left");
}

static websocket_plugin chat_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .on_open       = chat_on_open,
    .on_message    = chat_on_message,
    .on_disconnect = chat_on_disconnect,
};

websocket_plugin *chat_init(void)
{
    return &chat_plugin;
}
