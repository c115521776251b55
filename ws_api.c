/* Licensed under the Apache License, Version 2.0.
 *
 * ws_api.c: the calls a plugin makes (websocket_server, see
 * websocket_plugin.h).  Calls allowed from any thread check where they
 * run: on the connection's loop they act at once, elsewhere they are
 * posted to the loop.
 */
#include <stdlib.h>

#include "httpd.h"
#include "http_log.h"
#include "ws_atomic.h"
#include "apr_strings.h"

#include "ws_conn_private.h"

/* ------------------------------------------------------------------ */
/* The connection                                                      */

static request_rec *ws_api_request(websocket_conn *wc)
{
    return wc->r;
}

static const char *ws_api_header_get(websocket_conn *wc, const char *name)
{
    return wc->r ? apr_table_get(wc->r->headers_in, name) : NULL;
}

static const char *ws_api_uri(websocket_conn *wc)
{
    return wc->uri;
}

static const char *ws_api_query(websocket_conn *wc)
{
    return wc->query;
}

static const char *ws_api_client_ip(websocket_conn *wc)
{
    return wc->client_ip;
}

static const char *ws_api_user(websocket_conn *wc)
{
    return wc->user;
}

static int ws_api_protocol_family(websocket_conn *wc)
{
    return wc->family;
}

static const char *ws_api_option(websocket_conn *wc, const char *name)
{
    const char **o;

    for (o = wc->options; *o != NULL; o += 2) {
        if (!strcasecmp(o[0], name)) {
            return o[1];
        }
    }
    return NULL;
}

static void *ws_api_location_data(websocket_conn *wc)
{
    return wc->loc->data;
}

static server_rec *ws_api_server_rec(websocket_conn *wc)
{
    return wc->s;
}

/* ------------------------------------------------------------------ */
/* Subprotocols                                                        */

static int ws_api_subprotocol_count(websocket_conn *wc)
{
    return wc->offered ? wc->offered->nelts : 0;
}

static const char *ws_api_subprotocol_offered(websocket_conn *wc, int i)
{
    if (i < 0 || i >= ws_api_subprotocol_count(wc)) {
        return NULL;
    }
    return APR_ARRAY_IDX(wc->offered, i, const char *);
}

static apr_status_t ws_api_subprotocol_set(websocket_conn *wc,
                                           const char *name)
{
    int i;

    for (i = 0; name != NULL && i < ws_api_subprotocol_count(wc); i++) {
        if (!strcmp(name, APR_ARRAY_IDX(wc->offered, i, const char *))) {
            /* A copy that lives as long as the object: the request's
             * pool does not. */
            free(wc->subprotocol);
            wc->subprotocol = strdup(name);
            return wc->subprotocol ? APR_SUCCESS : APR_ENOMEM;
        }
    }
    return APR_EINVAL;
}

static const char *ws_api_subprotocol(websocket_conn *wc)
{
    return wc->subprotocol;
}

static void ws_api_data_set(websocket_conn *wc, void *data)
{
    wc->data = data;
}

static void *ws_api_data_get(websocket_conn *wc)
{
    return wc->data;
}

/* ------------------------------------------------------------------ */
/* Sending from any thread                                             */

/* A message or close from another thread, applied on the loop. */
typedef struct ws_foreign_msg {
    int kind;                  /* WEBSOCKET_TEXT/_BINARY, or 0: close */
    int code;
    apr_size_t len;
    char data[1];              /* len bytes, NUL-terminated */
} ws_foreign_msg;

static void ws_apply_foreign(const websocket_server *server,
                             websocket_conn *wc, void *baton)
{
    ws_foreign_msg *m = baton;

    (void)server;
    if (m->kind != 0) {
        ws_atomic_sub64(&wc->queued, (apr_uint64_t)m->len);
    }
    if (!ws_conn_is_gone(wc)) {
        if (m->kind == 0) {
            ws_conn_close(wc, m->code, m->data);
        }
        else {
            ws_conn_send(wc, m->kind, m->data, m->len);
        }
    }
    free(m);
}

static websocket_send_result ws_send_foreign(websocket_conn *wc, int kind,
                                             int code, const char *data,
                                             apr_size_t len)
{
    ws_foreign_msg *m;
    apr_size_t pending = ws_conn_pending(wc);

    if (ws_conn_is_gone(wc)) {
        return WEBSOCKET_SEND_CLOSED;
    }
    if (kind != 0 && pending + len > (apr_size_t)wc->conf.max_pending) {
        /* The client does not keep up: its loop closes it. */
        ws_send_foreign(wc, 0, WS_CLOSE_POLICY, "send queue overflow",
                        strlen("send queue overflow"));
        return WEBSOCKET_SEND_CLOSED;
    }
    if ((m = malloc(sizeof(*m) + len)) == NULL) {
        return WEBSOCKET_SEND_CLOSED;
    }
    m->kind = kind;
    m->code = code;
    m->len = len;
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    if (kind != 0) {
        ws_atomic_add64(&wc->queued, (apr_uint64_t)len);
    }
    if (ws_conn_post(wc, ws_apply_foreign, m) != APR_SUCCESS) {
        if (kind != 0) {
            ws_atomic_sub64(&wc->queued, (apr_uint64_t)len);
        }
        free(m);
        return WEBSOCKET_SEND_CLOSED;
    }
    return pending + len > ws_conn_high_water(wc)
           ? WEBSOCKET_SEND_FULL : WEBSOCKET_SEND_OK;
}

static websocket_send_result ws_api_send(websocket_conn *wc, int type,
                                         const void *data, apr_size_t len)
{
    if (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY) {
        return WEBSOCKET_SEND_INVALID;
    }
    if (type == WEBSOCKET_BINARY
        && wc->family != WEBSOCKET_PROTOCOL_RFC6455) {
        return WEBSOCKET_SEND_INVALID;
    }
    if (ws_conn_on_loop(wc)) {
        return ws_conn_send(wc, type, data, len);
    }
    return ws_send_foreign(wc, type, 0, data, len);
}

static int ws_close_code_sendable(int code)
{
    return code == 0 || (code >= 1000 && code <= 1003)
        || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static apr_status_t ws_api_close(websocket_conn *wc, int code,
                                 const char *reason)
{
    if (!ws_close_code_sendable(code)) {
        return APR_EINVAL;
    }
    reason = reason ? reason : "";
    if (ws_conn_on_loop(wc)) {
        return ws_conn_close(wc, code, reason);
    }
    return ws_send_foreign(wc, 0, code, reason, strlen(reason))
           == WEBSOCKET_SEND_CLOSED ? APR_ECONNABORTED : APR_SUCCESS;
}

static apr_status_t ws_api_ping(websocket_conn *wc, const void *data,
                                apr_size_t len)
{
    return ws_conn_ping(wc, data, len);
}

static apr_size_t ws_api_pending(websocket_conn *wc)
{
    return ws_conn_pending(wc);
}

static int ws_api_broadcast(websocket_conn *wc, int type, const void *data,
                            apr_size_t len)
{
    return ws_conn_broadcast(wc, type, data, len);
}

static websocket_send_result ws_api_send_brigade(websocket_conn *wc,
                                                 int type,
                                                 apr_bucket_brigade *bb,
                                                 int final)
{
    return ws_conn_send_brigade(wc, type, bb, final);
}

static apr_bucket_alloc_t *ws_api_bucket_alloc(websocket_conn *wc)
{
    return wc->c ? wc->c->bucket_alloc : NULL;
}

static apr_status_t ws_api_pause_reading(websocket_conn *wc, int paused)
{
    if (ws_conn_is_gone(wc)) {
        return APR_ECONNABORTED;
    }
    ws_conn_pause(wc, paused);
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */

static void ws_ptimer_free(websocket_timer *t)
{
    APR_RING_REMOVE(t, link);
    free(t);
}

static void ws_ptimer_fire(void *baton)
{
    websocket_timer *t = baton;
    websocket_conn *wc = t->conn;

    t->running = 1;
    t->fn(&ws_server_api, wc, t->baton);
    t->running = 0;
    if (t->repeat > 0 && !t->cancelled) {
        ws_timer_set(wc->lc->loop, &t->timer, apr_time_now() + t->repeat);
    }
    else {
        ws_ptimer_free(t);
    }
    ws_conn_kick(wc);
}

static websocket_timer *ws_api_timer_add(websocket_conn *wc,
                                         apr_interval_time_t after,
                                         apr_interval_time_t repeat,
                                         websocket_task_fn fn, void *baton)
{
    websocket_timer *t;

    if (ws_conn_is_gone(wc) || wc->lc == NULL
        || (t = calloc(1, sizeof(*t))) == NULL) {
        return NULL;
    }
    t->conn = wc;
    t->fn = fn;
    t->baton = baton;
    t->repeat = repeat;
    t->timer.fn = ws_ptimer_fire;
    t->timer.baton = t;
    APR_RING_INSERT_TAIL(&wc->timers, t, websocket_timer, link);
    ws_timer_set(wc->lc->loop, &t->timer,
                 apr_time_now() + (after > 0 ? after : 0));
    return t;
}

static void ws_api_timer_cancel(websocket_conn *wc, websocket_timer *t)
{
    if (t->running) {
        t->cancelled = 1;   /* freed when its fn returns */
        return;
    }
    ws_timer_clear(wc->lc->loop, &t->timer);
    ws_ptimer_free(t);
}

/* ------------------------------------------------------------------ */
/* Watches                                                             */

static void ws_pwatch_fire(void *baton, apr_int16_t events)
{
    websocket_watch *w = baton;
    websocket_conn *wc = w->conn;

    w->fn(&ws_server_api, wc, w->baton, events);
    ws_conn_kick(wc);
}

static websocket_watch *ws_api_watch_add(websocket_conn *wc,
                                         const apr_pollfd_t *desc,
                                         websocket_watch_fn fn, void *baton)
{
    websocket_watch *w;

    if (ws_conn_is_gone(wc) || wc->lc == NULL
        || (w = calloc(1, sizeof(*w))) == NULL) {
        return NULL;
    }
    w->conn = wc;
    w->fn = fn;
    w->baton = baton;
    w->watch.pfd.desc_type = desc->desc_type;
    w->watch.pfd.desc = desc->desc;
    w->watch.pfd.p = wc->c->pool;
    w->watch.fn = ws_pwatch_fire;
    w->watch.baton = w;
    if (ws_watch_set(wc->lc->loop, &w->watch, desc->reqevents)
        != APR_SUCCESS) {
        free(w);
        return NULL;
    }
    APR_RING_INSERT_TAIL(&wc->watches, w, websocket_watch, link);
    return w;
}

static apr_status_t ws_api_watch_events(websocket_conn *wc,
                                        websocket_watch *w,
                                        apr_int16_t reqevents)
{
    return ws_watch_set(wc->lc->loop, &w->watch, reqevents);
}

/* Freed at the next turn: a ready event of this turn may still name
 * it. */
static void ws_pwatch_free_task(void *baton)
{
    free(baton);
}

static void ws_api_watch_remove(websocket_conn *wc, websocket_watch *w)
{
    ws_watch_set(wc->lc->loop, &w->watch, 0);
    APR_RING_REMOVE(w, link);
    ws_loop_post(wc->lc->loop, ws_pwatch_free_task, w);
}

void ws_api_end_timers_and_watches(websocket_conn *wc)
{
    while (!APR_RING_EMPTY(&wc->timers, websocket_timer, link)) {
        websocket_timer *t = APR_RING_FIRST(&wc->timers);

        ws_timer_clear(wc->lc->loop, &t->timer);
        if (t->running) {
            /* Ending from inside its own fn: freed when fn returns. */
            APR_RING_REMOVE(t, link);
            APR_RING_ELEM_INIT(t, link);
            t->cancelled = 1;
        }
        else {
            ws_ptimer_free(t);
        }
    }
    while (!APR_RING_EMPTY(&wc->watches, websocket_watch, link)) {
        ws_api_watch_remove(wc, APR_RING_FIRST(&wc->watches));
    }
}

/* ------------------------------------------------------------------ */
/* Posting and lifetime                                                */

static apr_status_t ws_api_post(websocket_conn *wc, websocket_task_fn fn,
                                void *baton)
{
    return ws_conn_post(wc, fn, baton);
}

static void ws_api_retain(websocket_conn *wc)
{
    ws_conn_retain(wc);
}

static void ws_api_release(websocket_conn *wc)
{
    ws_conn_release(wc);
}

/* ------------------------------------------------------------------ */
/* Topics                                                              */

static apr_status_t ws_api_subscribe(websocket_conn *wc, const char *topic)
{
    return ws_pubsub_subscribe(wc, topic);
}

static apr_status_t ws_api_unsubscribe(websocket_conn *wc, const char *topic)
{
    return ws_pubsub_unsubscribe(wc, topic);
}

static apr_status_t ws_api_publish(websocket_conn *wc, const char *topic,
                                   int type, const void *data,
                                   apr_size_t len)
{
    (void)wc;
    return ws_pubsub_publish(topic, type, data, len);
}

const websocket_server ws_server_api = {
    sizeof(websocket_server),
    WEBSOCKET_PLUGIN_VERSION,
    ws_api_request,
    ws_api_header_get,
    ws_api_uri,
    ws_api_query,
    ws_api_client_ip,
    ws_api_user,
    ws_api_protocol_family,
    ws_api_option,
    ws_api_location_data,
    ws_api_server_rec,
    ws_api_subprotocol_count,
    ws_api_subprotocol_offered,
    ws_api_subprotocol_set,
    ws_api_subprotocol,
    ws_api_data_set,
    ws_api_data_get,
    ws_api_send,
    ws_api_close,
    ws_api_ping,
    ws_api_pending,
    ws_api_broadcast,
    ws_api_send_brigade,
    ws_api_bucket_alloc,
    ws_api_pause_reading,
    ws_api_timer_add,
    ws_api_timer_cancel,
    ws_api_post,
    ws_api_watch_add,
    ws_api_watch_events,
    ws_api_watch_remove,
    ws_api_retain,
    ws_api_release,
    ws_api_subscribe,
    ws_api_unsubscribe,
    ws_api_publish
};
