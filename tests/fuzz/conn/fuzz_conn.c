/*
 * fuzz_conn: the whole connection (issue 14, section 1).  The real conn
 * code (conn*.c, pipe.c, pool.c, accept.c) runs on a libuv loop between a
 * client and an upstream that are both in this process, on AF_UNIX stream
 * sockets: nothing listens on a port, nothing waits on a real timer.
 *
 *   client    a socket connected to an AF_UNIX listener that a uv_tcp_t
 *             wraps (uv_tcp_open: libuv does not look at the family), so
 *             the proxy accepts it through accept_on_connection as it
 *             would a TCP client;
 *   upstream  the proxy's upstream_connect seam (proxy.h): the handle's
 *             socket is replaced (dup2) by one end of a socketpair and the
 *             connect callback runs on the next step, as libuv would run
 *             it; the harness holds the other end.
 *
 * Time is driven, not waited for: the config's timeouts are long, and an
 * operation fires the loop's earliest timer (its callback, as uv_run
 * would), so every deadline path is reachable and an input runs the same
 * way every time.  (Only the fixed short periods can still fire on their
 * own in an input slower than they are: pace's 20 ms tick, the 1 s client
 * check, the 2 s linger; the shortest, pace's, is some 100 times a
 * typical input's run time, 0.2 ms.)
 *
 * The input: byte 0 picks one of the configs below, then operations, each
 * an opcode (byte % OP_N) and its argument bytes (see run_op).  After the
 * last one the harness settles: it reads both sides to the end, fires
 * timers when nothing moves, then closes its sockets, until the
 * connection is gone.  Then it checks:
 *
 *   - the client's bytes are a valid stream of HTTP/1.1 responses
 *     (llhttp, response mode; a 1xx, 204, 304 or the answer to a HEAD
 *     has no body, and a 1xx or 204 has no Content-Length or
 *     Transfer-Encoding, RFC 9110 §8.6), which may end short only in the
 *     middle of a response;
 *   - the body bytes of the relayed responses, one after the other, are a
 *     prefix of the body bytes the upstreams framed (decoded by llhttp
 *     from what the harness wrote to each upstream connection, in order),
 *     so every byte the client got is in order and is the upstream's; a
 *     response that does not match may only be the proxy's own answer
 *     ("<status> <reason>: ..."), and only as the last one;
 *   - once both sides are closed, the pool holds no block, proxy memory
 *     is 0, nobody waits for memory, memory_limit no longer counts as
 *     reached, no spool byte is held and no upstream socket is kept
 *     (a kept one, [upstream] keepalive, sees its server's close).
 *
 * FUZZ_CONN_DEBUG=1 in the environment logs the proxy at debug and
 * prints what each side sent and got: the way to read a crash.
 *
 * Any failure aborts, which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <llhttp.h>
#include <uv.h>

#include "base/log.h"
#include "proxy/config.h"
#include "proxy/conn.h"
#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_UPS      16        /* upstream connections per input */
#define SOCK_BUF     4096      /* the harness's socket buffers */
#define CAP          (1 << 20) /* bytes recorded per stream */
#define SETTLE_STEPS 400       /* loop steps after the operations */
#define IDLE_TIMERS  8         /* timers fired with nothing moving */

/* The configs an input may pick (byte 0).  Timeouts are long: they fire
 * only when an operation drives them. */
#define COMMON                                                                 \
	"[listen]\naddress = 127.0.0.1:0\n"                                    \
	"[upstream]\nserver = 127.0.0.1:9\nserver = 127.0.0.1:10\n"            \
	"connect_timeout = 1h\nread_timeout = 1h\n"                            \
	"[client]\nidle_timeout = 1h\nheader_timeout = 1h\n"                   \
	"max_header_size = 2k\nsndbuf = 4k\n"                                  \
	"[log]\nlevel = error\naccess = /dev/null\n"
static const char *const configs[] = {
    COMMON "[buffer]\npolicy = pause\nblock_size = 4k\n"
           "high_watermark = 8k\nlow_watermark = 4k\nmemory_limit = 0\n",
    COMMON "[buffer]\npolicy = spill\nblock_size = 4k\n"
           "high_watermark = 8k\nlow_watermark = 4k\nspill_dir = /tmp\n"
           "spill_limit = 64k\nmemory_limit = 0\n",
    COMMON "[buffer]\npolicy = pace\nblock_size = 4k\n"
           "high_watermark = 16k\nlow_watermark = 8k\nmemory_limit = 0\n",
    COMMON "[buffer]\npolicy = pause\nblock_size = 4k\n"
           "high_watermark = 8k\nlow_watermark = 0\nmemory_limit = 8k\n"
           "resume = on\nresume_attempts = 2\nresume_backoff = 0\n",
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

struct bytes {
	char *p;
	size_t n;
};

/* One upstream connection, as the harness sees it. */
struct up {
	int fd;          /* our end, -1 once closed */
	struct bytes tx; /* what we wrote: the response(s) */
	struct bytes rx; /* what the proxy sent: the request */
};

/* A connect the proxy asked for, answered on the next step. */
struct pending {
	uv_connect_t *req;
	uv_tcp_t *h;
	uv_connect_cb cb;
};

enum connect_mode { CM_ACCEPT = 0, CM_REFUSE, CM_HOLD, CM_N };

static uv_loop_t loop;
static struct proxy proxies[NCONFIGS];
static uv_tcp_t listener;
static struct sockaddr_un lst_addr;
static socklen_t lst_len;

/* per input */
static struct proxy *px;
static int cfd;          /* the client's socket, -1 once closed */
static struct bytes ctx; /* what the client sent */
static struct bytes crx; /* what it received */
static struct up ups[MAX_UPS];
static size_t nups;
static struct pending pend;
static enum connect_mode cmode;
static uint64_t fill_seq; /* filler bytes are a running pattern */
static int overflow;      /* a stream passed CAP: its bytes are not all
                           * recorded, so they are not checked */

/* ---- small helpers ---------------------------------------------------- */

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_conn: invariant broken: %s\n", what);
	abort();
}

static void
append(struct bytes *b, const char *p, size_t n)
{
	if (b->n + n > CAP) {
		overflow = 1;
		n = CAP - b->n;
	}
	if (n == 0)
		return;
	if (b->p == NULL && (b->p = malloc(CAP)) == NULL)
		abort();
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
small_buffers(int fd)
{
	int v = SOCK_BUF;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

/* Writes what the socket takes now; records what went.  Bytes the socket
 * does not take are dropped, as a peer that gave up on them. */
static size_t
send_some(int fd, struct bytes *rec, const char *p, size_t n)
{
	ssize_t w;

	if (fd < 0 || n == 0)
		return 0;
	w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w <= 0)
		return 0;
	append(rec, p, (size_t)w);
	return (size_t)w;
}

/* Reads up to max bytes (0: all there is); records them.  Returns the
 * bytes read; *eof is set on end of stream or error. */
static size_t
recv_some(int fd, struct bytes *rec, size_t max, int *eof)
{
	char buf[8192];
	size_t got = 0;
	ssize_t r;

	*eof = 0;
	while (fd >= 0 && (max == 0 || got < max)) {
		size_t want = sizeof(buf);

		if (max != 0 && max - got < want)
			want = max - got;
		r = recv(fd, buf, want, MSG_DONTWAIT);
		if (r > 0) {
			append(rec, buf, (size_t)r);
			got += (size_t)r;
			continue;
		}
		if (r == 0 ||
		    (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			*eof = 1;
		break;
	}
	return got;
}

static struct up *
cur_up(void)
{
	return nups > 0 && ups[nups - 1].fd >= 0 ? &ups[nups - 1] : NULL;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- the seam: upstream "connects" ------------------------------------ */

/* px->upstream_connect: the handle's socket (uv_tcp_init_ex made it)
 * becomes one end of a socketpair, in place (dup2), and the callback is
 * due on the next step (deliver). */
static int
fake_connect(uv_connect_t *req, uv_tcp_t *h, const struct sockaddr *addr,
    uv_connect_cb cb)
{
	uv_os_fd_t fd;
	int sv[2];

	(void)addr;
	if (nups == MAX_UPS || uv_fileno((uv_handle_t *)h, &fd) != 0)
		return UV_ECONNREFUSED;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	        sv) == -1)
		return UV_EMFILE;
	small_buffers(sv[1]);
	if (dup2(sv[0], fd) == -1) {
		close(sv[0]);
		close(sv[1]);
		return UV_EMFILE;
	}
	close(sv[0]);
	/* what uv_tcp_connect's success leaves: the handle readable and
	 * writable (uv_tcp_open on the descriptor it already has) */
	if (uv_tcp_open(h, fd) != 0) {
		close(sv[1]);
		return UV_EBADF;
	}
	/* an older upstream's end stays open: the proxy may not have read
	 * all of it, and its bytes were recorded as sent */
	ups[nups].fd = sv[1]; /* its recorded bytes' buffers are kept */
	ups[nups].tx.n = ups[nups].rx.n = 0;
	nups++;
	req->handle = (uv_stream_t *)h;
	req->cb = cb;
	pend = (struct pending){req, h, cb};
	return 0;
}

/* Runs the pending connect's callback, unless its handle closed (libuv
 * would have called it with UV_ECANCELED, which conn ignores) or the
 * connection is gone.  1 when it ran. */
static int
deliver(void)
{
	struct pending p = pend;

	if (p.req == NULL)
		return 0;
	if (px->nconns == 0 || uv_is_closing((uv_handle_t *)p.h)) {
		pend.req = NULL;
		return 0;
	}
	if (cmode == CM_HOLD)
		return 0;
	pend.req = NULL;
	if (cmode == CM_REFUSE) {
		cmode = CM_ACCEPT;
		close_fd(&ups[nups - 1].fd);
		/* a refused connect carried nothing: what the harness wrote
		 * on it while the connect was pending never reached the
		 * proxy, and is no upstream's response */
		ups[nups - 1].tx.n = 0;
		p.cb(p.req, UV_ECONNREFUSED);
		return 1;
	}
	p.cb(p.req, 0);
	return 1;
}

/* ---- time ------------------------------------------------------------- */

/* A timer that keeps re-arming itself with nothing moving (the 1 s
 * client check while the download waits on the upstream) would hide
 * every later deadline: after REPEATS_MAX firings in a row, the next one
 * in time goes first, as it would once real time reached it. */
#define REPEATS_MAX 3
static uv_timer_t *last_fired;
static int repeats;

struct earliest {
	uv_timer_t *t, *skip;
	uint64_t due;
};

static void
find_timer(uv_handle_t *h, void *arg)
{
	struct earliest *e = arg;
	uv_timer_t *t = (uv_timer_t *)h;

	if (h->type != UV_TIMER || !uv_is_active(h) || uv_is_closing(h) ||
	    t == e->skip)
		return;
	if (e->t == NULL || uv_timer_get_due_in(t) < e->due) {
		e->t = t;
		e->due = uv_timer_get_due_in(t);
	}
}

/* Time jumps to the earliest deadline: its timer runs as uv__run_timers
 * runs it (stopped, restarted if it repeats, then its callback).  1 when
 * a timer ran. */
static int
fire_timer(void)
{
	struct earliest e = {NULL, NULL, 0};

	if (repeats >= REPEATS_MAX)
		e.skip = last_fired;
	uv_walk(&loop, find_timer, &e);
	if (e.t == NULL && e.skip != NULL) {
		e.skip = NULL; /* it is the only one */
		uv_walk(&loop, find_timer, &e);
	}
	if (e.t == NULL)
		return 0;
	repeats = e.t == last_fired ? repeats + 1 : 1;
	last_fired = e.t;
	uv_timer_stop(e.t);
	uv_timer_again(e.t);
	e.t->timer_cb(e.t);
	return 1;
}

/* ---- steps ------------------------------------------------------------ */

/* Everything both sockets hold, read.  Bytes moved. */
static size_t
pump(void)
{
	size_t n = 0;
	int eof;

	n += recv_some(cfd, &crx, 0, &eof);
	for (size_t i = 0; i < nups; i++) {
		n += recv_some(ups[i].fd, &ups[i].rx, 0, &eof);
		if (eof && i + 1 < nups)
			close_fd(&ups[i].fd); /* an old one the proxy closed */
	}
	return n;
}

static void
step(void)
{
	deliver();
	uv_run(&loop, UV_RUN_NOWAIT);
}

/* The operations.  Each returns the argument bytes it used. */
enum op {
	OP_CSEND = 0, /* len, bytes: the client sends */
	OP_USEND,     /* len, bytes: the upstream sends */
	OP_CREAD,     /* n: the client reads (n + 1) * 16 bytes, 255: all */
	OP_UREAD,     /* n: the upstream reads so */
	OP_RUN,       /* n: n % 8 + 1 loop steps */
	OP_TIMER,     /* the earliest timer fires */
	OP_CSHUT,     /* the client shuts its write side */
	OP_CCLOSE,    /* the client closes */
	OP_USHUT,     /* the upstream shuts its write side */
	OP_UCLOSE,    /* the upstream closes */
	OP_CONNECT,   /* m: the next connect is accepted, refused, held */
	OP_UFILL,     /* n: the upstream sends (n + 1) * 64 pattern bytes */
	OP_CFILL,     /* n: the client sends so */
	OP_N,
};

static size_t
fill(int fd, struct bytes *rec, unsigned n)
{
	char buf[256 * 64];
	size_t len = ((size_t)n + 1) * 64;

	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (fill_seq + i) % 26);
	fill_seq += send_some(fd, rec, buf, len);
	return 1;
}

static size_t
run_op(const uint8_t *p, size_t n)
{
	struct up *u = cur_up();
	unsigned arg = n > 1 ? p[1] : 0;
	size_t len;
	int eof;

	switch ((enum op)(p[0] % OP_N)) {
	case OP_CSEND:
	case OP_USEND:
		len = n < 2 ? 0 : arg < n - 2 ? arg : n - 2;
		if (p[0] % OP_N == OP_CSEND)
			send_some(cfd, &ctx, (const char *)p + 2, len);
		else if (u != NULL)
			send_some(u->fd, &u->tx, (const char *)p + 2, len);
		return 1 + (n > 1) + len;
	case OP_CREAD:
		recv_some(cfd, &crx, arg == 255 ? 0 : (arg + 1) * 16, &eof);
		return 2;
	case OP_UREAD:
		if (u != NULL)
			recv_some(u->fd, &u->rx,
			    arg == 255 ? 0 : (arg + 1) * 16, &eof);
		return 2;
	case OP_RUN:
		for (unsigned i = 0; i < arg % 8 + 1; i++)
			step();
		return 2;
	case OP_TIMER:
		fire_timer();
		return 1;
	case OP_CSHUT:
		if (cfd >= 0)
			shutdown(cfd, SHUT_WR);
		return 1;
	case OP_CCLOSE:
		close_fd(&cfd);
		return 1;
	case OP_USHUT:
		if (u != NULL)
			shutdown(u->fd, SHUT_WR);
		return 1;
	case OP_UCLOSE:
		if (u != NULL)
			close_fd(&u->fd);
		return 1;
	case OP_CONNECT:
		cmode = (enum connect_mode)(arg % CM_N);
		return 2;
	case OP_UFILL:
		if (u != NULL)
			fill(u->fd, &u->tx, arg);
		return 2;
	case OP_CFILL:
		fill(cfd, &ctx, arg);
		return 2;
	case OP_N:
		break;
	}
	return 1;
}

/* After the operations: both sides read to the end; when nothing moves,
 * time jumps; after IDLE_TIMERS such jumps, the harness closes its
 * sockets.  The connection must be gone at the end. */
static void
settle(void)
{
	int idle = 0, closed = 0;

	cmode = CM_ACCEPT;
	for (int i = 0; i < SETTLE_STEPS && px->nconns > 0; i++) {
		size_t moved = (size_t)deliver() + pump();

		uv_run(&loop, UV_RUN_NOWAIT);
		moved += pump();
		if (moved > 0)
			continue;
		if (idle++ < IDLE_TIMERS) {
			fire_timer();
			continue;
		}
		if (!closed) {
			closed = 1;
			pump();
			close_fd(&cfd);
		}
		for (size_t j = 0; j < nups; j++) /* and any new one */
			close_fd(&ups[j].fd);
		fire_timer();
	}
	if (px->nconns != 0)
		fail("the connection outlived both of its peers");
	pump(); /* what it wrote last */
	close_fd(&cfd);
	for (size_t j = 0; j < nups; j++)
		close_fd(&ups[j].fd);
	/* close callbacks and the memory timer of the last release */
	for (int i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- the invariants ---------------------------------------------------- */

/* What the client asked for, in order: whether each request is HEAD. */
struct reqs {
	unsigned char head[256];
	size_t n;
};

static int
req_on_headers(llhttp_t *p)
{
	struct reqs *r = p->data;

	if (r->n < sizeof(r->head))
		r->head[r->n] = llhttp_get_method(p) == HTTP_HEAD;
	r->n++;
	return 0;
}

static void
parse_requests(const struct bytes *b, struct reqs *r)
{
	llhttp_settings_t s;
	llhttp_t p;

	memset(r, 0, sizeof(*r));
	llhttp_settings_init(&s);
	s.on_headers_complete = req_on_headers;
	llhttp_init(&p, HTTP_REQUEST, &s);
	p.data = r;
	if (b->n > 0)
		llhttp_execute(&p, b->p, b->n);
}

/* One upstream's response as the proxy read it: the body of its first
 * final response (llhttp decodes chunked), appended to `up_body`. */
struct resp_decode {
	int head;
	struct bytes *out;
};

/* A response without content whatever its fields say (RFC 9110 §6.4.1):
 * llhttp 8 reads a body after a 1xx or 204 that carries Content-Length,
 * the proxy (its head scanner, resp_on_headers_complete) does not. */
static int
no_content(llhttp_t *p)
{
	int status = llhttp_get_status_code(p);

	return status < 200 || status == 204 || status == 304;
}

static int
up_on_headers(llhttp_t *p)
{
	struct resp_decode *d = p->data;

	return no_content(p) || d->head ? 1 : 0;
}

static int
up_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct resp_decode *d = p->data;

	if (llhttp_get_status_code(p) >= 200)
		append(d->out, at, len);
	return 0;
}

static int
up_on_complete(llhttp_t *p)
{
	return llhttp_get_status_code(p) >= 200 ? HPE_PAUSED : 0;
}

static void
decode_upstreams(struct bytes *up_body)
{
	llhttp_settings_t s;
	llhttp_t p;

	llhttp_settings_init(&s);
	s.on_headers_complete = up_on_headers;
	s.on_body = up_on_body;
	s.on_message_complete = up_on_complete;
	for (size_t i = 0; i < nups; i++) {
		struct reqs r;
		struct resp_decode d = {0, up_body};

		parse_requests(&ups[i].rx, &r);
		d.head = r.n > 0 && r.head[0];
		llhttp_init(&p, HTTP_RESPONSE, &s);
		p.data = &d;
		if (ups[i].tx.n > 0 &&
		    llhttp_execute(&p, ups[i].tx.p, ups[i].tx.n) == HPE_OK)
			llhttp_finish(&p); /* a close-delimited body's end */
	}
}

/* The client's side: each response, checked against the upstreams'
 * bodies as they go. */
struct client_check {
	const struct reqs *reqs;
	const struct bytes *up_body;
	size_t off;     /* upstream body bytes accounted for */
	size_t nfinal;  /* final responses begun */
	size_t body_n;  /* this response's body bytes */
	int mismatch;   /* this response is not the upstream's */
	int own;        /* it was not: the proxy's own answer */
	int head;       /* it answers a HEAD */
	char first[16]; /* its first body bytes */
};

static int
cl_on_begin(llhttp_t *p)
{
	struct client_check *k = p->data;

	if (k->own)
		fail("a response after the proxy's own answer");
	k->body_n = 0;
	k->mismatch = 0;
	return 0;
}

static int
cl_on_headers(llhttp_t *p)
{
	struct client_check *k = p->data;
	size_t i;

	/* RFC 9110 §8.6, §6.1: no Content-Length, no Transfer-Encoding in a
	 * 1xx or a 204 (a client would read the next response as its body) */
	if ((llhttp_get_status_code(p) < 200 ||
	        llhttp_get_status_code(p) == 204) &&
	    (p->flags & (F_CONTENT_LENGTH | F_TRANSFER_ENCODING)) != 0)
		fail("a 1xx or 204 with framing fields went to the client");
	if (llhttp_get_status_code(p) < 200)
		return 1;
	i = k->nfinal++;
	k->head =
	    i < k->reqs->n && i < sizeof(k->reqs->head) && k->reqs->head[i];
	return no_content(p) || k->head ? 1 : 0;
}

static int
cl_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct client_check *k = p->data;
	size_t have = k->up_body->n;

	for (size_t i = 0; i < len; i++, k->body_n++) {
		if (k->body_n < sizeof(k->first))
			k->first[k->body_n] = at[i];
		if (!k->mismatch &&
		    (k->off + k->body_n >= have ||
		        k->up_body->p[k->off + k->body_n] != at[i]))
			k->mismatch = 1;
	}
	(void)p;
	return 0;
}

/* A body that is not the upstream's must be the proxy's own answer:
 * "<status> <reason>: <detail>\n" (http_error_response). */
static void
end_response(llhttp_t *p, struct client_check *k, int cut)
{
	char want[8];
	size_t n;

	if (!k->mismatch) {
		k->off += k->body_n;
		return;
	}
	n = (size_t)snprintf(
	    want, sizeof(want), "%d ", llhttp_get_status_code(p));
	if (cut && k->body_n < n)
		n = k->body_n; /* cut short: what came must begin so */
	if (llhttp_get_status_code(p) < 400 || k->body_n < n ||
	    memcmp(k->first, want, n) != 0)
		fail("the client got body bytes the upstream did not send "
		     "there");
	k->own = 1;
}

static int
cl_on_complete(llhttp_t *p)
{
	struct client_check *k = p->data;

	if (llhttp_get_status_code(p) < 200)
		return 0;
	end_response(p, k, 0);
	/* llhttp 8 ignores what follows a response that closes: stop here
	 * and look (after_close) */
	return llhttp_should_keep_alive(p) ? 0 : HPE_PAUSED;
}

/* Bytes after a response that closed the connection: none, except the
 * body of the proxy's own answer to a HEAD it could not know was one (a
 * head it refused before llhttp read the method: 4xx; 502, 503 and 504
 * come after the whole head, and RFC 9110 §9.3.2 says no content). */
static void
after_close(
    llhttp_t *p, const struct client_check *k, const char *rest, size_t n)
{
	char want[8];
	int status = llhttp_get_status_code(p);
	size_t len;

	if (n == 0)
		return;
	len = (size_t)snprintf(want, sizeof(want), "%d ", status);
	if (k->head && status >= 400 && status < 500 && n >= len &&
	    memcmp(rest, want, len) == 0)
		return;
	fail("the client got bytes after a response that closed");
}

static void
check_client(void)
{
	static struct bytes up_body;
	struct client_check k = {0};
	llhttp_settings_t s;
	struct reqs reqs;
	llhttp_errno_t err;
	llhttp_t p;

	up_body.n = 0;
	parse_requests(&ctx, &reqs);
	decode_upstreams(&up_body);
	k.reqs = &reqs;
	k.up_body = &up_body;
	llhttp_settings_init(&s);
	s.on_message_begin = cl_on_begin;
	s.on_headers_complete = cl_on_headers;
	s.on_body = cl_on_body;
	s.on_message_complete = cl_on_complete;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	p.data = &k;
	err = crx.n > 0 ? llhttp_execute(&p, crx.p, crx.n) : HPE_OK;
	if (err == HPE_PAUSED) {
		const char *at = llhttp_get_error_pos(&p);

		after_close(&p, &k, at, crx.n - (size_t)(at - crx.p));
		return;
	}
	if (err != HPE_OK) {
		fprintf(stderr, "fuzz_conn: client stream: %s: %s\n",
		    llhttp_errno_name(err), llhttp_get_error_reason(&p));
		fail("the client's bytes are not HTTP/1.1 responses");
	}
	/* the end: a close-delimited body ends here; a response cut in
	 * its middle is short by its framing, which is allowed, but its
	 * bytes so far must still be the upstream's */
	if (llhttp_finish(&p) != HPE_OK && k.mismatch)
		end_response(&p, &k, 1);
}

static void
check_memory(void)
{
	if (px->gen->pool.nused != 0)
		fail("pool blocks still in use with both sides closed");
	if (proxy_memory(px) != 0)
		fail("proxy memory is not 0 with both sides closed");
	if (px->mem_head != NULL || proxy_memory_granted(px) != 0)
		fail("memory waiters left with both sides closed");
	if (px->mem_full)
		fail("memory_limit still counts as reached with nothing held");
	if (px->sh->spool_bytes != 0)
		fail("spool bytes left with both sides closed");
	if (px->sh->npipes != 0 || px->sh->pipe_bytes != 0)
		fail("a kernel pipe (splice) left with both sides closed");
	/* the harness closed its upstream ends: a parked socket ([upstream]
	 * keepalive) sees the close and goes, or an input would leave a
	 * connection to the next one */
	if (px->gen->ka.nidle != 0)
		fail("a kept upstream socket outlived its server's close");
}

/* ---- set-up ------------------------------------------------------------ */

static void
free_on_close(uv_handle_t *h)
{
	free(h);
}

/* proxy_start, then what a harness does not want: its TCP listener (the
 * clients come through ours) and its signal handlers (libFuzzer's own
 * stay, restored after libuv's are removed). */
static void
start_proxy(struct proxy *p, const char *text)
{
	char err[CONFIG_ERR_MAX];
	struct sigaction old[3];
	const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	struct config *cfg;

	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], NULL, &old[i]);
	if ((cfg = config_load_string(
	         text, "fuzz_conn.ini", err, sizeof(err))) == NULL ||
	    proxy_start(p, &loop, cfg, "fuzz_conn.ini", err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_conn: %s\n", err);
		abort();
	}
	uv_close((uv_handle_t *)p->listener, free_on_close);
	p->listener = NULL;
	uv_close((uv_handle_t *)&p->sigint, NULL);
	uv_close((uv_handle_t *)&p->sigterm, NULL);
	uv_close((uv_handle_t *)&p->sighup, NULL);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	p->upstream_connect = fake_connect;
	p->max_conns = 4;
	p->max_pipes = 4; /* splice for every download the input makes */
}

/* The clients' listener: an AF_UNIX socket (autobound, abstract) in a
 * uv_tcp_t, calling the daemon's own accept callback. */
static void
start_listener(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) ||
	    uv_tcp_init(&loop, &listener) != 0 ||
	    uv_tcp_open(&listener, fd) != 0)
		abort();
	lst_len = sizeof(lst_addr);
	if (getsockname(fd, (struct sockaddr *)&lst_addr, &lst_len) != 0 ||
	    uv_listen((uv_stream_t *)&listener, 16, accept_on_connection) != 0)
		abort();
}

static void
init_once(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LVL_ERROR); /* proxy_start's lines too */
	if (uv_loop_init(&loop) != 0)
		abort();
	for (size_t i = 0; i < NCONFIGS; i++)
		start_proxy(&proxies[i], configs[i]);
	/* proxy_start set the config's level (error); FUZZ_CONN_DEBUG: all */
	log_set_level(
	    getenv("FUZZ_CONN_DEBUG") != NULL ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	start_listener();
}

/* A client connects and the proxy accepts it. */
static void
connect_client(void)
{
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cfd == -1)
		abort();
	small_buffers(cfd);
	if (connect(cfd, (struct sockaddr *)&lst_addr, lst_len) != 0)
		abort();
	for (int i = 0; i < 8 && px->nconns == 0; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (px->nconns != 1)
		fail("the proxy did not accept the client");
}

/* FUZZ_CONN_DEBUG=1: what each side sent and got, to read a crash. */
static void
dump(void)
{
	fprintf(
	    stderr, "--- client sent %zu:\n%.*s\n", ctx.n, (int)ctx.n, ctx.p);
	for (size_t i = 0; i < nups; i++)
		fprintf(stderr,
		    "--- upstream %zu got %zu:\n%.*s\n--- and sent "
		    "%zu:\n%.*s\n",
		    i, ups[i].rx.n, (int)ups[i].rx.n, ups[i].rx.p, ups[i].tx.n,
		    (int)ups[i].tx.n, ups[i].tx.p);
	fprintf(stderr, "--- client got %zu:\n%.*s\n---\n", crx.n, (int)crx.n,
	    crx.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t i = 1;

	if (size == 0)
		return 0;
	init_once();
	px = &proxies[data[0] % NCONFIGS];
	listener.data = px;
	ctx.n = crx.n = 0;
	nups = 0;
	pend.req = NULL;
	cmode = CM_ACCEPT;
	fill_seq = 0;
	overflow = 0;
	last_fired = NULL;
	repeats = 0;
	connect_client();
	while (i < size) {
		i += run_op(data + i, size - i);
		step();
	}
	settle();
	if (getenv("FUZZ_CONN_DEBUG") != NULL)
		dump();
	if (!overflow)
		check_client();
	check_memory();
	for (size_t j = 0; j < MAX_UPS; j++)
		ups[j].tx.n = ups[j].rx.n = 0;
	return 0;
}
