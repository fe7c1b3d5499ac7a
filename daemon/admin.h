/*
 * admin: the [admin] listener, separate from the clients' one.  It serves
 * GET /metrics (Prometheus text exposition format 0.0.4: the counters of
 * stats.h and gauges for open connections, bytes buffered in memory and
 * bytes in spool files) and GET /connections (a JSON array, one object per
 * live connection, see conn_describe()).  Anything else: 404 or 405.  One
 * request per connection; the answer ends with a close.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stddef.h>

struct proxy;

/* Binds px->cfg->admin.address when set.  0, or -1 with err naming the
 * config line of [admin] address. */
int admin_start(struct proxy *px, char *err, size_t errlen);
/* Closes the listener and any admin connection (shutdown). */
void admin_stop(struct proxy *px);

#endif
