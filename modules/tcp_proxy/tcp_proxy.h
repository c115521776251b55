/* Licensed under the Apache License, Version 2.0.
 *
 * tcp_proxy.h: what the two halves of the tcp_proxy plugin share
 * (tcp_proxy.c: configuration, connecting and the owner thread's
 * callbacks; proxy_pump.c: the thread that talks to the backend).
 */
#ifndef TCP_PROXY_H
#define TCP_PROXY_H

#include "websocket_plugin.h"

#include "apr_network_io.h"
#include "apr_poll.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

/* Bytes read from the backend at a time; a multiple of 3, so that each
 * chunk is whole base64 quanta. */
#define PROXY_CHUNK         (48 * 1024)
/* The pump stops reading the backend while more than this is queued for
 * the client; the client is paused (pause_reading) while more than this
 * waits to go to the backend, and resumed below PROXY_LOW_WATER. */
#define PROXY_HIGH_WATER    (256 * 1024)
#define PROXY_LOW_WATER     (64 * 1024)

/* Functions shared between the plugin's files but not exported: httpd
 * loads plugins with RTLD_GLOBAL, where exported names could clash. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define PROXY_INTERNAL __attribute__((visibility("hidden")))
#else
#define PROXY_INTERNAL
#endif

typedef enum { PROXY_BINARY, PROXY_BASE64 } proxy_mode_e;

/* Client bytes on their way to the backend: one per message. */
typedef struct proxy_chunk {
    struct proxy_chunk *next;
    apr_size_t len, sent;
    char data[1];                 /* len bytes */
} proxy_chunk;

typedef struct proxy_conn {
    const websocket_server *server;
    websocket_conn *conn;
    proxy_mode_e mode;
    const char *backend;          /* host:port, as configured */
    const char *host;
    apr_port_t port;
    server_rec *s;                /* for log lines from the pump */
    const char *uri, *client_ip;  /* copies, for log lines */
    apr_interval_time_t write_timeout;
    apr_socket_t *sock;           /* NULL until connected */
    apr_pollset_t *pollset;       /* the pump's; woken by the owner */
    apr_thread_t *pump;

    /* Shared between the owner and the pump; guarded by mutex. */
    apr_thread_mutex_t *mutex;
    proxy_chunk *out_head, *out_tail;
    apr_size_t out_bytes;         /* not yet written to the backend */
    int paused;                   /* we paused reading the client */
    int closing;                  /* the client is closing or gone */
    int ended;                    /* the pump is done: drop what comes */

    /* Pump thread only. */
    char *rbuf, *ebuf;
    apr_int16_t polled;           /* events the pollset asks for */
    apr_time_t last_sent;         /* last progress writing the backend */
    apr_status_t backend_end;     /* APR_SUCCESS while the backend is open */

    /* Owner thread only. */
    int stopped;                  /* ignore what the client sends */
} proxy_conn;

/* Owner: hand the client's bytes to the pump (copied); pauses the
 * client while too much waits.  APR_ENOMEM, else APR_SUCCESS (bytes that
 * come after the pump has ended are dropped). */
PROXY_INTERNAL apr_status_t proxy_queue(proxy_conn *pc, const char *data,
                                        apr_size_t len);

/* Owner: the client is closing or gone; the pump writes what is
 * buffered, then half-closes the backend. */
PROXY_INTERNAL void proxy_finish(proxy_conn *pc);

/* The pump thread (apr_thread_create with the proxy_conn): moves bytes
 * both ways until either side ends; releases the connection as it
 * ends. */
PROXY_INTERNAL void *APR_THREAD_FUNC proxy_pump_main(apr_thread_t *thread,
                                                    void *baton);

#endif /* TCP_PROXY_H */
