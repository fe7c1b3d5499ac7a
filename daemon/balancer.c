/*
 * balancer: see balancer.h.
 */
#include <string.h>

#include "balancer.h"

void
balancer_init(struct balancer *b, const struct config *cfg)
{
	memset(b, 0, sizeof(*b));
	b->cfg = cfg;
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
		if (best < 0 || b->active[i] < b->active[best])
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
}

void
balancer_release(struct balancer *b, int idx)
{
	if (b->active[idx] > 0)
		b->active[idx]--;
}
