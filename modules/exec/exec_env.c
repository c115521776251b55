/* Licensed under the Apache License, Version 2.0.
 *
 * exec_env.c: the environment of the program, the one a CGI program gets
 * from httpd (built in on_connect, while the upgrade request is there;
 * on_connect runs on the request's own thread, so the PATH_TRANSLATED
 * lookup of ap_add_cgi_vars may take its time):
 *   - httpd's CGI variables (ap_add_common_vars, ap_add_cgi_vars):
 *     REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, REQUEST_URI,
 *     SCRIPT_NAME, PATH_INFO, QUERY_STRING, REMOTE_USER and AUTH_TYPE when
 *     authenticated, HTTP_* for the request headers (not Authorization),
 *     GATEWAY_INTERFACE, ... and what the configuration put in the
 *     request's environment (SetEnv, SetEnvIf, mod_ssl's HTTPS);
 *   - HTTPS=on over TLS; WEBSOCKET_PROTOCOL, the chosen subprotocol;
 *   - PATH: /usr/local/bin:/usr/bin:/bin unless the configuration sets
 *     it; nothing else from httpd's own environment (ap_add_common_vars
 *     copies its PATH and LD_LIBRARY_PATH) but PassEnv's variables;
 *   - last, SetEnv's variables.
 */
#include "exec.h"

#include "http_protocol.h"
#include "util_script.h"
#include "apr_lib.h"
#include "apr_strings.h"

#define EXEC_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* Set each "NAME=value" of vars (NULL-terminated) in env. */
static void exec_env_set(apr_pool_t *pool, apr_table_t *env,
                         const char *const *vars)
{
    const char *eq;

    for (; vars != NULL && *vars != NULL; vars++) {
        eq = strchr(*vars, '=');
        apr_table_setn(env, apr_pstrmemdup(pool, *vars,
                                           (apr_size_t)(eq - *vars)),
                       eq + 1);
    }
}

/* env as "NAME=value" strings; a character that cannot be in a name
 * becomes '_' (as httpd does for CGI). */
static const char *const *exec_env_array(apr_pool_t *pool,
                                         const apr_table_t *env)
{
    const apr_array_header_t *arr = apr_table_elts(env);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    const char **envp = apr_palloc(pool, (arr->nelts + 1) * sizeof(char *));
    char *var, *c;
    int i, n = 0;

    for (i = 0; i < arr->nelts; i++) {
        if (e[i].key == NULL || e[i].val == NULL) {
            continue;
        }
        var = apr_pstrcat(pool, e[i].key, "=", e[i].val, NULL);
        for (c = var; *c != '='; c++) {
            if (!apr_isalnum(*c) || (c == var && apr_isdigit(*c))) {
                *c = '_';
            }
        }
        envp[n++] = var;
    }
    envp[n] = NULL;
    return envp;
}

const char *const *exec_environment(exec_conn *ec, request_rec *r)
{
    apr_table_t *env = r->subprocess_env;
    const char *sub = ec->server->subprotocol(ec->conn);
    int configured_path = apr_table_get(env, "PATH") != NULL;
    int configured_ld = apr_table_get(env, "LD_LIBRARY_PATH") != NULL;

    ap_add_common_vars(r);
    ap_add_cgi_vars(r);
    /* what ap_add_common_vars took from httpd's own environment */
    if (!configured_path) {
        apr_table_setn(env, "PATH", EXEC_DEFAULT_PATH);
    }
    if (!configured_ld) {
        apr_table_unset(env, "LD_LIBRARY_PATH");
    }
    if (!strcmp(ap_http_scheme(r), "https")) {
        apr_table_setn(env, "HTTPS", "on");
    }
    if (sub != NULL) {
        apr_table_setn(env, "WEBSOCKET_PROTOCOL", sub);
    }
    exec_env_set(r->pool, env, ec->loc->passenv);
    exec_env_set(r->pool, env, (const char *const *)ec->loc->setenv);
    return exec_env_array(r->pool, env);
}
