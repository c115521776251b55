/* Licensed under the Apache License, Version 2.0.
 *
 * tcp_proxy.h: what the two files of the tcp_proxy plugin share.
 *   tcp_proxy.c      configuration, the connection's life, the client's
 *                    messages (base64 decoding);
 *   proxy_backend.c  the backend socket on the connection's loop:
 *                    connecting, reading, the buffer of bytes waiting to
 *                    be written, flow control both ways.
 * Everything runs on the connection's loop thread, one callback at a
 * time: nothing here is locked.
 */
#ifndef TCP_PROXY_H
#define TCP_PROXY_H

#include "websocket_plugin.h"

#include "apr_network_io.h"
#include "apr_poll.h"

/* Bytes read from the backend at a time: a multiple of 3, so that each
 * message is whole base64 quanta. */
#define PROXY_CHUNK            (48 * 1024)
#define PROXY_READS_PER_WAKE   4
/* Client bytes waiting for the backend: the client is paused above
 * PROXY_HIGH_WATER, resumed at PROXY_LOW_WATER or below. */
#define PROXY_HIGH_WATER       (256 * 1024)
#define PROXY_LOW_WATER        (64 * 1024)
#define PROXY_CONNECT_TIMEOUT  apr_time_from_sec(5)

/* Shared between the plugin's files but not exported: httpd loads
 * plugins with RTLD_GLOBAL, where exported names could clash. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define PROXY_INTERNAL __attribute__((visibility("hidden")))
#else
#define PROXY_INTERNAL
#endif

/* What init_location made of a location's WebSocketOptions. */
typedef struct proxy_location {
    const char *backend;            /* host:port, as configured */
    apr_sockaddr_t *addrs;          /* resolved with the configuration */
    apr_interval_time_t connect_timeout;
} proxy_location;

typedef struct proxy_conn {
    const websocket_server *server;
    websocket_conn *conn;
    const proxy_location *loc;
    apr_pool_t *pool;               /* ours: the request's ends too soon */
    int base64;                     /* else binary */

    apr_sockaddr_t *addr;           /* the address being connected to */
    apr_socket_t *sock;
    apr_pollfd_t pfd;
    websocket_watch *watch;
    apr_int16_t watched;            /* what the watch waits for */
    websocket_timer *timer;         /* connect, then write timeout */

    int connected;
    int done;       /* the backend is over (EOF, error): no more I/O */
    int closing;    /* the client is ending: its data and the backend's
                     * are dropped; half-close once the buffer is out */
    int shut;       /* our sending side to the backend is shut down */
    int full;       /* send said FULL: not reading until on_drain */
    int paused;     /* we paused reading the client */

    /* Client bytes not yet written to the backend: out[start, end),
     * malloc'ed (freed whenever it empties). */
    char *out;
    apr_size_t start, end, cap;
    apr_time_t last_write;          /* progress writing, or buffer filled */

    /* base64: an unfinished quantum, and padding seen (the message must
     * end there). */
    char quantum[4];
    int qlen, padded;
} proxy_conn;

/* proxy_backend.c */

/* Connect to the location's backend (on_open). */
PROXY_INTERNAL void proxy_connect(proxy_conn *pc);
/* Bytes for the backend: written now as far as it takes them, the rest
 * buffered. */
PROXY_INTERNAL void proxy_write(proxy_conn *pc, const char *data,
                                apr_size_t len);
/* Room for len more bytes at out + end (the caller advances end), or
 * NULL (no memory). */
PROXY_INTERNAL char *proxy_reserve(proxy_conn *pc, apr_size_t len);
/* Write the buffer as far as the backend takes it; once it is empty and
 * the client is ending, half-close. */
PROXY_INTERNAL void proxy_flush(proxy_conn *pc);
/* Pause or resume the client, set what the watch waits for and the
 * write timeout, as the state says: after every change. */
PROXY_INTERNAL void proxy_update(proxy_conn *pc);
/* Close the client (unless it is ending already). */
PROXY_INTERNAL void proxy_close_client(proxy_conn *pc, int code,
                                       const char *reason);
/* The backend failed while doing what (logged): the client gets 1011. */
PROXY_INTERNAL void proxy_failed(proxy_conn *pc, apr_status_t rv,
                                 const char *what);
/* on_disconnect: flush, half-close and drain without waiting; close. */
PROXY_INTERNAL void proxy_close_backend(proxy_conn *pc);

#endif /* TCP_PROXY_H */
