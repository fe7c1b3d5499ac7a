/*
 * conn_splice: the zero-copy path of a response body ([buffer] splice = auto;
 * see conn.c for the other files of a connection).  A body that needs no
 * inspection (Content-Length, or close-delimited to an HTTP/1.0 client:
 * the bytes the client gets are the bytes the upstream sent) moves upstream
 * socket -> kernel pipe -> client socket with splice(2), never entering
 * user space, as HAProxy's splice-response does.  The response head, and
 * what the read that brought it held of the body, still go through memory
 * and uv_write first.
 *
 * The kernel pipe is `down`'s second storage (pipe.h): its fill level,
 * read from the kernel, counts in the bytes the download holds, so the
 * watermarks, memory_limit, pace and /connections see it as they see
 * memory.  Order: it is filled only while memory holds nothing of `down`
 * (update_upstream_reading), and flush_client empties it before memory, so
 * the bytes a resumed response's head read brings (memory) go out after the
 * ones spliced before the failure (the pipe).
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
 * Not on this path: policy spill (its spool is written from memory),
 * bodies the proxy re-frames as chunked, request bodies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/config.h"
#include "proxy/conn_int.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

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
 * kernel pipe?  Only a body passed through as it came (FRAME_RAW, not
 * chunked upstream), under pause or pace, once the request is all written
 * (the upstream socket is then only read).
 */
void
splice_begin(struct conn *c, const llhttp_t *p, int no_body)
{
	const struct config *cfg = c->cfg;
	int rc;

	c->d.splice = 0;
	if (!cfg->buffer.splice || cfg->buffer.policy == POLICY_SPILL ||
	    no_body || c->d.resp_frame != FRAME_RAW || (p->flags & F_CHUNKED) ||
	    !c->d.req_done || !pipe_empty(&c->up) || c->uw_busy)
		return;
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
}

/*
 * How the upstream's body is read now.  Into the kernel pipe while memory
 * holds nothing of `down` (the pipe's bytes go out first: order).  Memory
 * holding bytes with the pipe empty (the head, the body bytes its read
 * brought, being written now): not yet, until they are out.  Into blocks,
 * as without splice, once the pipe was full (a pipe smaller than
 * high_watermark: memory takes the bytes past it, so the watermarks stop
 * and start the upstream where they do without splice), or behind the
 * pipe's bytes (a resumed response's first ones), until memory is empty
 * again.
 */
enum splice_mode
splice_mode(struct conn *c)
{
	const struct pipe *d = &c->down;

	if (!c->d.splice || c->state != DL_RELAYING)
		return SPLICE_NONE;
	if (c->kfull && pipe_memory(d) == 0 && d->k.out != c->kfull_out)
		c->kfull = 0; /* memory is out, and the pipe took bytes */
	if (c->kfull)
		return SPLICE_NONE;
	if (pipe_memory(d) == 0)
		return SPLICE_IN;
	return pipe_kernel(d) == 0 ? SPLICE_WAIT : SPLICE_NONE;
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
	/* a Content-Length body was spliced to its last byte, no further */
	c->d.resp_clean = !c->d.resp_by_close;
	set_state(c, DL_FLUSHING);
	upstream_done(c);
}

/* The bytes the next splice in may take: the pipe's room, the rest of a
 * Content-Length body, pace's tokens, memory_limit's room. */
static size_t
read_max(const struct conn *c)
{
	const struct pipe *d = &c->down;
	size_t max = d->k.cap > d->k.held ? d->k.cap - d->k.held : 0, room;

	if (!c->d.resp_by_close && max > c->resp.content_length)
		max = (size_t)c->resp.content_length;
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
	if (!c->d.resp_by_close)
		c->resp.content_length -= n;
	if (c->cfg->buffer.policy == POLICY_PACE) {
		c->d.pace_tokens -= (double)n;
		if (c->d.pace_tokens < -(double)c->gen->pool.block_size)
			c->d.pace_tokens = -(double)c->gen->pool.block_size;
	}
	memory_grant_end(c); /* the grant (or turn) was this read */
}

static void
splice_on_upstream(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	size_t max;
	ssize_t n;

	(void)events;
	if (splice_mode(c) != SPLICE_IN || !c->usplice)
		return;
	if (status < 0) /* libuv stopped the poll (POLLERR): the splice
	                 * below tells the socket's error, else read on */
		c->ureading = c->usplice = 0;
	if ((max = read_max(c)) == 0) {
		/* pipe full, or memory_limit: wait in the queue */
		if (c->down.k.held >= c->down.k.cap)
			pipe_full(c);
		update_upstream_reading(c);
		return;
	}
	n = pipe_splice_in(&c->down, c->upoll_fd, max);
	if (n == -EAGAIN) {
		/* readable, yet nothing moved: the pipe is out of slots (or
		 * the event was stale: the poll goes on, or again) */
		if (pipe_kernel(&c->down) > 0)
			pipe_full(c);
		update_upstream_reading(c);
		return;
	}
	if (n == 0 && c->d.resp_by_close) {
		body_complete(c);
		return;
	}
	if (n <= 0) {
		upstream_broken(c, n == 0 ? "closed mid-body" : "read", (int)n,
		    OUTCOME_UPSTREAM_RESET);
		return;
	}
	body_in(c, (size_t)n);
	kick_upstream_timer(c);
	if (!c->d.resp_by_close && c->resp.content_length == 0) {
		body_complete(c);
		return;
	}
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
	splice_flush(c);
}

/* Waits for the client socket to be writable while the pipe holds bytes;
 * 0 or a negative errno. */
static int
wait_writable(struct conn *c)
{
	int rc;

	if (pipe_kernel(&c->down) > 0 && !c->cw_splice) {
		rc = poll_open(
		    c, (uv_handle_t *)&c->client, &c->cpoll, &c->cpoll_fd);
		if (rc < 0 ||
		    (rc = uv_poll_start(
		         &c->cpoll, UV_WRITABLE, splice_on_client)) < 0)
			return rc;
		c->cw_busy = c->cw_splice = 1;
		kick_client_timer(c);
	} else if (pipe_kernel(&c->down) == 0 && c->cw_splice) {
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
 * memory's bytes (a resumed response's first ones) or the response's end,
 * through flush_client.
 */
void
splice_flush(struct conn *c)
{
	struct proxy *px = c->px;
	ssize_t n;
	int rc;

	if (c->cpoll_fd < 0 &&
	    (rc = poll_open(
	         c, (uv_handle_t *)&c->client, &c->cpoll, &c->cpoll_fd)) < 0) {
		conn_close(c, 0, "client splice", rc);
		return;
	}
	n = pipe_splice_out(&c->down, c->cpoll_fd, pipe_kernel(&c->down));
	if (n < 0 && n != -EAGAIN) {
		client_write_failed(c, (int)n);
		return;
	}
	if (n > 0) {
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
		check_down(c);
	}
	if (!c->cw_busy)
		flush_client(c);
}
