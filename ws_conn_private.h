/* Licensed under the Apache License, Version 2.0.
 *
 * ws_conn_private.h: the connection object, shared by the connection
 * driver (ws_connection.c) and the plugin calls (ws_api.c).  Nothing
 * else sees inside it.
 */
#ifndef WS_CONN_PRIVATE_H
#define WS_CONN_PRIVATE_H

#include "httpd.h"
#include "util_filter.h"
#include "apr_ring.h"
#include "apr_hash.h"

#include "mod_websocket.h"
#include "ws_loop.h"

typedef enum {
    WS_CONN_KEY3 = 0,   /* hixie-76: waiting for the 8 key bytes */
    WS_CONN_OPEN,       /* frames flow (the session tells closing) */
    WS_CONN_DRAINING,   /* over: writing what is left */
    WS_CONN_LINGER,     /* write side shut: reading until EOF */
    WS_CONN_DONE
} ws_conn_state_e;

/* A loop and the connections it owns (a per-child loop thread, or the
 * request's own thread when the MPM cannot hand a connection over). */
typedef struct ws_loop_ctx {
    ws_loop *loop;
    APR_RING_HEAD(ws_conn_ring, websocket_conn) conns;
    apr_uint32_t count;                /* open connections (atomic) */
    apr_hash_t *topics;                /* name -> ws_topic (ws_pubsub.c) */
    struct websocket_conn *dirty;      /* shared messages queued, not
                                        * yet pushed (ws_child.c) */
    int flush_posted;
    struct ws_loop_ctx *next;          /* in the child's registry */
} ws_loop_ctx;

struct websocket_timer {
    ws_timer timer;
    APR_RING_ENTRY(websocket_timer) link;
    websocket_conn *conn;
    websocket_task_fn fn;
    void *baton;
    apr_interval_time_t repeat;
    int running, cancelled;
};

struct websocket_watch {
    ws_watch watch;
    APR_RING_ENTRY(websocket_watch) link;
    websocket_conn *conn;
    websocket_watch_fn fn;
    void *baton;
};

struct websocket_conn {
    /* --- any thread --- */
    apr_uint32_t refs;                 /* atomic */
    apr_uint32_t gone;                 /* atomic: no more sends */
    apr_uint64_t queued;               /* atomic: bytes posted, not applied */
    apr_uint64_t out_bytes;            /* atomic: bytes waiting in obb */
    const char *uri, *query, *client_ip, *user;
    const char *the_request, *protocol;    /* for the log line at the end */
    const char *version;                   /* Sec-WebSocket-Version */
    char *subprotocol;                 /* malloc'd */
    const char **options;              /* name, value, ..., NULL */
    int family;                        /* WEBSOCKET_PROTOCOL_* */
    ws_location *loc;
    server_rec *s;
    void *data;
    ws_loop_ctx *lc;
    ws_dir_conf conf;                  /* resolved copy */

    /* --- loop thread --- */
    APR_RING_ENTRY(websocket_conn) link;   /* in lc->conns */
    request_rec *r;                    /* until on_open returned */
    conn_rec *c;
    ws_session *session;
    apr_array_header_t *offered;       /* in on_connect only */
    const char *host;
    unsigned char key3[8];
    apr_size_t key3_have;
    apr_bucket_brigade *ibb, *obb, *tmp, *fbb;
    char *wbuf;                        /* engine output not yet in obb */
    apr_size_t wbuf_len, wbuf_cap;
    int trimming;                      /* allocator keeps nothing for now */
    ap_filter_t *core_out;             /* last output filter */
    ws_conn_state_e state;
    int suspended;                     /* a per-child loop owns it */
    int opened, paused, want_drain;
    int overflow_seen;
    int h2_body_eos;                   /* HTTP/2: mod_http2's EOS of the
                                        * empty request body is to come */
    ws_watch client;
    ws_timer tick;
    apr_time_t last_rx, ping_sent, close_sent, deadline;
    apr_time_t adopted;                /* when its loop took it over */
    apr_time_t opened_at;
    apr_uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    int timed_out;                     /* a timeout ended it */
    int close_code;                    /* the server's close, if first */
    apr_time_t write_since;            /* output pending and the client
                                        * took nothing since (0: none) */
    APR_RING_HEAD(ws_ptimer_ring, websocket_timer) timers;
    APR_RING_HEAD(ws_pwatch_ring, websocket_watch) watches;
    struct ws_sub *subs;               /* its topics (ws_pubsub.c) */
    struct websocket_conn *dirty_next; /* in lc->dirty */
    int dirty;
};

/* ws_connection.c, for ws_api.c (loop thread unless said otherwise) */
int ws_conn_on_loop(const websocket_conn *wc);
int ws_conn_is_gone(const websocket_conn *wc);     /* any thread */
/* Hand fn(baton) to the connection's loop; from a foreign thread it
 * keeps a reference until fn ran.  APR_ECONNABORTED once gone. */
apr_status_t ws_conn_post(websocket_conn *wc, websocket_task_fn fn,
                          void *baton);
/* Send on the loop thread, with the flow-control verdict. */
websocket_send_result ws_conn_send(websocket_conn *wc, int type,
                                   const char *data, apr_size_t len);
websocket_send_result ws_conn_send_brigade(websocket_conn *wc, int type,
                                           apr_bucket_brigade *bb,
                                           int final);
apr_status_t ws_conn_close(websocket_conn *wc, int code, const char *why);
apr_status_t ws_conn_ping(websocket_conn *wc, const char *data,
                          apr_size_t len);
void ws_conn_pause(websocket_conn *wc, int paused);
/* Bytes not yet taken by the client.  Any thread. */
apr_size_t ws_conn_pending(const websocket_conn *wc);
/* Above this much pending output a send answers WEBSOCKET_SEND_FULL.
 * Any thread. */
apr_size_t ws_conn_high_water(const websocket_conn *wc);
/* Broadcast to the location's connections in this child.  Any thread. */
int ws_conn_broadcast(websocket_conn *wc, int type, const char *data,
                      apr_size_t len);
/* After a plugin call outside the connection's own events (timer,
 * watch, post): send what it produced and see whether it ended. */
void ws_conn_kick(websocket_conn *wc);
void ws_conn_retain(websocket_conn *wc);
void ws_conn_release(websocket_conn *wc);

/* The connection's own loop takes it over (loop thread). */
void ws_conn_adopt(websocket_conn *wc, ws_loop_ctx *lc);
/* The server goes away: close with 1001 (loop thread). */
void ws_conn_going_away(websocket_conn *wc);
/* Queue one broadcast message whose payload is shared: non-zero when
 * the connection took it, and then release(data) is called once the
 * payload was written or dropped (loop thread). */
int ws_conn_send_shared(websocket_conn *wc, int type, const char *data,
                        apr_size_t len, void (*release)(void *data));

/* ws_child.c: the child's loops. */
int ws_child_has_loops(void);
apr_status_t ws_loop_ctx_init(ws_loop_ctx *lc, apr_pool_t *p);
/* A request thread's loop joins (and leaves) the loops that broadcasts
 * reach. */
void ws_child_register(ws_loop_ctx *lc);
void ws_child_unregister(ws_loop_ctx *lc);
/* Guards the registry: a post to a request thread's loop happens under
 * it, so that the loop cannot go away meanwhile. */
void ws_child_lock(void);
void ws_child_unlock(void);

/* ws_child.c: a payload shared by every receiver (broadcast, publish).
 * refs counts the holders: each queued bucket, each posted delivery. */
typedef struct ws_shared {
    apr_uint32_t refs;                 /* atomic */
    int type;
    ws_location *loc;                  /* broadcast: the location */
    const char *topic;                 /* publish: NUL-terminated */
    apr_size_t topic_len;
    apr_size_t len;
    char data[1];                      /* payload, NUL, topic, NUL */
} ws_shared;

/* One reference, payload and topic copied; NULL for a bad type or no
 * memory.  Any thread. */
ws_shared *ws_shared_create(int type, const char *data, apr_size_t len,
                            const char *topic, apr_size_t topic_len);
void ws_shared_unref(ws_shared *sh);
/* Queue sh on wc (loop thread of wc). */
void ws_shared_send(websocket_conn *wc, ws_shared *sh);
/* Run fn(lc, sh) on every loop of the child, each with its own
 * reference to sh (which fn lets go).  Any thread. */
void ws_child_deliver(void (*fn)(ws_loop_ctx *lc, void *sh), ws_shared *sh);

/* ws_pubsub.c: topics. */
apr_status_t ws_pubsub_subscribe(websocket_conn *wc, const char *topic);
apr_status_t ws_pubsub_unsubscribe(websocket_conn *wc, const char *topic);
/* Every subscription of wc goes (loop thread; the connection ended). */
void ws_pubsub_unsubscribe_all(websocket_conn *wc);
apr_status_t ws_pubsub_publish(const char *topic, int type,
                               const void *data, apr_size_t len);
/* sh to the subscribers of its topic in this child.  Any thread. */
void ws_pubsub_deliver_local(ws_shared *sh);
/* ws_redis.c: sh to Redis, when WebSocketPubSub is set.  Any thread. */
void ws_redis_publish(ws_shared *sh);

/* ws_api.c: plugin timers and watches end with the connection. */
void ws_api_end_timers_and_watches(websocket_conn *wc);

#endif /* WS_CONN_PRIVATE_H */
