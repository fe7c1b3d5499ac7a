/*
 * test_pipe: the block pool (pool.h), the segment queue of one direction
 * of a download (pipe.h) and its watermark state machine.
 *
 * These three bound the memory of a download (STYLE 7): the watermark
 * says when to stop reading, `held` is what it compares, and the pool's
 * counts say whether a block leaked.  So every test checks `held` and the
 * pool's nused exactly, and ends with nused back at 0.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/pipe.h"
#include "proxy/pool.h"

#define BS   4096 /* the smallest block_size the config allows */
#define IDLE 1000 /* ms a free block stays resident */

static struct pool pool;
static struct pipe pp;

static int
setup(void **state)
{
	(void)state;
	pool_init(&pool, BS, IDLE);
	pipe_init(&pp, &pool, 64 * 1024, 16 * 1024);
	return 0;
}

/* Every test leaves the pipe empty or destroys it: no block may stay out
 * of the pool. */
static int
teardown(void **state)
{
	(void)state;
	pipe_destroy(&pp);
	assert_int_equal(pool.nused, 0);
	pool_destroy(&pool);
	assert_int_equal(pool.narenas, 0);
	assert_int_equal(pool.nhot + pool.ncold, 0);
	return 0;
}

/* Reads n bytes of data "from a socket" the way conn.c does: reserve,
 * fill, commit, push the bytes where they landed, drop the read's ref. */
static void
read_in(struct pipe *p, const char *data, size_t n)
{
	struct block *b;
	size_t len;
	char *base;

	assert_int_equal(pipe_reserve(p, &base, &len, &b), 0);
	assert_true(n <= len);
	memcpy(base, data, n);
	pipe_commit(p, n);
	assert_int_equal(pipe_push_ref(p, b, base, n), 0);
	block_unref(b);
}

/* Peeks everything not in flight and returns it concatenated in out. */
static size_t
peek_all(struct pipe *p, char *out, size_t cap, size_t *nbufs)
{
	uv_buf_t bufs[64];
	size_t n, len = 0;

	n = pipe_peek(p, bufs, 64);
	for (size_t i = 0; i < n; i++) {
		assert_true(len + bufs[i].len <= cap);
		memcpy(out + len, bufs[i].base, bufs[i].len);
		len += bufs[i].len;
	}
	if (nbufs != NULL)
		*nbufs = n;
	return len;
}

/* ---- watermark ------------------------------------------------------ */

static void
wm_transitions(void **state)
{
	struct watermark wm;

	(void)state;
	wm_init(&wm, 100, 40);
	assert_int_equal(wm.paused, 0);
	assert_int_equal(wm_check(&wm, 0), WM_NONE);
	assert_int_equal(wm_check(&wm, 99), WM_NONE);
	/* Pause exactly at high, once. */
	assert_int_equal(wm_check(&wm, 100), WM_PAUSE);
	assert_int_equal(wm.paused, 1);
	assert_int_equal(wm.npauses, 1);
	assert_int_equal(wm_check(&wm, 100), WM_NONE);
	assert_int_equal(wm_check(&wm, 150), WM_NONE);
	/* No resume between low and high: the hysteresis. */
	assert_int_equal(wm_check(&wm, 99), WM_NONE);
	assert_int_equal(wm_check(&wm, 41), WM_NONE);
	assert_int_equal(wm.paused, 1);
	/* Resume exactly at low, once. */
	assert_int_equal(wm_check(&wm, 40), WM_RESUME);
	assert_int_equal(wm.paused, 0);
	assert_int_equal(wm_check(&wm, 40), WM_NONE);
	assert_int_equal(wm_check(&wm, 99), WM_NONE);
	assert_int_equal(wm.npauses, 1);
	/* Past high in one step still pauses; drained to 0 resumes. */
	assert_int_equal(wm_check(&wm, 5000), WM_PAUSE);
	assert_int_equal(wm.npauses, 2);
	assert_int_equal(wm_check(&wm, 0), WM_RESUME);
	assert_int_equal(wm.npauses, 2);
}

static void
wm_high_equals_low(void **state)
{
	struct watermark wm;

	(void)state;
	/* The config allows low == high.  Pausing at high and resuming at
	 * the same level may alternate, but never gets stuck paused. */
	wm_init(&wm, 64, 64);
	assert_int_equal(wm_check(&wm, 63), WM_NONE);
	assert_int_equal(wm_check(&wm, 64), WM_PAUSE);
	assert_int_equal(wm_check(&wm, 64), WM_RESUME);
	assert_int_equal(wm_check(&wm, 65), WM_PAUSE);
	assert_int_equal(wm_check(&wm, 65), WM_NONE);
	assert_int_equal(wm_check(&wm, 63), WM_RESUME);
	assert_int_equal(wm.npauses, 2);
}

static void
wm_low_zero(void **state)
{
	struct watermark wm;

	(void)state;
	/* low = 0: resume only once everything was written. */
	wm_init(&wm, 4096, 0);
	assert_int_equal(wm_check(&wm, 4096), WM_PAUSE);
	assert_int_equal(wm_check(&wm, 1), WM_NONE);
	assert_int_equal(wm_check(&wm, 0), WM_RESUME);
}

/* ---- pool ----------------------------------------------------------- */

/* Is the page at p resident? */
static int
resident(const void *p)
{
	unsigned char v = 0;

	assert_int_equal(mincore((void *)p, 1, &v), 0);
	return v & 1;
}

static void
pool_reuse(void **state)
{
	struct block *a, *b;

	(void)state;
	a = pool_get(&pool);
	assert_non_null(a);
	assert_ptr_equal(a->pool, &pool);
	assert_int_equal(a->refs, 1);
	assert_int_equal(a->size, BS);
	assert_int_equal(pool.nused, 1);
	assert_int_equal(pool.narenas, 1);
	assert_int_equal((uintptr_t)a->data % 4096, 0); /* page-aligned */
	memset(a->data, 0xa5, BS); /* the whole data is ours */

	block_ref(a);
	block_unref(a);
	assert_int_equal(pool.nused, 1); /* one reference left */
	block_unref(a);
	assert_int_equal(pool.nused, 0);
	assert_int_equal(pool.nhot, 1);

	/* The freed block comes back first (hot), with a fresh reference. */
	b = pool_get(&pool);
	assert_ptr_equal(b, a);
	assert_int_equal(b->refs, 1);
	assert_int_equal(pool.nhot, 0);
	assert_int_equal(pool.nused, 1);
	assert_int_equal((unsigned char)b->data[0], 0xa5); /* still resident */
	block_unref(b);
}

static void
pool_arenas(void **state)
{
	struct block *b[1200];
	size_t per = pool.per_arena;

	(void)state;
	assert_true(per >= 2 && per < 1200);
	/* one arena maps many blocks; the next block maps the next arena */
	for (size_t i = 0; i < per + 1; i++)
		assert_non_null(b[i] = pool_get(&pool));
	assert_int_equal(pool.narenas, 2);
	assert_int_equal(pool.nused, per + 1);
	assert_int_equal(pool_mapped(&pool), 2 * per * pool.stride);
	for (size_t i = 0; i < per + 1; i++)
		block_unref(b[i]);
	assert_int_equal(pool.nhot, per + 1);
	assert_int_equal(pool.nused, 0);
}

/* Free blocks keep their pages until they have been idle IDLE ms; then
 * pool_trim gives the pages back, and unmaps arenas with nothing left. */
static void
pool_trim_idle(void **state)
{
	struct block *b[8], *held;
	size_t given;

	(void)state;
	pool_trim(&pool, 10000); /* the clock: 10 s */
	assert_non_null(held = pool_get(&pool));
	memset(held->data, 'h', BS);
	for (int i = 0; i < 8; i++) {
		assert_non_null(b[i] = pool_get(&pool));
		memset(b[i]->data, 'x', BS);
	}
	for (int i = 0; i < 8; i++)
		block_unref(b[i]); /* freed at 10 s */
	assert_int_equal(pool.nhot, 8);
	/* not idle long enough: nothing goes */
	assert_int_equal(pool_trim(&pool, 10000 + IDLE - 1), 0);
	assert_int_equal(pool.nhot, 8);
	assert_true(resident(b[0]->data));
	/* idle: every page goes back, the held block's stay */
	given = pool_trim(&pool, 10000 + IDLE);
	assert_int_equal(given, 8 * pool.stride);
	assert_int_equal(pool.nhot, 0);
	for (int i = 0; i < 8; i++)
		assert_false(resident(b[i]->data));
	assert_true(resident(held->data));
	assert_int_equal(held->data[BS - 1], 'h');
	assert_int_equal(pool.narenas, 1); /* held keeps its arena */
	/* a cold block comes back zeroed when no hot one is left */
	block_unref(held);
	assert_non_null(held = pool_get(&pool)); /* the hot one */
	assert_int_equal(held->data[0], 'h');
	assert_non_null(b[0] = pool_get(&pool)); /* a cold one */
	assert_int_equal(b[0]->data[0], 0);
	block_unref(b[0]);
	block_unref(held);
	/* all free and idle: the arena is unmapped */
	pool_trim(&pool, 10000 + 3 * IDLE);
	assert_int_equal(pool.narenas, 0);
	assert_int_equal(pool.nhot + pool.ncold, 0);
	assert_int_equal(pool_mapped(&pool), 0);
	/* and the pool goes on */
	assert_non_null(b[0] = pool_get(&pool));
	block_unref(b[0]);
}

/* After pool_destroy, an arena still in use goes with its last block. */
static void
pool_retiring(void **state)
{
	struct pool p0;
	struct block *a, *b;

	(void)state;
	pool_init(&p0, 128, 0);
	/* data page-aligned, whatever the size (ASan: a guard page more) */
	assert_true(p0.stride >= 4096 && p0.stride % 4096 == 0);
	assert_non_null(a = pool_get(&p0));
	assert_non_null(b = pool_get(&p0));
	assert_int_equal(a->size, 128);
	pool_destroy(&p0);
	assert_int_equal(p0.narenas, 1);
	block_unref(a);
	assert_int_equal(p0.narenas, 1);
	block_unref(b);
	assert_int_equal(p0.narenas, 0);
	assert_int_equal(p0.nused, 0);
	assert_int_equal(p0.nhot + p0.ncold, 0);
}

/* ---- pipe ----------------------------------------------------------- */

static void
reserve_commit_push(void **state)
{
	struct block *b, *b2;
	char *base, *base2, out[64];
	size_t len, len2, n, nbufs;

	(void)state;
	assert_true(pipe_empty(&pp));
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	assert_ptr_equal(base, b->data);
	assert_int_equal(len, BS);
	assert_int_equal(b->refs, 2); /* the pipe's and the reader's */
	memcpy(base, "hello", 5);
	pipe_commit(&pp, 5);
	assert_int_equal(pipe_push_ref(&pp, b, base, 5), 0);
	assert_int_equal(b->refs, 3);
	block_unref(b);
	assert_int_equal(pipe_held(&pp), 5);
	assert_false(pipe_empty(&pp));

	/* The next read lands right after, in the same block, and its bytes
	 * extend the same segment. */
	assert_int_equal(pipe_reserve(&pp, &base2, &len2, &b2), 0);
	assert_ptr_equal(b2, b);
	assert_ptr_equal(base2, base + 5);
	assert_int_equal(len2, BS - 5);
	memcpy(base2, " world", 6);
	pipe_commit(&pp, 6);
	assert_int_equal(pipe_push_ref(&pp, b2, base2, 6), 0);
	block_unref(b2);
	assert_int_equal(pp.count, 1);
	assert_int_equal(pipe_held(&pp), 11);
	assert_int_equal(b->refs, 2);

	/* Zero bytes queue nothing. */
	assert_int_equal(pipe_push_ref(&pp, b, base + 11, 0), 0);
	assert_int_equal(pp.count, 1);

	n = peek_all(&pp, out, sizeof(out), &nbufs);
	assert_int_equal(nbufs, 1);
	assert_int_equal(n, 11);
	assert_memory_equal(out, "hello world", 11);
	/* In flight is still held: the kernel has not taken it yet. */
	assert_int_equal(pipe_held(&pp), 11);
	pipe_consume(&pp, 1);
	assert_int_equal(pipe_held(&pp), 0);
	assert_true(pipe_empty(&pp));
	assert_true(pp.bytes_in == 11);
	assert_true(pp.bytes_out == 11);
	/* Only the current block is left, held by the pipe. */
	assert_int_equal(pool.nused, 1);
	assert_int_equal(b->refs, 1);
}

static void
order_copy_and_ref(void **state)
{
	char out[128];
	size_t n, nbufs;

	(void)state;
	/* A head goes in a loose block of its own size, not a pool block;
	 * body bytes read after it land in a pool block: two segments. */
	assert_int_equal(pipe_push_head(&pp, "HEAD|", 5), 0);
	assert_int_equal(pool.nused, 0);
	read_in(&pp, "body1|", 6);
	assert_int_equal(pp.count, 2);
	assert_int_equal(pool.nused, 1);
	n = peek_all(&pp, out, sizeof(out), &nbufs);
	assert_int_equal(nbufs, 2);
	assert_memory_equal(out, "HEAD|body1|", n);

	/* While that segment is being written it may not grow: the writer
	 * handed its length to the kernel.  Framing copied behind a read
	 * shares the read's block and its segment. */
	read_in(&pp, "body2|", 6);
	assert_int_equal(pipe_push_copy(&pp, "0\r\n\r\n", 5), 0);
	assert_int_equal(pp.count, 3);
	assert_int_equal(pool.nused, 1);
	assert_int_equal(pipe_held(&pp), 22);
	/* A second peek gives only what is not yet in flight. */
	n = peek_all(&pp, out, sizeof(out), &nbufs);
	assert_int_equal(nbufs, 1);
	assert_int_equal(n, 11);
	assert_memory_equal(out, "body2|0\r\n\r\n", 11);
	pipe_consume(&pp, 2);
	assert_int_equal(pipe_held(&pp), 11);
	pipe_consume(&pp, 1);
	assert_int_equal(pipe_held(&pp), 0);
}

static void
copy_without_room_goes_loose(void **state)
{
	static char src[3 * BS - 100], out[3 * BS + 400];
	uv_buf_t bufs[8];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (char)(i * 7 + i / 251);
	/* No current block: the copy goes in one loose block of its exact
	 * size, and no pool block is taken (memory_limit never asked). */
	assert_int_equal(pipe_push_copy(&pp, src, sizeof(src)), 0);
	assert_int_equal(pipe_held(&pp), sizeof(src));
	assert_int_equal(pp.count, 1);
	assert_int_equal(pool.nused, 0);
	n = pipe_peek(&pp, bufs, 8);
	assert_int_equal(n, 1);
	assert_int_equal(bufs[0].len, sizeof(src));
	assert_memory_equal(bufs[0].base, src, sizeof(src));
	pipe_consume(&pp, 1);
	assert_true(pipe_empty(&pp));

	/* Behind a read with room, a copy shares the read's block; a copy
	 * larger than the room left goes loose again. */
	read_in(&pp, "r", 1);
	assert_int_equal(pipe_push_copy(&pp, src, 300), 0);
	assert_int_equal(pp.count, 1);
	assert_int_equal(pool.nused, 1);
	assert_int_equal(pipe_push_copy(&pp, src, BS), 0);
	assert_int_equal(pp.count, 2);
	assert_int_equal(pool.nused, 1);
	assert_int_equal(pipe_held(&pp), 301 + BS);
	n = peek_all(&pp, out, sizeof(out), NULL);
	assert_int_equal(n, 301 + BS);
	assert_memory_equal(out, "r", 1);
	assert_memory_equal(out + 1, src, 300);
	assert_memory_equal(out + 301, src, BS);
	pipe_consume(&pp, 2);
	assert_true(pipe_empty(&pp));
}

/* Queues n one-byte segments that cannot merge (every other byte of one
 * block), holding the values first, first+1, ... */
static void
push_singles(struct block *b, int first, int n)
{
	for (int i = 0; i < n; i++) {
		int v = first + i;
		char *at = b->data + 2 * (v % (BS / 2));

		*at = (char)v;
		assert_int_equal(pipe_push_ref(&pp, b, at, 1), 0);
	}
}

static void
peek_partial(void **state)
{
	struct block *b;
	uv_buf_t bufs[8];
	char *base;
	size_t len;

	(void)state;
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	pipe_commit(&pp, len);
	push_singles(b, 0, 5);
	assert_int_equal(pp.count, 5);

	/* max smaller than the count: the rest waits for the next peek. */
	assert_int_equal(pipe_peek(&pp, bufs, 2), 2);
	assert_int_equal(bufs[0].base[0], 0);
	assert_int_equal(bufs[1].base[0], 1);
	assert_int_equal(pp.inflight, 2);
	assert_int_equal(pipe_peek(&pp, bufs, 2), 2);
	assert_int_equal(bufs[0].base[0], 2);
	assert_int_equal(bufs[1].base[0], 3);
	assert_int_equal(pipe_peek(&pp, bufs, 8), 1);
	assert_int_equal(bufs[0].base[0], 4);
	assert_int_equal(pipe_peek(&pp, bufs, 8), 0);
	assert_int_equal(pipe_peek(&pp, bufs, 0), 0);

	/* A write that took only the first segments releases only them. */
	pipe_consume(&pp, 1);
	assert_int_equal(pipe_held(&pp), 4);
	assert_int_equal(pp.inflight, 4);
	assert_int_equal(pp.count, 4);

	/* A cancelled write: the same segments are offered again. */
	pipe_unpeek(&pp);
	assert_int_equal(pp.inflight, 0);
	assert_int_equal(pipe_peek(&pp, bufs, 2), 2);
	assert_int_equal(bufs[0].base[0], 1);
	assert_int_equal(bufs[1].base[0], 2);

	/* Consuming more than is in flight stops at what is in flight. */
	pipe_consume(&pp, 10);
	assert_int_equal(pp.count, 2);
	assert_int_equal(pp.inflight, 0);
	assert_int_equal(pipe_held(&pp), 2);
	pipe_consume(&pp, 1); /* nothing in flight: nothing released */
	assert_int_equal(pipe_held(&pp), 2);
	assert_int_equal(b->refs, 4); /* cur, ours, two segments */
	block_unref(b);
}

static void
ring_wraps_and_grows(void **state)
{
	struct block *b;
	uv_buf_t bufs[64];
	char *base;
	size_t len, n;
	int next = 0, pushed = 0;

	(void)state;
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	pipe_commit(&pp, len);
	/* Fill, drain the front, refill past the end of the ring (16
	 * slots), then grow it while it is wrapped. */
	push_singles(b, pushed, 12);
	pushed += 12;
	n = pipe_peek(&pp, bufs, 10);
	assert_int_equal(n, 10);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(bufs[i].base[0], (char)next++);
	pipe_consume(&pp, 10);
	push_singles(b, pushed, 40);
	pushed += 40;
	assert_int_equal(pp.count, 42);
	assert_true(pp.cap >= 42);
	assert_int_equal(pipe_held(&pp), 42);
	assert_int_equal(b->refs, 2 + 42);
	while ((n = pipe_peek(&pp, bufs, 7)) > 0) {
		for (size_t i = 0; i < n; i++)
			assert_int_equal(bufs[i].base[0], (char)next++);
		pipe_consume(&pp, n);
	}
	assert_int_equal(next, pushed);
	assert_true(pipe_empty(&pp));
	assert_int_equal(pipe_held(&pp), 0);
	assert_int_equal(b->refs, 2);
	block_unref(b);
}

static void
reserve_quarter_rule(void **state)
{
	struct block *b, *b2;
	char *base, *base2;
	size_t len, len2;

	(void)state;
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	pipe_commit(&pp, BS * 3 / 4);
	assert_int_equal(pipe_push_ref(&pp, b, base, BS * 3 / 4), 0);
	block_unref(b);
	/* A quarter left: still worth a read. */
	assert_int_equal(pipe_reserve(&pp, &base2, &len2, &b2), 0);
	assert_ptr_equal(b2, b);
	assert_ptr_equal(base2, base + BS * 3 / 4);
	assert_int_equal(len2, BS / 4);
	pipe_commit(&pp, 1);
	assert_int_equal(pipe_push_ref(&pp, b2, base2, 1), 0);
	block_unref(b2);
	assert_int_equal(pp.count, 1);
	/* Less than a quarter left: a fresh block, whole. */
	assert_int_equal(pipe_reserve(&pp, &base2, &len2, &b2), 0);
	assert_ptr_not_equal(b2, b);
	assert_ptr_equal(base2, b2->data);
	assert_int_equal(len2, BS);
	assert_int_equal(pool.nused, 2);
	/* The old block lives on in its segment, no longer as `cur`. */
	assert_int_equal(b->refs, 1);
	pipe_commit(&pp, 10);
	assert_int_equal(pipe_push_ref(&pp, b2, base2, 10), 0);
	block_unref(b2);
	assert_int_equal(pp.count, 2);
	assert_int_equal(pipe_held(&pp), BS * 3 / 4 + 1 + 10);

	/* A block that held no segment goes back when it is replaced. */
	pipe_destroy(&pp);
	assert_int_equal(pool.nused, 0);
	pipe_init(&pp, &pool, 64 * 1024, 16 * 1024);
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	block_unref(b);
	pipe_commit(&pp, BS - 1);
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b2), 0);
	assert_int_equal(pool.nused, 1);
	block_unref(b2);
}

static void
destroy_releases_all(void **state)
{
	struct block *b;
	uv_buf_t bufs[4];
	char big[2 * BS], *base;
	size_t len;

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(pipe_push_copy(&pp, big, sizeof(big)), 0);
	read_in(&pp, "tail", 4);
	/* Some segments in flight, some not, a current block, and a read
	 * outstanding when the connection dies. */
	assert_int_equal(pipe_peek(&pp, bufs, 2), 2);
	read_in(&pp, "more", 4);
	assert_int_equal(pp.count, 3);
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	assert_int_equal(pool.nused, 1); /* the copy went loose */
	pipe_destroy(&pp);
	assert_true(pipe_empty(&pp));
	assert_int_equal(pipe_held(&pp), 0);
	/* The reader's reference is the reader's to drop. */
	assert_int_equal(pool.nused, 1);
	assert_int_equal(b->refs, 1);
	block_unref(b);
	assert_int_equal(pool.nused, 0);
	/* Destroying twice, or a pipe never used, is harmless. */
	pipe_destroy(&pp);
	assert_int_equal(pool.nused, 0);
}

static void
trim_when_empty(void **state)
{
	struct block *b;
	uv_buf_t buf;
	char *base;
	size_t len;

	(void)state;
	/* Bytes still queued: the current block stays. */
	read_in(&pp, "abc", 3);
	pipe_trim(&pp);
	assert_non_null(pp.cur);
	assert_int_equal(pool.nused, 1);
	/* Drained: an idle connection holds no block. */
	assert_int_equal(pipe_peek(&pp, &buf, 1), 1);
	pipe_consume(&pp, 1);
	pipe_trim(&pp);
	assert_null(pp.cur);
	assert_int_equal(pool.nused, 0);
	pipe_trim(&pp);
	/* The next read starts a whole block. */
	assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
	assert_int_equal(len, BS);
	assert_ptr_equal(base, b->data);
	block_unref(b);
}

/*
 * The loop conn.c runs, without sockets: a fast source reads whole blocks
 * while the watermark allows, a slow sink writes a few segments at a time.
 * held never goes past high by more than one read, and the source is
 * stopped and restarted as often as the sink falls behind.
 */
static void
backpressure_bounded(void **state)
{
	static char chunk[BS];
	size_t high = 8 * BS, low = 2 * BS, max_held = 0, in = 0, out = 0;
	int paused = 0, resumes = 0;
	uv_buf_t bufs[2];

	(void)state;
	pipe_destroy(&pp);
	pipe_init(&pp, &pool, high, low);
	memset(chunk, 'z', sizeof(chunk));
	for (int step = 0; step < 1000; step++) {
		enum wm_event ev;
		size_t n;

		if (!paused) {
			struct block *b;
			char *base;
			size_t len;

			assert_int_equal(pipe_reserve(&pp, &base, &len, &b), 0);
			memcpy(base, chunk, len);
			pipe_commit(&pp, len);
			assert_int_equal(pipe_push_ref(&pp, b, base, len), 0);
			block_unref(b);
			in += len;
			if ((ev = wm_check(&pp.wm, pipe_held(&pp))) == WM_PAUSE)
				paused = 1;
			assert_int_not_equal(ev, WM_RESUME);
		}
		if (pipe_held(&pp) > max_held)
			max_held = pipe_held(&pp);
		if (step % 3 == 0) {
			n = pipe_peek(&pp, bufs, 2);
			for (size_t i = 0; i < n; i++)
				out += bufs[i].len;
			pipe_consume(&pp, n);
			if ((ev = wm_check(&pp.wm, pipe_held(&pp))) ==
			    WM_RESUME) {
				paused = 0;
				resumes++;
			}
			assert_int_not_equal(ev, WM_PAUSE);
		}
	}
	assert_true(max_held >= high);
	assert_true(max_held < high + BS);
	assert_true(resumes > 10);
	assert_true(pp.wm.npauses >= (uint64_t)resumes);
	assert_true(in - out == pipe_held(&pp));
	assert_true(pp.bytes_in == in && pp.bytes_out == out);
	/* With four blocks kept, the pool's own memory stays bounded too. */
	assert_true(pool.nused <= high / BS + 2);
}

/*
 * The kernel pipe ([buffer] splice): bytes spliced in from a socket are
 * what pipe_kernel, pipe_load and pipe_empty see (read from the kernel,
 * not counted by hand), *total follows them, they come out in order and
 * exact, and the end of the socket reads as 0.
 */
static void
kernel_pipe_round_trip(void **state)
{
	static char in[48 * 1024], out[sizeof(in)];
	_Atomic uint64_t total = 0;
	size_t got = 0;
	ssize_t n;
	int src[2], dst[2];

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 7 + i / 251);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, src), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, dst), 0);
	assert_int_equal(pipe_kernel_open(&pp, 64 * 1024, &total), 0);
	assert_true(pipe_has_kernel(&pp) && pp.k.cap >= 64 * 1024);
	assert_true(pipe_empty(&pp));
	assert_int_equal(pipe_splice_in(&pp, src[1], 4096), -EAGAIN);
	assert_int_equal(write(src[0], in, sizeof(in)), (ssize_t)sizeof(in));
	while (pipe_kernel(&pp) < sizeof(in)) {
		n = pipe_splice_in(&pp, src[1], sizeof(in) - pipe_kernel(&pp));
		assert_true(n > 0);
	}
	assert_int_equal(pipe_kernel(&pp), sizeof(in));
	assert_int_equal(total, sizeof(in));
	assert_int_equal(pipe_load(&pp), sizeof(in));
	assert_false(pipe_empty(&pp));
	assert_int_equal(pipe_memory(&pp), 0);
	while (got < sizeof(in)) {
		n = pipe_splice_out(&pp, dst[0], 10000);
		assert_true(n > 0 && n <= 10000);
		assert_int_equal(
		    pipe_kernel(&pp), sizeof(in) - got - (size_t)n);
		assert_int_equal(read(dst[1], out + got, (size_t)n), n);
		got += (size_t)n;
	}
	assert_memory_equal(in, out, sizeof(in));
	assert_true(pipe_empty(&pp));
	assert_int_equal(total, 0);
	assert_true(pp.bytes_in == sizeof(in) && pp.bytes_out == sizeof(in));
	close(src[0]);
	assert_int_equal(pipe_splice_in(&pp, src[1], 4096), 0);
	/* closing with bytes in it gives their count back */
	assert_int_equal(write(dst[1], in, 100), 100);
	assert_int_equal(pipe_splice_in(&pp, dst[0], 100), 100);
	assert_int_equal(total, 100);
	pipe_destroy(&pp);
	assert_int_equal(total, 0);
	assert_false(pipe_has_kernel(&pp));
	close(src[1]);
	close(dst[0]);
	close(dst[1]);
}

/*
 * Policy spill on the zero-copy path (sendfile): bytes spliced into the
 * kernel pipe move to the spool file (pipe_kernel_spool) and go out with
 * sendfile (pipe_spool_out), exact and in order; spill_total counts them
 * while they are spooled.  When spill_total refuses the next move, the
 * kernel pipe's bytes go to the tail (the spool holds bytes ahead of
 * them) and come out after the spool's, through memory; the spool failed.
 */
static void
kernel_spool_round_trip(void **state)
{
	static char in[96 * 1024], out[sizeof(in)];
	_Atomic uint64_t ktotal = 0, stotal = 0;
	struct spill_cfg sc = {"/tmp", &stotal, 64 * 1024};
	size_t got = 0, half = sizeof(in) / 2;
	uv_buf_t bufs[64];
	ssize_t n;
	int src[2], dst[2];

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 13 + i / 509);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, src), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, dst), 0);
	assert_int_equal(pipe_kernel_open(&pp, 64 * 1024, &ktotal), 0);
	pipe_spill_setup(&pp, &sc, 16 * 1024);
	pp.sendfile = 1;
	/* the first half: spliced in, moved to the spool */
	assert_int_equal(write(src[0], in, half), (ssize_t)half);
	while (pp.bytes_in < half) {
		n = pipe_splice_in(&pp, src[1], half - (size_t)pp.bytes_in);
		assert_true(n > 0);
		assert_int_equal(pipe_kernel_spool(&pp), 0);
	}
	assert_int_equal(pipe_kernel(&pp), 0);
	assert_int_equal(ktotal, 0);
	assert_int_equal(pipe_spooled(&pp), half);
	assert_int_equal(stotal, half);
	assert_int_equal(pp.spool.starts, 1);
	assert_true(pipe_kernel_next(&pp));
	assert_int_equal(pipe_memory(&pp), 0);
	/* the second half: spill_total (64k) refuses it; it goes to the
	 * tail, behind the spool's bytes */
	assert_int_equal(write(src[0], in + half, half), (ssize_t)half);
	while (pp.bytes_in < sizeof(in)) {
		n = pipe_splice_in(
		    &pp, src[1], sizeof(in) - (size_t)pp.bytes_in);
		assert_true(n > 0);
		assert_int_equal(pipe_kernel_spool(&pp), -ENOSPC);
		assert_int_equal(pipe_kernel(&pp), 0);
	}
	assert_true(pp.spool.failed);
	assert_int_equal(pp.tail.held, half);
	assert_int_equal(stotal, half);
	assert_false(pipe_can_spool(&pp));
	/* out: the spool with sendfile first, memory after it */
	while (pipe_kernel_next(&pp)) {
		n = pipe_spool_out(&pp, dst[0], 10000);
		assert_true(n > 0 && n <= 10000);
		assert_int_equal(read(dst[1], out + got, (size_t)n), n);
		got += (size_t)n;
	}
	assert_int_equal(got, half);
	assert_int_equal(stotal, 0);
	assert_int_equal(pipe_spooled(&pp), 0);
	while (got < sizeof(in)) {
		size_t nb = pipe_peek(&pp, bufs, 64), len = 0;

		assert_true(nb > 0);
		for (size_t i = 0; i < nb; i++) {
			memcpy(out + got + len, bufs[i].base, bufs[i].len);
			len += bufs[i].len;
		}
		pipe_consume(&pp, nb);
		got += len;
	}
	assert_int_equal(got, sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	assert_true(pipe_empty(&pp));
	assert_int_equal(pp.bytes_out, sizeof(in));
	assert_int_equal(pp.error, 0);
	pipe_destroy(&pp);
	assert_int_equal(stotal, 0);
	close(src[0]);
	close(src[1]);
	close(dst[0]);
	close(dst[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(wm_transitions),
	    cmocka_unit_test(wm_high_equals_low),
	    cmocka_unit_test(wm_low_zero),
	    cmocka_unit_test_setup_teardown(pool_reuse, setup, teardown),
	    cmocka_unit_test_setup_teardown(pool_arenas, setup, teardown),
	    cmocka_unit_test_setup_teardown(pool_trim_idle, setup, teardown),
	    cmocka_unit_test(pool_retiring),
	    cmocka_unit_test_setup_teardown(
	        reserve_commit_push, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        order_copy_and_ref, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        copy_without_room_goes_loose, setup, teardown),
	    cmocka_unit_test_setup_teardown(peek_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        ring_wraps_and_grows, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        reserve_quarter_rule, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        destroy_releases_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(trim_when_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        backpressure_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        kernel_pipe_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        kernel_spool_round_trip, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
