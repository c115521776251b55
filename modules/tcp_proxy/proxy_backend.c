/* Licensed under the Apache License, Version 2.0.
 *
 * proxy_backend.c: the tcp_proxy backend socket, non-blocking, watched on
 * the connection's loop (see tcp_proxy.c for the whole picture).
 *
 * Backend to client: on POLLIN, up to PROXY_READS_PER_WAKE reads of
 * PROXY_CHUNK, each sent as one message.  When send says FULL the watch
 * stops asking for POLLIN until on_drain, so TCP slows the backend down.
 *
 * Client to backend: proxy_write sends at once; what the backend does not
 * take waits in pc->out and goes on POLLOUT.  The client is paused above
 * PROXY_HIGH_WATER waiting bytes and resumed at PROXY_LOW_WATER, so the
 * buffer holds at most the high-water mark plus what the module had
 * already read when it paused.  A backend that takes nothing for the
 * server's Timeout fails (1011).
 */
#include "tcp_proxy.h"

#include "http_log.h"
#include "apr_base64.h"
#include "apr_portable.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

/* "tcp_proxy: <uri> (client <ip>): <before>backend <host:port><after>" */
static void proxy_log(proxy_conn *pc, int level, apr_status_t rv,
                      const char *before, const char *after)
{
    ap_log_error(APLOG_MARK, level, rv, pc->server->server_rec_of(pc->conn),
                 "tcp_proxy: %s (client %s): %sbackend %s%s",
                 pc->server->uri(pc->conn), pc->server->client_ip(pc->conn),
                 before, pc->loc->backend, after);
}

void proxy_close_client(proxy_conn *pc, int code, const char *reason)
{
    if (!pc->closing) {
        pc->closing = 1;
        pc->server->close(pc->conn, code, reason);
    }
}

/* The backend is over: no more I/O on it (the socket stays open until
 * on_disconnect; what waits for it is dropped). */
static void proxy_end(proxy_conn *pc, int code, const char *reason)
{
    pc->done = 1;
    pc->start = pc->end = 0;
    proxy_close_client(pc, code, reason);
}

void proxy_failed(proxy_conn *pc, apr_status_t rv, const char *what)
{
    if (!pc->closing) {
        proxy_log(pc, APLOG_ERR, rv, what, " failed");
    }
    proxy_end(pc, 1011, "backend gone");
}

/* ------------------------------------------------------------------ */
/* Client to backend                                                   */

char *proxy_reserve(proxy_conn *pc, apr_size_t len)
{
    apr_size_t used = pc->end - pc->start, cap;
    char *p;

    if (pc->end + len > pc->cap && pc->start > 0) {
        memmove(pc->out, pc->out + pc->start, used);
        pc->start = 0;
        pc->end = used;
    }
    if (used + len > pc->cap) {
        cap = pc->cap ? 2 * pc->cap : PROXY_LOW_WATER;
        if (cap < used + len) {
            cap = used + len;
        }
        if ((p = realloc(pc->out, cap)) == NULL) {
            return NULL;
        }
        pc->out = p;
        pc->cap = cap;
    }
    if (used == 0) {
        pc->last_write = apr_time_now();    /* the write clock starts */
    }
    return pc->out + pc->end;
}

void proxy_flush(proxy_conn *pc)
{
    apr_size_t n;
    apr_status_t rv = APR_SUCCESS;

    while (pc->start < pc->end && rv == APR_SUCCESS) {
        n = pc->end - pc->start;
        rv = apr_socket_send(pc->sock, pc->out + pc->start, &n);
        if (n > 0) {
            pc->start += n;
            pc->last_write = apr_time_now();
        }
    }
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        proxy_failed(pc, rv, "writing to ");
        return;
    }
    if (pc->start == pc->end) {
        free(pc->out);                  /* idle connections stay small */
        pc->out = NULL;
        pc->start = pc->end = pc->cap = 0;
        if (pc->closing && !pc->shut) {
            pc->shut = 1;
            apr_socket_shutdown(pc->sock, APR_SHUTDOWN_WRITE);
        }
    }
}

void proxy_write(proxy_conn *pc, const char *data, apr_size_t len)
{
    apr_size_t n = len;
    apr_status_t rv;
    char *room;

    if (pc->connected && pc->start == pc->end) {
        rv = apr_socket_send(pc->sock, data, &n);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
            proxy_failed(pc, rv, "writing to ");
            return;
        }
        data += n;
        len -= n;
    }
    if (len > 0) {
        if ((room = proxy_reserve(pc, len)) == NULL) {
            proxy_failed(pc, APR_ENOMEM, "buffering for ");
            return;
        }
        memcpy(room, data, len);
        pc->end += len;
    }
}

/* ------------------------------------------------------------------ */
/* Backend to client                                                   */

/* Read what the backend has (a few chunks at most per wake-up) and send
 * it, or drop it while the client is ending. */
static void proxy_read(proxy_conn *pc)
{
    apr_size_t coded = pc->base64 ? apr_base64_encode_len(PROXY_CHUNK) : 0;
    char *buf = malloc(PROXY_CHUNK + coded), *text = buf + PROXY_CHUNK;
    websocket_send_result sent;
    apr_size_t n = PROXY_CHUNK;
    apr_status_t rv = APR_SUCCESS;
    int turn;

    if (buf == NULL) {
        proxy_failed(pc, APR_ENOMEM, "reading from ");
        return;
    }
    for (turn = 0; turn < PROXY_READS_PER_WAKE && n == PROXY_CHUNK
                   && rv == APR_SUCCESS && !pc->full; turn++) {
        n = PROXY_CHUNK;
        rv = apr_socket_recv(pc->sock, buf, &n);
        if (n == 0 || pc->closing) {
            continue;
        }
        if (pc->base64) {
            apr_base64_encode_binary(text, (unsigned char *)buf, (int)n);
            sent = pc->server->send(pc->conn, WEBSOCKET_TEXT, text,
                                    apr_base64_encode_len((int)n) - 1);
        }
        else {
            sent = pc->server->send(pc->conn, WEBSOCKET_BINARY, buf, n);
        }
        pc->full = sent == WEBSOCKET_SEND_FULL;
        if (sent == WEBSOCKET_SEND_CLOSED || sent == WEBSOCKET_SEND_INVALID) {
            pc->closing = 1;        /* the module is closing the client */
        }
    }
    free(buf);
    if (APR_STATUS_IS_EOF(rv)) {
        if (!pc->closing) {
            proxy_log(pc, APLOG_INFO, 0, "", " closed the connection");
        }
        proxy_end(pc, 1000, "backend closed");
    }
    else if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        proxy_failed(pc, rv, "reading from ");
    }
    else if (pc->closing) {
        proxy_flush(pc);            /* half-close if not done yet */
    }
}

/* ------------------------------------------------------------------ */
/* On the loop                                                         */

/* Connecting took too long, or the backend took nothing for Timeout. */
static void proxy_on_timer(const websocket_server *server,
                           websocket_conn *conn, void *baton)
{
    proxy_conn *pc = baton;

    pc->timer = NULL;
    if (pc->done) {
        return;
    }
    if (!pc->connected) {
        server->watch_remove(conn, pc->watch);
        pc->watch = NULL;
        apr_socket_close(pc->sock);
        pc->sock = NULL;
        proxy_log(pc, APLOG_ERR, APR_TIMEUP, "cannot connect to ", "");
        proxy_end(pc, 1011, "backend unavailable");
    }
    else if (pc->start < pc->end && apr_time_now() - pc->last_write
                                    >= server->server_rec_of(conn)->timeout) {
        proxy_failed(pc, APR_TIMEUP, "writing to ");
    }
    proxy_update(pc);               /* or wait again for the rest */
}

void proxy_update(proxy_conn *pc)
{
    apr_size_t waiting = pc->end - pc->start;
    apr_interval_time_t left;
    apr_int16_t events;
    int pause = !pc->done && waiting > (pc->paused ? PROXY_LOW_WATER
                                                   : PROXY_HIGH_WATER);

    if (pause != pc->paused) {
        pc->paused = pause;
        pc->server->pause_reading(pc->conn, pause);
    }
    if (pc->done) {
        events = 0;
    }
    else if (!pc->connected) {
        events = APR_POLLOUT;
    }
    else {
        events = (pc->full ? 0 : APR_POLLIN) | (waiting ? APR_POLLOUT : 0);
    }
    if (pc->watch != NULL && events != pc->watched) {
        pc->server->watch_events(pc->conn, pc->watch, events);
        pc->watched = events;
    }
    if (waiting && pc->connected && !pc->done && pc->timer == NULL) {
        left = pc->last_write - apr_time_now()
               + pc->server->server_rec_of(pc->conn)->timeout;
        pc->timer = pc->server->timer_add(pc->conn, left > 0 ? left : 0, 0,
                                          proxy_on_timer, pc);
    }
}

static void proxy_on_backend(const websocket_server *server,
                             websocket_conn *conn, void *baton,
                             apr_int16_t rtnevents);

/* Connect to pc->addr, else to the next addresses, until one connects or
 * is under way (POLLOUT will say); else the client is closed.  rv: why
 * the previous address failed. */
static void proxy_try(proxy_conn *pc, apr_status_t rv)
{
    for (; pc->addr != NULL; pc->addr = pc->addr->next) {
        rv = apr_socket_create(&pc->sock, pc->addr->family, SOCK_STREAM,
                               APR_PROTO_TCP, pc->pool);
        if (rv != APR_SUCCESS) {
            continue;
        }
        /* Timeout 0: APR returns EAGAIN / EINPROGRESS instead of waiting. */
        apr_socket_opt_set(pc->sock, APR_SO_NONBLOCK, 1);
        apr_socket_timeout_set(pc->sock, 0);
        apr_socket_opt_set(pc->sock, APR_TCP_NODELAY, 1);
        rv = apr_socket_connect(pc->sock, pc->addr);
        if (rv == APR_SUCCESS || APR_STATUS_IS_EINPROGRESS(rv)) {
            pc->pfd.desc_type = APR_POLL_SOCKET;
            pc->pfd.desc.s = pc->sock;
            pc->pfd.reqevents = pc->watched = APR_POLLOUT;
            pc->watch = pc->server->watch_add(pc->conn, &pc->pfd,
                                              proxy_on_backend, pc);
            if (pc->watch != NULL) {
                return;
            }
            rv = APR_ENOMEM;
        }
        apr_socket_close(pc->sock);
    }
    pc->sock = NULL;
    proxy_log(pc, APLOG_ERR, rv, "cannot connect to ", "");
    proxy_end(pc, 1011, "backend unavailable");
}

void proxy_connect(proxy_conn *pc)
{
    pc->timer = pc->server->timer_add(pc->conn, pc->loc->connect_timeout, 0,
                                      proxy_on_timer, pc);
    pc->addr = pc->loc->addrs;
    proxy_try(pc, APR_EGENERAL);
    proxy_update(pc);
}

/* POLLOUT while connecting: connected, or on to the next address. */
static void proxy_connected(proxy_conn *pc)
{
    apr_os_sock_t fd;
    int err = 0;
    socklen_t len = sizeof(err);

    apr_os_sock_get(&fd, pc->sock);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == 0) {
        pc->connected = 1;
        pc->last_write = apr_time_now();
        if (pc->timer != NULL) {
            pc->server->timer_cancel(pc->conn, pc->timer);
            pc->timer = NULL;
        }
        proxy_flush(pc);            /* what the client sent meanwhile */
        return;
    }
    pc->server->watch_remove(pc->conn, pc->watch);
    pc->watch = NULL;
    apr_socket_close(pc->sock);
    pc->addr = pc->addr->next;
    proxy_try(pc, APR_FROM_OS_ERROR(err));
}

static void proxy_on_backend(const websocket_server *server,
                             websocket_conn *conn, void *baton,
                             apr_int16_t rtnevents)
{
    proxy_conn *pc = baton;

    (void)server;
    (void)conn;
    if (pc->done) {
        return;
    }
    if (!pc->connected) {
        proxy_connected(pc);
    }
    else {
        if (rtnevents & (APR_POLLOUT | APR_POLLHUP | APR_POLLERR)) {
            proxy_flush(pc);
        }
        if (!pc->done && !pc->full
            && (rtnevents & (APR_POLLIN | APR_POLLHUP | APR_POLLERR))) {
            proxy_read(pc);
        }
    }
    proxy_update(pc);
}

void proxy_close_backend(proxy_conn *pc)
{
    char drop[4096];
    apr_size_t n = sizeof(drop);
    int i;

    if (pc->connected && !pc->done) {
        pc->closing = 1;
        proxy_flush(pc);            /* what it cannot take now is lost */
        if (!pc->shut) {
            apr_socket_shutdown(pc->sock, APR_SHUTDOWN_WRITE);
        }
        /* closing with unread bytes would reset the connection */
        for (i = 0; i < 256 && n > 0; i++) {
            n = sizeof(drop);
            apr_socket_recv(pc->sock, drop, &n);
        }
    }
    if (pc->sock != NULL) {
        apr_socket_close(pc->sock);
        pc->sock = NULL;
    }
    free(pc->out);
    pc->out = NULL;
}
