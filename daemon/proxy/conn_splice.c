/*
 * conn_splice: the zero-copy path of a response body ([buffer] splice = auto;
 * see conn.c for the other files of a connection).  The body's payload moves
 * upstream socket -> kernel pipe -> client socket with splice(2), never
 * entering user space, as HAProxy's splice-response does.  The response
 * head, what the read that brought it held of the body, and every byte of
 * framing still go through memory and uv_write.  Which bodies:
 *
 *   Content-Length, or close-delimited to an HTTP/1.0 client: the bytes the
 *   client gets are the bytes the upstream sent.
 *   Chunked upstream: llhttp still reads all the framing (chunk sizes,
 *   extensions, trailers), and only a chunk's data is spliced, never past
 *   its end: on_chunk_header gives its size, llhttp's content_length is then
 *   what is left of it, and a splice of n bytes takes n from it as llhttp's
 *   own consuming of chunk data would (it never looks at those bytes); the
 *   next read, parsed, then starts at the chunk's CRLF.  Between two spliced
 *   chunks the framing is read in small reads (splice_read_max), so little
 *   of the next chunk's data comes with it.  Chunks under a quarter block
 *   go through memory (their framing and data come in one read).  To an
 *   HTTP/1.1 client each upstream chunk goes out as one chunk of its own
 *   size (conn_http.c: its size line at its header, its CRLF at its end),
 *   to an HTTP/1.0 one as bare data.
 *   Close-delimited to an HTTP/1.1 client: in runs (start_run): a run is what
 *   the upstream socket holds when it begins (FIONREAD), at most what one
 *   splice may take; its size line goes into memory first, its bytes are
 *   spliced, its CRLF goes before whatever follows; the upstream's end, seen
 *   by a peek that reads 0 before a run, brings the last chunk.
 *
 * A download whose upstream fails mid-body never gets a clean end: a chunk
 * whose size line went out and whose data stops short, or no last chunk,
 * as on the memory path.
 *
 * The kernel pipe is `down`'s second storage (pipe.h): its fill level,
 * read from the kernel, counts in the bytes the download holds, so the
 * watermarks, memory_limit, pace and /connections see it as they see
 * memory.  Order (the invariant): the pipe is filled only while memory
 * holds nothing of `down`, and flush_client empties the pipe before
 * memory; so a byte put in memory (a head, framing, a read's bytes) goes
 * out after every byte spliced before it, and before every byte spliced
 * after it.  Hence the modes (splice_mode): memory holds bytes with the pipe
 * empty: WAIT (they are being written: a moment, or as long as a stalled
 * client stalls); memory holds framing behind the pipe's bytes: HOLD (the
 * upstream waits for the client to take the pipe's bytes, then the
 * framing).  Both are counted as pauses of the upstream, so a chunked
 * body is at most one chunk ahead in the kernel pipe, below the watermarks.
 * A kernel pipe that took no more (kfull) hands the reads to memory, as
 * without splice, until memory is empty again: the watermarks stop and
 * start the upstream where they do without splice; a resumed response's
 * first bytes also land in memory behind the pipe's.
 *
 * libuv allows one handle per descriptor: the sockets are polled through
 * duplicates (F_DUPFD_CLOEXEC), upoll (readable: splice in) while the
 * upstream is read, cpoll (writable: splice out) while the kernel pipe
 * holds bytes the client socket would not take; cw_busy stands for the
 * latter, so the client's zero-window and idle rules watch it like a
 * write.  Each duplicate is closed with its poll: upoll with the upstream
 * socket (close_upstream), cpoll and the kernel pipe at the next request
 * or the connection's close (splice_end).
 *
 * Policy spill (spool_in): a body the proxy does not frame (Content-Length,
 * or close-delimited to an HTTP/1.0 client) spools without entering user
 * space: once the kernel pipe is full (high_watermark, or the pipe's
 * size) or memory_limit is reached, what the pipe holds moves to the end
 * of the spool file (splice to the file at its offset), and from then on
 * each read goes upstream socket -> kernel pipe -> spool file, the pipe
 * holding it only between the two splices; the client gets the spool's
 * bytes with sendfile(2) from the file once memory's are out (the order
 * is kernel pipe, memory, spool, tail).  When the spool is empty again the
 * pipe takes the reads as before.  A spool that fails (ENOSPC,
 * spill_total) leaves the bytes it did not take in order (pipe.h's
 * pipe_kernel_spool), and the download goes on under pause's rules, as
 * on the memory path.  Chunked bodies under policy spill, and a chunked
 * answer to a close-delimited body, take the memory path: the framing the
 * proxy writes would have to be spooled between spliced bytes.
 *
 * Not on this path: request bodies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/config.h"
#include "proxy/conn_int.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

/* a read of the framing between two spliced chunks (splice_read_max) */
#define SPLICE_FRAME_READ 256
/* the most one sendfile of the spool offers the client socket (it takes
 * what its buffer has room for) */
#define SPOOL_SEND_MAX ((size_t)4 * 1024 * 1024)

/* ---- the polls --------------------------------------------------------- */

/* A poll on a duplicate of the handle's descriptor; 0 or a negative errno. */
static int
poll_open(struct conn *c, uv_handle_t *of, uv_poll_t *p, int *pfd)
{
	uv_os_fd_t fd;
	int dup, rc;

	if (*pfd >= 0)
		return 0;
	if ((rc = uv_fileno(of, &fd)) < 0)
		return rc;
	if ((dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	if ((rc = uv_poll_init(c->px->loop, p, dup)) < 0) {
		close(dup);
		return rc;
	}
	p->data = c;
	*pfd = dup;
	c->nhandles++;
	return 0;
}

/* Closes the poll and its descriptor (uv_close stops the poll, and takes
 * the descriptor out of epoll, before it returns). */
static void
poll_close(uv_poll_t *p, int *pfd)
{
	if (*pfd < 0)
		return;
	uv_close((uv_handle_t *)p, conn_on_handle_close);
	close(*pfd);
	*pfd = -1;
}

/* ---- the start and the end --------------------------------------------- */

/*
 * At the response head (resp_on_headers_complete): does its body take the
 * kernel pipe?  Any body, under pause or pace, once the request is all
 * written (the upstream socket is then only read); a chunked one, or one
 * chunked for the client, with splice's framing (d.up_chunked,
 * d.own_chunks) from here to its end.
 */
void
splice_begin(struct conn *c, const llhttp_t *p, int no_body)
{
	const struct config *cfg = c->cfg;
	int rc;

	c->d.splice = 0;
	c->down.sendfile = 0;
	if (!cfg->buffer.splice || no_body || c->d.resp_frame == FRAME_NONE ||
	    !c->d.req_done || !pipe_empty(&c->up) || c->uw_busy)
		return;
	if (cfg->buffer.policy == POLICY_SPILL &&
	    ((p->flags & F_CHUNKED) != 0 || c->d.resp_frame == FRAME_CHUNKED))
		return; /* framing between spooled bytes: the memory path */
	/* Four descriptors more than the memory path: max_connections'
	 * default budgets them for a quarter of the connections (max_pipes,
	 * every worker's); past it, or when descriptors run short anyway,
	 * this download goes through memory. */
	if (atomic_fetch_add(&c->px->sh->npipes, 1) >= c->px->max_pipes) {
		atomic_fetch_sub(&c->px->sh->npipes, 1);
		c->px->stats.splice_no_pipe++;
		return;
	}
	rc = pipe_kernel_open(&c->down, (size_t)cfg->buffer.high_watermark,
	    &c->px->sh->pipe_bytes);
	if (rc < 0) /* the slot goes with the pipe (splice_end), or here */
		atomic_fetch_sub(&c->px->sh->npipes, 1);
	if (rc == 0)
		rc = poll_open(
		    c, (uv_handle_t *)&c->client, &c->cpoll, &c->cpoll_fd);
	if (rc == 0)
		rc = poll_open(
		    c, (uv_handle_t *)&c->upstream, &c->upoll, &c->upoll_fd);
	if (rc < 0) {
		log_ratelimited(&c->px->log_spill, LOG_LVL_WARN,
		    "conn %llu %s: splice: %s; the body goes through memory",
		    (unsigned long long)c->id, c->peer, uv_strerror(rc));
		splice_end(c);
		return;
	}
	c->d.splice = 1;
	c->down.sendfile = cfg->buffer.policy == POLICY_SPILL;
	c->d.up_chunked = (p->flags & F_CHUNKED) != 0;
	c->d.own_chunks = c->d.resp_frame == FRAME_CHUNKED;
}

/* Is the upstream chunk the parser is in worth splicing, and is some of
 * its data still to come?  A chunk smaller than a quarter block is not: its
 * data comes with its framing in one read, and splicing it would cost
 * more syscalls and a wait for memory to drain than the copy saves. */
static int
chunk_spliceable(const struct conn *c)
{
	return c->d.in_chunk && c->resp.content_length > 0 &&
	    c->d.chunk_size >= c->gen->pool.block_size / 4;
}

/*
 * The most the next read into memory may take (conn_on_upstream_alloc).
 * A chunked body between two spliced chunks: what lies between them is
 * framing (the CRLF, the next size line), read in small reads, so that few
 * of the next chunk's data bytes come with it into memory, and the rest
 * of the chunk is spliced.
 */
size_t
splice_read_max(const struct conn *c)
{
	if (!c->d.splice || !c->d.up_chunked || c->state != DL_RELAYING ||
	    c->d.chunk_size < c->gen->pool.block_size / 4 ||
	    (c->d.in_chunk && c->resp.content_length > 0))
		return SIZE_MAX;
	return SPLICE_FRAME_READ;
}

/*
 * How the upstream's body is read now.  Into the kernel pipe while memory
 * holds nothing of `down` (the pipe's bytes go out first: order), and, of a
 * chunked body, while the parser is inside a large chunk's data.  Memory
 * holding bytes with the pipe empty (the head, framing, the body bytes a
 * read brought, being written now): not yet, until they are out (WAIT).
 * Memory holding framing behind the pipe's bytes: not before both are out
 * (HOLD).  Into blocks, as without splice, once the pipe was full (a pipe
 * smaller than high_watermark: memory takes the bytes past it, so the
 * watermarks stop and start the upstream where they do without splice), or
 * behind the pipe's bytes (a resumed response's first ones), until memory
 * is empty again; and a chunked body's framing and small chunks.
 */
enum splice_mode
splice_mode(struct conn *c)
{
	const struct pipe *d = &c->down;

	if (!c->d.splice || c->state != DL_RELAYING)
		return SPLICE_NONE;
	if (pipe_spooled(d) > 0 || d->tail.count > 0) {
		/* policy spill, spooling: the reads go through the kernel
		 * pipe into the spool, behind memory's bytes, while it is
		 * empty; else (a resumed response's first bytes in memory
		 * behind the pipe's, a spool that failed) into memory, where
		 * pipe_push_ref sends them on to the spool or the tail */
		return pipe_can_spool(d) && pipe_kernel(d) == 0 ? SPLICE_SPOOL
		                                                : SPLICE_NONE;
	}
	if (c->kfull && pipe_memory(d) == 0 && d->k.out != c->kfull_out)
		c->kfull = 0; /* memory is out, and the pipe took bytes */
	if (c->kfull)
		return SPLICE_NONE;
	if (c->d.up_chunked && !chunk_spliceable(c))
		return SPLICE_NONE; /* framing, or a small chunk: the parser */
	if (pipe_memory(d) == 0)
		return SPLICE_IN;
	if (pipe_kernel(d) == 0)
		return SPLICE_WAIT;
	/* memory holds framing behind the kernel pipe's bytes: the pipe
	 * takes no more before both are out (a Content-Length body's memory
	 * here is a resumed response's first bytes: read on into memory) */
	return c->d.up_chunked || c->d.own_chunks ? SPLICE_HOLD : SPLICE_NONE;
}

/* The kernel pipe took no more: memory takes what follows. */
static void
pipe_full(struct conn *c)
{
	c->kfull = 1;
	c->kfull_out = c->down.k.out;
}

void
splice_close_upstream(struct conn *c)
{
	poll_close(&c->upoll, &c->upoll_fd);
	c->usplice = 0;
}

/* The download is over (the next request begins) or the connection
 * closes: every poll and the kernel pipe go. */
void
splice_end(struct conn *c)
{
	size_t held;

	splice_close_upstream(c);
	poll_close(&c->cpoll, &c->cpoll_fd);
	if (c->cw_splice)
		c->cw_busy = 0;
	c->cw_splice = 0;
	c->kfull = 0;
	c->down.sendfile = 0; /* what the spool still holds: read back */
	held = pipe_kernel(&c->down);
	if (pipe_has_kernel(&c->down))
		atomic_fetch_sub(&c->px->sh->npipes, 1);
	pipe_kernel_close(&c->down);
	/* bytes that left memory_limit's count without going out: what waits
	 * for memory (or a limit reached) must hear of it, as of a block going
	 * back to its pool */
	if (held > 0)
		proxy_memory_released(c->px);
}

/* ---- upstream -> kernel pipe ------------------------------------------- */

/* The whole body is in: as resp_on_message_complete and upstream_done. */
static void
body_complete(struct conn *c)
{
	if (push_body_end(c) < 0) {
		conn_close(c, 0, "the last chunk", UV_ENOMEM);
		return;
	}
	/* a Content-Length body was spliced to its last byte, no further */
	c->d.resp_clean = !c->d.resp_by_close;
	set_state(c, DL_FLUSHING);
	upstream_done(c);
}

/* A close-delimited body, chunked to the client: it goes in runs. */
static int
in_runs(const struct conn *c)
{
	return c->d.own_chunks && !c->d.up_chunked;
}

/* Does the parser count the spliced bytes (resp.content_length: what is
 * left of a Content-Length body, or of the current upstream chunk)?  Not
 * those of a close-delimited body (to HTTP/1.0 clients resp_by_close,
 * to HTTP/1.1 ones in runs). */
static int
counted_by_parser(const struct conn *c)
{
	return c->d.up_chunked || (!c->d.resp_by_close && !in_runs(c));
}

/* The bytes the next splice in may take: the pipe's room, the rest of a
 * Content-Length body, of the upstream's chunk or of the proxy's run,
 * pace's tokens, memory_limit's room. */
static size_t
read_max(const struct conn *c)
{
	const struct pipe *d = &c->down;
	size_t max = d->k.cap > d->k.held ? d->k.cap - d->k.held : 0, room;

	if (counted_by_parser(c) && max > c->resp.content_length)
		max = (size_t)c->resp.content_length;
	if (in_runs(c) && c->d.run_left > 0 && max > c->d.run_left)
		max = (size_t)c->d.run_left;
	if (c->cfg->buffer.policy == POLICY_PACE) {
		room =
		    c->d.pace_tokens > 4096 ? (size_t)c->d.pace_tokens : 4096;
		if (max > room)
			max = room;
	}
	room = memory_room(c);
	return max < room ? max : room;
}

/* n body bytes went into the kernel pipe: counted as received (a resume
 * asks for what follows them), like resp_on_body. */
static void
body_in(struct conn *c, size_t n)
{
	c->d.resp_body_in += n;
	c->px->stats.bytes_in += n;
	if (counted_by_parser(c))
		c->resp.content_length -= n;
	if (in_runs(c))
		c->d.run_left -= n;
	if (c->cfg->buffer.policy == POLICY_PACE) {
		c->d.pace_tokens -= (double)n;
		if (c->d.pace_tokens < -(double)c->gen->pool.block_size)
			c->d.pace_tokens = -(double)c->gen->pool.block_size;
	}
	memory_grant_end(c); /* the grant (or turn) was this read */
}

/*
 * A close-delimited body to an HTTP/1.1 client: the proxy's next chunk is
 * what the upstream socket holds now (FIONREAD), at most max bytes (what
 * one splice may take).  Its size line goes into memory, and the pipe is
 * filled once memory is out (splice_mode): the bytes keep their order.
 * Nothing held: the upstream's end (a peek reads 0) ends the body; a
 * readable event that was stale waits for the next.
 */
static void
start_run(struct conn *c, size_t max)
{
	int avail = 0;
	ssize_t r;
	char b;

	if (ioctl(c->upoll_fd, FIONREAD, &avail) == -1 || avail < 0)
		avail = 0;
	if (avail == 0) {
		do
			r = recv(c->upoll_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		while (r == -1 && errno == EINTR);
		if (r == 0) {
			body_complete(c);
			return;
		}
		if (r == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
			upstream_broken(
			    c, "read", -errno, OUTCOME_UPSTREAM_RESET);
			return;
		}
		if (r == -1) {
			update_upstream_reading(c); /* the poll goes on */
			return;
		}
		avail = 1; /* came since FIONREAD */
	}
	if (push_run_line(c, (uint64_t)avail < max ? (uint64_t)avail : max) <
	    0) {
		conn_close(c, 0, "chunk framing", UV_ENOMEM);
		return;
	}
	memory_note(c);
	check_down(c); /* the pipe waits for the line: SPLICE_WAIT or HOLD */
	flush_client(c);
}

/* A splice in that moved nothing (n <= 0): readable yet nothing moved
 * (the kernel pipe out of slots, or a stale event: the poll goes on, or
 * again), the end of a body the parser does not count, or the upstream's
 * failure. */
static void
splice_in_none(struct conn *c, ssize_t n)
{
	if (n == -EAGAIN) {
		if (pipe_kernel(&c->down) > 0)
			pipe_full(c);
		update_upstream_reading(c);
	} else if (n == 0 && !counted_by_parser(c) && c->d.run_left == 0) {
		body_complete(c);
	} else {
		upstream_broken(c, n == 0 ? "closed mid-body" : "read", (int)n,
		    OUTCOME_UPSTREAM_RESET);
	}
}

/* What the spool may take before spill_limit (check_down's high
 * watermark while spooling). */
static size_t
spool_room(const struct conn *c)
{
	uint64_t limit = c->cfg->buffer.spill_limit,
	         in = pipe_spooled(&c->down);

	return in < limit ? (size_t)(limit - in) : 0;
}

/*
 * Policy spill on this path: what the kernel pipe holds, then what the
 * upstream socket holds, go to the spool file (splice in, splice to the
 * file).  memory_limit does not hold these reads back, the spool takes
 * them (as pipe_push_ref's force_spill on the memory path); reached, the
 * pipe holds at most a block between the two splices.
 */
static void
spool_in(struct conn *c)
{
	struct pipe *d = &c->down;
	size_t max = d->k.cap, held = pipe_kernel(d);
	ssize_t n;
	int rc;

	rc = pipe_kernel_spool(d);
	if (pipe_kernel(d) < held)
		proxy_memory_released(c->px); /* the pipe's bytes left it */
	if (rc < 0) {
		/* the spool failed: pause's rules from here (check_down) */
		check_down(c);
		flush_client(c);
		return;
	}
	if (counted_by_parser(c) && max > c->resp.content_length)
		max = (size_t)c->resp.content_length;
	if (d->force_spill && max > c->gen->pool.block_size)
		max = c->gen->pool.block_size;
	if (max > spool_room(c))
		max = spool_room(c); /* the watermark stops at spill_limit */
	if (max == 0) {
		check_down(c);
		return;
	}
	n = pipe_splice_in(d, c->upoll_fd, max);
	if (n <= 0) {
		splice_in_none(c, n);
		return;
	}
	body_in(c, (size_t)n);
	kick_upstream_timer(c);
	/* a failure leaves the bytes in order (in the tail) and the spool
	 * failed: check_down tells it and applies pause's marks */
	(void)pipe_kernel_spool(d);
	proxy_memory_released(c->px); /* what waits for memory may go */
	if (counted_by_parser(c) && c->resp.content_length == 0) {
		body_complete(c);
		return;
	}
	memory_note(c);
	check_down(c);
	flush_client(c);
}

/* Policy spill: does the spool take this read?  While it holds bytes
 * (SPLICE_SPOOL), and once the kernel pipe takes no more (full, or
 * memory_limit's room gone) or memory_limit was reached, if all the pipe
 * holds fits below spill_limit (else the bytes past the pipe go through
 * memory, whose pushes spool up to spill_limit, as without splice). */
static int
spool_takes(struct conn *c, enum splice_mode mode)
{
	if (mode == SPLICE_SPOOL)
		return 1;
	return c->down.sendfile && pipe_can_spool(&c->down) &&
	    (c->down.force_spill || read_max(c) == 0) &&
	    pipe_kernel(&c->down) < spool_room(c);
}

static void
splice_on_upstream(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	enum splice_mode mode = splice_mode(c);
	size_t max;
	ssize_t n;

	(void)events;
	if ((mode != SPLICE_IN && mode != SPLICE_SPOOL) || !c->usplice)
		return;
	if (status < 0) /* libuv stopped the poll (POLLERR): the splice
	                 * below tells the socket's error, else read on */
		c->ureading = c->usplice = 0;
	if (spool_takes(c, mode)) {
		spool_in(c);
		return;
	}
	if ((max = read_max(c)) == 0) {
		/* pipe full, or memory_limit: wait in the queue */
		if (c->down.k.held >= c->down.k.cap)
			pipe_full(c);
		update_upstream_reading(c);
		return;
	}
	if (in_runs(c) && c->d.run_left == 0) {
		start_run(c, max);
		return;
	}
	n = pipe_splice_in(&c->down, c->upoll_fd, max);
	if (n <= 0) {
		splice_in_none(c, n);
		return;
	}
	body_in(c, (size_t)n);
	kick_upstream_timer(c);
	if (counted_by_parser(c) && !c->d.up_chunked &&
	    c->resp.content_length == 0) {
		body_complete(c);
		return;
	}
	/* a chunk spliced to its end: what follows is framing, the parser's
	 * (update_upstream_reading, through check_down, reads it) */
	memory_note(c);
	check_down(c);
	flush_client(c);
}

int
splice_read_start(struct conn *c)
{
	int rc;

	rc = poll_open(c, (uv_handle_t *)&c->upstream, &c->upoll, &c->upoll_fd);
	if (rc < 0)
		return rc;
	return uv_poll_start(&c->upoll, UV_READABLE, splice_on_upstream);
}

void
splice_read_stop(struct conn *c)
{
	if (c->upoll_fd >= 0)
		uv_poll_stop(&c->upoll);
}

/* ---- kernel pipe -> client ---------------------------------------------- */

static void
splice_on_client(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;

	(void)events;
	if (c->state >= DL_LINGERING || !c->cw_splice)
		return;
	if (status < 0) /* stopped (POLLERR): the splice tells the error */
		c->cw_busy = c->cw_splice = 0;
	if (fault_holds_client(c)) {
		/* a stall, latency or throttle ([admin] faults): its timer
		 * calls flush_client again */
		uv_poll_stop(&c->cpoll);
		c->cw_busy = c->cw_splice = 0;
		return;
	}
	splice_flush(c);
}

/* Waits for the client socket to be writable while the pipe holds bytes;
 * 0 or a negative errno. */
static int
wait_writable(struct conn *c)
{
	int rc;

	if (pipe_kernel_next(&c->down) && !c->cw_splice) {
		rc = poll_open(
		    c, (uv_handle_t *)&c->client, &c->cpoll, &c->cpoll_fd);
		if (rc < 0 ||
		    (rc = uv_poll_start(
		         &c->cpoll, UV_WRITABLE, splice_on_client)) < 0)
			return rc;
		c->cw_busy = c->cw_splice = 1;
		kick_client_timer(c);
	} else if (!pipe_kernel_next(&c->down) && c->cw_splice) {
		uv_poll_stop(&c->cpoll);
		c->cw_busy = c->cw_splice = 0;
		kick_client_timer(c);
	}
	return 0;
}

/*
 * Sends what the kernel pipe holds to the client (flush_client calls it
 * while the pipe holds bytes and no write is in flight): a splice now, and
 * one each time the socket turns writable until the pipe is empty; then
 * memory's bytes (a resumed response's first ones), the spool's (policy
 * spill: sendfile, in the same way), or the response's end, through
 * flush_client.
 */
void
splice_flush(struct conn *c)
{
	struct proxy *px = c->px;
	struct pipe *d = &c->down;
	ssize_t n = -EAGAIN;
	int rc;

	if (c->cpoll_fd < 0 &&
	    (rc = poll_open(
	         c, (uv_handle_t *)&c->client, &c->cpoll, &c->cpoll_fd)) < 0) {
		conn_close(c, 0, "client splice", rc);
		return;
	}
	if (pipe_kernel(d) > 0)
		n = pipe_splice_out(
		    d, c->cpoll_fd, fault_write_bytes(c, pipe_kernel(d)));
	else if (pipe_kernel_next(d))
		n = pipe_spool_out(
		    d, c->cpoll_fd, fault_write_bytes(c, SPOOL_SEND_MAX));
	if (d->error != 0) {
		/* the spool cannot be read: nothing behind it goes out, and
		 * the response ends short (memory holds nothing ahead) */
		spool_failed(c);
		n = -EAGAIN;
	}
	if (n < 0 && n != -EAGAIN) {
		client_write_failed(c, (int)n);
		return;
	}
	if (n > 0) {
		fault_wrote(c, (size_t)n);
		c->d.body_out += (uint64_t)n;
		px->stats.bytes_out += (uint64_t)n;
		c->d.spliced += (uint64_t)n;
		px->stats.spliced_bytes += (uint64_t)n;
	}
	if ((rc = wait_writable(c)) < 0) {
		conn_close(c, 0, "client splice", rc);
		return;
	}
	if (n > 0) {
		kick_client_timer(c);
		if (px->mem_head != NULL || px->mem_full)
			conn_memory_wake(px);
		/* and every other worker's waiters: memory_limit is theirs
		 * too, and the kernel pipe's bytes give no block back to a
		 * pool, whose release would tell them */
		proxy_memory_released(px);
		check_down(c);
	}
	if (!c->cw_busy)
		flush_client(c);
}
