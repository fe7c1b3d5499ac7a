/*
 * admin: see admin.h.
 *
 * One listener and at most ADMIN_MAX_CONNS connections; one more is
 * accepted and closed at once, so a scraper sees a refusal instead of a
 * hang.  Each connection owns its socket and one timer and goes through
 * three phases, each bounded by that timer so that a silent peer cannot
 * hold a slot: the request (parsed by llhttp, head at most ADMIN_MAX_HEAD
 * bytes, all of it within ADMIN_REQUEST_MS), the answer (built whole with
 * open_memstream in one loop turn, so it is a consistent snapshot, then one
 * uv_write that must make progress every ADMIN_WRITE_MS) and a short
 * lingering close: after our FIN we read and drop what the client still
 * sends until its EOF, because closing with unread input makes the kernel
 * send a reset that can destroy the answer in flight (RFC 9112 §9.6).
 *
 * Ownership: a connection is freed in the close callback of its last
 * handle.  struct admin is freed once admin_stop() has closed the listener
 * and the last of its handles and connections has closed.  Write and
 * shutdown callbacks may come with UV_ECANCELED after a close started;
 * they then touch nothing but the still-live connection's flags.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#include "base/list.h"
#include "base/log.h"
#include "base/sockopt.h"
#include "base/tcpinfo.h"
#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/fault.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"
#include "proxy/workers.h"

#define ADMIN_MAX_CONNS  64
#define ADMIN_BACKLOG    64
#define ADMIN_MAX_HEAD   8192  /* request head bytes; more: 431 */
#define ADMIN_URL_MAX    256   /* a longer target is no page of ours */
#define ADMIN_REQUEST_MS 10000 /* the whole request, from accept */
#define ADMIN_WRITE_MS   10000 /* the answer must progress this often */
#define ADMIN_LINGER_MS  2000  /* reading and dropping after our FIN */
/* /connections entries by default and at most (?limit=N): about 1 KiB
 * and a few microseconds each, so the page never holds the loop for long */
#define CONNECTIONS_LIMIT     1000
#define CONNECTIONS_LIMIT_MAX 10000
#define METRICS_TYPE          "text/plain; version=0.0.4; charset=utf-8"
#define JSON_TYPE             "application/json"
#define TEXT_TYPE             "text/plain; charset=utf-8"

enum page {
	PAGE_NONE = 0,
	PAGE_METRICS,
	PAGE_CONNECTIONS,
	PAGE_FAULT, /* admin_fault.c's */
};

struct admin_conn;

/* A TCP or a Unix socket ([admin] address): the stream calls serve both. */
union admin_sock {
	uv_handle_t h;
	uv_stream_t s;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

struct admin {
	struct proxy *px;
	int unix_path; /* [admin] address is a Unix socket path */
	union admin_sock listener;
	union admin_sock refuse; /* takes a connection over the limit to
	                          * close it */
	int refusing;            /* refuse is in use (closing) */
	int pending;  /* the listener holds a connection not accepted */
	int full;     /* the limit was hit; logged once until a slot frees */
	int nhandles; /* listener and refuse, not yet closed */
	int stopping;
	struct list conns; /* of admin_conn */
	size_t nconns;
	char path[108]; /* the Unix socket bound, unlinked at the stop */
};

struct admin_conn {
	struct admin *ad;
	struct list_node link; /* ad->conns */
	union admin_sock tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t sd;
	llhttp_t parser;
	int nhandles; /* tcp and timer, not yet closed */
	int closing;
	int head_done; /* the request head was parsed */
	int complete;  /* the whole request was parsed */
	int answering; /* the answer is on its way: input is dropped */
	int shut;      /* our FIN was sent */
	int peer_eof;
	size_t nhead;  /* bytes given to the parser before head_done */
	size_t unsent; /* answer bytes not taken at the last tick */
	char url[ADMIN_URL_MAX];
	size_t url_len;
	int url_long;
	enum page page; /* the page answered (format_head) */
	char head[320]; /* the response head */
	char text[64];  /* an error's body */
	char *body;     /* a page, from open_memstream: freed with us */
	size_t body_len;
	size_t limit;    /* /connections: entries at most (?limit=N) */
	size_t total;    /* /connections: connections open (X-Total-Count) */
	char rbuf[2048]; /* one read at a time, no malloc per read */
	/* a request body (POST /faults), bounded: past FAULT_BODY_MAX it
	 * is answered 413 without reading the rest */
	char req_body[FAULT_BODY_MAX];
	size_t req_len;
	int req_large;
};

static void admin_on_close(uv_handle_t *h);

/* A handle of the listener's kind. */
static void
sock_init(struct admin *ad, union admin_sock *u)
{
	if (ad->unix_path)
		uv_pipe_init(ad->px->loop, &u->pipe, 0);
	else
		uv_tcp_init(ad->px->loop, &u->tcp);
}

static void
unlink_path(struct admin *ad)
{
	if (ad->path[0] != '\0')
		(void)unlink(ad->path);
	ad->path[0] = '\0';
}
static void admin_on_timeout(uv_timer_t *t);
static void accept_next(struct admin *ad);

/* ---- teardown --------------------------------------------------------- */

static void
maybe_free(struct admin *ad)
{
	if (ad->stopping && ad->nhandles == 0 && ad->nconns == 0)
		free(ad);
}

/* The one teardown of a connection: logs once (when why is not NULL),
 * closes both handles, frees in the last close callback. */
static void
close_conn(struct admin_conn *ac, const char *why, int err)
{
	if (ac->closing)
		return;
	ac->closing = 1;
	if (why != NULL)
		log_debug("admin: connection closed: %s%s%s", why,
		    err != 0 ? ": " : "", err != 0 ? uv_strerror(err) : "");
	uv_close((uv_handle_t *)&ac->timer, admin_on_close);
	uv_close(&ac->tcp.h, admin_on_close);
}

static void
admin_on_close(uv_handle_t *h)
{
	struct admin_conn *ac = h->data;
	struct admin *ad = ac->ad;

	if (--ac->nhandles > 0)
		return;
	list_remove(&ac->link);
	ad->nconns--;
	free(ac->body);
	free(ac);
	if (ad->stopping)
		maybe_free(ad);
	else if (ad->pending)
		accept_next(ad);
}

/*
 * Answer bytes the client has not taken: those libuv holds and those in the
 * kernel's send queue.  libuv's count alone moves only when the kernel
 * buffer (megabytes once autotuned) has drained far enough for a write.
 */
static size_t
unsent(const struct admin_conn *ac)
{
	size_t n = uv_stream_get_write_queue_size(&ac->tcp.s);
	uv_os_fd_t fd;
	int64_t outq;

	if (uv_fileno(&ac->tcp.h, &fd) == 0 && (outq = tcpinfo_outq(fd)) > 0)
		n += (size_t)outq;
	return n;
}

static void
admin_on_timeout(uv_timer_t *t)
{
	struct admin_conn *ac = container_of(t, struct admin_conn, timer);
	size_t left;

	if (ac->shut) {
		close_conn(ac, NULL, 0); /* lingering is over: a normal end */
		return;
	}
	if (!ac->answering) {
		close_conn(ac, "no whole request in time", UV_ETIMEDOUT);
		return;
	}
	/* A big /connections to a slow reader may take long: only a reader
	 * that took nothing for ADMIN_WRITE_MS is given up on. */
	left = unsent(ac);
	if (left < ac->unsent) {
		ac->unsent = left;
		uv_timer_start(&ac->timer, admin_on_timeout, ADMIN_WRITE_MS, 0);
		return;
	}
	close_conn(ac, "answer not read in time", UV_ETIMEDOUT);
}

/* ---- the pages -------------------------------------------------------- */

/* Prometheus text format 0.0.4: HELP and TYPE before a family's samples.
 * The help texts hold no backslash or newline, which would need escaping. */
static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP sluice_%s %s\n# TYPE sluice_%s %s\n", name, help,
	    name, type);
}

static void
sample(FILE *f, const char *name, uint64_t v)
{
	fprintf(f, "sluice_%s %" PRIu64 "\n", name, v);
}

/* A counter family split by one label: a sample per name[from..n). */
static void
labelled(FILE *f, const char *name, const char *help, const char *label,
    const char *const *names, const uint64_t *v, int from, int n)
{
	family(f, name, "counter", help);
	for (int i = from; i < n; i++)
		fprintf(f, "sluice_%s{%s=\"%s\"} %" PRIu64 "\n", name, label,
		    names[i], v[i]);
}

/* The counters of struct stats served as they are. */
static const struct counter {
	const char *name;
	size_t off;
	const char *help;
} counters[] = {
    {"upstream_bytes_total", offsetof(struct stats, bytes_in),
        "Response body bytes read from upstreams."},
    {"client_bytes_total", offsetof(struct stats, bytes_out),
        "Bytes written to clients."},
    {"upstream_pauses_total", offsetof(struct stats, upstream_pauses),
        "Times an upstream read was stopped."},
    {"spills_total", offsetof(struct stats, spills),
        "Downloads that started spooling to disk."},
    {"spilled_bytes_total", offsetof(struct stats, spilled_bytes),
        "Bytes written to spool files."},
    {"spill_fallbacks_total", offsetof(struct stats, spill_fallbacks),
        "Spills that fell back to pausing (spill limit, no space)."},
    {"spliced_bytes_total", offsetof(struct stats, spliced_bytes),
        "Body bytes moved to clients with splice(2) ([buffer] splice)."},
    {"splice_no_pipe_total", offsetof(struct stats, splice_no_pipe),
        "Bodies that could take splice but went through memory: every "
        "kernel pipe the descriptor budget allows was in use."},
    {"resumes_total", offsetof(struct stats, resumes),
        "Upstream reconnects with Range after a failure mid-body."},
    {"upstream_reused_total", offsetof(struct stats, upstream_reused),
        "Requests sent on a kept upstream connection ([upstream] "
        "keepalive)."},
    {"upstream_resent_total", offsetof(struct stats, upstream_resent),
        "Requests sent again on a new connection: a kept one closed "
        "before answering."},
    {"client_zwp_timeouts_total", offsetof(struct stats, client_zwp_timeouts),
        "Clients given up on after a zero window lasted too long."},
    {"memory_limit_hits_total", offsetof(struct stats, memory_limit_hits),
        "Times memory_limit stopped reads."},
};

/* What /metrics sums over the workers, each read on its own thread
 * (workers_call); the reload counters are worker 0's alone. */
struct totals {
	struct stats stats;
	uint64_t refused[REFUSE_N];
	uint64_t mapped, hot; /* the block pools */
	uint64_t idle;        /* parked upstream connections */
	size_t nworkers;
	uint64_t accepted[WORKERS_MAX]; /* by worker */
};

_Static_assert(sizeof(struct stats) % sizeof(uint64_t) == 0,
    "struct stats holds only uint64_t counters");

static void
add_worker(struct proxy *px, void *arg)
{
	struct totals *t = arg;
	const uint64_t *from = (const uint64_t *)&px->stats;
	uint64_t *to = (uint64_t *)&t->stats;

	for (size_t i = 0; i < sizeof(struct stats) / sizeof(uint64_t); i++)
		to[i] += from[i];
	for (int r = 0; r < REFUSE_N; r++)
		t->refused[r] += px->refused[r];
	list_foreach(g, &px->gens, const struct proxy_gen, link)
	{
		t->mapped += pool_mapped(&g->pool);
		t->hot += (uint64_t)g->pool.nhot * g->pool.stride;
		t->idle += g->ka.nidle;
	}
	t->accepted[px->worker] = px->accepted;
}

static void
gather(struct proxy *px, struct totals *t)
{
	struct proxy_shared *sh = px->sh;

	memset(t, 0, sizeof(*t));
	t->nworkers = sh->nworkers;
	if (sh->nworkers == 1) {
		add_worker(px, t);
		return;
	}
	for (size_t i = 0; i < sh->nworkers; i++)
		workers_call(px, sh->workers[i], add_worker, t);
}

/* The block pools of every generation (pool.h): what they map, and what
 * of it is free but still resident. */
static void
write_pool_metrics(FILE *f, const struct totals *t)
{
	uint64_t mapped = t->mapped, hot = t->hot;

	family(f, "pool_mapped_bytes", "gauge",
	    "Bytes the block pools have mapped: in use, free and resident, "
	    "free and given back.");
	sample(f, "pool_mapped_bytes", mapped);
	family(f, "pool_free_resident_bytes", "gauge",
	    "Free blocks' bytes still resident: reused first, given back "
	    "after 5 s idle.");
	sample(f, "pool_free_resident_bytes", hot);
}

/* Parked upstream connections of every generation (keepalive.h). */
static void
write_keepalive_metrics(FILE *f, const struct totals *t)
{
	uint64_t idle = t->idle;

	family(f, "upstream_idle_connections", "gauge",
	    "Upstream connections kept open for the next requests.");
	sample(f, "upstream_idle_connections", idle);
	family(f, "upstream_idle_closed_total", "counter",
	    "Kept upstream connections closed while idle (keepalive_timeout, "
	    "or the server closed or spoke).");
	sample(f, "upstream_idle_closed_total", t->stats.upstream_idle_closed);
}

/* SIGHUP: the reload counters, by result, and the state they leave (as
 * Prometheus's own prometheus_config_last_reload_* do). */
static void
write_reload_metrics(FILE *f, const struct proxy *px)
{
	size_t live = 0;

	list_foreach(g, &px->gens, const struct proxy_gen, link) live++;
	family(f, "config_reloads_total", "counter",
	    "Config reloads (SIGHUP), by result.");
	fprintf(f, "sluice_config_reloads_total{result=\"ok\"} %" PRIu64 "\n",
	    px->stats.reloads_ok);
	fprintf(f,
	    "sluice_config_reloads_total{result=\"failed\"} %" PRIu64 "\n",
	    px->stats.reloads_failed);
	family(f, "config_last_reload_successful", "gauge",
	    "Whether the last reload was taken (1 before any).");
	sample(f, "config_last_reload_successful", (uint64_t)px->reload_ok);
	family(f, "config_last_reload_timestamp_seconds", "gauge",
	    "When the last reload was tried, Unix time (0: never).");
	sample(f, "config_last_reload_timestamp_seconds", px->reload_time);
	family(f, "config_generation", "gauge",
	    "The config generation new connections use (1: at start).");
	sample(f, "config_generation", px->gen->n);
	family(f, "config_generations_live", "gauge",
	    "Config generations still in use (older ones by connections).");
	sample(f, "config_generations_live", live);
}

/* Clients each worker took ([proxy] workers). */
static void
write_worker_metrics(FILE *f, const struct totals *t)
{
	family(f, "worker_connections_total", "counter",
	    "Client connections each worker accepted ([proxy] workers).");
	for (size_t i = 0; i < t->nworkers; i++)
		fprintf(f,
		    "sluice_worker_connections_total{worker=\"%zu\"} %" PRIu64
		    "\n",
		    i, t->accepted[i]);
}

/* Every worker's counters summed; the gauges of process-wide state. */
static void
write_metrics(FILE *f, struct proxy *px)
{
	struct totals tot, *t = &tot; /* about 2 KiB */
	const struct stats *st = &t->stats;

	gather(px, t);

	labelled(f, "downloads_total", "Downloads finished, by how they ended.",
	    "outcome", outcome_names, st->downloads, 0, OUTCOME_N);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		family(f, counters[i].name, "counter", counters[i].help);
		sample(f, counters[i].name,
		    *(const uint64_t *)((const char *)st + counters[i].off));
	}
	/* Seconds as an exact decimal: no rounding through a double. */
	family(f, "upstream_paused_seconds_total", "counter",
	    "Time upstream reads were stopped, summed over downloads.");
	fprintf(f, "sluice_upstream_paused_seconds_total %" PRIu64 ".%03u\n",
	    st->paused_ms / 1000, (unsigned)(st->paused_ms % 1000));

	family(f, "connections", "gauge", "Client connections open.");
	sample(f, "connections", proxy_connections(px));
	family(f, "connections_max", "gauge",
	    "Client connections allowed at once ([listen] max_connections).");
	sample(f, "connections_max", px->max_conns);
	labelled(f, "connections_refused_total",
	    "Clients turned away at accept, by reason (503 for "
	    "max_connections and memory; closed unanswered for fds).",
	    "reason", refuse_names, t->refused, 0, REFUSE_N);
	family(f, "memory_buffered_bytes", "gauge",
	    "Bytes buffered in memory by all downloads.");
	sample(f, "memory_buffered_bytes", proxy_memory(px));
	write_pool_metrics(f, t);
	write_keepalive_metrics(f, t);
	family(f, "splice_pipes", "gauge",
	    "Downloads holding a kernel pipe ([buffer] splice).");
	sample(f, "splice_pipes", px->sh->npipes);
	family(f, "splice_pipes_max", "gauge",
	    "Kernel pipes allowed at once: a quarter of max_connections.");
	sample(f, "splice_pipes_max", px->max_pipes);
	family(f, "spool_bytes", "gauge", "Bytes in spool files.");
	sample(f, "spool_bytes", px->sh->spool_bytes);
	family(f, "memory_limit_bytes", "gauge",
	    "The [buffer] memory_limit setting (0: none).");
	sample(f, "memory_limit_bytes", px->cfg->buffer.memory_limit);
	write_reload_metrics(f, px);
	write_worker_metrics(f, t);
	/* Action 0 is none: never applied. */
	labelled(f, "faults_applied_total",
	    "Faults applied to downloads ([admin] faults), by action.",
	    "action", fault_action_names, st->faults_applied, 1,
	    FAULT_NACTIONS);
}

/* At most limit connections, newest first: the page (and the loop turn
 * that builds it) is bounded whatever the number open, which the answer's
 * X-Total-Count gives. */
/* Where one worker's part of /connections goes (workers_call). */
struct conn_list {
	FILE *f;
	const char *sep;
	int show_query; /* worker 0's setting, for every worker */
	size_t n, limit;
};

static void
list_worker(struct proxy *px, void *arg)
{
	struct conn_list *l = arg;

	for (const struct conn *c = conn_first(px);
	     c != NULL && l->n < l->limit; c = conn_next(c), l->n++) {
		fputs(l->sep, l->f);
		conn_describe(c, l->f, l->show_query);
		l->sep = ",";
	}
}

static void
write_connections(FILE *f, struct proxy *px, size_t limit)
{
	struct conn_list l = {f, "", px->cfg->admin.show_query, 0, limit};
	struct proxy_shared *sh = px->sh;

	fputc('[', f);
	if (sh->nworkers == 1)
		list_worker(px, &l);
	for (size_t i = 0; sh->nworkers > 1 && i < sh->nworkers; i++)
		workers_call(px, sh->workers[i], list_worker, &l);
	fputs("]\n", f);
}

/* Builds a page into ac->body.  0, or a negative errno. */
static int
build_page(struct admin_conn *ac, enum page pg)
{
	struct proxy *px = ac->ad->px;
	FILE *f;
	int rc = 0;

	if ((f = open_memstream(&ac->body, &ac->body_len)) == NULL)
		return -errno;
	if (pg == PAGE_METRICS)
		write_metrics(f, px);
	else
		write_connections(f, px, ac->limit);
	if (ferror(f))
		rc = -ENOMEM; /* a memstream fails only to grow */
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		free(ac->body);
		ac->body = NULL;
		ac->body_len = 0;
	}
	return rc;
}

/* ---- the answer ------------------------------------------------------- */

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 403:
		return "Forbidden";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	default:
		return "Internal Server Error";
	}
}

static void
admin_on_shutdown(uv_shutdown_t *req, int status)
{
	struct admin_conn *ac = container_of(req, struct admin_conn, sd);

	if (ac->closing)
		return; /* UV_ECANCELED: the close is under way */
	if (status < 0) {
		close_conn(ac, "shutdown", status);
		return;
	}
	if (ac->peer_eof) {
		close_conn(ac, NULL, 0);
		return;
	}
	ac->shut = 1;
	uv_timer_start(&ac->timer, admin_on_timeout, ADMIN_LINGER_MS, 0);
}

static void
admin_on_write(uv_write_t *req, int status)
{
	struct admin_conn *ac = container_of(req, struct admin_conn, wr);
	int rc;

	if (ac->closing)
		return; /* UV_ECANCELED: the close is under way */
	if (status < 0) {
		close_conn(ac, "write", status);
		return;
	}
	rc = uv_shutdown(&ac->sd, &ac->tcp.s, admin_on_shutdown);
	if (rc < 0)
		close_conn(ac, "shutdown", rc);
}

/* Formats the response head into ac->head; returns its length. */
static unsigned
format_head(struct admin_conn *ac, int status, const char *type, size_t len)
{
	/* RFC 9110 §15.5.6: a 405 lists the methods that are allowed. */
	char total[48] = "";
	int n;

	if (status == 200 && ac->page == PAGE_CONNECTIONS)
		snprintf(
		    total, sizeof(total), "X-Total-Count: %zu\r\n", ac->total);
	n = snprintf(ac->head, sizeof(ac->head),
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s"
	    "Cache-Control: no-store\r\n"
	    "Connection: close\r\n"
	    "\r\n",
	    status, reason_phrase(status), type, len,
	    status != 405                              ? ""
	        : ac->page != PAGE_FAULT               ? "Allow: GET, HEAD\r\n"
	        : strncmp(ac->url, "/faults/", 8) == 0 ? "Allow: DELETE\r\n"
	        : strncmp(ac->url, "/faults", 7) == 0
	        ? "Allow: GET, HEAD, POST\r\n"
	        : "Allow: POST\r\n",
	    total);

	return (unsigned)n; /* at most about 250 bytes: never truncated */
}

/*
 * Sends the head and, unless the request was HEAD, the body: ac->body when
 * a page was built, else a one-line text naming the status.  Every answer
 * has Content-Length and ends the connection (admin.h: one request per
 * connection).
 */
static void
respond(struct admin_conn *ac, int status, const char *type)
{
	int method = ac->head_done ? llhttp_get_method(&ac->parser) : -1;
	const char *body = ac->body;
	size_t len = ac->body_len;
	uv_buf_t bufs[2];
	unsigned nbufs = 1;
	int rc;

	log_debug("admin: %s %s%s: %d",
	    method >= 0 ? llhttp_method_name(method) : "-", ac->url,
	    ac->url_long ? "..." : "", status);
	if (body == NULL) {
		if (ac->text[0] == '\0')
			snprintf(ac->text, sizeof(ac->text), "%d %s\n", status,
			    reason_phrase(status));
		body = ac->text;
		len = strlen(ac->text);
		type = TEXT_TYPE;
	}
	bufs[0] = uv_buf_init(ac->head, format_head(ac, status, type, len));
	if (method != HTTP_HEAD)
		bufs[nbufs++] = uv_buf_init((char *)body, (unsigned)len);
	ac->answering = 1;
	uv_timer_start(&ac->timer, admin_on_timeout, ADMIN_WRITE_MS, 0);
	rc = uv_write(&ac->wr, &ac->tcp.s, bufs, nbufs, admin_on_write);
	if (rc < 0) {
		close_conn(ac, "write", rc);
		return;
	}
	ac->unsent = unsent(ac);
}

/* The request target's path (the query is ignored) is exactly path. */
static int
path_is(const struct admin_conn *ac, const char *path)
{
	size_t n = strcspn(ac->url, "?");

	return !ac->url_long && n == strlen(path) &&
	    strncmp(ac->url, path, n) == 0;
}

/*
 * /connections?limit=N: N entries at most, 0 to CONNECTIONS_LIMIT_MAX
 * (default CONNECTIONS_LIMIT).  0, or -1 when limit is given and is no such
 * number.  Other parameters are ignored.
 */
static int
parse_limit(struct admin_conn *ac)
{
	const char *q = strchr(ac->url, '?');
	size_t n;

	ac->limit = CONNECTIONS_LIMIT;
	while (q != NULL) {
		q++;
		if (strncmp(q, "limit=", 6) == 0) {
			q += 6;
			n = strcspn(q, "&");
			if (n == 0 || n > 5 || strspn(q, "0123456789") != n)
				return -1;
			ac->limit = (size_t)strtoul(q, NULL, 10);
			if (ac->limit > CONNECTIONS_LIMIT_MAX)
				return -1;
		}
		q = strchr(q, '&');
	}
	return 0;
}

/* The fault routes (admin_fault.c): 1 when the target is one of them
 * (answered), 0 when not. */
static int
answer_fault(struct admin_conn *ac, int method)
{
	FILE *f;
	int status;

	if (ac->url_long ||
	    (f = open_memstream(&ac->body, &ac->body_len)) == NULL)
		return 0;
	status = admin_fault_route(ac->ad->px, llhttp_method_name(method),
	    ac->url, ac->req_body, ac->req_len, ac->req_large, f);
	if (fclose(f) != 0 || status == 0) {
		free(ac->body);
		ac->body = NULL;
		ac->body_len = 0;
		return 0;
	}
	ac->page = PAGE_FAULT;
	respond(ac, status, JSON_TYPE);
	return 1;
}

/* A whole request was parsed: route it and answer. */
static void
answer(struct admin_conn *ac)
{
	int method = llhttp_get_method(&ac->parser);
	enum page pg = PAGE_NONE;
	const char *type = NULL;
	int status = 200, rc;

	if (answer_fault(ac, method))
		return;
	if (path_is(ac, "/metrics")) {
		pg = PAGE_METRICS;
		type = METRICS_TYPE;
	} else if (path_is(ac, "/connections")) {
		pg = PAGE_CONNECTIONS;
		type = JSON_TYPE;
		ac->total = (size_t)proxy_connections(ac->ad->px);
		if (parse_limit(ac) < 0) {
			snprintf(ac->text, sizeof(ac->text),
			    "limit: a whole number, 0 to %d\n",
			    CONNECTIONS_LIMIT_MAX);
			status = 400;
		}
	} else {
		status = 404;
	}
	if (status != 404 && method != HTTP_GET && method != HTTP_HEAD) {
		ac->text[0] = '\0';
		status = 405;
	}
	ac->page = pg;
	if (status == 200 && (rc = build_page(ac, pg)) < 0) {
		log_warn("admin: cannot build %s: %s", ac->url, strerror(-rc));
		status = 500;
	}
	respond(ac, status, type);
}

/* ---- the request ------------------------------------------------------ */

static int
admin_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *ac = p->data;

	if (ac->url_long || len >= sizeof(ac->url) - ac->url_len) {
		ac->url_long = 1;
		return 0;
	}
	memcpy(ac->url + ac->url_len, at, len);
	ac->url_len += len;
	ac->url[ac->url_len] = '\0';
	return 0;
}

static int
admin_on_headers_complete(llhttp_t *p)
{
	struct admin_conn *ac = p->data;

	ac->head_done = 1;
	if (p->content_length > FAULT_BODY_MAX && !(p->flags & F_CHUNKED)) {
		/* answered 413 now: the body is not read */
		ac->req_large = 1;
		ac->complete = 1;
		return HPE_PAUSED;
	}
	return 0;
}

static int
admin_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *ac = p->data;

	if (len > sizeof(ac->req_body) - ac->req_len) {
		ac->req_large = 1;
		ac->complete = 1;
		return HPE_PAUSED;
	}
	memcpy(ac->req_body + ac->req_len, at, len);
	ac->req_len += len;
	return 0;
}

static int
admin_on_message_complete(llhttp_t *p)
{
	struct admin_conn *ac = p->data;

	/* Stop: one request per connection; what follows is dropped. */
	ac->complete = 1;
	return HPE_PAUSED;
}

static const llhttp_settings_t admin_settings = {
    .on_url = admin_on_url,
    .on_headers_complete = admin_on_headers_complete,
    .on_body = admin_on_body,
    .on_message_complete = admin_on_message_complete,
};

/*
 * Gives the parser at most ADMIN_MAX_HEAD bytes before the head is done, so
 * the limit is exact however the bytes were split into reads.
 */
static void
feed(struct admin_conn *ac, const char *data, size_t n)
{
	llhttp_errno_t err = HPE_OK;
	size_t take;

	while (n > 0 && err == HPE_OK) {
		take = n;
		if (!ac->head_done) {
			if (ac->nhead == ADMIN_MAX_HEAD)
				break;
			if (take > ADMIN_MAX_HEAD - ac->nhead)
				take = ADMIN_MAX_HEAD - ac->nhead;
			ac->nhead += take;
		}
		err = llhttp_execute(&ac->parser, data, take);
		data += take;
		n -= take;
	}
	if (err == HPE_PAUSED && ac->complete)
		answer(ac);
	else if (err != HPE_OK)
		respond(ac, 400, NULL);
	else if (!ac->head_done && ac->nhead == ADMIN_MAX_HEAD)
		respond(ac, 431, NULL);
}

static void
admin_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct admin_conn *ac = container_of(h, struct admin_conn, tcp.h);

	(void)hint;
	*buf = uv_buf_init(ac->rbuf, sizeof(ac->rbuf));
}

static void
admin_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct admin_conn *ac = container_of(s, struct admin_conn, tcp.s);

	if (ac->closing || n == 0)
		return;
	if (n == UV_EOF) {
		ac->peer_eof = 1;
		/* Answering: wait for the answer to leave before closing. */
		if (!ac->answering)
			close_conn(
			    ac, "client closed before a whole request", 0);
		else if (ac->shut)
			close_conn(ac, NULL, 0);
		return;
	}
	if (n < 0) {
		close_conn(ac, "read", (int)n);
		return;
	}
	if (!ac->answering)
		feed(ac, buf->base, (size_t)n);
}

/* ---- the listener ----------------------------------------------------- */

static void
admin_on_refuse_close(uv_handle_t *h)
{
	struct admin *ad = container_of(h, struct admin, refuse.h);

	ad->refusing = 0;
	ad->nhandles--;
	if (ad->stopping)
		maybe_free(ad);
	else if (ad->pending)
		accept_next(ad);
}

/* Over the limit (why NULL) or out of memory: accept the connection and
 * close it. */
static void
refuse(struct admin *ad, const char *why)
{
	if (ad->refusing) {
		/* libuv keeps the connection and stops polling the listener
		 * until uv_accept(); admin_on_refuse_close comes back. */
		ad->pending = 1;
		return;
	}
	if (!ad->full && why != NULL)
		log_warn("admin: refusing a connection: %s", why);
	else if (!ad->full)
		log_warn("admin: %d connections open: refusing more",
		    ADMIN_MAX_CONNS);
	ad->full = 1;
	sock_init(ad, &ad->refuse);
	ad->refusing = 1;
	ad->nhandles++;
	(void)uv_accept(&ad->listener.s, &ad->refuse.s);
	uv_close(&ad->refuse.h, admin_on_refuse_close);
}

static void
serve(struct admin *ad, struct admin_conn *ac)
{
	uv_loop_t *loop = ad->px->loop;
	int rc;

	ac->ad = ad;
	sock_init(ad, &ac->tcp);
	uv_timer_init(loop, &ac->timer);
	ac->tcp.h.data = ac->timer.data = ac;
	ac->nhandles = 2;
	list_insert_head(&ad->conns, &ac->link);
	ad->nconns++;
	ad->full = 0;
	llhttp_init(&ac->parser, HTTP_REQUEST, &admin_settings);
	ac->parser.data = ac;
	rc = uv_accept(&ad->listener.s, &ac->tcp.s);
	if (rc == 0)
		rc = uv_read_start(&ac->tcp.s, admin_on_alloc, admin_on_read);
	if (rc < 0) {
		close_conn(ac, "accept", rc);
		return;
	}
	uv_timer_start(&ac->timer, admin_on_timeout, ADMIN_REQUEST_MS, 0);
}

/* The listener holds one connection: serve it or refuse it. */
static void
accept_next(struct admin *ad)
{
	struct admin_conn *ac = NULL;

	ad->pending = 0;
	if (ad->nconns < ADMIN_MAX_CONNS)
		ac = calloc(1, sizeof(*ac));
	if (ac != NULL)
		serve(ad, ac);
	else if (ad->nconns < ADMIN_MAX_CONNS)
		refuse(ad, "out of memory");
	else
		refuse(ad, NULL);
}

static void
admin_on_connection(uv_stream_t *server, int status)
{
	struct admin *ad = container_of(server, struct admin, listener.s);

	if (status < 0) {
		log_warn("admin: accept: %s", uv_strerror(status));
		return;
	}
	accept_next(ad);
}

static void
admin_on_listener_close(uv_handle_t *h)
{
	struct admin *ad = container_of(h, struct admin, listener.h);

	ad->nhandles--;
	maybe_free(ad);
}

static void
log_listening(struct admin *ad, const struct sockaddr_any *a)
{
	struct sockaddr_storage ss;
	char text[INET6_ADDRSTRLEN + 8] = "?";
	int len = sizeof(ss);

	if (ad->unix_path) {
		log_info("admin: listening on %s", a->text);
		return;
	}
	if (uv_tcp_getsockname(
	        &ad->listener.tcp, (struct sockaddr *)&ss, &len) == 0)
		address_text(
		    (struct sockaddr *)&ss, NULL, 0, text, sizeof(text));
	log_info("admin: listening on %s", text);
}

/* A Unix socket path: a socket left by an earlier run is replaced (any
 * other file is not), and the socket is made 0600 before it listens, so
 * no one but the proxy's user can connect in between. */
static int
bind_unix(struct admin *ad, const char *path)
{
	struct stat st;
	int rc;

	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(path);
	if ((rc = uv_pipe_bind(&ad->listener.pipe, path)) < 0)
		return rc;
	snprintf(ad->path, sizeof(ad->path), "%s", path);
	if (chmod(path, 0600) == -1)
		return -errno;
	return 0;
}

int
admin_start(struct proxy *px, const struct config *cfg, struct admin **out,
    char *err, size_t errlen)
{
	const struct sockaddr_any *a = &cfg->admin.address;
	struct admin *ad;
	int rc;

	*out = NULL;
	if (a->len == 0)
		return 0;
	if ((ad = calloc(1, sizeof(*ad))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ad->px = px;
	ad->unix_path = a->ss.ss_family == AF_UNIX;
	sock_init(ad, &ad->listener);
	ad->nhandles = 1;
	if (ad->unix_path)
		rc = bind_unix(ad, a->text);
	else
		rc = uv_tcp_bind(
		    &ad->listener.tcp, (const struct sockaddr *)&a->ss, 0);
	if (rc == 0)
		rc = uv_listen(
		    &ad->listener.s, ADMIN_BACKLOG, admin_on_connection);
	if (rc < 0) {
		snprintf(err, errlen,
		    "%s:%d: [admin] address: cannot listen on %s: %s",
		    cfg->path, config_line(cfg, "admin", "address"), a->text,
		    uv_strerror(rc));
		ad->stopping = 1;
		unlink_path(ad);
		uv_close(&ad->listener.h, admin_on_listener_close);
		return -1;
	}
	*out = ad;
	log_listening(ad, a);
	return 0;
}

void
admin_stop(struct admin *ad)
{
	if (ad == NULL)
		return;
	ad->stopping = 1;
	unlink_path(ad);
	uv_close(&ad->listener.h, admin_on_listener_close);
	list_foreach(ac, &ad->conns, struct admin_conn, link)
	    close_conn(ac, "shutdown", 0);
}
