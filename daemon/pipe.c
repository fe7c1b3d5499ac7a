/*
 * pipe: see pipe.h.
 *
 * Invariants: segs[first .. first+count) in ring order hold `held` bytes;
 * the first `inflight` of them are being written; every segment holds one
 * reference on its block; `cur` (if not NULL) holds one more.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipe.h"

void
wm_init(struct watermark *wm, size_t high, size_t low)
{
	wm->high = high;
	wm->low = low;
	wm->paused = 0;
	wm->npauses = 0;
}

enum wm_event
wm_check(struct watermark *wm, size_t held)
{
	if (!wm->paused && held >= wm->high) {
		wm->paused = 1;
		wm->npauses++;
		return WM_PAUSE;
	}
	if (wm->paused && held <= wm->low) {
		wm->paused = 0;
		return WM_RESUME;
	}
	return WM_NONE;
}

void
pipe_init(struct pipe *p, struct pool *pool, size_t high, size_t low)
{
	memset(p, 0, sizeof(*p));
	p->pool = pool;
	wm_init(&p->wm, high, low);
}

void
pipe_destroy(struct pipe *p)
{
	while (p->count > 0) {
		block_unref(p->segs[p->first].b);
		p->first = (p->first + 1) % p->cap;
		p->count--;
	}
	free(p->segs);
	p->segs = NULL;
	p->cap = p->first = p->inflight = p->held = 0;
	if (p->cur != NULL)
		block_unref(p->cur);
	p->cur = NULL;
	p->cur_used = 0;
}

static int
grow(struct pipe *p)
{
	size_t ncap = p->cap ? p->cap * 2 : 16;
	struct seg *n = malloc(ncap * sizeof(*n));

	if (n == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < p->count; i++)
		n[i] = p->segs[(p->first + i) % p->cap];
	free(p->segs);
	p->segs = n;
	p->cap = ncap;
	p->first = 0;
	return 0;
}

/* Replaces the current block by a fresh one. */
static int
next_block(struct pipe *p)
{
	struct block *b = pool_get(p->pool);

	if (b == NULL)
		return -ENOMEM;
	if (p->cur != NULL)
		block_unref(p->cur);
	p->cur = b;
	p->cur_used = 0;
	return 0;
}

int
pipe_reserve(struct pipe *p, char **base, size_t *len, struct block **blk)
{
	if (p->cur == NULL || p->cur->size - p->cur_used < p->cur->size / 4) {
		if (next_block(p) < 0)
			return -ENOMEM;
	}
	*base = p->cur->data + p->cur_used;
	*len = p->cur->size - p->cur_used;
	block_ref(p->cur);
	*blk = p->cur;
	return 0;
}

void
pipe_commit(struct pipe *p, size_t n)
{
	p->cur_used += n;
}

int
pipe_push_ref(struct pipe *p, struct block *b, const char *data, size_t n)
{
	struct seg *last;

	if (n == 0)
		return 0;
	/* Adjacent bytes of the same block extend the last segment, unless it
	 * is already being written. */
	if (p->count > p->inflight) {
		last = &p->segs[(p->first + p->count - 1) % p->cap];
		if (last->b == b && b->data + last->off + last->len == data) {
			last->len += (uint32_t)n;
			goto pushed;
		}
	}
	if (p->count == p->cap && grow(p) < 0)
		return -ENOMEM;
	last = &p->segs[(p->first + p->count) % p->cap];
	last->b = b;
	last->off = (uint32_t)(data - b->data);
	last->len = (uint32_t)n;
	block_ref(b);
	p->count++;
pushed:
	p->held += n;
	p->bytes_in += n;
	return 0;
}

int
pipe_push_copy(struct pipe *p, const void *data, size_t n)
{
	const char *src = data;
	size_t room;
	char *dst;
	int rc;

	while (n > 0) {
		if (p->cur == NULL || p->cur_used == p->cur->size) {
			if ((rc = next_block(p)) < 0)
				return rc;
		}
		room = p->cur->size - p->cur_used;
		if (room > n)
			room = n;
		dst = p->cur->data + p->cur_used;
		memcpy(dst, src, room);
		p->cur_used += room;
		if ((rc = pipe_push_ref(p, p->cur, dst, room)) < 0)
			return rc;
		src += room;
		n -= room;
	}
	return 0;
}

void
pipe_trim(struct pipe *p)
{
	if (p->count == 0 && p->cur != NULL) {
		block_unref(p->cur);
		p->cur = NULL;
		p->cur_used = 0;
	}
}

size_t
pipe_peek(struct pipe *p, uv_buf_t *bufs, size_t max)
{
	size_t n = 0;

	while (n < max && p->inflight < p->count) {
		const struct seg *s =
		    &p->segs[(p->first + p->inflight) % p->cap];

		bufs[n++] = uv_buf_init(s->b->data + s->off, s->len);
		p->inflight++;
	}
	return n;
}

void
pipe_consume(struct pipe *p, size_t n)
{
	while (n-- > 0 && p->inflight > 0) {
		struct seg *s = &p->segs[p->first];

		p->held -= s->len;
		p->bytes_out += s->len;
		block_unref(s->b);
		p->first = (p->first + 1) % p->cap;
		p->count--;
		p->inflight--;
	}
}

void
pipe_unpeek(struct pipe *p)
{
	p->inflight = 0;
}
