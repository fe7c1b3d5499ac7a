/*
 * conn: see conn.h.  This file holds a connection's life: its accept, the
 * start of each request (begin_request, which parses what the client
 * pipelined), the end of each response (finish_response: the next request
 * or a graceful close), the one teardown (conn_close, freeing in
 * conn_on_handle_close), the rest of the public conn_* API, the access log
 * and /connections.
 *
 * The life of a download (docs/architecture.md, "The life of one download"):
 *
 *   client bytes -> llhttp (request) -> head rewritten into `up`, body
 *   slices pushed into `up` as they are (or chunk-framed); the upstream is
 *   connected and `up` is written to it.  Upstream bytes -> llhttp
 *   (response) -> head rewritten into `down`, body slices pushed into
 *   `down`; `down` is written to the client.
 *
 * The files of a connection (struct conn and what they share: conn_int.h):
 *
 *   conn.c           its life, as above
 *   conn_http.c      both llhttp parsers' callbacks: the heads, their
 *                    rewrite toward each side, body framing, the proxy's
 *                    own error answers
 *   conn_io.c        reads from and writes to both sockets, what starts and
 *                    stops each read (watermarks, memory_limit, pace), the
 *                    client and upstream timers
 *   conn_upstream.c  the upstream of a request: its server, connect, retry
 *                    and close; a failure mid-body and its resume
 *
 * Invariants: at most one write in flight per direction; `nhandles` counts
 * the handles not yet closed, and the conn is freed when it reaches 0 after
 * conn_close(); write callbacks may arrive with UV_ECANCELED after a close
 * started and then touch nothing but the flags of this still-live conn.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/http.h"
#include "base/json.h"
#include "base/list.h"
#include "base/log.h"
#include "base/sockopt.h"
#include "base/tcpinfo.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/conn_int.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

static void begin_request(struct conn *c);
static void access_log(struct conn *c);

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

/* ---- the download's state ---------------------------------------------- */

const char *const state_names[DL_NSTATES] = {
    [DL_IDLE] = "idle",
    [DL_REQUEST_HEAD] = "request_head",
    [DL_CONNECTING] = "connecting",
    [DL_WAITING] = "waiting_response",
    [DL_RELAYING] = "relaying",
    [DL_RESUME_WAIT] = "resume_wait",
    [DL_FLUSHING] = "flushing",
    [DL_LINGERING] = "lingering",
    [DL_CLOSING] = "closing",
};

/*
 * The one way a download changes phase: logs the transition (debug) and
 * arms the new state's deadline (arm_deadline), which also disarms the
 * old one's.  Entering the state it is in re-arms the deadline (a connect
 * to the next server gets its own connect_timeout).
 */
void
set_state(struct conn *c, enum dl_state s)
{
	if (c->state != s) {
		log_debug("conn %llu: %s -> %s", (unsigned long long)c->id,
		    state_names[c->state], state_names[s]);
		c->state = s;
		c->state_since = uv_now(c->px->loop);
	}
	arm_deadline(c);
}

/* Has the client been sent a response head (ours or the upstream's)? */
int
client_has_head(const struct conn *c)
{
	return (c->state >= DL_RELAYING && c->state <= DL_FLUSHING) ||
	    c->d.resuming;
}

/* ---- closing ---------------------------------------------------------- */

static void
conn_free(struct conn *c)
{
	pipe_destroy(&c->up);
	pipe_destroy(&c->down);
	if (c->left.b != NULL)
		block_unref(c->left.b);
	http_head_free(&c->reqh);
	http_head_free(&c->resph);
	free(c->d.req_copy);
	list_remove(&c->link);
	/* last: the generation may go with it, and its pool */
	proxy_conn_gone(c->px, c->gen);
	free(c);
}

void
conn_on_handle_close(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (h == (uv_handle_t *)&c->upstream)
		c->ustate = U_NONE;
	if (--c->nhandles == 0 && c->state == DL_CLOSING)
		conn_free(c);
}

/*
 * The one teardown: logs once (when reason is not NULL), closes every handle
 * (the client with RST when reset), frees the conn in the last close
 * callback.
 */
void
conn_close(struct conn *c, int reset, const char *reason, int err)
{
	if (c->state == DL_CLOSING)
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
	if (c->state != DL_IDLE && !c->d.logged) {
		/* out of memory is the proxy's failure, not the client's */
		if (c->d.outcome == OUTCOME_N)
			c->d.outcome = err == UV_ENOMEM || err == UV_ENOBUFS
			    ? OUTCOME_PROXY_ERROR
			    : OUTCOME_CLIENT_GONE;
		access_log(c);
	}
	close_upstream(c);
	release_server(c);
	memory_unqueue(c);
	splice_end(c);
	set_state(c, DL_CLOSING);
	uv_close((uv_handle_t *)&c->ctimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->utimer, conn_on_handle_close);
	uv_close((uv_handle_t *)&c->ptimer, conn_on_handle_close);
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

	if (c->state == DL_CLOSING)
		return;
	if (status < 0)
		conn_close(c, 0, NULL, 0);
}

/*
 * Ends the connection once everything queued was written: our FIN, then a
 * lingering close (as nginx's lingering_close): read and drop what the
 * client still sends for LINGER_MS, so that our close does not turn unread
 * input into a RST that could destroy the response in flight.
 */
static void
graceful_close(struct conn *c)
{
	if (c->state >= DL_LINGERING)
		return;
	c->close_after = 1;
	close_upstream(c);
	set_state(c, DL_LINGERING);
	update_client_reading(c);
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->client,
	        conn_on_shutdown) < 0)
		conn_close(c, 0, NULL, 0);
}

/* ---- the end of a response ------------------------------------------- */

static const char *const policy_names[] = {"pause", "spill", "pace"};

/* The request target for /connections: with show_query off, what follows
 * '?' is replaced by <redacted> (query strings carry tokens and session
 * ids, and /connections is read by more people than the access log). */
static void
json_target(const struct conn *c, FILE *out, int show_query)
{
	char t[sizeof(c->d.target) + 16];
	size_t n = strcspn(c->d.target, "?");

	if (show_query || c->d.target[n] == '\0') {
		json_string(out, c->d.target);
		return;
	}
	snprintf(t, sizeof(t), "%.*s?<redacted>", (int)n, c->d.target);
	json_string(out, t);
}

/* The fields the access log and /connections share: ,"client":…,
 * "upstream":…,"method":…,"path":…,"status":…,"policy":…  The access
 * log keeps the query (as nginx's $request_uri); /connections redacts it
 * unless [admin] show_query is on. */
static void
json_download(const struct conn *c, FILE *out, int show_query)
{
	const struct config *cfg = c->cfg;

	fprintf(out, ",\"client\":\"%s\",\"upstream\":", c->peer);
	if (c->server >= 0)
		json_string(out, cfg->upstream.servers[c->server].text);
	else
		fputs("null", out);
	fprintf(out, ",\"method\":");
	json_string(out, c->d.method);
	fprintf(out, ",\"path\":");
	json_target(c, out, show_query);
	fprintf(out, ",\"status\":%d,\"policy\":\"%s\"", c->d.status,
	    policy_names[cfg->buffer.policy]);
}

/* The access line's fields into out, newline included. */
static void
format_access(const struct conn *c, FILE *out)
{
	uint64_t now = uv_now(c->px->loop);
	char when[40];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(out, "{\"time\":\"%s.%03ldZ\"", when, ts.tv_nsec / 1000000);
	json_download(c, out, 1);
	fprintf(out,
	    ",\"bytes_from_upstream\":%llu,"
	    "\"bytes_to_client\":%llu,\"peak_memory\":%llu,"
	    "\"spilled_bytes\":%llu,\"spliced\":%llu,\"paused_s\":%.3f,"
	    "\"resumes\":%d,\"upstream_reused\":%s,"
	    "\"outcome\":\"%s\",\"duration_s\":%.3f}\n",
	    (unsigned long long)c->d.resp_body_in,
	    (unsigned long long)c->d.body_out,
	    (unsigned long long)c->d.peak_mem,
	    (unsigned long long)(c->down.spool.written - c->d.spilled0),
	    (unsigned long long)c->d.spliced, (double)c->d.paused_ms / 1000.0,
	    c->d.resumes, c->d.up_reused ? "true" : "false",
	    outcome_names[c->d.outcome], (double)(now - c->d.t_start) / 1000.0);
}

/*
 * The access line: one JSON object per download, at its end, to [log]
 * access or stderr; also counts it for /metrics.  Once per request.  The
 * line is built in memory and goes out in one write(2) (stderr is
 * unbuffered, and fprintf to it wrote a character at a time),
 * so that lines of a shared stream or an O_APPEND file never interleave.
 * Out of memory, the line is dropped.
 */
static void
access_log(struct conn *c)
{
	struct proxy *px = c->px;
	int fd = px->access != NULL ? fileno(px->access) : STDERR_FILENO;
	char *line = NULL;
	size_t len = 0;
	FILE *out;

	if (c->d.logged)
		return;
	c->d.logged = 1;
	end_pause(c);
	if (c->d.outcome == OUTCOME_N)
		c->d.outcome = OUTCOME_COMPLETE;
	px->stats.downloads[c->d.outcome]++;
	if ((out = open_memstream(&line, &len)) == NULL)
		return;
	format_access(c, out);
	if (fclose(out) == 0)
		log_write(fd, line, len);
	free(line);
}

/* `down` is empty and the response has ended, well or not. */
void
finish_response(struct conn *c)
{
	if (c->d.short_end) {
		access_log(c);
		release_server(c);
		/* A close-delimited body cannot show truncation by framing:
		 * reset, so the client never takes the short body as whole. */
		if (c->d.resp_by_close)
			conn_close(c, 1, NULL, 0);
		else
			graceful_close(c);
		return;
	}
	access_log(c);
	uv_timer_stop(&c->ptimer);
	close_upstream(c);
	release_server(c);
	if (c->close_after || !c->d.keepalive || !c->d.req_done ||
	    c->px->draining) {
		graceful_close(c);
		return;
	}
	begin_request(c);
}

/* ---- a connection's start and its requests --------------------------- */

/* Resets the per-request state and parses whatever the client pipelined. */
static void
begin_request(struct conn *c)
{
	struct block *b;

	free(c->d.req_copy);
	splice_end(c); /* an idle connection holds no pipe, no poll */
	c->d = (struct download){
	    .outcome = OUTCOME_N,
	    .spilled0 = c->down.spool.written,
	};
	c->down.wm.npauses = 0;
	c->down.bytes_in = c->down.bytes_out = 0;
	llhttp_resume(&c->reqp); /* an Upgrade's pause: feed_client */
	set_state(c, DL_IDLE);
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
	if (c->state == DL_IDLE)
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
	if (c->state == DL_CLOSING)
		return 0;
	c->close_after = 1;
	if (c->state == DL_IDLE && c->served) {
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

int
conn_accept(struct proxy *px, uv_stream_t *server)
{
	struct proxy_gen *gen = px->gen;
	const struct config *cfg = gen->cfg;
	size_t hsz = (size_t)cfg->client.max_header_size;
	static uv_once_t settings = UV_ONCE_INIT;
	struct conn *c;

	/* once, whichever worker accepts first ([proxy] workers) */
	uv_once(&settings, conn_init_settings);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM; /* the connection is still the listener's */
	c->px = px;
	c->gen = gen;
	c->cfg = cfg;
	proxy_gen_hold(gen); /* dropped by conn_free, whatever happens next */
	/* unique across workers: worker w of n numbers w, n + w, ... */
	c->id = ++px->next_id * px->sh->nworkers + px->worker;
	c->server = -1;
	c->upoll_fd = c->cpoll_fd = -1;
	c->state_since = uv_now(px->loop);
	uv_tcp_init(px->loop, &c->client);
	uv_timer_init(px->loop, &c->ctimer);
	uv_timer_init(px->loop, &c->utimer);
	uv_timer_init(px->loop, &c->ptimer);
	c->client.data = c->ctimer.data = c->utimer.data = c;
	c->ptimer.data = c;
	c->nhandles = 4;
	pipe_init(&c->up, &gen->pool, cfg->buffer.high_watermark,
	    cfg->buffer.low_watermark);
	pipe_init(&c->down, &gen->pool, cfg->buffer.high_watermark,
	    cfg->buffer.low_watermark);
	if (cfg->buffer.policy == POLICY_SPILL)
		pipe_spill_setup(
		    &c->down, &gen->spill, (size_t)cfg->buffer.high_watermark);
	/* each grown as far as max_header_size while a head needs it */
	http_head_init_owned(&c->reqh, hsz);
	http_head_init_owned(&c->resph, hsz);
	llhttp_init(&c->reqp, HTTP_REQUEST, &conn_req_settings);
	c->reqp.data = c;
	list_insert_head(&px->conns, &c->link);
	px->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->client) < 0) {
		conn_close(c, 0, NULL, 0);
		return 0;
	}
	describe_peer(c);
	client_socket_options(c);
	log_debug("conn %llu: accepted %s", (unsigned long long)c->id, c->peer);
	begin_request(c);
	return 0;
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

void
conn_describe(const struct conn *c, FILE *out, int show_query)
{
	uint64_t now = uv_now(c->px->loop);
	uint64_t paused = c->d.paused_ms +
	    (c->d.pause_start != 0 ? now - c->d.pause_start : 0);

	fprintf(out, "{\"id\":%llu,\"state\":\"%s\",\"state_s\":%.3f",
	    (unsigned long long)c->id, state_names[c->state],
	    (double)(now - c->state_since) / 1000.0);
	json_download(c, out, show_query);
	fprintf(out,
	    ",\"memory_bytes\":%zu,\"pipe_bytes\":%zu,"
	    "\"spool_bytes\":%llu,\"upstream_paused\":%s,\"paused_s\":%.3f,"
	    "\"bytes_from_upstream\":%llu,\"bytes_to_client\":%llu,"
	    "\"resumes\":%d,\"age_s\":%.3f",
	    pipe_memory(&c->down) + pipe_kernel(&c->down),
	    pipe_kernel(&c->down), (unsigned long long)pipe_spooled(&c->down),
	    c->d.pause_start != 0 ? "true" : "false", (double)paused / 1000.0,
	    (unsigned long long)c->d.resp_body_in,
	    (unsigned long long)c->d.body_out, c->d.resumes,
	    c->state != DL_IDLE ? (double)(now - c->d.t_start) / 1000.0 : 0.0);
	describe_socket(out, "client_tcp", &c->client, c->state != DL_CLOSING);
	describe_socket(out, "upstream_tcp", &c->upstream, c->ustate == U_OPEN);
	fputc('}', out);
}
