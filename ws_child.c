/* Licensed under the Apache License, Version 2.0.
 *
 * ws_child.c: the loops of an httpd child.  Under an MPM that can suspend
 * connections (event) each child starts WebSocketLoopThreads loop threads
 * at child_init; a suspended WebSocket goes to the least busy one and
 * stays there.  Request threads that run a WebSocket themselves (prefork,
 * worker, HTTP/2) register their private loop here while it lives, so
 * that broadcasts reach them too.  Also here: broadcast with one shared
 * payload, and what happens to open WebSockets when the child stops.
 */
#include <stdlib.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "mpm_common.h"
#include "ws_atomic.h"
#include "apr_thread_proc.h"

#include "ws_conn_private.h"

APLOG_USE_MODULE(websocket);
extern module AP_MODULE_DECLARE_DATA websocket_module;

/* How often a retiring child looks whether the server is going away. */
#define WS_STOP_CHECK    apr_time_from_sec(1)

/* ------------------------------------------------------------------ */
/* The child's loops                                                   */

static struct {
    apr_thread_mutex_t *mutex;   /* guards the registry and foreign posts */
    ws_loop_ctx *shared;         /* array of n_shared */
    int n_shared;
    apr_thread_t **threads;
    ws_loop_ctx *privates;       /* request threads' loops (list) */
} ws_child;

int ws_child_has_loops(void)
{
    return ws_child.n_shared > 0;
}

void ws_child_lock(void)
{
    apr_thread_mutex_lock(ws_child.mutex);
}

void ws_child_unlock(void)
{
    apr_thread_mutex_unlock(ws_child.mutex);
}

/* The least busy loop of the child. */
static ws_loop_ctx *ws_pick_loop(void)
{
    ws_loop_ctx *best = &ws_child.shared[0];
    int i;

    for (i = 1; i < ws_child.n_shared; i++) {
        if (ws_atomic_read32(&ws_child.shared[i].count)
            < ws_atomic_read32(&best->count)) {
            best = &ws_child.shared[i];
        }
    }
    return best;
}

static void *APR_THREAD_FUNC ws_loop_thread(apr_thread_t *thread, void *baton)
{
    ws_loop_ctx *lc = baton;

    ws_loop_run(lc->loop);
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

static void ws_stop_task(void *baton)
{
    ws_loop_stop(baton);
}

/* pchild cleanup: by now every suspended connection has ended (the MPM
 * waits for its connection count), so the loops only have to stop. */
static apr_status_t ws_loops_cleanup(void *unused)
{
    apr_status_t ignored;
    int i;

    (void)unused;
    for (i = 0; i < ws_child.n_shared; i++) {
        ws_loop_post(ws_child.shared[i].loop, ws_stop_task,
                     ws_child.shared[i].loop);
    }
    for (i = 0; i < ws_child.n_shared; i++) {
        apr_thread_join(&ignored, ws_child.threads[i]);
    }
    ws_child.n_shared = 0;
    return APR_SUCCESS;
}

apr_status_t ws_loop_ctx_init(ws_loop_ctx *lc, apr_pool_t *p)
{
    APR_RING_INIT(&lc->conns, websocket_conn, link);
    lc->count = 0;
    lc->topics = apr_hash_make(p);
    lc->dirty = NULL;
    lc->flush_posted = 0;
    return ws_loop_create(&lc->loop, p);
}

void ws_loops_child_init(apr_pool_t *pchild, server_rec *s, int count)
{
    int async = 0, i;
    apr_status_t rv;

    apr_thread_mutex_create(&ws_child.mutex, APR_THREAD_MUTEX_DEFAULT,
                            pchild);
    ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
    if (!async) {
        return;   /* every WebSocket runs on its request's thread */
    }
    ws_child.shared = apr_pcalloc(pchild, count * sizeof(ws_loop_ctx));
    ws_child.threads = apr_pcalloc(pchild, count * sizeof(apr_thread_t *));
    for (i = 0; i < count; i++) {
        rv = ws_loop_ctx_init(&ws_child.shared[i], pchild);
        if (rv == APR_SUCCESS) {
            rv = apr_thread_create(&ws_child.threads[i], NULL,
                                   ws_loop_thread, &ws_child.shared[i],
                                   pchild);
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "websocket: cannot "
                         "start loop thread %d of %d; WebSockets run on "
                         "request threads in this child", i + 1, count);
            break;
        }
        ws_child.n_shared++;
    }
    /* Before pchild's subpools go: each loop thread's pool is one of
     * them, and apr_thread_exit destroys it. */
    apr_pool_pre_cleanup_register(pchild, NULL, ws_loops_cleanup);
}

void ws_child_register(ws_loop_ctx *lc)
{
    apr_thread_mutex_lock(ws_child.mutex);
    lc->next = ws_child.privates;
    ws_child.privates = lc;
    apr_thread_mutex_unlock(ws_child.mutex);
}

void ws_child_unregister(ws_loop_ctx *lc)
{
    ws_loop_ctx **pp;

    apr_thread_mutex_lock(ws_child.mutex);
    for (pp = &ws_child.privates; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == lc) {
            *pp = lc->next;
            break;
        }
    }
    apr_thread_mutex_unlock(ws_child.mutex);
}

/* Post fn(lc, arg) to every loop of the child, shared and private
 * (caller holds ws_child.mutex). */
typedef struct ws_loop_call {
    ws_loop_ctx *lc;
    void (*fn)(ws_loop_ctx *lc, void *arg);
    void *arg;
} ws_loop_call;

static void ws_loop_call_run(void *baton)
{
    ws_loop_call *call = baton;

    call->fn(call->lc, call->arg);
    free(call);
}

static void ws_post_to(ws_loop_ctx *lc, void (*fn)(ws_loop_ctx *, void *),
                       void *arg)
{
    ws_loop_call *call = malloc(sizeof(*call));

    if (call == NULL) {
        return;
    }
    call->lc = lc;
    call->fn = fn;
    call->arg = arg;
    if (ws_loop_post(lc->loop, ws_loop_call_run, call) != APR_SUCCESS) {
        free(call);
    }
}

static void ws_post_everywhere(void (*fn)(ws_loop_ctx *, void *),
                               void *(*arg_for)(void *), void *arg)
{
    ws_loop_ctx *lc;
    int i;

    for (i = 0; i < ws_child.n_shared; i++) {
        ws_post_to(&ws_child.shared[i], fn, arg_for(arg));
    }
    for (lc = ws_child.privates; lc != NULL; lc = lc->next) {
        ws_post_to(lc, fn, arg_for(arg));
    }
}

static void ws_adopt(ws_loop_ctx *lc, void *wc)
{
    ws_conn_adopt(wc, lc);
}

void ws_conn_suspended(conn_rec *c)
{
    websocket_conn *wc = ap_get_module_config(c->conn_config,
                                              &websocket_module);

    if (wc == NULL) {
        return;
    }
    ap_set_module_config(c->conn_config, &websocket_module, NULL);
    /* The MPM forgets the scoreboard handle too; nothing of ours may
     * use the worker's slot from the loop. */
    c->sbh = NULL;
    ws_post_to(ws_pick_loop(), ws_adopt, wc);
}

/* ------------------------------------------------------------------ */
/* Broadcast: one shared copy of the payload                           */

static void ws_shared_free(ws_shared *sh)
{
    if (ws_atomic_dec32(&sh->refs) == 0) {
        free(sh);
    }
}

/* The heap bucket's free function: data points into a ws_shared. */
static void ws_shared_release(void *data)
{
    ws_shared_free((ws_shared *)((char *)data
                                 - APR_OFFSETOF(ws_shared, data)));
}

ws_shared *ws_shared_create(int type, const char *data, apr_size_t len,
                            const char *topic, apr_size_t topic_len)
{
    ws_shared *sh;

    if (type != WEBSOCKET_TEXT && type != WEBSOCKET_BINARY) {
        return NULL;
    }
    sh = malloc(sizeof(*sh) + len + topic_len + 1);
    if (sh == NULL) {
        return NULL;
    }
    sh->refs = 1;
    sh->type = type;
    sh->loc = NULL;
    sh->len = len;
    if (len > 0) {
        memcpy(sh->data, data, len);
    }
    sh->topic = sh->data + len + 1;
    sh->topic_len = topic_len;
    memcpy(sh->data + len + 1, topic, topic_len);
    sh->data[len + 1 + topic_len] = '\0';
    return sh;
}

void ws_shared_unref(ws_shared *sh)
{
    ws_shared_free(sh);
}

static void *ws_shared_ref(void *arg)
{
    ws_shared *sh = arg;

    ws_atomic_inc32(&sh->refs);
    return sh;
}

/* Push what the shared messages queued on the loop's connections: once
 * per connection for all the deliveries that ran before, so that a
 * burst of messages goes out in one write. */
static void ws_flush_dirty(void *baton)
{
    ws_loop_ctx *lc = baton;
    websocket_conn *wc;

    lc->flush_posted = 0;
    while ((wc = lc->dirty) != NULL) {
        lc->dirty = wc->dirty_next;
        wc->dirty = 0;
        ws_conn_kick(wc);
        ws_conn_release(wc);
    }
}

static void ws_mark_dirty(websocket_conn *wc)
{
    ws_loop_ctx *lc = wc->lc;

    if (!wc->dirty) {
        wc->dirty = 1;
        ws_conn_retain(wc);
        wc->dirty_next = lc->dirty;
        lc->dirty = wc;
    }
    if (!lc->flush_posted
        && ws_loop_post(lc->loop, ws_flush_dirty, lc) == APR_SUCCESS) {
        lc->flush_posted = 1;
    }
}

void ws_shared_send(websocket_conn *wc, ws_shared *sh)
{
    ws_atomic_inc32(&sh->refs);
    if (ws_conn_send_shared(wc, sh->type, sh->data, sh->len,
                            ws_shared_release)) {
        ws_mark_dirty(wc);
    }
    else {
        ws_atomic_dec32(&sh->refs);   /* never the last: the caller's */
    }
}

void ws_child_deliver(void (*fn)(ws_loop_ctx *lc, void *sh), ws_shared *sh)
{
    apr_thread_mutex_lock(ws_child.mutex);
    ws_post_everywhere(fn, ws_shared_ref, sh);
    apr_thread_mutex_unlock(ws_child.mutex);
}

/* On each loop: every connection of the location gets the message. */
static void ws_deliver(ws_loop_ctx *lc, void *arg)
{
    ws_shared *sh = arg;
    websocket_conn *wc;

    for (wc = APR_RING_FIRST(&lc->conns);
         wc != APR_RING_SENTINEL(&lc->conns, websocket_conn, link);
         wc = APR_RING_NEXT(wc, link)) {
        if (wc->loc == sh->loc) {
            ws_shared_send(wc, sh);
        }
    }
    ws_shared_unref(sh);
}

int ws_conn_broadcast(websocket_conn *wc, int type, const char *data,
                      apr_size_t len)
{
    ws_shared *sh = ws_shared_create(type, data, len, "", 0);

    if (sh == NULL) {
        return 0;
    }
    sh->loc = wc->loc;
    ws_child_deliver(ws_deliver, sh);
    ws_shared_unref(sh);
    return (int)ws_atomic_read32(&wc->loc->open);
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

/* Close every open WebSocket of the loop with 1001. */
static void ws_close_all_task(ws_loop_ctx *lc, void *unused)
{
    websocket_conn *wc;

    (void)unused;
    for (wc = APR_RING_FIRST(&lc->conns);
         wc != APR_RING_SENTINEL(&lc->conns, websocket_conn, link);
         wc = APR_RING_NEXT(wc, link)) {
        ws_conn_going_away(wc);
    }
}

static void ws_close_all_shared(void)
{
    int i;

    apr_thread_mutex_lock(ws_child.mutex);
    for (i = 0; i < ws_child.n_shared; i++) {
        ws_post_to(&ws_child.shared[i], ws_close_all_task, NULL);
    }
    apr_thread_mutex_unlock(ws_child.mutex);
}

/* A graceful child stop is a restart (new generation), a graceful stop
 * of the server (the parent removed its pid file), or the parent
 * retiring a surplus child; only the last leaves WebSockets open. */
static int ws_server_going_away(void)
{
    int generation = 0;
    apr_finfo_t finfo;
    apr_pool_t *p;
    int gone;

    ap_mpm_query(AP_MPMQ_GENERATION, &generation);
    if (ap_scoreboard_image == NULL || ap_pid_fname == NULL
        || ap_scoreboard_image->global->running_generation != generation) {
        return 1;
    }
    apr_pool_create(&p, NULL);
    gone = apr_stat(&finfo, ap_server_root_relative(p, ap_pid_fname),
                    APR_FINFO_TYPE, p) != APR_SUCCESS;
    apr_pool_destroy(p);
    return gone;
}

static void ws_retire_check(void *baton);

static ws_timer ws_retire_timer = { 0, 0, ws_retire_check, NULL };

/* On the first loop, every second while the child retires. */
static void ws_retire_check(void *baton)
{
    (void)baton;
    if (ws_server_going_away()) {
        ws_close_all_shared();
        return;
    }
    ws_timer_set(ws_child.shared[0].loop, &ws_retire_timer,
                 apr_time_now() + WS_STOP_CHECK);
}

static void ws_retire_task(void *baton)
{
    ws_retire_check(baton);
}

void ws_loops_child_stopping(int graceful)
{
    if (ws_child.n_shared == 0) {
        return;
    }
    if (graceful) {
        ws_loop_post(ws_child.shared[0].loop, ws_retire_task, NULL);
    }
    else {
        ws_close_all_shared();
    }
}
