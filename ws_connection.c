/* Licensed under the Apache License, Version 2.0.
 *
 * ws_connection.c: the connection driver.  Once the handshake is
 * validated, a WebSocket belongs to one event loop (ws_loop.c) for the
 * rest of its life:
 *   - under an MPM that can suspend a connection (event), the handler
 *     returns SUSPENDED and the suspend_connection hook hands the
 *     connection to one of the child's loop threads, which finishes it
 *     too: lingering close, socket, and the connection's pool;
 *   - otherwise (prefork, worker, HTTP/2 streams) the same code runs a
 *     private loop on the request's own thread, and httpd closes the
 *     connection after the handler.
 * All I/O goes through the connection's filters, so mod_ssl gives wss://.
 * On a per-child loop nothing blocks: reads are non-blocking, and output
 * goes down the filters at most WS_PASS_MAX bytes at a time and only
 * while the core output filter holds nothing, which is when it never
 * blocks; what it sets aside is finished when the socket is writable.
 */
#include <stdlib.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "mpm_common.h"
#include "ws_atomic.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "ws_conn_private.h"
#include "ws_stats.h"

APLOG_USE_MODULE(websocket);
extern module AP_MODULE_DECLARE_DATA websocket_module;

#define WS_READ_CHUNK    (64 * 1024)
/* Reads per readiness before the loop turns (and runs its timers). */
#define WS_READ_BUDGET   4
/* Most bytes handed to the output filters at once: below the core
 * filter's FlushMaxThreshold (64K by default), so it never blocks. */
#define WS_PASS_MAX      (32 * 1024)
/* The smallest write buffer. */
#define WS_WBUF_MIN      256
/* Free memory a connection's allocator keeps for reuse once the request
 * is gone: a read buffer's worth, so that traffic does not map and unmap
 * memory per message, while an idle connection keeps little. */
#define WS_CONN_MAX_FREE (16 * 1024)
/* Reading after our FIN, as httpd's lingering close does. */
#define WS_LINGER_TIME   apr_time_from_sec(2)
/* Reads per readiness while lingering. */
#define WS_LINGER_READS  16
/* How long a suspended connection's pool outlives the hand-off at least
 * (see ws_conn_close_now). */
#define WS_HANDOFF_GRACE apr_time_from_msec(500)
/* How often a private loop looks for a restart. */
#define WS_STOP_CHECK    apr_time_from_sec(1)

#define WS_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------ */
/* Output                                                              */

/* A metadata bucket that makes mod_ssl's coalescing filter pass small
 * writes on at once, without the blocking a FLUSH bucket would cause. */
static apr_status_t ws_push_read(apr_bucket *b, const char **str,
                                 apr_size_t *len, apr_read_type_e block)
{
    (void)b;
    (void)block;
    *str = NULL;
    *len = 0;
    return APR_SUCCESS;
}

static const apr_bucket_type_t ws_bucket_type_push = {
    "WS_PUSH", 5, APR_BUCKET_METADATA,
    apr_bucket_destroy_noop,
    ws_push_read,
    apr_bucket_setaside_noop,
    apr_bucket_split_notimpl,
    apr_bucket_simple_copy
};

static apr_bucket *ws_push_bucket(apr_bucket_alloc_t *list)
{
    apr_bucket *b = apr_bucket_alloc(sizeof(*b), list);

    APR_BUCKET_INIT(b);
    b->free = apr_bucket_free;
    b->list = list;
    b->length = 0;
    b->start = 0;
    b->data = NULL;
    b->type = &ws_bucket_type_push;
    return b;
}

/* Traffic of this connection (its log line) and of the server
 * (mod_status): bytes, and messages (0 or 1). */
static void ws_count_in(websocket_conn *wc, apr_size_t len, int messages)
{
    wc->bytes_in += len;
    wc->msgs_in += messages;
    ws_stats_bytes_in(len);
    if (messages) {
        ws_stats_message_in();
    }
}

static void ws_count_out(websocket_conn *wc, apr_size_t len, int messages)
{
    wc->bytes_out += len;
    wc->msgs_out += messages;
    ws_stats_bytes_out(len);
    if (messages) {
        ws_stats_message_out();
    }
}

static void ws_out_account(websocket_conn *wc, apr_off_t delta)
{
    ws_atomic_add64(&wc->out_bytes, (apr_uint64_t)delta);
}

static int ws_output_pending(const websocket_conn *wc)
{
    return wc->wbuf_len > 0 || !APR_BRIGADE_EMPTY(wc->obb)
           || wc->c->data_in_output_filters;
}

/* The bytes the engine wrote since the last seal become one heap bucket
 * at the end of obb.  They are gathered in plain malloc memory: a bucket
 * buffer from the connection's allocator would cost an mmap and a munmap
 * per message once the allocator keeps no free memory (see
 * ws_conn_end_request). */
static void ws_out_seal(websocket_conn *wc)
{
    if (wc->wbuf_len == 0) {
        return;
    }
    APR_BRIGADE_INSERT_TAIL(wc->obb, apr_bucket_heap_create(
                                wc->wbuf, wc->wbuf_len, free,
                                wc->c->bucket_alloc));
    wc->wbuf = NULL;
    wc->wbuf_len = wc->wbuf_cap = 0;
}

static void ws_out_discard(websocket_conn *wc)
{
    free(wc->wbuf);
    wc->wbuf = NULL;
    wc->wbuf_len = wc->wbuf_cap = 0;
    apr_brigade_cleanup(wc->obb);
    ws_atomic_set64(&wc->out_bytes, 0);
}

static void ws_write_failed(websocket_conn *wc, apr_status_t rv)
{
    ap_log_cerror(APLOG_MARK, APLOG_DEBUG, rv, wc->c, "websocket: %s: "
                  "writing to the client failed", wc->uri);
    if (APR_STATUS_IS_TIMEUP(rv)) {
        wc->timed_out = 1;   /* WebSocketWriteTimeout on a request thread */
    }
    wc->c->aborted = 1;
    ws_out_discard(wc);
}

/* A request thread may block: everything goes down with a FLUSH. */
static void ws_out_push_blocking(websocket_conn *wc)
{
    apr_off_t len = 0;
    apr_status_t rv;

    ws_out_seal(wc);
    apr_brigade_length(wc->obb, 0, &len);
    APR_BRIGADE_INSERT_TAIL(wc->obb,
                            apr_bucket_flush_create(wc->c->bucket_alloc));
    rv = ap_pass_brigade(wc->c->output_filters, wc->obb);
    apr_brigade_cleanup(wc->obb);
    ws_out_account(wc, -len);
    if (rv != APR_SUCCESS) {
        ws_write_failed(wc, rv);
    }
}

/* The request's memory is gone (its end-of-request bucket was written):
 * the allocator may keep a little again. */
static void ws_conn_trimmed(websocket_conn *wc)
{
    if (wc->trimming) {
        wc->trimming = 0;
        apr_allocator_max_free_set(apr_pool_allocator_get(wc->c->pool),
                                   WS_CONN_MAX_FREE);
    }
}

/* Hand output down without blocking, as long as the socket takes it. */
static void ws_out_push_nonblocking(websocket_conn *wc)
{
    conn_rec *c = wc->c;
    apr_status_t rv;

    while (!c->aborted) {
        apr_bucket *after;
        apr_off_t len = 0;

        if (c->data_in_output_filters) {
            rv = wc->core_out->frec->filter_func.out_func(wc->core_out,
                                                          NULL);
            if (rv != APR_SUCCESS) {
                ws_write_failed(wc, rv);
            }
            if (rv != APR_SUCCESS || c->data_in_output_filters) {
                return;   /* POLLOUT brings us back */
            }
            wc->write_since = apr_time_now();   /* the client took it */
            ws_conn_trimmed(wc);
        }
        ws_out_seal(wc);
        if (APR_BRIGADE_EMPTY(wc->obb)) {
            return;
        }
        apr_brigade_partition(wc->obb, WS_PASS_MAX, &after);
        apr_brigade_split_ex(wc->obb, after, wc->tmp);
        apr_brigade_length(wc->obb, 0, &len);
        APR_BRIGADE_INSERT_TAIL(wc->obb, ws_push_bucket(c->bucket_alloc));
        rv = ap_pass_brigade(c->output_filters, wc->obb);
        apr_brigade_cleanup(wc->obb);
        APR_BRIGADE_CONCAT(wc->obb, wc->tmp);
        ws_out_account(wc, -len);
        if (rv != APR_SUCCESS) {
            ws_write_failed(wc, rv);
        }
        else if (!c->data_in_output_filters) {
            wc->write_since = apr_time_now();   /* all of it went out */
        }
    }
}

static void ws_out_push(websocket_conn *wc)
{
    if (wc->c->aborted) {
        ws_out_discard(wc);
    }
    else if (wc->suspended) {
        ws_out_push_nonblocking(wc);
    }
    else if (wc->wbuf_len > 0 || !APR_BRIGADE_EMPTY(wc->obb)) {
        ws_out_push_blocking(wc);
    }
}

/* Engine output goes to obb; ws_out_push sends it after the event. */
static int ws_on_write(void *baton, const char *data, apr_size_t len)
{
    websocket_conn *wc = baton;

    if (wc->c->aborted) {
        return 1;
    }
    if (wc->wbuf_len + len > wc->wbuf_cap) {
        apr_size_t cap;
        char *grown;

        if (wc->wbuf_len + len > WS_PASS_MAX) {
            ws_out_seal(wc);
        }
        cap = wc->wbuf_len + len;
        if (cap < 2 * wc->wbuf_cap) {
            cap = 2 * wc->wbuf_cap;
        }
        if (cap < WS_WBUF_MIN) {
            cap = WS_WBUF_MIN;
        }
        if ((grown = realloc(wc->wbuf, cap)) == NULL) {
            return 1;
        }
        wc->wbuf = grown;
        wc->wbuf_cap = cap;
    }
    memcpy(wc->wbuf + wc->wbuf_len, data, len);
    wc->wbuf_len += len;
    ws_out_account(wc, (apr_off_t)len);
    if (wc->opened) {   /* frames, not the handshake's answer */
        ws_count_out(wc, len, 0);
    }
    return 0;
}

apr_size_t ws_conn_pending(const websocket_conn *wc)
{
    return (apr_size_t)(ws_atomic_read64(&wc->queued)
                        + ws_atomic_read64(&wc->out_bytes));
}

/* High- and low-water marks of a connection's output. */
apr_size_t ws_conn_high_water(const websocket_conn *wc)
{
    return (apr_size_t)wc->conf.max_pending / 4;
}

static apr_size_t ws_low_water(const websocket_conn *wc)
{
    return (apr_size_t)wc->conf.max_pending / 16;
}

/* ------------------------------------------------------------------ */
/* Engine events to the plugin                                         */

static void ws_on_message(void *baton, int opcode, const char *data,
                          apr_size_t len)
{
    websocket_conn *wc = baton;

    ws_count_in(wc, 0, 1);
    wc->loc->plugin->on_message(&ws_server_api, wc, opcode, data, len);
}

static void ws_on_data(void *baton, int opcode, const char *data,
                       apr_size_t len, int final)
{
    websocket_conn *wc = baton;

    if (final) {
        ws_count_in(wc, 0, 1);
    }
    if (len > 0) {
        APR_BRIGADE_INSERT_TAIL(wc->fbb, apr_bucket_transient_create(
                                    data, len, wc->c->bucket_alloc));
    }
    wc->loc->plugin->on_fragment(&ws_server_api, wc, opcode, wc->fbb, final);
    apr_brigade_cleanup(wc->fbb);
}

static void ws_on_ping(void *baton, const char *data, apr_size_t len)
{
    websocket_conn *wc = baton;

    if (wc->loc->plugin->on_ping != NULL) {
        wc->loc->plugin->on_ping(&ws_server_api, wc, data, len);
    }
}

static void ws_on_pong(void *baton, const char *data, apr_size_t len)
{
    websocket_conn *wc = baton;

    wc->ping_sent = 0;
    if (wc->loc->plugin->on_pong != NULL) {
        wc->loc->plugin->on_pong(&ws_server_api, wc, data, len);
    }
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
    ws_on_write, ws_on_message, ws_on_ping, ws_on_pong, ws_on_close,
    ws_on_data
};

/* ------------------------------------------------------------------ */
/* Sending (loop thread)                                               */

static int ws_is_hixie(const websocket_conn *wc)
{
    return wc->family != WEBSOCKET_PROTOCOL_RFC6455;
}

/* The server starts the closing handshake. */
static apr_status_t ws_start_close(websocket_conn *wc, int code,
                                   const char *why)
{
    apr_status_t rv = ws_session_close(wc->session, code, why);

    if (rv == APR_SUCCESS && wc->close_code == 0) {
        wc->close_code = code;
    }
    return rv;
}

/* The close code of the closing handshake: the peer's, or the one of a
 * failure, or the server's own close; 0 when there was none. */
static int ws_end_code(const websocket_conn *wc)
{
    int code = ws_session_close_code(wc->session);

    return code != 0 ? code : wc->close_code;
}

static int ws_conn_usable(const websocket_conn *wc)
{
    return wc->state == WS_CONN_OPEN && !wc->c->aborted
        && ws_session_state(wc->session) == WS_SESSION_OPEN;
}

static void ws_conn_check(websocket_conn *wc);

/* The verdict after a message was queued: over WebSocketMaxPendingBytes
 * closes with 1008, over the high-water mark asks for on_drain. */
static websocket_send_result ws_send_verdict(websocket_conn *wc)
{
    apr_size_t pending = ws_conn_pending(wc);

    if (pending > (apr_size_t)wc->conf.max_pending) {
        if (!wc->overflow_seen) {
            wc->overflow_seen = 1;
            ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, wc->c, "websocket: "
                          "closing %s with 1008: %" APR_SIZE_T_FMT " bytes "
                          "waiting for a slow client, more than "
                          "WebSocketMaxPendingBytes (%" APR_INT64_T_FMT ")",
                          wc->uri, pending, wc->conf.max_pending);
            ws_start_close(wc, WS_CLOSE_POLICY, "send queue overflow");
        }
        return WEBSOCKET_SEND_CLOSED;
    }
    if (pending > ws_conn_high_water(wc)) {
        wc->want_drain = 1;
        return WEBSOCKET_SEND_FULL;
    }
    return WEBSOCKET_SEND_OK;
}

static websocket_send_result ws_result_of(websocket_conn *wc,
                                          apr_status_t rv)
{
    if (rv == APR_SUCCESS) {
        return ws_send_verdict(wc);
    }
    return (APR_STATUS_IS_EOF(rv) || wc->c->aborted) ? WEBSOCKET_SEND_CLOSED
                                                     : WEBSOCKET_SEND_INVALID;
}

/* A message (final: its last frame) went to the engine. */
static websocket_send_result ws_sent(websocket_conn *wc, apr_status_t rv,
                                     int final)
{
    if (rv == APR_SUCCESS && final) {
        ws_count_out(wc, 0, 1);
    }
    return ws_result_of(wc, rv);
}

/* After a call from a plugin outside this connection's own event (a
 * timer, a watch, a post, another connection): send what it produced. */
void ws_conn_kick(websocket_conn *wc)
{
    if (wc->state < WS_CONN_DONE) {
        ws_conn_check(wc);
    }
}

websocket_send_result ws_conn_send(websocket_conn *wc, int type,
                                   const char *data, apr_size_t len)
{
    if (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY) {
        return WEBSOCKET_SEND_INVALID;
    }
    if (!ws_conn_usable(wc)) {
        return WEBSOCKET_SEND_CLOSED;
    }
    return ws_sent(wc, ws_session_send(wc->session, type, data, len), 1);
}

websocket_send_result ws_conn_send_brigade(websocket_conn *wc, int type,
                                           apr_bucket_brigade *bb,
                                           int final)
{
    apr_off_t len = 0;
    apr_status_t rv = APR_EINVAL;

    if ((type == WEBSOCKET_TEXT || type == WEBSOCKET_BINARY)
        && ws_conn_usable(wc)
        && apr_brigade_length(bb, 1, &len) == APR_SUCCESS) {
        rv = ws_session_frame_begin(wc->session,
                                    ws_session_sending(wc->session)
                                    ? WS_OP_CONTINUATION : type,
                                    final, (apr_uint64_t)len);
    }
    if (rv != APR_SUCCESS) {
        apr_brigade_cleanup(bb);
        return ws_conn_usable(wc) ? ws_result_of(wc, rv)
                                  : WEBSOCKET_SEND_CLOSED;
    }
    ws_out_seal(wc);
    APR_BRIGADE_CONCAT(wc->obb, bb);
    ws_out_account(wc, len);
    ws_count_out(wc, (apr_size_t)len, 0);
    rv = ws_session_frame_end(wc->session);
    return ws_sent(wc, rv, final);
}

apr_status_t ws_conn_close(websocket_conn *wc, int code, const char *why)
{
    apr_status_t rv;

    if (wc->state != WS_CONN_OPEN) {
        return APR_ECONNABORTED;
    }
    rv = ws_start_close(wc, code, why);
    return APR_STATUS_IS_EOF(rv) ? APR_ECONNABORTED : rv;
}

apr_status_t ws_conn_ping(websocket_conn *wc, const char *data,
                          apr_size_t len)
{
    apr_status_t rv;

    if (ws_is_hixie(wc)) {
        return APR_ENOTIMPL;
    }
    if (len > 125) {
        return APR_EINVAL;
    }
    if (!ws_conn_usable(wc)) {
        return APR_ECONNABORTED;
    }
    rv = ws_session_ping(wc->session, data, len);
    return APR_STATUS_IS_EOF(rv) ? APR_ECONNABORTED : rv;
}

static void ws_read_more_task(void *baton);

void ws_conn_pause(websocket_conn *wc, int paused)
{
    int resumed = wc->paused && !paused;

    wc->paused = paused != 0;
    wc->last_rx = apr_time_now();
    wc->ping_sent = 0;
    if (resumed) {
        /* The filters may hold bytes that poll does not see. */
        ws_conn_retain(wc);
        ws_loop_post(wc->lc->loop, ws_read_more_task, wc);
    }
}

/* A broadcast receiver: the frame header from the engine, the payload by
 * reference (a heap bucket that calls release when written). */
int ws_conn_send_shared(websocket_conn *wc, int type, const char *data,
                        apr_size_t len, void (*release)(void *data))
{
    if (!ws_conn_usable(wc) || (type == WEBSOCKET_BINARY && ws_is_hixie(wc))
        || ws_session_frame_begin(wc->session, type, 1, len) != APR_SUCCESS) {
        return 0;
    }
    ws_out_seal(wc);
    APR_BRIGADE_INSERT_TAIL(wc->obb, apr_bucket_heap_create(
                                data, len, release, wc->c->bucket_alloc));
    ws_out_account(wc, (apr_off_t)len);
    ws_session_frame_end(wc->session);
    ws_count_out(wc, len, 1);
    ws_send_verdict(wc);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Posting from any thread                                             */

int ws_conn_on_loop(const websocket_conn *wc)
{
    return wc->lc != NULL && ws_loop_is_current(wc->lc->loop);
}

int ws_conn_is_gone(const websocket_conn *wc)
{
    return ws_atomic_read32(&wc->gone) != 0;
}

void ws_conn_retain(websocket_conn *wc)
{
    ws_atomic_inc32(&wc->refs);
}

void ws_conn_release(websocket_conn *wc)
{
    if (ws_atomic_dec32(&wc->refs) == 0) {
        free(wc->wbuf);
        free(wc->subprotocol);
        free(wc);
    }
}

typedef struct ws_posted_call {
    websocket_conn *wc;
    websocket_task_fn fn;
    void *baton;
} ws_posted_call;

static void ws_posted_run(void *baton)
{
    ws_posted_call *call = baton;
    websocket_conn *wc = call->wc;

    call->fn(&ws_server_api, wc, call->baton);
    ws_conn_kick(wc);
    ws_conn_release(wc);
    free(call);
}

apr_status_t ws_conn_post(websocket_conn *wc, websocket_task_fn fn,
                          void *baton)
{
    ws_posted_call *call = malloc(sizeof(*call));
    apr_status_t rv = APR_ECONNABORTED;

    if (call == NULL) {
        return APR_ENOMEM;
    }
    call->wc = wc;
    call->fn = fn;
    call->baton = baton;
    /* Under the registry lock: a request thread's loop cannot go away
     * between the check and the post. */
    ws_child_lock();
    if (!ws_conn_is_gone(wc) && wc->lc != NULL) {
        ws_conn_retain(wc);
        rv = ws_loop_post(wc->lc->loop, ws_posted_run, call);
        if (rv != APR_SUCCESS) {
            ws_conn_release(wc);
        }
    }
    ws_child_unlock();
    if (rv != APR_SUCCESS) {
        free(call);
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Timers of the connection                                            */

static void ws_close_for(websocket_conn *wc, int code, const char *why)
{
    ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, wc->c, "websocket: closing %s "
                  "with %d: %s", wc->uri, code, why);
    ws_start_close(wc, code, why);
}

/* When WebSocketWriteTimeout runs out for output the client does not
 * take (APR_INT64_MAX: never). */
static apr_time_t ws_write_deadline(const websocket_conn *wc)
{
    if (wc->conf.write_timeout <= 0 || wc->write_since == 0) {
        return APR_INT64_MAX;
    }
    return wc->write_since + wc->conf.write_timeout;
}

/* Output is pending since the last progress, or none is. */
static void ws_write_clock(websocket_conn *wc)
{
    if (!ws_output_pending(wc)) {
        wc->write_since = 0;
    }
    else if (wc->write_since == 0) {
        wc->write_since = apr_time_now();
    }
}

/* The earliest moment something is due for an open connection's
 * session (idle, ping, close handshake). */
static apr_time_t ws_session_deadline(websocket_conn *wc)
{
    const ws_dir_conf *conf = &wc->conf;
    apr_time_t next = APR_INT64_MAX;

    switch (ws_session_state(wc->session)) {
    case WS_SESSION_OPEN:
        if (wc->paused) {
            return apr_time_now() + apr_time_from_sec(1);
        }
        if (conf->idle_timeout > 0) {
            next = wc->last_rx + conf->idle_timeout;
        }
        if (conf->ping_interval > 0 && !ws_is_hixie(wc)) {
            next = WS_MIN(next, (wc->ping_sent ? wc->ping_sent : wc->last_rx)
                                + conf->ping_interval);
        }
        return next;
    case WS_SESSION_CLOSING:
        return wc->close_sent + conf->close_timeout;
    default:
        return 0;
    }
}

static apr_time_t ws_open_deadline(websocket_conn *wc)
{
    return WS_MIN(ws_session_deadline(wc), ws_write_deadline(wc));
}

static void ws_conn_end(websocket_conn *wc);

/* WebSocketWriteTimeout: the client took no bytes for that long.  An
 * open session still gets a 1008 close frame, written while the drain
 * lasts (WebSocketCloseTimeout); a closing one is given up at once. */
static int ws_write_timers(websocket_conn *wc, apr_time_t now)
{
    if (now < ws_write_deadline(wc)) {
        return 0;
    }
    wc->timed_out = 1;
    if (ws_session_state(wc->session) == WS_SESSION_OPEN) {
        ws_close_for(wc, WS_CLOSE_POLICY, "write timeout");
        ws_conn_end(wc);
    }
    else {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, wc->c, "websocket: %s: "
                      "write timeout while closing, giving up", wc->uri);
        wc->c->aborted = 1;
    }
    return 1;
}

static void ws_open_timers(websocket_conn *wc, apr_time_t now)
{
    const ws_dir_conf *conf = &wc->conf;

    if (ws_session_state(wc->session) != WS_SESSION_OPEN) {
        return;
    }
    if (wc->paused) {
        /* Paused time counts as activity. */
        wc->last_rx = now;
        wc->ping_sent = 0;
        return;
    }
    if (conf->idle_timeout > 0 && now - wc->last_rx >= conf->idle_timeout) {
        wc->timed_out = 1;
        ws_close_for(wc, WS_CLOSE_GOING_AWAY, "idle timeout");
    }
    else if (conf->ping_interval > 0 && !ws_is_hixie(wc)) {
        if (wc->ping_sent == 0 && now - wc->last_rx >= conf->ping_interval) {
            ws_session_ping(wc->session, "", 0);
            wc->ping_sent = now;
        }
        else if (wc->ping_sent != 0
                 && now - wc->ping_sent >= conf->ping_interval) {
            wc->timed_out = 1;
            ws_close_for(wc, WS_CLOSE_GOING_AWAY, "no answer to ping");
        }
    }
}

static void ws_conn_arm(websocket_conn *wc)
{
    apr_time_t when;

    switch (wc->state) {
    case WS_CONN_OPEN:
        when = ws_open_deadline(wc);
        break;
    case WS_CONN_DONE:
        ws_timer_clear(wc->lc->loop, &wc->tick);
        return;
    default:
        when = wc->deadline;
        break;
    }
    if (when == APR_INT64_MAX) {
        ws_timer_clear(wc->lc->loop, &wc->tick);
    }
    /* An armed timer that fires earlier recomputes then: activity does
     * not cost a heap operation per message. */
    else if (wc->tick.heap_pos == 0 || when < wc->tick.when) {
        ws_timer_set(wc->lc->loop, &wc->tick, when);
    }
}

static void ws_key3_timeout(websocket_conn *wc);
static void ws_conn_shutdown(websocket_conn *wc);
static void ws_conn_close_now(websocket_conn *wc);
static void ws_conn_destroy_pool(websocket_conn *wc);

static void ws_conn_tick(void *baton)
{
    websocket_conn *wc = baton;
    apr_time_t now = apr_time_now();

    switch (wc->state) {
    case WS_CONN_KEY3:
        if (now >= wc->deadline) {
            ws_key3_timeout(wc);
        }
        break;
    case WS_CONN_OPEN:
        if (!ws_write_timers(wc, now)) {
            ws_open_timers(wc, now);
        }
        break;
    case WS_CONN_DRAINING:
        if (now >= wc->deadline) {
            wc->c->aborted = 1;   /* the client takes nothing: give up */
            ws_conn_shutdown(wc);
        }
        break;
    case WS_CONN_LINGER:
        if (now >= wc->deadline) {
            ws_conn_close_now(wc);
        }
        break;
    case WS_CONN_DONE:
        ws_conn_destroy_pool(wc);   /* the hand-off grace is over */
        break;
    default:
        break;
    }
    ws_conn_kick(wc);
}

/* ------------------------------------------------------------------ */
/* Input                                                               */

static void ws_conn_open(websocket_conn *wc);

/* hixie-76: the 8 key bytes, then the answer; returns how many bytes of
 * data it took. */
static apr_size_t ws_take_key3(websocket_conn *wc, const char *data,
                               apr_size_t len)
{
    apr_size_t take = WS_MIN(len, 8 - wc->key3_have);
    apr_size_t answer_len;
    const char *answer;

    memcpy(wc->key3 + wc->key3_have, data, take);
    wc->key3_have += take;
    if (wc->key3_have == 8) {
        answer = ws_handshake_answer(wc->r, wc->family, wc->host,
                                     wc->subprotocol, wc->key3, &answer_len);
        ws_on_write(wc, answer, answer_len);
        ws_conn_open(wc);
    }
    return take;
}

static void ws_feed(websocket_conn *wc, const char *data, apr_size_t len)
{
    if (wc->state == WS_CONN_KEY3) {
        apr_size_t took = ws_take_key3(wc, data, len);

        data += took;
        len -= took;
    }
    if (len > 0 && wc->state == WS_CONN_OPEN) {
        ws_count_in(wc, len, 0);
        ws_session_feed(wc->session, data, len);
    }
}

/* One non-blocking read: APR_SUCCESS when bytes came, APR_EAGAIN when
 * none were ready, else the end of the client. */
static apr_status_t ws_read_once(websocket_conn *wc)
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
            if (wc->h2_body_eos) {
                /* mod_http2 ends the upgrade request's (empty) body on
                 * the stream's input first; the client's own end of the
                 * stream comes later. */
                wc->h2_body_eos = 0;
            }
            else {
                rv = APR_EOF;
            }
        }
        else if (!APR_BUCKET_IS_METADATA(b)) {
            wc->h2_body_eos = 0;
            rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ);
            if (rv == APR_SUCCESS) {
                ws_feed(wc, data, len);
            }
        }
        apr_bucket_delete(b);
    }
    apr_brigade_cleanup(wc->ibb);
    return rv;
}

static int ws_reading(const websocket_conn *wc)
{
    if (wc->state == WS_CONN_KEY3) {
        return 1;
    }
    return wc->state == WS_CONN_OPEN && !wc->c->aborted
        && (ws_session_state(wc->session) == WS_SESSION_CLOSING
            || (ws_session_state(wc->session) == WS_SESSION_OPEN
                && !wc->paused));
}

/* Read what the filters have, a bounded amount per turn; bytes the
 * filters hold are not seen by poll, so a read cut short by the budget
 * continues at the next turn. */
static void ws_conn_read(websocket_conn *wc)
{
    int budget = WS_READ_BUDGET;

    while (ws_reading(wc)) {
        apr_status_t rv;

        if (budget-- == 0) {
            ws_conn_retain(wc);
            ws_loop_post(wc->lc->loop, ws_read_more_task, wc);
            return;
        }
        rv = ws_read_once(wc);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            return;
        }
        if (APR_STATUS_IS_EOF(rv)
            && ws_session_state(wc->session) == WS_SESSION_CLOSED) {
            /* The client's end of input right after its close frame (an
             * HTTP/2 client ends its stream with it): our answer to the
             * close still goes out. */
            return;
        }
        if (rv != APR_SUCCESS) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, rv, wc->c, "websocket: "
                          "%s: the client went away", wc->uri);
            wc->c->aborted = 1;
            return;
        }
        wc->last_rx = apr_time_now();
        wc->ping_sent = 0;
    }
}

static void ws_read_more_task(void *baton)
{
    websocket_conn *wc = baton;

    if (wc->state < WS_CONN_DRAINING) {
        ws_conn_read(wc);
        ws_conn_check(wc);
    }
    ws_conn_release(wc);
}

/* Lingering close: read and drop until EOF or the deadline. */
static void ws_linger_read(websocket_conn *wc)
{
    char buf[512];
    apr_socket_t *csd = ap_get_conn_socket(wc->c);
    apr_status_t rv;
    int budget = WS_LINGER_READS;

    do {
        apr_size_t len = sizeof(buf);

        rv = apr_socket_recv(csd, buf, &len);
    } while (rv == APR_SUCCESS && --budget > 0);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        ws_conn_close_now(wc);
    }
}

static void ws_client_ready(void *baton, apr_int16_t events)
{
    websocket_conn *wc = baton;

    if (wc->state == WS_CONN_LINGER) {
        ws_linger_read(wc);
        return;
    }
    if (events & APR_POLLOUT) {
        wc->write_since = apr_time_now();   /* the client took bytes */
        ws_out_push(wc);
    }
    if (events & (APR_POLLIN | APR_POLLHUP | APR_POLLERR)) {
        if (ws_reading(wc)) {
            ws_conn_read(wc);
        }
        else if (events & (APR_POLLHUP | APR_POLLERR)) {
            /* Reported whether asked for or not (paused, draining): the
             * client is gone, and polling again would spin. */
            wc->c->aborted = 1;
        }
    }
    ws_conn_check(wc);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

/* Pack the strings that outlive the request into one allocation with
 * the connection object (so that a retained connection keeps them). */
static const char *ws_pack(char **at, const char *s)
{
    const char *copy = *at;

    if (s == NULL) {
        return NULL;
    }
    strcpy(*at, s);
    *at += strlen(s) + 1;
    return copy;
}

static apr_size_t ws_packed_size(const char *const *strings, int n,
                                 const apr_array_header_t *opts)
{
    apr_size_t size = 0;
    int i;

    for (i = 0; i < n; i++) {
        size += strings[i] ? strlen(strings[i]) + 1 : 0;
    }
    for (i = 0; opts && i < opts->nelts; i++) {
        const apr_table_entry_t *e = &APR_ARRAY_IDX(opts, i,
                                                    apr_table_entry_t);

        size += strlen(e->key) + strlen(e->val) + 2 + 2 * sizeof(char *);
    }
    return size + sizeof(char *);
}

static websocket_conn *ws_conn_alloc(request_rec *r, const ws_dir_conf *conf)
{
    const char *strings[7];
    const apr_array_header_t *opts =
        conf->options ? apr_table_elts(conf->options) : NULL;
    int i, n_opts = opts ? opts->nelts : 0;
    apr_size_t size;
    websocket_conn *wc;
    char *at;

    strings[0] = r->uri;
    strings[1] = r->args;
    strings[2] = r->useragent_ip;
    strings[3] = r->user;
    strings[4] = r->the_request;
    strings[5] = r->protocol;
    strings[6] = apr_table_get(r->headers_in, "Sec-WebSocket-Version");
    size = ws_packed_size(strings, 7, opts);
    wc = calloc(1, sizeof(*wc) + size);
    if (wc == NULL) {
        return NULL;
    }
    wc->options = (const char **)(wc + 1);
    at = (char *)(wc->options + 2 * n_opts + 1);
    wc->uri = ws_pack(&at, strings[0]);
    wc->query = ws_pack(&at, strings[1]);
    wc->client_ip = ws_pack(&at, strings[2]);
    wc->user = ws_pack(&at, strings[3]);
    wc->the_request = ws_pack(&at, strings[4]);
    wc->protocol = ws_pack(&at, strings[5]);
    wc->version = ws_pack(&at, strings[6]);
    for (i = 0; i < n_opts; i++) {
        const apr_table_entry_t *e = &APR_ARRAY_IDX(opts, i,
                                                    apr_table_entry_t);

        wc->options[2 * i] = ws_pack(&at, e->key);
        wc->options[2 * i + 1] = ws_pack(&at, e->val);
    }
    wc->options[2 * n_opts] = NULL;
    return wc;
}

static int ws_can_suspend(conn_rec *c)
{
    int async = 0;

    ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
    return async && ws_child_has_loops() && c->cs != NULL
        && c->master == NULL;
}

static ap_filter_t *ws_last_filter(ap_filter_t *f)
{
    while (f->next != NULL) {
        f = f->next;
    }
    return f;
}

apr_status_t ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                            ws_proto_e proto, const char *host,
                            apr_array_header_t *offered,
                            websocket_conn **out)
{
    conn_rec *c = r->connection;
    websocket_conn *wc = ws_conn_alloc(r, conf);
    ws_session_config sc;
    apr_pollfd_t pfd;
    apr_status_t rv;

    if (wc == NULL) {
        return APR_ENOMEM;
    }
    memset(&pfd, 0, sizeof(pfd));
    rv = ap_get_pollfd_from_conn(c, &pfd, NULL);
    if (rv != APR_SUCCESS || pfd.desc_type == APR_NO_DESC) {
        free(wc);
        return rv != APR_SUCCESS ? rv : APR_ENOTSOCK;
    }
    wc->refs = 1;
    wc->conf = *conf;
    wc->family = proto;   /* WS_PROTO_x == WEBSOCKET_PROTOCOL_x */
    wc->loc = conf->loc;
    wc->s = r->server;
    wc->r = r;
    wc->c = c;
    wc->host = host;
    wc->offered = offered;
    wc->state = proto == WS_PROTO_HIXIE76 ? WS_CONN_KEY3 : WS_CONN_OPEN;
    wc->suspended = ws_can_suspend(c);
    wc->core_out = ws_last_filter(c->output_filters);
    wc->ibb = apr_brigade_create(c->pool, c->bucket_alloc);
    wc->obb = apr_brigade_create(c->pool, c->bucket_alloc);
    wc->tmp = apr_brigade_create(c->pool, c->bucket_alloc);
    wc->fbb = apr_brigade_create(c->pool, c->bucket_alloc);
    wc->client.pfd = pfd;
    wc->client.pfd.reqevents = 0;
    wc->client.pfd.p = c->pool;
    wc->client.fn = ws_client_ready;
    wc->client.baton = wc;
    wc->tick.fn = ws_conn_tick;
    wc->tick.baton = wc;
    APR_RING_INIT(&wc->timers, websocket_timer, link);
    APR_RING_INIT(&wc->watches, websocket_watch, link);

    sc.max_message = (apr_uint64_t)conf->max_message;
    sc.fragment_size = (apr_size_t)conf->fragment_size;
    sc.stream = wc->loc->plugin->on_fragment != NULL;
    sc.deflate = conf->deflate;     /* permessage-deflate, if negotiated */
    wc->session = ws_session_create(c->pool, proto, &sc, &ws_session_cbs, wc);
    *out = wc;
    return APR_SUCCESS;
}

void ws_conn_abandon(websocket_conn *wc)
{
    ws_atomic_set32(&wc->gone, 1);
    ws_conn_release(wc);
}

/* The upgrade request is over: log it (status 101) and free its pool,
 * which keeps an idle connection small.  A suspended connection does
 * what httpd would have done after the handler. */
static void ws_conn_end_request(websocket_conn *wc)
{
    request_rec *r = wc->r;

    if (r == NULL) {
        return;
    }
    wc->r = NULL;
    wc->offered = NULL;
    wc->host = NULL;
    if (wc->suspended) {
        /* The request's pool goes when the core filter has written what
         * came before its end-of-request bucket; until then the
         * connection's allocator keeps nothing, so that the request's
         * memory goes back to the system instead of staying with an idle
         * connection (ws_conn_trimmed ends this). */
        apr_allocator_max_free_set(apr_pool_allocator_get(wc->c->pool), 1);
        wc->trimming = 1;
        ap_finalize_request_protocol(r);
        ap_process_request_after_handler(r);
        /* after_handler moved the state on; the MPM counts this
         * connection among the suspended ones until its pool goes. */
        wc->c->cs->state = CONN_STATE_SUSPENDED;
    }
}

static void ws_conn_open(websocket_conn *wc)
{
    websocket_plugin *plugin = wc->loc->plugin;

    wc->state = WS_CONN_OPEN;
    wc->opened = 1;
    wc->last_rx = wc->opened_at = apr_time_now();
    ws_atomic_inc32(&wc->loc->open);
    ws_stats_open(wc->loc->index, wc->family, 1);
    if (plugin->on_open != NULL) {
        plugin->on_open(&ws_server_api, wc);
    }
    ws_conn_end_request(wc);
}

static void ws_log_end(websocket_conn *wc)
{
    const char *error = ws_session_error(wc->session);

    if (error != NULL) {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, wc->c, "websocket: closed "
                      "%s with %d: %s", wc->uri,
                      ws_session_close_code(wc->session), error);
    }
    else {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, wc->c, "websocket: %s "
                      "ended (close code %d)", wc->uri,
                      ws_session_close_code(wc->session));
    }
}

/* Who ended it: client, server, abort or timeout. */
static const char *ws_closed_by(const websocket_conn *wc)
{
    ws_session_state_e ss = ws_session_state(wc->session);

    if (wc->timed_out) {
        return "timeout";
    }
    if (ss == WS_SESSION_CLOSED) {
        return wc->close_sent != 0 ? "server" : "client";
    }
    return wc->c->aborted && ss != WS_SESSION_FAILED ? "abort" : "server";
}

static const char *ws_protocol_name(apr_pool_t *p,
                                    const websocket_conn *wc)
{
    switch (wc->family) {
    case WEBSOCKET_PROTOCOL_RFC6455:
        return wc->version != NULL ? apr_pstrcat(p, "rfc6455-", wc->version,
                                                 NULL)
                                   : "rfc6455";
    case WEBSOCKET_PROTOCOL_HIXIE76:
        return "hixie76";
    default:
        return "hixie75";
    }
}

static void ws_note_u64(request_rec *r, const char *name, apr_uint64_t v)
{
    apr_table_setn(r->notes, name,
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, v));
}

/* One access-log line for the WebSocket that ends (the upgrade's own
 * line, status 101, was written when it opened): a request made up on
 * the connection, with the notes a LogFormat can use (%{...}n), through
 * mod_log_config and the other log_transaction hooks. */
static void ws_log_transaction(websocket_conn *wc)
{
    request_rec *r = ap_create_request(wc->c);
    apr_time_t now = apr_time_now();

    r->server = wc->s;
    r->per_dir_config = wc->s->lookup_defaults;
    r->request_time = wc->opened_at;
    r->the_request = apr_pstrdup(r->pool, wc->the_request);
    r->method = "GET";
    r->method_number = M_GET;
    r->protocol = apr_pstrdup(r->pool, wc->protocol ? wc->protocol
                                                    : "HTTP/1.1");
    r->uri = r->unparsed_uri = apr_pstrdup(r->pool, wc->uri);
    r->args = apr_pstrdup(r->pool, wc->query);
    r->user = apr_pstrdup(r->pool, wc->user);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    apr_table_setn(r->notes, "websocket-duration",
                   apr_psprintf(r->pool, "%.3f",
                                (double)(now - wc->opened_at)
                                / APR_USEC_PER_SEC));
    ws_note_u64(r, "websocket-messages-in", wc->msgs_in);
    ws_note_u64(r, "websocket-messages-out", wc->msgs_out);
    ws_note_u64(r, "websocket-bytes-in", wc->bytes_in);
    ws_note_u64(r, "websocket-bytes-out", wc->bytes_out);
    ws_note_u64(r, "websocket-close-code", (apr_uint64_t)ws_end_code(wc));
    apr_table_setn(r->notes, "websocket-closed-by", ws_closed_by(wc));
    apr_table_setn(r->notes, "websocket-protocol",
                   ws_protocol_name(r->pool, wc));
    ap_run_log_transaction(r);
    apr_pool_destroy(r->pool);
}

/* The WebSocket is over (closed, failed, timed out, aborted): no more
 * sends, on_disconnect, then what is left goes out. */
static void ws_conn_end(websocket_conn *wc)
{
    websocket_plugin *plugin = wc->loc->plugin;

    ws_atomic_set32(&wc->gone, 1);
    wc->state = WS_CONN_DRAINING;
    wc->deadline = apr_time_now() + wc->conf.close_timeout;
    if (wc->opened) {
        ws_atomic_dec32(&wc->loc->open);
        ws_stats_open(wc->loc->index, wc->family, -1);
        ws_stats_closed(ws_end_code(wc));
        ws_log_end(wc);
        ws_log_transaction(wc);
    }
    ws_api_end_timers_and_watches(wc);
    ws_pubsub_unsubscribe_all(wc);
    if (plugin->on_disconnect != NULL) {
        plugin->on_disconnect(&ws_server_api, wc);
    }
    ws_conn_end_request(wc);
}

static void ws_key3_timeout(websocket_conn *wc)
{
    static const char response[] =
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
        "Content-Length: 0\r\n\r\n";

    ap_log_cerror(APLOG_MARK, APLOG_ERR, APR_TIMEUP, wc->c, "websocket: "
                  "handshake failed for %s: the 8 hixie-76 key bytes did "
                  "not arrive", wc->uri);
    wc->r->status = HTTP_REQUEST_TIME_OUT;
    ws_on_write(wc, response, sizeof(response) - 1);
    ws_conn_end(wc);
}

/* Output is out (or abandoned): close the write side and linger. */
static void ws_conn_shutdown(websocket_conn *wc)
{
    /* A request thread's connection is closed by httpd after the
     * handler. */
    if (!wc->suspended || wc->c->aborted
        || ap_start_lingering_close(wc->c)) {
        ws_conn_close_now(wc);
        return;
    }
    /* The socket still has httpd's Timeout: reads must not wait. */
    apr_socket_timeout_set(ap_get_conn_socket(wc->c), 0);
    wc->state = WS_CONN_LINGER;
    wc->deadline = apr_time_now() + WS_LINGER_TIME;
}

static void ws_conn_unlink_task(void *baton)
{
    websocket_conn *wc = baton;

    APR_RING_REMOVE(wc, link);
    ws_atomic_dec32(&wc->lc->count);
    ws_conn_release(wc);
}

/* The end of a suspended connection: socket and pool go; the MPM's pool
 * cleanups keep its counts right.  The object itself goes at the next
 * turn, as other ready events of this turn may still name it. */
static void ws_conn_destroy_pool(websocket_conn *wc)
{
    apr_pool_destroy(wc->c->pool);
    wc->c = NULL;
    ws_loop_post(wc->lc->loop, ws_conn_unlink_task, wc);
}

static void ws_conn_close_now(websocket_conn *wc)
{
    ws_watch_set(wc->lc->loop, &wc->client, 0);
    ws_timer_clear(wc->lc->loop, &wc->tick);
    wc->state = WS_CONN_DONE;
    if (!wc->suspended) {
        ws_loop_post(wc->lc->loop, ws_conn_unlink_task, wc);
        return;
    }
    apr_socket_close(ap_get_conn_socket(wc->c));
    /* After our suspend_connection hook returned, the event MPM still
     * marks the connection suspended in its state, which lives in this
     * pool: a connection that ends at once keeps its pool a moment. */
    if (apr_time_now() < wc->adopted + WS_HANDOFF_GRACE) {
        ws_timer_set(wc->lc->loop, &wc->tick, wc->adopted + WS_HANDOFF_GRACE);
        return;
    }
    ws_conn_destroy_pool(wc);
}

static apr_int16_t ws_wanted_events(const websocket_conn *wc)
{
    apr_int16_t events = 0;

    if (wc->state == WS_CONN_LINGER || ws_reading(wc)) {
        events |= APR_POLLIN;
    }
    if (wc->suspended && wc->state < WS_CONN_LINGER && !wc->c->aborted
        && ws_output_pending(wc)) {
        events |= APR_POLLOUT;
    }
    return events;
}

/* After anything happened to a connection: send what was produced, see
 * whether it ended, and set what to wait for. */
static void ws_conn_check(websocket_conn *wc)
{
    ws_session_state_e ss;

    if (wc->state == WS_CONN_LINGER || wc->state == WS_CONN_DONE) {
        return;
    }
    ws_out_push(wc);
    ss = ws_session_state(wc->session);
    if (wc->state == WS_CONN_OPEN) {
        if (ss == WS_SESSION_CLOSING && wc->close_sent == 0) {
            wc->close_sent = apr_time_now();
        }
        if (wc->c->aborted || ss == WS_SESSION_CLOSED
            || ss == WS_SESSION_FAILED
            || (ss == WS_SESSION_CLOSING
                && apr_time_now() - wc->close_sent
                   >= wc->conf.close_timeout)) {
            ws_conn_end(wc);
            ws_out_push(wc);
        }
        else if (wc->want_drain && ws_conn_pending(wc) <= ws_low_water(wc)) {
            wc->want_drain = 0;
            if (wc->loc->plugin->on_drain != NULL) {
                wc->loc->plugin->on_drain(&ws_server_api, wc);
                ws_out_push(wc);
            }
        }
    }
    else if (wc->state == WS_CONN_KEY3 && wc->c->aborted) {
        ws_conn_end(wc);
    }
    if (wc->state == WS_CONN_DRAINING
        && (wc->c->aborted || !ws_output_pending(wc))) {
        ws_conn_shutdown(wc);
    }
    if (wc->state == WS_CONN_DONE) {
        return;
    }
    if (ws_watch_set(wc->lc->loop, &wc->client, ws_wanted_events(wc))
        != APR_SUCCESS) {
        wc->c->aborted = 1;
    }
    ws_write_clock(wc);
    ws_conn_arm(wc);
}

/* On the loop: the connection is ours. */
void ws_conn_adopt(websocket_conn *wc, ws_loop_ctx *lc)
{
    wc->lc = lc;
    wc->adopted = apr_time_now();
    APR_RING_INSERT_TAIL(&lc->conns, wc, websocket_conn, link);
    ws_atomic_inc32(&lc->count);
    if (wc->state == WS_CONN_KEY3) {
        wc->deadline = apr_time_now() + wc->conf.handshake_timeout;
    }
    else {
        ws_conn_open(wc);
    }
    if (wc->state < WS_CONN_DRAINING) {
        ws_conn_read(wc);
    }
    ws_conn_check(wc);
}

static int ws_mpm_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

void ws_conn_going_away(websocket_conn *wc)
{
    if (wc->state == WS_CONN_OPEN
        && ws_session_state(wc->session) == WS_SESSION_OPEN) {
        ws_close_for(wc, WS_CLOSE_GOING_AWAY, "server shutting down");
        ws_conn_kick(wc);
    }
    else if (wc->state == WS_CONN_KEY3) {
        wc->c->aborted = 1;
        ws_conn_kick(wc);
    }
}

/* On a request thread output blocks (FLUSH): WebSocketWriteTimeout
 * bounds each write through the socket's timeout, whatever httpd's
 * Timeout.  An HTTP/2 stream's socket is its connection's: left alone. */
static void ws_blocking_write_timeout(websocket_conn *wc)
{
    if (wc->conf.write_timeout > 0 && wc->c->master == NULL) {
        apr_socket_timeout_set(ap_get_conn_socket(wc->c),
                               wc->conf.write_timeout);
    }
}

/* A private loop: the request's thread runs it until the connection
 * ends, looking for a restart every second. */
static int ws_conn_run_here(websocket_conn *wc, apr_pool_t *p)
{
    ws_loop_ctx *lc = apr_pcalloc(p, sizeof(*lc));

    if (ws_loop_ctx_init(lc, p) != APR_SUCCESS) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, wc->c, "websocket: %s: "
                      "cannot create an event loop", wc->uri);
        ws_conn_abandon(wc);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ws_child_register(lc);
    ws_blocking_write_timeout(wc);
    /* Our own reference: the loop's is let go by a posted task, which may
     * run in the same turn that ends the connection. */
    ws_conn_retain(wc);
    ws_conn_adopt(wc, lc);
    while (wc->state != WS_CONN_DONE) {
        ws_loop_turn(lc->loop, WS_STOP_CHECK);
        if (wc->state == WS_CONN_DONE) {
            break;
        }
        if (ws_mpm_stopping()) {
            ws_conn_going_away(wc);
        }
        else if (wc->c->aborted) {
            /* mod_http2 aborts a reset stream from another thread */
            ws_conn_kick(wc);
        }
    }
    ws_child_unregister(lc);
    /* What was posted before the loop left the registry still runs (and
     * the push of shared messages those deliveries post). */
    do {
        ws_loop_turn(lc->loop, 0);
    } while (lc->flush_posted);
    ws_conn_release(wc);
    return OK;
}

/* An HTTP/2 stream (RFC 8441, mod_http2's H2WebSockets): the 101 goes
 * through httpd's response path, from r->headers_out; mod_http2 checks
 * its Sec-WebSocket-Accept against the key it made up and answers the
 * client's extended CONNECT with :status 200. */
static void ws_answer_h2(websocket_conn *wc)
{
    request_rec *r = wc->r;

    apr_table_overlap(r->headers_out,
                      ws_handshake_headers(r, wc->family, wc->host,
                                           wc->subprotocol),
                      APR_OVERLAP_TABLES_SET);
    ap_send_interim_response(r, 1);
    wc->h2_body_eos = 1;
}

int ws_conn_start(websocket_conn *wc)
{
    request_rec *r = wc->r;
    conn_rec *c = r->connection;
    apr_size_t len;
    const char *answer;

    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = NULL;
    if (c->master != NULL) {
        /* before the request's filters are bypassed below */
        ws_answer_h2(wc);
    }
    /* From now on the answer is ours, written on the connection; the
     * request's own filters must not add an HTTP response. */
    r->output_filters = r->proto_output_filters = c->output_filters;
    c->keepalive = AP_CONN_CLOSE;
    /* The module keeps its own timeouts; mod_reqtimeout's body rate would
     * cut an open WebSocket. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    if (wc->state != WS_CONN_KEY3 && c->master == NULL) {
        answer = ws_handshake_answer(r, wc->family, wc->host,
                                     wc->subprotocol, NULL, &len);
        ws_on_write(wc, answer, len);
    }
    if (!wc->suspended) {
        return ws_conn_run_here(wc, r->pool);
    }
    ap_set_module_config(c->conn_config, &websocket_module, wc);
    return SUSPENDED;
}

