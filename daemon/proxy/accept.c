/*
 * accept: taking clients from the listeners, and refusing those the proxy
 * cannot serve.
 *
 * Every connection the listener holds is taken at once, whatever happens:
 * libuv polls a listener again only once its pending connection is taken,
 * so a connection left there stops accepting for good.  A client is
 * served (conn_accept), or refused with a 503 when [listen]
 * max_connections are open or no memory is left for it.  A refusal needs
 * no memory: its handles are the proxy's (PROXY_REFUSERS of them,
 * allocated with it), its answer static; it reads and drops what the
 * client sent, so that the close does not reset the answer, and it ends
 * within REFUSE_MS.  With every refuser busy, the connection waits in the
 * listener (px->pending) until a refuser or a connection slot frees.
 *
 * max_connections' default follows RLIMIT_NOFILE, raised to its hard
 * limit at start: (nofile - NOFILE_RESERVE - the kept upstream sockets
 * ([upstream] keepalive per server and worker)) / per connection: 2 (a
 * client and its upstream), +1 with policy spill (its spool file), +1 with
 * splice (a kernel pipe and two duplicated sockets, 4, for at most a
 * quarter of the connections: max_pipes).
 */

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <sys/resource.h>

#include "base/log.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/proxy.h"
#include "proxy/workers.h"

/* Descriptors kept out of max_connections' default: the listeners, the
 * admin API's (64 connections), the access log, libuv's own (epoll, its
 * signal pipe, its spare for EMFILE), refusals in flight. */
#define NOFILE_RESERVE 128

const char *const refuse_names[REFUSE_N] = {
    [REFUSE_MAX_CONNECTIONS] = "max_connections",
    [REFUSE_MEMORY] = "memory",
    [REFUSE_FDS] = "fds",
};

#define REFUSE_BODY "503 Service Unavailable: try again later\n"
/* Static: answering needs no memory.  Retry-After: 1, as a client that is
 * refused for load should not come back at once, nor wait long. */
static char refuse_answer[] = "HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Type: text/plain\r\n"
                              "Retry-After: 1\r\n"
                              "Connection: close\r\n"
                              "Cache-Control: no-store\r\n"
                              "Content-Length: 41\r\n"
                              "\r\n" REFUSE_BODY;
_Static_assert(sizeof(REFUSE_BODY) - 1 == 41, "Content-Length of the 503");

#define REFUSE_MS 1000 /* a refusal, lingering close included, at most */

static void
refuser_on_close(uv_handle_t *h)
{
	struct refuser *r = h->data;
	struct proxy *px = r->px;
	uv_stream_t *l;

	if (--r->nhandles > 0)
		return;
	r->busy = r->closing = 0;
	if ((l = px->pending) != NULL && !px->draining) {
		px->pending = NULL;
		accept_take(px, l);
	}
}

static void
refuser_close(struct refuser *r)
{
	if (r->closing)
		return;
	r->closing = 1;
	uv_close((uv_handle_t *)&r->timer, refuser_on_close);
	uv_close((uv_handle_t *)&r->tcp, refuser_on_close);
}

static void
refuser_on_timeout(uv_timer_t *t)
{
	refuser_close(t->data);
}

static void
refuser_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct refuser *r = h->data;

	(void)hint;
	*buf = uv_buf_init(r->px->refuse_rbuf, sizeof(r->px->refuse_rbuf));
}

/* The client's request is read and dropped: closing with it unread would
 * make the kernel send a reset that can destroy the 503 in flight. */
static void
refuser_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct refuser *r = s->data;

	(void)buf;
	if (n >= 0 || r->closing)
		return;
	r->eof = 1;
	if (n != UV_EOF || r->shut)
		refuser_close(r);
}

static void
refuser_on_shutdown(uv_shutdown_t *req, int status)
{
	struct refuser *r = req->data;

	if (r->closing)
		return;
	r->shut = 1;
	if (status < 0 || r->eof)
		refuser_close(r);
}

static void
refuser_on_write(uv_write_t *req, int status)
{
	struct refuser *r = req->data;

	if (r->closing)
		return;
	r->sd.data = r;
	if (status < 0 ||
	    uv_shutdown(&r->sd, (uv_stream_t *)&r->tcp, refuser_on_shutdown) <
	        0)
		refuser_close(r);
}

static struct refuser *
free_refuser(struct proxy *px)
{
	for (size_t i = 0; i < PROXY_REFUSERS; i++)
		if (!px->refusers[i].busy)
			return &px->refusers[i];
	return NULL;
}

/*
 * Takes the connection server holds and answers it 503 with Connection:
 * close, then closes it.  With every refuser busy, the connection stays in
 * the listener (libuv polls it again once it is taken) and the first
 * refuser to free takes it: the listener never stops for good.
 */
static void
refuse(struct proxy *px, uv_stream_t *server, enum refuse_reason why)
{
	struct refuser *r = free_refuser(px);
	uv_buf_t buf;

	if (r == NULL) {
		px->pending = server;
		return;
	}
	r->px = px;
	r->busy = 1;
	r->shut = r->eof = 0;
	r->nhandles = 2;
	uv_tcp_init(px->loop, &r->tcp);
	uv_timer_init(px->loop, &r->timer);
	r->tcp.data = r->timer.data = r->wr.data = r;
	if (uv_accept(server, (uv_stream_t *)&r->tcp) < 0) {
		refuser_close(r);
		return;
	}
	px->refused[why]++;
	log_ratelimited(&px->log_refuse, LOG_LVL_WARN,
	    "refusing a client with 503: %s (%zu connections open, "
	    "max_connections %zu; %llu refused so far)",
	    why == REFUSE_MEMORY ? "out of memory" : "max_connections reached",
	    (size_t)proxy_connections(px), px->max_conns,
	    (unsigned long long)px->refused[why]);
	buf = uv_buf_init(refuse_answer, sizeof(refuse_answer) - 1);
	uv_timer_start(&r->timer, refuser_on_timeout, REFUSE_MS, 0);
	if (uv_read_start((uv_stream_t *)&r->tcp, refuser_on_alloc,
	        refuser_on_read) < 0 ||
	    uv_write(
	        &r->wr, (uv_stream_t *)&r->tcp, &buf, 1, refuser_on_write) < 0)
		refuser_close(r);
}

/* The listener holds one connection: serve it, or refuse it.  Whatever
 * happens, it is taken (or left for a refuser that frees): a connection
 * left in the listener stops libuv from accepting.  max_connections holds
 * for every worker together: the slot is taken in the shared count before
 * the connection (proxy_conn_gone gives it back), so two workers cannot
 * both take the last one. */
void
accept_take(struct proxy *px, uv_stream_t *server)
{
	_Atomic uint64_t *open = &px->sh->nconns;

	if (atomic_fetch_add(open, 1) >= px->max_conns) {
		atomic_fetch_sub(open, 1);
		refuse(px, server, REFUSE_MAX_CONNECTIONS);
	} else if (conn_accept(px, server) < 0) {
		atomic_fetch_sub(open, 1);
		refuse(px, server, REFUSE_MEMORY);
	} else {
		px->accepted++;
	}
}

/*
 * accept(2) failed.  For EMFILE and ENFILE libuv has already taken the
 * waiting connections and closed them unanswered (it keeps a spare
 * descriptor for that), and goes on accepting: counted, and logged
 * rate-limited, since it repeats for every client while it lasts.
 * max_connections' default keeps descriptors for every connection it
 * allows, so this is seen only with a lower RLIMIT_NOFILE than at start.
 */
static void
accept_failed(struct proxy *px, int status)
{
	if (status == UV_EMFILE || status == UV_ENFILE)
		px->refused[REFUSE_FDS]++;
	log_ratelimited(&px->log_accept, LOG_LVL_WARN,
	    "accept: %s (%zu connections open, max_connections %zu)",
	    uv_strerror(status), (size_t)proxy_connections(px), px->max_conns);
}

void
accept_on_connection(uv_stream_t *server, int status)
{
	struct proxy *px = server->data;

	if (status < 0) {
		accept_failed(px, status);
		return;
	}
	if (px->draining)
		return;
	accept_take(px, server);
}

size_t
proxy_max_connections(const struct config *cfg)
{
	/* a client and an upstream socket; a spool file with policy spill;
	 * with splice, one in four downloads (max_pipes) may hold four more:
	 * a kernel pipe and a duplicate of each socket for its polls */
	uint64_t per = 2 + (cfg->buffer.policy == POLICY_SPILL ? 1 : 0) +
	    (cfg->buffer.splice ? 1 : 0);
	/* parked upstream sockets hold a descriptor each (keepalive.c), in
	 * every worker's pool */
	uint64_t reserve = NOFILE_RESERVE +
	    cfg->upstream.keepalive * (uint64_t)cfg->upstream.nservers *
	        workers_count(cfg);
	struct rlimit rl;

	if (cfg->listen.max_connections != 0)
		return (size_t)cfg->listen.max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 1000000;
	if (rl.rlim_cur <= reserve + per)
		return 1;
	return (size_t)((rl.rlim_cur - reserve) / per);
}

/* The soft RLIMIT_NOFILE up to the hard one (as Go's runtime and HAProxy
 * do): the default max_connections follows from it, and a soft limit of
 * 1024 (systemd's default) would cap it at 448. */
void
accept_raise_nofile(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_info("RLIMIT_NOFILE raised from %llu to %llu",
		    (unsigned long long)was, (unsigned long long)rl.rlim_cur);
}

/* max_connections for cfg, from now on; says so when it changed. */
void
accept_apply_max(struct proxy *px, const struct config *cfg)
{
	size_t n = proxy_max_connections(cfg);
	struct rlimit rl;

	if (n != px->max_conns && px->worker == 0) { /* the same for all */
		if (cfg->listen.max_connections != 0 ||
		    getrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_info("max_connections %zu", n);
		else
			log_info(
			    "max_connections %zu (from RLIMIT_NOFILE %llu)", n,
			    (unsigned long long)rl.rlim_cur);
	}
	px->max_conns = n;
	/* as HAProxy's maxpipes: splice for a quarter of the connections at
	 * once, the others copy (at least one) */
	px->max_pipes = cfg->buffer.splice ? (n / 4 > 0 ? n / 4 : 1) : 0;
}
