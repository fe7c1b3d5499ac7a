/*
 * conn: see conn.h.
 *
 * The life of a download (DESIGN "The life of one download"):
 *
 *   client bytes -> llhttp (request) -> head rewritten into `up`, body
 *   slices pushed into `up` as they are (or chunk-framed); the upstream is
 *   connected and `up` is written to it.  Upstream bytes -> llhttp
 *   (response) -> head rewritten into `down`, body slices pushed into
 *   `down`; `down` is written to the client.
 *
 * Backpressure (policy pause): when `down` holds high_watermark bytes the
 * upstream is no longer read, so the kernel's receive queue fills and the
 * upstream is shown a zero window; when the client has drained `down` to
 * low_watermark reading resumes.  `up` does the same toward the client for
 * request bodies.  The read timer toward the upstream runs only while the
 * proxy reads it: a paused upstream is not "idle".
 *
 * Framing: llhttp strips the incoming framing; the proxy frames what it
 * sends itself.  Content-Length is passed through; chunked and
 * close-delimited responses go to HTTP/1.1 clients chunked, to HTTP/1.0
 * clients close-delimited.  A download whose upstream fails mid-body is
 * never ended cleanly: the client gets every byte that arrived, then a
 * close that its framing shows as short (no last chunk, fewer bytes than
 * Content-Length) or, for a close-delimited body, a reset.
 *
 * Invariants: at most one write in flight per direction; `nhandles` counts
 * the handles not yet closed, and the conn is freed when it reaches 0 after
 * conn_close(); write callbacks may arrive with UV_ECANCELED after a close
 * started and then touch nothing but the flags of this still-live conn.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/http.h"
#include "base/json.h"
#include "base/list.h"
#include "base/log.h"
#include "base/range.h"
#include "base/sockopt.h"
#include "base/tcpinfo.h"
#include "proxy/balancer.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

#define MAX_IOV   64   /* segments per uv_write */
#define LINGER_MS 2000 /* discard client input this long after FIN */

enum ustate {
	U_NONE = 0, /* no upstream handle */
	U_CONNECTING,
	U_OPEN,
	U_CLOSING, /* uv_close() called, close callback pending */
};

enum frame {
	FRAME_NONE = 0, /* no body */
	FRAME_RAW,      /* body bytes as they are (Content-Length or close) */
	FRAME_CHUNKED,  /* the proxy adds chunk framing */
};

struct conn {
	struct proxy *px;
	struct proxy_gen *gen;    /* the config generation it started on */
	const struct config *cfg; /* gen->cfg, for the whole connection */
	struct list_node link;    /* px->conns */
	uint64_t id;
	int nhandles;

	uv_tcp_t client;
	uv_tcp_t upstream;
	uv_timer_t ctimer; /* client: idle_timeout, zwp checks, lingering */
	uv_timer_t utimer; /* upstream: connect_timeout, read_timeout */
	uv_timer_t ptimer; /* policy pace: the token bucket's tick */
	uv_timer_t rtimer; /* resume_backoff */
	uv_connect_t connect_req;
	uv_write_t cwrite, uwrite;
	uv_shutdown_t shutdown_req;
	size_t cw_nsegs, uw_nsegs;
	size_t cw_bytes;

	llhttp_t reqp, resp;
	struct http_head reqh, resph;
	char *headbuf;

	struct pipe up;         /* request body toward the upstream */
	struct pipe down;       /* response toward the client */
	struct block *rd_block; /* block of the read being parsed */
	struct {
		struct block *b; /* pipelined bytes of the next request */
		const char *p;
		size_t n;
	} left;

	char peer[INET6_ADDRSTRLEN + 8];
	char peer_ip[INET6_ADDRSTRLEN];

	/* the current request */
	char method[24];
	char target[160];
	int minor; /* client's HTTP/1.x minor version */
	enum frame req_frame;
	enum frame resp_frame;
	int status;
	int err_status; /* set by a parser callback that fails */
	uint64_t t_start;
	uint64_t body_out; /* response bytes written to the client */
	int server;        /* balancer index, -1: none held */
	uint64_t tried;    /* servers tried for this request */
	int last_connect_err;
	enum ustate ustate;

	unsigned keepalive : 1; /* the client allows another request */
	unsigned is_head : 1;
	unsigned req_started : 1;
	unsigned req_head_done : 1;
	unsigned req_done : 1;
	unsigned resp_head_sent : 1;
	unsigned resp_done : 1;
	unsigned resp_by_close : 1; /* body delimited by our close */
	unsigned upstream_failed : 1;
	unsigned close_after : 1; /* no further request on this conn */
	unsigned cw_busy : 1, uw_busy : 1;
	unsigned creading : 1, ureading : 1;
	unsigned retry_connect : 1, connect_pending : 1;
	unsigned lingering : 1, shutting : 1;
	unsigned closing : 1;
	unsigned logged : 1;         /* the access line of this request */
	unsigned resuming : 1;       /* the next response continues a body */
	unsigned resume_wait : 1;    /* a resume is waiting for rtimer */
	unsigned client_range : 1;   /* the client sent Range */
	unsigned spill_fellback : 1; /* counted in stats.spill_fallbacks */
	unsigned served : 1;         /* a request began on this connection */

	/* the access log and /connections */
	enum outcome outcome;
	uint64_t resp_body_in;  /* response body bytes from upstreams */
	uint64_t peak_mem;      /* most bytes `down` held in memory */
	uint64_t paused_ms;     /* upstream reads stopped, this request */
	uint64_t pause_start;   /* when they stopped (0: reading) */
	uint64_t spilled0;      /* down.spool.written when it began */
	uint64_t spool_written; /* down.spool.written counted in stats */
	unsigned spool_starts;  /* down.spool.starts counted in stats */

	/* zero-window watch toward the client */
	uint64_t czw_since; /* when its window was first seen zero */

	/* policy pace */
	double pace_rate;      /* the client's drain rate, bytes/s */
	double pace_tokens;    /* bytes the upstream may still be read */
	uint64_t pace_drained; /* client bytes since the last tick */
	uint64_t pace_last;    /* ms of the last tick */
	uint64_t pace_acked;   /* the client's tcpi_bytes_acked then */

	/* resume */
	char *req_copy;       /* the request head as sent upstream */
	int resume_tries;     /* resumes in a row that brought no byte */
	uint64_t resume_from; /* resp_body_in at the last resume */
	size_t req_copy_len;
	char validator[128]; /* strong ETag or Last-Modified */
	uint64_t resp_total; /* the response's Content-Length */
	int resumes;
};

static llhttp_settings_t req_settings, resp_settings;
static int settings_ready;

static void begin_request(struct conn *c);
static void flush_client(struct conn *c);
static void flush_upstream(struct conn *c);
static void start_upstream(struct conn *c);
static void connect_upstream(struct conn *c);
static void respond_error(struct conn *c, int status, const char *detail);
static void access_log(struct conn *c);
static void conn_close(struct conn *c, int reset, const char *reason, int err);

struct conn *
conn_first(const struct proxy *px)
{
	return list_item(px->conns.first, struct conn, link);
}

struct conn *
conn_next(const struct conn *c)
{
	return list_item(c->link.next, struct conn, link);
}

/* ---- timers --------------------------------------------------------- */

static void conn_on_ctimer(uv_timer_t *t);
static void conn_on_utimer(uv_timer_t *t);

#define ZWP_CHECK_MS                                                           \
	250 /* how often a stuck client write looks at TCP_INFO                \
	     */

/*
 * The client timer is a watchdog.  While a write to the client is pending
 * it looks every ZWP_CHECK_MS whether the client's window is zero
 * (zwp_timeout); otherwise it fires idle_timeout after the last progress,
 * and conn_on_ctimer decides whether the client was the one holding things
 * up.
 */
static void
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
static void
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
static void
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
static void
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
static void
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

static void
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

static void
check_up(struct conn *c)
{
	if (wm_check(&c->up.wm, pipe_load(&c->up)) != WM_NONE)
		update_client_reading(c);
}

/* ---- closing ---------------------------------------------------------- */

static void
release_server(struct conn *c)
{
	if (c->server >= 0) {
		balancer_release(&c->gen->bal, c->server);
		c->server = -1;
	}
}

static void
conn_free(struct conn *c)
{
	pipe_destroy(&c->up);
	pipe_destroy(&c->down);
	if (c->left.b != NULL)
		block_unref(c->left.b);
	free(c->headbuf);
	free(c->req_copy);
	list_remove(&c->link);
	/* last: the generation may go with it, and its pool */
	proxy_conn_gone(c->px, c->gen);
	free(c);
}

static void
conn_on_handle_close(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (h == (uv_handle_t *)&c->upstream)
		c->ustate = U_NONE;
	if (--c->nhandles == 0 && c->closing)
		conn_free(c);
}

/* The upstream's close callback; also where a retry or the next request's
 * connect starts, since a uv_tcp_t may be reused only after it closed. */
static void
conn_on_upstream_close(uv_handle_t *h)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, upstream);

	if (c->closing) {
		conn_on_handle_close(h); /* may free c: touch nothing after */
		return;
	}
	conn_on_handle_close(h);
	if (c->retry_connect) {
		c->retry_connect = 0;
		start_upstream(c);
	} else if (c->connect_pending) {
		c->connect_pending = 0;
		connect_upstream(c);
	}
}

static void
close_upstream(struct conn *c)
{
	if (c->ustate != U_CONNECTING && c->ustate != U_OPEN)
		return;
	uv_timer_stop(&c->utimer);
	c->ureading = 0;
	c->ustate = U_CLOSING;
	uv_close((uv_handle_t *)&c->upstream, conn_on_upstream_close);
}

/*
 * The one teardown: logs once (when reason is not NULL), closes every handle
 * (the client with RST when reset), frees the conn in the last close
 * callback.
 */
static void
conn_close(struct conn *c, int reset, const char *reason, int err)
{
	if (c->closing)
		return;
	if (reason != NULL) {
		if (err != 0)
			log_info("conn %llu %s: closed: %s: %s",
			    (unsigned long long)c->id, c->peer, reason,
			    uv_strerror(err));
		else
			log_info("conn %llu %s: closed: %s",
			    (unsigned long long)c->id, c->peer, reason);
	}
	if (c->req_started && !c->logged) {
		if (c->outcome == OUTCOME_N)
			c->outcome = OUTCOME_CLIENT_GONE;
		access_log(c);
	}
	close_upstream(c);
	release_server(c);
	c->closing = 1;
	uv_close((uv_handle_t *)&c->ctimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->utimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->ptimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->rtimer, conn_on_handle_close);
	if (reset)
		uv_tcp_close_reset(&c->client, conn_on_handle_close);
	else
		uv_close((uv_handle_t *)&c->client, conn_on_handle_close);
}

void
conn_abort(struct conn *c, const char *reason)
{
	conn_close(c, 0, reason, 0);
}

static void
conn_on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c, 0, NULL, 0);
		return;
	}
	/* Lingering close (as nginx's lingering_close): the FIN is out; read
	 * and drop what the client still sends for a moment, so that our
	 * close does not turn unread input into a RST that could destroy the
	 * response in flight. */
	c->lingering = 1;
	uv_timer_start(&c->ctimer, conn_on_ctimer, LINGER_MS, 0);
	update_client_reading(c);
}

/* Ends the connection after everything queued was written. */
static void
graceful_close(struct conn *c)
{
	if (c->closing || c->shutting)
		return;
	c->shutting = 1;
	c->close_after = 1;
	close_upstream(c);
	update_client_reading(c);
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->client,
	        conn_on_shutdown) < 0)
		conn_close(c, 0, NULL, 0);
}

/* ---- the end of a response ------------------------------------------- */

static const char *const policy_names[] = {"pause", "spill", "pace"};

/* The fields the access log and /connections share: ,"client":…,
 * "upstream":…,"method":…,"path":…,"status":…,"policy":… */
static void
json_download(const struct conn *c, FILE *out)
{
	const struct config *cfg = c->cfg;

	fprintf(out, ",\"client\":\"%s\",\"upstream\":", c->peer);
	if (c->server >= 0)
		json_string(out, cfg->upstream.servers[c->server].text);
	else
		fputs("null", out);
	fprintf(out, ",\"method\":");
	json_string(out, c->method);
	fprintf(out, ",\"path\":");
	json_string(out, c->target);
	fprintf(out, ",\"status\":%d,\"policy\":\"%s\"", c->status,
	    policy_names[cfg->buffer.policy]);
}

/*
 * The access line: one JSON object per download, at its end, to [log]
 * access or stderr; also counts it for /metrics.  Once per request.
 */
static void
access_log(struct conn *c)
{
	struct proxy *px = c->px;
	FILE *out = px->access != NULL ? px->access : stderr;
	uint64_t now = uv_now(px->loop);
	char when[40];
	struct timespec ts;
	struct tm tm;

	if (c->logged)
		return;
	c->logged = 1;
	end_pause(c);
	if (c->outcome == OUTCOME_N)
		c->outcome = OUTCOME_COMPLETE;
	px->stats.downloads[c->outcome]++;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(out, "{\"time\":\"%s.%03ldZ\"", when, ts.tv_nsec / 1000000);
	json_download(c, out);
	fprintf(out,
	    ",\"bytes_from_upstream\":%llu,"
	    "\"bytes_to_client\":%llu,\"peak_memory\":%llu,"
	    "\"spilled_bytes\":%llu,\"paused_s\":%.3f,\"resumes\":%d,"
	    "\"outcome\":\"%s\",\"duration_s\":%.3f}\n",
	    (unsigned long long)c->resp_body_in,
	    (unsigned long long)c->body_out, (unsigned long long)c->peak_mem,
	    (unsigned long long)(c->down.spool.written - c->spilled0),
	    (double)c->paused_ms / 1000.0, c->resumes,
	    outcome_names[c->outcome], (double)(now - c->t_start) / 1000.0);
	fflush(out);
}

/* `down` is empty and the response has ended, well or not. */
static void
finish_response(struct conn *c)
{
	if (c->upstream_failed) {
		access_log(c);
		release_server(c);
		/* A close-delimited body cannot show truncation by framing:
		 * reset, so the client never takes the short body as whole. */
		if (c->resp_by_close)
			conn_close(c, 1, NULL, 0);
		else
			graceful_close(c);
		return;
	}
	access_log(c);
	uv_timer_stop(&c->ptimer);
	close_upstream(c);
	release_server(c);
	if (c->close_after || !c->keepalive || !c->req_done ||
	    c->px->draining) {
		graceful_close(c);
		return;
	}
	begin_request(c);
}

/* The upstream failed after the response head went out: deliver what we
 * have, then end the client so the body is visibly short. */
static void conn_on_rtimer(uv_timer_t *t);

/* Can the rest of this body be asked for with Range? (resume = on, a
 * bodiless GET whose head we kept, a 200 with Content-Length and a strong
 * validator, attempts left.) */
static int
resumable(const struct conn *c)
{
	return c->cfg->buffer.resume && c->req_copy != NULL &&
	    c->status == 200 && c->resp_total != 0 && c->validator[0] != '\0' &&
	    c->resp_body_in < c->resp_total &&
	    (uint64_t)c->resume_tries < c->cfg->buffer.resume_attempts;
}

/*
 * The upstream failed after the response head went out.  With resume on,
 * ask for the rest after resume_backoff; otherwise deliver what we have,
 * then end the client so the body is visibly short.
 */
static void
upstream_broken(struct conn *c, const char *why, int err, enum outcome oc)
{
	const char *up =
	    c->server >= 0 ? c->cfg->upstream.servers[c->server].text : "-";

	end_pause(c);
	if (resumable(c)) {
		log_warn("conn %llu %s: upstream %s: %s%s%s after %llu of %llu "
		         "body bytes; resuming in %llu ms",
		    (unsigned long long)c->id, c->peer, up, why,
		    err ? ": " : "", err ? uv_strerror(err) : "",
		    (unsigned long long)c->resp_body_in,
		    (unsigned long long)c->resp_total,
		    (unsigned long long)c->cfg->buffer.resume_backoff);
		close_upstream(c);
		release_server(c);
		c->resume_wait = 1;
		/* attempts count only resumes that brought nothing new: a body
		 * that keeps coming is worth following to its end */
		if (c->resumes > 0 && c->resp_body_in > c->resume_from)
			c->resume_tries = 0;
		c->resume_tries++;
		c->resume_from = c->resp_body_in;
		c->resumes++;
		c->px->stats.resumes++;
		uv_timer_start(&c->rtimer, conn_on_rtimer,
		    c->cfg->buffer.resume_backoff, 0);
		return;
	}
	log_warn("conn %llu %s: upstream %s: %s%s%s after %llu body bytes; "
	         "ending the client's response short",
	    (unsigned long long)c->id, c->peer, up, why, err ? ": " : "",
	    err ? uv_strerror(err) : "", (unsigned long long)c->resp_body_in);
	c->outcome = c->resumes > 0 ? OUTCOME_TRUNCATED : oc;
	c->upstream_failed = 1;
	c->close_after = 1;
	uv_timer_stop(&c->ptimer);
	close_upstream(c);
	update_client_reading(c);
	flush_client(c);
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

static void
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

static void
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

/* Queues body bytes (which lie in the block being parsed) with the framing
 * the next hop needs. */
static int
push_body(
    struct conn *c, struct pipe *p, enum frame fr, const char *at, size_t len)
{
	char hdr[24];
	int n, rc;

	if (fr == FRAME_CHUNKED) {
		n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
		if ((rc = pipe_push_copy(p, hdr, (size_t)n)) < 0)
			return rc;
	}
	if ((rc = pipe_push_ref(p, c->rd_block, at, len)) < 0)
		return rc;
	if (fr == FRAME_CHUNKED)
		return pipe_push_copy(p, "\r\n", 2);
	return 0;
}

/* The proxy's own answer (4xx/5xx) before any response head went out. */
static void
respond_error(struct conn *c, int status, const char *detail)
{
	char *buf = c->px->scratch;
	int n;

	log_info("conn %llu %s: %d for \"%s %s\": %s",
	    (unsigned long long)c->id, c->peer, status, c->method, c->target,
	    detail);
	close_upstream(c);
	c->status = status;
	c->err_status = status;
	c->outcome = status == 502 ? OUTCOME_UPSTREAM_RESET
	    : status == 504        ? OUTCOME_UPSTREAM_TIMEOUT
	                           : OUTCOME_COMPLETE;
	c->close_after = 1;
	c->resp_done = 1;
	c->resp_head_sent = 1;
	update_client_reading(c);
	n = http_error_response(status, detail, buf, c->px->scratch_size);
	if (n < 0 || pipe_push_copy(&c->down, buf, (size_t)n) < 0) {
		conn_close(c, 0, "out of memory", 0);
		return;
	}
	flush_client(c);
}

/* ---- the request (client -> upstream) -------------------------------- */

static struct conn *
of_parser(llhttp_t *p)
{
	return p->data;
}

static int
req_on_message_begin(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	c->req_started = 1;
	c->served = 1;
	c->t_start = uv_now(c->px->loop);
	http_head_reset(&c->reqh);
	return 0;
}

static int
req_overflow(struct conn *c)
{
	c->err_status = 431;
	return -1;
}

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_text(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

static int
req_on_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_name(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

static int
req_on_value(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_value(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

static int
count_fields(const struct http_head *h, const char *name)
{
	size_t nl = strlen(name);
	int n = 0;

	for (size_t i = 0; i < h->nf; i++)
		if (h->f[i].name_len == nl &&
		    strncasecmp(h->buf + h->f[i].name_off, name, nl) == 0)
			n++;
	return n;
}

/* Checks what llhttp leaves to us; returns an HTTP status or 0. */
static int
validate_request(struct conn *c, llhttp_t *p)
{
	int hosts = count_fields(&c->reqh, "host");

	if (llhttp_get_http_major(p) != 1)
		return 505;
	if (llhttp_get_method(p) == HTTP_CONNECT)
		return 501;
	/* RFC 9112 §3.2: a 1.1 request without Host, or with several. */
	if (hosts > 1 || (hosts == 0 && llhttp_get_http_minor(p) >= 1))
		return 400;
	return 0;
}

/* With resume on, a bodiless GET keeps the head it sent upstream, to ask
 * for the rest of the body with Range if the upstream dies. */
static void
keep_for_resume(struct conn *c, llhttp_t *p, const char *head, size_t n)
{
	size_t len;

	c->client_range = http_head_get(&c->reqh, "range", &len) != NULL;
	if (!c->cfg->buffer.resume || llhttp_get_method(p) != HTTP_GET ||
	    c->req_frame != FRAME_NONE || c->client_range)
		return;
	if ((c->req_copy = malloc(n)) == NULL)
		return; /* no resume for this one, no harm */
	memcpy(c->req_copy, head, n);
	c->req_copy_len = n;
}

static int
req_on_headers_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);
	const struct http_head *h = &c->reqh;
	struct http_rewrite rw = {0};
	char via[32];
	int n, st;

	snprintf(c->method, sizeof(c->method), "%s",
	    llhttp_method_name(llhttp_get_method(p)));
	snprintf(c->target, sizeof(c->target), "%.*s", (int)h->text_len,
	    h->buf + h->text_off);
	c->minor = llhttp_get_http_minor(p);
	if ((st = validate_request(c, p)) != 0) {
		c->err_status = st;
		return -1;
	}
	c->req_head_done = 1;
	c->keepalive = llhttp_should_keep_alive(p) != 0;
	c->is_head = llhttp_get_method(p) == HTTP_HEAD;
	if (p->flags & F_CHUNKED)
		c->req_frame = FRAME_CHUNKED;
	else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
		c->req_frame = FRAME_RAW;
	else
		c->req_frame = FRAME_NONE;

	/* One upstream connection per request: no upstream keep-alive. */
	snprintf(via, sizeof(via), "1.%d sluice", c->minor);
	rw.method = c->method;
	rw.connection = "close";
	rw.via = via;
	rw.xff = c->peer_ip;
	rw.chunked = c->req_frame == FRAME_CHUNKED;
	rw.drop_length = rw.chunked;
	n = http_rewrite(h, &rw, c->px->scratch, c->px->scratch_size);
	if (n < 0) {
		c->err_status = 431;
		return -1;
	}
	if (pipe_push_copy(&c->up, c->px->scratch, (size_t)n) < 0) {
		c->err_status = 503;
		return -1;
	}
	keep_for_resume(c, p, c->px->scratch, (size_t)n);
	start_upstream(c);
	return 0;
}

static int
req_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	if (push_body(c, &c->up, c->req_frame, at, len) < 0) {
		c->err_status = 503;
		return -1;
	}
	return 0;
}

static int
req_on_message_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	if (c->req_frame == FRAME_CHUNKED &&
	    pipe_push_copy(&c->up, "0\r\n\r\n", 5) < 0) {
		c->err_status = 503;
		return -1;
	}
	c->req_done = 1;
	/* Stop here: what follows is the next request, parsed when this
	 * response is done (HTTP/1.1 pipelining, in order). */
	return HPE_PAUSED;
}

/* The request could not be parsed or was refused. */
static void
request_failed(struct conn *c, llhttp_errno_t err)
{
	const char *why = llhttp_get_error_reason(&c->reqp);
	int st = c->err_status ? c->err_status : 400;

	if (c->resp_head_sent) {
		conn_close(c, 0, "bad request body after response head", 0);
		return;
	}
	if (why == NULL || *why == '\0')
		why = llhttp_errno_name(err);
	if (st == 431)
		why = "request head too large";
	else if (st == 501)
		why = "method not supported";
	else if (st == 505)
		why = "HTTP version not supported";
	else if (st == 400 && c->err_status == 400)
		why = "missing or repeated Host";
	respond_error(c, st, why);
}

/* Feeds client bytes (which lie in c->rd_block) to the request parser. */
static void
feed_client(struct conn *c, const char *data, size_t n)
{
	llhttp_errno_t err;
	size_t used;

	err = llhttp_execute(&c->reqp, data, n);
	if (c->closing)
		return;
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		used = (size_t)(llhttp_get_error_pos(&c->reqp) - data);
		if (used < n) {
			block_ref(c->rd_block);
			c->left.b = c->rd_block;
			c->left.p = data + used;
			c->left.n = n - used;
		}
	} else if (err != HPE_OK) {
		request_failed(c, err);
		return;
	}
	check_up(c);
	update_client_reading(c);
	flush_upstream(c);
}

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

/* ---- the response (upstream -> client) ------------------------------- */

static int
resp_on_message_begin(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	http_head_reset(&c->resph);
	return 0;
}

static int
resp_on_status(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&of_parser(p)->resph, at, len);
}

static int
resp_on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&of_parser(p)->resph, at, len);
}

static int
resp_on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&of_parser(p)->resph, at, len);
}

/* Pushes the rewritten response head into `down`. */
static int
push_resp_head(struct conn *c, int status, const char *connection, int chunked)
{
	const struct http_head *h = &c->resph;
	char line[160];
	struct http_rewrite rw = {0};
	int n;

	if (h->text_len > 0)
		snprintf(line, sizeof(line), "HTTP/1.1 %d %.*s", status,
		    (int)(h->text_len > 100 ? 100 : h->text_len),
		    h->buf + h->text_off);
	else
		snprintf(line, sizeof(line), "HTTP/1.1 %d %s", status,
		    http_reason(status));
	rw.first_line = line;
	rw.connection = connection;
	rw.via = "1.1 sluice";
	rw.chunked = chunked;
	n = http_rewrite(h, &rw, c->px->scratch, c->px->scratch_size);
	if (n < 0)
		return n;
	return pipe_push_copy(&c->down, c->px->scratch, (size_t)n);
}

/* Keeps what a resume must check: the Content-Length and a strong
 * validator (ETag, else Last-Modified). */
static void
remember_validator(struct conn *c, llhttp_t *p)
{
	const char *v;
	size_t len;

	c->validator[0] = '\0';
	c->resp_total = 0;
	if (c->resp_frame != FRAME_RAW || c->resp_by_close ||
	    !(p->flags & F_CONTENT_LENGTH))
		return;
	c->resp_total = p->content_length;
	v = http_head_get(&c->resph, "etag", &len);
	if (v != NULL && len >= 2 && v[0] == '"' && len < sizeof(c->validator))
		snprintf(
		    c->validator, sizeof(c->validator), "%.*s", (int)len, v);
	else if ((v = http_head_get(&c->resph, "last-modified", &len)) !=
	        NULL &&
	    len < sizeof(c->validator))
		snprintf(
		    c->validator, sizeof(c->validator), "%.*s", (int)len, v);
}

/*
 * The answer to a resume: a 206 whose Content-Range starts at the byte we
 * need, for the same total, with the same validator; its body then goes on
 * the client's as if nothing happened.  Anything else ends the download
 * short, with no further attempt (the representation changed).
 */
static int
check_resumed(struct conn *c, llhttp_t *p, int status)
{
	uint64_t first, last, total;
	const char *v, *cr;
	size_t len, crlen;

	v = http_head_get(
	    &c->resph, c->validator[0] == '"' ? "etag" : "last-modified", &len);
	cr = http_head_get(&c->resph, "content-range", &crlen);
	if (status != 206 || cr == NULL ||
	    range_parse_content_range(cr, crlen, &first, &last, &total) < 0 ||
	    first != c->resp_body_in || total != c->resp_total ||
	    last + 1 != total || v == NULL || len != strlen(c->validator) ||
	    memcmp(v, c->validator, len) != 0 ||
	    !(p->flags & F_CONTENT_LENGTH) ||
	    p->content_length != total - first) {
		log_warn("conn %llu %s: resume refused (status %d, "
		         "Content-Range %.*s); ending the response short",
		    (unsigned long long)c->id, c->peer, status,
		    cr != NULL ? (int)crlen : 1, cr != NULL ? cr : "-");
		c->resume_tries =
		    (int)c->cfg->buffer.resume_attempts; /* no more */
		return -1;
	}
	log_info("conn %llu %s: resumed at byte %llu of %llu",
	    (unsigned long long)c->id, c->peer, (unsigned long long)first,
	    (unsigned long long)total);
	c->resuming = 0;
	return 0;
}

static int
resp_on_headers_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);
	int status = llhttp_get_status_code(p);
	int no_body, keep, chunked_in = (p->flags & F_CHUNKED) != 0;
	const char *connection;

	if (status == 101)
		return -1; /* we never forward Upgrade: a protocol error */
	if (status < 200) {
		/* Interim responses (100 Continue, 103 Early Hints) go to
		 * HTTP/1.1 clients as they come (RFC 9110 §15.2). */
		if (c->minor == 0 || c->resuming)
			return 0;
		return push_resp_head(c, status, NULL, 0) < 0 ? -1 : 0;
	}
	if (c->resuming)
		return check_resumed(c, p, status);
	c->status = status;
	no_body = c->is_head || status == 204 || status == 304;
	c->resp_by_close = 0;
	if (no_body) {
		c->resp_frame = FRAME_NONE;
	} else if (chunked_in || !(p->flags & F_CONTENT_LENGTH)) {
		/* Chunked or close-delimited: chunk it for 1.1 clients. */
		if (c->minor >= 1) {
			c->resp_frame = FRAME_CHUNKED;
		} else {
			c->resp_frame = FRAME_RAW;
			c->resp_by_close = 1;
			c->close_after = 1;
		}
	} else {
		c->resp_frame = FRAME_RAW;
	}
	keep =
	    c->keepalive && !c->close_after && c->req_done && !c->px->draining;
	if (!keep)
		c->close_after = 1;
	connection = !keep ? "close" : c->minor == 0 ? "keep-alive" : NULL;
	if (push_resp_head(c, status, connection,
	        c->resp_frame == FRAME_CHUNKED ||
	            (no_body && chunked_in && c->minor >= 1)) < 0)
		return -1;
	c->resp_head_sent = 1;
	remember_validator(c, p);
	start_pace(c);
	return no_body ? 1 : 0;
}

static int
resp_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	c->resp_body_in += len;
	c->px->stats.bytes_in += len;
	if (c->cfg->buffer.policy == POLICY_PACE) {
		/* reads made while memory was nearly empty need no tokens:
		 * a debt from them would close the window later for nothing */
		c->pace_tokens -= (double)len;
		if (c->pace_tokens < -(double)c->gen->pool.block_size)
			c->pace_tokens = -(double)c->gen->pool.block_size;
	}
	return push_body(c, &c->down, c->resp_frame, at, len) < 0 ? -1 : 0;
}

static int
resp_on_message_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	if (llhttp_get_status_code(p) < 200)
		return 0; /* the final response follows */
	if (c->resp_frame == FRAME_CHUNKED &&
	    pipe_push_copy(&c->down, "0\r\n\r\n", 5) < 0)
		return -1;
	c->resp_done = 1;
	return HPE_PAUSED; /* anything after the response is not ours */
}

/* The whole response arrived. */
static void
upstream_done(struct conn *c)
{
	uv_timer_stop(&c->ptimer);
	end_pause(c);
	close_upstream(c);
	update_client_reading(c);
	flush_client(c);
}

static void
response_failed(struct conn *c, const char *why)
{
	if (c->resp_head_sent)
		upstream_broken(c, why, 0, OUTCOME_TRUNCATED);
	else
		respond_error(c, 502, why);
}

static void
feed_upstream(struct conn *c, const char *data, size_t n)
{
	llhttp_errno_t err = llhttp_execute(&c->resp, data, n);
	char why[128];

	if (c->closing)
		return;
	if (c->resp_done) {
		upstream_done(c);
		return;
	}
	if (err != HPE_OK) {
		snprintf(why, sizeof(why), "invalid response: %s",
		    llhttp_get_error_reason(&c->resp) != NULL
		        ? llhttp_get_error_reason(&c->resp)
		        : llhttp_errno_name(err));
		response_failed(c, why);
		return;
	}
	/* memory_limit is process-wide: the current generation's value */
	if (c->px->cfg->buffer.memory_limit != 0 && !c->px->mem_full &&
	    proxy_memory(c->px) >= c->px->cfg->buffer.memory_limit) {
		/* memory_limit: every download holds (or spills) its reads
		 * until client writes free memory (proxy_memory_check) */
		c->px->mem_full = 1;
		c->px->stats.memory_limit_hits++;
		log_info("memory_limit reached (%llu bytes buffered): upstream "
		         "reads wait",
		    (unsigned long long)proxy_memory(c->px));
	}
	check_down(c);
	flush_client(c);
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

/* ---- connecting to the upstream -------------------------------------- */

static void
connect_failed(struct conn *c, int err)
{
	const struct sockaddr_any *a = &c->cfg->upstream.servers[c->server];

	log_warn("conn %llu %s: connect to %s: %s", (unsigned long long)c->id,
	    c->peer, a->text, uv_strerror(err));
	c->last_connect_err = err;
	release_server(c);
	if (c->ustate == U_NONE) {
		start_upstream(c);
		return;
	}
	/* Nothing was written upstream yet (writes start on connect), so
	 * the next server may take the request as it is. */
	c->retry_connect = 1;
	close_upstream(c);
}

static void
conn_on_connect(uv_connect_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, connect_req);
	char opts[160];

	if (status == UV_ECANCELED || c->closing)
		return;
	if (status < 0) {
		connect_failed(c, status);
		return;
	}
	c->ustate = U_OPEN;
	uv_timer_stop(&c->utimer);
	uv_tcp_nodelay(&c->upstream, 1);
	if (log_enabled(LOG_LVL_DEBUG)) {
		uv_os_fd_t fd;

		if (uv_fileno((uv_handle_t *)&c->upstream, &fd) == 0) {
			sockopt_describe(fd, opts, sizeof(opts));
			log_debug("conn %llu: upstream %s socket: %s",
			    (unsigned long long)c->id,
			    c->cfg->upstream.servers[c->server].text, opts);
		}
	}
	update_upstream_reading(c);
	flush_upstream(c);
}

static void
connect_upstream(struct conn *c)
{
	const struct config *cfg = c->cfg;
	const struct sockaddr_any *a = &cfg->upstream.servers[c->server];
	const char *which = NULL;
	uv_os_fd_t fd;
	int rc;

	rc = uv_tcp_init_ex(c->px->loop, &c->upstream, a->ss.ss_family);
	if (rc < 0) {
		respond_error(c, 503, "cannot create a socket");
		return;
	}
	c->upstream.data = c;
	c->nhandles++;
	c->ustate = U_CONNECTING;
	llhttp_init(&c->resp, HTTP_RESPONSE, &resp_settings);
	c->resp.data = c;
	if (uv_fileno((uv_handle_t *)&c->upstream, &fd) == 0 &&
	    sockopt_upstream(fd, cfg->upstream.rcvbuf,
	        cfg->upstream.window_clamp, cfg->upstream.user_timeout,
	        &which) < 0)
		log_warn("upstream %s: cannot set %s: %s", a->text, which,
		    strerror(errno));
	rc = uv_tcp_connect(&c->connect_req, &c->upstream,
	    (const struct sockaddr *)&a->ss, conn_on_connect);
	if (rc < 0) {
		connect_failed(c, rc);
		return;
	}
	uv_timer_start(
	    &c->utimer, conn_on_utimer, cfg->upstream.connect_timeout, 0);
}

static void
start_upstream(struct conn *c)
{
	int idx = balancer_pick(&c->gen->bal, c->tried);

	if (idx < 0 && c->resp_head_sent) {
		/* a resume found no server: try again later, or end short */
		upstream_broken(c, "resume: no server could be reached",
		    c->last_connect_err, OUTCOME_TRUNCATED);
		return;
	}
	if (idx < 0) {
		respond_error(c,
		    c->last_connect_err == UV_ETIMEDOUT ? 504 : 502,
		    c->last_connect_err == UV_ETIMEDOUT
		        ? "upstream connect timed out"
		        : "no upstream server could be reached");
		return;
	}
	c->server = idx;
	c->tried |= 1ULL << idx;
	balancer_acquire(&c->gen->bal, idx);
	if (c->ustate == U_CLOSING) {
		c->connect_pending = 1; /* the old handle must close first */
		return;
	}
	connect_upstream(c);
}

/* ---- resume ----------------------------------------------------------- */

/* resume_backoff is over: ask a server (the balancer's next pick) for the
 * rest of the body: the original request with Range and If-Range. */
static void
conn_on_rtimer(uv_timer_t *t)
{
	struct conn *c = t->data;
	char *buf = c->px->scratch;
	size_t n = c->req_copy_len - 2; /* up to the head's final CRLF */
	int m;

	if (c->closing || !c->resume_wait)
		return;
	c->resume_wait = 0;
	if (n + 128 + sizeof(c->validator) > c->px->scratch_size)
		goto fail;
	memcpy(buf, c->req_copy, n);
	m = snprintf(buf + n, c->px->scratch_size - n,
	    "Range: bytes=%llu-\r\nIf-Range: %s\r\n\r\n",
	    (unsigned long long)c->resp_body_in, c->validator);
	pipe_destroy(&c->up);
	pipe_init(&c->up, &c->gen->pool, c->cfg->buffer.high_watermark,
	    c->cfg->buffer.low_watermark);
	if (pipe_push_copy(&c->up, buf, n + (size_t)m) < 0)
		goto fail;
	c->resuming = 1;
	c->tried = 0;
	start_upstream(c);
	return;
fail:
	c->resume_tries = (int)c->cfg->buffer.resume_attempts;
	upstream_broken(c, "resume", UV_ENOMEM, OUTCOME_TRUNCATED);
}

/* ---- timers ----------------------------------------------------------- */

static void
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

static void
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

/* ---- a connection's start and its requests --------------------------- */

static void
init_settings(void)
{
	llhttp_settings_init(&req_settings);
	req_settings.on_message_begin = req_on_message_begin;
	req_settings.on_url = req_on_url;
	req_settings.on_header_field = req_on_field;
	req_settings.on_header_value = req_on_value;
	req_settings.on_headers_complete = req_on_headers_complete;
	req_settings.on_body = req_on_body;
	req_settings.on_message_complete = req_on_message_complete;
	llhttp_settings_init(&resp_settings);
	resp_settings.on_message_begin = resp_on_message_begin;
	resp_settings.on_status = resp_on_status;
	resp_settings.on_header_field = resp_on_field;
	resp_settings.on_header_value = resp_on_value;
	resp_settings.on_headers_complete = resp_on_headers_complete;
	resp_settings.on_body = resp_on_body;
	resp_settings.on_message_complete = resp_on_message_complete;
	settings_ready = 1;
}

/* Resets the per-request state and parses whatever the client pipelined. */
static void
begin_request(struct conn *c)
{
	struct block *b;

	c->req_started = c->req_head_done = c->req_done = 0;
	c->resp_head_sent = c->resp_done = c->resp_by_close = 0;
	c->upstream_failed = 0;
	c->status = c->err_status = 0;
	c->body_out = 0;
	c->tried = 0;
	c->last_connect_err = 0;
	c->method[0] = c->target[0] = '\0';
	c->down.wm.npauses = 0;
	c->down.bytes_in = c->down.bytes_out = 0;
	c->logged = c->resuming = c->resume_wait = c->client_range = 0;
	c->spill_fellback = 0;
	c->outcome = OUTCOME_N;
	c->resp_body_in = c->peak_mem = c->paused_ms = c->pause_start = 0;
	c->spilled0 = c->down.spool.written;
	c->czw_since = 0;
	c->validator[0] = '\0';
	c->resp_total = 0;
	c->resumes = c->resume_tries = 0;
	c->resume_from = 0;
	free(c->req_copy);
	c->req_copy = NULL;
	c->req_copy_len = 0;
	llhttp_resume(&c->reqp);
	kick_client_timer(c);
	if (c->left.n > 0) {
		const char *p = c->left.p;
		size_t n = c->left.n;

		b = c->left.b;
		c->left.b = NULL;
		c->left.n = 0;
		c->rd_block = b;
		feed_client(c, p, n);
		c->rd_block = NULL;
		block_unref(b);
	} else {
		/* Idle between requests: hold no buffer memory. */
		pipe_trim(&c->up);
		pipe_trim(&c->down);
	}
	update_client_reading(c);
}

void
conn_drain(struct conn *c)
{
	c->close_after = 1;
	if (!c->req_started && !c->closing)
		conn_close(c, 0, NULL, 0); /* idle between requests */
}

int
conn_retire(struct conn *c)
{
	/* As nginx's old workers after a reload: the download in progress
	 * ends on the old config, then the connection closes, so the
	 * client's next request comes in on a new one.  An idle keep-alive
	 * connection closes now (a client retries a request that meets
	 * this close, RFC 9112 §9.3.1); one that has not sent its first
	 * request yet is kept for that request, which a close could lose. */
	if (c->closing)
		return 0;
	c->close_after = 1;
	if (!c->req_started && c->served) {
		conn_close(c, 0, NULL, 0);
		return 0;
	}
	return 1;
}

static void
describe_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	strcpy(c->peer_ip, "?");
	strcpy(c->peer, "?");
	if (uv_tcp_getpeername(&c->client, (struct sockaddr *)&ss, &len) == 0)
		address_text((struct sockaddr *)&ss, c->peer_ip,
		    sizeof(c->peer_ip), c->peer, sizeof(c->peer));
}

static void
client_socket_options(struct conn *c)
{
	const struct config *cfg = c->cfg;
	const char *which = NULL;
	char opts[160];
	uv_os_fd_t fd;

	uv_tcp_nodelay(&c->client, 1);
	if (uv_fileno((uv_handle_t *)&c->client, &fd) != 0)
		return;
	/* zwp_probes is also the kernel's TCP_USER_TIMEOUT toward clients,
	 * unless user_timeout says otherwise. */
	uint64_t ut = cfg->client.user_timeout;

	if (ut == 0 && cfg->client.zwp_probes != 0)
		ut = config_client_zwp_ms(cfg);
	/* pace measures the client by what it acknowledges and keeps the
	 * backlog in its own small pipe: the kernel must not hold seconds of
	 * it (an autotuned send buffer of megabytes wakes writers only when a
	 * third is free, which would stall the pipe, and the upstream). */
	if (cfg->buffer.policy == POLICY_PACE &&
	    sockopt_notsent_lowat(fd, 2 * c->gen->pool.block_size) < 0)
		log_warn("client %s: cannot set TCP_NOTSENT_LOWAT: %s", c->peer,
		    strerror(errno));
	if (sockopt_client(fd, cfg->client.sndbuf, ut, &which) < 0)
		log_warn("client %s: cannot set %s: %s", c->peer, which,
		    strerror(errno));
	if (log_enabled(LOG_LVL_DEBUG)) {
		sockopt_describe(fd, opts, sizeof(opts));
		log_debug("conn %llu: client %s socket: %s",
		    (unsigned long long)c->id, c->peer, opts);
	}
}

void
conn_accept(struct proxy *px, uv_stream_t *server)
{
	struct proxy_gen *gen = px->gen;
	const struct config *cfg = gen->cfg;
	size_t hsz = (size_t)cfg->client.max_header_size;
	struct conn *c;

	if (!settings_ready)
		init_settings();
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->headbuf = malloc(2 * hsz)) == NULL) {
		free(c);
		log_error("accept: out of memory");
		return;
	}
	c->px = px;
	c->gen = gen;
	c->cfg = cfg;
	proxy_gen_hold(gen); /* dropped by conn_free, whatever happens next */
	c->id = ++px->next_id;
	c->server = -1;
	uv_tcp_init(px->loop, &c->client);
	uv_timer_init(px->loop, &c->ctimer);
	uv_timer_init(px->loop, &c->utimer);
	uv_timer_init(px->loop, &c->ptimer);
	uv_timer_init(px->loop, &c->rtimer);
	c->client.data = c->ctimer.data = c->utimer.data = c;
	c->ptimer.data = c->rtimer.data = c;
	c->nhandles = 5;
	pipe_init(&c->up, &gen->pool, cfg->buffer.high_watermark,
	    cfg->buffer.low_watermark);
	pipe_init(&c->down, &gen->pool, cfg->buffer.high_watermark,
	    cfg->buffer.low_watermark);
	if (cfg->buffer.policy == POLICY_SPILL)
		pipe_spill_setup(
		    &c->down, &gen->spill, (size_t)cfg->buffer.high_watermark);
	http_head_init(&c->reqh, c->headbuf, hsz);
	http_head_init(&c->resph, c->headbuf + hsz, hsz);
	llhttp_init(&c->reqp, HTTP_REQUEST, &req_settings);
	c->reqp.data = c;
	list_insert_head(&px->conns, &c->link);
	px->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->client) < 0) {
		conn_close(c, 0, NULL, 0);
		return;
	}
	describe_peer(c);
	client_socket_options(c);
	log_debug("conn %llu: accepted %s", (unsigned long long)c->id, c->peer);
	begin_request(c);
}

/* ---- /connections ------------------------------------------------------ */

static void
describe_socket(FILE *out, const char *name, const uv_tcp_t *h, int open)
{
	struct tcpinfo ti;
	uv_os_fd_t fd;

	fprintf(out, ",\"%s\":", name);
	if (!open || uv_fileno((const uv_handle_t *)h, &fd) != 0 ||
	    tcpinfo_read(fd, &ti) != 0) {
		fputs("null", out);
		return;
	}
	fprintf(out,
	    "{\"snd_wnd\":%u,\"rcv_space\":%u,\"rcv_queue\":%lld,"
	    "\"snd_queue\":%lld,\"rtt_us\":%u,\"probes\":%u,\"backoff\":%u,"
	    "\"bytes_acked\":%llu,\"bytes_received\":%llu}",
	    ti.snd_wnd, ti.rcv_space, (long long)tcpinfo_inq(fd),
	    (long long)tcpinfo_outq(fd), ti.rtt_us, ti.probes, ti.backoff,
	    (unsigned long long)ti.bytes_acked,
	    (unsigned long long)ti.bytes_received);
}

static const char *
state_name(const struct conn *c)
{
	if (c->closing)
		return "closing";
	if (c->lingering || c->shutting)
		return "closing";
	if (!c->req_started)
		return "idle";
	if (!c->req_head_done)
		return "reading_request";
	if (c->resume_wait)
		return "resume_wait";
	if (c->ustate == U_CONNECTING)
		return "connecting";
	if (!c->resp_head_sent)
		return "waiting_response";
	if (c->resp_done || c->upstream_failed)
		return "flushing";
	return c->ureading ? "relaying" : "paused";
}

void
conn_describe(const struct conn *c, FILE *out)
{
	uint64_t now = uv_now(c->px->loop);
	uint64_t paused =
	    c->paused_ms + (c->pause_start != 0 ? now - c->pause_start : 0);

	fprintf(out, "{\"id\":%llu,\"state\":\"%s\"", (unsigned long long)c->id,
	    state_name(c));
	json_download(c, out);
	fprintf(out,
	    ",\"memory_bytes\":%zu,"
	    "\"spool_bytes\":%llu,\"upstream_paused\":%s,\"paused_s\":%.3f,"
	    "\"bytes_from_upstream\":%llu,\"bytes_to_client\":%llu,"
	    "\"resumes\":%d,\"age_s\":%.3f",
	    pipe_memory(&c->down), (unsigned long long)pipe_spooled(&c->down),
	    c->pause_start != 0 ? "true" : "false", (double)paused / 1000.0,
	    (unsigned long long)c->resp_body_in,
	    (unsigned long long)c->body_out, c->resumes,
	    c->req_started ? (double)(now - c->t_start) / 1000.0 : 0.0);
	describe_socket(out, "client_tcp", &c->client, !c->closing);
	describe_socket(out, "upstream_tcp", &c->upstream, c->ustate == U_OPEN);
	fputc('}', out);
}
