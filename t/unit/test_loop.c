/* Licensed under the Apache License, Version 2.0.
 *
 * test_loop.c: unit tests for the event loop (ws_loop.c): timers in
 * deadline order, re-arming and clearing (also from inside a timer, and
 * at random against a model), posts from several threads at once, posts
 * from posted functions, descriptor watches, stopping, and wake-ups of a
 * loop blocked in ws_loop_run.
 *
 * 'make test' also runs this under ThreadSanitizer (t/unit/run with
 * WS_UNIT_TSAN=1), which is what the multi-threaded tests are for: any
 * report fails the run.
 *
 * Tests that run the loop with ws_loop_run arm a watchdog timer, so that
 * a lost wake-up fails a check instead of hanging the run; an alarm ends
 * the whole test should timers stop working too.
 */

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_network_io.h>
#include <apr_portable.h>
#include <apr_thread_proc.h>

#include "ws_loop.h"
#include "t/unit/unit.h"

static apr_pool_t *root;

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* xorshift32: the same sequence on every run */
static apr_uint32_t rng_state = 2463534242u;

static apr_uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static ws_loop *new_loop(apr_pool_t **p)
{
    ws_loop *loop = NULL;

    apr_pool_create(p, root);
    if (!CHECK_INT(ws_loop_create(&loop, *p), APR_SUCCESS)) {
        exit(UNIT_DONE() | 1);
    }
    return loop;
}

/* Stops the loop and says so when it fires. */
typedef struct {
    ws_loop *loop;
    ws_timer timer;
    int fired;
} watchdog;

static void watchdog_fire(void *baton)
{
    watchdog *w = baton;

    w->fired = 1;
    ws_loop_stop(w->loop);
}

static void watchdog_arm(watchdog *w, ws_loop *loop, int seconds)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->timer.fn = watchdog_fire;
    w->timer.baton = w;
    ws_timer_set(loop, &w->timer,
                 apr_time_now() + apr_time_from_sec(seconds));
}

static void watchdog_disarm(watchdog *w)
{
    ws_timer_clear(w->loop, &w->timer);
}

/* A foreign thread running fn(baton). */
typedef struct {
    apr_thread_t *thd;
    void (*fn)(void *baton);
    void *baton;
} foreign;

static void *APR_THREAD_FUNC thread_main(apr_thread_t *thd, void *baton)
{
    foreign *f = baton;

    f->fn(f->baton);
    apr_thread_exit(thd, APR_SUCCESS);
    return NULL;
}

static void foreign_start(foreign *f, apr_pool_t *p, void (*fn)(void *),
                          void *baton)
{
    f->fn = fn;
    f->baton = baton;
    if (!CHECK_INT(apr_thread_create(&f->thd, NULL, thread_main, f, p),
                   APR_SUCCESS)) {
        exit(UNIT_DONE() | 1);
    }
}

static void foreign_join(foreign *f)
{
    apr_status_t rv;

    CHECK_INT(apr_thread_join(&rv, f->thd), APR_SUCCESS);
}

/* ------------------------------------------------------------------ */
/* Turning with nothing to do                                          */

static void count_fire(void *baton)
{
    (*(int *)baton)++;
}

static void test_turn_idle(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    ws_timer far = { 0 };
    int far_fired = 0;
    apr_time_t t0;
    int i;

    t0 = apr_time_now();
    for (i = 0; i < 100; i++) {
        ws_loop_turn(loop, 0);
    }
    CHECK(apr_time_now() - t0 < apr_time_from_sec(2));
    CHECK(ws_loop_is_current(loop));

    /* a timer an hour away does not stretch a zero wait */
    far.fn = count_fire;
    far.baton = &far_fired;
    ws_timer_set(loop, &far, apr_time_now() + apr_time_from_sec(3600));
    t0 = apr_time_now();
    ws_loop_turn(loop, 0);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(2));

    /* a bounded wait waits, and returns */
    t0 = apr_time_now();
    ws_loop_turn(loop, apr_time_from_msec(30));
    CHECK(apr_time_now() - t0 >= apr_time_from_msec(20));
    CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
    CHECK_INT(far_fired, 0);
    ws_timer_clear(loop, &far);
    CHECK_INT(far.heap_pos, 0);
    apr_pool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */

typedef struct order_ctx order_ctx;

typedef struct {
    ws_timer timer;
    order_ctx *ctx;
    int id;
} otimer;

struct order_ctx {
    ws_loop *loop;
    apr_time_t last_when;
    int fired, early, out_of_order, not_current;
    int *times_fired;
};

static void otimer_fire(void *baton)
{
    otimer *t = baton;
    order_ctx *c = t->ctx;

    if (apr_time_now() < t->timer.when) {
        c->early++;
    }
    if (t->timer.when < c->last_when) {
        c->out_of_order++;
    }
    if (!ws_loop_is_current(c->loop)) {
        c->not_current++;
    }
    c->last_when = t->timer.when;
    c->times_fired[t->id]++;
    c->fired++;
}

/* Many timers with random deadlines over 60 ms (duplicates and some in
 * the past included) fire once each, in deadline order, none early. */
static void test_timer_order(void)
{
    enum { N = 3000 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    otimer *t = calloc(N, sizeof(*t));
    order_ctx c = { 0 };
    apr_time_t base = apr_time_now(), give_up;
    int i, once = 1, armed = 1;

    c.loop = loop;
    c.times_fired = calloc(N, sizeof(int));
    for (i = 0; i < N; i++) {
        t[i].ctx = &c;
        t[i].id = i;
        t[i].timer.fn = otimer_fire;
        t[i].timer.baton = &t[i];
        /* 300 distinct deadlines 200 us apart, the first 5 in the past */
        ws_timer_set(loop, &t[i].timer,
                     base + (apr_time_t)(rng() % 300) * 200 - 1000);
        armed = armed && t[i].timer.heap_pos != 0;
    }
    CHECK(armed);
    give_up = apr_time_now() + apr_time_from_sec(10);
    while (c.fired < N && apr_time_now() < give_up) {
        ws_loop_turn(loop, -1);
    }
    CHECK_INT(c.fired, N);
    CHECK_INT(c.early, 0);
    CHECK_INT(c.out_of_order, 0);
    CHECK_INT(c.not_current, 0);
    for (i = 0; i < N; i++) {
        once = once && c.times_fired[i] == 1 && t[i].timer.heap_pos == 0;
    }
    CHECK(once);
    free(c.times_fired);
    free(t);
    apr_pool_destroy(p);
}

/* More timers due at once than a turn runs (WS_LOOP_TIMER_BATCH): all
 * fire, in order, over a few turns. */
static void test_timer_storm(void)
{
    enum { N = 10000 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    otimer *t = calloc(N, sizeof(*t));
    order_ctx c = { 0 };
    apr_time_t base = apr_time_now() - apr_time_from_sec(10);
    int i, turns, once = 1;

    c.loop = loop;
    c.times_fired = calloc(N, sizeof(int));
    for (i = 0; i < N; i++) {
        t[i].ctx = &c;
        t[i].id = i;
        t[i].timer.fn = otimer_fire;
        t[i].timer.baton = &t[i];
        ws_timer_set(loop, &t[i].timer, base + (apr_time_t)(rng() % 100000));
    }
    for (turns = 0; turns < 100 && c.fired < N; turns++) {
        ws_loop_turn(loop, 0);
    }
    CHECK_INT(c.fired, N);
    CHECK_INT(c.out_of_order, 0);
    for (i = 0; i < N; i++) {
        once = once && c.times_fired[i] == 1;
    }
    CHECK(once);
    free(c.times_fired);
    free(t);
    apr_pool_destroy(p);
}

typedef struct {
    ws_loop *loop;
    ws_timer timer;
    int fired;
    /* what to do when fired */
    ws_timer *clear;             /* clear this one */
    ws_timer *rearm;             /* re-arm this one ... */
    apr_time_t rearm_when;       /* ... to this */
    int repeat;                  /* re-arm itself until fired this often */
    apr_interval_time_t every;
} stimer;

static void stimer_fire(void *baton)
{
    stimer *s = baton;

    s->fired++;
    if (s->clear) {
        ws_timer_clear(s->loop, s->clear);
    }
    if (s->rearm) {
        ws_timer_set(s->loop, s->rearm, s->rearm_when);
    }
    if (s->fired < s->repeat) {
        ws_timer_set(s->loop, &s->timer, apr_time_now() + s->every);
    }
}

static void stimer_init(stimer *s, ws_loop *loop)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->timer.fn = stimer_fire;
    s->timer.baton = s;
}

static void test_timer_set_clear(void)
{
    enum { MANY = 100 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    stimer a, b, c, many[MANY], helper[MANY];
    apr_time_t now = apr_time_now();
    apr_time_t hour = apr_time_from_sec(3600);
    apr_time_t give_up;
    int i, fired;

    /* re-armed from far to past: fires once, on the next turn */
    stimer_init(&a, loop);
    ws_timer_set(loop, &a.timer, now + hour);
    ws_timer_set(loop, &a.timer, now - 1);
    ws_loop_turn(loop, 0);
    CHECK_INT(a.fired, 1);
    CHECK_INT(a.timer.heap_pos, 0);
    ws_loop_turn(loop, 0);
    CHECK_INT(a.fired, 1);

    /* re-armed from past to far: does not fire */
    stimer_init(&b, loop);
    ws_timer_set(loop, &b.timer, now - 1);
    ws_timer_set(loop, &b.timer, now + hour);
    ws_loop_turn(loop, 0);
    CHECK_INT(b.fired, 0);
    CHECK(b.timer.heap_pos != 0);
    CHECK_INT(b.timer.when, now + hour);
    ws_timer_clear(loop, &b.timer);
    CHECK_INT(b.timer.heap_pos, 0);

    /* cleared: does not fire; clearing twice, or a timer never armed,
     * is harmless */
    stimer_init(&c, loop);
    ws_timer_set(loop, &c.timer, now - 1);
    ws_timer_clear(loop, &c.timer);
    ws_timer_clear(loop, &c.timer);
    stimer_init(&b, loop);
    ws_timer_clear(loop, &b.timer);
    ws_loop_turn(loop, 0);
    CHECK_INT(c.fired, 0);
    CHECK_INT(b.fired, 0);

    /* a cleared from inside b, both due in the same turn */
    stimer_init(&a, loop);
    stimer_init(&b, loop);
    b.clear = &a.timer;
    ws_timer_set(loop, &b.timer, now - 2);
    ws_timer_set(loop, &a.timer, now - 1);
    ws_loop_turn(loop, 0);
    CHECK_INT(b.fired, 1);
    CHECK_INT(a.fired, 0);
    CHECK_INT(a.timer.heap_pos, 0);

    /* a far timer re-armed to due from inside another fires in the same
     * turn; a timer clearing itself while firing is harmless */
    stimer_init(&a, loop);
    stimer_init(&b, loop);
    b.rearm = &a.timer;
    b.rearm_when = now - 5;
    b.clear = &b.timer;
    ws_timer_set(loop, &a.timer, now + hour);
    ws_timer_set(loop, &b.timer, now - 1);
    ws_loop_turn(loop, 0);
    CHECK_INT(b.fired, 1);
    CHECK_INT(a.fired, 1);
    CHECK_INT(a.timer.heap_pos, 0);

    /* MANY helpers due first, each clearing one of MANY due timers from
     * inside its fn (so from all over the heap); one re-arms many[0]
     * far away after it was cleared */
    for (i = 0; i < MANY; i++) {
        stimer_init(&many[i], loop);
        ws_timer_set(loop, &many[i].timer, now - 1000 + (rng() % 500));
    }
    for (i = MANY - 1; i >= 0; i--) {
        stimer_init(&helper[i], loop);
        helper[i].clear = &many[i].timer;
        if (i == MANY / 2) {
            helper[i].rearm = &many[0].timer;
            helper[i].rearm_when = now + hour;
        }
        ws_timer_set(loop, &helper[i].timer, now - 2000 + i);
    }
    ws_loop_turn(loop, 0);
    fired = 0;
    for (i = 0; i < MANY; i++) {
        fired += many[i].fired;
        CHECK_INT(helper[i].fired, 1);
    }
    CHECK_INT(fired, 0);
    CHECK(many[0].timer.heap_pos != 0);
    for (i = 1; i < MANY; i++) {
        if (!CHECK_INT(many[i].timer.heap_pos, 0)) {
            break;
        }
    }
    ws_timer_clear(loop, &many[0].timer);

    /* a timer re-arming itself from its own fn: periodic */
    stimer_init(&a, loop);
    a.repeat = 5;
    a.every = apr_time_from_msec(2);
    ws_timer_set(loop, &a.timer, apr_time_now() + a.every);
    give_up = apr_time_now() + apr_time_from_sec(5);
    while (a.fired < 5 && apr_time_now() < give_up) {
        ws_loop_turn(loop, -1);
    }
    CHECK_INT(a.fired, 5);
    CHECK_INT(a.timer.heap_pos, 0);
    apr_pool_destroy(p);
}

/* A turn with only a timer pending sleeps until it is due instead of
 * waking early and spinning through the rest of the wait (pollsets wait
 * whole milliseconds). */
static void test_timer_no_spin(void)
{
    enum { N = 20 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    ws_timer t = { 0 };
    int fired = 0, i, turns, most = 0;

    t.fn = count_fire;
    t.baton = &fired;
    for (i = 0; i < N; i++) {
        /* 5 ms and a fraction of one */
        ws_timer_set(loop, &t, apr_time_now() + 5000 + 1 + (rng() % 999));
        for (turns = 0; fired == i && turns < 100000; turns++) {
            ws_loop_turn(loop, -1);
        }
        most = turns > most ? turns : most;
    }
    CHECK_INT(fired, N);
    if (!CHECK(most <= 3)) {
        fprintf(stderr, "%s:%d: %d turns for a 5 ms timer\n", __FILE__,
                __LINE__, most);
    }
    apr_pool_destroy(p);
}

/* Random set / re-arm / clear against a model, with turns in between:
 * each turn must fire exactly the armed timers that are due, in deadline
 * order, each with the deadline it was last given.  A broken heap shows
 * as a wrong order, a missed timer or a stray one. */
typedef struct rnd_ctx rnd_ctx;

typedef struct {
    ws_timer timer;
    rnd_ctx *ctx;
    int id;
} rtimer;

struct rnd_ctx {
    int *armed;
    apr_time_t *when;
    apr_time_t last_when;
    int fired, bad, out_of_order;
};

static void rtimer_fire(void *baton)
{
    rtimer *t = baton;
    rnd_ctx *c = t->ctx;

    if (!c->armed[t->id] || c->when[t->id] != t->timer.when) {
        c->bad++;
    }
    if (t->timer.when < c->last_when) {
        c->out_of_order++;
    }
    c->last_when = t->timer.when;
    c->armed[t->id] = 0;
    c->fired++;
}

static void test_timer_random(void)
{
    enum { N = 1000, OPS = 100000, TURN_EVERY = 3000 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    rtimer *t = calloc(N, sizeof(*t));
    rnd_ctx c = { 0 };
    apr_time_t past = apr_time_now() - apr_time_from_sec(3600);
    apr_time_t future = apr_time_now() + apr_time_from_sec(3600);
    int i, op, turns = 0, bad_pos = 0, missed = 0, total_fired = 0;

    c.armed = calloc(N, sizeof(int));
    c.when = calloc(N, sizeof(apr_time_t));
    for (i = 0; i < N; i++) {
        t[i].ctx = &c;
        t[i].id = i;
        t[i].timer.fn = rtimer_fire;
        t[i].timer.baton = &t[i];
    }
    for (op = 1; op <= OPS; op++) {
        apr_uint32_t r = rng();

        i = (int)(r % N);
        r /= N;
        if (r % 3 == 0) {
            ws_timer_clear(loop, &t[i].timer);
            c.armed[i] = 0;
        }
        else {
            /* 200 deadlines on each side, so that ties are common */
            apr_time_t when = (r & 8 ? future : past)
                              + (apr_time_t)(rng() % 200);

            ws_timer_set(loop, &t[i].timer, when);
            c.armed[i] = 1;
            c.when[i] = when;
        }
        if (op % TURN_EVERY == 0) {
            int due = 0;

            for (i = 0; i < N; i++) {
                if ((t[i].timer.heap_pos != 0) != c.armed[i]) {
                    bad_pos++;
                }
                due += c.armed[i] && c.when[i] < future;
            }
            c.fired = 0;
            c.last_when = 0;
            ws_loop_turn(loop, 0);
            turns++;
            total_fired += c.fired;
            if (c.fired != due) {
                missed++;
            }
            for (i = 0; i < N; i++) {
                if (c.armed[i] && c.when[i] < future) {
                    missed++;
                }
            }
        }
    }
    CHECK(turns > 10);
    CHECK(total_fired > 1000);
    CHECK_INT(bad_pos, 0);
    CHECK_INT(missed, 0);
    CHECK_INT(c.bad, 0);
    CHECK_INT(c.out_of_order, 0);
    for (i = 0; i < N; i++) {
        ws_timer_clear(loop, &t[i].timer);
    }
    c.fired = 0;
    ws_loop_turn(loop, 0);
    CHECK_INT(c.fired, 0);
    free(c.armed);
    free(c.when);
    free(t);
    apr_pool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Posts                                                               */

#define POST_THREADS 4
#define POSTS_PER_THREAD 10000

typedef struct post_ctx post_ctx;

typedef struct {
    post_ctx *ctx;
    int thread, seq;
} post_item;

typedef struct {
    post_ctx *ctx;
    int thread;
    int failed;                  /* written by that thread */
} poster;

struct post_ctx {
    ws_loop *loop;
    post_item *items;            /* [thread * POSTS_PER_THREAD + seq] */
    int *ran;                    /* likewise */
    int next[POST_THREADS];
    int total, out_of_order, not_current;
};

static void post_item_run(void *baton)
{
    post_item *it = baton;
    post_ctx *c = it->ctx;

    if (!ws_loop_is_current(c->loop)) {
        c->not_current++;
    }
    if (it->seq != c->next[it->thread]) {
        c->out_of_order++;
    }
    c->next[it->thread] = it->seq + 1;
    c->ran[it->thread * POSTS_PER_THREAD + it->seq]++;
    if (++c->total == POST_THREADS * POSTS_PER_THREAD) {
        ws_loop_stop(c->loop);
    }
}

static void poster_main(void *baton)
{
    poster *ps = baton;
    post_ctx *c = ps->ctx;
    int i;

    for (i = 0; i < POSTS_PER_THREAD; i++) {
        if (ws_loop_post(c->loop, post_item_run,
                         &c->items[ps->thread * POSTS_PER_THREAD + i])
            != APR_SUCCESS) {
            ps->failed++;
        }
        /* now and then let the loop go idle, so that posts must wake it */
        if (i % 1000 == 999) {
            apr_sleep(apr_time_from_msec(2));
        }
    }
}

/* 4 threads x 10,000 posts into a loop in ws_loop_run: each runs once,
 * on the loop's thread, in its thread's posting order. */
static void test_post_threads(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    post_ctx c = { 0 };
    poster ps[POST_THREADS];
    foreign f[POST_THREADS];
    watchdog wd;
    int i, once = 1, failed = 0;

    c.loop = loop;
    c.items = calloc(POST_THREADS * POSTS_PER_THREAD, sizeof(*c.items));
    c.ran = calloc(POST_THREADS * POSTS_PER_THREAD, sizeof(int));
    for (i = 0; i < POST_THREADS * POSTS_PER_THREAD; i++) {
        c.items[i].ctx = &c;
        c.items[i].thread = i / POSTS_PER_THREAD;
        c.items[i].seq = i % POSTS_PER_THREAD;
    }
    watchdog_arm(&wd, loop, 30);
    for (i = 0; i < POST_THREADS; i++) {
        ps[i].ctx = &c;
        ps[i].thread = i;
        ps[i].failed = 0;
        foreign_start(&f[i], p, poster_main, &ps[i]);
    }
    ws_loop_run(loop);
    for (i = 0; i < POST_THREADS; i++) {
        foreign_join(&f[i]);
        failed += ps[i].failed;
    }
    watchdog_disarm(&wd);
    CHECK_INT(wd.fired, 0);
    CHECK_INT(failed, 0);
    CHECK_INT(c.total, POST_THREADS * POSTS_PER_THREAD);
    CHECK_INT(c.out_of_order, 0);
    CHECK_INT(c.not_current, 0);
    for (i = 0; i < POST_THREADS * POSTS_PER_THREAD; i++) {
        once = once && c.ran[i] == 1;
    }
    CHECK(once);
    free(c.items);
    free(c.ran);
    apr_pool_destroy(p);
}

/* A loop blocked in ws_loop_run with nothing to do wakes for a post from
 * another thread (each post comes after a pause, so the loop is asleep;
 * a lost wake-up shows as the watchdog firing). */
#define WAKE_ROUNDS 20

typedef struct {
    ws_loop *loop;
    int ran, not_current;
    int foreign_is_current;      /* written by the foreign thread */
} wake_ctx;

static void wake_task(void *baton)
{
    wake_ctx *w = baton;

    if (!ws_loop_is_current(w->loop)) {
        w->not_current++;
    }
    if (++w->ran == WAKE_ROUNDS) {
        ws_loop_stop(w->loop);
    }
}

static void waker_main(void *baton)
{
    wake_ctx *w = baton;
    int i;

    for (i = 0; i < WAKE_ROUNDS; i++) {
        apr_sleep(apr_time_from_msec(10));
        w->foreign_is_current += ws_loop_is_current(w->loop);
        ws_loop_post(w->loop, wake_task, w);
    }
}

static void test_post_wakes_loop(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    wake_ctx w = { 0 };
    watchdog wd;
    foreign f;

    w.loop = loop;
    watchdog_arm(&wd, loop, 5);
    foreign_start(&f, p, waker_main, &w);
    ws_loop_run(loop);
    foreign_join(&f);
    watchdog_disarm(&wd);
    CHECK_INT(wd.fired, 0);
    CHECK_INT(w.ran, WAKE_ROUNDS);
    CHECK_INT(w.not_current, 0);
    CHECK_INT(w.foreign_is_current, 0);
    apr_pool_destroy(p);
}

/* Posts from the loop's own thread, driven by ws_loop_turn. */
typedef struct {
    ws_loop *loop;
    char log[64];
    int n;
    int reposts;                 /* post_self: post itself this often */
} log_ctx;

static void log_add(log_ctx *l, char ch)
{
    if (l->n < (int)sizeof(l->log) - 1) {
        l->log[l->n++] = ch;
        l->log[l->n] = '\0';
    }
}

static void post_1(void *baton) { log_add(baton, '1'); }
static void post_2(void *baton) { log_add(baton, '2'); }
static void post_3(void *baton) { log_add(baton, '3'); }

static void post_b(void *baton)
{
    log_ctx *l = baton;

    log_add(l, ws_loop_is_current(l->loop) ? 'B' : '?');
}

static void post_a(void *baton)
{
    log_ctx *l = baton;

    log_add(l, 'A');
    ws_loop_post(l->loop, post_b, l);
}

static void post_self(void *baton)
{
    log_ctx *l = baton;

    log_add(l, 'S');
    if (--l->reposts > 0) {
        ws_loop_post(l->loop, post_self, l);
    }
}

static void test_post_nested(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    log_ctx l = { 0 };
    watchdog wd;
    apr_time_t t0;
    int i;

    l.loop = loop;

    /* in order, all in one turn */
    CHECK_INT(ws_loop_post(loop, post_1, &l), APR_SUCCESS);
    CHECK_INT(ws_loop_post(loop, post_2, &l), APR_SUCCESS);
    CHECK_INT(ws_loop_post(loop, post_3, &l), APR_SUCCESS);
    CHECK_STR(l.log, "");
    ws_loop_turn(loop, 0);
    CHECK_STR(l.log, "123");

    /* a post from a posted function runs at a later turn */
    l.n = 0;
    l.log[0] = '\0';
    ws_loop_post(loop, post_a, &l);
    ws_loop_turn(loop, 0);
    CHECK_STR(l.log, "A");
    ws_loop_turn(loop, 0);
    CHECK_STR(l.log, "AB");
    ws_loop_turn(loop, 0);
    CHECK_STR(l.log, "AB");

    /* re-posting itself: once a turn, not a spin */
    l.n = 0;
    l.log[0] = '\0';
    l.reposts = 4;
    ws_loop_post(loop, post_self, &l);
    for (i = 0; i < 3; i++) {
        ws_loop_turn(loop, 0);
    }
    CHECK_STR(l.log, "SSS");
    ws_loop_turn(loop, 0);
    ws_loop_turn(loop, 0);
    CHECK_STR(l.log, "SSSS");

    /* a pending post (from the loop's thread, so no wake-up) keeps a turn
     * from blocking; so does one posted by a posted function */
    watchdog_arm(&wd, loop, 5);
    l.n = 0;
    l.log[0] = '\0';
    t0 = apr_time_now();
    ws_loop_post(loop, post_a, &l);
    ws_loop_turn(loop, -1);
    ws_loop_turn(loop, -1);
    CHECK(apr_time_now() - t0 < apr_time_from_sec(5));
    CHECK_STR(l.log, "AB");
    watchdog_disarm(&wd);
    CHECK_INT(wd.fired, 0);
    apr_pool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

typedef struct {
    ws_loop *loop;
    int stops, after_stop;
} stop_ctx;

static void stop_task(void *baton)
{
    stop_ctx *s = baton;

    s->stops++;
    ws_loop_stop(s->loop);
}

static void after_stop_task(void *baton)
{
    stop_ctx *s = baton;

    s->after_stop++;
}

static void stop_timer_fn(void *baton)
{
    ws_loop_stop(baton);
}

static void test_stop(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    stop_ctx s = { 0 };
    watchdog wd;
    ws_timer t = { 0 };
    apr_time_t t0;

    /* from a posted function; the rest of that turn still runs */
    s.loop = loop;
    watchdog_arm(&wd, loop, 5);
    ws_loop_post(loop, stop_task, &s);
    ws_loop_post(loop, after_stop_task, &s);
    ws_loop_run(loop);
    watchdog_disarm(&wd);
    CHECK_INT(wd.fired, 0);
    CHECK_INT(s.stops, 1);
    CHECK_INT(s.after_stop, 1);
    apr_pool_destroy(p);

    /* from a timer, after it is due */
    loop = new_loop(&p);
    watchdog_arm(&wd, loop, 5);
    t.fn = stop_timer_fn;
    t.baton = loop;
    t0 = apr_time_now();
    ws_timer_set(loop, &t, t0 + apr_time_from_msec(30));
    ws_loop_run(loop);
    CHECK(apr_time_now() - t0 >= apr_time_from_msec(30));
    watchdog_disarm(&wd);
    CHECK_INT(wd.fired, 0);
    CHECK_INT(t.heap_pos, 0);
    apr_pool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Watches                                                             */

typedef struct {
    ws_loop *loop;
    ws_watch watch;
    int fired, not_current;
    apr_int16_t events;          /* of the last call */
    void *other;                 /* stop watching this one (a wwatch) */
    int stop_loop;
} wwatch;

static void wwatch_fire(void *baton, apr_int16_t rtnevents)
{
    wwatch *w = baton;

    w->fired++;
    w->events = rtnevents;
    if (!ws_loop_is_current(w->loop)) {
        w->not_current++;
    }
    if (w->other) {
        ws_watch_set(w->loop, &((wwatch *)w->other)->watch, 0);
    }
    if (w->stop_loop) {
        ws_loop_stop(w->loop);
    }
}

static void wwatch_init(wwatch *w, ws_loop *loop, apr_socket_t *s,
                        apr_pool_t *p)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->watch.pfd.p = p;
    w->watch.pfd.desc_type = APR_POLL_SOCKET;
    w->watch.pfd.desc.s = s;
    w->watch.fn = wwatch_fire;
    w->watch.baton = w;
}

static void socket_pair(apr_socket_t **a, apr_socket_t **b, apr_pool_t *p)
{
    int fds[2];
    apr_os_sock_t fd;

    if (!CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0)) {
        exit(UNIT_DONE() | 1);
    }
    *a = *b = NULL;
    fd = fds[0];
    apr_os_sock_put(a, &fd, p);
    fd = fds[1];
    apr_os_sock_put(b, &fd, p);
}

static void send_byte(apr_socket_t *s)
{
    apr_size_t len = 1;

    CHECK_INT(apr_socket_send(s, "x", &len), APR_SUCCESS);
}

static void recv_byte(apr_socket_t *s)
{
    char ch;
    apr_size_t len = 1;

    CHECK_INT(apr_socket_recv(s, &ch, &len), APR_SUCCESS);
}

/* Foreign threads do not CHECK (unit.h counts are not thread-safe):
 * they leave results for the main thread to check after joining. */
typedef struct {
    apr_socket_t *s;
    apr_status_t rv;
} sender;

static void sender_main(void *baton)
{
    sender *sd = baton;
    apr_size_t len = 1;

    apr_sleep(apr_time_from_msec(20));
    sd->rv = apr_socket_send(sd->s, "x", &len);
}

static void test_watch(void)
{
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    apr_socket_t *a, *b, *bad = NULL;
    apr_os_sock_t badfd = -1;
    wwatch w, wa, wb;
    watchdog wd;
    sender sd;
    foreign f;

    socket_pair(&a, &b, p);
    wwatch_init(&w, loop, a, p);

    /* POLLIN on an empty socket: nothing */
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN), APR_SUCCESS);
    CHECK_INT(w.watch.pfd.reqevents, APR_POLLIN);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 0);

    /* readable: fires, on the loop's thread, and again while unread */
    send_byte(b);
    ws_loop_turn(loop, apr_time_from_sec(5));
    CHECK_INT(w.fired, 1);
    CHECK(w.events & APR_POLLIN);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 2);
    CHECK_INT(w.not_current, 0);

    /* set to 0: stops, though still readable; the same events twice is
     * harmless */
    CHECK_INT(ws_watch_set(loop, &w.watch, 0), APR_SUCCESS);
    CHECK_INT(ws_watch_set(loop, &w.watch, 0), APR_SUCCESS);
    CHECK_INT(w.watch.pfd.reqevents, 0);
    ws_loop_turn(loop, 0);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 2);
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN), APR_SUCCESS);
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN), APR_SUCCESS);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 3);

    /* POLLIN to POLLOUT: fires for POLLOUT only */
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLOUT), APR_SUCCESS);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 4);
    CHECK(w.events & APR_POLLOUT);
    CHECK(!(w.events & APR_POLLIN));

    /* back to POLLIN with nothing to read: nothing, though writable */
    recv_byte(a);
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN), APR_SUCCESS);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 4);

    /* both */
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN | APR_POLLOUT),
              APR_SUCCESS);
    ws_loop_turn(loop, 0);
    CHECK_INT(w.fired, 5);
    CHECK(w.events & APR_POLLOUT);
    CHECK(!(w.events & APR_POLLIN));
    CHECK_INT(ws_watch_set(loop, &w.watch, 0), APR_SUCCESS);

    /* two ready watches, each unwatching the other when it fires: only
     * the first to run is called in that turn, and it stays watched */
    wwatch_init(&wa, loop, a, p);
    wwatch_init(&wb, loop, b, p);
    wa.other = &wb;
    wb.other = &wa;
    CHECK_INT(ws_watch_set(loop, &wa.watch, APR_POLLOUT), APR_SUCCESS);
    CHECK_INT(ws_watch_set(loop, &wb.watch, APR_POLLOUT), APR_SUCCESS);
    ws_loop_turn(loop, 0);
    CHECK_INT(wa.fired + wb.fired, 1);
    CHECK_INT(wa.watch.pfd.reqevents + wb.watch.pfd.reqevents, APR_POLLOUT);
    wa.other = wb.other = NULL;
    ws_loop_turn(loop, 0);
    CHECK_INT(wa.fired + wb.fired, 2);
    CHECK_INT(ws_watch_set(loop, &wa.watch, 0), APR_SUCCESS);
    CHECK_INT(ws_watch_set(loop, &wb.watch, 0), APR_SUCCESS);

    /* a descriptor the pollset refuses: an error, and not polled */
    apr_os_sock_put(&bad, &badfd, p);
    wwatch_init(&wb, loop, bad, p);
    CHECK(ws_watch_set(loop, &wb.watch, APR_POLLIN) != APR_SUCCESS);
    CHECK_INT(wb.watch.pfd.reqevents, 0);
    CHECK_INT(ws_watch_set(loop, &wb.watch, 0), APR_SUCCESS);

    /* data from another thread wakes a loop blocked in ws_loop_run */
    w.fired = 0;
    w.stop_loop = 1;
    CHECK_INT(ws_watch_set(loop, &w.watch, APR_POLLIN), APR_SUCCESS);
    watchdog_arm(&wd, loop, 5);
    sd.s = b;
    foreign_start(&f, p, sender_main, &sd);
    ws_loop_run(loop);
    foreign_join(&f);
    watchdog_disarm(&wd);
    CHECK_INT(sd.rv, APR_SUCCESS);
    CHECK_INT(wd.fired, 0);
    CHECK_INT(w.fired, 1);
    CHECK(w.events & APR_POLLIN);
    CHECK_INT(w.not_current, 0);
    CHECK_INT(ws_watch_set(loop, &w.watch, 0), APR_SUCCESS);

    apr_socket_close(a);
    apr_socket_close(b);
    apr_pool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Destroying a loop's pool                                            */

/* A loop's memory comes from its pool: destroying the pool with timers
 * armed (the heap grown past its first size) and posts pending must
 * leave nothing allocated.  Checked by LeakSanitizer (make test
 * SANITIZE=1); here only that destroying runs nothing. */
static void test_destroy(void)
{
    enum { N = 1000 };
    apr_pool_t *p;
    ws_loop *loop = new_loop(&p);
    ws_timer *t = calloc(N, sizeof(*t));
    int fired = 0, ran = 0, i;

    for (i = 0; i < N; i++) {
        t[i].fn = count_fire;
        t[i].baton = &fired;
        ws_timer_set(loop, &t[i], apr_time_now() - 1);
    }
    for (i = 0; i < 10; i++) {
        ws_loop_post(loop, count_fire, &ran);
    }
    apr_pool_destroy(p);
    CHECK_INT(fired, 0);
    CHECK_INT(ran, 0);
    free(t);
}

/* ------------------------------------------------------------------ */

static void on_alarm(int sig)
{
    static const char msg[] = "test_loop: timed out: a turn never "
                              "returned, or the loop never stopped\n";

    (void)sig;
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
        /* nothing more to do */
    }
    _exit(1);
}

int main(void)
{
    /* The whole run takes about a second, under ThreadSanitizer too; a
     * hang (a loop blocked for good) fails instead. */
    signal(SIGALRM, on_alarm);
    alarm(180);
    apr_initialize();
    apr_pool_create(&root, NULL);
    test_turn_idle();
    test_timer_order();
    test_timer_storm();
    test_timer_set_clear();
    test_timer_no_spin();
    test_timer_random();
    test_post_nested();
    test_post_threads();
    test_post_wakes_loop();
    test_stop();
    test_watch();
    test_destroy();
    apr_pool_destroy(root);
    apr_terminate();
    return UNIT_DONE();
}
