/* Licensed under the Apache License, Version 2.0.
 *
 * lifecycle: a test-only plugin (t/hostile.t, t/restart.t, t/lifecycle.t,
 * t/flow_control.t).  It echoes
 * like the echo plugin and logs every callback at level notice, with the
 * client's port as the connection's id:
 *
 *     lifecycle: on_open <id>
 *     lifecycle: on_close <code> (id <id>)
 *     lifecycle: on_disconnect <id>
 *
 * on_disconnect logs every call: its state is not freed there but when
 * the connection's pool goes, so that a second call (a bug the tests look
 * for) is counted instead of crashing the child.
 *
 * Six messages are commands instead of being echoed:
 *
 *   "send-after-gone"  retains the connection and starts a thread that
 *                      waits until on_disconnect has run, then calls
 *                      server->send on the dead connection (expected:
 *                      APR_ECONNABORTED), logs
 *                      "lifecycle: send-after-gone <id>: status <n> (<text>)"
 *                      and releases it.
 *   "subprotocol-after-gone"
 *                      the same, but the thread waits until the
 *                      connection's pool (so the upgrade request's pool
 *                      too) has been cleaned up, then calls
 *                      server->subprotocol and logs
 *                      "lifecycle: subprotocol-after-gone <id>: '<name>'".
 *   "flood-me N"       starts a thread that sends N text messages of
 *                      1 KiB ("<i>:fff...") from that thread (not the
 *                      owner), stopping at the first failure.  It waits
 *                      while server->pending() is 128K or more, but sends
 *                      anyway once nothing has drained for 1 s (a stalled
 *                      reader); it logs "lifecycle: flood <id>: sent <k>
 *                      of <N>: status <n> (<text>)" (plus
 *                      " APR_ECONNABORTED" when it was that), then
 *                      "lifecycle: flood <id>: <p> bytes pending before
 *                      the failed send" with server->pending() just before
 *                      the send that failed.
 *   "close"            calls server->close(conn, 1000, "as asked") at once
 *                      (from the owner, in on_message).
 *   "slow N"           from then on, every message takes the plugin N
 *                      microseconds (it sleeps) before it is echoed: a
 *                      client can then send faster than it is served.
 *   "pause N"          calls server->pause_reading(conn, 1), answers
 *                      "paused", and starts a thread that resumes
 *                      reading (pause_reading(conn, 0)) N seconds later
 *                      (or at on_disconnect) and logs
 *                      "lifecycle: resumed <id>: status <n>".
 *
 * Threads are joinable APR threads with pools of their own; finished ones
 * are joined (and their pools freed) whenever a new one starts.
 */
#include <stdlib.h>
#include <string.h>

#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_atomic.h"
#include "apr_pools.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#define LC_NOTICE APLOG_MARK, APLOG_NOTICE

/* Per-connection state, shared with the threads the connection started:
 * one reference is the connection pool's (dropped by its cleanup), one
 * each thread's; freed at the last unref. */
typedef struct lc_state {
    apr_pool_t *pool;
    apr_thread_mutex_t *mutex;
    apr_thread_cond_t *cond;
    int disconnected;                  /* on_disconnect has run */
    int conn_pool_gone;                /* the connection's pool cleanup */
    apr_uint32_t refs;
    unsigned int id;                   /* client port */
    server_rec *s;                     /* for logging without a request */
    long slow_usec;                    /* "slow N" (owner thread only) */
} lc_state;

typedef struct lc_job lc_job;
typedef void (*lc_job_fn)(lc_job *job);

struct lc_job {
    lc_job *next;
    apr_pool_t *pool;
    apr_thread_t *thread;
    volatile apr_uint32_t done;
    lc_job_fn fn;
    const websocket_server *server;
    websocket_conn *conn;              /* retained */
    lc_state *state;                   /* one reference */
    server_rec *s;                     /* for logging off the owner */
    long count;                        /* flood-me N, pause N */
};

/* The plugin's own threads, across connections of this child. */
static apr_pool_t *lc_pool;
static apr_thread_mutex_t *lc_jobs_mutex;
static lc_job *lc_jobs;

static void lc_state_unref(lc_state *st)
{
    if (apr_atomic_dec32(&st->refs) == 0) {
        apr_pool_destroy(st->pool);
    }
}

static lc_state *lc_state_get(const websocket_server *server,
                              websocket_conn *conn)
{
    return server->data_get(conn);
}

static unsigned int lc_id(const websocket_server *server,
                          websocket_conn *conn)
{
    lc_state *st = lc_state_get(server, conn);

    return st ? st->id : 0;
}

static void *APR_THREAD_FUNC lc_job_main(apr_thread_t *thread, void *data)
{
    lc_job *job = data;

    job->fn(job);
    job->server->release(job->conn);
    lc_state_unref(job->state);
    apr_atomic_set32(&job->done, 1);
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

/* Join and free the threads that have finished (lc_jobs_mutex held). */
static void lc_reap(void)
{
    lc_job **pp = &lc_jobs;

    while (*pp != NULL) {
        lc_job *job = *pp;

        if (apr_atomic_read32(&job->done)) {
            apr_status_t ignored;

            *pp = job->next;
            apr_thread_join(&ignored, job->thread);
            apr_pool_destroy(job->pool);
        }
        else {
            pp = &job->next;
        }
    }
}

static void lc_start_job(const websocket_server *server, websocket_conn *conn,
                         lc_job_fn fn, long count)
{
    request_rec *r = server->request(conn);
    lc_state *st = lc_state_get(server, conn);
    apr_pool_t *pool;
    lc_job *job;
    apr_status_t rv;

    apr_pool_create_unmanaged_ex(&pool, NULL, NULL);
    job = apr_pcalloc(pool, sizeof(*job));
    job->pool = pool;
    job->fn = fn;
    job->server = server;
    job->conn = conn;
    job->state = st;
    job->s = r->server;
    job->count = count;
    server->retain(conn);
    apr_atomic_inc32(&st->refs);

    apr_thread_mutex_lock(lc_jobs_mutex);
    lc_reap();
    rv = apr_thread_create(&job->thread, NULL, lc_job_main, job, pool);
    if (rv == APR_SUCCESS) {
        job->next = lc_jobs;
        lc_jobs = job;
    }
    apr_thread_mutex_unlock(lc_jobs_mutex);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "lifecycle: cannot start a thread");
        server->release(conn);
        lc_state_unref(st);
        apr_pool_destroy(pool);
    }
}

/* Sets *flag (one of st's) and wakes the threads waiting for it. */
static void lc_signal(lc_state *st, int *flag)
{
    apr_thread_mutex_lock(st->mutex);
    *flag = 1;
    apr_thread_cond_broadcast(st->cond);
    apr_thread_mutex_unlock(st->mutex);
}

/* Waits until *flag (one of st's) is set or timeout has passed; non-zero
 * when it is set. */
static int lc_wait_for(lc_state *st, const int *flag,
                       apr_interval_time_t timeout)
{
    apr_time_t deadline = apr_time_now() + timeout;
    int set;

    apr_thread_mutex_lock(st->mutex);
    while (!*flag && apr_time_now() < deadline) {
        apr_thread_cond_timedwait(st->cond, st->mutex,
                                  apr_time_from_msec(200));
    }
    set = *flag;
    apr_thread_mutex_unlock(st->mutex);
    return set;
}

static int lc_wait_disconnect(lc_state *st, apr_interval_time_t timeout)
{
    return lc_wait_for(st, &st->disconnected, timeout);
}

/* Waits (at most 60 s) until on_disconnect has run, then sends. */
static void lc_send_after_gone(lc_job *job)
{
    lc_state *st = job->state;
    apr_status_t rv;
    char err[128];

    if (!lc_wait_disconnect(st, apr_time_from_sec(60))) {
        ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: send-after-gone %u: "
                     "on_disconnect did not come within 60 s", st->id);
        return;
    }
    rv = job->server->send(job->conn, WEBSOCKET_TEXT, "too late", 8);
    ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: send-after-gone %u: "
                 "status %d (%s)%s", st->id, rv,
                 apr_strerror(rv, err, sizeof(err)),
                 APR_STATUS_IS_ECONNABORTED(rv) ? " APR_ECONNABORTED" : "");
}

/* Waits (at most 60 s) until the connection's pool has been cleaned up
 * (the request's pool is gone by then), then asks for the subprotocol. */
static void lc_subprotocol_after_gone(lc_job *job)
{
    lc_state *st = job->state;
    const char *name;
    char copy[64];
    apr_size_t len;

    if (!lc_wait_for(st, &st->conn_pool_gone, apr_time_from_sec(60))) {
        ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: subprotocol-after-"
                     "gone %u: the connection did not end within 60 s",
                     st->id);
        return;
    }
    /* Read here, in the plugin (built with the sanitizers when the
     * module is), rather than inside the logger. */
    name = job->server->subprotocol(job->conn);
    len = name ? strlen(name) : 0;
    len = len < sizeof(copy) - 1 ? len : sizeof(copy) - 1;
    memcpy(copy, name ? name : "", len);
    copy[len] = '\0';
    ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: subprotocol-after-gone "
                 "%u: '%s'", st->id, copy);
}

/* "pause N": resumes reading the client N seconds later. */
static void lc_resume_later(lc_job *job)
{
    apr_status_t rv;

    lc_wait_disconnect(job->state, apr_time_from_sec(job->count));
    rv = job->server->pause_reading(job->conn, 0);
    ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: resumed %u: status %d",
                 job->state->id, rv);
}

/* A producer that paces itself on server->pending() like a polite one,
 * but not forever: once nothing has drained for LC_FLOOD_PATIENCE (the
 * reader has stalled) it stops waiting and sends as fast as it can, as a
 * careless producer would. */
#define LC_FLOOD_HIGH      (128 * 1024)
#define LC_FLOOD_PATIENCE  apr_time_from_sec(1)

static void lc_flood(lc_job *job)
{
    char msg[1024];
    long i;
    apr_status_t rv = APR_SUCCESS;
    apr_size_t pending = 0;
    int careless = 0;
    char err[128];

    memset(msg, 'f', sizeof(msg));
    for (i = 0; i < job->count; i++) {
        apr_time_t since = apr_time_now();
        apr_size_t last = job->server->pending(job->conn);
        int n;

        while (!careless
               && (pending = job->server->pending(job->conn))
                  >= LC_FLOOD_HIGH) {
            if (apr_time_now() - since >= LC_FLOOD_PATIENCE) {
                careless = 1;
                break;
            }
            if (pending < last) {
                since = apr_time_now();
            }
            last = pending;
            apr_sleep(apr_time_from_msec(1));
        }
        n = apr_snprintf(msg, sizeof(msg), "%ld:", i);
        msg[n] = 'f';
        /* Only the owner takes from the queue: what it holds when the
         * send fails is at most this. */
        pending = job->server->pending(job->conn);
        rv = job->server->send(job->conn, WEBSOCKET_TEXT, msg, sizeof(msg));
        if (rv != APR_SUCCESS) {
            break;
        }
    }
    ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: flood %u: sent %ld of "
                 "%ld: status %d (%s)%s", job->state->id, i, job->count, rv,
                 apr_strerror(rv, err, sizeof(err)),
                 APR_STATUS_IS_ECONNABORTED(rv) ? " APR_ECONNABORTED" : "");
    if (rv != APR_SUCCESS) {
        ap_log_error(LC_NOTICE, 0, job->s, "lifecycle: flood %u: %"
                     APR_SIZE_T_FMT " bytes pending before the failed send",
                     job->state->id, pending);
    }
}

/* ------------------------------------------------------------------ */

/* The connection's pool is cleaned up: after on_disconnect, and after the
 * upgrade request's pool is gone. */
static apr_status_t lc_conn_pool_cleanup(void *data)
{
    lc_state *st = data;

    lc_signal(st, &st->conn_pool_gone);
    lc_state_unref(st);
    return APR_SUCCESS;
}

static int lc_on_connect(const websocket_server *server, websocket_conn *conn)
{
    request_rec *r = server->request(conn);
    apr_pool_t *pool;
    lc_state *st;

    apr_pool_create_unmanaged_ex(&pool, NULL, NULL);
    st = apr_pcalloc(pool, sizeof(*st));
    st->pool = pool;
    st->refs = 1;
    st->id = r->connection->client_addr
        ? r->connection->client_addr->port : 0;
    st->s = r->server;
    apr_thread_mutex_create(&st->mutex, APR_THREAD_MUTEX_DEFAULT, pool);
    apr_thread_cond_create(&st->cond, pool);
    apr_pool_cleanup_register(r->connection->pool, st, lc_conn_pool_cleanup,
                              apr_pool_cleanup_null);
    server->data_set(conn, st);
    if (server->subprotocol_count(conn) > 0) {
        server->subprotocol_set(conn, server->subprotocol_offered(conn, 0));
    }
    return OK;
}

static void lc_on_open(const websocket_server *server, websocket_conn *conn)
{
    ap_log_rerror(LC_NOTICE, 0, server->request(conn),
                  "lifecycle: on_open %u", lc_id(server, conn));
}

/* "<command> N": non-zero, with N in *n, when the message is that. */
static int lc_command(int type, const char *data, apr_size_t len,
                      const char *command, long *n)
{
    apr_size_t clen = strlen(command);
    char num[32];

    if (type != WEBSOCKET_TEXT || len <= clen || len - clen >= sizeof(num)
        || memcmp(data, command, clen)) {
        return 0;
    }
    memcpy(num, data + clen, len - clen);
    num[len - clen] = '\0';
    *n = atol(num);
    return 1;
}

static void lc_on_message(const websocket_server *server,
                          websocket_conn *conn, int type, const char *data,
                          apr_size_t len)
{
    lc_state *st = lc_state_get(server, conn);
    long n;

    if (st != NULL && st->slow_usec > 0) {
        apr_sleep(st->slow_usec);
    }
    if (type == WEBSOCKET_TEXT && len == 15
        && !memcmp(data, "send-after-gone", 15)) {
        lc_start_job(server, conn, lc_send_after_gone, 0);
    }
    else if (type == WEBSOCKET_TEXT && len == 22
             && !memcmp(data, "subprotocol-after-gone", 22)) {
        lc_start_job(server, conn, lc_subprotocol_after_gone, 0);
    }
    else if (type == WEBSOCKET_TEXT && len == 5
             && !memcmp(data, "close", 5)) {
        server->close(conn, 1000, "as asked");
    }
    else if (st != NULL && lc_command(type, data, len, "slow ", &n)) {
        st->slow_usec = n;
    }
    else if (lc_command(type, data, len, "flood-me ", &n)) {
        lc_start_job(server, conn, lc_flood, n);
    }
    else if (lc_command(type, data, len, "pause ", &n)) {
        server->pause_reading(conn, 1);
        server->send(conn, WEBSOCKET_TEXT, "paused", 6);
        lc_start_job(server, conn, lc_resume_later, n);
    }
    else {
        server->send(conn, type, data, len);
    }
}

static void lc_on_close(const websocket_server *server, websocket_conn *conn,
                        int code, const char *reason, apr_size_t len)
{
    (void)reason;
    (void)len;
    ap_log_rerror(LC_NOTICE, 0, server->request(conn),
                  "lifecycle: on_close %d (id %u)", code,
                  lc_id(server, conn));
}

/* Logs every call (and touches nothing a call frees). */
static void lc_on_disconnect(const websocket_server *server,
                             websocket_conn *conn)
{
    lc_state *st = lc_state_get(server, conn);

    if (st == NULL) {
        ap_log_rerror(LC_NOTICE, 0, server->request(conn),
                      "lifecycle: on_disconnect without on_connect");
        return;
    }
    ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: on_disconnect %u", st->id);
    lc_signal(st, &st->disconnected);
}

static websocket_plugin lc_plugin = {
    sizeof(websocket_plugin),
    WEBSOCKET_PLUGIN_VERSION,
    lc_on_connect,
    lc_on_open,
    lc_on_message,
    lc_on_close,
    lc_on_disconnect,
    NULL                /* destroy */
};

websocket_plugin *lifecycle_init(void)
{
    /* Called in the parent at each configuration load; the pool and the
     * mutex are made once and inherited by the children. */
    if (lc_pool == NULL) {
        apr_pool_create_unmanaged_ex(&lc_pool, NULL, NULL);
        apr_thread_mutex_create(&lc_jobs_mutex, APR_THREAD_MUTEX_DEFAULT,
                                lc_pool);
    }
    return &lc_plugin;
}
