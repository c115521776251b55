/* Licensed under the Apache License, Version 2.0.
 *
 * increment: the libwebsockets "dumb-increment-protocol".  Every 50 ms the
 * server sends a counter as text ("0", "1", "2", ...); the message "reset"
 * (with or without a trailing newline) starts it again at 0.
 *
 * No thread of its own: on_open sends "0" and starts a repeating 50 ms
 * timer on the connection's loop, which ends with the connection.  A
 * client that does not read is not buffered for without bound: once a
 * send answers WEBSOCKET_SEND_FULL the ticks are skipped (the counter
 * does not move) until on_drain, so the client sees every number in
 * order, only later.
 */
#include <stdlib.h>
#include <string.h>

#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_strings.h"

#define INCREMENT_PROTOCOL "dumb-increment-protocol"
#define INCREMENT_TICK     apr_time_from_msec(50)

/* Per connection; only ever touched on the connection's loop. */
typedef struct increment_state {
    websocket_timer *timer;     /* NULL once cancelled */
    apr_uint64_t counter;
    int full;                   /* a send answered FULL; wait for on_drain */
} increment_state;

/* Without the subprotocol the client would not understand the stream of
 * numbers, so the handshake is refused with 400 Bad Request: the request
 * itself lacks what this location requires (RFC 6455 leaves the answer to
 * the server; 400 is what a malformed-for-this-resource request gets). */
static int increment_on_connect(const websocket_server *server,
                                websocket_conn *conn)
{
    if (server->subprotocol_set(conn, INCREMENT_PROTOCOL) != APR_SUCCESS) {
        return HTTP_BAD_REQUEST;
    }
    return OK;
}

/* Sends the counter and counts on; the timer's function (and on_open's
 * first number). */
static void increment_tick(const websocket_server *server,
                           websocket_conn *conn, void *baton)
{
    increment_state *st = baton;
    char text[32];
    apr_size_t len;

    if (st->full) {
        return;                 /* the client is behind: skip this tick */
    }
    len = apr_snprintf(text, sizeof(text), "%" APR_UINT64_T_FMT, st->counter);
    switch (server->send(conn, WEBSOCKET_TEXT, text, len)) {
    case WEBSOCKET_SEND_OK:
        st->counter++;
        break;
    case WEBSOCKET_SEND_FULL:   /* queued, but stop producing */
        st->counter++;
        st->full = 1;
        break;
    default:                    /* closing or gone: nothing more to send */
        if (st->timer != NULL) {
            server->timer_cancel(conn, st->timer);
            st->timer = NULL;
        }
        break;
    }
}

static void increment_on_open(const websocket_server *server,
                              websocket_conn *conn)
{
    increment_state *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        server->close(conn, 1011, "out of memory");
        return;
    }
    server->data_set(conn, st);
    increment_tick(server, conn, st);
    st->timer = server->timer_add(conn, INCREMENT_TICK, INCREMENT_TICK,
                                  increment_tick, st);
    if (st->timer == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, server->server_rec_of(conn),
                     "increment: cannot start the counter timer for %s",
                     server->uri(conn));
        server->close(conn, 1011, "cannot start counter");
    }
}

static void increment_on_drain(const websocket_server *server,
                               websocket_conn *conn)
{
    increment_state *st = server->data_get(conn);

    if (st != NULL) {
        st->full = 0;
    }
}

static int increment_is_reset(const char *data, apr_size_t len)
{
    if (len > 0 && data[len - 1] == '\n') {
        len--;
    }
    return len == 5 && !memcmp(data, "reset", 5);
}

static void increment_on_message(const websocket_server *server,
                                 websocket_conn *conn, int type,
                                 const char *data, apr_size_t len)
{
    increment_state *st = server->data_get(conn);

    if (st != NULL && type == WEBSOCKET_TEXT
        && increment_is_reset(data, len)) {
        st->counter = 0;
    }
}

/* The timer has already ended with the connection: only the state is
 * left to free. */
static void increment_on_disconnect(const websocket_server *server,
                                    websocket_conn *conn)
{
    increment_state *st = server->data_get(conn);

    server->data_set(conn, NULL);
    free(st);
}

static websocket_plugin increment_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .on_connect    = increment_on_connect,
    .on_open       = increment_on_open,
    .on_message    = increment_on_message,
    .on_disconnect = increment_on_disconnect,
    .on_drain      = increment_on_drain,
};

websocket_plugin *increment_init(void)
{
    return &increment_plugin;
}
