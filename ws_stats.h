/* Licensed under the Apache License, Version 2.0.
 *
 * ws_stats.h: server-wide WebSocket counters for mod_status.  Each child
 * process owns one slot of a shared memory segment made by the parent;
 * only that child's threads write it (atomics, no lock), the status
 * handler of any child adds up all slots.
 */
#ifndef WS_STATS_H
#define WS_STATS_H

#include "httpd.h"
#include "apr_tables.h"

/* Locations (WebSocketHandler lines) counted one by one; the others
 * share the last row. */
#define WS_STATS_LOCATIONS 64

/* Parent, post_config: the segment for this generation's children. */
apr_status_t ws_stats_post_config(apr_pool_t *pconf, server_rec *s);
/* Child, child_init: take a slot (its gauges start at zero). */
void ws_stats_child_init(void);

void ws_stats_open(int location, int family, int delta);
void ws_stats_message_in(void);
void ws_stats_message_out(void);
void ws_stats_bytes_in(apr_size_t len);
void ws_stats_bytes_out(apr_size_t len);
/* A WebSocket ended with close code (0: none, the connection dropped). */
void ws_stats_closed(int code);
/* A handshake refused with an HTTP status. */
void ws_stats_refused(int status);

/* mod_status: names[i] is location i's path (at most
 * WS_STATS_LOCATIONS are shown one by one). */
void ws_stats_report(request_rec *r, int flags, const char *const *names,
                     int count);

#endif /* WS_STATS_H */
