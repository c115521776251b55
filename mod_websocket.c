/* Licensed under the Apache License, Version 2.0.
 *
 * mod_websocket.c: httpd glue -- directives, per-directory configuration,
 * plugin loading, and the handler that validates and answers the upgrade
 * request.  The connection itself is driven by ws_connection.c; the
 * protocol rules live in the engine (ws_engine.h).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_connection.h"
#include "mpm_common.h"
#include "util_filter.h"
#include "apr_dso.h"
#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_uri.h"
#include "apr_optional_hooks.h"
#include "mod_status.h"

#include <unistd.h>
#include <errno.h>

#include "mod_websocket.h"
#include "ws_stats.h"

module AP_MODULE_DECLARE_DATA websocket_module;

#define WS_HANDLER_NAME "websocket-handler"
/* Most loop threads per child. */
#define WS_MAX_LOOPS 64

static apr_array_header_t *ws_locations;

/* Defaults (documented in README). */
#define WS_DEFAULT_PROTOCOLS \
    (WS_ALLOW_RFC6455 | WS_ALLOW_HIXIE76 | WS_ALLOW_HIXIE75)
#define WS_DEFAULT_MAX_MESSAGE       (16 * 1024 * 1024)
#define WS_DEFAULT_MAX_PENDING       (4 * 1024 * 1024)
#define WS_DEFAULT_HANDSHAKE_TIMEOUT apr_time_from_sec(10)
#define WS_DEFAULT_IDLE_TIMEOUT      apr_time_from_sec(600)
#define WS_DEFAULT_CLOSE_TIMEOUT     apr_time_from_sec(5)
#define WS_DEFAULT_WRITE_TIMEOUT     apr_time_from_sec(60)
#define WS_DEFAULT_COMPRESSION_LEVEL       6
#define WS_DEFAULT_COMPRESSION_WINDOW_BITS 15
#define WS_DEFAULT_COMPRESSION_MEM_LEVEL   8
/* The permessage-deflate answer, from the handler to the 101. */
#define WS_NOTE_EXTENSIONS "websocket-extensions"

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

static void *ws_create_dir_conf(apr_pool_t *p, char *dir)
{
    ws_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->protocols = 0;
    conf->origin_check = WS_ORIGIN_UNSET;
    conf->max_message = -1;
    conf->fragment_size = -1;
    conf->max_pending = -1;
    conf->handshake_timeout = -1;
    conf->idle_timeout = -1;
    conf->ping_interval = -1;
    conf->close_timeout = -1;
    conf->write_timeout = -1;
    conf->compression = -1;
    conf->compression_level = -1;
    conf->compression_window_bits = -1;
    conf->compression_mem_level = -1;
    conf->compression_no_context = -1;
    return conf;
}

#define WS_MERGE(field, unset) \
    conf->field = (add->field != (unset)) ? add->field : base->field

static void *ws_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    const ws_dir_conf *base = basev, *add = addv;
    ws_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    WS_MERGE(loc, NULL);
    WS_MERGE(protocols, 0);
    WS_MERGE(origin_check, WS_ORIGIN_UNSET);
    WS_MERGE(trusted_origins, NULL);
    conf->options = base->options && add->options
        ? apr_table_overlay(p, add->options, base->options)
        : (add->options ? add->options : base->options);
    WS_MERGE(max_message, -1);
    WS_MERGE(fragment_size, -1);
    WS_MERGE(max_pending, -1);
    WS_MERGE(handshake_timeout, -1);
    WS_MERGE(idle_timeout, -1);
    WS_MERGE(ping_interval, -1);
    WS_MERGE(close_timeout, -1);
    WS_MERGE(write_timeout, -1);
    WS_MERGE(compression, -1);
    WS_MERGE(compression_level, -1);
    WS_MERGE(compression_window_bits, -1);
    WS_MERGE(compression_mem_level, -1);
    WS_MERGE(compression_no_context, -1);
    return conf;
}

#define WS_DEFAULT(field, unset, value) \
    if (conf->field == (unset)) conf->field = (value)

/* A copy of conf with every unset value replaced by its default. */
static const ws_dir_conf *ws_conf_resolve(apr_pool_t *p,
                                          const ws_dir_conf *merged)
{
    ws_dir_conf *conf = apr_pmemdup(p, merged, sizeof(*conf));

    WS_DEFAULT(protocols, 0, WS_DEFAULT_PROTOCOLS);
    WS_DEFAULT(origin_check, WS_ORIGIN_UNSET, WS_ORIGIN_SAME);
    WS_DEFAULT(max_message, -1, WS_DEFAULT_MAX_MESSAGE);
    WS_DEFAULT(fragment_size, -1, 0);
    WS_DEFAULT(max_pending, -1, WS_DEFAULT_MAX_PENDING);
    WS_DEFAULT(handshake_timeout, -1, WS_DEFAULT_HANDSHAKE_TIMEOUT);
    WS_DEFAULT(idle_timeout, -1, WS_DEFAULT_IDLE_TIMEOUT);
    WS_DEFAULT(ping_interval, -1, 0);
    WS_DEFAULT(close_timeout, -1, WS_DEFAULT_CLOSE_TIMEOUT);
    WS_DEFAULT(write_timeout, -1, WS_DEFAULT_WRITE_TIMEOUT);
    WS_DEFAULT(compression, -1, 1);
    WS_DEFAULT(compression_level, -1, WS_DEFAULT_COMPRESSION_LEVEL);
    WS_DEFAULT(compression_window_bits, -1,
               WS_DEFAULT_COMPRESSION_WINDOW_BITS);
    WS_DEFAULT(compression_mem_level, -1, WS_DEFAULT_COMPRESSION_MEM_LEVEL);
    WS_DEFAULT(compression_no_context, -1, 0);
    return conf;
}

/* The size of a version 2 websocket_plugin: a plugin built against a
 * later header (with more fields) is at least this large.  A later
 * version adds its own minimum here. */
#define WS_PLUGIN_V2_SIZE \
    (APR_OFFSETOF(websocket_plugin, destroy) \
     + sizeof(((websocket_plugin *)NULL)->destroy))

/* Check a plugin's self-description; NULL when usable. */
static const char *ws_plugin_problem(apr_pool_t *p,
                                     const websocket_plugin *plugin)
{
    if (plugin == NULL) {
        return "the init function returned NULL";
    }
    if (plugin->version < WEBSOCKET_PLUGIN_VERSION_MIN
        || plugin->version > WEBSOCKET_PLUGIN_VERSION) {
        return apr_psprintf(p, "plugin API version %u is not supported "
                            "(this module speaks %d to %d)",
                            plugin->version, WEBSOCKET_PLUGIN_VERSION_MIN,
                            WEBSOCKET_PLUGIN_VERSION);
    }
    if (plugin->size < WS_PLUGIN_V2_SIZE) {
        return "the plugin struct is smaller than its version requires";
    }
    if (plugin->on_message == NULL && plugin->on_fragment == NULL) {
        return "the plugin has neither on_message nor on_fragment";
    }
    return NULL;
}

static apr_status_t ws_plugin_destroy(void *data)
{
    websocket_plugin *plugin = data;

    plugin->destroy(plugin);
    return APR_SUCCESS;
}

/* WebSocketHandler path/to/plugin.so init_function */
static const char *ws_cmd_handler(cmd_parms *cmd, void *dconf,
                                  const char *path, const char *init)
{
    ws_dir_conf *conf = dconf;
    const char *file = ap_server_root_relative(cmd->pool, path);
    apr_dso_handle_t *dso = NULL;
    apr_dso_handle_sym_t sym;
    websocket_plugin_init_fn init_fn;
    websocket_plugin *plugin;
    ws_location *loc;
    const char *problem;
    char err[256];

    if (file == NULL) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: invalid path %s",
                            path);
    }
    if (apr_dso_load(&dso, file, cmd->pool) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: cannot load %s: %s",
                            file, apr_dso_error(dso, err, sizeof(err)));
    }
    if (apr_dso_sym(&sym, dso, init) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool,
                            "WebSocketHandler: %s has no function %s: %s",
                            file, init, apr_dso_error(dso, err, sizeof(err)));
    }
    /* The DSO symbol is a function; APR hands it over as a data pointer. */
    memcpy(&init_fn, &sym, sizeof(init_fn));
    plugin = init_fn();
    problem = ws_plugin_problem(cmd->pool, plugin);
    if (problem != NULL) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s (%s): %s",
                            file, init, problem);
    }
    if (plugin->destroy != NULL) {
        /* Registered after the DSO's own cleanup, so it runs before the
         * plugin's code is unloaded. */
        apr_pool_cleanup_register(cmd->pool, plugin, ws_plugin_destroy,
                                  apr_pool_cleanup_null);
    }

    loc = apr_pcalloc(cmd->pool, sizeof(*loc));
    loc->plugin = plugin;
    loc->file = file;
    loc->init_name = init;
    loc->section_options = &conf->options;
    loc->s = cmd->server;
    loc->path = cmd->path != NULL ? cmd->path : "(server)";
    conf->loc = loc;
    if (ws_locations == NULL) {
        ws_locations = apr_array_make(cmd->pool, 8, sizeof(ws_location *));
    }
    loc->index = ws_locations->nelts;
    APR_ARRAY_PUSH(ws_locations, ws_location *) = loc;
    return NULL;
}

/* Every WebSocketHandler of the configuration being read (reset with
 * each configuration pool). */
static apr_status_t ws_locations_reset(void *unused)
{
    (void)unused;
    ws_locations = NULL;
    return APR_SUCCESS;
}

static int ws_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    ws_locations = NULL;
    apr_pool_cleanup_register(pconf, NULL, ws_locations_reset,
                              apr_pool_cleanup_null);
    return OK;
}

/* Once the whole configuration is read (and by "httpd -t"): each
 * location's plugin checks its WebSocketOptions and sets up its
 * context. */
static int ws_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    int i;

    (void)plog;
    (void)ptemp;
    for (i = 0; ws_locations != NULL && i < ws_locations->nelts; i++) {
        ws_location *loc = APR_ARRAY_IDX(ws_locations, i, ws_location *);
        const char *error = NULL;
        apr_table_t *options = *loc->section_options
                               ? *loc->section_options
                               : apr_table_make(pconf, 1);

        if (loc->plugin->init_location == NULL) {
            continue;
        }
        loc->data = loc->plugin->init_location(pconf, loc->s, options,
                                               &error);
        if (error != NULL) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         "WebSocketHandler %s %s: %s", loc->file,
                         loc->init_name, error);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

static void *ws_create_server_conf(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return apr_pcalloc(p, sizeof(ws_server_conf));
}

/* One loop thread per processor, within reason. */
static int ws_default_loops(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (n > WS_MAX_LOOPS ? WS_MAX_LOOPS : (int)n);
}

static const char *ws_cmd_loops(cmd_parms *cmd, void *dconf, const char *arg)
{
    ws_server_conf *sconf = ap_get_module_config(cmd->server->module_config,
                                                 &websocket_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long n;

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    n = strtol(arg, &end, 10);
    if (*end != '\0' || n < 1 || n > WS_MAX_LOOPS) {
        return apr_psprintf(cmd->pool, "WebSocketLoopThreads: '%s' is not "
                            "a number from 1 to %d", arg, WS_MAX_LOOPS);
    }
    sconf->loops = (int)n;
    return NULL;
}

static const char *ws_cmd_pubsub(cmd_parms *cmd, void *dconf,
                                 const char *arg)
{
    ws_server_conf *sconf = ap_get_module_config(cmd->server->module_config,
                                                 &websocket_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    return err != NULL ? err : ws_redis_parse(cmd->pool, arg, &sconf->redis);
}

/* The largest size a directive takes: it must fit the apr_int64_t of the
 * configuration and the apr_size_t it becomes for a connection. */
#define WS_SIZE_MAX ((apr_uint64_t)APR_SIZE_MAX < (apr_uint64_t)APR_INT64_MAX \
                     ? (apr_int64_t)APR_SIZE_MAX : APR_INT64_MAX)

/* Parse a size with an optional K/M/G suffix into *out (0 to
 * WS_SIZE_MAX). */
static const char *ws_parse_size(cmd_parms *cmd, const char *arg,
                                 apr_int64_t *out)
{
    char *end;
    apr_int64_t value, unit = 1;

    errno = 0;
    value = apr_strtoi64(arg, &end, 10);
    if (end == arg || value < 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size",
                            cmd->cmd->name, arg);
    }
    switch (apr_tolower(*end)) {
    case 'g': unit = 1024 * 1024 * 1024; end++; break;
    case 'm': unit = 1024 * 1024; end++; break;
    case 'k': unit = 1024; end++; break;
    default: break;
    }
    if (*end != '\0') {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size",
                            cmd->cmd->name, arg);
    }
    if (errno == ERANGE || value > WS_SIZE_MAX / unit) {
        return apr_psprintf(cmd->pool, "%s: '%s' is too large (at most %"
                            APR_INT64_T_FMT " bytes)", cmd->cmd->name, arg,
                            (apr_int64_t)WS_SIZE_MAX);
    }
    *out = value * unit;
    return NULL;
}

static const char *ws_cmd_size(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_int64_t *field = (apr_int64_t *)((char *)dconf
                                         + (apr_size_t)cmd->info);

    return ws_parse_size(cmd, arg, field);
}

/* A duration in seconds (fractions allowed, e.g. 0.5). */
static const char *ws_cmd_seconds(cmd_parms *cmd, void *dconf,
                                  const char *arg)
{
    apr_interval_time_t *field =
        (apr_interval_time_t *)((char *)dconf + (apr_size_t)cmd->info);
    char *end;
    double seconds = strtod(arg, &end);

    /* Written so that NaN fails too. */
    if (end == arg || *end != '\0' || !(seconds >= 0 && seconds <= 1e9)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of seconds",
                            cmd->cmd->name, arg);
    }
    *field = (apr_interval_time_t)(seconds * APR_USEC_PER_SEC);
    return NULL;
}

/* A directive's keyword and the value it stands for. */
typedef struct ws_keyword {
    const char *name;
    int value;
} ws_keyword;

/* The value of arg in table (case-insensitive), or -1. */
static int ws_keyword_value(const ws_keyword *table, const char *arg)
{
    for (; table->name != NULL; table++) {
        if (!strcasecmp(arg, table->name)) {
            return table->value;
        }
    }
    return -1;
}

static const char *ws_cmd_protocols(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    static const ws_keyword families[] = {
        { "rfc6455", WS_ALLOW_RFC6455 },
        { "hixie76", WS_ALLOW_HIXIE76 },
        { "hixie75", WS_ALLOW_HIXIE75 },
        { NULL, 0 }
    };
    ws_dir_conf *conf = dconf;
    int bit = ws_keyword_value(families, arg);

    if (bit < 0) {
        return apr_psprintf(cmd->pool, "WebSocketProtocols: unknown protocol "
                            "'%s' (use rfc6455, hixie76, hixie75)", arg);
    }
    conf->protocols |= bit;
    return NULL;
}

static const char *ws_cmd_origin_check(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    static const ws_keyword checks[] = {
        { "Same", WS_ORIGIN_SAME },
        { "Trusted", WS_ORIGIN_TRUSTED },
        { "Off", WS_ORIGIN_OFF },
        { NULL, 0 }
    };
    ws_dir_conf *conf = dconf;
    int check = ws_keyword_value(checks, arg);

    if (check < 0) {
        return apr_psprintf(cmd->pool, "WebSocketOriginCheck: '%s' is not "
                            "Same, Trusted or Off", arg);
    }
    conf->origin_check = (ws_origin_check_e)check;
    return NULL;
}

static const char *ws_cmd_trusted_origin(cmd_parms *cmd, void *dconf,
                                         const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (conf->trusted_origins == NULL) {
        conf->trusted_origins = apr_array_make(cmd->pool, 4,
                                               sizeof(const char *));
    }
    APR_ARRAY_PUSH(conf->trusted_origins, const char *) = arg;
    return NULL;
}

static const char *ws_cmd_option(cmd_parms *cmd, void *dconf,
                                 const char *name, const char *value)
{
    ws_dir_conf *conf = dconf;

    if (conf->options == NULL) {
        conf->options = apr_table_make(cmd->pool, 4);
    }
    apr_table_set(conf->options, name, value);
    return NULL;
}

/* On|Off into the int field at cmd->info. */
static const char *ws_cmd_flag(cmd_parms *cmd, void *dconf, int on)
{
    *(int *)((char *)dconf + (apr_size_t)cmd->info) = on != 0;
    return NULL;
}

/* A whole number from min to max into the int field at cmd->info. */
static const char *ws_cmd_int_range(cmd_parms *cmd, void *dconf,
                                    const char *arg, int min, int max)
{
    char *end;
    long n = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || n < min || n > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %d "
                            "to %d", cmd->cmd->name, arg, min, max);
    }
    *(int *)((char *)dconf + (apr_size_t)cmd->info) = (int)n;
    return NULL;
}

static const char *ws_cmd_compression_level(cmd_parms *cmd, void *dconf,
                                            const char *arg)
{
    return ws_cmd_int_range(cmd, dconf, arg, 0, 9);
}

static const char *ws_cmd_compression_window(cmd_parms *cmd, void *dconf,
                                             const char *arg)
{
    return ws_cmd_int_range(cmd, dconf, arg, 8, 15);
}

static const char *ws_cmd_compression_mem(cmd_parms *cmd, void *dconf,
                                          const char *arg)
{
    return ws_cmd_int_range(cmd, dconf, arg, 1, 9);
}

#define WS_FIELD(name) ((void *)APR_OFFSETOF(ws_dir_conf, name))

/* Where every directive is allowed: the server, virtual hosts and
 * <Directory>/<Location>, never .htaccess (httpd answers such a file with
 * "not allowed here" and 500).  WebSocketHandler loads code into httpd and
 * WebSocketOption configures that code; the others size memory, worker
 * time or the access policy of the location that code serves.  In
 * .htaccess they would also live in the request's pool only. */
#define WS_CONF (ACCESS_CONF | RSRC_CONF)

static const command_rec ws_cmds[] = {
    AP_INIT_TAKE1("WebSocketLoopThreads", ws_cmd_loops, NULL, RSRC_CONF,
                  "event-loop threads per child that own the open "
                  "WebSockets (default: one per processor)"),
    AP_INIT_TAKE1("WebSocketPubSub", ws_cmd_pubsub, NULL, RSRC_CONF,
                  "redis://HOST:PORT[/PREFIX]: topics shared with every "
                  "httpd naming the same Redis and prefix"),
    AP_INIT_TAKE2("WebSocketHandler", ws_cmd_handler, NULL, WS_CONF,
                  "the plugin (a shared object) and its init function"),
    AP_INIT_TAKE2("WebSocketOption", ws_cmd_option, NULL, WS_CONF,
                  "a setting for the plugin: name and value"),
    AP_INIT_ITERATE("WebSocketProtocols", ws_cmd_protocols, NULL, WS_CONF,
                    "protocol families served: rfc6455, hixie76, hixie75 "
                    "(default: all three)"),
    AP_INIT_TAKE1("WebSocketOriginCheck", ws_cmd_origin_check, NULL, WS_CONF,
                  "Same (default), Trusted or Off"),
    AP_INIT_ITERATE("WebSocketTrustedOrigin", ws_cmd_trusted_origin, NULL,
                    WS_CONF, "origins accepted with WebSocketOriginCheck "
                    "Trusted, e.g. https://example.com"),
    AP_INIT_TAKE1("WebSocketMaxMessageSize", ws_cmd_size,
                  WS_FIELD(max_message), WS_CONF,
                  "largest frame or message accepted, bytes (K/M/G "
                  "suffix allowed; 0: no limit; default 16M)"),
    AP_INIT_TAKE1("WebSocketFragmentSize", ws_cmd_size,
                  WS_FIELD(fragment_size), WS_CONF,
                  "messages sent are split into frames of this size "
                  "(0: never, the default)"),
    AP_INIT_TAKE1("WebSocketMaxPendingBytes", ws_cmd_size,
                  WS_FIELD(max_pending), WS_CONF,
                  "bytes other threads may queue for one connection "
                  "before it is closed with 1008 (default 4M)"),
    AP_INIT_TAKE1("WebSocketHandshakeTimeout", ws_cmd_seconds,
                  WS_FIELD(handshake_timeout), WS_CONF,
                  "seconds to wait for the hixie-76 key bytes "
                  "(default 10)"),
    AP_INIT_TAKE1("WebSocketIdleTimeout", ws_cmd_seconds,
                  WS_FIELD(idle_timeout), WS_CONF,
                  "seconds without a byte from the client before the "
                  "connection is closed with 1001 (0: never; default 600)"),
    AP_INIT_TAKE1("WebSocketPingInterval", ws_cmd_seconds,
                  WS_FIELD(ping_interval), WS_CONF,
                  "seconds of client silence before the server pings; "
                  "no answer within as long again closes (0: off, the "
                  "default)"),
    AP_INIT_TAKE1("WebSocketCloseTimeout", ws_cmd_seconds,
                  WS_FIELD(close_timeout), WS_CONF,
                  "seconds to wait for the client's close frame after "
                  "the server's (default 5)"),
    AP_INIT_TAKE1("WebSocketWriteTimeout", ws_cmd_seconds,
                  WS_FIELD(write_timeout), WS_CONF,
                  "seconds a client may take no bytes of pending output "
                  "before the connection is closed (0: never; default "
                  "60)"),
    AP_INIT_FLAG("WebSocketCompression", ws_cmd_flag,
                 WS_FIELD(compression), WS_CONF,
                 "On (default): accept a client's permessage-deflate "
                 "(RFC 7692) offer; Off: negotiate no compression"),
    AP_INIT_TAKE1("WebSocketCompressionLevel", ws_cmd_compression_level,
                  WS_FIELD(compression_level), WS_CONF,
                  "zlib level of the messages the server sends, 1-9; 0: "
                  "send uncompressed, accept compressed (default 6)"),
    AP_INIT_TAKE1("WebSocketCompressionMaxWindowBits",
                  ws_cmd_compression_window,
                  WS_FIELD(compression_window_bits), WS_CONF,
                  "largest LZ77 window, 8-15 bits, of the server's "
                  "compressor and of the client's where it lets the "
                  "server choose (default 15)"),
    AP_INIT_TAKE1("WebSocketCompressionMemLevel", ws_cmd_compression_mem,
                  WS_FIELD(compression_mem_level), WS_CONF,
                  "zlib memLevel of the server's compressor, 1-9 "
                  "(default 8)"),
    AP_INIT_FLAG("WebSocketCompressionNoContextTakeover", ws_cmd_flag,
                 WS_FIELD(compression_no_context), WS_CONF,
                 "On: ask for server_ and client_no_context_takeover, so "
                 "that no zlib memory is kept between messages (default "
                 "Off)"),
    {NULL}
};

/* ------------------------------------------------------------------ */
/* Handshake validation                                                */

/* Refuse the upgrade: one log line (client and URI come with it) and the
 * status for httpd to answer with.  The connection is not kept alive: a
 * hixie-76 client sends its key bytes after the headers whatever the
 * answer, and they must not be read as the next request. */
static int ws_refuse(request_rec *r, int status, int level,
                     const char *reason)
{
    r->connection->keepalive = AP_CONN_CLOSE;
    ws_stats_refused(status);
    ap_log_rerror(APLOG_MARK, level, 0, r,
                  "websocket: handshake refused with %d for %s: %s",
                  status, r->uri, reason);
    return status;
}

/* Authority part of an Origin ("scheme://host[:port]"), without a
 * default port, or NULL if it is not of that form. */
static const char *ws_origin_authority(apr_pool_t *p, const char *origin)
{
    apr_uri_t uri;

    if (apr_uri_parse(p, origin, &uri) != APR_SUCCESS
        || uri.scheme == NULL || uri.hostname == NULL) {
        return NULL;
    }
    if (uri.port_str == NULL
        || uri.port == apr_uri_port_of_scheme(uri.scheme)) {
        return uri.hostname;
    }
    return apr_pstrcat(p, uri.hostname, ":", uri.port_str, NULL);
}

/* Host header without a default port for the request's scheme. */
static const char *ws_host_authority(request_rec *r, const char *host)
{
    const char *colon = strrchr(host, ':');

    if (colon != NULL && strchr(colon, ']') == NULL
        && atoi(colon + 1) == (int)ap_default_port(r)) {
        return apr_pstrmemdup(r->pool, host, colon - host);
    }
    return host;
}

static int ws_origin_trusted(const ws_dir_conf *conf, const char *origin)
{
    int i;

    for (i = 0; conf->trusted_origins && i < conf->trusted_origins->nelts;
         i++) {
        if (!strcasecmp(origin,
                        APR_ARRAY_IDX(conf->trusted_origins, i,
                                      const char *))) {
            return 1;
        }
    }
    return 0;
}

/* NULL when the Origin passes WebSocketOriginCheck; otherwise why not.
 * A request without Origin comes from a non-browser client: it passes. */
static const char *ws_origin_problem(request_rec *r, const ws_dir_conf *conf,
                                     const char *origin, const char *host)
{
    const char *authority;

    if (origin == NULL || conf->origin_check == WS_ORIGIN_OFF) {
        return NULL;
    }
    if (conf->origin_check == WS_ORIGIN_TRUSTED) {
        return ws_origin_trusted(conf, origin) ? NULL
            : apr_psprintf(r->pool, "origin %s is not a "
                           "WebSocketTrustedOrigin", origin);
    }
    authority = ws_origin_authority(r->pool, origin);
    if (authority == NULL
        || strcasecmp(authority, ws_host_authority(r, host))) {
        return apr_psprintf(r->pool, "origin %s does not match host %s",
                            origin, host);
    }
    return NULL;
}

/* Checks common to every family; OK or the status to answer with. */
static int ws_check_upgrade(request_rec *r, const char *host)
{
    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");

    /* httpd counts HEAD as M_GET; only a real GET may upgrade. */
    if (r->method_number != M_GET || r->header_only) {
        ap_allow_methods(r, 1, "GET", NULL);
        return ws_refuse(r, HTTP_METHOD_NOT_ALLOWED, APLOG_ERR,
                         apr_psprintf(r->pool, "method %s is not GET",
                                      r->method));
    }
    if (upgrade == NULL || !ws_token_list_has(upgrade, "websocket")) {
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        return ws_refuse(r, HTTP_UPGRADE_REQUIRED, APLOG_INFO,
                         "not a WebSocket upgrade request (no "
                         "'Upgrade: websocket')");
    }
    if (!ws_token_list_has(apr_table_get(r->headers_in, "Connection"),
                           "upgrade")) {
        return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                         "Connection header does not contain Upgrade");
    }
    if (r->proto_num < HTTP_VERSION(1, 1)) {
        return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                         apr_psprintf(r->pool, "%s is older than HTTP/1.1",
                                      r->protocol));
    }
    if (host == NULL || *host == '\0') {
        return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR, "no Host header");
    }
    return OK;
}

static const char *ws_family_name(ws_proto_e proto)
{
    switch (proto) {
    case WS_PROTO_HIXIE75: return "hixie-75";
    case WS_PROTO_HIXIE76: return "hixie-76";
    default: return "RFC 6455";
    }
}

/* Family-specific header checks; OK or the status to answer with. */
static int ws_check_family(request_rec *r, const ws_dir_conf *conf,
                           ws_proto_e proto)
{
    apr_table_t *in = r->headers_in;
    const char *problem;
    apr_uint32_t ignored;

    if (!(conf->protocols & (1 << proto))) {
        if (conf->protocols & WS_ALLOW_RFC6455) {
            apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version",
                           "13, 8, 7");
        }
        return ws_refuse(r, HTTP_UPGRADE_REQUIRED, APLOG_ERR,
                         apr_psprintf(r->pool, "%s is not enabled by "
                                      "WebSocketProtocols here",
                                      ws_family_name(proto)));
    }
    if (proto == WS_PROTO_RFC6455) {
        if (!ws_rfc6455_version_ok(apr_table_get(in,
                                                 "Sec-WebSocket-Version"))) {
            apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version",
                           "13, 8, 7");
            return ws_refuse(r, HTTP_UPGRADE_REQUIRED, APLOG_ERR,
                             "unsupported Sec-WebSocket-Version");
        }
        problem = ws_rfc6455_check_key(apr_table_get(in,
                                                     "Sec-WebSocket-Key"));
        return problem ? ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                                   apr_pstrcat(r->pool, "Sec-WebSocket-Key: ",
                                               problem, NULL))
                       : OK;
    }
    if (apr_table_get(in, "Origin") == NULL) {
        return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                         apr_psprintf(r->pool, "%s request without Origin",
                                      ws_family_name(proto)));
    }
    if (proto == WS_PROTO_HIXIE76) {
        const char *key1 = apr_table_get(in, "Sec-WebSocket-Key1");
        const char *key2 = apr_table_get(in, "Sec-WebSocket-Key2");

        if (key1 == NULL || key2 == NULL) {
            return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                             key1 ? "no Sec-WebSocket-Key2"
                                  : "no Sec-WebSocket-Key1");
        }
        if ((problem = ws_hixie76_key_value(key1, &ignored)) != NULL
            || (problem = ws_hixie76_key_value(key2, &ignored)) != NULL) {
            return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                             apr_pstrcat(r->pool, "bad hixie-76 key: ",
                                         problem, NULL));
        }
    }
    return OK;
}

/* ------------------------------------------------------------------ */
/* Handshake answer                                                    */

/* The offered subprotocols: RFC 6455 and hixie-76 send a list in
 * Sec-WebSocket-Protocol, hixie-75 a single WebSocket-Protocol. */
static apr_array_header_t *ws_offered_subprotocols(request_rec *r,
                                                   ws_proto_e proto)
{
    const char *header = proto == WS_PROTO_HIXIE75 ? "WebSocket-Protocol"
                                                   : "Sec-WebSocket-Protocol";

    return ws_token_list_split(r->pool, apr_table_get(r->headers_in, header));
}

/* ws:// or wss:// location of this request, from its Host header. */
static const char *ws_location_url(request_rec *r, const char *host)
{
    return apr_pstrcat(r->pool, ap_http_scheme(r)[4] == 's' ? "wss://"
                                                            : "ws://",
                       host, r->unparsed_uri, NULL);
}

/* The headers of the 101 answer, in the order of each family's
 * specification.  Both answers come from here: the bytes written on an
 * HTTP/1.1 connection, and r->headers_out on an HTTP/2 stream. */
apr_table_t *ws_handshake_headers(request_rec *r, int family,
                                  const char *host, const char *subprotocol)
{
    apr_table_t *h = apr_table_make(r->pool, 6);
    const char *origin = apr_table_get(r->headers_in, "Origin");
    char accept[29];

    switch (family) {
    case WEBSOCKET_PROTOCOL_HIXIE75:
        apr_table_setn(h, "Upgrade", "WebSocket");
        apr_table_setn(h, "Connection", "Upgrade");
        apr_table_setn(h, "WebSocket-Origin", origin);
        apr_table_setn(h, "WebSocket-Location", ws_location_url(r, host));
        if (subprotocol != NULL) {
            apr_table_setn(h, "WebSocket-Protocol", subprotocol);
        }
        return h;
    case WEBSOCKET_PROTOCOL_HIXIE76:
        apr_table_setn(h, "Upgrade", "WebSocket");
        apr_table_setn(h, "Connection", "Upgrade");
        apr_table_setn(h, "Sec-WebSocket-Origin", origin);
        apr_table_setn(h, "Sec-WebSocket-Location",
                       ws_location_url(r, host));
        break;
    default:
        ws_rfc6455_accept(apr_table_get(r->headers_in, "Sec-WebSocket-Key"),
                          accept);
        apr_table_setn(h, "Upgrade", "websocket");
        apr_table_setn(h, "Connection", "Upgrade");
        apr_table_set(h, "Sec-WebSocket-Accept", accept);
        if (apr_table_get(r->notes, WS_NOTE_EXTENSIONS) != NULL) {
            apr_table_setn(h, "Sec-WebSocket-Extensions",
                           apr_table_get(r->notes, WS_NOTE_EXTENSIONS));
        }
        break;
    }
    if (subprotocol != NULL) {
        apr_table_setn(h, "Sec-WebSocket-Protocol", subprotocol);
    }
    return h;
}

static int ws_head_line(void *baton, const char *name, const char *value)
{
    apr_array_header_t *lines = baton;

    APR_ARRAY_PUSH(lines, const char *) = name;
    APR_ARRAY_PUSH(lines, const char *) = ": ";
    APR_ARRAY_PUSH(lines, const char *) = value;
    APR_ARRAY_PUSH(lines, const char *) = "\r\n";
    return 1;
}

/* The 101 answer as HTTP/1.1 bytes: each family's status line, then
 * ws_handshake_headers. */
static const char *ws_response_head(request_rec *r, int family,
                                    const char *host, const char *sub)
{
    apr_array_header_t *lines = apr_array_make(r->pool, 32,
                                               sizeof(const char *));

    APR_ARRAY_PUSH(lines, const char *) =
        family == WEBSOCKET_PROTOCOL_HIXIE75
            ? "HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        : family == WEBSOCKET_PROTOCOL_HIXIE76
            ? "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
            : "HTTP/1.1 101 Switching Protocols\r\n";
    apr_table_do(ws_head_line, lines,
                 ws_handshake_headers(r, family, host, sub), NULL);
    APR_ARRAY_PUSH(lines, const char *) = "\r\n";
    return apr_array_pstrcat(r->pool, lines, '\0');
}

const char *ws_handshake_answer(request_rec *r, int family, const char *host,
                                const char *subprotocol,
                                const unsigned char *key3, apr_size_t *len)
{
    const char *head = ws_response_head(r, family, host, subprotocol);
    apr_size_t head_len = strlen(head);
    char *out;
    apr_uint32_t n1, n2;

    *len = head_len;
    if (family != WEBSOCKET_PROTOCOL_HIXIE76) {
        return head;
    }
    out = apr_palloc(r->pool, head_len + 16);
    memcpy(out, head, head_len);
    ws_hixie76_key_value(apr_table_get(r->headers_in, "Sec-WebSocket-Key1"),
                         &n1);
    ws_hixie76_key_value(apr_table_get(r->headers_in, "Sec-WebSocket-Key2"),
                         &n2);
    ws_hixie76_answer(n1, n2, key3, (unsigned char *)out + head_len);
    *len += 16;
    return out;
}

/* permessage-deflate (RFC 6455 only, when WebSocketCompression is on):
 * a copy of conf carrying what was negotiated; the answer goes to the
 * 101 through r->notes. */
static const ws_dir_conf *ws_negotiate_compression(request_rec *r,
                                                   const ws_dir_conf *conf)
{
    ws_dir_conf *copy;
    ws_deflate_config dc;
    const char *answer;

    if (!conf->compression) {
        return conf;
    }
    copy = apr_pmemdup(r->pool, conf, sizeof(*copy));
    dc.level = conf->compression_level;
    dc.max_window_bits = conf->compression_window_bits;
    dc.mem_level = conf->compression_mem_level;
    dc.no_context_takeover = conf->compression_no_context;
    answer = ws_deflate_negotiate(r->pool, apr_table_get(
                                      r->headers_in,
                                      "Sec-WebSocket-Extensions"),
                                  &dc, &copy->deflate);
    if (answer != NULL) {
        apr_table_setn(r->notes, WS_NOTE_EXTENSIONS, answer);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "websocket: %s: "
                      "Sec-WebSocket-Extensions: %s", r->uri, answer);
    }
    return copy;
}

/* Let the plugin accept or refuse; OK or the status to answer with. */
static int ws_plugin_accepts(request_rec *r, websocket_plugin *plugin,
                             websocket_conn *wc)
{
    int status;

    if (plugin->on_connect == NULL) {
        return OK;
    }
    status = plugin->on_connect(&ws_server_api, wc);
    if (status == OK) {
        return OK;
    }
    if (status < 400 || status > 599) {
        status = HTTP_FORBIDDEN;
    }
    return ws_refuse(r, status, APLOG_INFO, "the plugin refused it");
}

static int ws_handler(request_rec *r)
{
    const ws_dir_conf *conf;
    const char *host, *problem;
    websocket_conn *wc;
    ws_proto_e proto;
    apr_status_t rv;
    int status;

    if (r->handler == NULL || strcmp(r->handler, WS_HANDLER_NAME)) {
        return DECLINED;
    }
    conf = ws_conf_resolve(r->pool, ap_get_module_config(r->per_dir_config,
                                                         &websocket_module));
    if (conf->loc == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "websocket: no "
                      "WebSocketHandler is configured for %s", r->uri);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    host = apr_table_get(r->headers_in, "Host");
    if ((status = ws_check_upgrade(r, host)) != OK) {
        return status;
    }
    /* On an HTTP/2 stream (RFC 8441) mod_http2 made the request a GET
     * with a Sec-WebSocket-Key of its own: the client's
     * Sec-WebSocket-Version tells its family. */
    proto = ws_detect_proto(r->connection->master != NULL ? NULL
                            : apr_table_get(r->headers_in,
                                            "Sec-WebSocket-Key"),
                            apr_table_get(r->headers_in,
                                          "Sec-WebSocket-Version"),
                            apr_table_get(r->headers_in, "Sec-WebSocket-Key1"),
                            apr_table_get(r->headers_in, "Sec-WebSocket-Key2"));
    if (proto != WS_PROTO_RFC6455 && r->connection->master != NULL) {
        return ws_refuse(r, HTTP_BAD_REQUEST, APLOG_ERR,
                         apr_psprintf(r->pool, "%s is served over HTTP/1.1 "
                                      "only, this request came over %s "
                                      "(no Sec-WebSocket-Version)",
                                      ws_family_name(proto), r->protocol));
    }
    if ((status = ws_check_family(r, conf, proto)) != OK) {
        return status;
    }
    problem = ws_origin_problem(r, conf, apr_table_get(r->headers_in,
                                                       "Origin"), host);
    if (problem != NULL) {
        return ws_refuse(r, HTTP_FORBIDDEN, APLOG_ERR, problem);
    }
    if (proto == WS_PROTO_RFC6455) {
        conf = ws_negotiate_compression(r, conf);
    }

    rv = ws_conn_create(r, conf, proto, host,
                        ws_offered_subprotocols(r, proto), &wc);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "websocket: cannot "
                      "serve %s: the connection cannot be polled", r->uri);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if ((status = ws_plugin_accepts(r, conf->loc->plugin, wc)) != OK) {
        ws_conn_abandon(wc);
        return status;
    }
    return ws_conn_start(wc);
}

/* Called whenever the MPM lets go of a connection; acts only on one
 * whose handler just returned SUSPENDED for a WebSocket. */
static void ws_suspend_connection(conn_rec *c, request_rec *r)
{
    (void)r;
    ws_conn_suspended(c);
}

static int ws_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    (void)plog;
    (void)ptemp;
    ws_stats_post_config(pconf, s);   /* without it: per-child counts */
    return OK;
}

/* mod_status: the WebSocket section and the ?auto lines. */
static int ws_status_hook(request_rec *r, int flags)
{
    int i, count = ws_locations ? ws_locations->nelts : 0;
    const char **names = apr_pcalloc(r->pool, (count + 1) * sizeof(*names));

    for (i = 0; i < count; i++) {
        names[i] = APR_ARRAY_IDX(ws_locations, i, ws_location *)->path;
    }
    ws_stats_report(r, flags, names, count);
    return OK;
}

static void ws_child_init(apr_pool_t *pchild, server_rec *s)
{
    ws_server_conf *sconf = ap_get_module_config(s->module_config,
                                                 &websocket_module);

    ws_stats_child_init();

    ws_loops_child_init(pchild, s, sconf->loops > 0 ? sconf->loops
                                                    : ws_default_loops());
    ws_pubsub_child_init(pchild, s);
    ws_redis_child_init(pchild, s, &sconf->redis);
}

static void ws_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    ws_loops_child_stopping(graceful);
}

static void ws_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(ws_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_config(ws_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(ws_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(ws_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(ws_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, ws_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
    ap_hook_child_stopping(ws_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(ws_suspend_connection, NULL, NULL,
                               APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(websocket) = {
    STANDARD20_MODULE_STUFF,
    ws_create_dir_conf,
    ws_merge_dir_conf,
    ws_create_server_conf,
    NULL,
    ws_cmds,
    ws_register_hooks,
    AP_MODULE_FLAG_NONE
};
