/*
 * balancer: see balancer.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/balancer.h"

void
balancer_init(struct balancer *b, const struct config *cfg)
{
	memset(b, 0, sizeof(*b));
	b->cfg = cfg;
}

/* The shared entry for an address: found in the list, or added to it. */
static struct balancer_load *
load_get(struct balancer_load **list, const struct sockaddr_any *a)
{
	struct balancer_load *l;

	for (l = *list; l != NULL; l = l->next)
		if (address_equal(&l->addr, a))
			break;
	if (l == NULL) {
		if ((l = calloc(1, sizeof(*l))) == NULL)
			return NULL;
		l->addr = *a;
		l->next = *list;
		*list = l;
	}
	l->refs++;
	return l;
}

int
balancer_share(struct balancer *b, struct balancer_load **list)
{
	b->loads = list;
	for (size_t i = 0; i < b->cfg->upstream.nservers; i++) {
		b->load[i] = load_get(list, &b->cfg->upstream.servers[i]);
		if (b->load[i] == NULL) {
			balancer_unshare(b);
			return -ENOMEM;
		}
		/* downloads this balancer already counts are counted there */
		b->load[i]->active += b->active[i];
	}
	return 0;
}

void
balancer_unshare(struct balancer *b)
{
	for (size_t i = 0; i < CONFIG_MAX_SERVERS; i++) {
		struct balancer_load *l = b->load[i], **pp;

		if (l == NULL)
			continue;
		b->load[i] = NULL;
		l->active -=
		    l->active < b->active[i] ? l->active : b->active[i];
		if (--l->refs > 0)
			continue;
		for (pp = b->loads; *pp != l; pp = &(*pp)->next)
			;
		*pp = l->next;
		free(l);
	}
	b->loads = NULL;
}

/* Downloads in progress on server i, as least-conn weighs them. */
static unsigned
load_of(const struct balancer *b, size_t i)
{
	return b->load[i] != NULL ? b->load[i]->active : b->active[i];
}

int
balancer_pick(struct balancer *b, uint64_t tried)
{
	size_t n = b->cfg->upstream.nservers;
	int best = -1;

	for (size_t k = 0; k < n; k++) {
		size_t i = (b->next + k) % n;

		if (tried & (1ULL << i))
			continue;
		if (b->cfg->upstream.balance == BALANCE_ROUND_ROBIN) {
			best = (int)i;
			break;
		}
		if (best < 0 || load_of(b, i) < load_of(b, (size_t)best))
			best = (int)i;
	}
	if (best >= 0)
		b->next = ((size_t)best + 1) % n;
	return best;
}

void
balancer_acquire(struct balancer *b, int idx)
{
	b->active[idx]++;
	if (b->load[idx] != NULL)
		b->load[idx]->active++;
}

void
balancer_release(struct balancer *b, int idx)
{
	if (b->active[idx] == 0)
		return;
	b->active[idx]--;
	if (b->load[idx] != NULL && b->load[idx]->active > 0)
		b->load[idx]->active--;
}
