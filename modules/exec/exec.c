/* Licensed under the Apache License, Version 2.0.
 *
 * exec: each WebSocket talks to its own process, in the spirit of
 * websocketd: the client's messages go to the program's stdin, what the
 * program writes on stdout comes back as messages, its stderr goes to the
 * error log.  Options (modules/exec/README has the details):
 *
 *     WebSocketOption Command "/path/to/program arg ..."   (required)
 *     WebSocketOption Mode lines|binary                    (lines)
 *     WebSocketOption MaxProcesses N                       (0: no limit)
 *     WebSocketOption Directory /path                      (the program's)
 *     WebSocketOption PassEnv "NAME ..."
 *     WebSocketOption SetEnv "NAME=value 'NAME=value with spaces' ..."
 *     WebSocketOption CloseTimeout seconds                 (5)
 *     WebSocketOption Subprotocols "name ..." (or *)
 *
 * All are checked when the configuration is read, so "httpd -t" fails on
 * a bad or unknown option, and on a program that is missing or not
 * executable.
 *
 * Life cycle (no thread per connection; see exec_io.c and exec_proc.c):
 *   on_connect   MaxProcesses (503 over it), the subprotocol, the CGI
 *                environment (the request is still there);
 *   on_open      the program starts, its pipes are watched on the loop;
 *   on_fragment  message bytes stream to stdin (lines: a newline after
 *                each message);
 *   on_close     stdin is closed;
 *   on_disconnect  the pipes are closed; a program still running gets
 *                SIGTERM after CloseTimeout and SIGKILL one CloseTimeout
 *                later, from the loop or, once the WebSocket is gone,
 *                from the child's reaper thread.
 * The program closing stdout (exiting) closes the WebSocket once it is
 * reaped: 1000 for exit status 0, 1011 otherwise.
 */
#include "exec.h"

#include "http_config.h"
#include "http_log.h"
#include "apr_lib.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include <stdlib.h>
#include <unistd.h>

/* PATH searched for a Command without a slash, when httpd has none. */
#define EXEC_SEARCH_PATH "/usr/local/bin:/usr/bin:/bin"

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

typedef const char *(*exec_option_fn)(apr_pool_t *pool, exec_location *loc,
                                      const char *value);

/* value split into words ("double" or 'single' quoted words may hold
 * spaces), or an error. */
static const char *exec_words(apr_pool_t *pool, const char *name,
                              const char *value, char ***words)
{
    if (apr_tokenize_to_argv(value, words, pool) != APR_SUCCESS
        || (*words)[0] == NULL) {
        return apr_psprintf(pool, "WebSocketOption %s is empty", name);
    }
    return NULL;
}

static int exec_env_name_ok(const char *name, apr_size_t len)
{
    apr_size_t i;

    if (len == 0 || apr_isdigit(name[0])) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!apr_isalnum(name[i]) && name[i] != '_') {
            return 0;
        }
    }
    return 1;
}

static const char *exec_opt_command(apr_pool_t *pool, exec_location *loc,
                                    const char *value)
{
    loc->command = value;
    return exec_words(pool, "Command", value, &loc->argv);
}

static const char *exec_opt_mode(apr_pool_t *pool, exec_location *loc,
                                 const char *value)
{
    if (strcasecmp(value, "lines") && strcasecmp(value, "binary")) {
        return apr_psprintf(pool, "WebSocketOption Mode \"%s\" is not lines "
                            "or binary", value);
    }
    loc->binary = !strcasecmp(value, "binary");
    return NULL;
}

static const char *exec_opt_max(apr_pool_t *pool, exec_location *loc,
                                const char *value)
{
    char *end;
    long n = strtol(value, &end, 10);

    if (end == value || *end != '\0' || n < 0 || n > 1000000) {
        return apr_psprintf(pool, "WebSocketOption MaxProcesses \"%s\" is not "
                            "a number from 0 (no limit) to 1000000", value);
    }
    loc->max_processes = (int)n;
    return NULL;
}

static const char *exec_opt_directory(apr_pool_t *pool, exec_location *loc,
                                      const char *value)
{
    loc->directory = ap_server_root_relative(pool, value);
    return loc->directory ? NULL
                          : apr_psprintf(pool, "WebSocketOption Directory "
                                         "\"%s\" is not a valid path", value);
}

/* PassEnv: the values are httpd's, taken now (the children inherit the
 * same environment); an unset variable is left out. */
static const char *exec_opt_passenv(apr_pool_t *pool, exec_location *loc,
                                    const char *value)
{
    apr_array_header_t *vars = apr_array_make(pool, 4, sizeof(char *));
    const char *error;
    char **names, **name;

    if ((error = exec_words(pool, "PassEnv", value, &names)) != NULL) {
        return error;
    }
    for (name = names; *name != NULL; name++) {
        const char *v = getenv(*name);

        if (!exec_env_name_ok(*name, strlen(*name))) {
            return apr_psprintf(pool, "WebSocketOption PassEnv: \"%s\" is "
                                "not a variable name", *name);
        }
        if (v != NULL) {
            APR_ARRAY_PUSH(vars, const char *) =
                apr_pstrcat(pool, *name, "=", v, NULL);
        }
    }
    APR_ARRAY_PUSH(vars, const char *) = NULL;
    loc->passenv = (const char **)vars->elts;
    return NULL;
}

static const char *exec_opt_setenv(apr_pool_t *pool, exec_location *loc,
                                   const char *value)
{
    const char *error = exec_words(pool, "SetEnv", value, &loc->setenv);
    char **var, *eq;

    for (var = loc->setenv; error == NULL && *var != NULL; var++) {
        eq = strchr(*var, '=');
        if (eq == NULL || !exec_env_name_ok(*var, (apr_size_t)(eq - *var))) {
            error = apr_psprintf(pool, "WebSocketOption SetEnv: \"%s\" is not "
                                 "NAME=value", *var);
        }
    }
    return error;
}

static const char *exec_opt_close_timeout(apr_pool_t *pool,
                                          exec_location *loc,
                                          const char *value)
{
    char *end;
    double seconds = strtod(value, &end);

    if (end == value || *end != '\0' || !(seconds >= 0) || seconds > 3600) {
        return apr_psprintf(pool, "WebSocketOption CloseTimeout \"%s\" is not "
                            "a number of seconds (0 to 3600)", value);
    }
    loc->close_timeout = apr_time_from_msec((apr_int64_t)(seconds * 1000));
    return NULL;
}

static const char *exec_opt_subprotocols(apr_pool_t *pool,
                                         exec_location *loc,
                                         const char *value)
{
    return exec_words(pool, "Subprotocols", value, &loc->subprotocols);
}

static const struct {
    const char *name;
    exec_option_fn fn;
} exec_options[] = {
    { "Command", exec_opt_command },
    { "Mode", exec_opt_mode },
    { "MaxProcesses", exec_opt_max },
    { "Directory", exec_opt_directory },
    { "PassEnv", exec_opt_passenv },
    { "SetEnv", exec_opt_setenv },
    { "CloseTimeout", exec_opt_close_timeout },
    { "Subprotocols", exec_opt_subprotocols },
};

static const char *exec_option(apr_pool_t *pool, exec_location *loc,
                               const char *name, const char *value)
{
    apr_size_t i;

    for (i = 0; i < sizeof(exec_options) / sizeof(exec_options[0]); i++) {
        if (!strcasecmp(name, exec_options[i].name)) {
            return exec_options[i].fn(pool, loc, value);
        }
    }
    return apr_psprintf(pool, "unknown WebSocketOption %s (exec knows "
                        "Command, Mode, MaxProcesses, Directory, PassEnv, "
                        "SetEnv, CloseTimeout and Subprotocols)", name);
}

/* The program as an absolute path: relative to ServerRoot when it has a
 * slash, else searched in httpd's PATH. */
static const char *exec_find_program(apr_pool_t *pool, const char *name)
{
    const char *search = getenv("PATH");
    char *dirs, *dir, *last, *path;

    if (strchr(name, '/') != NULL) {
        return ap_server_root_relative(pool, name);
    }
    dirs = apr_pstrdup(pool, search && *search ? search : EXEC_SEARCH_PATH);
    for (dir = apr_strtok(dirs, ":", &last); dir != NULL;
         dir = apr_strtok(NULL, ":", &last)) {
        path = apr_pstrcat(pool, dir, "/", name, NULL);
        if (*dir == '/' && access(path, X_OK) == 0) {
            return path;
        }
    }
    return NULL;
}

/* The program exists, is a file and may be executed. */
static const char *exec_check_program(apr_pool_t *pool, exec_location *loc)
{
    apr_finfo_t fi;
    apr_status_t rv;

    if (loc->argv == NULL) {
        return "missing \"WebSocketOption Command program\"";
    }
    loc->path = exec_find_program(pool, loc->argv[0]);
    if (loc->path == NULL) {
        return apr_psprintf(pool, "WebSocketOption Command: no program %s "
                            "in PATH", loc->argv[0]);
    }
    rv = apr_stat(&fi, loc->path, APR_FINFO_TYPE, pool);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(pool, "WebSocketOption Command: %s: %pm",
                            loc->path, &rv);
    }
    if (fi.filetype != APR_REG || access(loc->path, X_OK) != 0) {
        return apr_psprintf(pool, "WebSocketOption Command: %s is not an "
                            "executable file", loc->path);
    }
    return NULL;
}

/* Directory, by default the program's own (as for CGI). */
static const char *exec_check_directory(apr_pool_t *pool, exec_location *loc)
{
    apr_finfo_t fi;
    apr_status_t rv;
    const char *slash;

    if (loc->directory == NULL) {
        slash = strrchr(loc->path, '/');
        loc->directory = slash == loc->path
                         ? "/" : apr_pstrndup(pool, loc->path,
                                              (apr_size_t)(slash - loc->path));
        return NULL;
    }
    rv = apr_stat(&fi, loc->directory, APR_FINFO_TYPE, pool);
    if (rv != APR_SUCCESS || fi.filetype != APR_DIR) {
        return apr_psprintf(pool, "WebSocketOption Directory: %s is not a "
                            "directory", loc->directory);
    }
    return NULL;
}

/* MaxProcesses counts the location's processes in every child: a counter
 * in shared memory, made in the parent and inherited by the children. */
static const char *exec_make_counter(apr_pool_t *pool, exec_location *loc)
{
    apr_shm_t *shm;
    apr_status_t rv;

    if (loc->max_processes == 0) {
        return NULL;
    }
    rv = apr_shm_create(&shm, sizeof(apr_uint32_t), NULL, pool);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(pool, "MaxProcesses: cannot make shared memory: "
                            "%pm", &rv);
    }
    loc->running = apr_shm_baseaddr_get(shm);
    *loc->running = 0;
    return NULL;
}

static void *exec_init_location(apr_pool_t *pool, server_rec *s,
                                const apr_table_t *options,
                                const char **error)
{
    exec_location *loc = apr_pcalloc(pool, sizeof(*loc));
    const apr_array_header_t *arr = apr_table_elts(options);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    int i;

    (void)s;
    loc->close_timeout = EXEC_CLOSE_TIMEOUT;
    for (i = 0; i < arr->nelts && *error == NULL; i++) {
        *error = exec_option(pool, loc, e[i].key, e[i].val);
    }
    if (*error == NULL && (*error = exec_check_program(pool, loc)) == NULL
        && (*error = exec_check_directory(pool, loc)) == NULL) {
        *error = exec_make_counter(pool, loc);
    }
    if (*error != NULL) {
        *error = apr_pstrcat(pool, "exec: ", *error, NULL);
        return NULL;
    }
    return loc;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

void exec_log(exec_conn *ec, int level, apr_status_t rv, const char *fmt, ...)
{
    char msg[EXEC_ERR_LINE + 256];
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ap_log_error(APLOG_MARK, level, rv, ec->server->server_rec_of(ec->conn),
                 "exec: %s (client %s): %s", ec->server->uri(ec->conn),
                 ec->server->client_ip(ec->conn), msg);
}

/* The first subprotocol the client offers that Subprotocols lists ("*":
 * any). */
static void exec_choose_subprotocol(const websocket_server *server,
                                    websocket_conn *conn,
                                    const exec_location *loc)
{
    const char *offered;
    char **name;
    int i;

    for (i = 0; loc->subprotocols && i < server->subprotocol_count(conn);
         i++) {
        offered = server->subprotocol_offered(conn, i);
        for (name = loc->subprotocols; *name != NULL; name++) {
            if ((!strcmp(*name, "*") || !strcmp(*name, offered))
                && server->subprotocol_set(conn, offered) == APR_SUCCESS) {
                return;
            }
        }
    }
}

/* Whether the location takes this client; OK or the status to refuse
 * with. */
static int exec_admit(const websocket_server *server, websocket_conn *conn,
                      const exec_location *loc, request_rec *r)
{
    if (loc == NULL || r == NULL) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (loc->binary
        && server->protocol_family(conn) != WEBSOCKET_PROTOCOL_RFC6455) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "exec: %s: Mode binary "
                      "needs an RFC 6455 client", r->uri);
        return HTTP_BAD_REQUEST;
    }
    if (!exec_slot_take(loc)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "exec: %s: "
                      "MaxProcesses (%d) reached, refused", r->uri,
                      loc->max_processes);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    return OK;
}

static int exec_on_connect(const websocket_server *server,
                           websocket_conn *conn)
{
    const exec_location *loc = server->location_data(conn);
    request_rec *r = server->request(conn);
    apr_pool_t *pool;
    exec_conn *ec;
    int status = exec_admit(server, conn, loc, r);

    if (status != OK) {
        return status;
    }
    if (apr_pool_create_unmanaged(&pool) != APR_SUCCESS) {
        exec_slot_release(loc->running);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    ec = apr_pcalloc(pool, sizeof(*ec));
    ec->server = server;
    ec->conn = conn;
    ec->loc = loc;
    ec->pool = pool;
    ec->slot = 1;
    exec_choose_subprotocol(server, conn, loc);
    ec->envp = exec_environment(ec, r);
    server->data_set(conn, ec);
    return OK;
}

/* The program cannot run: the client gets 1011. */
static void exec_failed(exec_conn *ec, apr_status_t rv, const char *what)
{
    exec_log(ec, APLOG_ERR, rv, "%s %s", what, ec->loc->command);
    ec->ending = 1;
    ec->server->close(ec->conn, 1011, "cannot run the program");
}

static void exec_on_open(const websocket_server *server,
                         websocket_conn *conn)
{
    exec_conn *ec = server->data_get(conn);
    apr_status_t rv;

    rv = ec->envp ? exec_spawn(ec) : APR_ENOMEM;
    ec->envp = NULL;                /* the request's pool goes now */
    if (rv != APR_SUCCESS) {
        exec_failed(ec, rv, "cannot start");
        return;
    }
    exec_log(ec, APLOG_INFO, 0, "started %s (pid %" APR_PID_T_FMT ")",
             ec->loc->command, ec->proc->pid);
    if ((rv = exec_io_start(ec)) != APR_SUCCESS) {
        exec_failed(ec, rv, "cannot watch the pipes of");
        exec_io_ending(ec);
    }
}

/* The next bytes of a client's message go to stdin (transient buckets:
 * written or copied before returning). */
static void exec_on_fragment(const websocket_server *server,
                             websocket_conn *conn, int type,
                             apr_bucket_brigade *bb, int final)
{
    exec_conn *ec = server->data_get(conn);
    const char *data;
    apr_size_t len;
    apr_bucket *b;

    (void)type;
    while (!APR_BRIGADE_EMPTY(bb)) {
        b = APR_BRIGADE_FIRST(bb);
        if (!APR_BUCKET_IS_METADATA(b)
            && apr_bucket_read(b, &data, &len, APR_BLOCK_READ)
               == APR_SUCCESS) {
            exec_io_write(ec, data, len);
        }
        apr_bucket_delete(b);
    }
    if (final && !ec->loc->binary) {
        exec_io_write(ec, "\n", 1);
    }
    exec_io_update(ec);
}

static void exec_on_drain(const websocket_server *server,
                          websocket_conn *conn)
{
    exec_conn *ec = server->data_get(conn);

    ec->full = 0;
    exec_io_update(ec);
}

static void exec_on_close(const websocket_server *server,
                          websocket_conn *conn, int code,
                          const char *reason, apr_size_t len)
{
    exec_conn *ec = server->data_get(conn);

    (void)code;
    (void)reason;
    (void)len;
    ec->ending = 1;
    exec_io_ending(ec);
}

static void exec_on_disconnect(const websocket_server *server,
                               websocket_conn *conn)
{
    exec_conn *ec = server->data_get(conn);

    ec->ending = 1;
    exec_io_close_all(ec);          /* the watches and timers have ended */
    if (ec->proc != NULL) {
        exec_proc_deadlines(ec->proc, ec->loc->close_timeout);
        if (exec_proc_poll(ec->proc, apr_time_now())) {
            exec_proc_free(ec->proc);
        }
        else {
            exec_reaper_adopt(ec->proc);
        }
    }
    if (ec->slot) {
        exec_slot_release(ec->loc->running);
    }
    server->data_set(conn, NULL);
    apr_pool_destroy(ec->pool);
}

static websocket_plugin exec_plugin = {
    .size          = sizeof(websocket_plugin),
    .version       = WEBSOCKET_PLUGIN_VERSION,
    .init_location = exec_init_location,
    .on_connect    = exec_on_connect,
    .on_open       = exec_on_open,
    .on_fragment   = exec_on_fragment,
    .on_close      = exec_on_close,
    .on_disconnect = exec_on_disconnect,
    .on_drain      = exec_on_drain,
};

websocket_plugin *exec_init(void)
{
    return &exec_plugin;
}
