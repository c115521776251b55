/* Licensed under the Apache License, Version 2.0.
 *
 * mod_websocket.h: types shared by the httpd glue files (mod_websocket.c:
 * configuration and handshake; ws_connection.c: the connection driver).
 * Plugins never include this file; they see websocket_plugin.h only.
 */
#ifndef MOD_WEBSOCKET_H
#define MOD_WEBSOCKET_H

#include "httpd.h"
#include "http_config.h"
#include "apr_poll.h"

#include "ws_engine.h"
#include "websocket_plugin.h"

/* Bits of WebSocketProtocols. */
#define WS_ALLOW_HIXIE75 (1 << WS_PROTO_HIXIE75)
#define WS_ALLOW_HIXIE76 (1 << WS_PROTO_HIXIE76)
#define WS_ALLOW_RFC6455 (1 << WS_PROTO_RFC6455)

/* WebSocketOriginCheck */
typedef enum {
    WS_ORIGIN_UNSET = 0,
    WS_ORIGIN_SAME,
    WS_ORIGIN_TRUSTED,
    WS_ORIGIN_OFF
} ws_origin_check_e;

/* One WebSocketHandler line: the plugin, what its init_location
 * returned, and how many of its connections are open in this child. */
typedef struct ws_location {
    websocket_plugin *plugin;
    const char *file;                  /* for log lines */
    const char *init_name;
    apr_table_t **section_options;     /* its section's WebSocketOptions */
    server_rec *s;
    void *data;                        /* from init_location */
    apr_uint32_t open;                 /* open connections (atomic) */
    const char *path;                  /* its section, for mod_status */
    int index;                         /* in the configuration's order */
} ws_location;

/* Per-directory configuration.  A value of -1 (0 for enums and pointers)
 * means "not set here"; the merge takes the nearer setting, and
 * mod_websocket.c resolves what is still unset to the defaults before a
 * connection sees the configuration. */
typedef struct ws_dir_conf {
    ws_location *loc;
    int protocols;                         /* WS_ALLOW_* bits */
    ws_origin_check_e origin_check;
    apr_array_header_t *trusted_origins;   /* of const char * */
    apr_table_t *options;                  /* WebSocketOption */
    apr_int64_t max_message;               /* bytes, 0: unlimited */
    apr_int64_t fragment_size;             /* bytes, 0: never split */
    apr_int64_t max_pending;               /* bytes queued per conn */
    apr_interval_time_t handshake_timeout;
    apr_interval_time_t idle_timeout;      /* 0: none */
    apr_interval_time_t ping_interval;     /* 0: no pings */
    apr_interval_time_t close_timeout;
    apr_interval_time_t write_timeout;     /* 0: none */
    /* permessage-deflate (WebSocketCompression*; -1: not set here) */
    int compression;                       /* 1 on, 0 off */
    int compression_level;                 /* 0-9 */
    int compression_window_bits;           /* 8-15 */
    int compression_mem_level;             /* 1-9 */
    int compression_no_context;            /* 1: ask for no takeover */
    /* what the handler negotiated for the request (set on its resolved
     * copy only; enabled 0: none) */
    ws_deflate_params deflate;
} ws_dir_conf;

/* WebSocketPubSub redis://HOST:PORT[/PREFIX] (host NULL: none). */
typedef struct ws_redis_conf {
    const char *host;
    int port;
    const char *prefix;
} ws_redis_conf;

/* Server-wide settings (main server only). */
typedef struct ws_server_conf {
    int loops;                 /* WebSocketLoopThreads; 0: unset */
    ws_redis_conf redis;       /* WebSocketPubSub */
} ws_server_conf;

/* ws_connection.c: a WebSocket from the validated upgrade request to the
 * end of its TCP connection.  The object itself is private to
 * ws_connection.c and ws_api.c (ws_conn_private.h). */
extern const websocket_server ws_server_api;

/* Set up the connection object for a validated request (conf resolved,
 * proto detected, host the request's Host header, offered the
 * subprotocols the client offered). */
apr_status_t ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                            ws_proto_e proto, const char *host,
                            apr_array_header_t *offered,
                            websocket_conn **out);
/* Give up a connection that never got its answer (refused). */
void ws_conn_abandon(websocket_conn *wc);
/* Answer the handshake and run the connection: returns SUSPENDED when a
 * loop thread took it over (the suspend_connection hook hands it over),
 * or OK once it ended on this thread. */
int ws_conn_start(websocket_conn *wc);
/* suspend_connection hook: hand a suspended WebSocket to a loop. */
void ws_conn_suspended(conn_rec *c);

/* The headers of the 101 answer, in each family's order (mod_websocket.c);
 * from r->pool.  An HTTP/2 stream answers with them in r->headers_out. */
apr_table_t *ws_handshake_headers(request_rec *r, int family,
                                  const char *host, const char *subprotocol);
/* The handshake answer as HTTP/1.1 bytes (mod_websocket.c): 101 head,
 * and for hixie-76 the 16-byte answer to key3 (NULL for the others);
 * from r->pool. */
const char *ws_handshake_answer(request_rec *r, int family, const char *host,
                                const char *subprotocol,
                                const unsigned char *key3, apr_size_t *len);

/* Per-child loops (ws_connection.c). */
void ws_loops_child_init(apr_pool_t *pchild, server_rec *s, int count);
void ws_loops_child_stopping(int graceful);
/* Publishing across the children of this httpd (ws_pubsub.c). */
void ws_pubsub_child_init(apr_pool_t *pchild, server_rec *s);
/* Topics across machines (ws_redis.c): parse a WebSocketPubSub URL (an
 * error message, or NULL), start the child's Redis connections. */
const char *ws_redis_parse(apr_pool_t *p, const char *url,
                           ws_redis_conf *conf);
void ws_redis_child_init(apr_pool_t *pchild, server_rec *s,
                         const ws_redis_conf *conf);

#endif /* MOD_WEBSOCKET_H */
