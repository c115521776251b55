/* Licensed under the Apache License, Version 2.0.
 *
 * ws_pubsub.c: topics.  Each loop keeps its own index, topic name ->
 * subscribers on that loop, touched by the loop thread only.  publish
 * copies the message once (a ws_shared), posts it to every loop of the
 * child that may have subscribers, and hands it to the child's peer
 * sender, which writes it as one datagram to every other live child of
 * the same httpd (an abstract Unix socket named by the parent's and the
 * child's pid).  Each child's peer receiver thread turns the datagrams
 * it reads into local deliveries.  Why datagrams: doc/architecture.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>

#include "httpd.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "apr_atomic.h"
#include "apr_thread_proc.h"

#include "ws_atomic.h"
#include "ws_conn_private.h"

APLOG_USE_MODULE(websocket);

#define WS_TOPIC_MAX     255
/* The largest datagram between children (header, topic, payload); a
 * bigger message reaches this child's subscribers only. */
#define WS_PEER_MAX      (192 * 1024)
#define WS_PEER_MAGIC    0x57535031u      /* "WSP1" */
/* How long a send to one child may wait for room in its queue. */
#define WS_PEER_SEND_WAIT 1
/* How often the receiver looks whether the child is stopping (ms). */
#define WS_PEER_RECV_WAIT 200

typedef struct ws_topic {
    char *name;
    apr_size_t len;
    APR_RING_HEAD(ws_sub_ring, ws_sub) subs;
    int busy;                           /* a delivery walks subs */
} ws_topic;

typedef struct ws_sub {
    APR_RING_ENTRY(ws_sub) link;        /* in topic->subs */
    struct ws_sub *next;                /* in wc->subs */
    ws_topic *topic;
    websocket_conn *wc;
} ws_sub;

/* A datagram between children: this, the topic, the payload. */
typedef struct ws_peer_head {
    apr_uint32_t magic;
    apr_uint32_t type;
    apr_uint32_t topic_len;
    apr_uint32_t len;
} ws_peer_head;

static struct {
    apr_uint32_t subs;                  /* subscriptions in the child */
    int fd_in, fd_out;                  /* -1: not between children */
    pid_t ppid;
    int slots;                          /* scoreboard process slots */
    pid_t *stalled;                     /* per slot: a child whose queue
                                         * stayed full (sender thread) */
    ws_loop *out;                       /* the peer sender's loop */
    apr_thread_t *out_thread, *in_thread;
    volatile int stopping;
    apr_uint32_t warned;                /* atomic: logged a failed send */
    server_rec *s;
} ws_ps = { 0, -1, -1, 0, 0, NULL, NULL, NULL, NULL, 0, 0, NULL };

/* ------------------------------------------------------------------ */
/* Subscriptions (loop thread)                                         */

static ws_sub *ws_sub_find(websocket_conn *wc, const char *name,
                           ws_sub ***prev)
{
    ws_sub **pp;

    for (pp = &wc->subs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->topic->name, name) == 0) {
            if (prev != NULL) {
                *prev = pp;
            }
            return *pp;
        }
    }
    return NULL;
}

static ws_topic *ws_topic_get(ws_loop_ctx *lc, const char *name,
                              apr_size_t len)
{
    ws_topic *t = apr_hash_get(lc->topics, name, len);

    if (t != NULL) {
        return t;
    }
    t = malloc(sizeof(*t) + len + 1);
    if (t == NULL) {
        return NULL;
    }
    t->name = (char *)(t + 1);
    memcpy(t->name, name, len + 1);
    t->len = len;
    t->busy = 0;
    APR_RING_INIT(&t->subs, ws_sub, link);
    apr_hash_set(lc->topics, t->name, len, t);
    return t;
}

static void ws_topic_drop_if_idle(ws_loop_ctx *lc, ws_topic *t)
{
    if (t->busy == 0 && APR_RING_EMPTY(&t->subs, ws_sub, link)) {
        apr_hash_set(lc->topics, t->name, t->len, NULL);
        free(t);
    }
}

apr_status_t ws_pubsub_subscribe(websocket_conn *wc, const char *name)
{
    apr_size_t len = name != NULL ? strlen(name) : 0;
    ws_topic *t;
    ws_sub *sub;

    if (len == 0 || len > WS_TOPIC_MAX) {
        return APR_EINVAL;
    }
    if (wc->lc == NULL || ws_conn_is_gone(wc)) {
        return APR_ECONNABORTED;
    }
    if (ws_sub_find(wc, name, NULL) != NULL) {
        return APR_SUCCESS;
    }
    sub = malloc(sizeof(*sub));
    t = sub != NULL ? ws_topic_get(wc->lc, name, len) : NULL;
    if (t == NULL) {
        free(sub);
        return APR_ENOMEM;
    }
    sub->topic = t;
    sub->wc = wc;
    APR_RING_INSERT_TAIL(&t->subs, sub, ws_sub, link);
    sub->next = wc->subs;
    wc->subs = sub;
    ws_atomic_inc32(&ws_ps.subs);
    return APR_SUCCESS;
}

static void ws_sub_remove(websocket_conn *wc, ws_sub **pp)
{
    ws_sub *sub = *pp;

    *pp = sub->next;
    APR_RING_REMOVE(sub, link);
    ws_topic_drop_if_idle(wc->lc, sub->topic);
    free(sub);
    ws_atomic_dec32(&ws_ps.subs);
}

apr_status_t ws_pubsub_unsubscribe(websocket_conn *wc, const char *name)
{
    ws_sub **pp;

    if (name == NULL) {
        return APR_EINVAL;
    }
    if (ws_sub_find(wc, name, &pp) != NULL) {
        ws_sub_remove(wc, pp);
    }
    return APR_SUCCESS;
}

void ws_pubsub_unsubscribe_all(websocket_conn *wc)
{
    while (wc->subs != NULL) {
        ws_sub_remove(wc, &wc->subs);
    }
}

/* On each loop: the topic's subscribers there get the message.  A
 * receiver that ends meanwhile leaves the topic, so the walk keeps the
 * next one first and the topic alive until it is done. */
static void ws_deliver_topic(ws_loop_ctx *lc, void *arg)
{
    ws_shared *sh = arg;
    ws_topic *t = apr_hash_get(lc->topics, sh->topic, sh->topic_len);
    ws_sub *sub, *next;

    if (t != NULL) {
        t->busy++;
        for (sub = APR_RING_FIRST(&t->subs);
             sub != APR_RING_SENTINEL(&t->subs, ws_sub, link); sub = next) {
            next = APR_RING_NEXT(sub, link);
            ws_shared_send(sub->wc, sh);
        }
        t->busy--;
        ws_topic_drop_if_idle(lc, t);
    }
    ws_shared_unref(sh);
}

void ws_pubsub_deliver_local(ws_shared *sh)
{
    if (ws_atomic_read32(&ws_ps.subs) > 0) {
        ws_child_deliver(ws_deliver_topic, sh);
    }
}

/* ------------------------------------------------------------------ */
/* Between the children of this httpd                                  */

static socklen_t ws_peer_addr(struct sockaddr_un *sa, pid_t pid)
{
    int n;

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    /* abstract namespace: sun_path[0] stays 0 */
    n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1,
                 "mod_websocket.%ld.%ld", (long)ws_ps.ppid, (long)pid);
    return (socklen_t)(APR_OFFSETOF(struct sockaddr_un, sun_path) + 1 + n);
}

/* Once per child: a stopped peer would otherwise flood the log. */
static void ws_peer_warn(int err, const char *what)
{
    if (apr_atomic_cas32(&ws_ps.warned, 1, 0) == 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, err, ws_ps.s, "websocket: "
                     "a published message did not reach the other httpd "
                     "children: %s (logged once per child)", what);
    }
}

/* One datagram to the child of slot i.  A child whose queue stays full
 * for WS_PEER_SEND_WAIT (stopped, or stuck) is marked stalled: until a
 * send to it succeeds again it gets what fits without waiting, so that
 * it holds up the other children once, not for every message. */
static void ws_peer_send_one(struct msghdr *msg, int i, pid_t pid)
{
    struct sockaddr_un sa;
    int flags = MSG_NOSIGNAL;

    if (ws_ps.stalled[i] == pid) {
        flags |= MSG_DONTWAIT;
    }
    msg->msg_name = &sa;
    msg->msg_namelen = ws_peer_addr(&sa, pid);
    while (sendmsg(ws_ps.fd_out, msg, flags) < 0) {
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ws_ps.stalled[i] = pid;
            ws_peer_warn(errno, "a child does not read");
        }
        /* else no socket there: the child is gone or not ready */
        else if (errno != ECONNREFUSED && errno != ENOENT) {
            ws_peer_warn(errno, "send failed");
        }
        return;
    }
    ws_ps.stalled[i] = 0;
}

/* On the sender's loop: one datagram to every other live child. */
static void ws_peer_send_task(void *baton)
{
    ws_shared *sh = baton;
    ws_peer_head head = { WS_PEER_MAGIC, (apr_uint32_t)sh->type,
                          (apr_uint32_t)sh->topic_len, (apr_uint32_t)sh->len };
    struct iovec iov[3];
    struct msghdr msg;
    pid_t self = getpid();
    int i;

    iov[0].iov_base = &head;
    iov[0].iov_len = sizeof(head);
    iov[1].iov_base = (void *)sh->topic;
    iov[1].iov_len = sh->topic_len;
    iov[2].iov_base = sh->data;
    iov[2].iov_len = sh->len;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = 3;
    for (i = 0; i < ws_ps.slots && !ws_ps.stopping; i++) {
        pid_t pid = ap_scoreboard_image->parent[i].pid;

        if (pid > 0 && pid != self) {
            ws_peer_send_one(&msg, i, pid);
        }
    }
    ws_shared_unref(sh);
}

static void ws_peer_publish(ws_shared *sh)
{
    if (ws_ps.out == NULL) {
        return;
    }
    if (sizeof(ws_peer_head) + sh->topic_len + sh->len > WS_PEER_MAX) {
        ws_peer_warn(EMSGSIZE, "too big");
        return;
    }
    ws_atomic_inc32(&sh->refs);
    if (ws_loop_post(ws_ps.out, ws_peer_send_task, sh) != APR_SUCCESS) {
        ws_shared_unref(sh);
    }
}

/* A datagram from another child becomes a local delivery. */
static void ws_peer_received(const char *buf, apr_size_t n)
{
    ws_peer_head head;
    ws_shared *sh;

    if (n < sizeof(head)) {
        return;
    }
    memcpy(&head, buf, sizeof(head));
    if (head.magic != WS_PEER_MAGIC
        || sizeof(head) + (apr_size_t)head.topic_len + head.len != n) {
        return;
    }
    sh = ws_shared_create((int)head.type, buf + sizeof(head) + head.topic_len,
                          head.len, buf + sizeof(head), head.topic_len);
    if (sh != NULL) {
        ws_pubsub_deliver_local(sh);
        ws_shared_unref(sh);
    }
}

static void *APR_THREAD_FUNC ws_peer_recv_thread(apr_thread_t *thread,
                                                void *baton)
{
    char *buf = malloc(WS_PEER_MAX);

    (void)baton;
    while (buf != NULL && !ws_ps.stopping) {
        ssize_t n = recv(ws_ps.fd_in, buf, WS_PEER_MAX, 0);

        if (n > 0 && ws_atomic_read32(&ws_ps.subs) > 0) {
            ws_peer_received(buf, (apr_size_t)n);
        }
    }
    free(buf);
    (void)thread;   /* returns: apr_thread_exit's unwinding trips ASan */
    return NULL;
}

static void *APR_THREAD_FUNC ws_peer_send_thread(apr_thread_t *thread,
                                                void *baton)
{
    ws_loop_run(baton);
    (void)thread;   /* returns: apr_thread_exit's unwinding trips ASan */
    return NULL;
}

static void ws_stop_task(void *baton)
{
    ws_loop_stop(baton);
}

static apr_status_t ws_pubsub_cleanup(void *unused)
{
    apr_status_t ignored;

    (void)unused;
    ws_ps.stopping = 1;
    if (ws_ps.out_thread != NULL) {
        ws_loop_post(ws_ps.out, ws_stop_task, ws_ps.out);
        apr_thread_join(&ignored, ws_ps.out_thread);
    }
    if (ws_ps.in_thread != NULL) {
        apr_thread_join(&ignored, ws_ps.in_thread);
    }
    ws_ps.out = NULL;
    close(ws_ps.fd_in);
    close(ws_ps.fd_out);
    ws_ps.fd_in = ws_ps.fd_out = -1;
    return APR_SUCCESS;
}

/* The two sockets: fd_in bound to this child's name, fd_out to send
 * (blocking, a bounded wait for a full peer). */
static apr_status_t ws_peer_sockets(void)
{
    struct sockaddr_un sa;
    struct timeval out = { WS_PEER_SEND_WAIT, 0 };
    struct timeval in = { 0, WS_PEER_RECV_WAIT * 1000 };
    int size = WS_PEER_MAX * 2;

    ws_ps.fd_in = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ws_ps.fd_out = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (ws_ps.fd_in < 0 || ws_ps.fd_out < 0
        || bind(ws_ps.fd_in, (struct sockaddr *)&sa,
                ws_peer_addr(&sa, getpid())) < 0) {
        return errno;
    }
    setsockopt(ws_ps.fd_in, SOL_SOCKET, SO_RCVTIMEO, &in, sizeof(in));
    setsockopt(ws_ps.fd_out, SOL_SOCKET, SO_SNDTIMEO, &out, sizeof(out));
    setsockopt(ws_ps.fd_out, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    return APR_SUCCESS;
}

void ws_pubsub_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    ws_ps.s = s;
    ws_ps.ppid = getppid();
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &ws_ps.slots);
    if (ap_scoreboard_image == NULL || ws_ps.slots < 0) {
        ws_ps.slots = 0;
    }
    ws_ps.stalled = apr_pcalloc(pchild, (ws_ps.slots + 1) * sizeof(pid_t));
    rv = ws_peer_sockets();
    if (rv == APR_SUCCESS) {
        rv = ws_loop_create(&ws_ps.out, pchild);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_create(&ws_ps.out_thread, NULL, ws_peer_send_thread,
                               ws_ps.out, pchild);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_create(&ws_ps.in_thread, NULL, ws_peer_recv_thread,
                               NULL, pchild);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "websocket: cannot set "
                     "up publishing between httpd children; topics reach "
                     "this child's subscribers only");
        if (ws_ps.out_thread == NULL) {
            ws_ps.out = NULL;
        }
    }
    apr_pool_pre_cleanup_register(pchild, NULL, ws_pubsub_cleanup);
}

/* ------------------------------------------------------------------ */
/* Publishing (any thread)                                             */

apr_status_t ws_pubsub_publish(const char *topic, int type,
                               const void *data, apr_size_t len)
{
    apr_size_t topic_len = topic != NULL ? strlen(topic) : 0;
    ws_shared *sh;

    if (topic_len == 0 || topic_len > WS_TOPIC_MAX
        || (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY)
        || (data == NULL && len > 0)) {
        return APR_EINVAL;
    }
    sh = ws_shared_create(type, data, len, topic, topic_len);
    if (sh == NULL) {
        return APR_ENOMEM;
    }
    ws_pubsub_deliver_local(sh);
    ws_peer_publish(sh);
    ws_redis_publish(sh);
    ws_shared_unref(sh);
    return APR_SUCCESS;
}
