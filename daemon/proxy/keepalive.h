/*
 * keepalive: idle upstream connections kept per server for the next
 * requests ([upstream] keepalive, keepalive_timeout).
 *
 * A connection whose response ended cleanly (keep-alive on both sides, the
 * request written whole, no byte after the response) is parked here as a
 * bare socket: the connection duplicates its descriptor, then closes its
 * own handle as always, so no libuv handle ever moves between
 * connections.  While parked, a poll handle watches it: any byte or the
 * upstream's close drops it (a server that closes an idle connection is
 * never handed a request), and so does keepalive_timeout.  ka_take gives
 * the most recently parked one for a server to the next request, which
 * opens a handle on it (uv_tcp_open).  Each state has its deadline: parked
 * (keepalive_timeout), taken (the connection's own).
 */
#ifndef SLUICE_KEEPALIVE_H
#define SLUICE_KEEPALIVE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/list.h"

struct ka_server {
	struct list idle; /* struct ka_idle, most recently parked first */
	size_t n;
};

struct keepalive {
	uv_loop_t *loop;
	struct ka_server *servers;
	size_t nservers;
	uint64_t max;        /* idle connections per server; 0: none kept */
	uint64_t timeout_ms; /* parked longer: closed */
	size_t nidle;        /* over all servers */
	uint64_t *dropped;   /* counts those closed while parked (timeout,
	                      * the server's close or bytes); may be NULL */
};

/* Per server of a config generation; 0, or -1 out of memory. */
int ka_init(struct keepalive *ka, uv_loop_t *loop, size_t nservers,
    uint64_t max, uint64_t timeout_ms);
/* Closes every parked connection and parks no more (drain, reload). */
void ka_close_all(struct keepalive *ka);
/* ka_close_all, then frees what ka_init allocated. */
void ka_destroy(struct keepalive *ka);
/* Parks fd (a duplicate the caller owns until this returns 0) for server;
 * -1 when the server has max parked already or memory is short, and the
 * caller closes fd. */
int ka_park(struct keepalive *ka, int server, int fd);
/* A parked descriptor for server, now the caller's, or -1. */
int ka_take(struct keepalive *ka, int server);

#endif
