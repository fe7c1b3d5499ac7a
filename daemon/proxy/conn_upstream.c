/*
 * conn_upstream: the upstream side of a connection's request (see conn.c
 * for the other files).  The server the balancer lends the request
 * (start_upstream picks and acquires it, release_server gives it back);
 * the socket's connect, with a retry on the next server while nothing was
 * written to it; its close, whose callback is where a retry or the next
 * request's connect starts, since a uv_tcp_t may be reused only after it
 * closed; and an upstream that fails after the response head went out:
 * with resume on, ask a server for the rest of the body with Range after
 * resume_backoff, otherwise end the client's response short.
 *
 * c->ustate follows the socket: U_CONNECTING (connect_upstream), U_OPEN
 * (conn_on_connect), U_CLOSING (close_upstream), U_NONE once its close
 * callback ran (conn_on_handle_close).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/list.h"
#include "base/log.h"
#include "base/sockopt.h"
#include "proxy/balancer.h"
#include "proxy/config.h"
#include "proxy/conn_int.h"
#include "proxy/keepalive.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

static void connect_upstream(struct conn *c);

/* ---- the server and the upstream socket ------------------------------- */

void
release_server(struct conn *c)
{
	if (c->server >= 0) {
		balancer_release(&c->gen->bal, c->server);
		c->server = -1;
	}
}

/* The upstream's close callback; also where a retry or the next request's
 * connect starts, since a uv_tcp_t may be reused only after it closed. */
static void
conn_on_upstream_close(uv_handle_t *h)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, upstream);

	if (c->state == DL_CLOSING) {
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

void
close_upstream(struct conn *c)
{
	if (c->ustate != U_CONNECTING && c->ustate != U_OPEN)
		return;
	uv_timer_stop(&c->utimer);
	splice_close_upstream(c);
	c->ureading = 0;
	c->ustate = U_CLOSING;
	uv_close((uv_handle_t *)&c->upstream, conn_on_upstream_close);
}

/* ---- an upstream that fails mid-body ---------------------------------- */

/* Can the rest of this body be asked for with Range? (resume = on, a
 * bodiless GET whose head we kept, a 200 with Content-Length and a strong
 * validator, attempts left.) */
static int
resumable(const struct conn *c)
{
	return c->cfg->buffer.resume && c->d.may_resume && c->d.status == 200 &&
	    c->d.resp_total != 0 && c->d.validator[0] != '\0' &&
	    c->d.resp_body_in < c->d.resp_total &&
	    (uint64_t)c->d.resume_tries < c->cfg->buffer.resume_attempts;
}

/*
 * The upstream failed after the response head went out.  With resume on,
 * ask for the rest after resume_backoff; otherwise deliver what we have,
 * then end the client so the body is visibly short.
 */
void
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
		    (unsigned long long)c->d.resp_body_in,
		    (unsigned long long)c->d.resp_total,
		    (unsigned long long)c->cfg->buffer.resume_backoff);
		close_upstream(c);
		release_server(c);
		memory_unqueue(c);
		/* attempts count only resumes that brought nothing new: a body
		 * that keeps coming is worth following to its end */
		if (c->d.resumes > 0 && c->d.resp_body_in > c->d.resume_from)
			c->d.resume_tries = 0;
		c->d.resume_tries++;
		c->d.resume_from = c->d.resp_body_in;
		c->d.resumes++;
		c->px->stats.resumes++;
		set_state(c, DL_RESUME_WAIT); /* its deadline: resume_backoff */
		return;
	}
	log_warn("conn %llu %s: upstream %s: %s%s%s after %llu body bytes; "
	         "ending the client's response short",
	    (unsigned long long)c->id, c->peer, up, why, err ? ": " : "",
	    err ? uv_strerror(err) : "", (unsigned long long)c->d.resp_body_in);
	c->d.outcome = c->d.resumes > 0 ? OUTCOME_TRUNCATED : oc;
	c->d.short_end = 1;
	c->close_after = 1;
	uv_timer_stop(&c->ptimer);
	close_upstream(c);
	memory_unqueue(c);
	set_state(c, DL_FLUSHING);
	update_client_reading(c);
	flush_client(c);
}

/* ---- connecting to the upstream -------------------------------------- */

void
connect_failed(struct conn *c, int err)
{
	const struct sockaddr_any *a = &c->cfg->upstream.servers[c->server];

	log_warn("conn %llu %s: connect to %s: %s", (unsigned long long)c->id,
	    c->peer, a->text, uv_strerror(err));
	c->d.last_connect_err = err;
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

/* The upstream socket is open (connected, or a parked one taken): the
 * request goes out, the response is waited for. */
static void
upstream_open(struct conn *c)
{
	char opts[160];

	c->ustate = U_OPEN;
	set_state(c, DL_WAITING);
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
conn_on_connect(uv_connect_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, connect_req);

	if (status == UV_ECANCELED || c->state == DL_CLOSING)
		return;
	if (status < 0) {
		connect_failed(c, status);
		return;
	}
	upstream_open(c);
}

/* A parked socket of the server ([upstream] keepalive), opened on the
 * connection's handle: 1, or 0 when there is none (or it cannot be
 * opened: then it is closed, and a connect follows). */
static int
take_parked(struct conn *c)
{
	int fd;

	if (c->d.up_fresh || (fd = ka_take(&c->gen->ka, c->server)) < 0)
		return 0;
	if (uv_tcp_init(c->px->loop, &c->upstream) < 0) {
		close(fd);
		return 0;
	}
	c->upstream.data = c;
	c->nhandles++;
	c->ustate = U_CONNECTING; /* a handle to close, whatever follows */
	llhttp_init(&c->resp, HTTP_RESPONSE, &conn_resp_settings);
	c->resp.data = c;
	if (uv_tcp_open(&c->upstream, (uv_os_sock_t)fd) < 0) {
		close(fd);
		c->connect_pending = 1; /* the close callback connects */
		c->d.up_fresh = 1;
		close_upstream(c);
		return 1;
	}
	c->d.up_reused = 1;
	c->px->stats.upstream_reused++;
	log_debug("conn %llu: upstream %s: a kept connection",
	    (unsigned long long)c->id,
	    c->cfg->upstream.servers[c->server].text);
	upstream_open(c);
	return 1;
}

/*
 * The response ended cleanly: the upstream socket is parked for the next
 * request of the generation (keepalive.h) instead of closing, when nothing
 * more is owed on it either way: the request was written whole, no byte
 * came after the response, and neither side of it said close.  The
 * caller closes the handle as always; the parked duplicate keeps the
 * socket open.
 */
void
park_upstream(struct conn *c)
{
	uv_os_fd_t fd;
	int dup;

	if (c->ustate != U_OPEN || !c->d.resp_clean || !c->d.req_done ||
	    c->uw_busy || !pipe_empty(&c->up) || c->px->draining ||
	    c->server < 0 || !llhttp_should_keep_alive(&c->resp))
		return;
	if (uv_fileno((uv_handle_t *)&c->upstream, &fd) < 0 ||
	    (dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return;
	if (ka_park(&c->gen->ka, c->server, dup) < 0)
		close(dup);
}

static void
connect_upstream(struct conn *c)
{
	const struct config *cfg = c->cfg;
	const struct sockaddr_any *a = &cfg->upstream.servers[c->server];
	const char *which = NULL;
	int (*do_connect)(uv_connect_t *, uv_tcp_t *, const struct sockaddr *,
	    uv_connect_cb) = uv_tcp_connect;
	uv_os_fd_t fd;
	int rc;

	if (take_parked(c))
		return;
	rc = uv_tcp_init_ex(c->px->loop, &c->upstream, a->ss.ss_family);
	if (rc < 0) {
		respond_error(c, 503, "cannot create a socket");
		return;
	}
	c->upstream.data = c;
	c->nhandles++;
	c->ustate = U_CONNECTING;
	llhttp_init(&c->resp, HTTP_RESPONSE, &conn_resp_settings);
	c->resp.data = c;
	if (uv_fileno((uv_handle_t *)&c->upstream, &fd) == 0 &&
	    sockopt_upstream(fd, cfg->upstream.rcvbuf,
	        cfg->upstream.window_clamp, cfg->upstream.user_timeout,
	        &which) < 0)
		log_warn("upstream %s: cannot set %s: %s", a->text, which,
		    strerror(errno));
	if (c->px->upstream_connect != NULL)
		do_connect = c->px->upstream_connect; /* fuzz seam: proxy.h */
	rc = do_connect(&c->connect_req, &c->upstream,
	    (const struct sockaddr *)&a->ss, conn_on_connect);
	if (rc < 0) {
		connect_failed(c, rc);
		return;
	}
	set_state(c, DL_CONNECTING); /* a fresh connect_timeout */
}

void
start_upstream(struct conn *c)
{
	int idx = balancer_pick(&c->gen->bal, c->d.tried);

	if (idx < 0 && client_has_head(c)) {
		/* a resume found no server: try again later, or end short */
		upstream_broken(c, "resume: no server could be reached",
		    c->d.last_connect_err, OUTCOME_TRUNCATED);
		return;
	}
	if (idx < 0) {
		respond_error(c,
		    c->d.last_connect_err == UV_ETIMEDOUT ? 504 : 502,
		    c->d.last_connect_err == UV_ETIMEDOUT
		        ? "upstream connect timed out"
		        : "no upstream server could be reached");
		return;
	}
	c->server = idx;
	fault_match(c); /* the rules' match may name the server */
	c->d.tried |= 1ULL << idx;
	balancer_acquire(&c->gen->bal, idx);
	set_state(c, DL_CONNECTING);
	if (c->ustate == U_CLOSING) {
		c->connect_pending = 1; /* the old handle must close first */
		return;
	}
	connect_upstream(c);
}

/*
 * A kept upstream socket closed (or was reset) before any response byte:
 * the server closed it while we sent on it, a race no client should pay
 * for.  An idempotent, bodiless request is sent again, once, on a new
 * connection (the balancer's pick); never anything else.  1 if so.
 */
int
resend_request(struct conn *c, int err)
{
	const char *up =
	    c->server >= 0 ? c->cfg->upstream.servers[c->server].text : "-";

	if (!c->d.up_reused || c->d.resp_started || c->d.resent ||
	    !c->d.may_resend || c->uw_busy || client_has_head(c))
		return 0;
	log_info("conn %llu %s: upstream %s: a kept connection %s before "
	         "answering; sending the request again on a new one",
	    (unsigned long long)c->id, c->peer, up,
	    err == UV_EOF ? "closed" : uv_strerror(err));
	pipe_destroy(&c->up);
	pipe_init(&c->up, &c->gen->pool, c->cfg->buffer.high_watermark,
	    c->cfg->buffer.low_watermark);
	if (pipe_push_head(&c->up, c->d.req_copy, c->d.req_copy_len) < 0)
		return 0;
	c->d.resent = 1;
	c->d.up_reused = 0;
	c->d.up_fresh = 1;
	c->px->stats.upstream_resent++;
	close_upstream(c);
	release_server(c);
	c->d.tried = 0;
	start_upstream(c);
	return 1;
}

/* ---- resume ----------------------------------------------------------- */

/* resume_backoff is over (the deadline of resume_wait): ask a server
 * (the balancer's next pick) for the rest of the body: the original
 * request with Range and If-Range. */
void
resume_now(struct conn *c)
{
	char *buf = c->px->scratch;
	size_t n = c->d.req_copy_len - 2; /* up to the head's final CRLF */
	int m;

	if (n + 128 + sizeof(c->d.validator) > c->px->scratch_size)
		goto fail;
	memcpy(buf, c->d.req_copy, n);
	m = snprintf(buf + n, c->px->scratch_size - n,
	    "Range: bytes=%llu-\r\nIf-Range: %s\r\n\r\n",
	    (unsigned long long)c->d.resp_body_in, c->d.validator);
	pipe_destroy(&c->up);
	pipe_init(&c->up, &c->gen->pool, c->cfg->buffer.high_watermark,
	    c->cfg->buffer.low_watermark);
	if (pipe_push_head(&c->up, buf, n + (size_t)m) < 0)
		goto fail;
	c->d.resuming = 1;
	c->d.tried = 0;
	start_upstream(c);
	return;
fail:
	c->d.resume_tries = (int)c->cfg->buffer.resume_attempts;
	upstream_broken(c, "resume", UV_ENOMEM, OUTCOME_TRUNCATED);
}
