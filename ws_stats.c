/* Licensed under the Apache License, Version 2.0.
 *
 * ws_stats.c: server-wide WebSocket counters for mod_status.
 *
 * The parent makes an anonymous shared memory segment in post_config
 * (each generation its own; the counters start again at a restart) with
 * two slots per possible child process (AP_MPMQ_HARD_LIMIT_DAEMONS), so
 * that children taking over from stopping ones find a free slot.  A child
 * claims a slot in child_init: a free one, or one whose process is gone.
 * Only the claiming child's threads write a slot, with the compiler's
 * atomics and no lock; the counters of a slot taken over keep adding up,
 * its open-connection gauges start at zero.  The status handler, in any
 * child, adds up every slot.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "mod_status.h"
#include "apr_shm.h"

#include "ws_atomic.h"
#include "ws_engine.h"
#include "ws_stats.h"

APLOG_USE_MODULE(websocket);

/* Families by WS_PROTO_* - 1. */
#define WS_STATS_FAMILIES 3
static const char *const ws_family_names[WS_STATS_FAMILIES] = {
    "hixie75", "hixie76", "rfc6455-13"
};

/* Close codes: [0] none (the connection dropped), [1..16] 1000-1015,
 * [17] any other. */
#define WS_STATS_CLOSES 18
/* Refused handshakes by the HTTP status; the last: any other. */
static const int ws_refusal_status[] = { 400, 403, 405, 426, 0 };
static const char *const ws_refusal_names[] = {
    "400 bad request", "403 forbidden (origin, plugin)",
    "405 not GET", "426 protocol or version not served", "other"
};
#define WS_STATS_REFUSALS \
    (int)(sizeof(ws_refusal_status) / sizeof(ws_refusal_status[0]))

typedef struct ws_stats_slot {
    apr_uint32_t pid;                  /* owner; 0: free */
    apr_uint32_t open[WS_STATS_LOCATIONS][WS_STATS_FAMILIES];
    apr_uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    apr_uint64_t closes[WS_STATS_CLOSES];
    apr_uint64_t refused[WS_STATS_REFUSALS];
} ws_stats_slot;

static ws_stats_slot *ws_slots;        /* in the segment */
static int ws_slot_count;
/* Where a process without a slot counts (the parent, a child that found
 * none): only it sees these. */
static ws_stats_slot ws_own;
static ws_stats_slot *ws_mine = &ws_own;

apr_status_t ws_stats_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_shm_t *shm;
    apr_status_t rv;
    int daemons = 0;

    ws_slots = NULL;
    ws_slot_count = 0;
    ws_mine = &ws_own;
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons);
    if (daemons < 1) {
        daemons = 1;
    }
    rv = apr_shm_create(&shm, 2 * (apr_size_t)daemons * sizeof(ws_stats_slot),
                        NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, "websocket: no "
                     "shared memory for the mod_status counters: each "
                     "child reports its own");
        return rv;
    }
    ws_slots = apr_shm_baseaddr_get(shm);
    ws_slot_count = 2 * daemons;
    memset(ws_slots, 0, apr_shm_size_get(shm));
    return APR_SUCCESS;
}

static int ws_process_gone(apr_uint32_t pid)
{
    return pid == 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

void ws_stats_child_init(void)
{
    apr_uint32_t me = (apr_uint32_t)getpid();
    int i;

    for (i = 0; i < ws_slot_count; i++) {
        ws_stats_slot *slot = &ws_slots[i];
        apr_uint32_t owner = ws_atomic_read32(&slot->pid);

        if (ws_process_gone(owner)
            && __atomic_compare_exchange_n(&slot->pid, &owner, me, 0,
                                           WS_ATOMIC_ORDER,
                                           WS_ATOMIC_ORDER)) {
            /* Its former owner's connections are gone with it. */
            memset(slot->open, 0, sizeof(slot->open));
            ws_mine = slot;
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Counting (any thread of the owning child)                           */

void ws_stats_open(int location, int family, int delta)
{
    apr_uint32_t *gauge;

    if (location < 0 || location >= WS_STATS_LOCATIONS) {
        location = WS_STATS_LOCATIONS - 1;
    }
    if (family < WS_PROTO_HIXIE75 || family > WS_PROTO_RFC6455) {
        return;
    }
    gauge = &ws_mine->open[location][family - WS_PROTO_HIXIE75];
    if (delta > 0) {
        ws_atomic_inc32(gauge);
    }
    else {
        ws_atomic_dec32(gauge);
    }
}

void ws_stats_message_in(void)
{
    ws_atomic_add64(&ws_mine->msgs_in, 1);
}

void ws_stats_message_out(void)
{
    ws_atomic_add64(&ws_mine->msgs_out, 1);
}

void ws_stats_bytes_in(apr_size_t len)
{
    ws_atomic_add64(&ws_mine->bytes_in, len);
}

void ws_stats_bytes_out(apr_size_t len)
{
    ws_atomic_add64(&ws_mine->bytes_out, len);
}

void ws_stats_closed(int code)
{
    int i = WS_STATS_CLOSES - 1;

    if (code == 0) {
        i = 0;
    }
    else if (code >= 1000 && code <= 1015) {
        i = code - 999;
    }
    ws_atomic_add64(&ws_mine->closes[i], 1);
}

void ws_stats_refused(int status)
{
    int i;

    for (i = 0; i < WS_STATS_REFUSALS - 1; i++) {
        if (ws_refusal_status[i] == status) {
            break;
        }
    }
    ws_atomic_add64(&ws_mine->refused[i], 1);
}

/* ------------------------------------------------------------------ */
/* Report                                                              */

static void ws_stats_add(ws_stats_slot *sum, const ws_stats_slot *slot)
{
    int i, j;

    for (i = 0; i < WS_STATS_LOCATIONS; i++) {
        for (j = 0; j < WS_STATS_FAMILIES; j++) {
            sum->open[i][j] += ws_atomic_read32(&slot->open[i][j]);
        }
    }
    sum->msgs_in += ws_atomic_read64(&slot->msgs_in);
    sum->msgs_out += ws_atomic_read64(&slot->msgs_out);
    sum->bytes_in += ws_atomic_read64(&slot->bytes_in);
    sum->bytes_out += ws_atomic_read64(&slot->bytes_out);
    for (i = 0; i < WS_STATS_CLOSES; i++) {
        sum->closes[i] += ws_atomic_read64(&slot->closes[i]);
    }
    for (i = 0; i < WS_STATS_REFUSALS; i++) {
        sum->refused[i] += ws_atomic_read64(&slot->refused[i]);
    }
}

static void ws_stats_sum(ws_stats_slot *sum)
{
    int i;

    memset(sum, 0, sizeof(*sum));
    if (ws_slots == NULL) {
        ws_stats_add(sum, &ws_own);
        return;
    }
    for (i = 0; i < ws_slot_count; i++) {
        ws_stats_add(sum, &ws_slots[i]);
    }
}

static apr_uint64_t ws_total(const apr_uint64_t *v, int n)
{
    apr_uint64_t total = 0;

    while (n-- > 0) {
        total += v[n];
    }
    return total;
}

static apr_uint64_t ws_open_total(const ws_stats_slot *sum)
{
    apr_uint64_t total = 0;
    int i, j;

    for (i = 0; i < WS_STATS_LOCATIONS; i++) {
        for (j = 0; j < WS_STATS_FAMILIES; j++) {
            total += sum->open[i][j];
        }
    }
    return total;
}

static void ws_report_short(request_rec *r, const ws_stats_slot *sum)
{
    ap_rprintf(r, "WebSocketConnections: %" APR_UINT64_T_FMT "\n"
               "WebSocketMessagesIn: %" APR_UINT64_T_FMT "\n"
               "WebSocketMessagesOut: %" APR_UINT64_T_FMT "\n"
               "WebSocketBytesIn: %" APR_UINT64_T_FMT "\n"
               "WebSocketBytesOut: %" APR_UINT64_T_FMT "\n"
               "WebSocketHandshakesRefused: %" APR_UINT64_T_FMT "\n",
               ws_open_total(sum), sum->msgs_in, sum->msgs_out,
               sum->bytes_in, sum->bytes_out,
               ws_total(sum->refused, WS_STATS_REFUSALS));
}

static void ws_report_open(request_rec *r, const ws_stats_slot *sum,
                           const char *const *names, int count)
{
    int i, j;

    ap_rputs("<table border=\"1\"><tr><th>location</th><th>protocol</th>"
             "<th>open</th></tr>\n", r);
    for (i = 0; i < WS_STATS_LOCATIONS && i < count; i++) {
        const char *name = i == WS_STATS_LOCATIONS - 1
                           && count > WS_STATS_LOCATIONS ? "(others)"
                                                         : names[i];

        for (j = 0; j < WS_STATS_FAMILIES; j++) {
            if (sum->open[i][j] > 0) {
                ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%u</td></tr>\n",
                           ap_escape_html(r->pool, name),
                           ws_family_names[j], sum->open[i][j]);
            }
        }
    }
    ap_rputs("</table>\n", r);
}

static void ws_report_closes(request_rec *r, const ws_stats_slot *sum)
{
    int i;

    ap_rputs("<table border=\"1\"><tr><th>close code</th><th>WebSockets"
             "</th></tr>\n", r);
    for (i = 0; i < WS_STATS_CLOSES; i++) {
        if (sum->closes[i] == 0) {
            continue;
        }
        if (i == 0) {
            ap_rputs("<tr><td>none (dropped)</td>", r);
        }
        else if (i < WS_STATS_CLOSES - 1) {
            ap_rprintf(r, "<tr><td>%d</td>", 999 + i);
        }
        else {
            ap_rputs("<tr><td>other</td>", r);
        }
        ap_rprintf(r, "<td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   sum->closes[i]);
    }
    ap_rputs("</table>\n", r);
}

static void ws_report_refused(request_rec *r, const ws_stats_slot *sum)
{
    int i;

    ap_rputs("<table border=\"1\"><tr><th>handshakes refused</th>"
             "<th>count</th></tr>\n", r);
    for (i = 0; i < WS_STATS_REFUSALS; i++) {
        if (sum->refused[i] > 0) {
            ap_rprintf(r, "<tr><td>%s</td><td>%" APR_UINT64_T_FMT
                       "</td></tr>\n", ws_refusal_names[i], sum->refused[i]);
        }
    }
    ap_rputs("</table>\n", r);
}

void ws_stats_report(request_rec *r, int flags, const char *const *names,
                     int count)
{
    ws_stats_slot *sum = apr_palloc(r->pool, sizeof(*sum));

    if (!ap_extended_status) {
        return;
    }
    ws_stats_sum(sum);
    if (flags & AP_STATUS_SHORT) {
        ws_report_short(r, sum);
        return;
    }
    ap_rputs("<hr /><h2>WebSockets</h2>\n", r);
    ap_rprintf(r, "<p>%" APR_UINT64_T_FMT " open; messages in %"
               APR_UINT64_T_FMT ", out %" APR_UINT64_T_FMT "; bytes in %"
               APR_UINT64_T_FMT ", out %" APR_UINT64_T_FMT " (since the "
               "last start or restart)</p>\n", ws_open_total(sum),
               sum->msgs_in, sum->msgs_out, sum->bytes_in, sum->bytes_out);
    ws_report_open(r, sum, names, count);
    ws_report_closes(r, sum);
    ws_report_refused(r, sum);
}
