/* Licensed under the Apache License, Version 2.0.
 *
 * broken: init functions returning plugins that mod_websocket must refuse
 * at configuration time (t/plugin_errors.t), each with a different
 * defect, plus one that must load (a control for the on_fragment rule).
 *
 *   broken_null_init           returns NULL
 *   broken_future_init         version 99 (a later API than the module's)
 *   broken_v1_init             version 1 with the never-released v1 layout
 *                              (no init_location; its size covers v1's
 *                              fields): refused as unsupported, since the
 *                              lowest accepted version is 2
 *   broken_v0_init             version 0
 *   broken_short_init          size of one field only, version 2
 *   broken_truncated_init      version 2 but its size stops before the
 *                              last v2 field (destroy)
 *   broken_no_message_init     neither on_message nor on_fragment
 *   broken_refuse_init         valid, but its init_location refuses every
 *                              location with the error
 *                              "broken: init_location refuses <Reason>"
 *                              (<Reason>: WebSocketOption Reason, or
 *                              "this location")
 *   fragment_only_init         NOT broken: on_fragment without on_message
 *                              must be accepted
 */
#include <stddef.h>

#include "websocket_plugin.h"

#include "apr_strings.h"

static void broken_on_message(const websocket_server *server,
                              websocket_conn *conn, int type,
                              const char *data, apr_size_t len)
{
    server->send(conn, type, data, len);
}

/* A plugin built against a future API version. */
static websocket_plugin future_plugin = {
    .size       = sizeof(websocket_plugin),
    .version    = 99,
    .on_message = broken_on_message,
};

/* What a plugin built against the unreleased version 1 header looks
 * like: size, version and six callbacks, on_connect first. */
typedef struct broken_v1_plugin {
    apr_size_t size;
    unsigned int version;
    void (*on_connect)(void);
    void (*on_open)(void);
    void (*on_message)(const websocket_server *server, websocket_conn *conn,
                       int type, const char *data, apr_size_t len);
    void (*on_close)(void);
    void (*on_disconnect)(void);
    void (*destroy)(void);
} broken_v1_plugin;

static broken_v1_plugin v1_plugin = {
    sizeof(broken_v1_plugin), 1,
    NULL, NULL, broken_on_message, NULL, NULL, NULL
};

/* Version 0: never valid. */
static websocket_plugin v0_plugin = {
    .size       = sizeof(websocket_plugin),
    .version    = 0,
    .on_message = broken_on_message,
};

/* A struct too small for the version it claims (not even the version
 * field is covered). */
static websocket_plugin short_plugin = {
    .size       = sizeof(apr_size_t),
    .version    = WEBSOCKET_PLUGIN_VERSION,
    .on_message = broken_on_message,
};

/* Version 2, but one field short: the size must cover every field of the
 * version, the last one included. */
static websocket_plugin truncated_plugin = {
    .size       = offsetof(websocket_plugin, destroy),
    .version    = WEBSOCKET_PLUGIN_VERSION,
    .on_message = broken_on_message,
};

/* A plugin without a way to receive messages. */
static websocket_plugin no_message_plugin = {
    .size       = sizeof(websocket_plugin),
    .version    = WEBSOCKET_PLUGIN_VERSION,
};

/* A valid plugin whose init_location refuses the configuration. */
static void *broken_refuse_location(apr_pool_t *pool, server_rec *s,
                                    const apr_table_t *options,
                                    const char **error)
{
    const char *reason = apr_table_get(options, "Reason");

    (void)s;
    *error = apr_psprintf(pool, "broken: init_location refuses %s",
                          reason ? reason : "this location");
    return NULL;
}

static websocket_plugin refuse_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .init_location = broken_refuse_location,
    .on_message    = broken_on_message,
};

/* Not broken: a streaming plugin needs no on_message.  It echoes each
 * piece as one fragment of the same message. */
static void fragment_on_fragment(const websocket_server *server,
                                 websocket_conn *conn, int type,
                                 apr_bucket_brigade *bb, int final)
{
    /* FULL or refused: this control plugin does not care */
    (void)server->send_brigade(conn, type, bb, final);
    apr_brigade_cleanup(bb);
}

static websocket_plugin fragment_only_plugin = {
    .size        = sizeof(websocket_plugin),
    .version     = WEBSOCKET_PLUGIN_VERSION,
    .on_fragment = fragment_on_fragment,
};

websocket_plugin *broken_null_init(void)
{
    return NULL;
}

websocket_plugin *broken_future_init(void)
{
    return &future_plugin;
}

websocket_plugin *broken_v1_init(void)
{
    return (websocket_plugin *)&v1_plugin;
}

websocket_plugin *broken_v0_init(void)
{
    return &v0_plugin;
}

websocket_plugin *broken_short_init(void)
{
    return &short_plugin;
}

websocket_plugin *broken_truncated_init(void)
{
    return &truncated_plugin;
}

websocket_plugin *broken_no_message_init(void)
{
    return &no_message_plugin;
}

websocket_plugin *broken_refuse_init(void)
{
    return &refuse_plugin;
}

websocket_plugin *fragment_only_init(void)
{
    return &fragment_only_plugin;
}
