/* Licensed under the Apache License, Version 2.0.
 *
 * broken: init functions returning plugins that mod_websocket must refuse
 * at configuration time (t/plugin_errors.t).  Each is a different defect.
 */
#include "websocket_plugin.h"

static void broken_on_message(const websocket_server *server,
                              websocket_conn *conn, int type,
                              const char *data, apr_size_t len)
{
    server->send(conn, type, data, len);
}

/* A plugin built against a future API version. */
static websocket_plugin future_plugin = {
    sizeof(websocket_plugin), WEBSOCKET_PLUGIN_VERSION + 98,
    NULL, NULL, broken_on_message, NULL, NULL, NULL
};

/* A plugin without the one required callback. */
static websocket_plugin no_message_plugin = {
    sizeof(websocket_plugin), WEBSOCKET_PLUGIN_VERSION,
    NULL, NULL, NULL, NULL, NULL, NULL
};

/* A struct too small for the version it claims. */
static websocket_plugin short_plugin = {
    sizeof(apr_size_t), WEBSOCKET_PLUGIN_VERSION,
    NULL, NULL, broken_on_message, NULL, NULL, NULL
};

websocket_plugin *broken_future_init(void)
{
    return &future_plugin;
}

websocket_plugin *broken_no_message_init(void)
{
    return &no_message_plugin;
}

websocket_plugin *broken_short_init(void)
{
    return &short_plugin;
}

websocket_plugin *broken_null_init(void)
{
    return NULL;
}
