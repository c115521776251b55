/* Licensed under the Apache License, Version 2.0.
 *
 * tcp_proxy.h: what the two halves of the tcp_proxy plugin share
 * (tcp_proxy.c: configuration, connecting and the owner thread's
 * callbacks; proxy_reader.c: the thread that reads the backend).
 */
#ifndef TCP_PROXY_H
#define TCP_PROXY_H

#include "websocket_plugin.h"

#include "apr_network_io.h"
#include "apr_thread_proc.h"

/* Bytes read from the backend at a time; a multiple of 3, so that each
 * chunk is whole base64 quanta. */
#define PROXY_CHUNK         (48 * 1024)
/* The reader stops reading the backend while more than this is queued
 * for the client. */
#define PROXY_HIGH_WATER    (256 * 1024)
/* Default for "WebSocketOption BackendBuffer": what the reader may hold
 * while the owner thread waits for the backend (see tcp_proxy.c). */
#define PROXY_STASH_MAX     (16 * 1024 * 1024)

/* Functions shared between the plugin's files but not exported: httpd
 * loads plugins with RTLD_GLOBAL, where exported names could clash. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define PROXY_INTERNAL __attribute__((visibility("hidden")))
#else
#define PROXY_INTERNAL
#endif

typedef enum { PROXY_BINARY, PROXY_BASE64 } proxy_mode_e;

/* Backend bytes the reader holds back (reader thread only). */
typedef struct proxy_chunk {
    struct proxy_chunk *next;
    apr_size_t len;
    char data[PROXY_CHUNK];
} proxy_chunk;

typedef struct proxy_conn {
    const websocket_server *server;
    websocket_conn *conn;
    proxy_mode_e mode;
    const char *backend;          /* host:port, as configured */
    const char *host;
    apr_port_t port;
    server_rec *s;                /* for log lines from the reader */
    const char *uri, *client_ip;  /* copies, for log lines */
    apr_interval_time_t write_timeout;
    apr_size_t stash_max;
    apr_socket_t *sock;           /* NULL until connected */
    apr_thread_t *reader;

    apr_uint32_t owner_waiting;   /* atomic: owner waits on the backend */
    apr_uint32_t closing;         /* atomic: the client is closing */

    /* Reader thread only. */
    char *rbuf, *ebuf;
    proxy_chunk *stash_head, *stash_tail;
    apr_size_t stash_bytes;
    apr_status_t backend_end;     /* APR_SUCCESS while the backend is open */

    /* Owner thread only. */
    int half_closed;
    int stopped;                  /* ignore what the client sends */
} proxy_conn;

/* Wait up to timeout for events (APR_POLLIN/APR_POLLOUT) on sock:
 * APR_SUCCESS, APR_TIMEUP or an error.  Safe from any thread. */
PROXY_INTERNAL apr_status_t proxy_wait(apr_socket_t *sock, apr_int16_t events,
                                       apr_interval_time_t timeout);

/* The reader thread (apr_thread_create with the proxy_conn): moves
 * backend bytes to the client until either side ends; releases the
 * connection as it ends. */
PROXY_INTERNAL void *APR_THREAD_FUNC proxy_reader(apr_thread_t *thread,
                                                 void *baton);

#endif /* TCP_PROXY_H */
