/*
 * proxy: see proxy.h.
 *
 * Shutdown (SIGTERM/SIGINT): the listener closes at once, so new connections
 * are refused; connections idle between requests close; downloads in flight
 * run to their end (without keep-alive) until [listen] drain_timeout, when
 * the rest are cut.  The loop then has no handle left and proxy_main returns
 * 0.  A second signal cuts at once.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "config.h"
#include "conn.h"
#include "admin.h"
#include "log.h"
#include "proxy.h"
#include "sockopt.h"

static void
proxy_on_connection(uv_stream_t *server, int status)
{
	struct proxy *px = server->data;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	if (px->draining)
		return;
	conn_accept(px);
}

static void
abort_all(struct proxy *px, const char *reason)
{
	for (struct conn *c = px->conns; c != NULL; c = conn_next(c))
		conn_abort(c, reason);
}

uint64_t
proxy_memory(const struct proxy *px)
{
	return (uint64_t)px->pool.nused * px->pool.block_size;
}

void
proxy_memory_check(struct proxy *px)
{
	uint64_t limit = px->cfg->buffer.memory_limit;

	/* Hysteresis: wake the waiting reads once an eighth is free again,
	 * not at every block that comes back. */
	if (!px->mem_full || proxy_memory(px) > limit - limit / 8)
		return;
	px->mem_full = 0;
	log_debug("memory_limit: %llu bytes buffered, reads go on",
	    (unsigned long long)proxy_memory(px));
	for (struct conn *c = px->conns; c != NULL; c = conn_next(c))
		conn_wake(c);
}

static void
proxy_finish(struct proxy *px)
{
	admin_stop(px);
	uv_close((uv_handle_t *)&px->drain_timer, NULL);
	uv_close((uv_handle_t *)&px->sigint, NULL);
	uv_close((uv_handle_t *)&px->sigterm, NULL);
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
	log_info("signal %d: stop accepting, draining %zu connections "
	         "(up to %llu ms)",
	    signum, px->nconns,
	    (unsigned long long)px->cfg->listen.drain_timeout);
	uv_close((uv_handle_t *)&px->listener, NULL);
	for (struct conn *c = px->conns; c != NULL; c = conn_next(c))
		conn_drain(c);
	if (px->nconns == 0) {
		proxy_finish(px);
		return;
	}
	uv_timer_start(&px->drain_timer, proxy_on_drain_timeout,
	    px->cfg->listen.drain_timeout, 0);
}

void
proxy_conn_gone(struct proxy *px, struct conn *c)
{
	(void)c;
	px->nconns--;
	if (px->draining && px->nconns == 0)
		proxy_finish(px);
}

static void
print_listening(struct proxy *px)
{
	struct sockaddr_storage ss;
	char text[INET6_ADDRSTRLEN + 8] = "?";
	int len = sizeof(ss);

	if (uv_tcp_getsockname(&px->listener, (struct sockaddr *)&ss, &len) ==
	    0)
		sockopt_addr_text(
		    (struct sockaddr *)&ss, NULL, 0, text, sizeof(text));
	log_info("listening on %s", text);
}

int
proxy_start(struct proxy *px, uv_loop_t *loop, const struct config *cfg,
    char *err, size_t errlen)
{
	const struct sockaddr_any *a = &cfg->listen.address;
	int rc;

	memset(px, 0, sizeof(*px));
	px->loop = loop;
	px->cfg = cfg;
	/* Keep up to 8 MiB of free blocks for reuse and give the rest back
	 * to the system: blocks are allocated with mmap (the threshold is
	 * pinned at the block size, glibc would otherwise raise it), so a
	 * freed block leaves the process's memory at once, and memory_limit
	 * or zwp_timeout freeing a download's buffer shows in VmRSS. */
	mallopt(M_MMAP_THRESHOLD, (int)cfg->buffer.block_size);
	pool_init(&px->pool, (size_t)cfg->buffer.block_size,
	    (size_t)(8ULL * 1024 * 1024 / cfg->buffer.block_size));
	balancer_init(&px->bal, cfg);
	px->spill.dir = cfg->buffer.spill_dir;
	px->spill.total = &px->spool_bytes;
	px->spill.total_limit = cfg->buffer.spill_total;
	px->scratch_size = 2 * (size_t)cfg->client.max_header_size + 8192;
	if ((px->scratch = malloc(px->scratch_size)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uv_tcp_init(loop, &px->listener);
	px->listener.data = px;
	rc = uv_tcp_bind(&px->listener, (const struct sockaddr *)&a->ss, 0);
	if (rc == 0)
		rc = uv_listen(
		    (uv_stream_t *)&px->listener, 511, proxy_on_connection);
	if (rc < 0) {
		snprintf(err, errlen,
		    "%s:%d: [listen] address: cannot listen "
		    "on %s: %s",
		    cfg->path, config_line(cfg, "listen", "address"), a->text,
		    uv_strerror(rc));
		uv_close((uv_handle_t *)&px->listener, NULL);
		free(px->scratch);
		return -1;
	}
	if (cfg->log.access[0] != '\0' &&
	    (px->access = fopen(cfg->log.access, "a")) == NULL) {
		snprintf(err, errlen, "%s:%d: [log] access: %s: %s", cfg->path,
		    config_line(cfg, "log", "access"), cfg->log.access,
		    strerror(errno));
		goto close_listener;
	}
	if (admin_start(px, err, errlen) < 0)
		goto close_access;
	uv_timer_init(loop, &px->drain_timer);
	uv_signal_init(loop, &px->sigint);
	uv_signal_init(loop, &px->sigterm);
	px->drain_timer.data = px->sigint.data = px->sigterm.data = px;
	uv_signal_start(&px->sigint, proxy_on_signal, SIGINT);
	uv_signal_start(&px->sigterm, proxy_on_signal, SIGTERM);
	print_listening(px);
	return 0;
close_access:
	if (px->access != NULL)
		fclose(px->access);
	px->access = NULL;
close_listener:
	uv_close((uv_handle_t *)&px->listener, NULL);
	free(px->scratch);
	return -1;
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

int
proxy_main(const char *config_path)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct proxy px;
	uv_loop_t *loop;
	int rc;

	if ((cfg = config_load(config_path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_set_level((enum log_level)cfg->log.level);
	/* A write to a client that went away must fail with EPIPE, not kill
	 * the process. */
	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();
	if (proxy_start(&px, loop, cfg, err, sizeof(err)) < 0) {
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
	uv_run(loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(loop);
	if (rc != 0)
		log_error("loop closed with handles open: %s", uv_strerror(rc));
	pool_destroy(&px.pool);
	free(px.scratch);
	if (px.access != NULL)
		fclose(px.access);
	config_free(cfg);
	return rc == 0 ? 0 : 1;
}
