/*
 * pool: see pool.h.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/pool.h"

#define ARENA_BYTES (2u << 20)

/*
 * Under AddressSanitizer the blocks are poisoned while free, and each is
 * followed by a poisoned page: a read or write past a block's end, or into
 * a block given back, is reported as it would be for malloc's memory
 * (mmap'd memory is otherwise invisible to ASan).
 */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define REDZONE        1
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define REDZONE        0
#endif

struct arena {
	struct list_node link; /* pool->arenas */
	struct pool *pool;
	void *map;
	size_t map_len;
	size_t nblocks;
	size_t nused; /* blocks handed out */
	size_t ncold; /* blocks free with their pages given back */
	struct block blocks[];
};

static size_t
page_size(void)
{
	static size_t ps;

	if (ps == 0) {
		long v = sysconf(_SC_PAGESIZE);

		ps = v > 0 ? (size_t)v : 4096;
	}
	return ps;
}

static size_t
round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

void
pool_init(struct pool *pool, size_t block_size, uint64_t idle_ms)
{
	*pool = (struct pool){0};
	pool->block_size = block_size;
	pool->stride =
	    round_up(block_size, page_size()) + REDZONE * page_size();
	pool->per_arena = ARENA_BYTES / pool->stride;
	if (pool->per_arena == 0)
		pool->per_arena = 1;
	pool->idle_ms = idle_ms;
}

size_t
pool_mapped(const struct pool *pool)
{
	return pool->narenas * pool->per_arena * pool->stride;
}

/* Maps an arena; its blocks go on the cold list (their pages were never
 * touched: nothing resident). */
static int
arena_new(struct pool *pool)
{
	size_t hdr = round_up(
	    sizeof(struct arena) + pool->per_arena * sizeof(struct block),
	    page_size());
	size_t len = hdr + pool->per_arena * pool->stride;
	struct arena *a;
	void *map;

	map = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED)
		return -1;
	a = map;
	a->pool = pool;
	a->map = map;
	a->map_len = len;
	a->nblocks = pool->per_arena;
	a->nused = 0;
	a->ncold = a->nblocks;
	POISON((char *)map + hdr, len - hdr);
	for (size_t i = 0; i < a->nblocks; i++) {
		struct block *b = &a->blocks[i];

		b->pool = pool;
		b->arena = a;
		b->size = (uint32_t)pool->block_size;
		b->data = (char *)map + hdr + i * pool->stride;
		b->cold = 1;
		list_insert_head(&pool->cold, &b->free_link);
	}
	pool->ncold += a->nblocks;
	list_insert_head(&pool->arenas, &a->link);
	pool->narenas++;
	return 0;
}

/* Unmaps a (wholly free) arena, its blocks off the free lists. */
static void
arena_free(struct pool *pool, struct arena *a)
{
	for (size_t i = 0; i < a->nblocks; i++) {
		struct block *b = &a->blocks[i];

		list_remove(&b->free_link);
		if (b->cold)
			pool->ncold--;
		else
			pool->nhot--;
	}
	list_remove(&a->link);
	pool->narenas--;
	UNPOISON(a->map, a->map_len); /* the range may be malloc's next */
	munmap(a->map, a->map_len);
}

void
pool_destroy(struct pool *pool)
{
	struct list_node *n, *next;

	pool->retiring = 1;
	for (n = pool->arenas.first; n != NULL; n = next) {
		struct arena *a = container_of(n, struct arena, link);

		next = n->next;
		if (a->nused == 0)
			arena_free(pool, a);
	}
}

struct block *
pool_get(struct pool *pool)
{
	struct list_node *n = pool->hot.first;
	struct block *b;

	if (n == NULL && (n = pool->cold.first) == NULL) {
		if (arena_new(pool) < 0)
			return NULL;
		n = pool->cold.first;
	}
	b = container_of(n, struct block, free_link);
	list_remove(n);
	if (b->cold) {
		b->cold = 0;
		b->arena->ncold--;
		pool->ncold--;
	} else {
		pool->nhot--;
	}
	UNPOISON(b->data, b->size);
	b->refs = 1;
	b->arena->nused++;
	pool->nused++;
	if (pool->in_use != NULL)
		atomic_fetch_add_explicit(
		    pool->in_use, pool->block_size, memory_order_relaxed);
	return b;
}

void
block_unref(struct block *b)
{
	struct pool *pool = b->pool;
	struct arena *a = b->arena;

	if (--b->refs != 0)
		return;
	if (pool == NULL) { /* loose */
		free(b);
		return;
	}
	pool->nused--;
	a->nused--;
	if (pool->in_use != NULL)
		atomic_fetch_sub_explicit(
		    pool->in_use, pool->block_size, memory_order_relaxed);
	POISON(b->data, b->size);
	b->freed_at = pool->clock;
	list_insert_head(&pool->hot, &b->free_link);
	pool->nhot++;
	if (pool->retiring && a->nused == 0)
		arena_free(pool, a);
	if (pool->on_release != NULL)
		pool->on_release(pool);
}

struct block *
block_loose(const void *data, size_t n)
{
	struct block *b;

	if (n > UINT32_MAX || (b = malloc(sizeof(*b) + n)) == NULL)
		return NULL;
	memset(b, 0, sizeof(*b));
	b->refs = 1;
	b->size = (uint32_t)n;
	b->data = (char *)(b + 1);
	memcpy(b->data, data, n);
	return b;
}

size_t
pool_trim(struct pool *pool, uint64_t now)
{
	struct list_node *n, *next;
	size_t given = 0;

	pool->clock = now;
	/* hot is newest first: skip the blocks freed recently, the rest go */
	for (n = pool->hot.first; n != NULL; n = n->next) {
		struct block *b = container_of(n, struct block, free_link);

		if (b->freed_at + pool->idle_ms <= now)
			break;
	}
	for (; n != NULL; n = next) {
		struct block *b = container_of(n, struct block, free_link);

		next = n->next;
		list_remove(n);
		pool->nhot--;
		/* the range stays mapped; a later use faults in zeroed pages */
		(void)madvise(b->data, pool->stride, MADV_DONTNEED);
		b->cold = 1;
		b->arena->ncold++;
		list_insert_head(&pool->cold, n);
		pool->ncold++;
		given += pool->stride;
	}
	for (n = pool->arenas.first; n != NULL; n = next) {
		struct arena *a = container_of(n, struct arena, link);

		next = n->next;
		if (a->ncold == a->nblocks)
			arena_free(pool, a);
	}
	return given;
}
