/*
 * conn_io: the bytes of a connection (see conn.c for the other files):
 * reads from both sockets into the pipes (the alloc and read callbacks),
 * writes from the pipes to both sides, the one reconcile per side of
 * whether it is read (update_client_reading, update_upstream_reading) with
 * what drives it (the watermarks, memory_limit, the pace and its token
 * bucket), and the client and upstream timers.
 *
 * Backpressure (policy pause): when `down` holds high_watermark bytes the
 * upstream is no longer read, so the kernel's receive queue fills and the
 * upstream is shown a zero window; when the client has drained `down` to
 * low_watermark reading resumes.  `up` does the same toward the client for
 * request bodies.  The read timer toward the upstream runs only while the
 * proxy reads it: a paused upstream is not "idle".
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/list.h"
#include "base/log.h"
#include "base/tcpinfo.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/conn_int.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

#define MAX_IOV 64 /* segments per uv_write */

/* ---- timers --------------------------------------------------------- */

/* How often a stuck client write looks at TCP_INFO. */
#define ZWP_CHECK_MS 250

/*
 * The client timer is a watchdog.  While a write to the client is pending
 * it looks every ZWP_CHECK_MS whether the client's window is zero
 * (zwp_timeout); otherwise it fires idle_timeout after the last progress,
 * and conn_on_ctimer decides whether the client was the one holding things
 * up.
 */
void
kick_client_timer(struct conn *c)
{
	uint64_t zwp = config_client_zwp_ms(c->cfg);

	if (c->closing || c->lingering)
		return;
	if (c->cw_busy) {
		if (zwp != 0)
			uv_timer_start(&c->ctimer, conn_on_ctimer,
			    zwp < ZWP_CHECK_MS ? zwp : ZWP_CHECK_MS, 0);
		else
			uv_timer_stop(&c->ctimer);
		return;
	}
	c->czw_since = 0;
	uv_timer_start(
	    &c->ctimer, conn_on_ctimer, c->cfg->client.idle_timeout, 0);
}

static void
kick_upstream_timer(struct conn *c)
{
	if (!c->closing && c->ureading)
		uv_timer_start(&c->utimer, conn_on_utimer,
		    c->cfg->upstream.read_timeout, 0);
}

/* ---- reading control ------------------------------------------------ */

static void conn_on_client_alloc(uv_handle_t *, size_t, uv_buf_t *);
static void conn_on_client_read(uv_stream_t *, ssize_t, const uv_buf_t *);
static void conn_on_upstream_alloc(uv_handle_t *, size_t, uv_buf_t *);
static void conn_on_upstream_read(uv_stream_t *, ssize_t, const uv_buf_t *);

/* Reads the client while a request is being received (and the request
 * body pipe is below its high watermark), or while lingering. */
void
update_client_reading(struct conn *c)
{
	int want;

	if (c->closing)
		return;
	/* close_after does not stop a request in progress (a drain lets it
	 * finish); the proxy's own error answer does. */
	want = c->lingering ||
	    (!c->req_done && !c->err_status && !c->up.wm.paused);
	if (want && !c->creading) {
		if (uv_read_start((uv_stream_t *)&c->client,
		        conn_on_client_alloc, conn_on_client_read) == 0)
			c->creading = 1;
	} else if (!want && c->creading) {
		uv_read_stop((uv_stream_t *)&c->client);
		c->creading = 0;
	}
}

/* memory_limit holds this download's reads (spill writes to disk
 * instead, while it can). */
static int
memory_blocked(const struct conn *c)
{
	return c->px->mem_full &&
	    !(c->cfg->buffer.policy == POLICY_SPILL &&
	        pipe_can_spool(&c->down));
}

/*
 * Policy pace: read while the token bucket allows and memory is below
 * low_watermark (a small pipe: the watermark pause, with its long window
 * closure, never comes into play), or whenever memory is nearly empty (the
 * client must not starve while the rate estimate builds).
 */
static int
pace_allows(const struct conn *c)
{
	size_t mem = pipe_memory(&c->down);

	if (c->cfg->buffer.policy != POLICY_PACE)
		return 1;
	return (c->pace_tokens > 0 && mem < c->cfg->buffer.low_watermark) ||
	    mem < c->gen->pool.block_size;
}

/*
 * Reads the upstream while its response runs and nothing holds it: the
 * watermarks of `down`, memory_limit, the pace, a resume in wait.  The read
 * timer runs exactly while we read; the time we do not is the zero window
 * the upstream sees, counted in paused_ms.
 */
void
update_upstream_reading(struct conn *c)
{
	uint64_t now;
	int want;

	if (c->closing || c->ustate != U_OPEN)
		return;
	want = !c->resp_done && !c->upstream_failed && !c->down.wm.paused &&
	    !memory_blocked(c) && pace_allows(c);
	now = uv_now(c->px->loop);
	if (want && !c->ureading) {
		if (uv_read_start((uv_stream_t *)&c->upstream,
		        conn_on_upstream_alloc, conn_on_upstream_read) == 0)
			c->ureading = 1;
		kick_upstream_timer(c);
		if (c->pause_start != 0) {
			c->paused_ms += now - c->pause_start;
			c->px->stats.paused_ms += now - c->pause_start;
			c->pause_start = 0;
		}
	} else if (!want && c->ureading) {
		uv_read_stop((uv_stream_t *)&c->upstream);
		c->ureading = 0;
		uv_timer_stop(&c->utimer);
		if (!c->resp_done && !c->upstream_failed) {
			c->pause_start = now;
			c->px->stats.upstream_pauses++;
		}
	}
}

/* Ends the pause accounting of a download whose upstream is done. */
void
end_pause(struct conn *c)
{
	uint64_t now = uv_now(c->px->loop);

	if (c->pause_start != 0) {
		c->paused_ms += now - c->pause_start;
		c->px->stats.paused_ms += now - c->pause_start;
		c->pause_start = 0;
	}
}

/*
 * Sets the watermarks of `down` for its policy and applies a transition.
 * pause, pace: memory held against high/low.  spill, while the spool can
 * take bytes: memory plus spool against high + spill_limit, resuming one
 * block below it, so the upstream is read as fast as the client drains
 * once spill_limit is reached (spill_limit bounds the bytes ahead of the
 * client); when the spool cannot (ENOSPC, spill_total), pause's own marks.
 */
void
check_down(struct conn *c)
{
	const struct config *cfg = c->cfg;
	struct pipe *d = &c->down;
	size_t load = pipe_load(d), bs = c->gen->pool.block_size;
	enum wm_event ev;
	int spooling = cfg->buffer.policy == POLICY_SPILL && pipe_can_spool(d);

	if (spooling) {
		/* memory stays at high_watermark (pushes past it go to the
		 * spool): the spool itself is held to spill_limit */
		d->wm.high = cfg->buffer.spill_limit;
		d->wm.low = d->wm.high > bs ? d->wm.high - bs : 0;
		load = pipe_spooled(d);
	} else {
		d->wm.high = cfg->buffer.high_watermark;
		d->wm.low = cfg->buffer.low_watermark;
	}
	d->force_spill = c->px->mem_full;
	if (pipe_memory(d) > c->peak_mem)
		c->peak_mem = pipe_memory(d);
	if (d->spool.starts != c->spool_starts) {
		log_debug("conn %llu: spill starts at %zu bytes in memory",
		    (unsigned long long)c->id, pipe_memory(d));
		c->px->stats.spills += d->spool.starts - c->spool_starts;
		c->spool_starts = d->spool.starts;
	}
	if (d->spool.written != c->spool_written) {
		c->px->stats.spilled_bytes +=
		    d->spool.written - c->spool_written;
		c->spool_written = d->spool.written;
	}
	ev = wm_check(&d->wm, load);
	if (ev == WM_PAUSE) {
		log_debug("conn %llu: pause upstream at %zu bytes held "
		          "(%llu spooled)",
		    (unsigned long long)c->id, pipe_memory(d),
		    (unsigned long long)pipe_spooled(d));
		if (cfg->buffer.policy == POLICY_SPILL && !c->spill_fellback) {
			/* spill_limit reached: pause's rules from here */
			c->spill_fellback = 1;
			c->px->stats.spill_fallbacks++;
		}
	} else if (ev == WM_RESUME) {
		log_debug("conn %llu: resume upstream at %zu bytes held",
		    (unsigned long long)c->id, pipe_memory(d));
	}
	if (cfg->buffer.policy == POLICY_SPILL && d->spool.failed &&
	    !c->spill_fellback) {
		c->spill_fellback = 1;
		c->px->stats.spill_fallbacks++;
		log_info(
		    "conn %llu %s: spool: %s; this download pauses instead",
		    (unsigned long long)c->id, c->peer,
		    strerror(-d->spool.err));
	}
	update_upstream_reading(c);
}

void
conn_wake(struct conn *c)
{
	if (!c->closing)
		check_down(c);
}

/* Policy pace: every tick, the client's drain rate (smoothed over about a
 * second) refills the tokens the upstream reads spend.  The rate is what
 * the client acknowledged (TCP_INFO), not what our writes handed the
 * kernel: the send buffer would make a slow client look fast at first. */
static void
conn_on_ptimer(uv_timer_t *t)
{
	struct conn *c = t->data;
	uint64_t now = uv_now(c->px->loop);
	double dt = (double)(now - c->pace_last) / 1000.0, inst, cap;
	struct tcpinfo ti;
	uv_os_fd_t fd;

	if (c->closing || dt <= 0)
		return;
	c->pace_drained = 0;
	if (uv_fileno((uv_handle_t *)&c->client, &fd) == 0 &&
	    tcpinfo_read(fd, &ti) == 0) {
		if (c->pace_acked != 0 && ti.bytes_acked > c->pace_acked)
			c->pace_drained = ti.bytes_acked - c->pace_acked;
		c->pace_acked = ti.bytes_acked;
	}
	inst = (double)c->pace_drained / dt;
	if (c->pace_rate == 0)
		c->pace_rate = inst;
	else
		c->pace_rate += (inst - c->pace_rate) * (dt < 1 ? dt : 1);
	c->pace_drained = 0;
	c->pace_last = now;
	c->pace_tokens += c->pace_rate * dt;
	cap = c->pace_rate * 0.1;
	if (cap < 16384)
		cap = 16384;
	if (c->pace_tokens > cap)
		c->pace_tokens = cap;
	update_upstream_reading(c);
}

void
start_pace(struct conn *c)
{
	if (c->cfg->buffer.policy != POLICY_PACE)
		return;
	c->pace_rate = 0;
	c->pace_drained = 0;
	c->pace_acked = 0;
	/* prime the pipe up to low_watermark, then follow the client */
	c->pace_tokens = (double)c->cfg->buffer.low_watermark;
	c->pace_last = uv_now(c->px->loop);
	uv_timer_start(&c->ptimer, conn_on_ptimer, 20, 20);
}

void
check_up(struct conn *c)
{
	if (wm_check(&c->up.wm, pipe_load(&c->up)) != WM_NONE)
		update_client_reading(c);
}

/* ---- writing ---------------------------------------------------------- */

static void
conn_on_client_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, cwrite);
	size_t before = pipe_held(&c->down);

	c->cw_busy = 0;
	if (c->closing)
		return;
	if (status < 0) {
		/* zwp_probes is also the client socket's TCP_USER_TIMEOUT: the
		 * kernel may give up on the zero window before our check does
		 */
		if (status == UV_ETIMEDOUT && c->cfg->client.zwp_probes != 0) {
			c->outcome = OUTCOME_CLIENT_ZWP_TIMEOUT;
			c->px->stats.client_zwp_timeouts++;
		}
		conn_close(c, 0, "client write", status);
		return;
	}
	pipe_consume(&c->down, c->cw_nsegs);
	c->body_out += before - pipe_held(&c->down);
	c->px->stats.bytes_out += before - pipe_held(&c->down);
	kick_client_timer(c);
	if (c->px->mem_full)
		proxy_memory_check(c->px);
	check_down(c);
	flush_client(c);
}

/*
 * Segments per client write.  A write's blocks are freed only when all of
 * it is sent, so one write larger than the gap hides the low watermark:
 * the pipe would not drain below high - (that write) until the whole
 * write is out, and at 2 Mbit/s a 64-block write is 17 s of zero window
 * for the upstream.  Half the gap, at least one block.
 */
static size_t
write_batch(const struct conn *c)
{
	const struct config *cfg = c->cfg;
	uint64_t gap = cfg->buffer.high_watermark - cfg->buffer.low_watermark;
	uint64_t n = gap / 2 / cfg->buffer.block_size;

	return n < 1 ? 1 : n > MAX_IOV ? MAX_IOV : (size_t)n;
}

void
flush_client(struct conn *c)
{
	uv_buf_t bufs[MAX_IOV];
	size_t n;
	int rc;

	if (c->closing || c->cw_busy || c->shutting)
		return;
	n = pipe_peek(&c->down, bufs, write_batch(c));
	if (n == 0) {
		if (pipe_empty(&c->down) &&
		    (c->resp_done || c->upstream_failed))
			finish_response(c);
		return;
	}
	rc = uv_write(&c->cwrite, (uv_stream_t *)&c->client, bufs, (unsigned)n,
	    conn_on_client_write);
	if (rc < 0) {
		pipe_unpeek(&c->down);
		conn_close(c, 0, "client write", rc);
		return;
	}
	c->cw_busy = 1;
	c->cw_nsegs = n;
	kick_client_timer(c);
}

static void
conn_on_upstream_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, uwrite);

	c->uw_busy = 0;
	if (c->closing)
		return;
	if (status < 0) {
		pipe_unpeek(&c->up);
		if (status == UV_ECANCELED)
			return;
		/* The upstream stopped taking the request (it may have
		 * answered early, or died); its read side decides what the
		 * client sees.  This connection carries no further request. */
		log_info("conn %llu %s: upstream write: %s",
		    (unsigned long long)c->id, c->peer, uv_strerror(status));
		c->close_after = 1;
		update_client_reading(c);
		return;
	}
	pipe_consume(&c->up, c->uw_nsegs);
	kick_upstream_timer(c);
	check_up(c);
	flush_upstream(c);
}

void
flush_upstream(struct conn *c)
{
	uv_buf_t bufs[MAX_IOV];
	size_t n;
	int rc;

	if (c->closing || c->uw_busy || c->ustate != U_OPEN)
		return;
	n = pipe_peek(&c->up, bufs, MAX_IOV);
	if (n == 0)
		return;
	rc = uv_write(&c->uwrite, (uv_stream_t *)&c->upstream, bufs,
	    (unsigned)n, conn_on_upstream_write);
	if (rc < 0) {
		pipe_unpeek(&c->up);
		c->close_after = 1;
		return;
	}
	c->uw_busy = 1;
	c->uw_nsegs = n;
}

/* ---- reading ---------------------------------------------------------- */

/* Both alloc callbacks: the next read lands in the pipe it feeds; the
 * block is held in rd_block until the read callback is done with it. */
static void
reserve_read(struct conn *c, struct pipe *p, uv_buf_t *buf)
{
	size_t len;

	if (pipe_reserve(p, &buf->base, &len, &c->rd_block) < 0) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
		c->rd_block = NULL;
		return;
	}
	buf->len = len;
}

/* Both read callbacks end here: drops the read's block reference. */
static void
release_read(struct conn *c, struct block *b)
{
	if (b != NULL)
		block_unref(b);
	if (c->rd_block == b)
		c->rd_block = NULL;
}

static void
conn_on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)hint;
	reserve_read(c, &c->up, buf);
}

static void
client_eof(struct conn *c, ssize_t err)
{
	if (c->lingering || (!c->req_started && !c->resp_head_sent)) {
		conn_close(c, 0, NULL, 0); /* a quiet end between requests */
		return;
	}
	if (!c->req_done && c->req_head_done) {
		conn_close(c, 0, "client gone during request body", (int)err);
		return;
	}
	if (!c->req_done) {
		conn_close(c, 0, NULL, 0); /* half a head, then gone */
		return;
	}
	conn_close(c, 0, "client gone", (int)err);
}

static void
conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct block *b = c->rd_block;

	if (nread > 0 && !c->lingering) {
		pipe_commit(&c->up, (size_t)nread);
		kick_client_timer(c);
		feed_client(c, buf->base, (size_t)nread);
	} else if (nread == UV_ENOBUFS) {
		conn_close(c, 0, "out of memory for client read", 0);
	} else if (nread < 0) {
		client_eof(c, nread);
	}
	release_read(c, b);
}

static void
conn_on_upstream_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, upstream);

	(void)hint;
	reserve_read(c, &c->down, buf);
	/* pace: read no more than the tokens allow (at least one MSS-ish
	 * piece, so progress never stalls on rounding) */
	if (c->cfg->buffer.policy == POLICY_PACE && buf->base != NULL &&
	    c->pace_tokens < (double)buf->len)
		buf->len =
		    c->pace_tokens > 4096 ? (size_t)c->pace_tokens : 4096;
}

static void
upstream_eof(struct conn *c, ssize_t err)
{
	if (err == UV_EOF) {
		llhttp_finish(&c->resp); /* ends a close-delimited body */
		if (c->resp_done) {
			upstream_done(c);
			return;
		}
	}
	if (!c->resp_head_sent)
		respond_error(c, 502,
		    err == UV_EOF ? "upstream closed before the response head"
		                  : "upstream reset before the response head");
	else
		upstream_broken(c, err == UV_EOF ? "closed mid-body" : "read",
		    err == UV_EOF ? 0 : (int)err, OUTCOME_UPSTREAM_RESET);
}

static void
conn_on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = container_of((uv_tcp_t *)s, struct conn, upstream);
	struct block *b = c->rd_block;

	if (nread > 0) {
		pipe_commit(&c->down, (size_t)nread);
		kick_upstream_timer(c);
		feed_upstream(c, buf->base, (size_t)nread);
	} else if (nread == UV_ENOBUFS) {
		conn_close(c, 0, "out of memory for upstream read", 0);
	} else if (nread < 0) {
		upstream_eof(c, nread);
	}
	release_read(c, b);
}

/* ---- timers ----------------------------------------------------------- */

void
conn_on_utimer(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->ustate == U_CONNECTING) {
		connect_failed(c, UV_ETIMEDOUT);
	} else if (c->ustate == U_OPEN) {
		if (!c->resp_head_sent)
			respond_error(c, 504, "upstream read timed out");
		else
			upstream_broken(c, "read timed out", UV_ETIMEDOUT,
			    OUTCOME_UPSTREAM_TIMEOUT);
	}
}

/*
 * A write to the client has been pending for a while: is its receive
 * window zero (TCP_INFO)?  A window that stays zero for the zwp time is the
 * seed article's zero-window DoS or a reader that stopped for good: close
 * with RST, which frees the socket's memory at once (a plain close would
 * leave the kernel an orphan probing the same window).
 */
static void
client_zwp_check(struct conn *c)
{
	uint64_t now = uv_now(c->px->loop), zwp = config_client_zwp_ms(c->cfg);
	struct tcpinfo ti;
	uv_os_fd_t fd;

	if (zwp == 0)
		return;

	if (uv_fileno((uv_handle_t *)&c->client, &fd) == 0 &&
	    tcpinfo_read(fd, &ti) == 0 && ti.snd_wnd == 0) {
		if (c->czw_since == 0)
			c->czw_since = now;
		if (now - c->czw_since >= zwp) {
			c->outcome = OUTCOME_CLIENT_ZWP_TIMEOUT;
			c->px->stats.client_zwp_timeouts++;
			conn_close(
			    c, 1, "client window zero for zwp_timeout", 0);
			return;
		}
	} else {
		c->czw_since = 0;
	}
	uv_timer_start(&c->ctimer, conn_on_ctimer,
	    zwp < ZWP_CHECK_MS ? zwp : ZWP_CHECK_MS, 0);
}

void
conn_on_ctimer(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->lingering) {
		conn_close(c, 0, NULL, 0);
	} else if (c->cw_busy) {
		client_zwp_check(c);
	} else if (!c->req_done && !c->close_after) {
		if (!c->req_started)
			conn_close(c, 0, NULL, 0); /* idle keep-alive */
		else if (!c->req_head_done)
			respond_error(c, 408, "request head timed out");
		else
			conn_close(c, 0, "client stalled in request body",
			    UV_ETIMEDOUT);
	} else {
		kick_client_timer(c); /* waiting on the upstream, not it */
	}
}
