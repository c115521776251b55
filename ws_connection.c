/* Licensed under the Apache License, Version 2.0.
 *
 * ws_connection.c: the connection driver.  After the 101 the handler's
 * thread owns the connection: it reads from the connection's input
 * filters, feeds the engine, and writes what the engine produces through
 * the output filters (so mod_ssl gives wss://).  Other threads never
 * touch the filters: what they send is queued as plain memory and the
 * owner, woken through its pollset, writes it.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "util_filter.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_websocket.h"

APLOG_USE_MODULE(websocket);

#define WS_READ_CHUNK      (64 * 1024)
/* Output gathered while reading is flushed at the latest at this size. */
#define WS_FLUSH_THRESHOLD (64 * 1024)
/* The owner wakes up at least this often to notice a graceful restart. */
#define WS_MAX_POLL_WAIT   apr_time_from_sec(1)

#define WS_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------ */
/* Output                                                              */

static apr_status_t ws_flush(websocket_conn *wc)
{
    apr_status_t rv;

    if (wc->write_failed) {
        return APR_ECONNABORTED;
    }
    if (APR_BRIGADE_EMPTY(wc->obb)) {
        return APR_SUCCESS;
    }
    APR_BRIGADE_INSERT_TAIL(wc->obb,
                            apr_bucket_flush_create(wc->c->bucket_alloc));
    rv = ap_pass_brigade(wc->c->output_filters, wc->obb);
    apr_brigade_cleanup(wc->obb);
    wc->obb_bytes = 0;
    if (rv != APR_SUCCESS) {
        wc->write_failed = 1;
        wc->c->aborted = 1;
    }
    return rv;
}

/* Engine output: gathered in obb so that the answers to several messages
 * read together go out in one write. */
static int ws_on_write(void *baton, const char *data, apr_size_t len)
{
    websocket_conn *wc = baton;

    if (wc->write_failed
        || apr_brigade_write(wc->obb, NULL, NULL, data, len) != APR_SUCCESS) {
        return 1;
    }
    wc->obb_bytes += len;
    if (wc->obb_bytes >= WS_FLUSH_THRESHOLD) {
        return ws_flush(wc) != APR_SUCCESS;
    }
    return 0;
}

apr_status_t ws_conn_write_raw(websocket_conn *wc, const char *data,
                               apr_size_t len)
{
    apr_brigade_write(wc->obb, NULL, NULL, data, len);
    return ws_flush(wc);
}

/* ------------------------------------------------------------------ */
/* Engine events to the plugin                                         */

static void ws_on_message(void *baton, int opcode, const char *data,
                          apr_size_t len)
{
    websocket_conn *wc = baton;

    wc->loc->plugin->on_message(&ws_server_api, wc, opcode, data, len);
}

static void ws_on_close(void *baton, int code, const char *reason,
                        apr_size_t len)
{
    websocket_conn *wc = baton;

    if (wc->loc->plugin->on_close != NULL) {
        wc->loc->plugin->on_close(&ws_server_api, wc, code, reason, len);
    }
}

static const ws_session_callbacks ws_session_cbs = {
    ws_on_write, ws_on_message, NULL, NULL, ws_on_close
};

/* ------------------------------------------------------------------ */
/* Sending from any thread                                             */

static int ws_is_owner(const websocket_conn *wc)
{
    return wc->session != NULL && !wc->gone
        && apr_os_thread_equal(wc->owner, apr_os_thread_current());
}

/* Hand one message to the engine (owner thread). */
static apr_status_t ws_apply(websocket_conn *wc, int kind, int code,
                             const char *data, apr_size_t len)
{
    apr_status_t rv;

    switch (kind) {
    case WS_OP_PING:
        rv = ws_session_ping(wc->session, data, len);
        break;
    case WS_OP_CLOSE:
        rv = ws_session_close(wc->session, code, data);
        break;
    default:
        rv = ws_session_send(wc->session, kind, data, len);
        break;
    }
    return APR_STATUS_IS_EOF(rv) ? APR_ECONNABORTED : rv;
}

static apr_status_t ws_enqueue(websocket_conn *wc, int kind, int code,
                               const char *data, apr_size_t len)
{
    apr_status_t rv = APR_SUCCESS;
    ws_queued *q;

    apr_thread_mutex_lock(wc->mutex);
    if (wc->gone) {
        rv = APR_ECONNABORTED;
    }
    else if (kind != WS_OP_CLOSE
             && wc->queue_bytes + len > wc->max_pending) {
        /* The client does not keep up: the owner closes it. */
        wc->queue_overflow = 1;
        rv = APR_ECONNABORTED;
    }
    else if ((q = malloc(sizeof(*q) + len)) == NULL) {
        rv = APR_ENOMEM;
    }
    else {
        q->next = NULL;
        q->kind = kind;
        q->code = code;
        q->len = len;
        memcpy(q->data, data, len);
        q->data[len] = '\0';
        if (wc->queue_tail != NULL) {
            wc->queue_tail->next = q;
        }
        else {
            wc->queue_head = q;
        }
        wc->queue_tail = q;
        wc->queue_bytes += len;
    }
    if (!wc->gone) {
        apr_pollset_wakeup(wc->pollset);
    }
    apr_thread_mutex_unlock(wc->mutex);
    return rv;
}

static void ws_free_queue(ws_queued *q)
{
    while (q != NULL) {
        ws_queued *next = q->next;

        free(q);
        q = next;
    }
}

/* Detach the queue (caller holds wc->mutex); *overflow tells whether it
 * overflowed since the last time. */
static ws_queued *ws_take_queue(websocket_conn *wc, int *overflow)
{
    ws_queued *head = wc->queue_head;

    *overflow = wc->queue_overflow;
    wc->queue_head = wc->queue_tail = NULL;
    wc->queue_bytes = 0;
    wc->queue_overflow = 0;
    return head;
}

/* Owner: write what other threads queued. */
static void ws_drain_queue(websocket_conn *wc)
{
    ws_queued *q, *head;
    int overflow;

    apr_thread_mutex_lock(wc->mutex);
    head = ws_take_queue(wc, &overflow);
    apr_thread_mutex_unlock(wc->mutex);

    for (q = head; q != NULL; q = q->next) {
        ws_apply(wc, q->kind, q->code, q->data, q->len);
    }
    ws_free_queue(head);
    if (overflow && ws_session_state(wc->session) == WS_SESSION_OPEN) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, wc->r, "websocket: closing "
                      "%s with 1008: more than WebSocketMaxPendingBytes "
                      "(%" APR_INT64_T_FMT ") queued for a slow client",
                      wc->uri, wc->conf->max_pending);
        ws_session_close(wc->session, WS_CLOSE_POLICY, "send queue overflow");
    }
}

/* The owner writes at once, after what other threads queued before (so
 * messages keep the order in which they were sent); others queue. */
static apr_status_t ws_submit(websocket_conn *wc, int kind, int code,
                              const void *data, apr_size_t len)
{
    if (ws_is_owner(wc)) {
        ws_drain_queue(wc);
        return ws_apply(wc, kind, code, data, len);
    }
    return ws_enqueue(wc, kind, code, data, len);
}

/* ------------------------------------------------------------------ */
/* The plugin's calls (websocket_server)                               */

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

static int ws_api_protocol_family(websocket_conn *wc)
{
    return wc->family;
}

static const char *ws_api_option(websocket_conn *wc, const char *name)
{
    return wc->options ? apr_table_get(wc->options, name) : NULL;
}

static int ws_api_subprotocol_count(websocket_conn *wc)
{
    return wc->offered->nelts;
}

static const char *ws_api_subprotocol_offered(websocket_conn *wc, int i)
{
    if (i < 0 || i >= wc->offered->nelts) {
        return NULL;
    }
    return APR_ARRAY_IDX(wc->offered, i, const char *);
}

static apr_status_t ws_api_subprotocol_set(websocket_conn *wc,
                                           const char *name)
{
    int i;

    for (i = 0; name != NULL && i < wc->offered->nelts; i++) {
        if (!strcmp(name, APR_ARRAY_IDX(wc->offered, i, const char *))) {
            /* Read by other threads after the request (whose pool holds
             * the offered list) has ended. */
            wc->subprotocol = apr_pstrdup(wc->pool, name);
            return APR_SUCCESS;
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

static int ws_is_hixie(const websocket_conn *wc)
{
    return wc->family != WEBSOCKET_PROTOCOL_RFC6455;
}

static apr_status_t ws_api_send(websocket_conn *wc, int type,
                                const void *data, apr_size_t len)
{
    if (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY) {
        return APR_EINVAL;
    }
    if (type == WEBSOCKET_BINARY && ws_is_hixie(wc)) {
        return APR_ENOTIMPL;
    }
    return ws_submit(wc, type, 0, data, len);
}

static apr_status_t ws_api_ping(websocket_conn *wc, const void *data,
                                apr_size_t len)
{
    if (ws_is_hixie(wc)) {
        return APR_ENOTIMPL;
    }
    if (len > 125) {
        return APR_EINVAL;
    }
    return ws_submit(wc, WS_OP_PING, 0, data, len);
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
    return ws_submit(wc, WS_OP_CLOSE, code, reason, strlen(reason));
}

static apr_size_t ws_api_pending(websocket_conn *wc)
{
    apr_size_t bytes;

    apr_thread_mutex_lock(wc->mutex);
    bytes = wc->queue_bytes;
    apr_thread_mutex_unlock(wc->mutex);
    return bytes;
}

static int ws_api_broadcast(websocket_conn *wc, int type, const void *data,
                            apr_size_t len)
{
    ws_location *loc = wc->loc;
    websocket_conn *each;
    int count = 0;

    if (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY) {
        return 0;
    }
    /* Always queued, even for the caller's own connection, so that no
     * write can block while loc->mutex is held. */
    apr_thread_mutex_lock(loc->mutex);
    for (each = APR_RING_FIRST(&loc->conns);
         each != APR_RING_SENTINEL(&loc->conns, websocket_conn, link);
         each = APR_RING_NEXT(each, link)) {
        if ((type == WEBSOCKET_TEXT || !ws_is_hixie(each))
            && ws_enqueue(each, type, 0, data, len) == APR_SUCCESS) {
            count++;
        }
    }
    apr_thread_mutex_unlock(loc->mutex);
    return count;
}

/* Any thread: the owner notices at its next turn (others wake it). */
static apr_status_t ws_api_pause_reading(websocket_conn *wc, int paused)
{
    apr_status_t rv = APR_SUCCESS;

    apr_thread_mutex_lock(wc->mutex);
    if (wc->gone) {
        rv = APR_ECONNABORTED;
    }
    else {
        wc->paused = paused != 0;
        if (!ws_is_owner(wc)) {
            apr_pollset_wakeup(wc->pollset);
        }
    }
    apr_thread_mutex_unlock(wc->mutex);
    return rv;
}

static void ws_api_retain(websocket_conn *wc)
{
    apr_atomic_inc32(&wc->refs);
}

static void ws_api_release(websocket_conn *wc)
{
    /* The queue is already empty: the owner marked the connection gone
     * before letting go of its reference, and nothing is queued after. */
    if (apr_atomic_dec32(&wc->refs) == 0) {
        apr_pool_destroy(wc->pool);
    }
}

const websocket_server ws_server_api = {
    sizeof(websocket_server),
    WEBSOCKET_PLUGIN_VERSION,
    ws_api_request,
    ws_api_header_get,
    ws_api_uri,
    ws_api_query,
    ws_api_client_ip,
    ws_api_protocol_family,
    ws_api_option,
    ws_api_subprotocol_count,
    ws_api_subprotocol_offered,
    ws_api_subprotocol_set,
    ws_api_subprotocol,
    ws_api_data_set,
    ws_api_data_get,
    ws_api_send,
    ws_api_ping,
    ws_api_close,
    ws_api_pending,
    ws_api_broadcast,
    ws_api_retain,
    ws_api_release,
    ws_api_pause_reading
};

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

/* A pollset on the client's connection that other threads can wake. */
static apr_status_t ws_conn_pollset(websocket_conn *wc, apr_pool_t *p)
{
    apr_pollfd_t pfd;
    apr_status_t rv;

    memset(&pfd, 0, sizeof(pfd));
    rv = ap_get_pollfd_from_conn(wc->c, &pfd, NULL);
    if (rv != APR_SUCCESS || pfd.desc_type == APR_NO_DESC) {
        return rv != APR_SUCCESS ? rv : APR_ENOTSOCK;
    }
    pfd.reqevents = APR_POLLIN;
    pfd.p = p;
    wc->client_pfd = pfd;
    wc->client_polled = 1;
    rv = apr_pollset_create(&wc->pollset, 1, p, APR_POLLSET_WAKEABLE);
    return rv == APR_SUCCESS ? apr_pollset_add(wc->pollset, &pfd) : rv;
}

apr_status_t ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                            ws_proto_e proto, websocket_conn **out)
{
    conn_rec *c = r->connection;
    apr_pool_t *pool;
    websocket_conn *wc;
    apr_status_t rv;

    /* The object outlives the request while other threads retain it, so
     * it has a pool of its own. */
    apr_pool_create_unmanaged_ex(&pool, NULL, NULL);
    wc = apr_pcalloc(pool, sizeof(*wc));
    wc->pool = pool;
    wc->c = c;
    rv = apr_thread_mutex_create(&wc->mutex, APR_THREAD_MUTEX_DEFAULT, pool);
    if (rv == APR_SUCCESS) {
        rv = ws_conn_pollset(wc, r->pool);
    }
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(pool);
        return rv;
    }
    wc->refs = 1;
    wc->uri = apr_pstrdup(pool, r->uri);
    wc->query = r->args ? apr_pstrdup(pool, r->args) : NULL;
    wc->client_ip = apr_pstrdup(pool, r->useragent_ip);
    wc->family = proto;   /* WS_PROTO_x == WEBSOCKET_PROTOCOL_x */
    wc->options = conf->options ? apr_table_copy(pool, conf->options) : NULL;
    wc->max_pending = (apr_size_t)conf->max_pending;
    wc->owner = apr_os_thread_current();
    wc->r = r;
    wc->conf = conf;
    wc->loc = conf->loc;
    wc->ibb = apr_brigade_create(r->pool, c->bucket_alloc);
    wc->obb = apr_brigade_create(r->pool, c->bucket_alloc);

    /* From here on the module enforces its own timeouts; mod_reqtimeout's
     * body rate would cut an open WebSocket. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    *out = wc;
    return APR_SUCCESS;
}

apr_status_t ws_conn_wait_readable(websocket_conn *wc,
                                   apr_interval_time_t timeout)
{
    const apr_pollfd_t *ready;
    apr_int32_t n;
    apr_status_t rv = apr_pollset_poll(wc->pollset, timeout, &n, &ready);

    /* Woken by another thread's send: the caller looks again. */
    return APR_STATUS_IS_EINTR(rv) ? APR_SUCCESS : rv;
}

/* No more sends from anyone; what is still queued is dropped. */
static void ws_mark_gone(websocket_conn *wc)
{
    ws_queued *head;
    int overflow;

    apr_thread_mutex_lock(wc->mutex);
    wc->gone = 1;
    head = ws_take_queue(wc, &overflow);
    apr_thread_mutex_unlock(wc->mutex);
    ws_free_queue(head);
}

void ws_conn_abandon(websocket_conn *wc)
{
    ws_mark_gone(wc);
    ws_api_release(wc);
}

/* Read what is there and feed it to the engine: APR_SUCCESS when bytes
 * came, APR_EAGAIN when none were ready, else APR_EOF or an error. */
static apr_status_t ws_read_available(websocket_conn *wc)
{
    apr_status_t rv = ap_get_brigade(wc->c->input_filters, wc->ibb,
                                     AP_MODE_READBYTES, APR_NONBLOCK_READ,
                                     WS_READ_CHUNK);

    if (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(wc->ibb)) {
        return APR_EAGAIN;
    }
    while (rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(wc->ibb)) {
        apr_bucket *b = APR_BRIGADE_FIRST(wc->ibb);
        const char *data;
        apr_size_t len;

        if (APR_BUCKET_IS_EOS(b)) {
            rv = APR_EOF;
        }
        else if (!APR_BUCKET_IS_METADATA(b)) {
            rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ);
            if (rv == APR_SUCCESS) {
                ws_session_feed(wc->session, data, len);
            }
        }
        apr_bucket_delete(b);
    }
    apr_brigade_cleanup(wc->ibb);
    return rv;
}

static int ws_mpm_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

/* The timers of one connection. */
typedef struct ws_timers {
    apr_time_t last_rx;        /* last byte from the client */
    apr_time_t ping_sent;      /* 0: no ping outstanding */
    apr_time_t close_sent;     /* 0: we have not sent a close */
} ws_timers;

static void ws_close_for(websocket_conn *wc, int code, const char *why)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, wc->r, "websocket: closing %s "
                  "with %d: %s", wc->uri, code, why);
    ws_session_close(wc->session, code, why);
}

/* Act on whichever timer expired; returns how long the owner may sleep. */
static apr_interval_time_t ws_run_timers(websocket_conn *wc, ws_timers *t)
{
    const ws_dir_conf *conf = wc->conf;
    apr_time_t now = apr_time_now();
    apr_time_t next = now + WS_MAX_POLL_WAIT;
    int open = ws_session_state(wc->session) == WS_SESSION_OPEN;

    if (open && ws_mpm_stopping()) {
        ws_close_for(wc, WS_CLOSE_GOING_AWAY, "server shutting down");
    }
    else if (open && conf->idle_timeout > 0) {
        if (now - t->last_rx >= conf->idle_timeout) {
            ws_close_for(wc, WS_CLOSE_GOING_AWAY, "idle timeout");
        }
        next = WS_MIN(next, t->last_rx + conf->idle_timeout);
    }
    if (ws_session_state(wc->session) == WS_SESSION_OPEN
        && conf->ping_interval > 0 && !ws_is_hixie(wc)) {
        if (t->ping_sent == 0 && now - t->last_rx >= conf->ping_interval) {
            ws_session_ping(wc->session, "", 0);
            t->ping_sent = now;
        }
        else if (t->ping_sent != 0
                 && now - t->ping_sent >= conf->ping_interval) {
            ws_close_for(wc, WS_CLOSE_GOING_AWAY, "no answer to ping");
        }
        next = WS_MIN(next, (t->ping_sent ? t->ping_sent : t->last_rx)
                            + conf->ping_interval);
    }
    if (ws_session_state(wc->session) == WS_SESSION_CLOSING) {
        if (t->close_sent == 0) {
            t->close_sent = now;
        }
        next = WS_MIN(next, t->close_sent + conf->close_timeout);
    }
    return next > now ? next - now : 0;
}

/* Non-zero when the owner should stop driving the connection. */
static int ws_finished(websocket_conn *wc, const ws_timers *t)
{
    ws_session_state_e state = ws_session_state(wc->session);

    return wc->write_failed || state == WS_SESSION_CLOSED
        || state == WS_SESSION_FAILED
        || (state == WS_SESSION_CLOSING && t->close_sent != 0
            && apr_time_now() - t->close_sent >= wc->conf->close_timeout);
}

/* Follow pause_reading: while paused (and open: a closing handshake is
 * always read) the client's descriptor leaves the pollset, so that only a
 * send, a resume or a timer wakes the owner.  Paused time counts as
 * activity for the idle and ping timers.  Non-zero while paused. */
static int ws_sync_pause(websocket_conn *wc, ws_timers *t)
{
    int paused, was_paused = !wc->client_polled;
    apr_status_t rv;

    apr_thread_mutex_lock(wc->mutex);
    paused = wc->paused
             && ws_session_state(wc->session) == WS_SESSION_OPEN;
    apr_thread_mutex_unlock(wc->mutex);
    if (paused != was_paused) {
        rv = paused ? apr_pollset_remove(wc->pollset, &wc->client_pfd)
                    : apr_pollset_add(wc->pollset, &wc->client_pfd);
        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, wc->r, "websocket: "
                          "%s: cannot %s polling the client", wc->uri,
                          paused ? "pause" : "resume");
        }
        wc->client_polled = !paused;
    }
    if (paused || was_paused) {
        t->last_rx = apr_time_now();
        t->ping_sent = 0;
    }
    return paused;
}

static void ws_drive(websocket_conn *wc)
{
    ws_timers t = { apr_time_now(), 0, 0 };

    while (!ws_finished(wc, &t)) {
        apr_status_t rv = ws_sync_pause(wc, &t) ? APR_EAGAIN
                                                : ws_read_available(wc);
        apr_interval_time_t wait;

        if (rv == APR_SUCCESS) {
            t.last_rx = apr_time_now();
            t.ping_sent = 0;
            ws_drain_queue(wc);
            /* After every read, not only when the client pauses: one
             * that never does must not postpone the close timeout or
             * the graceful-stop check. */
            ws_run_timers(wc, &t);
            continue;
        }
        if (!APR_STATUS_IS_EAGAIN(rv)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, wc->r, "websocket: "
                          "%s: the client went away without a close",
                          wc->uri);
            return;
        }
        ws_drain_queue(wc);
        wait = ws_run_timers(wc, &t);
        if (ws_flush(wc) != APR_SUCCESS || ws_finished(wc, &t)) {
            return;
        }
        rv = ws_conn_wait_readable(wc, wait);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)) {
            return;
        }
    }
}

static void ws_log_end(websocket_conn *wc)
{
    const char *error = ws_session_error(wc->session);

    if (error != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, wc->r, "websocket: closed "
                      "%s with %d: %s", wc->uri,
                      ws_session_close_code(wc->session), error);
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, wc->r, "websocket: %s "
                      "ended (close code %d)", wc->uri,
                      ws_session_close_code(wc->session));
    }
}

void ws_conn_run(websocket_conn *wc)
{
    ws_location *loc = wc->loc;
    ws_session_config sc;

    sc.max_message = (apr_uint64_t)wc->conf->max_message;
    sc.fragment_size = (apr_size_t)wc->conf->fragment_size;
    wc->session = ws_session_create(wc->r->pool, wc->family, &sc,
                                    &ws_session_cbs, wc);

    apr_thread_mutex_lock(loc->mutex);
    APR_RING_INSERT_TAIL(&loc->conns, wc, websocket_conn, link);
    apr_thread_mutex_unlock(loc->mutex);

    if (!wc->write_failed && loc->plugin->on_open != NULL) {
        loc->plugin->on_open(&ws_server_api, wc);
    }
    ws_drive(wc);
    ws_flush(wc);
    ws_log_end(wc);

    apr_thread_mutex_lock(loc->mutex);
    APR_RING_REMOVE(wc, link);
    apr_thread_mutex_unlock(loc->mutex);
    ws_mark_gone(wc);

    if (loc->plugin->on_disconnect != NULL) {
        loc->plugin->on_disconnect(&ws_server_api, wc);
    }
    wc->r = NULL;   /* the request ends with this handler */
    ws_api_release(wc);
}
