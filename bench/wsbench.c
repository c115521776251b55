/* Licensed under the Apache License, Version 2.0.
 *
 * wsbench: a WebSocket load generator (one thread, epoll, non-blocking).
 *
 *   wsbench [options] ws://HOST:PORT/PATH | wss://HOST:PORT/PATH
 *
 * Opens N connections (-c), does the RFC 6455 or hixie-76 (-P hixie76)
 * handshake, then keeps D messages (-d) of S bytes (-s) in flight on each
 * for T seconds (-t), checks every echoed byte and prints messages/s,
 * MB/s and the latency quantiles.  -i: idle mode, open N connections,
 * hold them T seconds (or until SIGUSR1), count how many stayed open, then
 * send one message on each and count the echoes.  -S: smoke mode, a few
 * messages of several sizes on each connection, exit 0 on success.
 * Opening gives up on every connection not open yet when no handshake has
 * completed for the handshake timeout (-T): a server that stops accepting
 * fails the run instead of stalling it.
 * -z offers permessage-deflate (RFC 7692) and fails a connection whose
 * server does not accept it; the client then compresses what it sends
 * (zlib, level -L) and inflates what comes back, and the report gives the
 * frame bytes on the wire per message, each way.  -J sends compressible
 * JSON-like text instead of random letters, each message from another
 * place of 4 MiB of records.
 * The last line of output is "RESULT key=value ...", for scripts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "wsbench.h"

#define MAX_EVENTS   1024
#define SMOKE_GOAL   16
#define NS           1000000000ull

static void usage(void)
{
    fprintf(stderr,
        "usage: wsbench [options] ws://HOST:PORT/PATH | wss://...\n"
        "  -c N     connections (1)\n"
        "  -d D     messages in flight per connection (1)\n"
        "  -s S     message size in bytes, K/M suffix (32)\n"
        "  -t T     seconds to measure or to hold (5)\n"
        "  -P PROTO rfc6455 (default) or hixie76\n"
        "  -b       binary messages (default: text)\n"
        "  -i       idle mode: open, hold (SIGUSR1 ends it early), count,\n"
        "           then one message on each: count the echoes\n"
        "  -S       smoke mode: a few messages, exit 0 when all echoed\n"
        "  -m M     handshakes in progress at once (256)\n"
        "  -T SEC   handshake timeout per connection, and how long opening\n"
        "           goes on without one handshake completing (10)\n"
        "  -z       offer permessage-deflate; fail connections without it\n"
        "  -L N     zlib level of what the client compresses (1)\n"
        "  -J       JSON-like compressible messages (default: random\n"
        "           letters)\n"
        "  -F       fan-out: connection 0 publishes (D messages in flight\n"
        "           until every connection received them), every\n"
        "           connection receives; latency = publish to last delivery\n"
        "  -p PORT  -F: connection 0 connects to PORT (another server)\n"
        "  -v       print every failure\n");
    exit(2);
}

/* Idle mode: SIGUSR1 ends the hold. */
static volatile sig_atomic_t hold_over;

static void on_usr1(int sig)
{
    (void)sig;
    hold_over = 1;
}

uint64_t wsb_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

void wsb_fail(wsb_run *run, wsb_conn *c, const char *why)
{
    static int printed;

    if (c->state == ST_OPEN) {
        run->n_open--;
        run->errors++;
    }
    else {
        run->n_failed++;
        run->n_connecting--;
    }
    if (run->o.verbose || printed++ < 5) {
        fprintf(stderr, "wsbench: connection %ld: %s\n",
                (long)(c - run->conns), why);
    }
    wsb_net_close(run, c);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*end == 'k' || *end == 'K') {
        v *= 1024;
    }
    else if (*end == 'm' || *end == 'M') {
        v *= 1024 * 1024;
    }
    return (size_t)v;
}

/* ws[s]://host:port/path, written into o (url is modified). */
static int parse_url(wsb_opts *o, char *url)
{
    char *host, *slash, *colon;

    if (strncmp(url, "ws://", 5) == 0) {
        host = url + 5;
    }
    else if (strncmp(url, "wss://", 6) == 0) {
        host = url + 6;
        o->tls = 1;
    }
    else {
        return -1;
    }
    slash = strchr(host, '/');
    o->path = slash != NULL ? strdup(slash) : "/";
    if (slash != NULL) {
        *slash = '\0';
    }
    colon = strrchr(host, ':');
    o->port = colon != NULL ? colon + 1 : (o->tls ? "443" : "80");
    if (colon != NULL) {
        *colon = '\0';
    }
    o->host = host;
    return 0;
}

static void parse_options(wsb_opts *o, int argc, char **argv)
{
    int ch;

    while ((ch = getopt(argc, argv, "c:d:s:t:P:biSm:T:vzL:JFp:")) != -1) {
        switch (ch) {
        case 'c': o->conns = atoi(optarg); break;
        case 'd': o->depth = atoi(optarg); break;
        case 's': o->size = parse_size(optarg); break;
        case 't': o->seconds = atof(optarg); break;
        case 'P':
            if (strcmp(optarg, "hixie76") == 0) {
                o->proto = PROTO_HIXIE76;
            }
            else if (strcmp(optarg, "rfc6455") != 0) {
                usage();
            }
            break;
        case 'b': o->binary = 1; break;
        case 'i': o->idle = 1; break;
        case 'S': o->smoke = 1; break;
        case 'm': o->max_connecting = atoi(optarg); break;
        case 'T': o->timeout = atof(optarg); break;
        case 'v': o->verbose = 1; break;
        case 'z': o->deflate = 1; break;
        case 'L': o->level = atoi(optarg); break;
        case 'J': o->json = 1; break;
        case 'F': o->fanout = 1; break;
        case 'p': o->pub_port = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || parse_url(o, argv[optind]) < 0
        || o->conns < 1 || o->depth < 1 || o->max_connecting < 1
        || (o->proto == PROTO_HIXIE76 && (o->binary || o->deflate))
        || o->level < 0 || o->level > 9
        || (o->fanout && (o->idle || o->smoke || o->deflate))) {
        usage();
    }
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

static int resolve_one(const wsb_run *run, const char *port,
                       struct sockaddr_storage *addr, socklen_t *len)
{
    struct addrinfo hints, *ai;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(run->o.host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "wsbench: %s: %s\n", run->o.host, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static int resolve(wsb_run *run)
{
    if (run->o.pub_port != NULL
        && resolve_one(run, run->o.pub_port, &run->pub_addr,
                       &run->pub_addrlen) < 0) {
        return -1;
    }
    return resolve_one(run, run->o.port, &run->addr, &run->addrlen);
}

/* -J: JSON-like records, the numbers random (no newline either). */
static void json_pattern(unsigned char *p, size_t len)
{
    uint32_t x = 2463534242u;
    size_t at = 0;

    while (at < len) {
        char rec[160];
        int n;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = snprintf(rec, sizeof(rec), "{\"id\":%u,\"user\":\"user%u\","
                     "\"score\":%u,\"tags\":[\"alpha\",\"beta%u\"],"
                     "\"active\":%s},", x % 1000000, x % 97, (x >> 8) % 10000,
                     (x >> 4) % 7, (x & 1) ? "true" : "false");
        if ((size_t)n > len - at) {
            n = (int)(len - at);
        }
        memcpy(p + at, rec, (size_t)n);
        at += (size_t)n;
    }
}

/* Printable bytes (no newline: websocketd echoes lines), long enough for
 * the largest message at any of the 256 start offsets. */
static int make_pattern(wsb_run *run)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (run->o.size > 70000 ? run->o.size : 70000) + 256, i;
    uint32_t x = 2463534242u;

    /* JSON: 4 MiB of records to take messages from, so that those in a
     * deflate window are not copies of each other */
    if (run->o.json) {
        run->json_span = 4 * 1024 * 1024;
        len += run->json_span;
    }
    run->pattern = malloc(len);
    if (run->pattern == NULL) {
        return -1;
    }
    if (run->o.json) {
        json_pattern(run->pattern, len);
        return 0;
    }
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        run->pattern[i] = (unsigned char)alpha[x & 63];
    }
    return 0;
}

static int make_tls(wsb_run *run)
{
    run->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (run->ssl_ctx == NULL) {
        ERR_print_errors_fp(stderr);
        return -1;
    }
    SSL_CTX_set_verify(run->ssl_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(run->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

static void raise_fd_limit(int conns)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_cur < (rlim_t)conns + 16) {
        fprintf(stderr, "wsbench: warning: open file limit %lu is below "
                "%d connections\n", (unsigned long)rl.rlim_cur, conns);
    }
}

static int setup(wsb_run *run)
{
    int i;
    struct sigaction sa;

    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;        /* no SA_RESTART: epoll_wait returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    raise_fd_limit(run->o.conns);
    if (resolve(run) < 0 || make_pattern(run) < 0
        || (run->o.tls && make_tls(run) < 0)) {
        return -1;
    }
    run->epfd = epoll_create1(EPOLL_CLOEXEC);
    run->conns = calloc((size_t)run->o.conns, sizeof(*run->conns));
    if (run->epfd < 0 || run->conns == NULL) {
        perror("wsbench");
        return -1;
    }
    for (i = 0; i < run->o.conns; i++) {
        run->conns[i].fd = -1;
        run->conns[i].rng = 0x9E3779B9u ^ (uint32_t)(i * 2654435761u + 1);
    }
    if (run->o.smoke) {
        run->smoke_goal = SMOKE_GOAL;
    }
    if (run->o.fanout) {
        run->pub_at = calloc((size_t)run->o.depth, sizeof(*run->pub_at));
        run->pub_got = calloc((size_t)run->o.depth, sizeof(*run->pub_got));
        if (run->pub_at == NULL || run->pub_got == NULL) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Event loop                                                          */

static void poll_once(wsb_run *run, int timeout_ms)
{
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(run->epfd, ev, MAX_EVENTS, timeout_ms), i;

    for (i = 0; i < n; i++) {
        wsb_conn *c = ev[i].data.ptr;

        if (c->state != ST_DONE) {
            wsb_net_event(run, c);
        }
    }
    if (run->pub_wake) {
        run->pub_wake = 0;
        if (run->conns[0].state == ST_OPEN) {
            wsb_net_pump(run, &run->conns[0]);
        }
    }
}

/* Start connections while fewer than -m handshakes are in progress. */
static void start_more(wsb_run *run)
{
    while (run->next_conn < run->o.conns
           && run->n_connecting < run->o.max_connecting) {
        wsb_conn *c = &run->conns[run->next_conn++];

        run->n_connecting++;
        if (wsb_net_start(run, c) < 0) {
            wsb_fail(run, c, strerror(errno));
        }
    }
}

static void expire_handshakes(wsb_run *run, uint64_t now)
{
    uint64_t limit = (uint64_t)(run->o.timeout * NS);
    int i;

    for (i = 0; i < run->next_conn; i++) {
        wsb_conn *c = &run->conns[i];

        if (c->state >= ST_CONNECTING && c->state < ST_OPEN
            && now - c->started > limit) {
            wsb_fail(run, c, "handshake timeout");
        }
    }
}

/* No handshake completed for the timeout: fail the connections in
 * progress and count those not started as failed. */
static void give_up(wsb_run *run)
{
    int i, left = run->o.conns - run->next_conn;

    for (i = 0; i < run->next_conn; i++) {
        wsb_conn *c = &run->conns[i];

        if (c->state >= ST_CONNECTING && c->state < ST_OPEN) {
            left++;
            wsb_fail(run, c, "given up (no handshake completes)");
        }
    }
    for (i = run->next_conn; i < run->o.conns; i++) {
        run->conns[i].state = ST_DONE;
        run->n_failed++;
    }
    run->next_conn = run->o.conns;
    fprintf(stderr, "wsbench: gave up on %d connections: no handshake "
            "completed in %.1f s (%d open)\n", left, run->o.timeout,
            run->n_open);
}

/* Phase 1: every connection is open or has failed. */
static void open_all(wsb_run *run)
{
    uint64_t last_scan = wsb_now(), last_progress = last_scan;
    uint64_t limit = (uint64_t)(run->o.timeout * NS);
    int opened = run->n_opened;

    while (run->n_open + run->n_failed + run->errors
           < (uint64_t)run->o.conns) {
        uint64_t now;

        start_more(run);
        poll_once(run, 100);
        now = wsb_now();
        if (run->n_opened != opened) {
            opened = run->n_opened;
            last_progress = now;
        }
        else if (now - last_progress > limit) {
            give_up(run);
            break;
        }
        if (now - last_scan > NS / 10) {
            expire_handshakes(run, now);
            last_scan = now;
        }
    }
}

static int smoke_done(const wsb_run *run)
{
    int i;

    for (i = 0; i < run->o.conns; i++) {
        const wsb_conn *c = &run->conns[i];

        if (c->state == ST_OPEN && c->echoed < run->smoke_goal) {
            return 0;
        }
    }
    return 1;
}

/* Phase 2: traffic (or, idle mode, silence) until the time is up. */
static void measure(wsb_run *run)
{
    int i;

    run->running = !run->o.idle;
    run->t_start = wsb_now();
    run->t_end = run->t_start + (uint64_t)(run->o.seconds * NS);
    for (i = 0; i < run->o.conns; i++) {
        if (run->conns[i].state == ST_OPEN) {
            wsb_net_pump(run, &run->conns[i]);
        }
    }
    while (wsb_now() < run->t_end && run->n_open > 0) {
        if (run->smoke_goal && smoke_done(run)) {
            break;
        }
        if (run->o.idle && hold_over) {
            break;
        }
        poll_once(run, 50);
    }
    run->t_end = wsb_now() < run->t_end ? wsb_now() : run->t_end;
    run->running = 0;
}

/* Idle mode, after the hold: one message of S bytes on each open
 * connection; n_echoed = connections whose echo came back (within -T). */
static void echo_check(wsb_run *run)
{
    int i;

    run->smoke_goal = 1;
    run->running = 1;
    run->t_start = wsb_now();
    run->t_end = run->t_start + (uint64_t)(run->o.timeout * NS);
    for (i = 0; i < run->o.conns; i++) {
        if (run->conns[i].state == ST_OPEN) {
            wsb_net_pump(run, &run->conns[i]);
        }
    }
    while (wsb_now() < run->t_end && run->n_open > 0 && !smoke_done(run)) {
        poll_once(run, 50);
    }
    run->running = 0;
    for (i = 0; i < run->o.conns; i++) {
        if (run->conns[i].state == ST_OPEN && run->conns[i].echoed >= 1) {
            run->n_echoed++;
        }
    }
}

static void close_all(wsb_run *run)
{
    int i;

    for (i = 0; i < run->o.conns; i++) {
        if (run->conns[i].state != ST_DONE && run->conns[i].fd >= 0) {
            wsb_ws_close(run, &run->conns[i]);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Report                                                              */

static int report_idle(const wsb_run *run, int held, double secs)
{
    printf("wsbench: idle %s://%s:%s%s: %d connections, %d opened, "
           "%d held after %.1f s, %d echoed one message after it\n",
           run->o.tls ? "wss" : "ws", run->o.host, run->o.port, run->o.path,
           run->o.conns, run->o.conns - run->n_failed, held, secs,
           run->n_echoed);
    printf("RESULT mode=idle conns=%d opened=%d held=%d echoed=%d "
           "failed=%d\n", run->o.conns, run->o.conns - run->n_failed, held,
           run->n_echoed, run->n_failed);
    return held == run->o.conns && run->n_echoed == run->o.conns ? 0 : 1;
}

static int report_bench(const wsb_run *run)
{
    double secs = (double)(run->t_end - run->t_start) / NS;
    double rate = secs > 0 ? (double)run->msgs / secs : 0;
    double mbs = secs > 0 ? (double)run->bytes / secs / 1e6 : 0;
    double p50 = wsb_hist_quantile(run->hist, 0.50) / 1e6;
    double p99 = wsb_hist_quantile(run->hist, 0.99) / 1e6;
    double p999 = wsb_hist_quantile(run->hist, 0.999) / 1e6;
    int ok = run->errors == 0 && run->n_failed == 0 && run->msgs > 0;

    printf("wsbench: %s://%s:%s%s %s, %d conns x %zu B x %d in flight, "
           "%.1f s\n", run->o.tls ? "wss" : "ws", run->o.host, run->o.port,
           run->o.path, run->o.proto == PROTO_HIXIE76 ? "hixie-76"
           : "rfc6455", run->o.conns, run->o.size, run->o.depth, secs);
    printf("  %d open, %d failed, %llu errors\n", run->n_open, run->n_failed,
           (unsigned long long)run->errors);
    printf("  %llu messages: %.0f msg/s, %.2f MB/s echoed payload\n",
           (unsigned long long)run->msgs, rate, mbs);
    printf("  on the wire per message: %.0f B from the server, %.0f B to "
           "it (frames; %zu B of payload%s)\n",
           run->msgs ? (double)run->wire_in / (double)run->msgs : 0,
           run->msgs ? (double)run->wire_out / (double)run->msgs : 0,
           run->o.size, run->o.deflate ? ", permessage-deflate" : "");
    printf("  latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms\n",
           p50, p99, p999);
    if (run->smoke_goal) {
        ok = ok && smoke_done(run) && run->n_open == run->o.conns;
        printf("  smoke: %s\n", ok ? "ok" : "FAILED");
    }
    if (run->o.fanout) {
        printf("  fan-out to %d connections: %.1f published/s; publish to "
               "last delivery p50 %.3f ms, p99 %.3f ms\n", run->n_open,
               run->n_open > 0 ? rate / run->n_open : 0, p50, p99);
    }
    printf("RESULT mode=%s msg_s=%.1f mb_s=%.3f p50_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f open=%d failed=%d errors=%llu wire_in=%.1f "
           "wire_out=%.1f\n",
           run->smoke_goal ? "smoke" : run->o.fanout ? "fanout" : "bench",
           rate, mbs, p50, p99, p999,
           run->n_open, run->n_failed, (unsigned long long)run->errors,
           run->msgs ? (double)run->wire_in / (double)run->msgs : 0,
           run->msgs ? (double)run->wire_out / (double)run->msgs : 0);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    static wsb_run run;
    int rc, held = 0;
    double held_for = 0;

    run.o.conns = 1;
    run.o.depth = 1;
    run.o.size = 32;
    run.o.seconds = 5;
    run.o.max_connecting = 256;
    run.o.timeout = 10;
    run.o.level = 1;
    parse_options(&run.o, argc, argv);
    if (setup(&run) < 0) {
        return 2;
    }
    open_all(&run);
    if (run.o.idle) {
        printf("HOLDING opened=%d of %d\n", run.n_open, run.o.conns);
        fflush(stdout);
    }
    if (run.n_open > 0) {
        measure(&run);
    }
    if (run.o.idle) {
        held = run.n_open;
        held_for = (double)(run.t_end - run.t_start) / NS;
        if (run.n_open > 0) {
            echo_check(&run);
        }
    }
    rc = run.o.idle ? report_idle(&run, held, held_for) : report_bench(&run);
    close_all(&run);
    return rc;
}
