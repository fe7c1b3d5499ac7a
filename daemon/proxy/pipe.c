/*
 * pipe: see pipe.h.
 *
 * Invariants: segs[first .. first+count) in ring order hold `held` bytes;
 * the first `inflight` of them are being written; every segment holds one
 * reference on its block; `cur` (if not NULL) holds one more.  Order of
 * bytes: the memory queue, then spool rd..wr, then the tail.  A push goes
 * to the tail when the tail is not empty, else to the spool when the spool
 * is not empty or memory is at high watermark (and the spool can take it),
 * else to memory; so no byte ever overtakes another.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "base/h1.h"
#include "proxy/pipe.h"

/*
 * Disk is given back behind the reader in steps of 2 MiB, at 2 MiB
 * offsets.  With sendfile (pipe_spool_out) the socket still holds the page
 * cache's pages of bytes it has not delivered yet; a hole punched through
 * part of a page, or of a large folio (at most 2 MiB on x86-64, at an
 * offset its size divides), zeroes that part in place, and the client
 * would get zeros.  Whole folios are only taken out of the file: the
 * socket's references keep their bytes.
 */
#define SPOOL_PUNCH_STEP ((uint64_t)2 * 1024 * 1024)

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
	p->spool.fd = -1;
	p->k.rd = p->k.wr = -1;
	wm_init(&p->wm, high, low);
}

void
pipe_spill_setup(struct pipe *p, const struct spill_cfg *sc, size_t at)
{
	p->spill = sc;
	p->spill_at = at;
}

/* ---- rings of segments ------------------------------------------------ */

static int
ring_push(struct seg **segs, size_t *cap, size_t *first, size_t *count,
    const struct seg *s)
{
	if (*count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct seg *n = malloc(ncap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < *count; i++)
			n[i] = (*segs)[(*first + i) % *cap];
		free(*segs);
		*segs = n;
		*cap = ncap;
		*first = 0;
	}
	(*segs)[(*first + *count) % *cap] = *s;
	(*count)++;
	return 0;
}

static void
ring_release(struct seg *segs, size_t cap, size_t *first, size_t *count)
{
	while (*count > 0) {
		block_unref(segs[*first].b);
		*first = (*first + 1) % cap;
		(*count)--;
	}
}

/* ---- the spool -------------------------------------------------------- */

static void
spool_close(struct pipe *p)
{
	struct spool *sp = &p->spool;

	if (sp->fd >= 0)
		close(sp->fd);
	if (p->spill != NULL)
		*p->spill->total -= sp->wr - sp->rd;
	sp->fd = -1;
	sp->rd = sp->wr = sp->punched = 0;
}

/* Opens an unlinked spool file: nothing stays behind, even on a crash. */
static int
spool_open(struct pipe *p)
{
	char path[4096];
	int fd;

	fd = open(p->spill->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 &&
	    (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		snprintf(path, sizeof(path), "%s/sluice-spool-XXXXXX",
		    p->spill->dir);
		if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -errno;
	p->spool.fd = fd;
	return 0;
}

static void
spool_fail(struct pipe *p, int err, const char *op)
{
	p->spool.failed = 1;
	p->spool.err = err;
	p->spool.op = op;
}

/* Appends n bytes to the spool; 0, or a negative errno (the caller keeps
 * the bytes in memory instead). */
static int
spool_write(struct pipe *p, const char *data, size_t n)
{
	struct spool *sp = &p->spool;
	const char *src = data;
	size_t left = n;
	uint64_t total;
	ssize_t w;
	int rc;

	/* taken before the write, in one step: workers ([proxy] workers)
	 * spooling at once cannot pass spill_total together */
	total = atomic_load(p->spill->total);
	do {
		if (total + n > p->spill->total_limit) {
			spool_fail(p, -ENOSPC, "spill_total");
			return -ENOSPC;
		}
	} while (
	    !atomic_compare_exchange_weak(p->spill->total, &total, total + n));
	if (sp->fd < 0 && (rc = spool_open(p)) < 0) {
		*p->spill->total -= n;
		spool_fail(p, rc, "open");
		return rc;
	}
	if (sp->wr == sp->rd)
		sp->starts++;
	while (left > 0) {
		w = pwrite(sp->fd, src, left, (off_t)(sp->wr + (n - left)));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			*p->spill->total -= n;
			spool_fail(p, rc, "write");
			/* what went in is garbage now: forget it */
			return rc;
		}
		src += w;
		left -= (size_t)w;
	}
	sp->wr += n;
	sp->written += n;
	return 0;
}

/* Gives disk back behind the reader, or all of it once the spool is
 * empty. */
static void
spool_reclaim(struct pipe *p)
{
	struct spool *sp = &p->spool;
	uint64_t upto;

	if (sp->rd == sp->wr) {
		if (ftruncate(sp->fd, 0) == 0)
			sp->rd = sp->wr = sp->punched = 0;
		return;
	}
	upto = sp->rd & ~(SPOOL_PUNCH_STEP - 1);
	if (upto - sp->punched >= SPOOL_PUNCH_STEP) {
		fallocate(sp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		    (off_t)sp->punched, (off_t)(upto - sp->punched));
		sp->punched = upto;
	}
}

/* ---- pushing ----------------------------------------------------------- */

void
pipe_destroy(struct pipe *p)
{
	ring_release(p->segs, p->cap, &p->first, &p->count);
	free(p->segs);
	p->segs = NULL;
	p->cap = p->first = p->inflight = p->held = 0;
	ring_release(p->tail.segs, p->tail.cap, &p->tail.first, &p->tail.count);
	free(p->tail.segs);
	memset(&p->tail, 0, sizeof(p->tail));
	spool_close(p);
	pipe_kernel_close(p);
	if (p->cur != NULL)
		block_unref(p->cur);
	p->cur = NULL;
	p->cur_used = 0;
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
pipe_reserve_takes_block(const struct pipe *p)
{
	return p->cur == NULL || p->cur->size - p->cur_used < p->cur->size / 4;
}

int
pipe_reserve(struct pipe *p, char **base, size_t *len, struct block **blk)
{
	if (pipe_reserve_takes_block(p)) {
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

/* Queues a slice in memory, merging with the last segment when it
 * continues it (and is not being written). */
static int
push_mem(struct pipe *p, struct block *b, const char *data, size_t n)
{
	struct seg s, *last;
	int rc;

	if (p->count > p->inflight) {
		last = &p->segs[(p->first + p->count - 1) % p->cap];
		if (last->b == b && b->data + last->off + last->len == data) {
			last->len += (uint32_t)n;
			p->held += n;
			return 0;
		}
	}
	s.b = b;
	s.off = (uint32_t)(data - b->data);
	s.len = (uint32_t)n;
	if ((rc = ring_push(&p->segs, &p->cap, &p->first, &p->count, &s)) < 0)
		return rc;
	block_ref(b);
	p->held += n;
	return 0;
}

static int
push_tail(struct pipe *p, struct block *b, const char *data, size_t n)
{
	struct seg s = {b, (uint32_t)(data - b->data), (uint32_t)n};
	int rc;

	rc = ring_push(
	    &p->tail.segs, &p->tail.cap, &p->tail.first, &p->tail.count, &s);
	if (rc < 0)
		return rc;
	block_ref(b);
	p->tail.held += n;
	return 0;
}

int
pipe_push_ref(struct pipe *p, struct block *b, const char *data, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if (p->tail.count > 0) {
		rc = push_tail(p, b, data, n);
	} else if (p->spill != NULL &&
	    (pipe_spooled(p) > 0 || p->force_spill ||
	        p->held + p->k.held + n > p->spill_at) &&
	    !p->spool.failed && spool_write(p, data, n) == 0) {
		rc = 0;
	} else if (p->spill != NULL && pipe_spooled(p) > 0) {
		/* Spooling failed (or may not go on): the bytes stay in
		 * memory, behind whatever the spool still holds. */
		rc = push_tail(p, b, data, n);
	} else {
		rc = push_mem(p, b, data, n);
	}
	if (rc == 0)
		p->bytes_in += n; /* counted once queued, not before */
	return rc;
}

int
pipe_push_copy(struct pipe *p, const void *data, size_t n)
{
	char *dst;

	/* what does not fit behind the read it follows goes in a loose
	 * block (framing: a few bytes), not in a fresh pool block that no
	 * memory_limit check asked for */
	if (p->cur == NULL || p->cur->size - p->cur_used < n)
		return pipe_push_head(p, data, n);
	dst = p->cur->data + p->cur_used;
	memcpy(dst, data, n);
	p->cur_used += n;
	return pipe_push_ref(p, p->cur, dst, n);
}

int
pipe_push_head(struct pipe *p, const void *data, size_t n)
{
	struct block *b;
	int rc;

	if (n == 0)
		return 0;
	if ((b = block_loose(data, n)) == NULL)
		return -ENOMEM;
	rc = pipe_push_ref(p, b, b->data, n);
	block_unref(b); /* the pipe holds its own, or the spool a copy */
	return rc;
}

int
pipe_push_body(
    struct pipe *p, struct block *b, int chunked, const char *data, size_t n)
{
	char line[H1_CHUNK_LINE];
	int rc;

	if (chunked &&
	    (rc = pipe_push_copy(p, line, (size_t)h1_chunk_line(line, n))) < 0)
		return rc;
	rc = b != NULL ? pipe_push_ref(p, b, data, n)
	               : pipe_push_copy(p, data, n);
	if (rc < 0 || !chunked)
		return rc;
	return pipe_push_copy(p, "\r\n", 2);
}

/* ---- draining ---------------------------------------------------------- */

/* Moves spooled bytes into memory while memory holds less than two
 * blocks, then the tail once the spool is empty. */
static void
refill(struct pipe *p)
{
	struct spool *sp = &p->spool;
	size_t bs = p->pool->block_size;

	/* sendfile: the spool's bytes go out from the file
	 * (pipe_spool_out), the tail's once it is empty */
	while (!p->sendfile && sp->wr > sp->rd && p->held < 2 * bs) {
		struct block *b = pool_get(p->pool);
		size_t n =
		    sp->wr - sp->rd < bs ? (size_t)(sp->wr - sp->rd) : bs;
		ssize_t r;

		if (b == NULL) {
			p->error = -ENOMEM;
			return;
		}
		r = pread(sp->fd, b->data, n, (off_t)sp->rd);
		if (r <= 0) {
			p->error = r < 0 ? -errno : -EIO;
			block_unref(b);
			return;
		}
		if (push_mem(p, b, b->data, (size_t)r) < 0) {
			/* The bytes stay in the spool, unread: an error
			 * ends the response short, never with a gap. */
			p->error = -ENOMEM;
			block_unref(b);
			return;
		}
		block_unref(b); /* the segment holds it now */
		sp->rd += (uint64_t)r;
		*p->spill->total -= (uint64_t)r;
		spool_reclaim(p);
	}
	if (sp->wr == sp->rd && p->tail.count > 0) {
		while (p->tail.count > 0) {
			struct seg *s = &p->tail.segs[p->tail.first];

			if (ring_push(&p->segs, &p->cap, &p->first, &p->count,
			        s) < 0) {
				p->error = -ENOMEM;
				return;
			}
			p->held += s->len;
			p->tail.held -= s->len;
			p->tail.first = (p->tail.first + 1) % p->tail.cap;
			p->tail.count--;
		}
	}
}

void
pipe_drop_spooled(struct pipe *p)
{
	ring_release(p->tail.segs, p->tail.cap, &p->tail.first, &p->tail.count);
	free(p->tail.segs);
	memset(&p->tail, 0, sizeof(p->tail));
	spool_close(p);
	p->spool.failed = 1;
}

void
pipe_release_cur(struct pipe *p)
{
	if (p->count == 0 && p->cur != NULL) {
		block_unref(p->cur);
		p->cur = NULL;
		p->cur_used = 0;
	}
}

void
pipe_trim(struct pipe *p)
{
	pipe_release_cur(p);
	if (pipe_empty(p) && p->spool.fd >= 0)
		spool_close(p);
}

size_t
pipe_peek(struct pipe *p, uv_buf_t *bufs, size_t max)
{
	size_t n = 0;

	if (p->spill != NULL && p->count - p->inflight < 2)
		refill(p);
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

/* ---- the kernel pipe ------------------------------------------------------
 */

/* /proc/sys/fs/pipe-max-size, read once (1 MiB, the kernel's default, if
 * it cannot be read). */
static size_t
pipe_max_size(void)
{
	static size_t max;
	unsigned long v;
	FILE *f;

	if (max != 0)
		return max;
	max = 1024 * 1024;
	if ((f = fopen("/proc/sys/fs/pipe-max-size", "re")) != NULL) {
		if (fscanf(f, "%lu", &v) == 1 && v >= 4096)
			max = v;
		fclose(f);
	}
	return max;
}

int
pipe_kernel_open(struct pipe *p, size_t size, _Atomic uint64_t *total)
{
	int fds[2], sz;

	if (p->k.rd >= 0)
		return 0;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -errno;
	if (size > pipe_max_size())
		size = pipe_max_size();
	/* Refused past the user's pipe pages (pipe-user-pages-soft): the
	 * pipe keeps the size it has, and holds less. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, (int)size);
	if ((sz = fcntl(fds[1], F_GETPIPE_SZ)) <= 0) {
		close(fds[0]);
		close(fds[1]);
		return -EINVAL;
	}
	p->k.rd = fds[0];
	p->k.wr = fds[1];
	p->k.cap = (size_t)sz;
	p->k.held = 0;
	p->k.total = total;
	return 0;
}

/* Reads the fill level back from the kernel. */
static void
kernel_measure(struct pipe *p)
{
	int n = 0;

	if (ioctl(p->k.rd, FIONREAD, &n) == -1 || n < 0)
		n = 0;
	*p->k.total -= p->k.held;
	p->k.held = (size_t)n;
	*p->k.total += p->k.held;
}

void
pipe_kernel_close(struct pipe *p)
{
	if (p->k.rd < 0)
		return;
	*p->k.total -= p->k.held;
	close(p->k.rd);
	close(p->k.wr);
	p->k.rd = p->k.wr = -1;
	p->k.held = p->k.cap = 0;
}

/* splice(2) of up to max bytes from in to out, without blocking: the
 * bytes moved, or a negative errno (-EAGAIN: none could). */
static ssize_t
splice_nb(int in, int out, size_t max)
{
	ssize_t n;

	do
		n = splice(in, NULL, out, NULL, max,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n == -1 && errno == EINTR);
	return n == -1 ? -errno : n;
}

ssize_t
pipe_splice_in(struct pipe *p, int fd, size_t max)
{
	ssize_t n = splice_nb(fd, p->k.wr, max);

	if (n < 0)
		return n;
	if (n > 0) {
		p->bytes_in += (uint64_t)n;
		kernel_measure(p);
	}
	return n;
}

ssize_t
pipe_splice_out(struct pipe *p, int fd, size_t max)
{
	ssize_t n = splice_nb(p->k.rd, fd, max);

	if (n < 0)
		return n;
	if (n > 0) {
		p->bytes_out += (uint64_t)n;
		p->k.out += (uint64_t)n;
		kernel_measure(p);
	}
	return n;
}

/* ---- the spool of the zero-copy path -------------------------------------
 */

/* Empties the kernel pipe into the tail (a copy: the spool failed, and
 * what comes next follows the spool in memory).  Bytes that no block can
 * take are dropped and p->error set. */
static void
kernel_to_tail(struct pipe *p)
{
	char sink[4096];
	ssize_t r;

	while (p->k.held > 0 && p->error == 0) {
		struct block *b = pool_get(p->pool);

		if (b == NULL) {
			p->error = -ENOMEM;
			break;
		}
		do
			r = read(p->k.rd, b->data, b->size);
		while (r == -1 && errno == EINTR);
		if (r <= 0 || push_tail(p, b, b->data, (size_t)r) < 0) {
			p->error = r < 0 ? -errno : -ENOMEM;
			block_unref(b);
			break;
		}
		block_unref(b); /* the tail's segment holds it */
		kernel_measure(p);
	}
	while (p->k.held > 0) { /* behind a failure: never sent */
		do
			r = read(p->k.rd, sink, sizeof(sink));
		while (r == -1 && errno == EINTR);
		if (r <= 0)
			break;
		kernel_measure(p);
	}
}

int
pipe_kernel_spool(struct pipe *p)
{
	struct spool *sp = &p->spool;
	size_t n = p->k.held, moved = 0;
	uint64_t total;
	loff_t off;
	ssize_t w;
	int rc = 0;

	if (n == 0)
		return 0;
	if (p->spill == NULL || sp->failed) {
		rc = sp->failed ? sp->err : -EINVAL;
		goto failed;
	}
	total = atomic_load(p->spill->total);
	do {
		if (total + n > p->spill->total_limit) {
			spool_fail(p, -ENOSPC, "spill_total");
			rc = -ENOSPC;
			goto failed;
		}
	} while (
	    !atomic_compare_exchange_weak(p->spill->total, &total, total + n));
	if (sp->fd < 0 && (rc = spool_open(p)) < 0) {
		*p->spill->total -= n;
		spool_fail(p, rc, "open");
		goto failed;
	}
	if (sp->wr == sp->rd)
		sp->starts++;
	while (moved < n) {
		off = (loff_t)sp->wr;
		/* a file write may block on the disk, as pwrite does; the
		 * pipe's side never blocks (it holds the n bytes) */
		w = splice(p->k.rd, NULL, sp->fd, &off, n - moved,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		moved += (size_t)w;
		sp->wr += (uint64_t)w;
		sp->written += (uint64_t)w;
	}
	kernel_measure(p);
	if (rc == 0)
		return 0;
	*p->spill->total -= n - moved; /* reserved, never written */
	spool_fail(p, rc, "write");
failed:
	/* what stays in the kernel pipe goes out first: right only when
	 * nothing is ahead of it */
	if (pipe_spooled(p) > 0 || p->count > 0 || p->tail.count > 0)
		kernel_to_tail(p);
	return rc;
}

ssize_t
pipe_spool_out(struct pipe *p, int fd, size_t max)
{
	struct spool *sp = &p->spool;
	off_t off = (off_t)sp->rd;
	ssize_t n;

	if (max > sp->wr - sp->rd)
		max = (size_t)(sp->wr - sp->rd);
	if (max == 0)
		return 0;
	do
		n = sendfile(fd, sp->fd, &off, max);
	while (n == -1 && errno == EINTR);
	if (n == 0 ||
	    (n < 0 &&
	        (errno == EIO || errno == EINVAL || errno == EOVERFLOW ||
	            errno == ENOMEM))) {
		/* the file is shorter than its offsets, or cannot be read:
		 * nothing behind the failure can go out */
		p->error = n == 0 ? -EIO : -errno;
		return -EIO;
	}
	if (n < 0)
		return -errno; /* the socket's: EAGAIN, EPIPE, ... */
	sp->rd += (uint64_t)n;
	*p->spill->total -= (uint64_t)n;
	p->bytes_out += (uint64_t)n;
	spool_reclaim(p);
	return n;
}
