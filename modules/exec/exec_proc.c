/* Licensed under the Apache License, Version 2.0.
 *
 * exec_proc.c: the program's process.
 *
 * Starting: posix_spawn, not apr_proc_create.  apr_proc_create fork()s
 * the whole httpd child (a large, multi-threaded process) and then runs
 * pool cleanups in the copy, cannot put the program in a process group
 * of its own, and leaves every descriptor without close-on-exec open in
 * it.  glibc's posix_spawn runs the child on the caller's memory until
 * exec (no copy, nothing but async-signal-safe steps), and its
 * attributes say all we need: a new process group (POSIX_SPAWN_SETPGROUP,
 * so that signals reach what the program starts too), no blocked signal
 * and every signal at its default (httpd ignores SIGPIPE and its threads
 * block signals; both would be inherited through exec), the three pipes
 * as descriptors 0, 1 and 2, every other descriptor closed
 * (posix_spawn_file_actions_addclosefrom_np: httpd holds the listening
 * sockets and other clients' connections) and the working directory
 * (addchdir_np; both glibc >= 2.34).  Our ends of the pipes are
 * close-on-exec from the start (pipe2), so no other process that httpd
 * starts inherits them either.
 *
 * Reaping: never a blocking wait on the loop.  While the WebSocket is
 * open the connection's loop looks with waitpid(WNOHANG) on a 20 ms timer
 * once the program is ending (exec_io.c).  When the WebSocket ends first
 * (on_disconnect; its timers end with it) the process goes to this
 * child's reaper thread: one small thread per httpd child, started with
 * the first such process, that does the same waitpid(WNOHANG) round every
 * 20 ms while it has processes, with the same SIGTERM / SIGKILL deadlines,
 * and sleeps otherwise.  When the httpd child exits (graceful restart,
 * stop, MaxConnectionsPerChild), an atexit handler makes the processes
 * left hurry -- SIGTERM at once, SIGKILL a second later -- and waits for
 * the reaper to reap them, so none is left behind.  The shared object is
 * pinned in memory once the thread runs (the handler and the thread run
 * its code).
 *
 * MaxProcesses: a counter in shared memory per location (made with the
 * configuration, so all the children of one generation share it), taken
 * in on_connect and given back when the process is reaped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* apxs defines it; dladdr, the _np spawn actions */
#endif
#include "exec.h"

#include "http_log.h"
#include "apr_atomic.h"
#include "apr_portable.h"
#include "apr_strings.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* MaxProcesses                                                        */

int exec_slot_take(const exec_location *loc)
{
    apr_uint32_t n;

    if (loc->running == NULL) {
        return 1;
    }
    do {
        n = apr_atomic_read32(loc->running);
        if (n >= (apr_uint32_t)loc->max_processes) {
            return 0;
        }
    } while (apr_atomic_cas32(loc->running, n + 1, n) != n);
    return 1;
}

void exec_slot_release(apr_uint32_t *running)
{
    if (running != NULL) {
        apr_atomic_dec32(running);
    }
}

/* ------------------------------------------------------------------ */
/* Starting                                                            */

/* posix_spawn the location's program with the child's ends of the pipes
 * as its stdin, stdout and stderr; 0 or an errno value. */
static int exec_posix_spawn(const exec_location *loc, const int fds[3],
                            const char *const *envp, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int rc, i;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        return rc;
    }
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigemptyset(&none);
    sigfillset(&all);
    for (i = 0; i < 3 && rc == 0; i++) {
        rc = posix_spawn_file_actions_adddup2(&fa, fds[i], i);
    }
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    rc = rc ? rc : posix_spawn_file_actions_addchdir_np(&fa, loc->directory);
    rc = rc ? rc : posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP
                                                   | POSIX_SPAWN_SETSIGMASK
                                                   | POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawnattr_setpgroup(&attr, 0);
    rc = rc ? rc : posix_spawnattr_setsigmask(&attr, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(&attr, &all);
    rc = rc ? rc : posix_spawn(pid, loc->path, &fa, &attr, loc->argv,
                               (char *const *)envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Our end of a pipe as a non-blocking apr_file_t; closes fd on failure. */
static apr_status_t exec_pipe_wrap(apr_pool_t *pool, int fd, apr_file_t **f)
{
    apr_os_file_t os = fd;
    apr_status_t rv = apr_os_pipe_put_ex(f, &os, 0, pool);

    if (rv != APR_SUCCESS) {
        close(fd);
        *f = NULL;
        return rv;
    }
    return apr_file_pipe_timeout_set(*f, 0);
}

static void exec_close_fds(int *fds, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

static exec_proc *exec_proc_make(exec_conn *ec, pid_t pid)
{
    exec_proc *p = calloc(1, sizeof(*p));

    if (p != NULL) {
        p->pid = pid;
        p->s = ec->server->server_rec_of(ec->conn);
        p->who = malloc(strlen(ec->server->uri(ec->conn))
                        + strlen(ec->server->client_ip(ec->conn))
                        + sizeof(" (client )"));
        if (p->who != NULL) {
            sprintf(p->who, "%s (client %s)", ec->server->uri(ec->conn),
                    ec->server->client_ip(ec->conn));
        }
    }
    return p;
}

apr_status_t exec_spawn(exec_conn *ec)
{
    /* the program's stdin, stdout, stderr: [read, write] each */
    int fds[6] = { -1, -1, -1, -1, -1, -1 }, child[3], i, rc;
    apr_status_t rv = APR_SUCCESS;
    exec_pipe *ours[3] = { &ec->in, &ec->out, &ec->err };
    pid_t pid;

    for (i = 0; i < 3; i++) {
        if (pipe2(fds + 2 * i, O_CLOEXEC) != 0) {
            rv = APR_FROM_OS_ERROR(errno);
            exec_close_fds(fds, 6);
            return rv;
        }
    }
#ifdef F_SETPIPE_SZ
    /* stderr is a trickle: one page instead of 16 leaves more of the
     * user's pipe allowance (pipe-user-pages-soft) to stdin and stdout */
    fcntl(fds[4], F_SETPIPE_SZ, 4096);
#endif
    child[0] = fds[0];
    child[1] = fds[3];
    child[2] = fds[5];
    for (i = 0; i < 3; i++) {
        int *fd = &fds[i == 0 ? 1 : 2 * i];
        apr_status_t r = exec_pipe_wrap(ec->pool, *fd, &ours[i]->file);

        *fd = -1;                   /* the apr_file_t has it now */
        rv = rv ? rv : r;
    }
    rc = rv ? 0 : exec_posix_spawn(ec->loc, child, ec->envp, &pid);
    exec_close_fds(fds, 6);         /* the child's ends */
    if (rv == APR_SUCCESS && rc != 0) {
        rv = APR_FROM_OS_ERROR(rc);
    }
    if (rv == APR_SUCCESS && (ec->proc = exec_proc_make(ec, pid)) == NULL) {
        /* no memory to keep track of it: it does not run */
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        rv = APR_ENOMEM;
    }
    if (rv != APR_SUCCESS) {
        for (i = 0; i < 3; i++) {
            if (ours[i]->file != NULL) {
                apr_file_close(ours[i]->file);
                ours[i]->file = NULL;
            }
        }
        return rv;
    }
    ec->proc->running = ec->loc->running;   /* the slot goes with it */
    ec->slot = 0;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Ending                                                              */

static void exec_proc_signal(exec_proc *p, int sig)
{
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, p->s, "exec: %s: pid %"
                 APR_PID_T_FMT " is still running: %s to its process group",
                 p->who ? p->who : "", p->pid,
                 sig == SIGKILL ? "SIGKILL" : "SIGTERM");
    kill(-p->pid, sig);
    p->signalled = sig;
}

int exec_proc_poll(exec_proc *p, apr_time_t now)
{
    int status = -1;
    pid_t r;

    do {
        r = waitpid(p->pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid || r < 0) {     /* r < 0: not ours to wait for */
        p->status = r < 0 ? -1 : status;
        exec_slot_release(p->running);
        p->running = NULL;
        return 1;
    }
    if (p->kill_at && now >= p->kill_at && p->signalled != SIGKILL) {
        exec_proc_signal(p, SIGKILL);
    }
    else if (p->term_at && now >= p->term_at && p->signalled == 0) {
        exec_proc_signal(p, SIGTERM);
    }
    return 0;
}

void exec_proc_deadlines(exec_proc *p, apr_interval_time_t timeout)
{
    if (p->term_at == 0) {
        p->term_at = apr_time_now() + timeout;
        p->kill_at = p->term_at + (timeout > EXEC_EXIT_GRACE
                                   ? timeout : EXEC_EXIT_GRACE);
    }
}

const char *exec_proc_outcome(const exec_proc *p, char *buf, apr_size_t len)
{
    if (p->status != -1 && WIFEXITED(p->status)) {
        apr_snprintf(buf, len, "exit status %d", WEXITSTATUS(p->status));
    }
    else if (p->status != -1 && WIFSIGNALED(p->status)) {
        apr_snprintf(buf, len, "killed by signal %d", WTERMSIG(p->status));
    }
    else {
        apr_snprintf(buf, len, "ended (status unknown)");
    }
    return buf;
}

void exec_proc_free(exec_proc *p)
{
    exec_slot_release(p->running);
    free(p->who);
    free(p);
}

/* ------------------------------------------------------------------ */
/* The reaper thread                                                   */

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t thread;
    int started;        /* the thread runs, in this process */
    int exiting;        /* the process exits: hurry, then end */
    int done;           /* the thread has ended */
    exec_proc *list;
} exec_reaper = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};

static void exec_reaped(exec_proc *p)
{
    char outcome[64];

    ap_log_error(APLOG_MARK, APLOG_INFO, 0, p->s, "exec: %s: pid %"
                 APR_PID_T_FMT " (after the WebSocket): %s",
                 p->who ? p->who : "", p->pid,
                 exec_proc_outcome(p, outcome, sizeof(outcome)));
    exec_proc_free(p);
}

/* SIGTERM now, SIGKILL soon: the httpd child is exiting. */
static void exec_proc_hurry(exec_proc *p, apr_time_t now)
{
    if (p->term_at == 0 || p->term_at > now) {
        p->term_at = now;
    }
    if (p->kill_at == 0 || p->kill_at > now + EXEC_EXIT_GRACE) {
        p->kill_at = now + EXEC_EXIT_GRACE;
    }
}

/* One round over the list; with the mutex held. */
static void exec_reaper_sweep(void)
{
    apr_time_t now = apr_time_now();
    exec_proc **pp = &exec_reaper.list, *p;

    while ((p = *pp) != NULL) {
        if (exec_proc_poll(p, now)) {
            *pp = p->next;
            exec_reaped(p);
        }
        else {
            pp = &p->next;
        }
    }
}

static void *exec_reaper_main(void *arg)
{
    struct timespec ts;

    (void)arg;
    pthread_mutex_lock(&exec_reaper.mutex);
    while (!exec_reaper.exiting || exec_reaper.list != NULL) {
        if (exec_reaper.list == NULL) {
            pthread_cond_wait(&exec_reaper.cond, &exec_reaper.mutex);
            continue;
        }
        exec_reaper_sweep();
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += apr_time_as_msec(EXEC_REAP_TICK) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&exec_reaper.cond, &exec_reaper.mutex, &ts);
    }
    exec_reaper.done = 1;
    pthread_mutex_unlock(&exec_reaper.mutex);
    return NULL;
}

/* At the process's exit: the processes left hurry, and the reaper reaps
 * them before the process is gone. */
static void exec_reaper_atexit(void)
{
    apr_time_t now = apr_time_now();
    exec_proc *p;
    int started;

    pthread_mutex_lock(&exec_reaper.mutex);
    started = exec_reaper.started && !exec_reaper.done;
    exec_reaper.exiting = 1;
    for (p = exec_reaper.list; p != NULL; p = p->next) {
        exec_proc_hurry(p, now);
    }
    pthread_cond_signal(&exec_reaper.cond);
    pthread_mutex_unlock(&exec_reaper.mutex);
    if (started) {
        pthread_join(exec_reaper.thread, NULL);
    }
}

/* Keep this shared object loaded for as long as the process lives: the
 * thread and the atexit handler run its code. */
static void exec_pin_module(void)
{
    Dl_info info;

    if (dladdr((void *)exec_reaper_atexit, &info) && info.dli_fname) {
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
}

/* Start the thread (mutex held); 0 on failure. */
static int exec_reaper_start(void)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

    exec_pin_module();
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    sigfillset(&all);               /* httpd's signals are not for it */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&exec_reaper.thread, &attr, exec_reaper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        return 0;
    }
    exec_reaper.started = 1;
    atexit(exec_reaper_atexit);
    return 1;
}

void exec_reaper_adopt(exec_proc *p)
{
    pthread_mutex_lock(&exec_reaper.mutex);
    if (!exec_reaper.done
        && (exec_reaper.started || exec_reaper_start())) {
        if (exec_reaper.exiting) {
            exec_proc_hurry(p, apr_time_now());
        }
        p->next = exec_reaper.list;
        exec_reaper.list = p;
        pthread_cond_signal(&exec_reaper.cond);
        p = NULL;
    }
    pthread_mutex_unlock(&exec_reaper.mutex);
    if (p != NULL) {
        /* no reaper (none could start, or the process is exiting) */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, p->s, "exec: %s: no "
                     "reaper thread: SIGKILL to pid %" APR_PID_T_FMT,
                     p->who ? p->who : "", p->pid);
        kill(-p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        exec_proc_free(p);
    }
}
