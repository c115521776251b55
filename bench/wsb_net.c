/* Licensed under the Apache License, Version 2.0.
 *
 * wsb_net.c: non-blocking sockets (optionally TLS through OpenSSL) on an
 * edge-triggered epoll set, and the pump that moves a connection's bytes:
 * it writes until the socket is full, reads until it is empty and hands
 * what came to the handshake or frame parser.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "wsbench.h"

/* Room for at least this much is made before each read. */
#define READ_MIN 4096

int wsb_buf_reserve(wsb_buf *b, size_t more)
{
    size_t cap;
    unsigned char *p;

    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->cap - b->len >= more) {
        return 0;
    }
    if (b->off > 0) {           /* move the live bytes to the front */
        memmove(b->buf, b->buf + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= more) {
            return 0;
        }
    }
    cap = b->cap ? b->cap : READ_MIN;
    while (cap - b->len < more) {
        cap *= 2;
    }
    p = realloc(b->buf, cap);
    if (p == NULL) {
        return -1;
    }
    b->buf = p;
    b->cap = cap;
    return 0;
}

int wsb_net_start(wsb_run *run, wsb_conn *c)
{
    struct epoll_event ev;
    int one = 1;
    const struct sockaddr_storage *addr = &run->addr;
    socklen_t addrlen = run->addrlen;

    if (run->o.fanout && c == run->conns && run->pub_addrlen > 0) {
        addr = &run->pub_addr;
        addrlen = run->pub_addrlen;
    }
    c->fd = socket(addr->ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = ST_CONNECTING;
    c->started = wsb_now();
    if (connect(c->fd, (const struct sockaddr *)addr, addrlen) < 0
        && errno != EINPROGRESS) {
        return -1;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    return epoll_ctl(run->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

void wsb_net_close(wsb_run *run, wsb_conn *c)
{
    (void)run;
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);       /* also leaves the epoll set */
        c->fd = -1;
    }
    free(c->out.buf);
    free(c->in.buf);
    free(c->sent_at);
    free(c->sent_wire);
    if (c->zout) {
        deflateEnd(c->zout);
        free(c->zout);
    }
    if (c->zin) {
        inflateEnd(c->zin);
        free(c->zin);
    }
    memset(&c->out, 0, sizeof(c->out));
    memset(&c->in, 0, sizeof(c->in));
    c->sent_at = NULL;
    c->sent_wire = NULL;
    c->zout = c->zin = NULL;
    c->state = ST_DONE;
}

/* Bytes written (> 0), 0 when the socket is full, -1 on error. */
static long send_some(wsb_conn *c, const unsigned char *p, size_t len)
{
    if (c->ssl != NULL) {
        int n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);

        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        return n > 0 ? n : -1;
    }
    else {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        return n > 0 ? (long)n : -1;
    }
}

/* Bytes read (> 0), 0 when nothing is there, -1 on EOF or error. */
static long recv_some(wsb_conn *c, unsigned char *p, size_t len)
{
    if (c->ssl != NULL) {
        int n = SSL_read(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);

        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        return n > 0 ? n : -1;
    }
    else {
        ssize_t n = recv(c->fd, p, len, 0);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        return n > 0 ? (long)n : -1;
    }
}

/* Write what is queued: 0 when done or the socket is full, -1 on error. */
int wsb_net_flush(wsb_conn *c)
{
    wsb_buf *b = &c->out;

    while (b->off < b->len) {
        long n = send_some(c, b->buf + b->off, b->len - b->off);

        if (n <= 0) {
            return (int)n;
        }
        b->off += (size_t)n;
    }
    b->off = b->len = 0;
    return 0;
}

static long read_in(wsb_conn *c)
{
    wsb_buf *b = &c->in;
    long n;

    if (wsb_buf_reserve(b, READ_MIN) < 0) {
        return -1;
    }
    n = recv_some(c, b->buf + b->len, b->cap - b->len);
    if (n > 0) {
        b->len += (size_t)n;
    }
    return n;
}

uint64_t wsb_sent_for(const wsb_run *run, const wsb_conn *c)
{
    return run->o.fanout ? run->pub_sent : c->sent;
}

/* Messages in flight: on c, or (-F) published and not yet delivered to
 * every connection (only connection 0 publishes). */
static uint64_t in_flight(const wsb_run *run, const wsb_conn *c)
{
    if (run->o.fanout) {
        return c == run->conns ? run->pub_sent - run->pub_done
                               : (uint64_t)run->o.depth;
    }
    return c->sent - c->echoed;
}

/* Queue messages until D are in flight (or the smoke goal is reached). */
static int fill_pipeline(wsb_run *run, wsb_conn *c)
{
    while (run->running && in_flight(run, c) < (uint64_t)run->o.depth
           && (run->smoke_goal == 0 || c->sent < run->smoke_goal)) {
        if (wsb_ws_send(run, c) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Hand new input to the handshake or the frame parser. */
static int consume(wsb_run *run, wsb_conn *c)
{
    if (c->state == ST_HANDSHAKE) {
        int r = wsb_ws_response(run, c);

        if (r <= 0) {
            return r;
        }
    }
    return c->state == ST_OPEN ? wsb_ws_parse(run, c) : 0;
}

void wsb_net_pump(wsb_run *run, wsb_conn *c)
{
    for (;;) {
        long n;

        if (c->state == ST_OPEN && fill_pipeline(run, c) < 0) {
            wsb_fail(run, c, "out of memory");
            return;
        }
        if (wsb_net_flush(c) < 0) {
            wsb_fail(run, c, "write failed");
            return;
        }
        n = read_in(c);
        if (n == 0) {
            return;             /* drained: wait for the next edge */
        }
        if (n < 0) {
            wsb_fail(run, c, "connection closed by the server");
            return;
        }
        if (consume(run, c) < 0) {
            return;             /* the parser said why */
        }
    }
}

static void tls_step(wsb_run *run, wsb_conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);

    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        return;
    }
    if (r != 1) {
        ERR_clear_error();
        wsb_fail(run, c, "TLS handshake failed");
        return;
    }
    if (wsb_ws_request(run, c) < 0) {
        wsb_fail(run, c, "out of memory");
        return;
    }
    c->state = ST_HANDSHAKE;
}

static void connected(wsb_run *run, wsb_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        if (err == EINPROGRESS) {
            return;
        }
        wsb_fail(run, c, "connect failed");
        return;
    }
    if (run->ssl_ctx != NULL) {
        c->ssl = SSL_new(run->ssl_ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
            wsb_fail(run, c, "SSL_new failed");
            return;
        }
        SSL_set_connect_state(c->ssl);
        c->state = ST_TLS;
        return;
    }
    if (wsb_ws_request(run, c) < 0) {
        wsb_fail(run, c, "out of memory");
        return;
    }
    c->state = ST_HANDSHAKE;
}

void wsb_net_event(wsb_run *run, wsb_conn *c)
{
    if (c->state == ST_CONNECTING) {
        connected(run, c);
    }
    if (c->state == ST_TLS) {
        tls_step(run, c);
    }
    if (c->state == ST_HANDSHAKE || c->state == ST_OPEN) {
        wsb_net_pump(run, c);
    }
}
