/* Licensed under the Apache License, Version 2.0.
 *
 * lifecycle: a test-only plugin (t/hostile.t, t/restart.t, t/lifecycle.t,
 * t/flow_control.t, t/timers.t and the loop tests).  It echoes like the
 * echo plugin (send results ignored) and logs every callback at level
 * notice, with the client's port as the connection's id:
 *
 *     lifecycle: on_open <id>
 *     lifecycle: on_close <code> (id <id>)
 *     lifecycle: on_disconnect <id>
 *
 * on_disconnect logs every call: the connection's state is not freed
 * there but by a cleanup of the connection's pool (registered in
 * on_connect; the module destroys that pool after on_disconnect), so
 * that a second call (a bug the tests look for) is counted instead of
 * crashing the child.
 *
 * Send results are logged as "status <n> (<name>)": 0 WEBSOCKET_SEND_OK,
 * 1 WEBSOCKET_SEND_FULL, 2 WEBSOCKET_SEND_CLOSED (followed by
 * " APR_ECONNABORTED", the word the tests of API v1 look for),
 * 3 WEBSOCKET_SEND_INVALID.
 *
 * These text messages are commands instead of being echoed.  On the
 * connection's loop:
 *
 *   "timer N"          a one-shot timer of N ms, which sends
 *                      "timer fired" ("timer refused" if timer_add
 *                      failed).
 *   "every N"          a repeating timer of N ms (N >= 1) that sends
 *                      "tick 1", "tick 2", "tick 3" and cancels itself
 *                      after the third.
 *   "watch"            makes a non-blocking pipe, watches its read end
 *                      for APR_POLLIN, writes a byte to it from the loop;
 *                      the watch's function reads it, sends "watch fired",
 *                      removes the watch and closes both ends.
 *   "subscribe T"      subscribes to topic T, answers "subscribed T" (or
 *                      "subscribe failed <status>").
 *   "unsubscribe T"    leaves topic T, answers "unsubscribed T".
 *   "publish T TEXT"   publishes TEXT to topic T (no answer).
 *   "watch socket"     the same with a socketpair (APR_POLL_SOCKET).
 *                      Either sends "watch refused" if it cannot be set
 *                      up; if the watch ever reports something other
 *                      than APR_POLLIN it sends "watch events <n>".
 *   "loopid"           answers "loop <tid>", the id of the thread running
 *                      the callback (the kernel's thread id on Linux).
 *   "close"            calls server->close(conn, 1000, "as asked") at once,
 *                      in on_message.
 *   "slow N"           from then on, every message of this connection
 *                      takes the plugin N microseconds (it sleeps in
 *                      on_message, before handling it): a client can then
 *                      send faster than it is served.  The sleep blocks
 *                      the loop thread, so the other connections of that
 *                      loop wait too (a test plugin may; a real one must
 *                      not).
 *
 * From a thread of the plugin's own (a plain APR thread; conn retained):
 *
 *   "post"             the thread calls server->post(conn, fn, baton),
 *                      then server->send(conn, "sent from thread").  fn
 *                      runs on the loop, sends "posted from <tid>" (<tid>:
 *                      the posting thread's id) and frees the baton.  The
 *                      client gets "posted from <tid>" first, then "sent
 *                      from thread" (one thread's posts and sends keep
 *                      their order).  Logged by the thread:
 *                      "lifecycle: post <id>: post status <n>, send
 *                      status <n> (<name>)", and by fn:
 *                      "lifecycle: posted <id>: from <tid> ran on <tid2>:
 *                      status <n> (<name>)".
 *   "close-from-thread"  the thread calls server->close(conn, 4000,
 *                      "closed from thread") and logs
 *                      "lifecycle: close-from-thread <id>: status <n>".
 *   "send-after-gone"  the thread waits until on_disconnect has run, then
 *                      calls server->send on the dead connection
 *                      (expected: WEBSOCKET_SEND_CLOSED) and logs
 *                      "lifecycle: send-after-gone <id>: status <n>
 *                      (<name>)[ APR_ECONNABORTED]"; then server->post
 *                      (expected: APR_ECONNABORTED, fn never runs) and logs
 *                      "lifecycle: post-after-gone <id>: status <n>
 *                      (<text>)" (fn would log "lifecycle: post-after-gone
 *                      <id>: fn ran").
 *   "subprotocol-after-gone"
 *                      the thread waits until the cleanup of the
 *                      connection's pool has run (after on_disconnect;
 *                      the upgrade request's pool is long gone), then
 *                      calls server->subprotocol on the retained
 *                      connection and logs
 *                      "lifecycle: subprotocol-after-gone <id>: '<name>'"
 *                      ('' for none).
 *   "flood-me N"       the thread sends N text messages of 1 KiB
 *                      ("<i>:fff...") and stops at the first one refused
 *                      (WEBSOCKET_SEND_FULL is not a refusal: the message
 *                      was queued).  It waits while server->pending() is
 *                      128K or more, but sends anyway once nothing has
 *                      drained for 1 s (a stalled reader); it logs
 *                      "lifecycle: flood <id>: sent <k> of <N>: status
 *                      <n> (<name>)[ APR_ECONNABORTED], <f> full" where
 *                      status is that of the refused send (0 if none was)
 *                      and <f> counts the sends that answered FULL.  When
 *                      a send was refused it then logs "lifecycle: flood
 *                      <id>: <p> bytes pending before the failed send",
 *                      <p> being server->pending() read just before that
 *                      send (only this thread adds to the queue).
 *   "pause N"          calls server->pause_reading(conn, 1) on the loop,
 *                      answers "paused", and starts a thread that, N
 *                      seconds later (or at on_disconnect), posts to the
 *                      loop a function that resumes reading
 *                      (pause_reading(conn, 0), which is loop-only) and
 *                      logs "lifecycle: resumed <id>: status <n>" (the
 *                      thread logs that line itself, with the post's
 *                      status, if the post fails).
 *
 * Threads are joinable APR threads with pools of their own; finished ones
 * are joined (and their pools freed) whenever a new one starts.  Timers
 * and watches end with the connection (the module ends them); the plugin
 * frees what it keeps for them in on_disconnect (emptying its lists, so
 * that a second call finds nothing to free).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "websocket_plugin.h"

#include "http_log.h"
#include "apr_atomic.h"
#include "apr_file_io.h"
#include "apr_network_io.h"
#include "apr_portable.h"
#include "apr_pools.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#define LC_NOTICE APLOG_MARK, APLOG_NOTICE

typedef struct lc_tick lc_tick;
typedef struct lc_watch lc_watch;

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
    server_rec *s;                     /* for logging off the loop */
    /* Loop only: */
    long slow_usec;                    /* "slow N" */
    lc_tick *ticks;                    /* "every N" timers still running */
    lc_watch *watches;                 /* "watch" watches not yet fired */
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
    long count;                        /* flood-me N, pause N */
};

/* The baton of a posted function: what it needs without touching the
 * connection's state (it may run after on_disconnect). */
typedef struct lc_note {
    unsigned int id;
    server_rec *s;
    unsigned long from;                /* the posting thread */
    apr_size_t len;
    char text[64];
} lc_note;

/* The plugin's own threads, across connections of this child. */
static apr_pool_t *lc_pool;
static apr_thread_mutex_t *lc_jobs_mutex;
static lc_job *lc_jobs;

/* The calling thread, as a number: the kernel's thread id on Linux. */
static unsigned long lc_thread_id(void)
{
#if defined(__linux__) && defined(SYS_gettid)
    return (unsigned long)syscall(SYS_gettid);
#else
    return (unsigned long)(apr_uintptr_t)apr_os_thread_current();
#endif
}

static const char *lc_send_name(websocket_send_result rv)
{
    switch (rv) {
    case WEBSOCKET_SEND_OK:      return "WEBSOCKET_SEND_OK";
    case WEBSOCKET_SEND_FULL:    return "WEBSOCKET_SEND_FULL";
    case WEBSOCKET_SEND_CLOSED:  return "WEBSOCKET_SEND_CLOSED";
    case WEBSOCKET_SEND_INVALID: return "WEBSOCKET_SEND_INVALID";
    }
    return "unknown";
}

/* What the tests of API v1 looked for when a send found the connection
 * gone. */
static const char *lc_send_suffix(websocket_send_result rv)
{
    return rv == WEBSOCKET_SEND_CLOSED ? " APR_ECONNABORTED" : "";
}

static void lc_send_text(const websocket_server *server,
                         websocket_conn *conn, const char *text)
{
    server->send(conn, WEBSOCKET_TEXT, text, strlen(text));
}

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

static lc_note *lc_note_new(lc_state *st)
{
    lc_note *n = calloc(1, sizeof(*n));

    if (n != NULL) {
        n->id = st->id;
        n->s = st->s;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* The plugin's threads                                                */

static void *APR_THREAD_FUNC lc_job_main(apr_thread_t *thread, void *data)
{
    lc_job *job = data;

    job->fn(job);
    job->server->release(job->conn);
    lc_state_unref(job->state);
    apr_atomic_set32(&job->done, 1);
    /* Returning ends the thread as apr_thread_exit would (APR >= 1.7),
     * without the pthread_exit unwinding that ASan misreports. */
    (void)thread;
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

/* Loop: starts fn(job) on a thread of its own, with conn retained. */
static void lc_start_job(const websocket_server *server, websocket_conn *conn,
                         lc_job_fn fn, long count)
{
    lc_state *st = lc_state_get(server, conn);
    apr_pool_t *pool;
    lc_job *job;
    apr_status_t rv;

    if (st == NULL) {
        return;
    }
    apr_pool_create_unmanaged_ex(&pool, NULL, NULL);
    job = apr_pcalloc(pool, sizeof(*job));
    job->pool = pool;
    job->fn = fn;
    job->server = server;
    job->conn = conn;
    job->state = st;
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
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, st->s,
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

/* Waits until on_disconnect has run or timeout has passed; non-zero when
 * the connection is gone. */
static int lc_wait_disconnect(lc_state *st, apr_interval_time_t timeout)
{
    return lc_wait_for(st, &st->disconnected, timeout);
}

/* Posted by send-after-gone: must never run. */
static void lc_late_post(const websocket_server *server, websocket_conn *conn,
                         void *baton)
{
    lc_note *n = baton;

    (void)server;
    (void)conn;
    ap_log_error(LC_NOTICE, 0, n->s, "lifecycle: post-after-gone %u: fn ran",
                 n->id);
    free(n);
}

/* "send-after-gone": waits (at most 60 s) until on_disconnect has run,
 * then sends and posts. */
static void lc_send_after_gone(lc_job *job)
{
    lc_state *st = job->state;
    websocket_send_result rv;
    apr_status_t prv;
    lc_note *n;
    char err[128];

    if (!lc_wait_disconnect(st, apr_time_from_sec(60))) {
        ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: send-after-gone %u: "
                     "on_disconnect did not come within 60 s", st->id);
        return;
    }
    rv = job->server->send(job->conn, WEBSOCKET_TEXT, "too late", 8);
    ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: send-after-gone %u: "
                 "status %d (%s)%s", st->id, (int)rv, lc_send_name(rv),
                 lc_send_suffix(rv));

    if ((n = lc_note_new(st)) == NULL) {
        return;
    }
    prv = job->server->post(job->conn, lc_late_post, n);
    if (prv != APR_SUCCESS) {
        free(n);
    }
    ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: post-after-gone %u: "
                 "status %d (%s)", st->id, prv,
                 apr_strerror(prv, err, sizeof(err)));
}

/* "subprotocol-after-gone": waits (at most 60 s) until the connection's
 * pool has been cleaned up, then asks for the subprotocol. */
static void lc_subprotocol_after_gone(lc_job *job)
{
    lc_state *st = job->state;
    const char *name;
    char copy[64];
    apr_size_t len;

    if (!lc_wait_for(st, &st->conn_pool_gone, apr_time_from_sec(60))) {
        ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: subprotocol-after-"
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
    ap_log_error(LC_NOTICE, 0, st->s, "lifecycle: subprotocol-after-gone "
                 "%u: '%s'", st->id, copy);
}

/* "pause N", on the loop: resumes reading. */
static void lc_resume(const websocket_server *server, websocket_conn *conn,
                      void *baton)
{
    lc_note *n = baton;
    apr_status_t rv = server->pause_reading(conn, 0);

    ap_log_error(LC_NOTICE, 0, n->s, "lifecycle: resumed %u: status %d",
                 n->id, rv);
    free(n);
}

/* "pause N", on the plugin's thread: N seconds later (or at
 * on_disconnect) has the loop resume reading. */
static void lc_resume_later(lc_job *job)
{
    lc_note *n;
    apr_status_t rv;

    lc_wait_disconnect(job->state, apr_time_from_sec(job->count));
    if ((n = lc_note_new(job->state)) == NULL) {
        return;
    }
    rv = job->server->post(job->conn, lc_resume, n);
    if (rv != APR_SUCCESS) {
        ap_log_error(LC_NOTICE, 0, n->s, "lifecycle: resumed %u: status %d",
                     n->id, rv);
        free(n);
    }
}

/* "post", on the loop: sends what the thread wrote in the note. */
static void lc_posted(const websocket_server *server, websocket_conn *conn,
                      void *baton)
{
    lc_note *n = baton;
    websocket_send_result rv = server->send(conn, WEBSOCKET_TEXT, n->text,
                                            n->len);

    ap_log_error(LC_NOTICE, 0, n->s, "lifecycle: posted %u: from %lu ran on "
                 "%lu: status %d (%s)", n->id, n->from, lc_thread_id(),
                 (int)rv, lc_send_name(rv));
    free(n);
}

/* "post", on the plugin's thread: a post, then a send. */
static void lc_post_from_thread(lc_job *job)
{
    lc_note *n = lc_note_new(job->state);
    apr_status_t prv = APR_ENOMEM;
    websocket_send_result rv;

    if (n != NULL) {
        n->from = lc_thread_id();
        n->len = apr_snprintf(n->text, sizeof(n->text), "posted from %lu",
                              n->from);
        prv = job->server->post(job->conn, lc_posted, n);
        if (prv != APR_SUCCESS) {
            free(n);
        }
    }
    rv = job->server->send(job->conn, WEBSOCKET_TEXT, "sent from thread", 16);
    ap_log_error(LC_NOTICE, 0, job->state->s, "lifecycle: post %u: post "
                 "status %d, send status %d (%s)", job->state->id, prv,
                 (int)rv, lc_send_name(rv));
}

/* "close-from-thread" */
static void lc_close_from_thread(lc_job *job)
{
    apr_status_t rv = job->server->close(job->conn, 4000,
                                         "closed from thread");

    ap_log_error(LC_NOTICE, 0, job->state->s, "lifecycle: close-from-thread "
                 "%u: status %d", job->state->id, rv);
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
    long i, full = 0;
    websocket_send_result rv = WEBSOCKET_SEND_OK;
    apr_size_t pending = 0;
    int careless = 0;

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
        /* Only this thread adds to what is pending (the loop takes from
         * it, adding at most a frame header per message it frames): read
         * just before the send, for the log if the send is refused. */
        pending = job->server->pending(job->conn);
        rv = job->server->send(job->conn, WEBSOCKET_TEXT, msg, sizeof(msg));
        if (rv == WEBSOCKET_SEND_FULL) {
            full++;             /* queued all the same */
            rv = WEBSOCKET_SEND_OK;
        }
        if (rv != WEBSOCKET_SEND_OK) {
            break;
        }
    }
    ap_log_error(LC_NOTICE, 0, job->state->s, "lifecycle: flood %u: sent %ld "
                 "of %ld: status %d (%s)%s, %ld full", job->state->id, i,
                 job->count, (int)rv, lc_send_name(rv), lc_send_suffix(rv),
                 full);
    if (rv != WEBSOCKET_SEND_OK) {
        ap_log_error(LC_NOTICE, 0, job->state->s, "lifecycle: flood %u: %"
                     APR_SIZE_T_FMT " bytes pending before the failed send",
                     job->state->id, pending);
    }
}

/* ------------------------------------------------------------------ */
/* Timers and watches (all on the loop)                                */

/* "timer N" */
static void lc_timer_fired(const websocket_server *server,
                           websocket_conn *conn, void *baton)
{
    (void)baton;
    lc_send_text(server, conn, "timer fired");
}

/* "every N": a repeating timer and its count, linked in the state until
 * it cancels itself (or the connection ends). */
struct lc_tick {
    lc_tick *next;
    lc_tick **prevp;
    websocket_timer *timer;
    int count;
};

static void lc_tick_unlink(lc_tick *t)
{
    *t->prevp = t->next;
    if (t->next != NULL) {
        t->next->prevp = t->prevp;
    }
}

static void lc_tick_fired(const websocket_server *server,
                          websocket_conn *conn, void *baton)
{
    lc_tick *t = baton;
    char text[32];

    apr_snprintf(text, sizeof(text), "tick %d", ++t->count);
    lc_send_text(server, conn, text);
    if (t->count >= 3) {
        server->timer_cancel(conn, t->timer);
        lc_tick_unlink(t);
        free(t);
    }
}

static void lc_every(const websocket_server *server, websocket_conn *conn,
                     lc_state *st, long ms)
{
    lc_tick *t = calloc(1, sizeof(*t));
    apr_interval_time_t every = apr_time_from_msec(ms < 1 ? 1 : ms);

    if (t == NULL) {
        lc_send_text(server, conn, "timer refused");
        return;
    }
    t->next = st->ticks;
    t->prevp = &st->ticks;
    if (st->ticks != NULL) {
        st->ticks->prevp = &t->next;
    }
    st->ticks = t;
    t->timer = server->timer_add(conn, every, every, lc_tick_fired, t);
    if (t->timer == NULL) {
        lc_tick_unlink(t);
        free(t);
        lc_send_text(server, conn, "timer refused");
    }
}

/* "watch" and "watch socket": a pipe or a socketpair, its read end
 * watched, in a pool of its own. */
struct lc_watch {
    lc_watch *next;
    lc_watch **prevp;
    apr_pool_t *pool;
    apr_pollfd_t pfd;
    apr_file_t *rd, *wr;               /* pipe */
    apr_socket_t *sa, *sb;             /* socketpair: sa watched */
    websocket_watch *watch;
};

static void lc_watch_unlink(lc_watch *w)
{
    *w->prevp = w->next;
    if (w->next != NULL) {
        w->next->prevp = w->prevp;
    }
}

/* Closes both ends (the pipe's with the pool). */
static void lc_watch_free(lc_watch *w)
{
    if (w->sa != NULL) {
        apr_socket_close(w->sa);
    }
    if (w->sb != NULL) {
        apr_socket_close(w->sb);
    }
    apr_pool_destroy(w->pool);
}

static void lc_watch_fired(const websocket_server *server,
                           websocket_conn *conn, void *baton,
                           apr_int16_t rtnevents)
{
    lc_watch *w = baton;
    char buf[16];
    apr_size_t n = sizeof(buf);

    if (w->rd != NULL) {
        apr_file_read(w->rd, buf, &n);
    }
    else {
        apr_socket_recv(w->sa, buf, &n);
    }
    if (rtnevents == APR_POLLIN) {
        lc_send_text(server, conn, "watch fired");
    }
    else {
        char text[32];

        apr_snprintf(text, sizeof(text), "watch events %d", (int)rtnevents);
        lc_send_text(server, conn, text);
    }
    server->watch_remove(conn, w->watch);
    lc_watch_unlink(w);
    lc_watch_free(w);
}

/* Puts one end of a fresh socketpair in *s, non-blocking (closed here
 * if that fails before *s holds it). */
static apr_status_t lc_sock_put(apr_socket_t **s, int fd, apr_pool_t *p)
{
    apr_os_sock_t os = fd;
    apr_status_t rv;

    *s = NULL;
    if ((rv = apr_os_sock_put(s, &os, p)) != APR_SUCCESS) {
        close(fd);
        return rv;
    }
    return apr_socket_opt_set(*s, APR_SO_NONBLOCK, 1);
}

static apr_status_t lc_watch_open(lc_watch *w, int use_socket)
{
    apr_status_t rv;

    w->pfd.p = w->pool;
    w->pfd.reqevents = APR_POLLIN;
    if (!use_socket) {
        rv = apr_file_pipe_create_ex(&w->rd, &w->wr, APR_FULL_NONBLOCK,
                                     w->pool);
        w->pfd.desc_type = APR_POLL_FILE;
        w->pfd.desc.f = w->rd;
    }
    else {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
            return APR_FROM_OS_ERROR(errno);
        }
        if ((rv = lc_sock_put(&w->sa, sv[0], w->pool)) != APR_SUCCESS) {
            close(sv[1]);
            return rv;
        }
        if ((rv = lc_sock_put(&w->sb, sv[1], w->pool)) != APR_SUCCESS) {
            return rv;
        }
        w->pfd.desc_type = APR_POLL_SOCKET;
        w->pfd.desc.s = w->sa;
    }
    return rv;
}

static void lc_watch_start(const websocket_server *server,
                           websocket_conn *conn, lc_state *st, int use_socket)
{
    apr_pool_t *pool;
    lc_watch *w;
    apr_size_t one = 1;
    apr_status_t rv;

    if (apr_pool_create_unmanaged_ex(&pool, NULL, NULL) != APR_SUCCESS) {
        lc_send_text(server, conn, "watch refused");
        return;
    }
    w = apr_pcalloc(pool, sizeof(*w));
    w->pool = pool;
    if ((rv = lc_watch_open(w, use_socket)) != APR_SUCCESS
        || (w->watch = server->watch_add(conn, &w->pfd, lc_watch_fired,
                                         w)) == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, st->s,
                     "lifecycle: watch %u: cannot set it up", st->id);
        lc_watch_free(w);
        lc_send_text(server, conn, "watch refused");
        return;
    }
    w->next = st->watches;
    w->prevp = &st->watches;
    if (st->watches != NULL) {
        st->watches->prevp = &w->next;
    }
    st->watches = w;
    /* From the loop: the watch fires at the loop's next poll. */
    if (w->wr != NULL) {
        apr_file_write(w->wr, "x", &one);
    }
    else {
        apr_socket_send(w->sb, "x", &one);
    }
}

/* ------------------------------------------------------------------ */
/* Callbacks                                                           */

/* The connection's pool is cleaned up: on the loop, after on_disconnect
 * (the upgrade request's pool went when on_open returned). */
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
    st->s = server->server_rec_of(conn);
    apr_thread_mutex_create(&st->mutex, APR_THREAD_MUTEX_DEFAULT, pool);
    apr_thread_cond_create(&st->cond, pool);
    /* The state's first reference: dropped when the connection's pool
     * goes, not in on_disconnect. */
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

/* The message is exactly word. */
static int lc_is(int type, const char *data, apr_size_t len,
                 const char *word)
{
    return type == WEBSOCKET_TEXT && len == strlen(word)
        && !memcmp(data, word, len);
}

/* The topic commands; 0 if the message is none of them. */
static int lc_pubsub(const websocket_server *server, websocket_conn *conn,
                     int type, const char *data, apr_size_t len)
{
    char text[1024], answer[1100], *topic, *rest;
    apr_status_t rv;

    if (type != WEBSOCKET_TEXT || len >= sizeof(text)) {
        return 0;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if ((topic = strchr(text, ' ')) == NULL) {
        return 0;
    }
    *topic++ = '\0';
    if (strcmp(text, "subscribe") == 0) {
        rv = server->subscribe(conn, topic);
        if (rv == APR_SUCCESS) {
            apr_snprintf(answer, sizeof(answer), "subscribed %s", topic);
        }
        else {
            apr_snprintf(answer, sizeof(answer), "subscribe failed %d", rv);
        }
    }
    else if (strcmp(text, "unsubscribe") == 0) {
        server->unsubscribe(conn, topic);
        apr_snprintf(answer, sizeof(answer), "unsubscribed %s", topic);
    }
    else if (strcmp(text, "publish") == 0
             && (rest = strchr(topic, ' ')) != NULL) {
        *rest++ = '\0';
        server->publish(conn, topic, WEBSOCKET_TEXT, rest, strlen(rest));
        return 1;
    }
    else {
        return 0;
    }
    lc_send_text(server, conn, answer);
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
    if (st == NULL) {
        server->send(conn, type, data, len);
    }
    else if (lc_pubsub(server, conn, type, data, len)) {
        return;
    }
    else if (lc_is(type, data, len, "send-after-gone")) {
        lc_start_job(server, conn, lc_send_after_gone, 0);
    }
    else if (lc_is(type, data, len, "subprotocol-after-gone")) {
        lc_start_job(server, conn, lc_subprotocol_after_gone, 0);
    }
    else if (lc_is(type, data, len, "close")) {
        server->close(conn, 1000, "as asked");
    }
    else if (lc_command(type, data, len, "slow ", &n)) {
        st->slow_usec = n;
    }
    else if (lc_command(type, data, len, "flood-me ", &n)) {
        lc_start_job(server, conn, lc_flood, n);
    }
    else if (lc_command(type, data, len, "pause ", &n)) {
        server->pause_reading(conn, 1);
        lc_send_text(server, conn, "paused");
        lc_start_job(server, conn, lc_resume_later, n);
    }
    else if (lc_command(type, data, len, "timer ", &n)) {
        if (server->timer_add(conn, apr_time_from_msec(n < 0 ? 0 : n), 0,
                              lc_timer_fired, NULL) == NULL) {
            lc_send_text(server, conn, "timer refused");
        }
    }
    else if (lc_command(type, data, len, "every ", &n)) {
        lc_every(server, conn, st, n);
    }
    else if (lc_is(type, data, len, "watch")) {
        lc_watch_start(server, conn, st, 0);
    }
    else if (lc_is(type, data, len, "watch socket")) {
        lc_watch_start(server, conn, st, 1);
    }
    else if (lc_is(type, data, len, "loopid")) {
        char text[32];

        apr_snprintf(text, sizeof(text), "loop %lu", lc_thread_id());
        lc_send_text(server, conn, text);
    }
    else if (lc_is(type, data, len, "post")) {
        lc_start_job(server, conn, lc_post_from_thread, 0);
    }
    else if (lc_is(type, data, len, "close-from-thread")) {
        lc_start_job(server, conn, lc_close_from_thread, 0);
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
    ap_log_error(LC_NOTICE, 0, server->server_rec_of(conn),
                 "lifecycle: on_close %d (id %u)", code, lc_id(server, conn));
}

/* The module has ended the connection's timers and watches: free what
 * the plugin kept for them and tell the threads.  Logs every call and
 * frees nothing a second call would touch: the lists are left empty, and
 * the state itself goes with the connection's pool (lc_conn_pool_cleanup). */
static void lc_on_disconnect(const websocket_server *server,
                             websocket_conn *conn)
{
    lc_state *st = lc_state_get(server, conn);

    ap_log_error(LC_NOTICE, 0, server->server_rec_of(conn),
                 "lifecycle: on_disconnect %u", st ? st->id : 0);
    if (st == NULL) {
        return;
    }
    while (st->ticks != NULL) {
        lc_tick *t = st->ticks;

        lc_tick_unlink(t);
        free(t);
    }
    while (st->watches != NULL) {
        lc_watch *w = st->watches;

        lc_watch_unlink(w);
        lc_watch_free(w);
    }
    lc_signal(st, &st->disconnected);
}

static websocket_plugin lc_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .on_connect    = lc_on_connect,
    .on_open       = lc_on_open,
    .on_message    = lc_on_message,
    .on_close      = lc_on_close,
    .on_disconnect = lc_on_disconnect,
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
