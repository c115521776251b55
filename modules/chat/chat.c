/* Licensed under the Apache License, Version 2.0.
 *
 * chat: every message a client sends goes to every client of the same
 * topic, the sender included, in every child of this httpd (and, with
 * WebSocketPubSub, of every httpd sharing the Redis); text as text,
 * binary as binary (the module skips hixie clients for binary, they
 * cannot receive it).  The topic is "WebSocketOption Topic NAME", or by
 * default the request path.  Joins and departures are announced as
 * "* <client address> joined" and "* <client address> left", unless
 * "WebSocketOption Announce off".
 *
 * publish copies the payload once and shares it among all receivers,
 * on whatever loop each of them runs.  A client that stops reading does
 * not hold up the others: nobody waits for it, and once its output
 * exceeds WebSocketMaxPendingBytes the module closes it with 1008.
 */
#include "websocket_plugin.h"

#include "apr_strings.h"
#include <strings.h>

static const char *chat_topic(const websocket_server *server,
                              websocket_conn *conn)
{
    const char *topic = server->option(conn, "Topic");

    return topic != NULL ? topic : server->uri(conn);
}

static void chat_publish(const websocket_server *server,
                         websocket_conn *conn, int type, const char *data,
                         apr_size_t len)
{
    server->publish(conn, chat_topic(server, conn), type, data, len);
}

static void chat_announce(const websocket_server *server,
                          websocket_conn *conn, const char *what)
{
    const char *announce = server->option(conn, "Announce");
    char text[128];
    apr_size_t len;

    if (announce != NULL && strcasecmp(announce, "off") == 0) {
        return;
    }
    len = apr_snprintf(text, sizeof(text), "* %s %s",
                       server->client_ip(conn), what);
    chat_publish(server, conn, WEBSOCKET_TEXT, text, len);
}

/* Joining: the newcomer subscribes first, so it sees its own notice. */
static void chat_on_open(const websocket_server *server, websocket_conn *conn)
{
    if (server->subscribe(conn, chat_topic(server, conn)) != APR_SUCCESS) {
        server->close(conn, 1011, "cannot join the chat");
        return;
    }
    chat_announce(server, conn, "joined");
}

static void chat_on_message(const websocket_server *server,
                            websocket_conn *conn, int type,
                            const char *data, apr_size_t len)
{
    chat_publish(server, conn, type, data, len);
}

/* Leaving: by now the connection has left its topic, so only the others
 * see the notice. */
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
