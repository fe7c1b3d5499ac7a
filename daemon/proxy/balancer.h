/*
 * balancer: picks the upstream server for a download.
 *
 * round-robin walks the server list; least-conn takes the server with the
 * fewest downloads in progress, ties broken round-robin.  A download that
 * could not connect asks again with the servers it tried in `tried` (a bit
 * per server), so each retry goes to a server not tried yet.  The runtime
 * counts live here, not in the const config.
 *
 * A reload gives each config generation its own balancer (its own server
 * list, indices and cursor), while downloads of older generations still
 * run.  So that least-conn sees those downloads too, the balancers of all
 * generations can share one load count per server address
 * (balancer_share): a server kept across a reload keeps its count, a new
 * one starts at 0, a removed one is forgotten when its last download ends.
 */
#ifndef SLUICE_BALANCER_H
#define SLUICE_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"

/* Downloads in progress on one server address, over all generations. */
struct balancer_load {
	struct balancer_load *next;
	struct sockaddr_any addr;
	unsigned active;
	unsigned refs; /* balancers whose list has this address */
};

struct balancer {
	const struct config *cfg;
	size_t next;                         /* round-robin cursor */
	unsigned active[CONFIG_MAX_SERVERS]; /* this balancer's downloads */
	/* shared counts (balancer_share), or NULL: active[] alone */
	struct balancer_load *load[CONFIG_MAX_SERVERS];
	struct balancer_load **loads; /* the list they are in */
};

void balancer_init(struct balancer *b, const struct config *cfg);
/*
 * Makes least-conn count the downloads of every balancer sharing *list
 * (one entry per server address, created here as needed).  0, or -ENOMEM
 * with nothing shared.  Undone by balancer_unshare().
 */
int balancer_share(struct balancer *b, struct balancer_load **list);
/* Drops b's references; an entry no balancer uses any more is freed. */
void balancer_unshare(struct balancer *b);
/* The index of the server to use, or -1 when every server was tried. */
int balancer_pick(struct balancer *b, uint64_t tried);
void balancer_acquire(struct balancer *b, int idx);
void balancer_release(struct balancer *b, int idx);

#endif
