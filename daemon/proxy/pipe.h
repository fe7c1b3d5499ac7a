/*
 * pipe: the bytes one direction of one download holds inside the proxy, and
 * the watermark state machine that decides when its source is read.
 *
 * Storage is an ordered queue of segments, each a (block, offset, length)
 * slice of a pooled block (pool.h).  Reads land in the pipe's current block
 * (pipe_reserve); the parser then pushes the body bytes it finds there as
 * segments pointing at those same bytes (pipe_push_ref), so a relayed byte
 * is written exactly once, by the kernel's read, and sent from where it
 * landed.  Bytes the proxy makes itself (a rewritten head, chunk framing)
 * are copied in with pipe_push_copy.  The writer takes segments from the
 * front (pipe_peek), and releases them when its write completes
 * (pipe_consume).  Order is the order of pushes, always.
 *
 * `held` counts the bytes in segments, including those being written; the
 * watermark compares it with high/low.
 *
 * The second storage, for bodies that need no inspection ([buffer] splice):
 * a kernel pipe (struct kpipe) that pipe_splice_in fills from the upstream
 * socket and pipe_splice_out empties into the client socket, the bytes
 * never entering user space.  Its fill level is read from the kernel
 * (FIONREAD) after every splice, never guessed, and counts in pipe_load and
 * pipe_empty like memory and spool.  Order: bytes enter the kernel pipe
 * only while the memory queue is empty (the owner's rule), so what it
 * holds always goes out before anything memory holds.
 *
 * Policy spill on the zero-copy path (`sendfile` set): the spool is
 * written from the kernel pipe (pipe_kernel_spool: splice(2) to the file
 * at its offset) and read back with sendfile(2) (pipe_spool_out), so its
 * bytes never enter user space either; the kernel pipe is then the
 * spool's way in, holding the newest bytes only for the moment between
 * the two splices.  The order of bytes is kernel pipe, memory queue,
 * spool, tail, always.
 */
#ifndef SLUICE_PIPE_H
#define SLUICE_PIPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "proxy/pool.h"

/* The watermark state machine, alone so it can be tested alone. */
enum wm_event {
	WM_NONE = 0,
	WM_PAUSE,  /* held reached high: stop reading the source */
	WM_RESUME, /* held drained to low: read the source again */
};

struct watermark {
	size_t high, low;
	int paused;
	uint64_t npauses; /* how often the source was stopped */
};

void wm_init(struct watermark *wm, size_t high, size_t low);
/* Feeds the current fill level; returns the transition it causes. */
enum wm_event wm_check(struct watermark *wm, size_t held);

struct seg {
	struct block *b;
	uint32_t off, len;
};

/*
 * The spool of policy spill: an unlinked file in spill_dir holding the
 * bytes between the memory queue and the tail, in order.  Offsets rd..wr
 * hold what the client has not had yet; what it had is punched out of the
 * file (fallocate PUNCH_HOLE), so disk use follows the bytes held, not the
 * bytes ever spooled.
 */
struct spool {
	int fd;           /* -1: not open */
	uint64_t rd, wr;  /* logical offsets */
	uint64_t punched; /* bytes before this are given back */
	int failed;       /* no more spooling for this pipe */
	int err;          /* what failed it (negative errno), for logs */
	const char *op;   /* and where: "open", "write", "spill_total" */
	uint64_t written; /* bytes ever written, for the access log */
	unsigned starts;  /* times spooling began */
};

/* What a pipe may spool, set by its owner (pipe_spill_setup). */
struct spill_cfg {
	const char *dir;
	_Atomic uint64_t *total; /* bytes spooled by the process now (all
	                          * workers) */
	uint64_t total_limit;    /* spill_total */
};

/* The kernel pipe of the zero-copy path ([buffer] splice). */
struct kpipe {
	int rd, wr;  /* -1: not open */
	size_t cap;  /* its size (F_GETPIPE_SZ) */
	size_t held; /* bytes in it (FIONREAD after the last splice) */
	_Atomic uint64_t *total; /* the process's bytes in kernel pipes (all
	                          * workers) */
	uint64_t out;            /* bytes ever spliced out of it */
};

struct pipe {
	struct pool *pool;
	struct seg *segs; /* ring */
	size_t cap, first, count;
	size_t inflight;   /* segments at the front handed to pipe_peek */
	size_t held;       /* bytes in all segments */
	struct block *cur; /* block that reads and copies append to */
	size_t cur_used;
	struct watermark wm;
	uint64_t bytes_in, bytes_out; /* pushed / consumed, for logs */

	/* Policy spill: memory queue (above), then the spool, then a tail
	 * in memory that takes the bytes when the spool cannot (ENOSPC,
	 * spill_total), all in push order. */
	const struct spill_cfg *spill; /* NULL: never spool */
	size_t spill_at;               /* memory held past which to spool */
	int force_spill;               /* memory_limit reached: spool now */
	struct spool spool;
	struct {
		struct seg *segs;
		size_t cap, first, count;
		size_t held;
	} tail;
	int error; /* a spool read failed: negative errno */
	struct kpipe k;
	int sendfile; /* the spool is read back by pipe_spool_out, never
	               * into memory (the owner's zero-copy path) */
};

void pipe_init(struct pipe *p, struct pool *pool, size_t high, size_t low);
/* Drops every segment and the current block. */
void pipe_destroy(struct pipe *p);

/*
 * Space for the next read: base and len describe the current block past
 * what is used (a fresh block when less than a quarter is left); blk
 * receives that block with a reference taken for the caller, who drops it
 * with block_unref() after parsing the read.  Returns 0 or -ENOMEM.
 */
int pipe_reserve(struct pipe *p, char **base, size_t *len, struct block **blk);
/* Would the next pipe_reserve() take a fresh block from the pool? */
int pipe_reserve_takes_block(const struct pipe *p);
/* Marks n bytes of the reserved space as filled. */
void pipe_commit(struct pipe *p, size_t n);
/* Queues n bytes at data, which lies inside block b.  0 or -ENOMEM. */
int pipe_push_ref(struct pipe *p, struct block *b, const char *data, size_t n);
/* Queues a copy of n bytes (chunk framing) behind the last read in the
 * current block, or in a loose block when it does not fit there (never a
 * fresh pool block).  0 or -ENOMEM. */
int pipe_push_copy(struct pipe *p, const void *data, size_t n);
/* Queues a copy of a head (or a whole small answer) in a loose block of
 * its exact size (pool.h), not in a pool block.  0 or -ENOMEM. */
int pipe_push_head(struct pipe *p, const void *data, size_t n);

/* Queues a body slice that lies in block b (or, b NULL, anywhere: copied),
 * inside chunk framing when chunked.  The slice itself goes in whole or
 * not at all, so a Content-Length body that failed here can be resumed at
 * its first byte; a chunked one may keep its size line (it is never
 * resumed, and ends short without its last chunk: visibly cut). */
int pipe_push_body(
    struct pipe *p, struct block *b, int chunked, const char *data, size_t n);

/* Gives the current block back when the pipe is empty, so an idle
 * connection holds no block (and closes an empty spool). */
void pipe_trim(struct pipe *p);
/* Gives the current block back when memory holds no segment of it: a
 * download whose bytes are all written (or spooled) holds no block while it
 * waits, whatever the spool holds. */
void pipe_release_cur(struct pipe *p);
/* Lets the pipe spool the bytes that would take its memory past `at`
 * (policy spill: high_watermark). */
void pipe_spill_setup(struct pipe *p, const struct spill_cfg *sc, size_t at);

/* After a spool read failed (p->error): drops the spool and the tail,
 * keeping the memory queue ahead of them, the bytes still in order. */
void pipe_drop_spooled(struct pipe *p);
/* Fills up to max buffers from the front segments not yet in flight and
 * marks them in flight.  Returns how many.  First moves spooled bytes
 * (then the tail) into memory when memory runs low; a spool read error
 * sets p->error. */
size_t pipe_peek(struct pipe *p, uv_buf_t *bufs, size_t max);
/*
 * The kernel pipe.  pipe_kernel_open makes one of about `size` bytes
 * (capped by /proc/sys/fs/pipe-max-size; a pipe the kernel will not grow
 * keeps its size) whose bytes are counted in *total; 0 or a negative
 * errno.  pipe_kernel_close gives it back (pipe_destroy does too).
 * pipe_splice_in moves at most max bytes from socket fd into it,
 * pipe_splice_out at most max bytes from it to socket fd, neither
 * blocking: each returns the bytes moved, 0 at the socket's end (in), or a
 * negative errno (-EAGAIN: nothing to move now).  Bytes spliced in count
 * in bytes_in, out in bytes_out.
 */
int pipe_kernel_open(struct pipe *p, size_t size, _Atomic uint64_t *total);
void pipe_kernel_close(struct pipe *p);
ssize_t pipe_splice_in(struct pipe *p, int fd, size_t max);
ssize_t pipe_splice_out(struct pipe *p, int fd, size_t max);
/*
 * Moves everything the kernel pipe holds to the spool's end (splice(2)
 * into the file at its offset; spill_total reserved first, as
 * spool_write).  The caller's rule: the kernel pipe's bytes are the
 * newest, or memory holds nothing (they then follow whatever memory held
 * before).  Returns 0, or a negative errno with the spool failed
 * (spool.failed): the bytes that did not move stay in order, in the
 * kernel pipe when nothing went ahead of them (spool and memory empty),
 * else in the tail; when even the tail cannot take them, p->error is set
 * and they are dropped (the response ends short where the spool fails).
 */
int pipe_kernel_spool(struct pipe *p);
/*
 * Sends up to max spooled bytes to socket fd with sendfile(2), without
 * blocking (the owner sends memory's bytes first).  Returns the bytes
 * sent, -EAGAIN when the socket takes none now, a negative errno of the
 * socket, or -EIO with p->error set when the spool cannot be read.
 */
ssize_t pipe_spool_out(struct pipe *p, int fd, size_t max);

/* Releases the first n in-flight segments (their write completed). */
void pipe_consume(struct pipe *p, size_t n);
/* Forgets that segments are in flight (their write was cancelled). */
void pipe_unpeek(struct pipe *p);

static inline size_t
pipe_held(const struct pipe *p)
{
	return p->held;
}

/*
 * What the watermarks compare: the bytes held plus PIPE_SEG_COST for each
 * segment, so that a peer sending a body as millions of 1-byte chunks (three
 * segments each) is bounded by high_watermark like one sending large reads:
 * segment bookkeeping is memory too.  For ordinary reads (one segment per
 * read of up to a block) the difference is under 0.1 %.
 */
#define PIPE_SEG_COST 32

static inline size_t
pipe_load(const struct pipe *p)
{
	return p->held + p->tail.held + p->k.held +
	    (p->count + p->tail.count) * PIPE_SEG_COST;
}

/* Bytes held in the kernel pipe. */
static inline size_t
pipe_kernel(const struct pipe *p)
{
	return p->k.held;
}

static inline int
pipe_has_kernel(const struct pipe *p)
{
	return p->k.rd >= 0;
}

/* Bytes held in memory (queue and tail). */
static inline size_t
pipe_memory(const struct pipe *p)
{
	return p->held + p->tail.held;
}

/* Bytes held in the spool file. */
static inline uint64_t
pipe_spooled(const struct pipe *p)
{
	return p->spool.wr - p->spool.rd;
}

/* Can the spool take more bytes? */
static inline int
pipe_can_spool(const struct pipe *p)
{
	return p->spill != NULL && !p->spool.failed && p->tail.count == 0;
}

/* Do the next bytes to go out leave through the kernel: what the kernel
 * pipe holds, or (sendfile) the spool's when memory's queue is empty? */
static inline int
pipe_kernel_next(const struct pipe *p)
{
	return p->k.held > 0 ||
	    (p->sendfile && p->count == 0 && p->spool.wr > p->spool.rd);
}

static inline int
pipe_empty(const struct pipe *p)
{
	return p->count == 0 && p->tail.count == 0 && pipe_spooled(p) == 0 &&
	    p->k.held == 0;
}

#endif
