/* Licensed under the Apache License, Version 2.0.
 *
 * websocket_plugin.h: the plugin API of mod_websocket, version 2.
 *
 * A plugin is a shared object with one exported init function, named in
 * the configuration (server config, virtual host, <Location> or
 * <Directory>; never .htaccess):
 *
 *     <Location /echo>
 *         SetHandler websocket-handler
 *         WebSocketHandler /path/to/mod_websocket_echo.so echo_init
 *         WebSocketOption Greeting hello
 *     </Location>
 *
 * The init function is called once per configuration load, in the httpd
 * parent, and returns a pointer to a websocket_plugin that stays valid
 * until its destroy callback (if any) is called.  Then, still while the
 * configuration is checked (so "httpd -t" sees it), the plugin's
 * init_location is called once per WebSocketHandler line with the
 * WebSocketOptions of that same section; it returns the location's
 * context or an error message.  (option() at run time also sees options
 * inherited from enclosing sections; a nested section that changes an
 * option the context depends on repeats WebSocketHandler.)
 *
 * Threads.  Each httpd child runs a few event-loop threads; every
 * WebSocket is pinned to one of them for its whole life, and all of its
 * callbacks (on_open ... on_disconnect, timers, watchers, posted
 * functions) run on that loop thread, one at a time.  Callbacks must
 * never block: a loop serves thousands of connections.  Under MPMs that
 * cannot hand a connection over (prefork, worker) and on HTTP/2 streams
 * the same loop code runs on the request's own thread; the contract is
 * the same.
 *
 * Every call below says which threads may make it:
 *   "loop"        only from a callback of this connection (its loop
 *                 thread);
 *   "any thread"  from anywhere, as long as the caller holds a reference
 *                 (on the loop inside a callback one always does; other
 *                 threads retain() first and release() when done).
 * Only send, close, post, pending, broadcast, publish, retain, release,
 * data_set, data_get and the read-only accessors marked "any thread" may
 * be called from other threads.  The accessors marked "any thread" keep working
 * after on_disconnect for as long as conn is retained (or, in a posted
 * function, until it returns).
 *
 * Versioning.  Both structs begin with size and version.  The module
 * accepts a plugin whose version is WEBSOCKET_PLUGIN_VERSION_MIN to
 * WEBSOCKET_PLUGIN_VERSION and whose size covers every field of that
 * version; fields are only ever appended, and a plugin checks
 * server->version before calling a member that a later version added.
 *   2  this file (the first released API; version 1 was never released
 *      and is not accepted).
 */
#ifndef WEBSOCKET_PLUGIN_H
#define WEBSOCKET_PLUGIN_H

#include <apr.h>
#include <apr_errno.h>
#include <apr_poll.h>
#include <apr_tables.h>
#include <apr_buckets.h>
#include <httpd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEBSOCKET_PLUGIN_VERSION_2   2
#define WEBSOCKET_PLUGIN_VERSION_MIN WEBSOCKET_PLUGIN_VERSION_2
#define WEBSOCKET_PLUGIN_VERSION     WEBSOCKET_PLUGIN_VERSION_2

/* Message types, as in RFC 6455. */
#define WEBSOCKET_TEXT   1
#define WEBSOCKET_BINARY 2

/* Protocol families a connection may speak. */
#define WEBSOCKET_PROTOCOL_HIXIE75 1
#define WEBSOCKET_PROTOCOL_HIXIE76 2
#define WEBSOCKET_PROTOCOL_RFC6455 3

/* What send (and send_brigade) did with a message. */
typedef enum {
    /* Written, or queued while the output is below the high-water mark. */
    WEBSOCKET_SEND_OK = 0,
    /* Queued, but the connection's output is now above the high-water
     * mark: stop producing until on_drain. */
    WEBSOCKET_SEND_FULL,
    /* Refused: the connection is closing or gone, or the output exceeded
     * WebSocketMaxPendingBytes (the connection is then closed with
     * 1008). */
    WEBSOCKET_SEND_CLOSED,
    /* Refused: not sendable here (binary on hixie, a bad type, or a
     * whole message while a streamed one is unfinished). */
    WEBSOCKET_SEND_INVALID
} websocket_send_result;

typedef struct websocket_conn websocket_conn;    /* opaque */
typedef struct websocket_timer websocket_timer;  /* opaque */
typedef struct websocket_watch websocket_watch;  /* opaque */
typedef struct websocket_server websocket_server;

/* A function run on a connection's loop: a timer, a posted function. */
typedef void (*websocket_task_fn)(const websocket_server *server,
                                  websocket_conn *conn, void *baton);
/* A watched descriptor is ready: rtnevents as in apr_pollfd_t
 * (APR_POLLIN, APR_POLLOUT, APR_POLLHUP, APR_POLLERR). */
typedef void (*websocket_watch_fn)(const websocket_server *server,
                                   websocket_conn *conn, void *baton,
                                   apr_int16_t rtnevents);

struct websocket_server {
    apr_size_t size;            /* sizeof(websocket_server) */
    unsigned int version;       /* WEBSOCKET_PLUGIN_VERSION of the module */

    /* --- the connection --- */
    /* The upgrade request: in on_connect and on_open only (its pool is
     * freed once on_open returns, to keep idle connections small).
     * Loop. */
    request_rec *(*request)(websocket_conn *conn);
    /* A request header, or NULL: in on_connect and on_open only.  Loop. */
    const char *(*header_get)(websocket_conn *conn, const char *name);
    /* Request URI path, query string (NULL if none), client address (as
     * text), the authenticated user (NULL if none).  Copies that live as
     * long as conn.  Any thread. */
    const char *(*uri)(websocket_conn *conn);
    const char *(*query)(websocket_conn *conn);
    const char *(*client_ip)(websocket_conn *conn);
    const char *(*user)(websocket_conn *conn);
    /* WEBSOCKET_PROTOCOL_*.  Any thread. */
    int (*protocol_family)(websocket_conn *conn);
    /* The value of "WebSocketOption name value" for the connection's
     * location (merged with enclosing sections; names compared
     * case-insensitively), or NULL.  Any thread. */
    const char *(*option)(websocket_conn *conn, const char *name);
    /* What init_location returned for the connection's location.  Any
     * thread. */
    void *(*location_data)(websocket_conn *conn);
    /* The server (virtual host) the connection belongs to, for
     * ap_log_error.  Any thread. */
    server_rec *(*server_rec_of)(websocket_conn *conn);

    /* --- subprotocols --- */
    /* Number of subprotocols the client offered, and the i-th one: in
     * on_connect only.  Loop. */
    int (*subprotocol_count)(websocket_conn *conn);
    const char *(*subprotocol_offered)(websocket_conn *conn, int i);
    /* Choose one of the offered subprotocols (compared exactly); in
     * on_connect only.  APR_EINVAL if the client did not offer it. */
    apr_status_t (*subprotocol_set)(websocket_conn *conn, const char *name);
    /* The chosen subprotocol (a copy), or NULL.  Any thread. */
    const char *(*subprotocol)(websocket_conn *conn);

    /* --- per-connection data --- */
    /* Any thread (the module does not synchronise the pointer). */
    void (*data_set)(websocket_conn *conn, void *data);
    void *(*data_get)(websocket_conn *conn);

    /* --- sending --- */
    /* Send a whole message (WEBSOCKET_TEXT or WEBSOCKET_BINARY; text must
     * be UTF-8).  data is copied.  Any thread: from another thread the
     * message is queued for the loop and keeps its order with respect to
     * the same thread's other sends and posts. */
    websocket_send_result (*send)(websocket_conn *conn, int type,
                                  const void *data, apr_size_t len);
    /* Start the closing handshake with code (1000-1003, 1007-1014,
     * 3000-4999, or 0 for none) and a UTF-8 reason (may be NULL).
     * APR_EINVAL for a code that may not be sent; APR_ECONNABORTED once
     * gone.  Any thread. */
    apr_status_t (*close)(websocket_conn *conn, int code,
                          const char *reason);
    /* RFC 6455 ping with up to 125 bytes of payload; APR_ENOTIMPL on
     * hixie.  Loop. */
    apr_status_t (*ping)(websocket_conn *conn, const void *data,
                         apr_size_t len);
    /* Bytes sent but not yet taken by the client's socket (queued from
     * other threads, waiting in the module, or set aside by httpd's
     * output filters).  Any thread. */
    apr_size_t (*pending)(websocket_conn *conn);
    /* Send one message to every open connection of the same location in
     * this httpd child, this one included (hixie connections get text
     * only).  The payload is copied once and shared by all receivers;
     * each receiver's own limits apply (a receiver over
     * WebSocketMaxPendingBytes is closed with 1008, the others do not
     * wait for it).  Works from on_disconnect too (the leaving
     * connection no longer receives).  Returns the number of open
     * connections of the location in this child.  Any thread. */
    int (*broadcast)(websocket_conn *conn, int type, const void *data,
                     apr_size_t len);

    /* --- streaming --- */
    /* Send the next fragment of a message from a brigade (the buckets
     * are moved out of bb, also when the send is refused; file buckets go
     * to the socket with sendfile where httpd can).  The buckets must come
     * from bucket_alloc(conn), and what they point to (a file, a pool)
     * must live until on_disconnect.  The first call gives the type, the following
     * ones the same type; final non-zero ends the message.  A fragment
     * becomes one RFC 6455 frame; on hixie (text only) the message is
     * framed once.  While a streamed message is unfinished, send() of a
     * whole message returns WEBSOCKET_SEND_INVALID.  Loop. */
    websocket_send_result (*send_brigade)(websocket_conn *conn, int type,
                                          apr_bucket_brigade *bb,
                                          int final);
    /* The bucket allocator for buckets given to send_brigade (valid
     * until on_disconnect returns).  Loop. */
    apr_bucket_alloc_t *(*bucket_alloc)(websocket_conn *conn);
    /* Stop (paused non-zero) or resume reading from the client.  While
     * paused nothing is read (TCP backpressure reaches the client), the
     * output and the timers go on, and the paused time counts as
     * activity for the idle and ping timers.  Once the closing handshake
     * has started the module reads again.  Loop. */
    apr_status_t (*pause_reading)(websocket_conn *conn, int paused);

    /* --- the loop --- */
    /* Run fn(baton) on the connection's loop after `after` microseconds,
     * then every `repeat` microseconds when repeat > 0.  Timers end with
     * the connection (before on_disconnect); a one-shot timer is gone
     * once fn returns.  NULL when the connection is gone.  Loop. */
    websocket_timer *(*timer_add)(websocket_conn *conn,
                                  apr_interval_time_t after,
                                  apr_interval_time_t repeat,
                                  websocket_task_fn fn, void *baton);
    /* Cancel a timer that has not ended (a repeating timer may cancel
     * itself from its fn).  Loop. */
    void (*timer_cancel)(websocket_conn *conn, websocket_timer *timer);
    /* Run fn(baton) on the connection's loop, in the order of this
     * thread's posts and sends.  APR_SUCCESS: fn will run exactly once,
     * even if the connection ends first (it then runs after
     * on_disconnect, when calls on conn return APR_ECONNABORTED, NULL or
     * WEBSOCKET_SEND_CLOSED; conn stays valid until fn returns), so fn
     * may free baton.  APR_ECONNABORTED: the connection is gone, fn will
     * not run.  Any thread. */
    apr_status_t (*post)(websocket_conn *conn, websocket_task_fn fn,
                         void *baton);
    /* Watch a socket (desc_type APR_POLL_SOCKET) or a pipe
     * (APR_POLL_FILE) on the connection's loop for desc->reqevents
     * (APR_POLLIN and/or APR_POLLOUT; 0 watches nothing until
     * watch_events).  The descriptor must be non-blocking and stay open
     * until unwatch; the module never closes it.  Watches end with the
     * connection (before on_disconnect).  NULL on failure.  Loop. */
    websocket_watch *(*watch_add)(websocket_conn *conn,
                                  const apr_pollfd_t *desc,
                                  websocket_watch_fn fn, void *baton);
    /* Change what a watch waits for (0: nothing, e.g. while the client
     * cannot take more).  Loop. */
    apr_status_t (*watch_events)(websocket_conn *conn,
                                 websocket_watch *watch,
                                 apr_int16_t reqevents);
    /* Stop watching (from its own fn too).  Loop. */
    void (*watch_remove)(websocket_conn *conn, websocket_watch *watch);

    /* --- lifetime for use from other threads --- */
    /* retain keeps conn valid after on_disconnect until the matching
     * release; calls on a retained but disconnected conn return
     * APR_ECONNABORTED, WEBSOCKET_SEND_CLOSED or NULL.  Any thread. */
    void (*retain)(websocket_conn *conn);
    void (*release)(websocket_conn *conn);

    /* --- topics (publish/subscribe) --- */
    /* A topic is a name of 1 to 255 bytes, one space per httpd (every
     * virtual host and location share it) -- and, with WebSocketPubSub,
     * one space for every httpd naming the same Redis and prefix.
     * Subscribe conn to topic (again: no change).  From on_open on;
     * APR_EINVAL for a bad name, APR_ECONNABORTED before on_open or once
     * gone.  The connection leaves all its topics before on_disconnect.
     * Loop. */
    apr_status_t (*subscribe)(websocket_conn *conn, const char *topic);
    /* Leave topic (not subscribed: no change).  Loop. */
    apr_status_t (*unsubscribe)(websocket_conn *conn, const char *topic);
    /* Send one message to every subscriber of topic in every child of
     * this httpd (hixie subscribers get text only), each exactly once,
     * in publish order per publishing thread.  The payload is copied once
     * and shared; each receiver's own limits apply, as for broadcast
     * (nobody waits for a slow receiver).  conn is not used (may be
     * NULL): a plugin thread may publish without a connection.  Works
     * from on_disconnect too.  A message over 192 KiB (with its topic)
     * reaches this child's subscribers only.  APR_EINVAL for a bad topic
     * or type, APR_ENOMEM.  Any thread. */
    apr_status_t (*publish)(websocket_conn *conn, const char *topic,
                            int type, const void *data, apr_size_t len);
};

typedef struct websocket_plugin {
    apr_size_t size;            /* sizeof(websocket_plugin) */
    unsigned int version;       /* WEBSOCKET_PLUGIN_VERSION */

    /* Once per WebSocketHandler line, while the configuration is checked
     * (in the httpd parent; "httpd -t" runs it too).  options holds the
     * WebSocketOptions of that same section.  Return the location's
     * context (allocated from pool, which lives as long as the
     * configuration), or set *error (from pool) to refuse the
     * configuration.  Optional. */
    void *(*init_location)(apr_pool_t *pool, server_rec *s,
                           const apr_table_t *options, const char **error);

    /* Before the handshake is answered.  Return OK (0) to accept, or an
     * HTTP status (e.g. HTTP_FORBIDDEN) to refuse.  The plugin may choose
     * a subprotocol and attach data here.  Optional. */
    int (*on_connect)(const websocket_server *server, websocket_conn *conn);
    /* Right after the handshake answer was sent; the plugin may send.
     * Optional. */
    void (*on_open)(const websocket_server *server, websocket_conn *conn);
    /* A whole message.  data is valid only during the call.  Required
     * unless on_fragment is set. */
    void (*on_message)(const websocket_server *server, websocket_conn *conn,
                       int type, const char *data, apr_size_t len);
    /* Streaming: when set, messages are delivered as they arrive instead
     * of whole: bb holds the next bytes of a message of the given type
     * (transient buckets, valid during the call only: set them aside or
     * copy what is kept), final is non-zero on the message's last
     * piece.  Text is validated as UTF-8
     * as it goes; WebSocketMaxMessageSize still bounds a message, but
     * nothing is held whole.  Optional. */
    void (*on_fragment)(const websocket_server *server, websocket_conn *conn,
                        int type, apr_bucket_brigade *bb, int final);
    /* The peer's closing handshake: code (1005 when it sent none) and
     * UTF-8 reason (not NUL terminated).  Optional. */
    void (*on_close)(const websocket_server *server, websocket_conn *conn,
                     int code, const char *reason, apr_size_t len);
    /* The connection is gone, whatever the cause (close, abort, timeout,
     * protocol error, restart).  Called exactly once for every connection
     * that on_connect accepted; its timers and watches have ended.
     * Optional. */
    void (*on_disconnect)(const websocket_server *server,
                          websocket_conn *conn);
    /* The output fell below the low-water mark after a send on the loop
     * returned WEBSOCKET_SEND_FULL (or a broadcast pushed it over the
     * high-water mark).  Other threads watch pending() instead.
     * Optional. */
    void (*on_drain)(const websocket_server *server, websocket_conn *conn);
    /* A ping from the client (the pong is already sent) and a pong.
     * Optional. */
    void (*on_ping)(const websocket_server *server, websocket_conn *conn,
                    const char *data, apr_size_t len);
    void (*on_pong)(const websocket_server *server, websocket_conn *conn,
                    const char *data, apr_size_t len);
    /* The configuration that loaded the plugin is going away.  Optional. */
    void (*destroy)(struct websocket_plugin *plugin);
} websocket_plugin;

/* The init function a plugin exports. */
typedef websocket_plugin *(*websocket_plugin_init_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* WEBSOCKET_PLUGIN_H */
