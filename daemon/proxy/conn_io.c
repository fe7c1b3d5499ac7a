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
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

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

/* ---- deadlines ------------------------------------------------------ */

/* How often a stuck client write looks at TCP_INFO. */
#define ZWP_CHECK_MS 250

/*
 * Arms the deadline of the state the download just entered (the table in
 * conn_int.h): the client timer for the states that wait on the client,
 * the upstream timer for those that wait on the upstream.  Called by
 * set_state() only.
 */
void
arm_deadline(struct conn *c)
{
	const struct config *cfg = c->cfg;

	switch (c->state) {
	case DL_IDLE:
		uv_timer_stop(&c->utimer);
		uv_timer_start(
		    &c->ctimer, conn_on_ctimer, cfg->client.idle_timeout, 0);
		break;
	case DL_REQUEST_HEAD: /* the whole head, from its first byte */
		uv_timer_start(
		    &c->ctimer, conn_on_ctimer, cfg->client.header_timeout, 0);
		break;
	case DL_CONNECTING:
		uv_timer_start(&c->utimer, conn_on_utimer,
		    cfg->upstream.connect_timeout, 0);
		kick_client_timer(c);
		break;
	case DL_WAITING:
		uv_timer_start(
		    &c->utimer, conn_on_utimer, cfg->upstream.read_timeout, 0);
		kick_client_timer(c);
		break;
	case DL_RELAYING:
		uv_timer_stop(&c->utimer);
		kick_upstream_timer(c);
		kick_client_timer(c);
		break;
	case DL_RESUME_WAIT:
		uv_timer_start(
		    &c->utimer, conn_on_utimer, cfg->buffer.resume_backoff, 0);
		kick_client_timer(c);
		break;
	case DL_FLUSHING:
		uv_timer_stop(&c->utimer);
		kick_client_timer(c);
		break;
	case DL_LINGERING:
		uv_timer_stop(&c->utimer);
		uv_timer_start(&c->ctimer, conn_on_ctimer, LINGER_MS, 0);
		break;
	case DL_CLOSING:
	case DL_NSTATES:
		break;
	}
}

/*
 * The client timer while a request is under way (connecting to flushing):
 * a write to the client in flight is watched every ZWP_CHECK_MS for a zero
 * window (zwp_timeout) or, with that off, every idle_timeout for no
 * acknowledged byte; a request body being read must see a byte every
 * idle_timeout; with neither (the client waits on us: the upstream, or a
 * read held by memory_limit), the client is checked to still be there
 * every CLIENT_CHECK_MS.  The states before and after have fixed
 * deadlines (arm_deadline) that client bytes do not restart.
 */
void
kick_client_timer(struct conn *c)
{
	uint64_t zwp = config_client_zwp_ms(c->cfg), ms;

	if (c->state < DL_CONNECTING || c->state > DL_FLUSHING)
		return;
	if (c->cw_busy) {
		ms = zwp == 0            ? c->cfg->client.idle_timeout
		    : zwp < ZWP_CHECK_MS ? zwp
		                         : ZWP_CHECK_MS;
	} else {
		c->d.czw_since = 0;
		ms = !c->d.req_done && c->creading ? c->cfg->client.idle_timeout
		                                   : CLIENT_CHECK_MS;
	}
	uv_timer_start(&c->ctimer, conn_on_ctimer, ms, 0);
}

/* The upstream's read_timeout runs while it is read, from its last byte
 * (or a write of the request that it took). */
void
kick_upstream_timer(struct conn *c)
{
	if ((c->state == DL_WAITING || c->state == DL_RELAYING) && c->ureading)
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

	if (c->state == DL_CLOSING)
		return;
	/* close_after does not stop a request in progress (a drain lets it
	 * finish); the proxy's own error answer does. */
	want = c->state == DL_LINGERING ||
	    (c->state < DL_LINGERING && !c->d.req_done && !c->d.err_status &&
	        !c->up.wm.paused);
	if (want && !c->creading) {
		if (uv_read_start((uv_stream_t *)&c->client,
		        conn_on_client_alloc, conn_on_client_read) == 0)
			c->creading = 1;
	} else if (!want && c->creading) {
		uv_read_stop((uv_stream_t *)&c->client);
		c->creading = 0;
	}
	kick_client_timer(c);
}

/* ---- memory_limit: first come, first served ---------------------------- */

/* The memory the next upstream read may take: a fresh block when the
 * current one is (nearly) full.  What the proxy writes itself takes none:
 * heads go in loose blocks of their own size (pipe_push_head), and so does
 * chunk framing that does not fit behind a read (pipe_push_copy). */
static size_t
memory_need(const struct conn *c)
{
	return pipe_reserve_takes_block(&c->down) ? c->gen->pool.block_size : 0;
}

/*
 * A read that would take a block past memory_limit does not happen: the
 * download joins px's queue of waiters instead (spill writes to disk while
 * it can), and so does any download that wants to read while others wait,
 * so no newcomer overtakes them.  This holds for every upstream read that
 * lands in `down`, the response head's included, and it is checked where
 * the block is taken (conn_on_upstream_alloc), not only when reading
 * starts: a download that is reading when others fill the limit stops at
 * the end of its block.  Memory that comes back (conn_memory_wake: after a
 * client write, and after any memory is released, proxy.c) is handed to
 * the waiters in the order they came: a promise of one block's read
 * (mem_grant, counted as taken until the read) to one whose upstream has
 * bytes, a turn without a promise (mem_turn) to one whose upstream is
 * silent.  A download that still wants more joins the queue's end.  So under
 * the limit every download advances in turn (5,000 slow clients sharing 64M
 * each get their turn), and none waits on a flag that only a finished write
 * would clear.
 */
static int
memory_blocked(const struct conn *c)
{
	const struct proxy *px = c->px;
	uint64_t limit = px->cfg->buffer.memory_limit;

	if (limit == 0 || c->mem_grant != 0 ||
	    (c->cfg->buffer.policy == POLICY_SPILL && pipe_can_spool(&c->down)))
		return 0;
	if (!c->mem_turn && (c->mem_waiting || px->mem_head != NULL))
		return 1;
	/* what was promised to woken waiters, every worker's, is as good as
	 * taken */
	return memory_need(c) != 0 &&
	    proxy_memory(px) + proxy_memory_granted(px) + memory_need(c) >
	    limit;
}

/* The grant (or turn) of a read that happened or never will. */
void
memory_grant_end(struct conn *c)
{
	if (c->mem_grant != 0)
		proxy_memory_grant(c->px, -(int64_t)c->mem_grant);
	c->mem_grant = 0;
	c->mem_turn = 0;
}

/* Has the upstream sent bytes we have not read?  (A waiter that has none
 * is not promised memory: the promise would hold it from the others for
 * as long as the upstream keeps silent, a response head for instance.) */
static int
upstream_has_bytes(const struct conn *c)
{
	uv_os_fd_t fd;
	int n = 0;

	if (uv_fileno((const uv_handle_t *)&c->upstream, &fd) != 0 ||
	    ioctl(fd, FIONREAD, &n) < 0)
		return 1; /* cannot tell: as before, a grant */
	return n > 0;
}

/*
 * splice: the bytes one read into the kernel pipe may take under
 * memory_limit (SIZE_MAX: no limit): a block when the read was granted
 * (the caller gives the grant back once it read), none when memory_blocked,
 * else what is left below the limit.
 */
size_t
memory_room(const struct conn *c)
{
	uint64_t limit = c->px->cfg->buffer.memory_limit, used;

	if (limit == 0)
		return SIZE_MAX;
	if (c->mem_grant != 0)
		return c->mem_grant;
	if (memory_blocked(c))
		return 0;
	used = proxy_memory(c->px) + proxy_memory_granted(c->px);
	return used < limit ? (size_t)(limit - used) : 0;
}

/* After body bytes were queued: has memory_limit been reached? */
void
memory_note(struct conn *c)
{
	struct proxy *px = c->px;
	uint64_t limit = px->cfg->buffer.memory_limit, used = proxy_memory(px);

	/* memory_limit is process-wide: the current generation's value.
	 * Kernel pipes hold bytes, not blocks: reached when a block more
	 * would not fit. */
	if (limit != 0 && !px->mem_full &&
	    (used >= limit ||
	        (c->d.splice && used + c->gen->pool.block_size > limit))) {
		/* memory_limit: downloads queue for memory (or spill) until
		 * it comes back, first come, first served */
		px->mem_full = 1;
		px->stats.memory_limit_hits++;
		log_info("memory_limit reached (%llu bytes buffered): upstream "
		         "reads wait",
		    (unsigned long long)proxy_memory(px));
	}
}

/* Links c into px's queue of memory waiters between prev and next (NULL:
 * the queue's ends). */
static void
memory_link(
    struct proxy *px, struct conn *c, struct conn *prev, struct conn *next)
{
	c->mem_prev = prev;
	c->mem_next = next;
	if (prev != NULL)
		prev->mem_next = c;
	else
		px->mem_head = c;
	if (next != NULL)
		next->mem_prev = c;
	else
		px->mem_tail = c;
}

/* Queues a download for memory: at the end, or at the front when it was
 * woken (its turn came) with nothing to read and found the memory gone
 * once its bytes came: it keeps the place it had. */
static void
memory_queue(struct conn *c)
{
	struct proxy *px = c->px;
	int front = c->mem_turn;

	c->mem_turn = 0;
	if (c->mem_waiting)
		return;
	pipe_release_cur(&c->down); /* a waiter holds no empty block */
	c->mem_waiting = 1;
	if (front)
		memory_link(px, c, NULL, px->mem_head);
	else
		memory_link(px, c, px->mem_tail, NULL);
	proxy_memory_wait(px);
}

/* Takes c out of px's queue and ends its grant (conn_memory_wake's own
 * steps: it goes on with the next waiter itself). */
static void
memory_unlink(struct conn *c)
{
	struct proxy *px = c->px;

	memory_grant_end(c);
	if (!c->mem_waiting)
		return;
	c->mem_waiting = 0;
	if (c->mem_prev != NULL)
		c->mem_prev->mem_next = c->mem_next;
	else
		px->mem_head = c->mem_next;
	if (c->mem_next != NULL)
		c->mem_next->mem_prev = c->mem_prev;
	else
		px->mem_tail = c->mem_prev;
	c->mem_next = c->mem_prev = NULL;
}

void
memory_unqueue(struct conn *c)
{
	int had = c->mem_grant != 0 || c->mem_waiting;

	memory_unlink(c);
	/* A promise given back unused, or a place in the queue given up (the
	 * download ends, or reads no more): the waiters behind it may fit
	 * now, and no block coming back would tell them. */
	if (had)
		proxy_memory_released(c->px);
}

void
conn_memory_wake(struct proxy *px)
{
	uint64_t limit = px->cfg->buffer.memory_limit, used;
	struct conn *c;

	while ((c = px->mem_head) != NULL) {
		size_t need = memory_need(c);

		if (need == 0) /* a turn, at least one block's worth */
			need = c->gen->pool.block_size;
		used = proxy_memory(px) + proxy_memory_granted(px);
		if (limit != 0 && used + need > limit)
			break;
		memory_unlink(c);
		if (upstream_has_bytes(c)) {
			c->mem_grant = need;
			proxy_memory_grant(px, (int64_t)need);
		} else {
			c->mem_turn = 1; /* its read asks again */
		}
		update_upstream_reading(c);
		if (!c->ureading)
			memory_unlink(c); /* it does not read: no grant */
	}
	/* mem_full (spill spools everything while it is set) clears an
	 * eighth below the limit, not at every block */
	if (px->mem_full && px->mem_head == NULL &&
	    (limit == 0 || proxy_memory(px) <= limit - limit / 8)) {
		px->mem_full = 0;
		log_debug("memory_limit: %llu bytes buffered, reads go on",
		    (unsigned long long)proxy_memory(px));
	}
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
	size_t mem = pipe_memory(&c->down) + pipe_kernel(&c->down);

	if (c->cfg->buffer.policy != POLICY_PACE)
		return 1;
	return (c->d.pace_tokens > 0 && mem < c->cfg->buffer.low_watermark) ||
	    mem < c->gen->pool.block_size;
}

/* Reads the upstream: its body into the kernel pipe (spl), or anything
 * into blocks; a kernel pipe that cannot be read into turns the download's
 * splice off, and its blocks take the rest. */
static void
start_reading(struct conn *c, int spl)
{
	if (spl && splice_read_start(c) == 0) {
		c->ureading = c->usplice = 1;
		return;
	}
	if (spl) {
		log_info("conn %llu %s: splice: cannot poll the upstream; "
		         "its body goes through memory",
		    (unsigned long long)c->id, c->peer);
		c->d.splice = 0;
		c->down.sendfile = 0; /* the spool is read back into memory */
	}
	if (uv_read_start((uv_stream_t *)&c->upstream, conn_on_upstream_alloc,
	        conn_on_upstream_read) == 0)
		c->ureading = 1;
}

static void
stop_reading(struct conn *c)
{
	if (c->usplice)
		splice_read_stop(c);
	else
		uv_read_stop((uv_stream_t *)&c->upstream);
	c->ureading = c->usplice = 0;
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
	enum splice_mode mode = splice_mode(c);
	int spl = mode == SPLICE_IN || mode == SPLICE_SPOOL, want;
	uint64_t now;

	if (c->state == DL_CLOSING || c->ustate != U_OPEN)
		return;
	/* the response head is read whatever holds the body */
	want = c->state == DL_WAITING ||
	    (c->state == DL_RELAYING && !c->down.wm.paused && pace_allows(c));
	if (want && (mode == SPLICE_WAIT || mode == SPLICE_HOLD)) {
		/* the kernel pipe fills only once memory's bytes (a head,
		 * framing) are out (WAIT), and the pipe's bytes too (HOLD):
		 * a pause either way, as long as the client takes to read
		 * them (a stalled client: for as long as it stalls) */
		want = 0;
	}
	if (want && memory_blocked(c)) {
		memory_queue(c);
		want = 0;
	} else if (!want) {
		memory_unqueue(c);
	}
	now = uv_now(c->px->loop);
	if (want && c->ureading && c->usplice != spl)
		stop_reading(c); /* the body's reads go to the kernel pipe */
	if (want && !c->ureading) {
		start_reading(c, spl);
		kick_upstream_timer(c);
		if (c->d.pause_start != 0) {
			c->d.paused_ms += now - c->d.pause_start;
			c->px->stats.paused_ms += now - c->d.pause_start;
			c->d.pause_start = 0;
		}
	} else if (!want && c->ureading) {
		stop_reading(c);
		uv_timer_stop(&c->utimer);
		if (c->state == DL_RELAYING) {
			c->d.pause_start = now;
			c->px->stats.upstream_pauses++;
		}
	}
}

/* Ends the pause accounting of a download whose upstream is done. */
void
end_pause(struct conn *c)
{
	uint64_t now = uv_now(c->px->loop);

	if (c->d.pause_start != 0) {
		c->d.paused_ms += now - c->d.pause_start;
		c->px->stats.paused_ms += now - c->d.pause_start;
		c->d.pause_start = 0;
	}
}

/* A spool that failed: at warn, rate-limited (a full disk
 * fails every download that spills), with the cause. */
static void
spill_fallback_log(struct conn *c)
{
	const struct spool *sp = &c->down.spool;
	const struct config *cfg = c->cfg;

	if (sp->op != NULL && strcmp(sp->op, "spill_total") == 0)
		log_ratelimited(&c->px->log_spill, LOG_LVL_WARN,
		    "conn %llu %s: spill_total (%llu) reached; this download "
		    "pauses instead",
		    (unsigned long long)c->id, c->peer,
		    (unsigned long long)cfg->buffer.spill_total);
	else
		log_ratelimited(&c->px->log_spill, LOG_LVL_WARN,
		    "conn %llu %s: spool %s in spill_dir %s: %s; this "
		    "download pauses instead",
		    (unsigned long long)c->id, c->peer,
		    sp->op != NULL ? sp->op : "write", cfg->buffer.spill_dir,
		    strerror(-sp->err));
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
	if (pipe_memory(d) + pipe_kernel(d) > c->d.peak_mem)
		c->d.peak_mem = pipe_memory(d) + pipe_kernel(d);
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
		if (spooling && !c->d.spill_fellback) {
			/* spill_limit reached: pause's rules from here (a
			 * spool that failed is told below) */
			c->d.spill_fellback = 1;
			c->px->stats.spill_fallbacks++;
			log_ratelimited(&c->px->log_spill, LOG_LVL_WARN,
			    "conn %llu %s: spill_limit (%llu) reached; this "
			    "download pauses instead",
			    (unsigned long long)c->id, c->peer,
			    (unsigned long long)cfg->buffer.spill_limit);
		}
	} else if (ev == WM_RESUME) {
		log_debug("conn %llu: resume upstream at %zu bytes held",
		    (unsigned long long)c->id, pipe_memory(d));
	}
	/* a spool read error ends the download (spool_failed): no fall-back */
	if (cfg->buffer.policy == POLICY_SPILL && d->spool.failed &&
	    !c->d.spill_fellback && !c->d.short_end) {
		c->d.spill_fellback = 1;
		c->px->stats.spill_fallbacks++;
		spill_fallback_log(c);
	}
	update_upstream_reading(c);
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
	double dt = (double)(now - c->d.pace_last) / 1000.0, inst, cap;
	struct tcpinfo ti;
	uv_os_fd_t fd;

	if (dt <= 0)
		return;
	c->d.pace_drained = 0;
	if (uv_fileno((uv_handle_t *)&c->client, &fd) == 0 &&
	    tcpinfo_read(fd, &ti) == 0) {
		if (c->d.pace_acked != 0 && ti.bytes_acked > c->d.pace_acked)
			c->d.pace_drained = ti.bytes_acked - c->d.pace_acked;
		c->d.pace_acked = ti.bytes_acked;
	}
	inst = (double)c->d.pace_drained / dt;
	if (c->d.pace_rate == 0)
		c->d.pace_rate = inst;
	else
		c->d.pace_rate += (inst - c->d.pace_rate) * (dt < 1 ? dt : 1);
	c->d.pace_drained = 0;
	c->d.pace_last = now;
	c->d.pace_tokens += c->d.pace_rate * dt;
	cap = c->d.pace_rate * 0.1;
	if (cap < 16384)
		cap = 16384;
	if (c->d.pace_tokens > cap)
		c->d.pace_tokens = cap;
	update_upstream_reading(c);
}

void
start_pace(struct conn *c)
{
	if (c->cfg->buffer.policy != POLICY_PACE)
		return;
	c->d.pace_rate = 0;
	c->d.pace_drained = 0;
	c->d.pace_acked = 0;
	/* prime the pipe up to low_watermark, then follow the client */
	c->d.pace_tokens = (double)c->cfg->buffer.low_watermark;
	c->d.pace_last = uv_now(c->px->loop);
	uv_timer_start(&c->ptimer, conn_on_ptimer, 20, 20);
}

void
check_up(struct conn *c)
{
	if (wm_check(&c->up.wm, pipe_load(&c->up)) != WM_NONE)
		update_client_reading(c);
}

/* ---- writing ---------------------------------------------------------- */

/* A write (or splice) to the client failed: the connection ends. */
void
client_write_failed(struct conn *c, int err)
{
	/* zwp_probes is also the client socket's TCP_USER_TIMEOUT: the
	 * kernel may give up on the zero window before our check does */
	if (err == UV_ETIMEDOUT && c->cfg->client.zwp_probes != 0) {
		c->d.outcome = OUTCOME_CLIENT_ZWP_TIMEOUT;
		c->px->stats.client_zwp_timeouts++;
	}
	conn_close(c, 0, "client write", err);
}

static void
conn_on_client_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, cwrite);
	size_t before = pipe_held(&c->down);

	c->cw_busy = 0;
	if (c->state == DL_CLOSING)
		return;
	if (status < 0) {
		client_write_failed(c, status);
		return;
	}
	pipe_consume(&c->down, c->cw_nsegs);
	/* all written: the block's free rest is not worth holding against
	 * memory_limit while the download may wait (a head, a last chunk) */
	pipe_release_cur(&c->down);
	c->d.body_out += before - pipe_held(&c->down);
	c->px->stats.bytes_out += before - pipe_held(&c->down);
	kick_client_timer(c);
	if (c->px->mem_head != NULL || c->px->mem_full)
		conn_memory_wake(c->px);
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

/*
 * uv_write() of n segments.  libuv's uv_write2() (1.44, Debian 12's, and
 * upstream's as of this writing) counts the request active, then mallocs a
 * copy of more than 4 bufs and, when that fails, returns UV_ENOMEM with the
 * request still counted: uv_run() then never returns, and the proxy hangs
 * after its drain on SIGTERM until it is killed (found by
 * tests/integration/test_faults.py).  The count is given back when it grew
 * (a libuv that fixes this leaves it as it was).
 */
static int
write_segs(uv_write_t *req, uv_stream_t *s, const uv_buf_t *bufs, size_t n,
    uv_write_cb cb)
{
	unsigned int before = s->loop->active_reqs.count;
	int rc = uv_write(req, s, bufs, (unsigned)n, cb);

	if (rc == UV_ENOMEM && s->loop->active_reqs.count == before + 1)
		s->loop->active_reqs.count--;
	return rc;
}

/*
 * A spool read failed (down.error): the bytes behind the failure cannot be
 * sent, and skipping them would hand the client a corrupt body.  What is
 * in memory ahead of the spool goes out, then the response ends short, as
 * its framing shows (finish_response).
 */
void
spool_failed(struct conn *c)
{
	log_ratelimited(&c->px->log_spill, LOG_LVL_WARN,
	    "conn %llu %s: spool read: %s after %llu of %llu body bytes "
	    "sent; ending the client's response short",
	    (unsigned long long)c->id, c->peer, strerror(-c->down.error),
	    (unsigned long long)c->d.body_out,
	    (unsigned long long)c->d.resp_body_in);
	pipe_drop_spooled(&c->down);
	c->down.error = 0; /* handled: nothing is left to read back */
	c->d.outcome = OUTCOME_SPOOL_ERROR;
	c->d.short_end = 1;
	c->close_after = 1;
	uv_timer_stop(&c->ptimer);
	close_upstream(c);
	memory_unqueue(c);
	if (c->state < DL_FLUSHING)
		set_state(c, DL_FLUSHING);
}

void
flush_client(struct conn *c)
{
	uv_buf_t bufs[MAX_IOV];
	size_t n;
	int rc;

	if (c->state >= DL_LINGERING || c->cw_busy)
		return;
	if (pipe_kernel_next(&c->down)) {
		/* what the kernel pipe holds goes before memory's bytes, and
		 * the spool's of the zero-copy path after them */
		splice_flush(c);
		return;
	}
	n = pipe_peek(&c->down, bufs, write_batch(c));
	if (c->down.error != 0) {
		/* what memory holds ahead of the failure still goes out:
		 * peek it again once the spool is dropped.  Also when the
		 * response already ends short (its upstream broke): the bytes
		 * behind the failure would never come, nor the end */
		pipe_unpeek(&c->down);
		spool_failed(c);
		n = pipe_peek(&c->down, bufs, write_batch(c));
	}
	if (n == 0) {
		if (pipe_empty(&c->down) && c->state == DL_FLUSHING)
			finish_response(c);
		return;
	}
	rc = write_segs(&c->cwrite, (uv_stream_t *)&c->client, bufs, n,
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

/*
 * The upstream took no more of the request, and the connection carries no
 * further one: what `up` still holds will never be sent, and a pipelined
 * request kept for later will never be served.  Their blocks go back now:
 * held, they count against memory_limit, and a download waiting for memory
 * could wait for its own.
 */
static void
drop_request_bytes(struct conn *c)
{
	pipe_destroy(&c->up);
	pipe_init(&c->up, &c->gen->pool, c->cfg->buffer.high_watermark,
	    c->cfg->buffer.low_watermark);
	if (c->left.b != NULL) {
		block_unref(c->left.b);
		c->left.b = NULL;
		c->left.n = 0;
	}
}

static void
conn_on_upstream_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, uwrite);

	c->uw_busy = 0;
	if (c->state == DL_CLOSING)
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
		drop_request_bytes(c);
		update_client_reading(c);
		return;
	}
	pipe_consume(&c->up, c->uw_nsegs);
	if (c->d.req_done && pipe_empty(&c->up))
		pipe_trim(&c->up); /* the request is out: hold no block */
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

	if (c->state == DL_CLOSING || c->uw_busy || c->ustate != U_OPEN)
		return;
	n = pipe_peek(&c->up, bufs, MAX_IOV);
	if (n == 0)
		return;
	rc = write_segs(&c->uwrite, (uv_stream_t *)&c->upstream, bufs, n,
	    conn_on_upstream_write);
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
 * block is held in rd_block until the read callback is done with it.  The
 * buffer handed to libuv never reaches past the block (max caps it). */
static void
reserve_read(struct conn *c, struct pipe *p, uv_buf_t *buf, size_t max)
{
	size_t len;

	if (pipe_reserve(p, &buf->base, &len, &c->rd_block) < 0) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
		c->rd_block = NULL;
		return;
	}
	buf->len = len < max ? len : max;
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

/* A request head (and what lingering drops) is read into the worker's
 * small buffer (px->hread), not a pooled block: a connection that sent
 * part of a head, or nothing yet, holds no block and is not counted
 * against memory_limit.  Body bytes are read into `up`'s blocks. */
static void
conn_on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)hint;
	if (c->state <= DL_REQUEST_HEAD || c->state == DL_LINGERING) {
		c->rd_block = NULL;
		*buf = uv_buf_init(c->px->hread, sizeof(c->px->hread));
		return;
	}
	reserve_read(c, &c->up, buf, SIZE_MAX);
}

static void
client_eof(struct conn *c, ssize_t err)
{
	if (c->state <= DL_REQUEST_HEAD || c->state == DL_LINGERING) {
		/* a quiet end between requests, or half a head then gone */
		conn_close(c, 0, NULL, 0);
		return;
	}
	if (!c->d.req_done) {
		conn_close(c, 0, "client gone during request body", (int)err);
		return;
	}
	conn_close(c, 0, "client gone", (int)err);
}

static void
conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct block *b = c->rd_block;

	if (nread > 0 && c->state != DL_LINGERING) {
		if (b != NULL)
			pipe_commit(&c->up, (size_t)nread);
		kick_client_timer(c);
		feed_client(c, buf->base, (size_t)nread);
	} else if (nread == UV_ENOBUFS) {
		conn_close(c, 0, "client read", UV_ENOMEM);
	} else if (nread < 0) {
		client_eof(c, nread);
	}
	release_read(c, b);
}

static void
conn_on_upstream_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, upstream);
	size_t max = SIZE_MAX;

	(void)hint;
	/* pace: read no more than the tokens allow (at least one MSS-ish
	 * piece, so progress never stalls on rounding) */
	if (c->cfg->buffer.policy == POLICY_PACE)
		max = c->d.pace_tokens > 4096 ? (size_t)c->d.pace_tokens : 4096;
	if (max > splice_read_max(c))
		max = splice_read_max(c); /* framing between spliced chunks */
	if (memory_blocked(c)) {
		/* memory_limit: no block for this read; the read callback
		 * sees UV_ENOBUFS and stops reading until memory is ours */
		memory_queue(c);
		*buf = uv_buf_init(NULL, 0);
		c->rd_block = NULL;
		return;
	}
	reserve_read(c, &c->down, buf, max);
	memory_grant_end(c); /* the grant was this read */
}

static void
upstream_eof(struct conn *c, ssize_t err)
{
	if (err == UV_EOF) {
		llhttp_finish(&c->resp); /* ends a close-delimited body */
		if (c->state == DL_FLUSHING) {
			upstream_done(c);
			return;
		}
	}
	if (resend_request(c, (int)err))
		return;
	if (!client_has_head(c))
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
	} else if (nread == UV_ENOBUFS && c->mem_waiting) {
		update_upstream_reading(c); /* waits in the memory queue */
	} else if (nread == UV_ENOBUFS) {
		conn_close(c, 0, "upstream read", UV_ENOMEM);
	} else if (nread < 0) {
		upstream_eof(c, nread);
	}
	release_read(c, b);
}

/* ---- the deadlines' callbacks ------------------------------------------ */

void
conn_on_utimer(uv_timer_t *t)
{
	struct conn *c = t->data;

	switch (c->state) {
	case DL_CONNECTING:
		connect_failed(c, UV_ETIMEDOUT);
		break;
	case DL_WAITING:
		if (!client_has_head(c)) {
			respond_error(c, 504, "upstream read timed out");
			break;
		}
		/* a resume's answer is late */
		upstream_broken(c, "read timed out", UV_ETIMEDOUT,
		    OUTCOME_UPSTREAM_TIMEOUT);
		break;
	case DL_RELAYING:
		upstream_broken(c, "read timed out", UV_ETIMEDOUT,
		    OUTCOME_UPSTREAM_TIMEOUT);
		break;
	case DL_RESUME_WAIT:
		resume_now(c);
		break;
	default:
		break;
	}
}

/*
 * A write to the client has been pending for a while.  With zwp on: is
 * its receive window zero (TCP_INFO)?  A window that stays zero for the
 * zwp time is the article's zero-window DoS or a reader that stopped for
 * good: close with RST, which frees the socket's memory at once (a plain
 * close would leave the kernel an orphan probing the same window).  With
 * zwp off: a client that acknowledged nothing in idle_timeout is gone.
 */
static void
client_write_check(struct conn *c)
{
	uint64_t now = uv_now(c->px->loop), zwp = config_client_zwp_ms(c->cfg);
	struct tcpinfo ti;
	uv_os_fd_t fd;
	int ok = uv_fileno((uv_handle_t *)&c->client, &fd) == 0 &&
	    tcpinfo_read(fd, &ti) == 0;

	if (zwp == 0) {
		if (ok && ti.bytes_acked != c->d.cw_acked) {
			c->d.cw_acked = ti.bytes_acked;
			kick_client_timer(c);
			return;
		}
		conn_close(
		    c, 1, "client took nothing for idle_timeout", UV_ETIMEDOUT);
		return;
	}
	if (ok && ti.snd_wnd == 0) {
		if (c->d.czw_since == 0)
			c->d.czw_since = now;
		if (now - c->d.czw_since >= zwp) {
			c->d.outcome = OUTCOME_CLIENT_ZWP_TIMEOUT;
			c->px->stats.client_zwp_timeouts++;
			conn_close(
			    c, 1, "client window zero for zwp_timeout", 0);
			return;
		}
	} else {
		c->d.czw_since = 0;
	}
	uv_timer_start(&c->ctimer, conn_on_ctimer,
	    zwp < ZWP_CHECK_MS ? zwp : ZWP_CHECK_MS, 0);
}

/* Has a client we are not reading closed or reset its connection?  (As
 * nginx checks a client while it waits on the upstream: a FIN then counts
 * as gone, also behind pipelined bytes not read yet, which POLLRDHUP sees
 * and a peek would not.) */
static int
client_gone(const struct conn *c)
{
	struct pollfd p = {.events = POLLIN | POLLRDHUP};
	uv_os_fd_t fd;

	if (c->creading || uv_fileno((const uv_handle_t *)&c->client, &fd) != 0)
		return 0;
	p.fd = fd;
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void
conn_on_ctimer(uv_timer_t *t)
{
	struct conn *c = t->data;

	switch (c->state) {
	case DL_IDLE: /* keep-alive, or a connection that never asked */
	case DL_LINGERING:
		conn_close(c, 0, NULL, 0);
		return;
	case DL_REQUEST_HEAD:
		respond_error(
		    c, 408, "request head timed out (header_timeout)");
		return;
	case DL_CLOSING:
	case DL_NSTATES:
		return;
	default:
		break;
	}
	if (c->cw_busy) {
		client_write_check(c);
	} else if (!c->d.req_done && c->creading) {
		conn_close(
		    c, 0, "client stalled in request body", UV_ETIMEDOUT);
	} else if (client_gone(c)) {
		conn_close(c, 0, "client gone while its download waited", 0);
	} else {
		kick_client_timer(c); /* it waits on us, not we on it */
	}
}
