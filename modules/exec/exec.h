/* Licensed under the Apache License, Version 2.0.
 *
 * exec.h: what the files of the exec plugin share.
 *   exec.c       configuration (init_location) and the connection's life;
 *   exec_env.c   the CGI environment of the program (on_connect);
 *   exec_proc.c  starting the program, reaping it, the per-child reaper
 *                thread for programs that outlive their WebSocket, and
 *                the MaxProcesses count;
 *   exec_io.c    the program's pipes on the connection's loop: stdout to
 *                messages (lines or bytes), messages to stdin, stderr to
 *                the error log, flow control both ways.
 * Everything but the reaper thread runs on the connection's loop thread,
 * one callback at a time: the connection's state is not locked.
 */
#ifndef EXEC_H
#define EXEC_H

#include "websocket_plugin.h"

#include "apr_file_io.h"
#include "apr_poll.h"

#include <sys/types.h>

/* Bytes read from stdout at a time, and reads per wake-up at most. */
#define EXEC_CHUNK            (64 * 1024)
#define EXEC_READS_PER_WAKE   4
/* Lines mode: a line is held whole up to this; a longer one goes out as
 * fragments of one message. */
#define EXEC_LINE_MAX         EXEC_CHUNK
/* Client bytes waiting for stdin: the client is paused above
 * EXEC_IN_HIGH, resumed at EXEC_IN_LOW or below. */
#define EXEC_IN_HIGH          (256 * 1024)
#define EXEC_IN_LOW           (64 * 1024)
/* A stderr line longer than this is logged in pieces. */
#define EXEC_ERR_LINE         2048
/* How often an ending process is looked at (waitpid WNOHANG). */
#define EXEC_REAP_TICK        apr_time_from_msec(20)
#define EXEC_CLOSE_TIMEOUT    apr_time_from_sec(5)
/* When the httpd child exits: SIGTERM at once, SIGKILL this much later. */
#define EXEC_EXIT_GRACE       apr_time_from_sec(1)

/* Shared between the plugin's files but not exported: httpd loads
 * plugins with RTLD_GLOBAL, where exported names could clash. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define EXEC_INTERNAL __attribute__((visibility("hidden")))
#else
#define EXEC_INTERNAL
#endif

/* What init_location made of a location's WebSocketOptions. */
typedef struct exec_location {
    const char *command;            /* as configured, for the logs */
    const char *path;               /* the program, an absolute path */
    char **argv;                    /* argv[0] as configured */
    const char *directory;          /* where it runs */
    int binary;                     /* Mode binary, else lines */
    int max_processes;              /* 0: no limit */
    apr_uint32_t *running;          /* this location's processes in all
                                     * httpd children (shared memory);
                                     * NULL without a limit */
    const char **passenv;           /* "NAME=value" taken from httpd's
                                     * environment at configuration time,
                                     * NULL-terminated */
    char **setenv;                  /* "NAME=value", NULL-terminated */
    char **subprotocols;            /* NULL-terminated; NULL: none */
    apr_interval_time_t close_timeout;
} exec_location;

/* A started program.  It outlives the connection when it must: then the
 * reaper thread owns it (malloc'ed, freed once reaped). */
typedef struct exec_proc {
    pid_t pid;
    apr_uint32_t *running;          /* counted here until reaped */
    server_rec *s;                  /* for the log */
    char *who;                      /* "<uri> (client <ip>)", for the log */
    apr_time_t term_at, kill_at;    /* SIGTERM, SIGKILL the group then
                                     * (0: not scheduled) */
    int signalled;                  /* the last signal sent, or 0 */
    int status;                     /* wait status, once reaped */
    struct exec_proc *next;         /* the reaper's list */
} exec_proc;

/* One end of a pipe to the program, watched on the loop. */
typedef struct exec_pipe {
    apr_file_t *file;               /* non-blocking; NULL once closed */
    apr_pollfd_t pfd;
    websocket_watch *watch;
    apr_int16_t watched;            /* what the watch waits for */
} exec_pipe;

typedef struct exec_conn {
    const websocket_server *server;
    websocket_conn *conn;
    const exec_location *loc;
    apr_pool_t *pool;               /* ours: the request's ends too soon */
    const char *const *envp;        /* from on_connect to on_open (in the
                                     * request's pool) */
    int slot;                       /* holds one of loc->running, no
                                     * process has it yet */
    exec_proc *proc;                /* NULL: none (yet), or reaped */
    websocket_timer *reap_timer;
    websocket_timer *stall_timer;   /* while the client is paused */
    apr_time_t last_in;             /* stdin last took something */

    exec_pipe in, out, err;         /* the program's stdin, stdout, stderr */
    apr_bucket_brigade *bb;         /* fragments of a long line */

    int out_eof;    /* stdout is over: the program is ending */
    int full;       /* send said FULL: stdout is not read until on_drain */
    int ending;     /* the WebSocket is closing: the program's output is
                     * dropped */
    int streaming;  /* a long line is being sent in fragments */
    int paused;     /* we paused reading the client */

    /* Client bytes not yet written to stdin: ibuf[istart, iend),
     * malloc'ed (freed whenever it empties). */
    char *ibuf;
    apr_size_t istart, iend, icap;

    /* Lines mode: stdout bytes not sent yet (lbuf[0, llen) of
     * EXEC_LINE_MAX); stderr bytes of an unfinished line. */
    char *lbuf;
    apr_size_t llen;
    char ebuf[EXEC_ERR_LINE];
    apr_size_t elen;
} exec_conn;

/* exec_env.c */

/* The environment for the program (in r's pool), or NULL (logged). */
EXEC_INTERNAL const char *const *exec_environment(exec_conn *ec,
                                                  request_rec *r);

/* exec_proc.c */

/* Take one of the location's MaxProcesses; 0 when all are taken. */
EXEC_INTERNAL int exec_slot_take(const exec_location *loc);
EXEC_INTERNAL void exec_slot_release(apr_uint32_t *running);
/* Start the program: ec->proc and the three pipes (our ends
 * non-blocking, close-on-exec), or an error (logged by the caller). */
EXEC_INTERNAL apr_status_t exec_spawn(exec_conn *ec);
/* Reap p if it has ended, else send the signal its deadlines call for;
 * non-zero once reaped (p->status is then set, its slot released). */
EXEC_INTERNAL int exec_proc_poll(exec_proc *p, apr_time_t now);
/* Schedule SIGTERM after the location's CloseTimeout and SIGKILL one
 * CloseTimeout later (unless scheduled already). */
EXEC_INTERNAL void exec_proc_deadlines(exec_proc *p,
                                       apr_interval_time_t timeout);
/* "exit status N" or "killed by signal N". */
EXEC_INTERNAL const char *exec_proc_outcome(const exec_proc *p,
                                            char *buf, apr_size_t len);
/* Hand a process whose WebSocket has ended to the reaper thread, which
 * frees it once reaped. */
EXEC_INTERNAL void exec_reaper_adopt(exec_proc *p);
EXEC_INTERNAL void exec_proc_free(exec_proc *p);

/* exec_io.c */

/* Watch the pipes once the program has started (on_open). */
EXEC_INTERNAL apr_status_t exec_io_start(exec_conn *ec);
/* Bytes of a client's message for stdin. */
EXEC_INTERNAL void exec_io_write(exec_conn *ec, const char *data,
                                 apr_size_t len);
/* Set what the watches wait for and pause or resume the client, as the
 * state says: after every change. */
EXEC_INTERNAL void exec_io_update(exec_conn *ec);
/* The client is going: write what stdin takes now, then close it. */
EXEC_INTERNAL void exec_io_close_stdin(exec_conn *ec);
/* on_disconnect: log what stderr holds, close every pipe. */
EXEC_INTERNAL void exec_io_close_all(exec_conn *ec);
/* The program is ending (stdout over, or the client gone): close stdin,
 * schedule the signals, and on the loop look for its end until it is
 * reaped. */
EXEC_INTERNAL void exec_io_ending(exec_conn *ec);
/* Log a line about the connection: "exec: <uri> (client <ip>): ...". */
EXEC_INTERNAL void exec_log(exec_conn *ec, int level, apr_status_t rv,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* EXEC_H */
