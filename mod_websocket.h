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
#include "apr_ring.h"
#include "apr_thread_mutex.h"
#include "apr_portable.h"

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

/* One WebSocketHandler line: the plugin and the connections it serves in
 * this child (for broadcast). */
typedef struct ws_location {
    websocket_plugin *plugin;
    const char *file;                  /* for log lines */
    apr_thread_mutex_t *mutex;         /* guards conns */
    APR_RING_HEAD(ws_conn_ring, websocket_conn) conns;
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
} ws_dir_conf;

/* A message queued by a thread that does not own the connection. */
typedef struct ws_queued {
    struct ws_queued *next;
    int kind;                  /* WS_OP_TEXT, _BINARY, _PING or _CLOSE */
    int code;                  /* close code */
    apr_size_t len;
    char data[1];              /* len bytes (NUL-terminated for close) */
} ws_queued;

struct websocket_conn {
    APR_RING_ENTRY(websocket_conn) link;   /* in loc->conns */

    /* Shared with other threads; guarded by mutex. */
    apr_pool_t *pool;          /* own pool: freed at the last release */
    apr_thread_mutex_t *mutex;
    apr_uint32_t refs;
    int gone;                  /* owner finished: no more sends */
    int queue_overflow;
    ws_queued *queue_head, *queue_tail;
    apr_size_t queue_bytes;
    apr_pollset_t *pollset;    /* woken when something is queued */
    int paused;                /* pause_reading: do not read the client */

    /* Fixed after the handshake: readable by any thread while retained. */
    const char *uri, *query, *client_ip, *subprotocol;
    int family;                /* WEBSOCKET_PROTOCOL_* */
    apr_table_t *options;      /* WebSocketOption, or NULL */
    apr_size_t max_pending;    /* WebSocketMaxPendingBytes */
    void *volatile data;

    /* Owner thread only. */
    apr_os_thread_t owner;
    request_rec *r;
    conn_rec *c;
    const ws_dir_conf *conf;
    ws_location *loc;
    ws_session *session;
    apr_array_header_t *offered;           /* subprotocols offered */
    apr_bucket_brigade *ibb, *obb;
    apr_size_t obb_bytes;                  /* written since last flush */
    int write_failed;
    apr_pollfd_t client_pfd;               /* the client in the pollset */
    int client_polled;                     /* 0 while reading is paused */
};

/* ws_connection.c */
extern const websocket_server ws_server_api;
/* Set up the connection object for a validated request; fails when the
 * connection cannot be polled. */
apr_status_t ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                            ws_proto_e proto, websocket_conn **out);
/* Wait up to timeout for the client's bytes; APR_SUCCESS when readable,
 * APR_TIMEUP, or an error. */
apr_status_t ws_conn_wait_readable(websocket_conn *wc,
                                   apr_interval_time_t timeout);
/* Write bytes straight to the client and flush (used for the handshake
 * answer). */
apr_status_t ws_conn_write_raw(websocket_conn *wc, const char *data,
                               apr_size_t len);
/* After the 101: run the connection until it ends, then call
 * on_disconnect and let go of the connection. */
void ws_conn_run(websocket_conn *wc);
/* Give up a connection that never got its 101. */
void ws_conn_abandon(websocket_conn *wc);


#endif /* MOD_WEBSOCKET_H */
