/*
 * Many slow HTTP/1.1 clients in one process, for bench/compare.sh.
 *
 *   slowclients HOST PORT PATH CLIENTS SECONDS [CHUNK [PERIOD_MS]]
 *
 * Opens CLIENTS connections to HOST:PORT (IPv4), each sending one
 * "GET PATH" with Connection: close, then reads at most CHUNK bytes
 * (default 16384) every PERIOD_MS (default 100) on each connection, the
 * clients spread evenly over the period, until the body ends or SECONDS
 * have passed.  Connects go out in batches of 250 every 10 ms, so that a
 * listen backlog does not drop them.  The socket buffers are the kernel's
 * defaults: what a slow client does not read waits in its receive buffer
 * and in the sender's send buffer, as it would on a real network.
 *
 * Prints one line per client to stdout: bytes read (head included),
 * state (eof, open, error, refused) and the response's status code (0:
 * none seen).  A summary goes to stderr.  Everything is bounded: the
 * process ends after SECONDS whatever the peer does, or at SIGTERM or
 * SIGINT (still printing what it read).  Built by
 * bench/compare.sh with cc; not part of the daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, READING, DONE_EOF, DONE_ERROR, REFUSED };

static const char *const state_names[] = {
    "open", "open", "open", "eof", "error", "refused"};

struct client {
	int fd;
	enum state state;
	int status;
	long long bytes;
	char head[16];
	int headlen;
};

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
finish(struct client *c, enum state s)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = s;
}

static void
start_connect(struct client *c, int ep, const struct sockaddr_in *sa)
{
	struct epoll_event ev = {.events = EPOLLOUT};

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd == -1) {
		c->state = DONE_ERROR;
		return;
	}
	if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) == -1 &&
	    errno != EINPROGRESS) {
		finish(c, REFUSED);
		return;
	}
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		finish(c, DONE_ERROR);
		return;
	}
	c->state = CONNECTING;
}

/* The connect completed (or failed): send the request, stop watching. */
static void
on_connected(struct client *c, int ep, const char *req, size_t reqlen)
{
	int err = 0;
	socklen_t len = sizeof(err);

	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
	    err != 0) {
		finish(c, REFUSED);
		return;
	}
	/* A request of a few dozen bytes fits an empty send buffer. */
	if (send(c->fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen) {
		finish(c, DONE_ERROR);
		return;
	}
	c->state = READING;
}

static void
note_head(struct client *c, const char *buf, ssize_t n)
{
	int take = (int)sizeof(c->head) - 1 - c->headlen;

	if (take <= 0)
		return;
	if (take > n)
		take = (int)n;
	memcpy(c->head + c->headlen, buf, (size_t)take);
	c->headlen += take;
	c->head[c->headlen] = '\0';
	if (c->headlen >= 12 && strncmp(c->head, "HTTP/1.", 7) == 0)
		c->status = atoi(c->head + 9);
}

/* One period's share: read up to chunk bytes, less if fewer are there. */
static void
read_chunk(struct client *c, char *buf, size_t chunk)
{
	size_t budget = chunk;

	while (budget > 0) {
		ssize_t n = recv(c->fd, buf, budget, MSG_DONTWAIT);

		if (n > 0) {
			note_head(c, buf, n);
			c->bytes += n;
			budget -= (size_t)n;
		} else if (n == 0) {
			finish(c, DONE_EOF);
			return;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return;
		} else if (errno != EINTR) {
			finish(c, DONE_ERROR);
			return;
		}
	}
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct epoll_event evs[256];
	char req[512], *buf;
	struct client *cl;
	int nclients, ep, nslots, tick = 0, next_connect = 0;
	double seconds, deadline, next_tick;
	size_t chunk = 16384, reqlen;
	long period_ms = 100;

	if (argc < 6) {
		fprintf(stderr,
		    "usage: slowclients HOST PORT PATH CLIENTS "
		    "SECONDS [CHUNK [PERIOD_MS]]\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "slowclients: bad IPv4 address %s\n", argv[1]);
		return 2;
	}
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	nclients = atoi(argv[4]);
	seconds = atof(argv[5]);
	if (argc > 6)
		chunk = (size_t)atol(argv[6]);
	if (argc > 7)
		period_ms = atol(argv[7]);
	if (nclients < 1 || nclients > 100000 || seconds <= 0 ||
	    seconds > 3600 || chunk < 1 || period_ms < 10) {
		fprintf(stderr, "slowclients: bad arguments\n");
		return 2;
	}
	nslots = (int)(period_ms / 10);
	reqlen = (size_t)snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n",
	    argv[3], argv[1], argv[2]);
	if (reqlen >= sizeof(req)) {
		fprintf(stderr, "slowclients: path too long\n");
		return 2;
	}
	raise_nofile();
	signal(SIGTERM, on_term); /* report what was read, then exit */
	signal(SIGINT, on_term);
	cl = calloc((size_t)nclients, sizeof(*cl));
	buf = malloc(chunk);
	ep = epoll_create1(0);
	if (cl == NULL || buf == NULL || ep == -1) {
		perror("slowclients");
		return 1;
	}
	for (int i = 0; i < nclients; i++)
		cl[i].fd = -1;

	deadline = now() + seconds;
	next_tick = now();
	while (!stop && now() < deadline) {
		int wait_ms = (int)((next_tick - now()) * 1000);
		int n = epoll_wait(ep, evs, 256, wait_ms > 0 ? wait_ms : 0);

		for (int i = 0; i < n; i++)
			on_connected(evs[i].data.ptr, ep, req, reqlen);
		if (now() < next_tick)
			continue;
		next_tick += 0.010;
		for (int k = 0; k < 250 && next_connect < nclients; k++)
			start_connect(&cl[next_connect++], ep, &sa);
		for (int i = tick % nslots; i < next_connect; i += nslots)
			if (cl[i].state == READING)
				read_chunk(&cl[i], buf, chunk);
		tick++;
	}

	int count[6] = {0};
	for (int i = 0; i < nclients; i++) {
		printf("%lld %s %d\n", cl[i].bytes, state_names[cl[i].state],
		    cl[i].status);
		count[cl[i].state]++;
		if (cl[i].fd >= 0)
			close(cl[i].fd);
	}
	fprintf(stderr,
	    "slowclients: %d clients: %d open, %d eof, %d error, %d refused\n",
	    nclients, count[IDLE] + count[CONNECTING] + count[READING],
	    count[DONE_EOF], count[DONE_ERROR], count[REFUSED]);
	close(ep);
	free(buf);
	free(cl);
	return 0;
}
