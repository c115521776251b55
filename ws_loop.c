/* Licensed under the Apache License, Version 2.0.
 *
 * ws_loop.c: the event loop of ws_loop.h.  An epoll pollset (through
 * apr_pollset, APR_POLLSET_NOCOPY so that removing a descriptor does not
 * scan the others), a binary min-heap of timers, and an inbox of posted
 * functions guarded by a mutex; a post wakes the pollset only when the
 * inbox was empty, so a burst of posts costs one wake-up.
 */
#include <stdlib.h>

#include "apr_portable.h"
#include "apr_thread_mutex.h"

#include "ws_loop.h"

/* A loop serves descriptors beyond this: it only sizes one poll's
 * result array. */
#define WS_LOOP_POLL_BATCH 512
/* Expired timers run per turn at most this many, so that a storm of
 * timers cannot starve the descriptors (and the other way round: every
 * turn runs timers). */
#define WS_LOOP_TIMER_BATCH 4096

typedef struct ws_posted {
    struct ws_posted *next;
    ws_task_fn fn;
    void *baton;
} ws_posted;

struct ws_loop {
    apr_pollset_t *pollset;
    apr_os_thread_t thread;
    int stopping;

    /* timer heap: heap[1..count] */
    ws_timer **heap;
    apr_size_t count, cap;

    /* inbox: any thread, guarded by mutex */
    apr_thread_mutex_t *mutex;
    ws_posted *head, *tail;
};

/* The loop's thread is set once, by that thread, before it runs
 * anything, and read by every thread that posts (so, atomically). */
static void ws_loop_set_thread(ws_loop *loop)
{
    apr_os_thread_t self = apr_os_thread_current();

#if defined(__GNUC__) || defined(__clang__)
    __atomic_store(&loop->thread, &self, __ATOMIC_RELEASE);
#else
    loop->thread = self;
#endif
}

/* The heap and the inbox are malloc'd: they go with the pool.  What is
 * still posted is dropped, unrun. */
static apr_status_t ws_loop_cleanup(void *baton)
{
    ws_loop *loop = baton;

    while (loop->head != NULL) {
        ws_posted *next = loop->head->next;

        free(loop->head);
        loop->head = next;
    }
    free(loop->heap);
    loop->heap = NULL;
    loop->count = loop->cap = 0;
    return APR_SUCCESS;
}

apr_status_t ws_loop_create(ws_loop **out, apr_pool_t *p)
{
    ws_loop *loop = apr_pcalloc(p, sizeof(*loop));
    apr_status_t rv;

    rv = apr_pollset_create(&loop->pollset, WS_LOOP_POLL_BATCH, p,
                            APR_POLLSET_WAKEABLE | APR_POLLSET_NOCOPY);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_mutex_create(&loop->mutex, APR_THREAD_MUTEX_DEFAULT,
                                     p);
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ws_loop_set_thread(loop);
    apr_pool_cleanup_register(p, loop, ws_loop_cleanup,
                              apr_pool_cleanup_null);
    *out = loop;
    return APR_SUCCESS;
}

int ws_loop_is_current(const ws_loop *loop)
{
    apr_os_thread_t thread;

#if defined(__GNUC__) || defined(__clang__)
    __atomic_load(&loop->thread, &thread, __ATOMIC_ACQUIRE);
#else
    thread = loop->thread;
#endif
    return apr_os_thread_equal(thread, apr_os_thread_current());
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */

static void heap_place(ws_loop *loop, apr_size_t pos, ws_timer *t)
{
    loop->heap[pos] = t;
    t->heap_pos = pos;
}

static void heap_up(ws_loop *loop, apr_size_t pos)
{
    ws_timer *t = loop->heap[pos];

    while (pos > 1 && loop->heap[pos / 2]->when > t->when) {
        heap_place(loop, pos, loop->heap[pos / 2]);
        pos /= 2;
    }
    heap_place(loop, pos, t);
}

static void heap_down(ws_loop *loop, apr_size_t pos)
{
    ws_timer *t = loop->heap[pos];

    for (;;) {
        apr_size_t child = pos * 2;

        if (child > loop->count) {
            break;
        }
        if (child < loop->count
            && loop->heap[child + 1]->when < loop->heap[child]->when) {
            child++;
        }
        if (loop->heap[child]->when >= t->when) {
            break;
        }
        heap_place(loop, pos, loop->heap[child]);
        pos = child;
    }
    heap_place(loop, pos, t);
}

void ws_timer_clear(ws_loop *loop, ws_timer *t)
{
    apr_size_t pos = t->heap_pos;
    ws_timer *last;

    if (pos == 0) {
        return;
    }
    t->heap_pos = 0;
    last = loop->heap[loop->count--];
    if (last == t) {
        return;
    }
    heap_place(loop, pos, last);
    heap_up(loop, pos);
    heap_down(loop, last->heap_pos);
}

void ws_timer_set(ws_loop *loop, ws_timer *t, apr_time_t when)
{
    ws_timer_clear(loop, t);
    if (loop->count + 1 >= loop->cap) {
        apr_size_t cap = loop->cap ? loop->cap * 2 : 256;
        ws_timer **heap = realloc(loop->heap, cap * sizeof(*heap));

        if (heap == NULL) {
            abort();   /* as APR does when a pool cannot grow */
        }
        loop->heap = heap;
        loop->cap = cap;
    }
    t->when = when;
    loop->count++;
    heap_place(loop, loop->count, t);
    heap_up(loop, loop->count);
}

static void run_timers(ws_loop *loop)
{
    apr_time_t now = apr_time_now();
    int budget = WS_LOOP_TIMER_BATCH;

    while (loop->count > 0 && loop->heap[1]->when <= now && budget-- > 0) {
        ws_timer *t = loop->heap[1];

        ws_timer_clear(loop, t);
        t->fn(t->baton);
    }
}

/* ------------------------------------------------------------------ */
/* Watches                                                             */

apr_status_t ws_watch_set(ws_loop *loop, ws_watch *w, apr_int16_t reqevents)
{
    apr_status_t rv = APR_SUCCESS;

    if (w->pfd.reqevents == reqevents) {
        return APR_SUCCESS;
    }
    if (w->pfd.reqevents != 0) {
        apr_pollset_remove(loop->pollset, &w->pfd);
    }
    w->pfd.reqevents = reqevents;
    w->pfd.client_data = w;
    if (reqevents != 0) {
        rv = apr_pollset_add(loop->pollset, &w->pfd);
        if (rv != APR_SUCCESS) {
            w->pfd.reqevents = 0;
        }
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Inbox                                                               */

apr_status_t ws_loop_post(ws_loop *loop, ws_task_fn fn, void *baton)
{
    ws_posted *p = malloc(sizeof(*p));
    int was_empty;

    if (p == NULL) {
        return APR_ENOMEM;
    }
    p->next = NULL;
    p->fn = fn;
    p->baton = baton;
    apr_thread_mutex_lock(loop->mutex);
    was_empty = loop->head == NULL;
    if (was_empty) {
        loop->head = p;
    }
    else {
        loop->tail->next = p;
    }
    loop->tail = p;
    apr_thread_mutex_unlock(loop->mutex);
    if (was_empty && !ws_loop_is_current(loop)) {
        apr_pollset_wakeup(loop->pollset);
    }
    return APR_SUCCESS;
}

/* Run what was posted before this turn (later posts wait for the next
 * turn, so posting from a posted function cannot spin forever). */
static void run_posted(ws_loop *loop)
{
    ws_posted *p;

    apr_thread_mutex_lock(loop->mutex);
    p = loop->head;
    loop->head = loop->tail = NULL;
    apr_thread_mutex_unlock(loop->mutex);
    while (p != NULL) {
        ws_posted *next = p->next;

        p->fn(p->baton);
        free(p);
        p = next;
    }
}

static int inbox_empty(ws_loop *loop)
{
    int empty;

    apr_thread_mutex_lock(loop->mutex);
    empty = loop->head == NULL;
    apr_thread_mutex_unlock(loop->mutex);
    return empty;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */

void ws_loop_turn(ws_loop *loop, apr_interval_time_t max_wait)
{
    const apr_pollfd_t *ready;
    apr_int32_t n = 0, i;
    apr_interval_time_t wait = max_wait;
    apr_status_t rv;

    if (loop->count > 0) {
        apr_interval_time_t due = loop->heap[1]->when - apr_time_now();

        /* a pollset waits whole milliseconds, rounded down: round up, or
         * the last part of the wait is a busy loop of empty turns */
        due = due > 0 ? (due + 999) / 1000 * 1000 : 0;

        wait = due < 0 ? 0 : (due < wait || wait < 0 ? due : wait);
    }
    if (!inbox_empty(loop)) {
        wait = 0;
    }
    rv = apr_pollset_poll(loop->pollset, wait, &n, &ready);
    if (rv != APR_SUCCESS) {
        n = 0;
    }
    for (i = 0; i < n; i++) {
        ws_watch *w = ready[i].client_data;

        /* An earlier callback of this turn may have stopped polling it;
         * a watch must not be freed while it is polled. */
        if (w->pfd.reqevents != 0) {
            w->fn(w->baton, ready[i].rtnevents);
        }
    }
    run_posted(loop);
    run_timers(loop);
}

void ws_loop_run(ws_loop *loop)
{
    ws_loop_set_thread(loop);
    while (!loop->stopping) {
        ws_loop_turn(loop, -1);
    }
}

void ws_loop_stop(ws_loop *loop)
{
    loop->stopping = 1;
}
