/*
 * pool: fixed-size, reference-counted memory blocks that socket reads land
 * in and socket writes send from, so relayed bytes are never copied
 * (STYLE 7).
 *
 * A block is handed out with one reference.  Every segment of a pipe that
 * points into the block holds another; the last block_unref() gives it back
 * to the pool.
 *
 * Blocks are carved from arenas: one mmap of about 2 MiB (at least one
 * block) holds the blocks' headers, then their data, each block's data
 * page-aligned.  A block that comes back goes on the pool's `hot` free
 * list, newest first, and is the next one handed out (its pages are still
 * resident and in cache).  pool_trim, from a timer, gives the pages of
 * blocks that stayed free for `idle_ms` back to the system
 * (madvise(MADV_DONTNEED): the address range stays, the memory goes) and
 * moves them to the `cold` list, used only when no hot block is left; an
 * arena whose blocks are all cold is unmapped.  So a burst's memory leaves
 * the process a few seconds after the burst, and a steady load takes no
 * page fault and no system call per block.
 *
 * Single-threaded, like the loop that uses it; only `in_use`, a counter
 * the workers share (memory_limit holds for them all), is atomic.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/list.h"

struct pool;
struct arena;

struct block {
	struct pool *pool;
	struct arena *arena;
	struct list_node free_link; /* on hot or cold while free */
	uint64_t freed_at;          /* pool clock when it went on hot */
	uint32_t refs;
	uint32_t size; /* bytes at data */
	int cold;      /* free with its pages given back */
	char *data;
};

struct pool {
	size_t block_size;
	size_t stride;    /* a block's data span: block_size page-rounded */
	size_t per_arena; /* blocks in one arena */
	uint64_t idle_ms; /* free this long: pages go back (pool_trim) */
	uint64_t clock;   /* ms, as of the last pool_trim */
	int retiring;     /* pool_destroy called: arenas go as they empty */
	struct list hot;  /* free, resident; newest first */
	struct list cold; /* free, pages given back */
	struct list arenas;
	size_t nused; /* blocks handed out and not yet returned */
	/* bytes of blocks handed out, added to with the pools of every
	 * worker (may be NULL) */
	_Atomic uint64_t *in_use;
	size_t nhot, ncold;
	size_t narenas;
	/* called after a block came back (may be NULL); owner is the
	 * caller's, for it */
	void (*on_release)(struct pool *pool);
	void *owner;
};

/* Blocks of block_size bytes; free blocks' pages go back after idle_ms.
 * Maps nothing yet. */
void pool_init(struct pool *pool, size_t block_size, uint64_t idle_ms);
/* Unmaps every arena with no block in use; the pool is retiring from then
 * on: each other arena is unmapped when its last block comes back. */
void pool_destroy(struct pool *pool);
/* A block with refs == 1, or NULL when memory is exhausted. */
struct block *pool_get(struct pool *pool);
/* Gives back the pages of blocks free since before now - idle_ms, and
 * unmaps arenas left with no resident or used block; now (ms, monotonic)
 * also stamps the blocks freed until the next call.  Returns the bytes
 * given back. */
size_t pool_trim(struct pool *pool, uint64_t now);
/* Bytes mapped for blocks' data (used, hot and cold). */
size_t pool_mapped(const struct pool *pool);

static inline void
block_ref(struct block *b)
{
	b->refs++;
}

/* Drops a reference; the last one returns the block to its pool. */
void block_unref(struct block *b);

/*
 * A loose block: n bytes copied into memory of their own (malloc, exactly
 * n), with no pool (pool and arena NULL) and one reference, the caller's;
 * block_unref() frees it with its last reference.  For heads: a 300-byte
 * head does not take a 64 KiB block, and is not counted among the pool's
 * blocks in use (memory_limit).  NULL when out of memory.
 */
struct block *block_loose(const void *data, size_t n);

#endif
