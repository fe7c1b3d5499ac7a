/*
 * workers: see workers.h.
 *
 * A worker's async handle carries two things: a call from worker 0
 * (call_fn under sh->lock) and a wake-up after another worker freed memory
 * (`wake`).  uv_async_send coalesces, so the callback looks at both.  It
 * may be sent to only while the worker is `alive` (checked under the
 * lock): workers_exit clears it before closing the handle.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/log.h"
#include "proxy/notify.h"
#include "proxy/proxy.h"
#include "proxy/workers.h"

/* A worker and what its thread needs. */
struct worker {
	struct proxy px;
	uv_loop_t loop; /* workers after the first */
	uv_thread_t tid;
	int rc; /* uv_loop_close's */
};

size_t
workers_count(const struct config *cfg)
{
	size_t n = (size_t)cfg->proxy.workers;

	if (n == 0)
		n = (size_t)uv_available_parallelism();
	if (n == 0)
		n = 1;
	return n > WORKERS_MAX ? WORKERS_MAX : n;
}

int
workers_call(struct proxy *from, struct proxy *to,
    void (*fn)(struct proxy *px, void *arg), void *arg)
{
	struct proxy_shared *sh = from->sh;
	int rc = 0;

	if (to == from) {
		fn(to, arg);
		return 0;
	}
	uv_mutex_lock(&sh->lock);
	if (!to->alive) {
		uv_mutex_unlock(&sh->lock);
		return -ESRCH;
	}
	to->call_fn = fn;
	to->call_arg = arg;
	to->call_pending = 1;
	uv_async_send(&to->async);
	while (to->call_pending && to->alive)
		uv_cond_wait(&sh->done, &sh->lock);
	if (to->call_pending) { /* it exited before taking the call */
		to->call_pending = 0;
		rc = -ESRCH;
	}
	uv_mutex_unlock(&sh->lock);
	return rc;
}

void
workers_on_async(uv_async_t *a)
{
	struct proxy *px = container_of(a, struct proxy, async);
	struct proxy_shared *sh = px->sh;
	void (*fn)(struct proxy *, void *) = NULL;
	void *arg = NULL;

	uv_mutex_lock(&sh->lock);
	if (px->call_pending) {
		fn = px->call_fn;
		arg = px->call_arg;
	}
	uv_mutex_unlock(&sh->lock);
	if (fn != NULL) {
		fn(px, arg); /* the caller waits meanwhile */
		uv_mutex_lock(&sh->lock);
		px->call_pending = 0;
		uv_cond_broadcast(&sh->done);
		uv_mutex_unlock(&sh->lock);
	}
	if (atomic_exchange(&px->wake, 0))
		proxy_memory_check(px);
}

void
workers_wake(struct proxy *from)
{
	struct proxy_shared *sh = from->sh;

	for (size_t i = 0; i < sh->nworkers; i++) {
		struct proxy *to = sh->workers[i];

		/* the lock only for a worker that waits and was not told */
		if (to == from ||
		    !atomic_load_explicit(
		        &to->mem_wait, memory_order_relaxed) ||
		    atomic_exchange(&to->wake, 1))
			continue;
		uv_mutex_lock(&sh->lock);
		if (to->alive)
			uv_async_send(&to->async);
		uv_mutex_unlock(&sh->lock);
	}
}

void
workers_exit(struct proxy *px)
{
	struct proxy_shared *sh = px->sh;

	if (sh->nworkers <= 1)
		return;
	uv_mutex_lock(&sh->lock);
	px->alive = 0;
	uv_cond_broadcast(&sh->done);
	uv_mutex_unlock(&sh->lock);
	uv_close((uv_handle_t *)&px->async, NULL);
}

static void
run(void *arg)
{
	struct worker *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	w->rc = uv_loop_close(&w->loop);
}

/* Starts worker i on its loop (not running yet).  0, or -1 with err. */
static int
start_one(struct worker *w, size_t i, struct config *cfg, const char *path,
    struct proxy_shared *sh, char *err, size_t errlen)
{
	uv_loop_t *loop = uv_default_loop();
	struct config *c = cfg;

	if (i > 0) {
		if (uv_loop_init(&w->loop) != 0 ||
		    (c = config_copy(cfg)) == NULL) {
			snprintf(err, errlen, "worker %zu: out of memory", i);
			return -1;
		}
		loop = &w->loop;
	}
	if (proxy_start_worker(&w->px, loop, c, path, sh, i, err, errlen) < 0) {
		if (i > 0)
			config_free(c);
		return -1;
	}
	return 0;
}

int
workers_main(struct config *cfg, const char *path, size_t n)
{
	char err[CONFIG_ERR_MAX];
	struct proxy_shared *sh;
	struct worker *w;
	int rc = 0;

	if ((sh = calloc(1, sizeof(*sh))) == NULL ||
	    (w = calloc(n, sizeof(*w))) == NULL ||
	    (sh->workers = calloc(n, sizeof(*sh->workers))) == NULL) {
		fprintf(stderr, "sluice proxy: out of memory\n");
		return 2;
	}
	uv_mutex_init(&sh->lock);
	uv_cond_init(&sh->done);
	sh->nworkers = n;
	for (size_t i = 0; i < n; i++)
		sh->workers[i] = &w[i].px;
	/* Every listener is bound before any loop runs: a start that fails
	 * exits here, before READY=1 (the process ends: nothing to undo). */
	for (size_t i = 0; i < n; i++) {
		if (start_one(&w[i], i, cfg, path, sh, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 2;
		}
	}
	for (size_t i = 1; i < n; i++)
		if (uv_thread_create(&w[i].tid, run, &w[i]) != 0) {
			fprintf(stderr,
			    "sluice proxy: cannot start worker "
			    "thread %zu\n",
			    i);
			exit(2);
		}
	log_info("sluice proxy: %zu workers", n);
	if ((rc = notify_ready()) < 0)
		log_warn("notify READY=1: %s", strerror(-rc));
	uv_run(uv_default_loop(), UV_RUN_DEFAULT);
	w[0].rc = uv_loop_close(uv_default_loop());
	for (size_t i = 1; i < n; i++)
		uv_thread_join(&w[i].tid);
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (w[i].rc != 0) {
			log_error("worker %zu: loop closed with handles open: "
			          "%s",
			    i, uv_strerror(w[i].rc));
			rc = 1;
		}
		proxy_release(&w[i].px);
	}
	uv_cond_destroy(&sh->done);
	uv_mutex_destroy(&sh->lock);
	free(sh->workers);
	free(sh);
	free(w);
	return rc;
}
