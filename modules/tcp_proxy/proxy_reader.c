/* Licensed under the Apache License, Version 2.0.
 *
 * proxy_reader.c: the tcp_proxy thread that moves backend bytes to the
 * client.  Its sends are queued by the module and written by the
 * connection's owner thread.
 *
 * Backpressure: while more than PROXY_HIGH_WATER bytes are queued for the
 * client, the reader leaves the backend's bytes in the socket, so TCP
 * flow control slows the backend down -- except while the owner thread
 * waits for the backend to take the client's bytes (owner_waiting).  The
 * owner cannot write the client's queue out then, and a backend that
 * answers as it reads (an echo, most request/response protocols) will not
 * read on before its answer is taken: both would wait for ever.  So then
 * the reader reads into a stash of its own (up to stash_max bytes, not
 * counted against WebSocketMaxPendingBytes), which it forwards, in order,
 * as soon as the queue has room again.
 */
#include "tcp_proxy.h"

#include "http_log.h"
#include "apr_atomic.h"
#include "apr_base64.h"
#include "apr_poll.h"

#include <stdlib.h>

#define PROXY_POLL_INTERVAL apr_time_from_msec(200)
#define PROXY_BACKOFF       apr_time_from_msec(5)
#define PROXY_DRAIN_TIME    apr_time_from_sec(3)

/* A send to the client failed: the connection is closing or gone. */
#define PROXY_CLIENT_GONE   (APR_OS_START_USERERR + 1)

apr_status_t proxy_wait(apr_socket_t *sock, apr_int16_t events,
                        apr_interval_time_t timeout)
{
    apr_pollfd_t pfd;
    apr_int32_t n;
    apr_status_t rv;

    if (timeout <= 0) {
        return APR_TIMEUP;
    }
    memset(&pfd, 0, sizeof(pfd));
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.desc.s = sock;
    pfd.reqevents = events;
    rv = apr_poll(&pfd, 1, &n, timeout);
    return APR_STATUS_IS_EINTR(rv) ? APR_SUCCESS : rv;
}

static int proxy_is_closing(proxy_conn *pc)
{
    return apr_atomic_read32(&pc->closing) != 0;
}

/* Read what the backend has, waiting up to timeout: APR_SUCCESS (*len 0
 * when nothing came), APR_EOF or an error. */
static apr_status_t proxy_recv(proxy_conn *pc, char *buf, apr_size_t *len,
                               apr_interval_time_t timeout)
{
    apr_size_t want = *len;
    apr_status_t rv = proxy_wait(pc->sock, APR_POLLIN, timeout);

    *len = 0;
    if (rv == APR_SUCCESS) {
        *len = want;
        rv = apr_socket_recv(pc->sock, buf, len);
    }
    if (APR_STATUS_IS_TIMEUP(rv) || APR_STATUS_IS_EAGAIN(rv)) {
        rv = APR_SUCCESS;
    }
    return rv;
}

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

/* Backend to client directly. */
static apr_status_t proxy_relay(proxy_conn *pc)
{
    apr_size_t len = PROXY_CHUNK;
    apr_status_t rv = proxy_recv(pc, pc->rbuf, &len, PROXY_POLL_INTERVAL);

    if (len > 0 && proxy_forward(pc, pc->rbuf, len) != APR_SUCCESS) {
        return PROXY_CLIENT_GONE;
    }
    return rv;
}

/* Backend to the stash. */
static apr_status_t proxy_stash(proxy_conn *pc)
{
    proxy_chunk *chunk = malloc(sizeof(*chunk));
    apr_status_t rv;

    if (chunk == NULL) {
        return APR_ENOMEM;
    }
    chunk->next = NULL;
    chunk->len = PROXY_CHUNK;
    rv = proxy_recv(pc, chunk->data, &chunk->len, PROXY_BACKOFF);
    if (chunk->len == 0) {
        free(chunk);
        return rv;
    }
    if (pc->stash_tail != NULL) {
        pc->stash_tail->next = chunk;
    }
    else {
        pc->stash_head = chunk;
    }
    pc->stash_tail = chunk;
    pc->stash_bytes += sizeof(*chunk);
    return rv;
}

/* The stash's oldest chunk to the client. */
static apr_status_t proxy_unstash(proxy_conn *pc)
{
    proxy_chunk *chunk = pc->stash_head;
    apr_status_t rv = proxy_forward(pc, chunk->data, chunk->len);

    pc->stash_head = chunk->next;
    if (pc->stash_head == NULL) {
        pc->stash_tail = NULL;
    }
    pc->stash_bytes -= sizeof(*chunk);
    free(chunk);
    return rv;
}

static void proxy_free_stash(proxy_conn *pc)
{
    while (pc->stash_head != NULL) {
        proxy_chunk *next = pc->stash_head->next;

        free(pc->stash_head);
        pc->stash_head = next;
    }
    pc->stash_tail = NULL;
    pc->stash_bytes = 0;
}

/* One step of moving bytes; see the top of the file. */
static apr_status_t proxy_step(proxy_conn *pc)
{
    int room = pc->server->pending(pc->conn) <= PROXY_HIGH_WATER;

    if (room && pc->stash_head != NULL) {
        return proxy_unstash(pc);
    }
    if (pc->backend_end == APR_SUCCESS) {
        if (room) {
            return proxy_relay(pc);
        }
        if (apr_atomic_read32(&pc->owner_waiting)
            && pc->stash_bytes < pc->stash_max) {
            return proxy_stash(pc);
        }
    }
    apr_sleep(PROXY_BACKOFF);
    return APR_SUCCESS;
}

/* Move bytes until the backend has ended (APR_EOF or its error) and all
 * it sent is queued, or the client closes (PROXY_CLIENT_GONE). */
static apr_status_t proxy_pump(proxy_conn *pc)
{
    while (pc->backend_end == APR_SUCCESS || pc->stash_head != NULL) {
        apr_status_t rv;

        if (proxy_is_closing(pc)) {
            return PROXY_CLIENT_GONE;
        }
        rv = proxy_step(pc);
        if (rv == PROXY_CLIENT_GONE) {
            return rv;
        }
        if (rv != APR_SUCCESS) {
            pc->backend_end = rv;
        }
    }
    return pc->backend_end;
}

/* The client is gone or closing: read and drop what the backend still
 * sends after our half-close, so that it can finish and close cleanly. */
static void proxy_drain(proxy_conn *pc)
{
    apr_time_t deadline = apr_time_now() + PROXY_DRAIN_TIME;
    apr_status_t rv = pc->backend_end;

    while (rv == APR_SUCCESS && apr_time_now() < deadline) {
        apr_size_t len = PROXY_CHUNK;

        rv = proxy_recv(pc, pc->rbuf, &len, deadline - apr_time_now());
    }
}

static void proxy_backend_ended(proxy_conn *pc, apr_status_t rv)
{
    const websocket_server *server = pc->server;

    if (rv == PROXY_CLIENT_GONE) {
        proxy_drain(pc);
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
                     "(client %s): reading from backend %s failed",
                     pc->uri, pc->client_ip, pc->backend);
        server->close(pc->conn, 1011, "backend gone");
    }
}

void *APR_THREAD_FUNC proxy_reader(apr_thread_t *thread, void *baton)
{
    proxy_conn *pc = baton;

    proxy_backend_ended(pc, proxy_pump(pc));
    proxy_free_stash(pc);
    pc->server->release(pc->conn);
    /* Returning ends the thread as apr_thread_exit would (APR >= 1.7),
     * without the pthread_exit unwinding that ASan misreports. */
    (void)thread;
    return NULL;
}
