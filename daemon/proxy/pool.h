/*
 * pool: fixed-size, reference-counted memory blocks that socket reads land
 * in and socket writes send from, so relayed bytes are never copied
 * (STYLE 7).
 *
 * A block is handed out with one reference.  Every segment of a pipe that
 * points into the block holds another; the last block_unref() gives it back
 * to the pool, which keeps up to `keep` free blocks for reuse and frees the
 * rest, so an idle process gives its memory back.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool;

struct block {
	struct pool *pool;
	struct block *next_free;
	uint32_t refs;
	uint32_t size; /* bytes in data[] */
	char data[];
};

struct pool {
	size_t block_size;
	size_t keep;        /* free blocks kept for reuse */
	struct block *free; /* singly linked free list */
	size_t nfree;
	size_t nused; /* blocks handed out and not yet returned */
	/* called after a block came back (may be NULL); owner is the
	 * caller's, for it */
	void (*on_release)(struct pool *pool);
	void *owner;
};

void pool_init(struct pool *pool, size_t block_size, size_t keep);
/* Frees the free list; blocks still in use must have been returned. */
void pool_destroy(struct pool *pool);
/* A block with refs == 1, or NULL when memory is exhausted. */
struct block *pool_get(struct pool *pool);

static inline void
block_ref(struct block *b)
{
	b->refs++;
}

/* Drops a reference; the last one returns the block to its pool. */
void block_unref(struct block *b);

#endif
