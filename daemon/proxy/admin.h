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
#include <stdio.h>

struct admin;
struct config;
struct proxy;

/*
 * Binds cfg->admin.address when set and serves px's pages there.  0 with
 * *out the new listener (NULL when the address is unset), or -1 with err
 * naming the config line of [admin] address.  A reload starts the new one
 * before it stops the old, so a failed bind changes nothing.
 */
int admin_start(struct proxy *px, const struct config *cfg, struct admin **out,
    char *err, size_t errlen);
/* Closes the listener and its connections; frees ad once they closed.
 * NULL is a no-op. */
void admin_stop(struct admin *ad);

/*
 * admin_fault.c: the fault routes (/connections/ID/ACTION, /faults,
 * /faults/NAME), for a whole request: its method ("POST"), target, body
 * (len bytes; too_large: it was longer than FAULT_BODY_MAX and cut).  0
 * when the target is no fault route; else the answer's status, with its
 * JSON body written to out.  Runs on worker 0's thread.
 */
int admin_fault_route(struct proxy *px, const char *method, const char *url,
    const char *body, size_t len, int too_large, FILE *out);

#endif
