/* Licensed under the Apache License, Version 2.0.
 *
 * ws_loop.h: a small event loop -- one thread, one pollset, one timer
 * heap, one inbox other threads post to.  It knows nothing of WebSockets
 * or httpd; ws_connection.c builds the connection driver on it.
 *
 * Threads: everything here is for the loop's own thread, except
 * ws_loop_post and ws_loop_is_current (any thread).  A watch switched off
 * during a turn may still be looked at later in that turn: free it from a
 * posted function (which runs after the turn's ready descriptors).
 */
#ifndef WS_LOOP_H
#define WS_LOOP_H

#include "apr_pools.h"
#include "apr_poll.h"
#include "apr_time.h"

typedef struct ws_loop ws_loop;

/* A function posted to a loop. */
typedef void (*ws_task_fn)(void *baton);

/* A timer: embed it, set fn and baton, then ws_timer_set.  heap_pos is
 * the loop's business (0: not armed). */
typedef struct ws_timer {
    apr_time_t when;
    apr_size_t heap_pos;
    void (*fn)(void *baton);
    void *baton;
} ws_timer;

/* A descriptor watch: embed it, fill pfd.desc_type, pfd.desc, fn and
 * baton, then ws_watch_set with the events wanted (0: none). */
typedef struct ws_watch {
    apr_pollfd_t pfd;          /* pfd.reqevents: what is polled now */
    void (*fn)(void *baton, apr_int16_t rtnevents);
    void *baton;
} ws_watch;

/* A loop whose memory comes from p, run by the calling thread (or, with
 * ws_loop_run, by the thread that runs it). */
apr_status_t ws_loop_create(ws_loop **loop, apr_pool_t *p);

/* Run until ws_loop_stop; the calling thread becomes the loop's. */
void ws_loop_run(ws_loop *loop);
/* Wait at most max_wait (or until the next timer), then run what is due:
 * ready descriptors, posted functions, expired timers.  For a loop
 * driven by the thread that created it. */
void ws_loop_turn(ws_loop *loop, apr_interval_time_t max_wait);
/* ws_loop_run returns after the current turn.  Loop thread. */
void ws_loop_stop(ws_loop *loop);
/* Non-zero when called on the loop's thread. */
int ws_loop_is_current(const ws_loop *loop);

/* Run fn(baton) on the loop, in posting order.  Any thread.  APR_ENOMEM
 * (fn will not run) or APR_SUCCESS. */
apr_status_t ws_loop_post(ws_loop *loop, ws_task_fn fn, void *baton);

/* Arm (or re-arm) t to fire at `when`; disarm it.  Loop thread. */
void ws_timer_set(ws_loop *loop, ws_timer *t, apr_time_t when);
void ws_timer_clear(ws_loop *loop, ws_timer *t);

/* Poll w for reqevents (0: stop polling it).  Loop thread. */
apr_status_t ws_watch_set(ws_loop *loop, ws_watch *w, apr_int16_t reqevents);

#endif /* WS_LOOP_H */
