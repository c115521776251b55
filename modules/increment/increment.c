/* Licensed under the Apache License, Version 2.0.
 *
 * increment: the libwebsockets "dumb-increment-protocol".  Every 50 ms the
 * server sends a counter as text ("0", "1", "2", ...); the message "reset"
 * (with or without a trailing newline) starts it again at 0.
 *
 * Threads: on_open starts one APR thread per connection that does the
 * sending (sends from a thread other than the owner are queued by the
 * module).  The thread sleeps on a condition variable, so on_disconnect
 * wakes it at once instead of waiting out the 50 ms tick, then joins it.
 */
#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#define INCREMENT_PROTOCOL "dumb-increment-protocol"
#define INCREMENT_TICK     apr_time_from_msec(50)

typedef struct increment_state {
    const websocket_server *server;
    websocket_conn *conn;
    apr_thread_t *thread;
    apr_thread_mutex_t *mutex;  /* guards counter and stop */
    apr_thread_cond_t *wake;    /* signalled when stop is set */
    apr_uint64_t counter;
    int stop;
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

/* Wait one tick, or less if stop is set meanwhile.  Called and returns
 * with st->mutex held. */
static void increment_sleep(increment_state *st)
{
    apr_time_t deadline = apr_time_now() + INCREMENT_TICK;
    apr_interval_time_t left = INCREMENT_TICK;

    while (!st->stop && left > 0) {
        apr_thread_cond_timedwait(st->wake, st->mutex, left);
        left = deadline - apr_time_now();
    }
}

static void *APR_THREAD_FUNC increment_run(apr_thread_t *thread, void *baton)
{
    increment_state *st = baton;
    char text[32];
    apr_size_t len;
    apr_status_t rv = APR_SUCCESS;

    apr_thread_mutex_lock(st->mutex);
    while (!st->stop && rv == APR_SUCCESS) {
        len = apr_snprintf(text, sizeof(text), "%" APR_UINT64_T_FMT,
                           st->counter++);
        /* send only queues, but it takes the connection's own lock: do
         * not hold ours across it. */
        apr_thread_mutex_unlock(st->mutex);
        rv = st->server->send(st->conn, WEBSOCKET_TEXT, text, len);
        apr_thread_mutex_lock(st->mutex);
        if (rv == APR_SUCCESS) {
            increment_sleep(st);
        }
    }
    apr_thread_mutex_unlock(st->mutex);
    st->server->release(st->conn);
    /* Returning ends the thread as apr_thread_exit would (APR >= 1.7),
     * without the pthread_exit unwinding that ASan misreports. */
    (void)thread;
    return NULL;
}

static apr_status_t increment_start(const websocket_server *server,
                                    websocket_conn *conn, apr_pool_t *p)
{
    increment_state *st = apr_pcalloc(p, sizeof(*st));
    apr_status_t rv;

    st->server = server;
    st->conn = conn;
    if ((rv = apr_thread_mutex_create(&st->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      p)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&st->wake, p)) != APR_SUCCESS) {
        return rv;
    }
    server->retain(conn);   /* released by the thread as it ends */
    rv = apr_thread_create(&st->thread, NULL, increment_run, st, p);
    if (rv != APR_SUCCESS) {
        server->release(conn);
        return rv;
    }
    server->data_set(conn, st);
    return APR_SUCCESS;
}

static void increment_on_open(const websocket_server *server,
                              websocket_conn *conn)
{
    request_rec *r = server->request(conn);
    apr_status_t rv = increment_start(server, conn, r->pool);

    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "increment: cannot "
                      "start the counter thread for %s", r->uri);
        server->close(conn, 1011, "cannot start counter");
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
        apr_thread_mutex_lock(st->mutex);
        st->counter = 0;
        apr_thread_mutex_unlock(st->mutex);
    }
}

static void increment_on_disconnect(const websocket_server *server,
                                    websocket_conn *conn)
{
    increment_state *st = server->data_get(conn);
    apr_status_t thread_rv;

    if (st == NULL) {
        return;
    }
    apr_thread_mutex_lock(st->mutex);
    st->stop = 1;
    apr_thread_cond_signal(st->wake);
    apr_thread_mutex_unlock(st->mutex);
    apr_thread_join(&thread_rv, st->thread);
    server->data_set(conn, NULL);
}

static websocket_plugin increment_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    increment_on_connect,
    increment_on_open,
    increment_on_message,
    NULL,               /* on_close */
    increment_on_disconnect,
    NULL                /* destroy */
};

websocket_plugin *increment_init(void)
{
    return &increment_plugin;
}
