/*
 * proxy: see proxy.h.
 *
 * Reload (SIGHUP), as production proxies do it within one process: the
 * file is loaded again by the loader `sluice proxy` starts with
 * (config_load, with every check `sluice check` makes of the file).  Then
 * everything that can fail is prepared before anything changes: the new
 * generation (its pool, its balancer), the access log opened anew, a
 * listener bound for a [listen] or [admin] address that changed.  If any of
 * it fails, the error is logged with its FILE:LINE, what was prepared is
 * undone and the running config stays whole: a reload is taken entirely or
 * not at all.  Otherwise it is committed in one loop turn:
 *
 *   - new connections are accepted into the new generation; connections of
 *     older ones are retired (conn_retire): each finishes its download on
 *     the config it started with (buffers, timeouts, servers, retries),
 *     then closes.  A generation is freed with its last connection;
 *   - a listener whose address did not change is kept as it is, so there is
 *     no moment without one; a changed one is replaced by the new socket,
 *     already listening (the old one closes; its connections go on);
 *   - the access log is the new file (reopened on every reload, so that
 *     logrotate can use `systemctl reload`), the old FILE closed at once:
 *     lines are written whole, nothing holds it;
 *   - the log level and the process-wide limits (memory_limit,
 *     spill_total) take their new values for every decision from then on.
 *
 * Shutdown (SIGTERM/SIGINT): the listener closes at once, so new connections
 * are refused; connections idle between requests close; downloads in flight
 * run to their end (without keep-alive) until [listen] drain_timeout, when
 * the rest are cut.  The loop then has no handle left and proxy_main returns
 * 0.  A second signal cuts at once; a SIGHUP during the drain is ignored.
 *
 * systemd (Type=notify, notify.h): READY=1 once the listeners are bound;
 * RELOADING=1 and READY=1 around every reload, taken or refused; STOPPING=1
 * when the drain starts.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "base/log.h"
#include "base/sockopt.h"
#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/notify.h"
#include "proxy/proxy.h"
#include "proxy/workers.h"

#define BACKLOG 511

/* What a reload prepares before it changes anything (reload_prepare). */
struct reload {
	struct config *cfg;
	struct proxy_gen *gen;
	uv_tcp_t *listener; /* bound when [listen] address changed */
	struct admin *admin;
	int admin_changed; /* admin replaces px->admin (NULL: none) */
	FILE *access;
};

/* ---- notify ----------------------------------------------------------- */

/* The service manager is told, not asked: a failure is worth a warning,
 * not a change of course (notify.h). */
static void
notified(const char *what, int rc)
{
	if (rc < 0)
		log_warn("notify %s: %s", what, strerror(-rc));
}

/* ---- listeners -------------------------------------------------------- */

static void proxy_on_block_release(struct pool *pool);

static void
free_on_close(uv_handle_t *h)
{
	free(h);
}

/* A listener lives on the heap: a reload to a new address binds the new
 * one while the old still accepts. */
static void
close_listener(struct proxy *px, uv_tcp_t *l)
{
	if (l == NULL)
		return;
	if (px->pending == (uv_stream_t *)l)
		px->pending = NULL; /* its connection closes with it */
	uv_close((uv_handle_t *)l, free_on_close);
}

/* With several workers, each listener is a socket of its own on the same
 * address, SO_REUSEPORT set before the bind: the kernel spreads new
 * connections over them (libuv 1.44 has no flag for it).  0 or a negative
 * errno. */
static int
open_reuseport(uv_tcp_t *l, int family)
{
	int fd, one = 1, rc;

	if ((fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		rc = -errno;
		goto close_fd;
	}
	if ((rc = uv_tcp_open(l, fd)) < 0)
		goto close_fd;
	return 0;
close_fd:
	close(fd);
	return rc;
}

/* Worker 0's listener as bound (port 0 resolved): where the other workers
 * bind theirs (proxy_shared's listen_at). */
static int
record_listen_at(struct proxy *px, uv_tcp_t *l)
{
	int len = sizeof(px->sh->listen_at);

	return uv_tcp_getsockname(
	    l, (struct sockaddr *)&px->sh->listen_at, &len);
}

/* Binds and listens on cfg's [listen] address (a worker after the first:
 * on worker 0's, as bound).  0 with *out, or -1 with err naming the
 * config line. */
static int
listen_on(struct proxy *px, const struct config *cfg, uv_tcp_t **out, char *err,
    size_t errlen)
{
	const struct sockaddr_any *a = &cfg->listen.address;
	const struct sockaddr *at = (const struct sockaddr *)&a->ss;
	int several = px->sh->nworkers > 1;
	uv_tcp_t *l;
	int rc = 0;

	if ((l = malloc(sizeof(*l))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uv_tcp_init(px->loop, l);
	l->data = px;
	if (px->worker > 0)
		at = (const struct sockaddr *)&px->sh->listen_at;
	if (several)
		rc = open_reuseport(l, at->sa_family);
	if (rc == 0)
		rc = uv_tcp_bind(l, at, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)l, BACKLOG, accept_on_connection);
	if (rc == 0 && several && px->worker == 0)
		rc = record_listen_at(px, l);
	if (rc < 0) {
		snprintf(err, errlen,
		    "%s:%d: [listen] address: cannot listen on %s: %s",
		    cfg->path, config_line(cfg, "listen", "address"), a->text,
		    uv_strerror(rc));
		close_listener(px, l);
		return -1;
	}
	*out = l;
	return 0;
}

static void
print_listening(uv_tcp_t *l)
{
	struct sockaddr_storage ss;
	char text[INET6_ADDRSTRLEN + 8] = "?";
	int len = sizeof(ss);

	if (uv_tcp_getsockname(l, (struct sockaddr *)&ss, &len) == 0)
		address_text(
		    (struct sockaddr *)&ss, NULL, 0, text, sizeof(text));
	log_info("listening on %s", text);
}

/* Opens [log] access for appending: 0 with *out (NULL for stderr), or -1
 * with err naming the config line. */
static int
open_access(const struct config *cfg, FILE **out, char *err, size_t errlen)
{
	*out = NULL;
	if (cfg->log.access[0] == '\0')
		return 0;
	if ((*out = fopen(cfg->log.access, "a")) == NULL) {
		snprintf(err, errlen, "%s:%d: [log] access: %s: %s", cfg->path,
		    config_line(cfg, "log", "access"), cfg->log.access,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* Room for the head rewrites of every live generation: grows only, since
 * connections of an older one may still need its larger size. */
static int
grow_scratch(struct proxy *px, const struct config *cfg)
{
	size_t want = 2 * (size_t)cfg->client.max_header_size + 8192;
	char *p;

	if (want <= px->scratch_size)
		return 0;
	if ((p = realloc(px->scratch, want)) == NULL)
		return -ENOMEM;
	px->scratch = p;
	px->scratch_size = want;
	return 0;
}

/* ---- generations ------------------------------------------------------ */

/* A generation for cfg, not yet linked into px->gens, no reference.  The
 * round-robin cursor goes on from the current generation's. */
static struct proxy_gen *
gen_new(struct proxy *px, struct config *cfg)
{
	struct proxy_gen *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->px = px;
	g->cfg = cfg;
	g->n = px->gen != NULL ? px->gen->n + 1 : 1;
	pool_init(&g->pool, (size_t)cfg->buffer.block_size, POOL_IDLE_MS);
	g->pool.on_release = proxy_on_block_release;
	g->pool.owner = px;
	g->pool.in_use = &px->sh->memory;
	balancer_init(&g->bal, cfg);
	if (balancer_share(&g->bal, &px->loads) < 0) {
		free(g);
		return NULL;
	}
	if (ka_init(&g->ka, px->loop, cfg->upstream.nservers,
	        cfg->upstream.keepalive, cfg->upstream.keepalive_timeout) < 0) {
		balancer_unshare(&g->bal);
		free(g);
		return NULL;
	}
	g->ka.dropped = &px->stats.upstream_idle_closed;
	if (px->gen != NULL)
		g->bal.next = px->gen->bal.next % cfg->upstream.nservers;
	g->spill.dir = cfg->buffer.spill_dir;
	g->spill.total = &px->sh->spool_bytes;
	g->spill.total_limit = cfg->buffer.spill_total;
	return g;
}

/* Undoes gen_new (the config stays the caller's). */
static void
gen_discard(struct proxy_gen *g)
{
	balancer_unshare(&g->bal);
	ka_destroy(&g->ka);
	pool_destroy(&g->pool);
	free(g);
}

/* Makes g the generation new connections take, holding the proxy's
 * reference on it. */
static void
gen_install(struct proxy *px, struct proxy_gen *g)
{
	list_insert_head(&px->gens, &g->link);
	g->refs = 1;
	px->gen = g;
	px->cfg = g->cfg;
}

/* The last reference went: the generation, its config and its pool. */
static void
gen_free(struct proxy *px, struct proxy_gen *g)
{
	if (g->pool.nused != 0) {
		/* a block still points at this pool: keep it, leak and say so
		 * rather than free memory something still uses */
		log_error("config generation %llu: %zu blocks still in use at "
		          "release; kept",
		    (unsigned long long)g->n, g->pool.nused);
		return;
	}
	list_remove(&g->link);
	if (g != px->gen)
		log_info("config generation %llu released: its last "
		         "connection ended",
		    (unsigned long long)g->n);
	config_free(g->cfg);
	gen_discard(g);
}

static void
gen_put(struct proxy *px, struct proxy_gen *g)
{
	if (--g->refs == 0)
		gen_free(px, g);
}

void
proxy_gen_hold(struct proxy_gen *gen)
{
	gen->refs++;
	gen->nconns++;
}

static void
proxy_on_mem_timer(uv_timer_t *t)
{
	proxy_memory_check(t->data);
}

/* memory_limit holds for every worker together: the pools count the
 * bytes of their blocks in use into one shared counter (pool.h), and the
 * grants to woken waiters are summed the same way.  Relaxed: a counter,
 * not a lock; workers that decide at the same moment may each take one
 * block more than the limit (proxy_memory_check). */
uint64_t
proxy_memory(const struct proxy *px)
{
	/* kernel pipes hold memory too */
	return atomic_load_explicit(&px->sh->memory, memory_order_relaxed) +
	    atomic_load_explicit(&px->sh->pipe_bytes, memory_order_relaxed);
}

uint64_t
proxy_memory_granted(const struct proxy *px)
{
	return atomic_load_explicit(&px->sh->granted, memory_order_relaxed);
}

void
proxy_memory_grant(struct proxy *px, int64_t bs)
{
	atomic_fetch_add_explicit(
	    &px->sh->granted, (uint64_t)bs, memory_order_relaxed);
}

void
proxy_memory_wait(struct proxy *px)
{
	if (px->sh->nworkers == 1)
		return;
	atomic_store(&px->mem_wait, 1);
	/* memory another worker freed after this download found none, but
	 * before it said it waits, woke nobody: look again next turn */
	if (!uv_is_active((uv_handle_t *)&px->mem_timer))
		uv_timer_start(&px->mem_timer, proxy_on_mem_timer, 0, 0);
}

uint64_t
proxy_connections(const struct proxy *px)
{
	return atomic_load_explicit(&px->sh->nconns, memory_order_relaxed);
}

void
proxy_memory_check(struct proxy *px)
{
	conn_memory_wake(px);
	/* what other workers' freed memory should wake from now on */
	if (px->sh->nworkers > 1)
		atomic_store_explicit(&px->mem_wait,
		    px->mem_head != NULL || px->mem_full, memory_order_relaxed);
}

/* Every POOL_TRIM_MS: the pages of blocks free for POOL_IDLE_MS go back to
 * the system (pool.h), so RSS falls within seconds of a burst. */
static void
proxy_on_trim_timer(uv_timer_t *t)
{
	struct proxy *px = t->data;
	uint64_t now = uv_now(px->loop);

	list_foreach(g, &px->gens, struct proxy_gen, link)
	    pool_trim(&g->pool, now);
}

void
proxy_memory_released(struct proxy *px)
{
	if ((px->mem_head != NULL || px->mem_full) &&
	    !uv_is_active((uv_handle_t *)&px->mem_timer))
		uv_timer_start(&px->mem_timer, proxy_on_mem_timer, 0, 0);
	if (px->sh->nworkers > 1)
		workers_wake(px); /* memory_limit is theirs too */
}

/* A block went back to a pool (a connection closed, a pipe drained or
 * was trimmed). */
static void
proxy_on_block_release(struct pool *pool)
{
	proxy_memory_released(pool->owner);
}

/* ---- shutdown --------------------------------------------------------- */

static void
abort_all(struct proxy *px, const char *reason)
{
	for (struct conn *c = conn_first(px); c != NULL; c = conn_next(c))
		conn_abort(c, reason);
}

static void
proxy_finish(struct proxy *px)
{
	admin_stop(px->admin);
	px->admin = NULL;
	uv_close((uv_handle_t *)&px->drain_timer, NULL);
	uv_close((uv_handle_t *)&px->mem_timer, NULL);
	uv_close((uv_handle_t *)&px->trim_timer, NULL);
	uv_close((uv_handle_t *)&px->sigint, NULL);
	uv_close((uv_handle_t *)&px->sigterm, NULL);
	if (px->worker == 0)
		uv_close((uv_handle_t *)&px->sighup, NULL);
	workers_exit(px);
	if (px->sh->nworkers > 1)
		log_info("worker %zu drained, exiting", px->worker);
	else
		log_info("drained, exiting");
}

static void
proxy_on_drain_timeout(uv_timer_t *t)
{
	struct proxy *px = t->data;

	log_warn("drain_timeout reached with %zu connections; closing them",
	    px->nconns);
	abort_all(px, "drain_timeout reached");
}

static void
proxy_on_signal(uv_signal_t *s, int signum)
{
	struct proxy *px = s->data;

	if (px->draining) {
		log_warn("signal %d again: closing %zu connections now", signum,
		    px->nconns);
		abort_all(px, "shutdown");
		return;
	}
	px->draining = 1;
	if (px->worker == 0) /* every worker has the signal */
		notified("STOPPING=1", notify_stopping());
	log_info("signal %d: stop accepting, draining %zu connections "
	         "(up to %llu ms)",
	    signum, px->nconns,
	    (unsigned long long)px->cfg->listen.drain_timeout);
	close_listener(px, px->listener);
	px->listener = NULL;
	/* no request will take a parked upstream connection now */
	list_foreach(g, &px->gens, struct proxy_gen, link) ka_close_all(&g->ka);
	for (struct conn *c = conn_first(px); c != NULL; c = conn_next(c))
		conn_drain(c);
	if (px->nconns == 0) {
		proxy_finish(px);
		return;
	}
	uv_timer_start(&px->drain_timer, proxy_on_drain_timeout,
	    px->cfg->listen.drain_timeout, 0);
}

void
proxy_conn_gone(struct proxy *px, struct proxy_gen *gen)
{
	px->nconns--;
	gen->nconns--;
	atomic_fetch_sub_explicit(&px->sh->nconns, 1, memory_order_relaxed);
	gen_put(px, gen);
	if (px->draining && px->nconns == 0)
		proxy_finish(px);
	else if (px->pending != NULL && !px->draining &&
	    proxy_connections(px) < px->max_conns) {
		uv_stream_t *l = px->pending;

		px->pending = NULL; /* a slot freed: the waiting client */
		accept_take(px, l);
	}
}

/* ---- reload ----------------------------------------------------------- */

static void
reload_undo(struct proxy *px, struct reload *r)
{
	close_listener(px, r->listener);
	admin_stop(r->admin);
	if (r->access != NULL)
		fclose(r->access);
	if (r->gen != NULL)
		gen_discard(r->gen);
	config_free(r->cfg);
}

/*
 * Everything a reload may fail at, done before anything changes: the file
 * and its checks, memory, the access log, the listeners whose address
 * changed (an unchanged one is kept, so its port 0 stays the same port).
 * 0, or -1 with err (FILE:LINE: [section] key: message) and r undone.
 */
static int
reload_prepare(struct proxy *px, struct reload *r, struct config *cfg,
    char *err, size_t errlen)
{
	const struct config *old = px->cfg;

	memset(r, 0, sizeof(*r));
	r->cfg = cfg; /* r's from now on */
	if (px->worker == 0 && proxy_check_files(r->cfg, err, errlen) < 0)
		goto undo;
	if (grow_scratch(px, r->cfg) < 0 ||
	    (r->gen = gen_new(px, r->cfg)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", px->path);
		goto undo;
	}
	if (open_access(r->cfg, &r->access, err, errlen) < 0)
		goto undo;
	if (!address_equal(&old->listen.address, &r->cfg->listen.address) &&
	    listen_on(px, r->cfg, &r->listener, err, errlen) < 0)
		goto undo;
	r->admin_changed = px->worker == 0 &&
	    !address_equal(&old->admin.address, &r->cfg->admin.address);
	if (r->admin_changed &&
	    admin_start(px, r->cfg, &r->admin, err, errlen) < 0)
		goto undo;
	return 0;
undo:
	reload_undo(px, r);
	return -1;
}

/* Connections of older generations finish their download, then close;
 * returns how many stay for that. */
static size_t
retire_all(struct proxy *px)
{
	size_t n = 0;

	for (struct conn *c = conn_first(px); c != NULL; c = conn_next(c))
		n += (size_t)conn_retire(c);
	return n;
}

/* Takes what reload_prepare made; nothing here can fail. */
static void
reload_commit(struct proxy *px, struct reload *r)
{
	struct proxy_gen *old = px->gen;
	size_t stay;

	gen_install(px, r->gen);
	if (r->listener != NULL) {
		close_listener(px, px->listener);
		px->listener = r->listener;
		if (px->worker == 0)
			print_listening(px->listener);
	}
	if (r->admin_changed) {
		admin_stop(px->admin);
		px->admin = r->admin;
	}
	if (px->access != NULL)
		fclose(px->access);
	px->access = r->access;
	log_set_level((enum log_level)px->cfg->log.level);
	accept_apply_max(px, px->cfg);
	/* spill_total is process-wide: every generation's spill decisions
	 * use the new value from now on */
	list_foreach(g, &px->gens, struct proxy_gen, link)
	    g->spill.total_limit = px->cfg->buffer.spill_total;
	stay = retire_all(px);
	if (px->sh->nworkers > 1)
		log_info("reload: worker %zu: %s taken as config generation "
		         "%llu; %zu in-flight connections stay on older "
		         "generations until they end",
		    px->worker, px->path, (unsigned long long)px->gen->n, stay);
	else
		log_info("reload: %s taken as config generation %llu; %zu "
		         "in-flight connections stay on older generations "
		         "until they end",
		    px->path, (unsigned long long)px->gen->n, stay);
	/* The old pool's free blocks serve nobody now: this unmaps its
	 * arenas with no block in use, and the others as their last block
	 * comes back. */
	pool_destroy(&old->pool);
	/* and its parked upstream connections serve nobody either: the
	 * servers may have changed (new requests take the new generation's) */
	ka_close_all(&old->ka);
	gen_put(px, old);
	proxy_memory_check(px);
}

/* One worker's part of a reload (workers_call): prepare, then commit or
 * undo once every worker has prepared. */
struct reload_part {
	struct config *cfg; /* the worker's copy, r's once prepared */
	struct reload r;
	int rc; /* reload_prepare's */
	char err[CONFIG_ERR_MAX];
};

static void
part_prepare(struct proxy *px, void *arg)
{
	struct reload_part *p = arg;

	p->rc = reload_prepare(px, &p->r, p->cfg, p->err, sizeof(p->err));
	p->cfg = NULL;
}

static void
part_commit(struct proxy *px, void *arg)
{
	reload_commit(px, &((struct reload_part *)arg)->r);
}

static void
part_undo(struct proxy *px, void *arg)
{
	reload_undo(px, &((struct reload_part *)arg)->r);
}

/*
 * Every worker takes cfg (a copy each), or none does: each prepares in
 * turn, worker 0 first (the others bind the listener address it took),
 * and only when all have does each commit.  A worker that has exited
 * (draining) is left out.  0, or -1 with err; cfg is taken either way.
 */
static int
reload_workers(struct proxy *px, struct config *cfg, char *err, size_t errlen)
{
	struct proxy_shared *sh = px->sh;
	struct reload_part *parts;
	size_t n = sh->nworkers, i, failed = n;
	int rc = 0;

	if ((parts = calloc(n, sizeof(*parts))) == NULL) {
		config_free(cfg);
		snprintf(err, errlen, "%s: out of memory", px->path);
		return -1;
	}
	parts[0].cfg = cfg;
	for (i = 1; i < n; i++)
		if ((parts[i].cfg = config_copy(cfg)) == NULL)
			break;
	if (i < n) {
		snprintf(parts[0].err, sizeof(parts[0].err),
		    "%s: out of memory", px->path);
		failed = 0;
	}
	for (i = 0; failed == n && i < n; i++) {
		if (workers_call(px, sh->workers[i], part_prepare, &parts[i]) <
		    0)
			parts[i].rc = 1; /* exited: nothing prepared */
		else if (parts[i].rc < 0)
			failed = i;
	}
	for (i = 0; i < n; i++) {
		if (failed == n && parts[i].rc == 0)
			workers_call(
			    px, sh->workers[i], part_commit, &parts[i]);
		else if (i < failed && parts[i].rc == 0 &&
		    workers_call(px, sh->workers[i], part_undo, &parts[i]) < 0)
			config_free(parts[i].r.cfg); /* it exited meanwhile */
		config_free(parts[i].cfg);           /* not handed over */
	}
	if (failed < n) {
		snprintf(err, errlen, "%s", parts[failed].err);
		/* the address the others bind is worker 0's listener's */
		if (px->listener != NULL)
			record_listen_at(px, px->listener);
		rc = -1;
	}
	free(parts);
	return rc;
}

/* Loads the file again and hands it to every worker.  0, or -1 with err. */
static int
reload_load(struct proxy *px, char *err, size_t errlen)
{
	struct config *cfg;
	struct reload r;

	if ((cfg = config_load(px->path, err, errlen)) == NULL)
		return -1;
	if (workers_count(cfg) != px->sh->nworkers)
		log_warn("reload: [proxy] workers changed: it takes effect at "
		         "the next start, %zu workers run until then",
		    px->sh->nworkers);
	if (px->sh->nworkers > 1)
		return reload_workers(px, cfg, err, errlen);
	if (reload_prepare(px, &r, cfg, err, errlen) < 0)
		return -1;
	reload_commit(px, &r);
	return 0;
}

static void
reload(struct proxy *px)
{
	char err[CONFIG_ERR_MAX];

	px->reload_time = (uint64_t)time(NULL);
	if (reload_load(px, err, sizeof(err)) < 0) {
		px->stats.reloads_failed++;
		px->reload_ok = 0;
		log_error("reload failed: %s; config generation %llu stays",
		    err, (unsigned long long)px->gen->n);
		/* READY=1 carries its own STATUS: the reason goes after it,
		 * so that systemctl status shows it */
		notified("READY=1", notify_ready());
		notified("STATUS", notify_status("reload failed: %s", err));
		return;
	}
	px->stats.reloads_ok++;
	px->reload_ok = 1;
	notified("READY=1", notify_ready());
	notified("STATUS",
	    notify_status(
	        "config generation %llu", (unsigned long long)px->gen->n));
}

static void
proxy_on_sighup(uv_signal_t *s, int signum)
{
	struct proxy *px = s->data;

	(void)signum;
	if (px->draining) {
		log_warn("SIGHUP while draining: reload ignored");
		return;
	}
	notified("RELOADING=1", notify_reloading());
	reload(px); /* READY=1 and the outcome as STATUS */
}

/* ---- start ------------------------------------------------------------ */

static void
start_signals(struct proxy *px)
{
	uv_timer_init(px->loop, &px->drain_timer);
	uv_timer_init(px->loop, &px->mem_timer);
	px->mem_timer.data = px;
	uv_timer_init(px->loop, &px->trim_timer);
	px->trim_timer.data = px;
	uv_timer_start(
	    &px->trim_timer, proxy_on_trim_timer, POOL_TRIM_MS, POOL_TRIM_MS);
	uv_unref(
	    (uv_handle_t *)&px->trim_timer); /* never keeps a drain alive */
	/* libuv hands a signal to every loop that watches it: each worker
	 * drains itself; worker 0 alone reloads, for all */
	uv_signal_init(px->loop, &px->sigint);
	uv_signal_init(px->loop, &px->sigterm);
	px->drain_timer.data = px->sigint.data = px->sigterm.data = px;
	uv_signal_start(&px->sigint, proxy_on_signal, SIGINT);
	uv_signal_start(&px->sigterm, proxy_on_signal, SIGTERM);
	if (px->worker == 0) {
		uv_signal_init(px->loop, &px->sighup);
		px->sighup.data = px;
		uv_signal_start(&px->sighup, proxy_on_sighup, SIGHUP);
	}
	if (px->sh->nworkers > 1) {
		uv_async_init(px->loop, &px->async, workers_on_async);
		px->alive = 1; /* no other thread runs yet */
	}
}

int
proxy_start(struct proxy *px, uv_loop_t *loop, struct config *cfg,
    const char *path, char *err, size_t errlen)
{
	return proxy_start_worker(px, loop, cfg, path, NULL, 0, err, errlen);
}

int
proxy_start_worker(struct proxy *px, uv_loop_t *loop, struct config *cfg,
    const char *path, struct proxy_shared *sh, size_t index, char *err,
    size_t errlen)
{
	struct proxy_gen *g;

	memset(px, 0, sizeof(*px));
	px->loop = loop;
	px->path = path;
	px->reload_ok = 1;
	px->worker = index;
	if ((px->sh = sh) == NULL) {
		px->sh = &px->own;
		px->own.nworkers = 1;
	}
	if (index == 0) {
		if (proxy_check_files(cfg, err, errlen) < 0)
			return -1;
		accept_raise_nofile();
	}
	accept_apply_max(px, cfg);
	if (grow_scratch(px, cfg) < 0 || (g = gen_new(px, cfg)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(px->scratch);
		return -1;
	}
	if (listen_on(px, cfg, &px->listener, err, errlen) < 0)
		goto discard;
	if (open_access(cfg, &px->access, err, errlen) < 0)
		goto close_listener;
	if (index == 0 && admin_start(px, cfg, &px->admin, err, errlen) < 0)
		goto close_access;
	gen_install(px, g);
	start_signals(px);
	if (index == 0)
		print_listening(px->listener);
	return 0;
close_access:
	if (px->access != NULL)
		fclose(px->access);
	px->access = NULL;
close_listener:
	close_listener(px, px->listener);
	px->listener = NULL;
discard:
	gen_discard(g);
	free(px->scratch);
	px->scratch = NULL;
	return -1;
}

/* "FILE:LINE: [section] key: what: strerror" (no LINE for a default). */
static void
key_error(const struct config *cfg, const char *section, const char *key,
    const char *what, int rc, char *err, size_t errlen)
{
	int line = config_line(cfg, section, key);

	if (line > 0)
		snprintf(err, errlen, "%s:%d: [%s] %s: %s: %s", cfg->path, line,
		    section, key, what, strerror(-rc));
	else
		snprintf(err, errlen, "%s: [%s] %s: %s: %s", cfg->path, section,
		    key, what, strerror(-rc));
}

/* Can a file be created in dir?  An O_TMPFILE opened and closed there, as
 * the spool opens its files (where the file system has no O_TMPFILE, a
 * named temporary file, unlinked at once): nothing is left behind.  0, or
 * a negative errno. */
static int
try_create_in(const char *dir)
{
	char path[CONFIG_PATH_MAX + 32];
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);

	if (fd < 0 &&
	    (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		snprintf(path, sizeof(path), "%s/.sluice-check-XXXXXX", dir);
		if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* Can path be opened for appending, or created?  0 or a negative errno. */
static int
try_append(const char *path)
{
	char dir[CONFIG_PATH_MAX];
	char *slash;
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	return try_create_in(dir);
}

int
proxy_check_files(const struct config *cfg, char *err, size_t errlen)
{
	char what[CONFIG_PATH_MAX + 64];
	int rc;

	if (cfg->buffer.policy == POLICY_SPILL &&
	    (rc = try_create_in(cfg->buffer.spill_dir)) < 0) {
		snprintf(what, sizeof(what), "cannot create a spool file in %s",
		    cfg->buffer.spill_dir);
		key_error(cfg, "buffer", "spill_dir", what, rc, err, errlen);
		return rc;
	}
	if (cfg->log.access[0] != '\0' &&
	    (rc = try_append(cfg->log.access)) < 0) {
		snprintf(
		    what, sizeof(what), "cannot append to %s", cfg->log.access);
		key_error(cfg, "log", "access", what, rc, err, errlen);
		return rc;
	}
	return 0;
}

int
proxy_check_address(const struct config *cfg, char *err, size_t errlen)
{
	const struct sockaddr_any *a = &cfg->listen.address;
	struct sockaddr_storage ss = a->ss;
	int fd, rc = 0;

	/* Port 0: a running instance holding the port must not fail this. */
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	else
		((struct sockaddr_in *)&ss)->sin_port = 0;
	if ((fd = socket(ss.ss_family, SOCK_STREAM, 0)) == -1)
		rc = -errno;
	else if (bind(fd, (struct sockaddr *)&ss, a->len) == -1)
		rc = -errno;
	if (fd != -1)
		close(fd);
	if (rc < 0)
		snprintf(err, errlen,
		    "%s:%d: [listen] address: cannot bind %s: %s", cfg->path,
		    config_line(cfg, "listen", "address"), a->text,
		    strerror(-rc));
	return rc;
}

/* After the loop: the current generation (the only one left once every
 * connection has ended) and what the proxy itself holds. */
void
proxy_release(struct proxy *px)
{
	gen_put(px, px->gen);
	px->gen = NULL;
	if (px->gens.first != NULL)
		log_error("config generation %llu still held at exit",
		    (unsigned long long)list_item(
		        px->gens.first, struct proxy_gen, link)
		        ->n);
	free(px->scratch);
	if (px->access != NULL)
		fclose(px->access);
}

int
proxy_main(const char *config_path)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct proxy px;
	uv_loop_t *loop;
	size_t n;
	int rc;

	if ((cfg = config_load(config_path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_set_level((enum log_level)cfg->log.level);
	/* A write to a client that went away must fail with EPIPE, not kill
	 * the process. */
	signal(SIGPIPE, SIG_IGN);
	if ((n = workers_count(cfg)) > 1)
		return workers_main(cfg, config_path, n);
	loop = uv_default_loop();
	if (proxy_start(&px, loop, cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		uv_run(loop, UV_RUN_DEFAULT);
		uv_loop_close(loop);
		config_free(cfg);
		return 2;
	}
	log_info("sluice proxy: %zu upstream servers, policy %s, "
	         "high_watermark %llu, low_watermark %llu, memory_limit %llu",
	    cfg->upstream.nservers,
	    config_keys_enum_name("buffer", "policy", cfg->buffer.policy),
	    (unsigned long long)cfg->buffer.high_watermark,
	    (unsigned long long)cfg->buffer.low_watermark,
	    (unsigned long long)cfg->buffer.memory_limit);
	notified("READY=1", notify_ready());
	uv_run(loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(loop);
	if (rc != 0)
		log_error("loop closed with handles open: %s", uv_strerror(rc));
	proxy_release(&px);
	return rc == 0 ? 0 : 1;
}
