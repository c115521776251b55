/* Licensed under the Apache License, Version 2.0.
 *
 * proxy_pump.c: the tcp_proxy thread that talks to the backend, both
 * ways, and the buffer through which the owner thread hands it the
 * client's bytes.  Its sends to the client are queued by the module and
 * written by the connection's owner thread.
 *
 * Backpressure, backend to client: while more than PROXY_HIGH_WATER bytes
 * are queued for the client, the pump leaves the backend's bytes in the
 * socket, so TCP flow control slows the backend down.
 *
 * Backpressure, client to backend: the owner never waits for the backend;
 * on_message appends to the outgoing buffer and wakes the pump, which
 * writes it out as the backend reads.  Above PROXY_HIGH_WATER buffered
 * bytes the client is paused (server->pause_reading), below
 * PROXY_LOW_WATER resumed; the module goes on writing to the client
 * meanwhile, so a backend that answers as it reads (an echo) cannot
 * deadlock the two directions.  The buffer holds at most the high-water
 * mark plus what the module had already read when it paused (one read,
 * of at most WebSocketMaxMessage per message).
 *
 * The backend socket is non-blocking and only this thread uses it (after
 * the owner connected it), waiting in a pollset of its own that the owner
 * wakes with apr_pollset_wakeup.
 */
#include "tcp_proxy.h"

#include "http_log.h"
#include "apr_base64.h"

#include <stdlib.h>

#define PROXY_POLL_INTERVAL apr_time_from_msec(200)
#define PROXY_BACKOFF       apr_time_from_msec(5)
#define PROXY_DRAIN_TIME    apr_time_from_sec(3)

/* A send to the client failed, or the client closes: stop forwarding. */
#define PROXY_CLIENT_GONE   (APR_OS_START_USERERR + 1)

/* ------------------------------------------------------------------ */
/* The outgoing buffer (owner appends, pump consumes)                  */

/* Pause or resume the client as the buffer crosses the marks (mutex
 * held, so that the calls keep the order of the decisions). */
static void proxy_flow(proxy_conn *pc)
{
    int pause = pc->out_bytes > (pc->paused ? PROXY_LOW_WATER
                                            : PROXY_HIGH_WATER);

    if (pause != pc->paused) {
        pc->paused = pause;
        pc->server->pause_reading(pc->conn, pause);
    }
}

apr_status_t proxy_queue(proxy_conn *pc, const char *data, apr_size_t len)
{
    proxy_chunk *chunk;

    if (len == 0) {
        return APR_SUCCESS;
    }
    if ((chunk = malloc(APR_OFFSETOF(proxy_chunk, data) + len)) == NULL) {
        return APR_ENOMEM;
    }
    chunk->next = NULL;
    chunk->len = len;
    chunk->sent = 0;
    memcpy(chunk->data, data, len);
    apr_thread_mutex_lock(pc->mutex);
    if (pc->ended) {
        free(chunk);            /* the backend is gone: nobody will read */
    }
    else {
        if (pc->out_tail != NULL) {
            pc->out_tail->next = chunk;
        }
        else {
            pc->out_head = chunk;
        }
        pc->out_tail = chunk;
        pc->out_bytes += len;
        proxy_flow(pc);
    }
    apr_thread_mutex_unlock(pc->mutex);
    apr_pollset_wakeup(pc->pollset);
    return APR_SUCCESS;
}

void proxy_finish(proxy_conn *pc)
{
    apr_thread_mutex_lock(pc->mutex);
    pc->closing = 1;
    apr_thread_mutex_unlock(pc->mutex);
    if (pc->pollset != NULL) {
        apr_pollset_wakeup(pc->pollset);
    }
}

static int proxy_is_closing(proxy_conn *pc)
{
    int closing;

    apr_thread_mutex_lock(pc->mutex);
    closing = pc->closing;
    apr_thread_mutex_unlock(pc->mutex);
    return closing;
}

/* The oldest chunk, or NULL.  Only the pump removes chunks, so it may
 * use this one without the mutex. */
static proxy_chunk *proxy_out_first(proxy_conn *pc)
{
    proxy_chunk *chunk;

    apr_thread_mutex_lock(pc->mutex);
    chunk = pc->out_head;
    apr_thread_mutex_unlock(pc->mutex);
    return chunk;
}

/* n more bytes of the oldest chunk went to the backend. */
static void proxy_out_consume(proxy_conn *pc, apr_size_t n)
{
    proxy_chunk *done = NULL;

    apr_thread_mutex_lock(pc->mutex);
    pc->out_head->sent += n;
    pc->out_bytes -= n;
    if (pc->out_head->sent == pc->out_head->len) {
        done = pc->out_head;
        pc->out_head = done->next;
        if (pc->out_head == NULL) {
            pc->out_tail = NULL;
        }
    }
    proxy_flow(pc);
    apr_thread_mutex_unlock(pc->mutex);
    free(done);
}

/* The pump is done: drop the buffer, resume the client (whose closing
 * handshake is read whatever the pause) and accept nothing more. */
static void proxy_out_end(proxy_conn *pc)
{
    proxy_chunk *chunk;

    apr_thread_mutex_lock(pc->mutex);
    pc->ended = 1;
    chunk = pc->out_head;
    pc->out_head = pc->out_tail = NULL;
    pc->out_bytes = 0;
    proxy_flow(pc);
    apr_thread_mutex_unlock(pc->mutex);
    while (chunk != NULL) {
        proxy_chunk *next = chunk->next;

        free(chunk);
        chunk = next;
    }
}

/* ------------------------------------------------------------------ */
/* The backend socket (pump only)                                      */

/* Wait up to timeout for events on the backend (0: only for a wakeup);
 * *ready gets the events that came. */
static apr_status_t proxy_poll(proxy_conn *pc, apr_int16_t events,
                               apr_interval_time_t timeout,
                               apr_int16_t *ready)
{
    apr_pollfd_t pfd;
    const apr_pollfd_t *out;
    apr_int32_t n, i;
    apr_status_t rv = APR_SUCCESS;

    memset(&pfd, 0, sizeof(pfd));
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.desc.s = pc->sock;
    if (events != pc->polled) {
        if (pc->polled != 0) {
            pfd.reqevents = pc->polled;
            apr_pollset_remove(pc->pollset, &pfd);
        }
        pfd.reqevents = events;
        if (events != 0) {
            rv = apr_pollset_add(pc->pollset, &pfd);
        }
        pc->polled = rv == APR_SUCCESS ? events : 0;
    }
    *ready = 0;
    if (rv == APR_SUCCESS) {
        rv = apr_pollset_poll(pc->pollset, timeout, &n, &out);
    }
    for (i = 0; rv == APR_SUCCESS && i < n; i++) {
        *ready |= out[i].rtnevents;
    }
    if (APR_STATUS_IS_EINTR(rv) || APR_STATUS_IS_TIMEUP(rv)) {
        rv = APR_SUCCESS;       /* woken by the owner, or nothing came */
    }
    return rv;
}

/* Read what the backend has into rbuf: APR_SUCCESS (*len 0 when nothing
 * came), APR_EOF or an error. */
static apr_status_t proxy_recv(proxy_conn *pc, apr_size_t *len)
{
    apr_status_t rv;

    *len = PROXY_CHUNK;
    rv = apr_socket_recv(pc->sock, pc->rbuf, len);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        rv = APR_SUCCESS;
    }
    return rv;
}

/* Write what the backend takes of the oldest chunk; APR_TIMEUP when it
 * has taken nothing for the server's Timeout. */
static apr_status_t proxy_send(proxy_conn *pc, int writable)
{
    proxy_chunk *chunk = proxy_out_first(pc);
    apr_time_t now = apr_time_now();
    apr_size_t n = 0;
    apr_status_t rv = APR_SUCCESS;

    if (chunk == NULL) {
        pc->last_sent = now;
        return APR_SUCCESS;
    }
    if (writable) {
        n = chunk->len - chunk->sent;
        rv = apr_socket_send(pc->sock, chunk->data + chunk->sent, &n);
    }
    if (n > 0) {
        pc->last_sent = now;
        proxy_out_consume(pc, n);
    }
    if (APR_STATUS_IS_EAGAIN(rv)
        || (rv == APR_SUCCESS && now - pc->last_sent < pc->write_timeout)) {
        return APR_SUCCESS;
    }
    return rv == APR_SUCCESS ? APR_TIMEUP : rv;
}

/* ------------------------------------------------------------------ */
/* Moving bytes                                                        */

/* One message to the client: binary, or base64 text. */
static apr_status_t proxy_forward(proxy_conn *pc, const char *data,
                                  apr_size_t len)
{
    apr_status_t rv;

    if (pc->mode == PROXY_BINARY) {
        rv = pc->server->send(pc->conn, WEBSOCKET_BINARY, data, len);
    }
    else {
        apr_base64_encode(pc->ebuf, data, (int)len);
        rv = pc->server->send(pc->conn, WEBSOCKET_TEXT, pc->ebuf,
                              apr_base64_encode_len((int)len) - 1);
    }
    return rv == APR_SUCCESS ? APR_SUCCESS : PROXY_CLIENT_GONE;
}

/* One turn: wait for the backend (reading it only while the client has
 * room, or when forward is 0: then what it sends is dropped), then read
 * and write what it allows.  Errors go to backend_end, with what failed
 * in *op; PROXY_CLIENT_GONE when the client cannot take more. */
static apr_status_t proxy_turn(proxy_conn *pc, int forward, const char **op)
{
    int room = !forward
               || pc->server->pending(pc->conn) <= PROXY_HIGH_WATER;
    apr_int16_t events = 0, ready;
    apr_size_t len = 0;
    apr_status_t rv;

    if (room && pc->backend_end == APR_SUCCESS) {
        events |= APR_POLLIN;
    }
    if (proxy_out_first(pc) != NULL) {
        events |= APR_POLLOUT;
    }
    rv = proxy_poll(pc, events, room ? PROXY_POLL_INTERVAL : PROXY_BACKOFF,
                    &ready);
    if (rv == APR_SUCCESS && (ready & (APR_POLLIN | APR_POLLHUP
                                       | APR_POLLERR))) {
        *op = "reading from";
        rv = proxy_recv(pc, &len);
        if (len > 0 && forward
            && proxy_forward(pc, pc->rbuf, len) != APR_SUCCESS) {
            return PROXY_CLIENT_GONE;
        }
        if (rv != APR_SUCCESS) {
            pc->backend_end = rv;
            return rv;
        }
    }
    *op = "writing to";
    if (rv == APR_SUCCESS) {
        rv = proxy_send(pc, (ready & APR_POLLOUT) != 0);
    }
    if (rv != APR_SUCCESS) {
        pc->backend_end = rv;
    }
    return rv;
}

/* Both ways until the backend ends (its status) or the client closes
 * (PROXY_CLIENT_GONE). */
static apr_status_t proxy_pump(proxy_conn *pc, const char **op)
{
    apr_status_t rv = APR_SUCCESS;

    while (rv == APR_SUCCESS) {
        rv = proxy_is_closing(pc) ? PROXY_CLIENT_GONE
                                  : proxy_turn(pc, 1, op);
    }
    return rv;
}

/* The client is closing or gone: write what it sent before (dropping
 * what the backend answers meanwhile), half-close so that the backend
 * sees EOF, then read and drop what it still sends, so that it can finish
 * and close cleanly. */
static void proxy_wind_down(proxy_conn *pc)
{
    apr_time_t deadline;
    const char *op;

    while (pc->backend_end == APR_SUCCESS && proxy_out_first(pc) != NULL
           && proxy_turn(pc, 0, &op) == APR_SUCCESS) {
    }
    apr_socket_shutdown(pc->sock, APR_SHUTDOWN_WRITE);
    deadline = apr_time_now() + PROXY_DRAIN_TIME;
    while (pc->backend_end == APR_SUCCESS && apr_time_now() < deadline) {
        proxy_turn(pc, 0, &op);
    }
}

static void proxy_backend_ended(proxy_conn *pc, apr_status_t rv,
                                const char *op)
{
    const websocket_server *server = pc->server;

    if (rv == PROXY_CLIENT_GONE) {
        proxy_wind_down(pc);
    }
    else if (proxy_is_closing(pc)) {
        /* The backend answered the client's close: nothing to report. */
    }
    else if (APR_STATUS_IS_EOF(rv)) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, pc->s, "tcp_proxy: %s "
                     "(client %s): backend %s closed the connection",
                     pc->uri, pc->client_ip, pc->backend);
        server->close(pc->conn, 1000, "backend closed");
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, pc->s, "tcp_proxy: %s "
                     "(client %s): %s backend %s failed", pc->uri,
                     pc->client_ip, op, pc->backend);
        server->close(pc->conn, 1011, "backend gone");
    }
}

void *APR_THREAD_FUNC proxy_pump_main(apr_thread_t *thread, void *baton)
{
    proxy_conn *pc = baton;
    const char *op = "reading from";
    apr_status_t rv;

    pc->last_sent = apr_time_now();
    rv = proxy_pump(pc, &op);
    proxy_backend_ended(pc, rv, op);
    proxy_out_end(pc);
    pc->server->release(pc->conn);
    /* Returning ends the thread as apr_thread_exit would (APR >= 1.7),
     * without the pthread_exit unwinding that ASan misreports. */
    (void)thread;
    return NULL;
}
