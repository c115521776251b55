/* Licensed under the Apache License, Version 2.0.
 *
 * ws_redis.c: topics across machines through Redis pub/sub
 * (WebSocketPubSub redis://HOST:PORT[/PREFIX]).  Each child runs one
 * thread with its own loop and two hiredis asynchronous connections on
 * it, driven by the adapter below (hiredis's read/write hooks become
 * ws_watch_set calls): one PSUBSCRIBEs to "PREFIX:*", one PUBLISHes.
 *
 * Every message carries its origin, "<hostname>/<httpd parent pid>":
 * the children of this httpd already got what it published (ws_pubsub.c
 * sends it between them), so a message that comes back from Redis with
 * our origin is dropped, and one from elsewhere is delivered to this
 * child's subscribers only (every child receives it from Redis itself).
 *
 * While Redis is away, local delivery goes on; what is published then
 * reaches this httpd only.  The module logs the loss once, reconnects
 * with back-off (0.1 s doubling up to 5 s), subscribes again and logs
 * the recovery.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_network_io.h"
#include "apr_portable.h"
#include "apr_thread_proc.h"

#include "ws_atomic.h"
#include "ws_conn_private.h"

APLOG_USE_MODULE(websocket);

#define WS_REDIS_BACKOFF_MIN apr_time_from_msec(100)
#define WS_REDIS_BACKOFF_MAX apr_time_from_sec(5)
#define WS_ORIGIN_MAX        255

/* One hiredis connection and its place on the loop. */
typedef struct ws_redis_link {
    const char *name;                   /* for log lines */
    redisAsyncContext *ac;              /* NULL while down */
    int up;                             /* connected */
    apr_interval_time_t backoff;
    ws_timer retry;
    void (*on_up)(struct ws_redis_link *link);
} ws_redis_link;

/* The adapter: what hiredis's ev hooks drive. */
typedef struct ws_redis_ev {
    ws_watch watch;
    apr_pool_t *pool;                   /* for the apr_socket_t only */
    redisAsyncContext *ac;              /* NULL once hiredis let go */
} ws_redis_ev;

static struct {
    const ws_redis_conf *conf;
    server_rec *s;
    ws_loop *loop;                      /* NULL: no Redis */
    apr_thread_t *thread;
    char origin[WS_ORIGIN_MAX + 1];
    apr_size_t origin_len;
    char *pattern;                      /* "PREFIX:*" */
    apr_size_t prefix_len;              /* of "PREFIX:" */
    ws_redis_link sub, pub;
    int down_logged;
    int stopping;                       /* no more retries */
} ws_rd;

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

const char *ws_redis_parse(apr_pool_t *p, const char *url,
                           ws_redis_conf *conf)
{
    const char *rest, *slash, *colon;
    char *end;
    long port;

    if (strncasecmp(url, "redis://", 8) != 0) {
        return "WebSocketPubSub: expected redis://HOST:PORT[/PREFIX]";
    }
    rest = url + 8;
    slash = strchr(rest, '/');
    colon = strrchr(rest, ':');
    if (colon == NULL || (slash != NULL && colon > slash) || colon == rest) {
        return "WebSocketPubSub: expected redis://HOST:PORT[/PREFIX]";
    }
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end != '\0' && *end != '/') || port < 1
        || port > 65535) {
        return "WebSocketPubSub: the port is not a number from 1 to 65535";
    }
    conf->host = apr_pstrmemdup(p, rest, colon - rest);
    conf->port = (int)port;
    conf->prefix = slash != NULL && slash[1] != '\0'
                   ? apr_pstrdup(p, slash + 1) : "websocket";
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The hiredis adapter                                                 */

static void ws_ev_ready(void *baton, apr_int16_t rtnevents)
{
    ws_redis_ev *ev = baton;

    if (ev->ac != NULL && (rtnevents & (APR_POLLIN | APR_POLLHUP
                                        | APR_POLLERR))) {
        redisAsyncHandleRead(ev->ac);
    }
    if (ev->ac != NULL && (rtnevents & APR_POLLOUT)) {
        redisAsyncHandleWrite(ev->ac);
    }
}

static void ws_ev_want(ws_redis_ev *ev, apr_int16_t on, apr_int16_t off)
{
    ws_watch_set(ws_rd.loop, &ev->watch,
                 (apr_int16_t)((ev->watch.pfd.reqevents | on) & ~off));
}

static void ws_ev_add_read(void *d)  { ws_ev_want(d, APR_POLLIN, 0); }
static void ws_ev_del_read(void *d)  { ws_ev_want(d, 0, APR_POLLIN); }
static void ws_ev_add_write(void *d) { ws_ev_want(d, APR_POLLOUT, 0); }
static void ws_ev_del_write(void *d) { ws_ev_want(d, 0, APR_POLLOUT); }

static void ws_ev_free_task(void *baton)
{
    ws_redis_ev *ev = baton;

    apr_pool_destroy(ev->pool);
    free(ev);
}

/* hiredis frees the context: the watch goes, the memory at the next
 * turn (the loop may still look at it in this one). */
static void ws_ev_cleanup(void *d)
{
    ws_redis_ev *ev = d;

    ws_watch_set(ws_rd.loop, &ev->watch, 0);
    ev->ac = NULL;
    ws_loop_post(ws_rd.loop, ws_ev_free_task, ev);
}

static apr_status_t ws_ev_attach(redisAsyncContext *ac)
{
    ws_redis_ev *ev = calloc(1, sizeof(*ev));
    apr_socket_t *sock = NULL;
    apr_os_sock_t fd = ac->c.fd;

    if (ev == NULL) {
        return APR_ENOMEM;
    }
    apr_pool_create_unmanaged_ex(&ev->pool, NULL, NULL);
    apr_os_sock_put(&sock, &fd, ev->pool);
    ev->ac = ac;
    ev->watch.pfd.desc_type = APR_POLL_SOCKET;
    ev->watch.pfd.desc.s = sock;
    ev->watch.pfd.p = ev->pool;
    ev->watch.fn = ws_ev_ready;
    ev->watch.baton = ev;
    ac->ev.data = ev;
    ac->ev.addRead = ws_ev_add_read;
    ac->ev.delRead = ws_ev_del_read;
    ac->ev.addWrite = ws_ev_add_write;
    ac->ev.delWrite = ws_ev_del_write;
    ac->ev.cleanup = ws_ev_cleanup;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Connections: up, down, retry                                        */

static ws_redis_link *ws_link_of(const redisAsyncContext *ac)
{
    return ac->data;
}

static void ws_redis_log_down(ws_redis_link *link, const char *why)
{
    if (!ws_rd.down_logged && !ws_rd.stopping) {
        ws_rd.down_logged = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ws_rd.s, "websocket: Redis "
                     "at %s:%d unreachable (%s connection: %s); topics "
                     "reach this httpd only until it is back",
                     ws_rd.conf->host, ws_rd.conf->port, link->name, why);
    }
}

static void ws_redis_retry_later(ws_redis_link *link)
{
    link->ac = NULL;
    link->up = 0;
    if (ws_rd.stopping) {
        return;
    }
    ws_timer_set(ws_rd.loop, &link->retry, apr_time_now() + link->backoff);
    link->backoff *= 2;
    if (link->backoff > WS_REDIS_BACKOFF_MAX) {
        link->backoff = WS_REDIS_BACKOFF_MAX;
    }
}

static void ws_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ws_redis_link *link = ws_link_of(ac);

    if (status != REDIS_OK) {
        ws_redis_log_down(link, ac->errstr);
        ws_redis_retry_later(link);   /* hiredis frees ac */
        return;
    }
    link->up = 1;
    link->backoff = WS_REDIS_BACKOFF_MIN;
    if (link->on_up != NULL) {
        link->on_up(link);
    }
    if (ws_rd.down_logged && ws_rd.sub.up && ws_rd.pub.up) {
        ws_rd.down_logged = 0;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ws_rd.s, "websocket: "
                     "Redis at %s:%d is back; subscribed again",
                     ws_rd.conf->host, ws_rd.conf->port);
    }
}

static void ws_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ws_redis_link *link = ws_link_of(ac);

    ws_redis_log_down(link, status == REDIS_OK ? "closed" : ac->errstr);
    ws_redis_retry_later(link);
}

static void ws_redis_connect(void *baton)
{
    ws_redis_link *link = baton;
    redisAsyncContext *ac = redisAsyncConnect(ws_rd.conf->host,
                                              ws_rd.conf->port);

    if (ac == NULL || ac->err || ws_ev_attach(ac) != APR_SUCCESS) {
        ws_redis_log_down(link, ac != NULL && ac->err ? ac->errstr
                                                      : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        ws_redis_retry_later(link);
        return;
    }
    ac->data = link;
    link->ac = ac;
    redisAsyncSetConnectCallback(ac, ws_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ws_redis_on_disconnect);
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

/* A message from Redis: [origin length][origin][type][payload]. */
static void ws_redis_received(const char *channel, apr_size_t channel_len,
                              const unsigned char *msg, apr_size_t len)
{
    apr_size_t olen;
    ws_shared *sh;

    if (len < 2 || (olen = msg[0]) + 2 > len
        || channel_len <= ws_rd.prefix_len) {
        return;
    }
    if (olen == ws_rd.origin_len && !memcmp(msg + 1, ws_rd.origin, olen)) {
        return;   /* ours: this httpd's children have it already */
    }
    sh = ws_shared_create(msg[1 + olen], (const char *)msg + olen + 2,
                          len - olen - 2, channel + ws_rd.prefix_len,
                          channel_len - ws_rd.prefix_len);
    if (sh != NULL) {
        ws_pubsub_deliver_local(sh);
        ws_shared_unref(sh);
    }
}

/* PSUBSCRIBE replies: ["pmessage", pattern, channel, message] */
static void ws_redis_on_pmessage(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;

    (void)ac;
    (void)priv;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4
        || reply->element[0]->type != REDIS_REPLY_STRING
        || strcmp(reply->element[0]->str, "pmessage") != 0) {
        return;
    }
    ws_redis_received(reply->element[2]->str, reply->element[2]->len,
                      (const unsigned char *)reply->element[3]->str,
                      reply->element[3]->len);
}

static void ws_redis_subscribe(ws_redis_link *link)
{
    redisAsyncCommand(link->ac, ws_redis_on_pmessage, NULL,
                      "PSUBSCRIBE %s", ws_rd.pattern);
}

/* On the Redis loop: PUBLISH PREFIX:topic <origin, type, payload>. */
static void ws_redis_publish_task(void *baton)
{
    ws_shared *sh = baton;
    char *channel, *msg;
    apr_size_t clen = ws_rd.prefix_len + sh->topic_len;
    apr_size_t mlen = 2 + ws_rd.origin_len + sh->len;

    if (ws_rd.pub.up && (channel = malloc(clen + mlen)) != NULL) {
        msg = channel + clen;
        memcpy(channel, ws_rd.pattern, ws_rd.prefix_len);
        memcpy(channel + ws_rd.prefix_len, sh->topic, sh->topic_len);
        msg[0] = (char)ws_rd.origin_len;
        memcpy(msg + 1, ws_rd.origin, ws_rd.origin_len);
        msg[1 + ws_rd.origin_len] = (char)sh->type;
        memcpy(msg + 2 + ws_rd.origin_len, sh->data, sh->len);
        redisAsyncCommand(ws_rd.pub.ac, NULL, NULL, "PUBLISH %b %b",
                          channel, clen, msg, mlen);
        free(channel);
    }
    ws_shared_unref(sh);
}

void ws_redis_publish(ws_shared *sh)
{
    if (ws_rd.loop == NULL) {
        return;
    }
    ws_atomic_inc32(&sh->refs);
    if (ws_loop_post(ws_rd.loop, ws_redis_publish_task, sh) != APR_SUCCESS) {
        ws_shared_unref(sh);
    }
}

/* ------------------------------------------------------------------ */
/* The child's Redis thread                                            */

static void ws_redis_link_init(ws_redis_link *link, const char *name,
                               void (*on_up)(ws_redis_link *))
{
    link->name = name;
    link->backoff = WS_REDIS_BACKOFF_MIN;
    link->retry.fn = ws_redis_connect;
    link->retry.baton = link;
    link->on_up = on_up;
}

static void ws_redis_start_task(void *unused)
{
    (void)unused;
    ws_redis_connect(&ws_rd.sub);
    ws_redis_connect(&ws_rd.pub);
}

static void ws_redis_stop_task(void *unused)
{
    (void)unused;
    ws_rd.stopping = 1;
    ws_timer_clear(ws_rd.loop, &ws_rd.sub.retry);
    ws_timer_clear(ws_rd.loop, &ws_rd.pub.retry);
    if (ws_rd.sub.ac != NULL) {
        redisAsyncFree(ws_rd.sub.ac);
    }
    if (ws_rd.pub.ac != NULL) {
        redisAsyncFree(ws_rd.pub.ac);
    }
    ws_loop_stop(ws_rd.loop);
}

static void *APR_THREAD_FUNC ws_redis_thread(apr_thread_t *thread,
                                            void *baton)
{
    ws_loop_run(baton);
    (void)thread;   /* returns: apr_thread_exit's unwinding trips ASan */
    return NULL;
}

static apr_status_t ws_redis_cleanup(void *unused)
{
    apr_status_t ignored;

    (void)unused;
    if (ws_rd.thread != NULL) {
        ws_loop_post(ws_rd.loop, ws_redis_stop_task, NULL);
        apr_thread_join(&ignored, ws_rd.thread);
    }
    ws_rd.loop = NULL;
    return APR_SUCCESS;
}

void ws_redis_child_init(apr_pool_t *pchild, server_rec *s,
                         const ws_redis_conf *conf)
{
    char host[APRMAXHOSTLEN + 1];
    ws_loop *loop;
    apr_status_t rv;

    if (conf->host == NULL) {
        return;
    }
    ws_rd.conf = conf;
    ws_rd.s = s;
    if (apr_gethostname(host, sizeof(host), pchild) != APR_SUCCESS) {
        strcpy(host, "?");
    }
    ws_rd.origin_len = apr_snprintf(ws_rd.origin, sizeof(ws_rd.origin),
                                    "%.200s/%ld", host, (long)getppid());
    ws_rd.pattern = apr_pstrcat(pchild, conf->prefix, ":*", NULL);
    ws_rd.prefix_len = strlen(ws_rd.pattern) - 1;
    ws_redis_link_init(&ws_rd.sub, "subscriber", ws_redis_subscribe);
    ws_redis_link_init(&ws_rd.pub, "publisher", NULL);
    rv = ws_loop_create(&loop, pchild);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_create(&ws_rd.thread, NULL, ws_redis_thread, loop,
                               pchild);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "websocket: cannot start "
                     "the Redis thread; topics reach this httpd only");
        return;
    }
    ws_rd.loop = loop;
    ws_loop_post(loop, ws_redis_start_task, NULL);
    apr_pool_pre_cleanup_register(pchild, NULL, ws_redis_cleanup);
}
