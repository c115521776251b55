/* Licensed under the Apache License, Version 2.0.
 *
 * websocket_plugin.h: the plugin API of mod_websocket.
 *
 * A plugin is a shared object with one exported init function, named in
 * the configuration:
 *
 *     <Location /echo>
 *         SetHandler websocket-handler
 *         WebSocketHandler /path/to/mod_websocket_echo.so echo_init
 *     </Location>
 *
 * The init function is called once per configuration load, in the httpd
 * parent, and returns a pointer to a websocket_plugin that stays valid
 * until its destroy callback (if any) is called.  The module calls the
 * plugin's callbacks with a websocket_server (the calls a plugin may make)
 * and a websocket_conn (one WebSocket connection, opaque).
 *
 * Versions
 *   1  websocket_plugin: on_connect, on_open, on_message, on_close,
 *      on_disconnect, destroy.
 *      websocket_server: everything listed in struct websocket_server.
 *   1 (grown): pause_reading, added at the end of websocket_server.
 *      Nothing had been released yet, so the version stayed 1; a plugin
 *      that wants to run on an older build of the module checks
 *      server->size before calling it.
 *
 * Compatibility: both structs begin with size and version.  The module
 * accepts any plugin whose version is between 1 and
 * WEBSOCKET_PLUGIN_VERSION and whose size covers that version's fields;
 * a plugin should check server->version before calling members that a
 * later version added.
 *
 * Threads: every callback runs on the thread that owns the connection.
 * The calls marked "any thread" below may also be made from other threads
 * (a timer, another connection's callback) for as long as the caller
 * holds a reference (see retain/release); their output is queued and
 * written by the connection's owner, so the filter chain (and TLS) is
 * never entered by two threads.
 */
#ifndef WEBSOCKET_PLUGIN_H
#define WEBSOCKET_PLUGIN_H

#include <apr.h>
#include <apr_errno.h>
#include <httpd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEBSOCKET_PLUGIN_VERSION_1 1
#define WEBSOCKET_PLUGIN_VERSION   WEBSOCKET_PLUGIN_VERSION_1

/* Message types, as in RFC 6455. */
#define WEBSOCKET_TEXT   1
#define WEBSOCKET_BINARY 2

/* Protocol families a connection may speak. */
#define WEBSOCKET_PROTOCOL_HIXIE75 1
#define WEBSOCKET_PROTOCOL_HIXIE76 2
#define WEBSOCKET_PROTOCOL_RFC6455 3

typedef struct websocket_conn websocket_conn;   /* opaque */
typedef struct websocket_server websocket_server;

struct websocket_server {
    apr_size_t size;            /* sizeof(websocket_server) */
    unsigned int version;       /* WEBSOCKET_PLUGIN_VERSION of the module */

    /* --- the connection (owner thread; any thread while retained) --- */
    /* The upgrade request.  Owner thread only; valid until on_disconnect
     * returns. */
    request_rec *(*request)(websocket_conn *conn);
    /* A request header, or NULL.  Owner thread only. */
    const char *(*header_get)(websocket_conn *conn, const char *name);
    /* Request URI path, query string (NULL if none) and client address
     * (as text).  Any thread while retained. */
    const char *(*uri)(websocket_conn *conn);
    const char *(*query)(websocket_conn *conn);
    const char *(*client_ip)(websocket_conn *conn);
    /* WEBSOCKET_PROTOCOL_*.  Any thread while retained. */
    int (*protocol_family)(websocket_conn *conn);
    /* The value of "WebSocketOption name value" for the connection's
     * location (names compared case-insensitively), or NULL.  Any thread
     * while retained. */
    const char *(*option)(websocket_conn *conn, const char *name);

    /* --- subprotocols (in on_connect only) --- */
    /* Number of subprotocols the client offered, and the i-th one. */
    int (*subprotocol_count)(websocket_conn *conn);
    const char *(*subprotocol_offered)(websocket_conn *conn, int i);
    /* Choose one of the offered subprotocols (compared exactly);
     * APR_EINVAL if the client did not offer it. */
    apr_status_t (*subprotocol_set)(websocket_conn *conn, const char *name);
    /* The chosen subprotocol, or NULL.  Any thread while retained. */
    const char *(*subprotocol)(websocket_conn *conn);

    /* --- per-connection data: any thread while retained --- */
    void (*data_set)(websocket_conn *conn, void *data);
    void *(*data_get)(websocket_conn *conn);

    /* --- sending: any thread while retained --- */
    /* Send a whole message (WEBSOCKET_TEXT or WEBSOCKET_BINARY; text must
     * be UTF-8).  Copies data.  APR_ENOTIMPL for binary on hixie;
     * APR_ECONNABORTED once the connection is closing or gone; APR_EAGAIN
     * is never returned: a connection whose queue overflows is closed. */
    apr_status_t (*send)(websocket_conn *conn, int type, const void *data,
                         apr_size_t len);
    /* RFC 6455 ping (payload up to 125 bytes). */
    apr_status_t (*ping)(websocket_conn *conn, const void *data,
                         apr_size_t len);
    /* Start the closing handshake with code (1000-1003, 1007-1014,
     * 3000-4999, or 0 for none) and a UTF-8 reason (may be NULL). */
    apr_status_t (*close)(websocket_conn *conn, int code,
                          const char *reason);
    /* Bytes queued by other threads and not yet written: a producer
     * thread should wait while this is high (backpressure).  Any thread
     * while retained. */
    apr_size_t (*pending)(websocket_conn *conn);
    /* Send to every open connection of the same location in this httpd
     * child, this one included.  Returns the number of connections the
     * message was queued for.  Any thread while retained. */
    int (*broadcast)(websocket_conn *conn, int type, const void *data,
                     apr_size_t len);

    /* --- lifetime for use from other threads --- */
    /* retain keeps conn's memory valid after on_disconnect until the
     * matching release; calls on a retained but disconnected conn
     * return APR_ECONNABORTED (or NULL).  Any thread. */
    void (*retain)(websocket_conn *conn);
    void (*release)(websocket_conn *conn);

    /* --- flow control (1, grown) --- */
    /* Stop (paused non-zero) or resume reading from the client.  While
     * paused the module reads nothing from the client, so TCP
     * backpressure reaches it, but it keeps writing what is sent,
     * keeps its timers, and counts the paused time as activity (no idle
     * timeout, no unanswered-ping close because of a pause).  A ping or
     * close from the client is answered only after the resume.  Takes
     * effect before the next read: messages already read (up to one read
     * of 64 KiB) are still delivered.  Once the closing handshake has
     * started the module reads again, whatever the pause.  A plugin that
     * queues the client's messages for a slow consumer pauses above a
     * high-water mark and resumes below a low one.  APR_ECONNABORTED once
     * the connection is gone.  Any thread while retained. */
    apr_status_t (*pause_reading)(websocket_conn *conn, int paused);
};

typedef struct websocket_plugin {
    apr_size_t size;            /* sizeof(websocket_plugin) */
    unsigned int version;       /* WEBSOCKET_PLUGIN_VERSION */

    /* Before the handshake is answered.  Return OK (0) to accept, or an
     * HTTP status (e.g. HTTP_FORBIDDEN) to refuse.  The plugin may choose
     * a subprotocol and attach data here.  Optional. */
    int (*on_connect)(const websocket_server *server, websocket_conn *conn);
    /* Right after the handshake answer was sent; the plugin may send.
     * Optional. */
    void (*on_open)(const websocket_server *server, websocket_conn *conn);
    /* A whole message.  data is valid only during the call. Required. */
    void (*on_message)(const websocket_server *server, websocket_conn *conn,
                       int type, const char *data, apr_size_t len);
    /* The peer's closing handshake: code (1005 when it sent none) and
     * UTF-8 reason (not NUL terminated).  Optional. */
    void (*on_close)(const websocket_server *server, websocket_conn *conn,
                     int code, const char *reason, apr_size_t len);
    /* The connection is gone, whatever the cause (close, abort, timeout,
     * protocol error, restart).  Called exactly once for every connection
     * that on_connect accepted.  Optional. */
    void (*on_disconnect)(const websocket_server *server,
                          websocket_conn *conn);
    /* The configuration that loaded the plugin is going away.  Optional. */
    void (*destroy)(struct websocket_plugin *plugin);
} websocket_plugin;

/* The init function a plugin exports. */
typedef websocket_plugin *(*websocket_plugin_init_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* WEBSOCKET_PLUGIN_H */
