/*
 * pool: see pool.h.  Single-threaded, like the loop that uses it.
 */
#include <stdlib.h>

#include "proxy/pool.h"

void
pool_init(struct pool *pool, size_t block_size, size_t keep)
{
	pool->block_size = block_size;
	pool->keep = keep;
	pool->free = NULL;
	pool->nfree = 0;
	pool->nused = 0;
	pool->on_release = NULL;
	pool->owner = NULL;
}

void
pool_destroy(struct pool *pool)
{
	struct block *b;

	while ((b = pool->free) != NULL) {
		pool->free = b->next_free;
		free(b);
	}
	pool->nfree = 0;
}

struct block *
pool_get(struct pool *pool)
{
	struct block *b = pool->free;

	if (b != NULL) {
		pool->free = b->next_free;
		pool->nfree--;
	} else {
		b = malloc(sizeof(*b) + pool->block_size);
		if (b == NULL)
			return NULL;
		b->pool = pool;
		b->size = (uint32_t)pool->block_size;
	}
	b->next_free = NULL;
	b->refs = 1;
	pool->nused++;
	return b;
}

void
block_unref(struct block *b)
{
	struct pool *pool = b->pool;

	if (--b->refs != 0)
		return;
	pool->nused--;
	if (pool->nfree < pool->keep) {
		b->next_free = pool->free;
		pool->free = b;
		pool->nfree++;
	} else {
		free(b);
	}
	if (pool->on_release != NULL)
		pool->on_release(pool);
}
