/*
 * keepalive: see keepalive.h.
 */
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/keepalive.h"

struct ka_idle {
	uv_poll_t poll;
	uv_timer_t timer;
	struct list_node link; /* ka->servers[server].idle while parked */
	struct keepalive *ka;
	int server;
	int fd;    /* -1 once taken: a connection has it */
	int nopen; /* handles not yet closed */
};

int
ka_init(struct keepalive *ka, uv_loop_t *loop, size_t nservers, uint64_t max,
    uint64_t timeout_ms)
{
	*ka = (struct keepalive){0};
	ka->loop = loop;
	ka->max = max;
	ka->timeout_ms = timeout_ms;
	if (nservers == 0)
		return 0;
	if ((ka->servers = calloc(nservers, sizeof(*ka->servers))) == NULL)
		return -1;
	ka->nservers = nservers;
	return 0;
}

static void
on_idle_close(uv_handle_t *h)
{
	struct ka_idle *e = h->data;

	if (--e->nopen > 0)
		return;
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}

/* Off its list, its handles closed (the descriptor with them, unless a
 * connection took it). */
static void
unpark(struct ka_idle *e)
{
	struct keepalive *ka = e->ka;

	list_remove(&e->link);
	ka->servers[e->server].n--;
	ka->nidle--;
	uv_close((uv_handle_t *)&e->poll, on_idle_close);
	uv_close((uv_handle_t *)&e->timer, on_idle_close);
}

/* A parked connection spoke (bytes nobody asked for, its close, an
 * error) or stayed idle for keepalive_timeout: it goes, counted. */
static void
drop(struct ka_idle *e, const char *why)
{
	log_debug("upstream keep-alive: a parked connection to server %d %s: "
	          "dropped",
	    e->server, why);
	if (e->ka->dropped != NULL)
		(*e->ka->dropped)++;
	unpark(e);
}

static void
on_idle_event(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	drop(p->data, "closed or spoke");
}

static void
on_idle_timeout(uv_timer_t *t)
{
	drop(t->data, "was idle for keepalive_timeout");
}

int
ka_park(struct keepalive *ka, int server, int fd)
{
	struct ka_server *s;
	struct ka_idle *e;

	if (server < 0 || (size_t)server >= ka->nservers)
		return -1;
	s = &ka->servers[server];
	if (s->n >= ka->max || (e = calloc(1, sizeof(*e))) == NULL)
		return -1;
	if (uv_poll_init(ka->loop, &e->poll, fd) < 0) {
		free(e);
		return -1;
	}
	e->ka = ka;
	e->server = server;
	e->fd = fd;
	e->nopen = 2;
	e->poll.data = e;
	uv_timer_init(ka->loop, &e->timer);
	e->timer.data = e;
	/* neither keeps the loop alive: a drain does not wait on them */
	uv_unref((uv_handle_t *)&e->poll);
	uv_unref((uv_handle_t *)&e->timer);
	list_insert_head(&s->idle, &e->link);
	s->n++;
	ka->nidle++;
	if (uv_poll_start(
	        &e->poll, UV_READABLE | UV_DISCONNECT, on_idle_event) < 0) {
		e->fd = -1; /* the caller closes it */
		unpark(e);
		return -1;
	}
	uv_timer_start(&e->timer, on_idle_timeout, ka->timeout_ms, 0);
	return 0;
}

int
ka_take(struct keepalive *ka, int server)
{
	struct ka_idle *e;
	int fd;

	if (server < 0 || (size_t)server >= ka->nservers)
		return -1;
	e = list_item(ka->servers[server].idle.first, struct ka_idle, link);
	if (e == NULL)
		return -1;
	fd = e->fd;
	e->fd = -1; /* the caller's now: uv_close of a poll handle does not
	             * close it, and on_idle_close will not */
	unpark(e);
	return fd;
}

void
ka_close_all(struct keepalive *ka)
{
	ka->max = 0;
	for (size_t i = 0; i < ka->nservers; i++) {
		struct list_node *n;

		while ((n = ka->servers[i].idle.first) != NULL)
			unpark(container_of(n, struct ka_idle, link));
	}
}

void
ka_destroy(struct keepalive *ka)
{
	ka_close_all(ka);
	free(ka->servers);
	ka->servers = NULL;
	ka->nservers = 0;
}
