/* Licensed under the Apache License, Version 2.0.
 *
 * exec_io.c: the program's three pipes, non-blocking, watched on the
 * connection's loop (see exec.c for the whole picture).
 *
 * stdout to the client: on POLLIN up to EXEC_READS_PER_WAKE reads of
 * EXEC_CHUNK.  Binary mode sends each read as one binary message.  Lines
 * mode sends each line (without its "\n" or "\r\n") as one text message;
 * a line longer than EXEC_LINE_MAX goes out as fragments of one message
 * (send_brigade) as it comes, so no line is held whole.  Text that is not
 * UTF-8 gets U+FFFD for each bad byte.  When send says FULL the watch
 * stops asking for POLLIN until on_drain: the pipe fills and the program
 * blocks in write().
 *
 * The client to stdin: written at once as far as the pipe takes it; the
 * rest waits in a buffer and goes on POLLOUT.  Above EXEC_IN_HIGH waiting
 * bytes the client is paused (TCP backpressure reaches it), resumed at
 * EXEC_IN_LOW.  A program that closed its stdin (EPIPE) gets nothing
 * more: the client's messages are dropped.  A program that takes nothing
 * for the server's Timeout while the client is paused fails: the client
 * gets 1011 (while paused the module reads nothing, so it would not even
 * see the client go away).
 *
 * stderr: each line goes to the error log with the client and the URI.
 *
 * The end: stdout at EOF means the program is ending: stdin is closed and
 * a 20 ms timer waits for its exit (SIGTERM after CloseTimeout, SIGKILL
 * one CloseTimeout later); once reaped the WebSocket is closed, 1000 for
 * exit status 0, 1011 otherwise, after everything it wrote.  The client
 * going first closes stdin the same way.
 */
#include "exec.h"

#include "http_log.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */

/* Length of the well-formed UTF-8 character at s (RFC 3629: no overlong
 * form, no surrogate, at most U+10FFFF), or 0. */
static apr_size_t exec_utf8_char(const unsigned char *s, apr_size_t len)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    apr_size_t n, i;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : lo;
        hi = c == 0xED ? 0x9F : hi;
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi;
    }
    else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/* Bytes at the end of s that begin a character not finished yet. */
static apr_size_t exec_utf8_tail(const char *s, apr_size_t len)
{
    apr_size_t k, need;
    unsigned char c;

    for (k = 1; k <= 3 && k <= len; k++) {
        c = (unsigned char)s[len - k];
        if (c < 0x80) {
            return 0;
        }
        if (c >= 0xC0) {
            need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            return need > k ? k : 0;
        }
    }
    return 0;
}

/* s as valid UTF-8: s itself, or a malloc'ed copy (*copy, to free) with
 * U+FFFD for each byte that is not part of a character. */
static const char *exec_utf8_fix(const char *s, apr_size_t *len, char **copy)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t i = 0, o, n;
    char *fixed;

    while (i < *len && (n = exec_utf8_char(u + i, *len - i)) > 0) {
        i += n;
    }
    *copy = NULL;
    if (i == *len || (fixed = malloc(3 * *len)) == NULL) {
        *len = i;                   /* all of it, or the valid part */
        return s;
    }
    memcpy(fixed, s, i);
    for (o = i; i < *len; i += n ? n : 1) {
        n = exec_utf8_char(u + i, *len - i);
        memcpy(fixed + o, n ? s + i : "\xEF\xBF\xBD", n ? n : 3);
        o += n ? n : 3;
    }
    *len = o;
    return *copy = fixed;
}

/* ------------------------------------------------------------------ */
/* Pipes                                                               */

static void exec_pipe_events(exec_conn *ec, exec_pipe *p, apr_int16_t events)
{
    if (p->watch != NULL && events != p->watched) {
        ec->server->watch_events(ec->conn, p->watch, events);
        p->watched = events;
    }
}

static void exec_pipe_close(exec_conn *ec, exec_pipe *p)
{
    if (p->watch != NULL) {
        ec->server->watch_remove(ec->conn, p->watch);
        p->watch = NULL;
    }
    if (p->file != NULL) {
        apr_file_close(p->file);
        p->file = NULL;
    }
}

static apr_status_t exec_pipe_watch(exec_conn *ec, exec_pipe *p,
                                    apr_int16_t events, websocket_watch_fn fn)
{
    p->pfd.p = ec->pool;
    p->pfd.desc_type = APR_POLL_FILE;
    p->pfd.desc.f = p->file;
    p->pfd.reqevents = p->watched = events;
    p->watch = ec->server->watch_add(ec->conn, &p->pfd, fn, ec);
    return p->watch != NULL ? APR_SUCCESS : APR_ENOMEM;
}

/* ------------------------------------------------------------------ */
/* stdout to the client                                                */

static void exec_sent(exec_conn *ec, websocket_send_result sent)
{
    if (sent == WEBSOCKET_SEND_FULL) {
        ec->full = 1;
    }
    else if (sent != WEBSOCKET_SEND_OK) {
        ec->ending = 1;             /* the module is closing the client */
    }
}

/* Text as the rest of a message (final) or its next fragment; returns
 * the bytes taken (a fragment leaves an unfinished character for the
 * next). */
static apr_size_t exec_send_text(exec_conn *ec, const char *data,
                                 apr_size_t len, int final)
{
    apr_size_t take = final ? len : len - exec_utf8_tail(data, len);
    apr_size_t n = take;
    char *copy;
    const char *text = exec_utf8_fix(data, &n, &copy);
    websocket_send_result sent;

    if (final && !ec->streaming) {
        sent = ec->server->send(ec->conn, WEBSOCKET_TEXT, text, n);
    }
    else {
        if (n > 0) {
            APR_BRIGADE_INSERT_TAIL(ec->bb, apr_bucket_heap_create(
                text, n, NULL, ec->server->bucket_alloc(ec->conn)));
        }
        sent = ec->server->send_brigade(ec->conn, WEBSOCKET_TEXT, ec->bb,
                                        final);
        ec->streaming = !final;
    }
    free(copy);
    exec_sent(ec, sent);
    return take;
}

/* Send the whole lines of lbuf; a full buffer without a newline goes out
 * as a fragment.  What is left is the start of the next line. */
static void exec_lines_emit(exec_conn *ec)
{
    char *p = ec->lbuf, *end = ec->lbuf + ec->llen, *nl;
    apr_size_t len;

    while (!ec->ending && (nl = memchr(p, '\n', (apr_size_t)(end - p)))) {
        len = (apr_size_t)(nl - p);
        if (len > 0 && p[len - 1] == '\r') {
            len--;
        }
        exec_send_text(ec, p, len, 1);
        p = nl + 1;
    }
    if (!ec->ending && p == ec->lbuf && ec->llen == EXEC_LINE_MAX) {
        p += exec_send_text(ec, p, ec->llen, 0);
    }
    if (ec->ending) {
        p = end;                    /* nobody to send it to */
    }
    ec->llen = (apr_size_t)(end - p);
    memmove(ec->lbuf, p, ec->llen);
}

/* One read from stdout, sent. */
static apr_status_t exec_read_stdout(exec_conn *ec)
{
    apr_size_t n = EXEC_CHUNK - ec->llen;
    apr_status_t rv;

    if (ec->lbuf == NULL && (ec->lbuf = malloc(EXEC_CHUNK)) == NULL) {
        return APR_ENOMEM;
    }
    rv = apr_file_read(ec->out.file, ec->lbuf + ec->llen, &n);
    if (n == 0 || ec->ending) {
        return rv;
    }
    if (ec->loc->binary) {
        exec_sent(ec, ec->server->send(ec->conn, WEBSOCKET_BINARY, ec->lbuf,
                                       n));
    }
    else {
        ec->llen += n;
        exec_lines_emit(ec);
    }
    return rv;
}

static void exec_on_stdout(const websocket_server *server,
                           websocket_conn *conn, void *baton,
                           apr_int16_t rtnevents)
{
    exec_conn *ec = baton;
    apr_status_t rv = APR_SUCCESS;
    int turn;

    (void)server;
    (void)conn;
    (void)rtnevents;
    for (turn = 0; turn < EXEC_READS_PER_WAKE && rv == APR_SUCCESS
                   && !ec->full; turn++) {
        rv = exec_read_stdout(ec);
    }
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        if (!APR_STATUS_IS_EOF(rv)) {
            exec_log(ec, APLOG_ERR, rv, "reading the program's stdout");
        }
        if (!ec->ending && (ec->llen > 0 || ec->streaming)) {
            exec_send_text(ec, ec->lbuf, ec->llen, 1);  /* the last line */
        }
        ec->llen = 0;
        ec->out_eof = 1;
        exec_pipe_close(ec, &ec->out);
        exec_io_ending(ec);
    }
    if (ec->llen == 0) {
        free(ec->lbuf);             /* idle connections stay small */
        ec->lbuf = NULL;
    }
    exec_io_update(ec);
}

/* ------------------------------------------------------------------ */
/* stderr to the error log                                             */

static void exec_log_stderr(exec_conn *ec, const char *line, apr_size_t len)
{
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    exec_log(ec, APLOG_ERR, 0, "stderr: %.*s", (int)len, line);
}

/* Log the whole lines read from stderr (at EOF the rest too); a line
 * longer than the buffer is logged in pieces. */
static void exec_read_stderr(exec_conn *ec)
{
    apr_status_t rv = APR_SUCCESS;
    apr_size_t n, start;
    char *nl;
    int turn;

    for (turn = 0; turn < EXEC_READS_PER_WAKE && rv == APR_SUCCESS; turn++) {
        n = sizeof(ec->ebuf) - ec->elen;
        rv = apr_file_read(ec->err.file, ec->ebuf + ec->elen, &n);
        ec->elen += n;
        for (start = 0; (nl = memchr(ec->ebuf + start, '\n',
                                     ec->elen - start)) != NULL;
             start = (apr_size_t)(nl - ec->ebuf) + 1) {
            exec_log_stderr(ec, ec->ebuf + start,
                            (apr_size_t)(nl - ec->ebuf) - start);
        }
        if (start == 0 && ec->elen == sizeof(ec->ebuf)) {
            exec_log_stderr(ec, ec->ebuf, ec->elen);
            start = ec->elen;
        }
        ec->elen -= start;
        memmove(ec->ebuf, ec->ebuf + start, ec->elen);
    }
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
        if (ec->elen > 0) {
            exec_log_stderr(ec, ec->ebuf, ec->elen);
            ec->elen = 0;
        }
        exec_pipe_close(ec, &ec->err);
    }
}

static void exec_on_stderr(const websocket_server *server,
                           websocket_conn *conn, void *baton,
                           apr_int16_t rtnevents)
{
    (void)server;
    (void)conn;
    (void)rtnevents;
    exec_read_stderr(baton);
}

/* ------------------------------------------------------------------ */
/* The client to stdin                                                 */

/* The program takes nothing more (it closed stdin, or the client is
 * going): close our end, drop what waits. */
static void exec_stdin_done(exec_conn *ec)
{
    exec_pipe_close(ec, &ec->in);
    free(ec->ibuf);
    ec->ibuf = NULL;
    ec->istart = ec->iend = ec->icap = 0;
}

/* After a write to stdin: an error other than EAGAIN means the program
 * takes nothing more (non-zero then). */
static int exec_stdin_failed(exec_conn *ec, apr_status_t rv)
{
    if (rv == APR_SUCCESS || APR_STATUS_IS_EAGAIN(rv)) {
        return 0;
    }
    exec_log(ec, APLOG_DEBUG, rv, "the program's stdin is closed");
    exec_stdin_done(ec);
    return 1;
}

/* Write what waits as far as the pipe takes it. */
static void exec_stdin_flush(exec_conn *ec)
{
    apr_status_t rv = APR_SUCCESS;
    apr_size_t n;

    while (ec->istart < ec->iend && rv == APR_SUCCESS) {
        n = ec->iend - ec->istart;
        rv = apr_file_write(ec->in.file, ec->ibuf + ec->istart, &n);
        ec->istart += n;
        ec->last_in = n ? apr_time_now() : ec->last_in;
    }
    if (!exec_stdin_failed(ec, rv) && ec->istart == ec->iend) {
        free(ec->ibuf);             /* idle connections stay small */
        ec->ibuf = NULL;
        ec->istart = ec->iend = ec->icap = 0;
    }
}

/* Room for len more bytes at ibuf + iend, or NULL. */
static char *exec_stdin_reserve(exec_conn *ec, apr_size_t len)
{
    apr_size_t used = ec->iend - ec->istart, cap;
    char *p;

    if (ec->istart > 0) {
        memmove(ec->ibuf, ec->ibuf + ec->istart, used);
        ec->istart = 0;
        ec->iend = used;
    }
    if (used + len > ec->icap) {
        cap = ec->icap ? 2 * ec->icap : EXEC_IN_LOW;
        cap = cap < used + len ? used + len : cap;
        if ((p = realloc(ec->ibuf, cap)) == NULL) {
            return NULL;
        }
        ec->ibuf = p;
        ec->icap = cap;
    }
    return ec->ibuf + ec->iend;
}

void exec_io_write(exec_conn *ec, const char *data, apr_size_t len)
{
    apr_size_t n = len;
    char *room;

    if (ec->in.file == NULL || len == 0) {
        return;                     /* stdin is closed: dropped */
    }
    if (ec->istart == ec->iend) {
        if (exec_stdin_failed(ec, apr_file_write(ec->in.file, data, &n))) {
            return;
        }
        ec->last_in = n ? apr_time_now() : ec->last_in;
        data += n;
        len -= n;
    }
    if (len > 0) {
        if ((room = exec_stdin_reserve(ec, len)) == NULL) {
            exec_log(ec, APLOG_ERR, APR_ENOMEM, "buffering for stdin");
            exec_stdin_done(ec);
            return;
        }
        memcpy(room, data, len);
        ec->iend += len;
    }
}

static void exec_on_stdin(const websocket_server *server,
                          websocket_conn *conn, void *baton,
                          apr_int16_t rtnevents)
{
    (void)server;
    (void)conn;
    (void)rtnevents;
    exec_stdin_flush(baton);
    exec_io_update(baton);
}

/* ------------------------------------------------------------------ */
/* The whole                                                           */

static void exec_on_stall_timer(const websocket_server *server,
                                websocket_conn *conn, void *baton);

void exec_io_update(exec_conn *ec)
{
    apr_size_t waiting = ec->iend - ec->istart;
    apr_interval_time_t left;
    int pause = ec->in.file != NULL
                && waiting > (ec->paused ? EXEC_IN_LOW : EXEC_IN_HIGH);

    if (pause != ec->paused) {
        ec->paused = pause;
        ec->server->pause_reading(ec->conn, pause);
    }
    exec_pipe_events(ec, &ec->in, waiting ? APR_POLLOUT : 0);
    exec_pipe_events(ec, &ec->out, ec->full ? 0 : APR_POLLIN);
    if (ec->paused && ec->stall_timer == NULL) {
        left = ec->last_in + ec->server->server_rec_of(ec->conn)->timeout
               - apr_time_now();
        ec->stall_timer = ec->server->timer_add(ec->conn, left > 0 ? left : 0,
                                                0, exec_on_stall_timer, ec);
    }
}

/* The client has been paused a while: has stdin taken anything within
 * the server's Timeout? */
static void exec_on_stall_timer(const websocket_server *server,
                                websocket_conn *conn, void *baton)
{
    exec_conn *ec = baton;
    apr_interval_time_t timeout = server->server_rec_of(conn)->timeout;

    ec->stall_timer = NULL;
    if (ec->paused && apr_time_now() - ec->last_in >= timeout) {
        exec_log(ec, APLOG_ERR, APR_TIMEUP, "the program took nothing on "
                 "stdin for %" APR_TIME_T_FMT " s while the client waited",
                 apr_time_sec(timeout));
        ec->ending = 1;
        server->close(conn, 1011, "the program does not read");
        exec_io_ending(ec);
        return;
    }
    exec_io_update(ec);             /* or wait again for the rest */
}

apr_status_t exec_io_start(exec_conn *ec)
{
    apr_status_t rv;

    ec->last_in = apr_time_now();
    if (!ec->loc->binary) {
        ec->bb = apr_brigade_create(ec->pool,
                                    ec->server->bucket_alloc(ec->conn));
    }
    rv = exec_pipe_watch(ec, &ec->in, 0, exec_on_stdin);
    if (rv == APR_SUCCESS) {
        rv = exec_pipe_watch(ec, &ec->out, APR_POLLIN, exec_on_stdout);
    }
    if (rv == APR_SUCCESS) {
        rv = exec_pipe_watch(ec, &ec->err, APR_POLLIN, exec_on_stderr);
    }
    return rv;
}

void exec_io_close_stdin(exec_conn *ec)
{
    if (ec->in.file != NULL) {
        exec_stdin_flush(ec);       /* what it cannot take now is lost */
        exec_stdin_done(ec);
    }
}

void exec_io_close_all(exec_conn *ec)
{
    ec->in.watch = ec->out.watch = ec->err.watch = NULL;   /* ended */
    exec_io_close_stdin(ec);
    if (ec->err.file != NULL) {
        exec_read_stderr(ec);       /* what it said last */
        if (ec->elen > 0) {
            exec_log_stderr(ec, ec->ebuf, ec->elen);
        }
    }
    exec_pipe_close(ec, &ec->out);
    exec_pipe_close(ec, &ec->err);
    free(ec->lbuf);
    ec->lbuf = NULL;
}

/* The program has ended: the client hears how (unless it is going
 * already). */
static void exec_exited(exec_conn *ec)
{
    char outcome[64];
    exec_proc *p = ec->proc;

    exec_proc_outcome(p, outcome, sizeof(outcome));
    exec_log(ec, APLOG_INFO, 0, "pid %" APR_PID_T_FMT ": %s", p->pid,
             outcome);
    if (ec->err.file != NULL) {
        exec_read_stderr(ec);
    }
    if (!ec->ending) {
        ec->ending = 1;
        ec->server->close(ec->conn, p->status == 0 ? 1000 : 1011, outcome);
    }
    ec->proc = NULL;
    exec_proc_free(p);
}

static void exec_on_reap_tick(const websocket_server *server,
                              websocket_conn *conn, void *baton)
{
    exec_conn *ec = baton;

    if (ec->proc != NULL && !exec_proc_poll(ec->proc, apr_time_now())) {
        return;
    }
    server->timer_cancel(conn, ec->reap_timer);
    ec->reap_timer = NULL;
    if (ec->proc != NULL) {
        exec_exited(ec);
    }
}

void exec_io_ending(exec_conn *ec)
{
    exec_io_close_stdin(ec);
    exec_io_update(ec);
    if (ec->proc == NULL || ec->reap_timer != NULL) {
        return;
    }
    exec_proc_deadlines(ec->proc, ec->loc->close_timeout);
    ec->reap_timer = ec->server->timer_add(ec->conn, 0, EXEC_REAP_TICK,
                                           exec_on_reap_tick, ec);
}
