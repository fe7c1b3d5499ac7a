/*
 * balancer: picks the upstream server for a download.
 *
 * round-robin walks the server list; least-conn takes the server with the
 * fewest downloads in progress, ties broken round-robin.  A download that
 * could not connect asks again with the servers it tried in `tried` (a bit
 * per server), so each retry goes to a server not tried yet.  The runtime
 * counts live here, not in the const config.
 */
#ifndef SLUICE_BALANCER_H
#define SLUICE_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct balancer {
	const struct config *cfg;
	size_t next;                         /* round-robin cursor */
	unsigned active[CONFIG_MAX_SERVERS]; /* downloads per server */
};

void balancer_init(struct balancer *b, const struct config *cfg);
/* The index of the server to use, or -1 when every server was tried. */
int balancer_pick(struct balancer *b, uint64_t tried);
void balancer_acquire(struct balancer *b, int idx);
void balancer_release(struct balancer *b, int idx);

#endif
