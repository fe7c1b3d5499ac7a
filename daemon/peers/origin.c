/*
 * origin: see origin.h.
 *
 * Each connection is a raw non-blocking socket watched with uv_poll, not a
 * uv_tcp_t: the origin needs the descriptor itself for sendfile(2),
 * TCP_INFO, SIOCOUTQ, SO_LINGER and a close() that leaves the kernel an
 * orphan, exactly as a real server does.
 *
 * A connection reads one request (llhttp, paused at its end, so pipelined
 * requests wait in the kernel), answers it from an output buffer (head,
 * chunk framing and pattern bytes) or with sendfile (files), then reads
 * the next.  A 20 ms timer samples TCP_INFO while a response is queued:
 * it accumulates the time the peer's window was zero, runs the emulated
 * zero-window-probe schedule, the send timeout, and notices a kernel abort
 * (TCP_USER_TIMEOUT).  One JSON line is written when a connection ends.
 *
 * The zero-window-probe rule (--zwp-probes N --zwp-interval T0
 * [--zwp-max-interval TMAX]) is emulated: Linux probes a zero window
 * forever while the probes are answered (RFC 1122 4.2.2.17), and its
 * tcpi_probes is reset by every ACK.  So the origin watches tcpi_snd_wnd:
 * when it is 0 with bytes queued, probe k (from 1) is due at
 * sum_{j<k} min(T0*2^j, TMAX) after the window closed; when N probes are
 * due and the window is still closed, the origin aborts with RST
 * (SO_LINGER 0).  The schedule restarts when the window opens and data
 * moves.  A stack implementing the rule itself would count its real
 * probes (whose times follow the RTO, not T0) and could give up silently
 * instead of with a RST; the emulation keeps the rule's timing exact and
 * makes the abort visible to the receiver at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <llhttp.h>
#include <uv.h>

#include "base/address.h"
#include "base/http.h"
#include "base/json.h"
#include "base/list.h"
#include "base/log.h"
#include "base/pattern.h"
#include "base/range.h"
#include "base/sockopt.h"
#include "base/tcpinfo.h"
#include "base/units.h"
#include "peers/origin.h"

#define OBUF_SIZE (256 * 1024)
#define TICK_MS   20
#define HEAD_MAX  16384

struct origin_opts {
	struct sockaddr_any listen;
	const char *root;
	const char *json_path;
	uint64_t key;
	uint64_t sndbuf;
	uint64_t user_timeout_ms, send_timeout_ms;
	unsigned zwp_probes;
	uint64_t zwp_interval_ms, zwp_max_interval_ms;
	bool close_after_write;
	uint64_t drip_bytes, drip_every_ms;
	bool raw;
	uint64_t flip_at, truncate_at; /* UINT64_MAX: off */
};

struct origin {
	uv_loop_t *loop;
	struct origin_opts opt;
	int lfd;
	uv_poll_t lpoll;
	uv_signal_t sigint, sigterm;
	FILE *json;
	struct list conns; /* of oconn */
	size_t nconns;
	bool stopping;
};

enum body_kind {
	BODY_NONE = 0,
	BODY_PATTERN,
	BODY_FILE,
};

struct oconn {
	struct origin *o;
	struct list_node link; /* o->conns */
	int fd;
	uv_poll_t poll;
	uv_timer_t tick;
	uv_timer_t drip;
	int nhandles;
	bool closing;
	char peer[INET6_ADDRSTRLEN + 8];
	uint64_t t_start;

	/* request */
	llhttp_t parser;
	struct http_head head;
	char headbuf[HEAD_MAX];
	char in[16384];
	size_t inlen;
	bool req_ready;
	bool keepalive;
	int requests;
	char path[256];
	int status;

	/* response */
	bool responding;
	bool head_only;
	bool chunked;
	bool raw_stream; /* --raw: pattern until the peer closes */
	enum body_kind body;
	int file_fd;
	uint64_t off, end; /* next body offset to queue, end (exclusive) */
	uint64_t stop_at;  /* --truncate-at: close after this offset */
	bool last_chunk;   /* the 0-chunk is queued */
	char *obuf;
	size_t olen, ooff;
	size_t ob_body_lo, ob_body_hi; /* body bytes inside obuf */
	uint64_t drip_allow;

	/* accounting */
	uint64_t head_bytes;   /* heads and framing written */
	uint64_t body_written; /* body bytes written by the application */
	uint64_t body_total;   /* sum of the bodies' sizes */
	uint64_t acked_total;  /* tcpi_bytes_acked, last seen */
	uint64_t zw_since;     /* ms; 0: window open */
	uint64_t zw_ms;        /* total zero-window time */
	unsigned probes;       /* emulated, or the kernel's per episode */
	unsigned ep_probes;    /* in the current episode */
	uint64_t last_write;   /* ms of the last write progress */
	bool blocked;          /* the last write met a full socket */
	int64_t queued_at_close;
	const char *gave_up;
};

static void oconn_close(struct oconn *c, bool reset, const char *why);
static void end_episode(struct oconn *c, uint64_t now);
static void update_poll(struct oconn *c);
static void start_next_request(struct oconn *c);

static uint64_t
now_ms(struct origin *o)
{
	return uv_now(o->loop);
}

/* ---- JSON at the end of a connection --------------------------------- */

static void
json_line(struct oconn *c)
{
	uint64_t acked = 0, unsent;
	FILE *out = c->o->json != NULL ? c->o->json : stderr;

	if (c->acked_total > c->head_bytes)
		acked = c->acked_total - c->head_bytes;
	if (acked > c->body_written)
		acked = c->body_written;
	unsent = c->body_total > acked ? c->body_total - acked : 0;
	fprintf(out,
	    "{\"event\":\"origin_conn\",\"peer\":\"%s\",\"requests\":%d,"
	    "\"path\":",
	    c->peer, c->requests);
	json_string(out, c->path); /* the client's bytes: escaped */
	fprintf(out,
	    ",\"status\":%d,\"body_bytes\":%" PRIu64
	    ",\"bytes_written\":%" PRIu64 ",\"bytes_acked\":%" PRIu64
	    ",\"bytes_unsent\":%" PRIu64 ",\"queued_at_close\":%" PRId64
	    ",\"zero_window_s\":%.3f,\"probes\":%u,\"gave_up\":%s%s%s,"
	    "\"duration_s\":%.3f}\n",
	    c->status, c->body_total, c->body_written, acked, unsent,
	    c->queued_at_close, (double)c->zw_ms / 1000.0, c->probes,
	    c->gave_up ? "\"" : "", c->gave_up ? c->gave_up : "null",
	    c->gave_up ? "\"" : "",
	    (double)(now_ms(c->o) - c->t_start) / 1000.0);
	fflush(out);
}

/* ---- closing ---------------------------------------------------------- */

static void
oconn_on_close(uv_handle_t *h)
{
	struct oconn *c = h->data;

	if (--c->nhandles > 0)
		return;
	list_remove(&c->link);
	c->o->nconns--;
	free(c->obuf);
	free(c);
}

/* Reads the kernel's view one last time (TCP_INFO is gone after close). */
static void
final_sample(struct oconn *c)
{
	struct tcpinfo ti;
	int64_t q;

	if (tcpinfo_read(c->fd, &ti) == 0 && ti.bytes_acked > c->acked_total)
		c->acked_total = ti.bytes_acked;
	q = tcpinfo_outq(c->fd);
	c->queued_at_close = q < 0 ? 0 : q;
	if (c->raw_stream)
		c->body_total =
		    c->body_written; /* an endless body: what went */
	if (c->zw_since != 0)
		end_episode(c, now_ms(c->o));
}

/*
 * Ends the connection: reset sends RST (SO_LINGER 0); otherwise close()
 * leaves what is queued to the kernel, which delivers it or aborts the
 * orphan by its own rules.  Logs the give-up once, writes the JSON line.
 */
static void
oconn_close(struct oconn *c, bool reset, const char *why)
{
	if (c->closing)
		return;
	c->closing = true;
	final_sample(c);
	if (c->gave_up != NULL)
		log_info("origin: %s: gave up (%s): %s; %" PRIu64 " of %" PRIu64
		         " body bytes written, %" PRId64 " queued at close",
		    c->peer, c->gave_up, why, c->body_written, c->body_total,
		    c->queued_at_close);
	else if (why != NULL)
		log_debug("origin: %s: closed: %s", c->peer, why);
	if (reset) {
		struct linger l = {1, 0};

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	json_line(c);
	if (c->file_fd >= 0)
		close(c->file_fd);
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, oconn_on_close);
	uv_close((uv_handle_t *)&c->tick, oconn_on_close);
	uv_close((uv_handle_t *)&c->drip, oconn_on_close);
	close(c->fd);
}

/*
 * The socket failed under the application (a write, the poll, or the
 * tick saw it): when the kernel aborted it on TCP_USER_TIMEOUT that is the
 * give-up rule firing; anything else is an ordinary end.
 */
static void
socket_failed(struct oconn *c, int err)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
	    soerr != 0)
		err = soerr;
	if (err == ETIMEDOUT && c->o->opt.user_timeout_ms != 0)
		c->gave_up = "user-timeout";
	oconn_close(c, false, strerror(err));
}

/* ---- the zero-window watch -------------------------------------------- */

/* When probe k (1-based) of the emulated schedule is due, in ms after the
 * window closed. */
static uint64_t
probe_due(const struct origin_opts *opt, unsigned k)
{
	uint64_t t = 0, step = opt->zwp_interval_ms;

	for (unsigned j = 0; j < k; j++) {
		uint64_t s = step;

		if (opt->zwp_max_interval_ms != 0 &&
		    s > opt->zwp_max_interval_ms)
			s = opt->zwp_max_interval_ms;
		t += s;
		if (step < UINT64_MAX / 2)
			step *= 2;
	}
	return t;
}

static void
end_episode(struct oconn *c, uint64_t now)
{
	c->zw_ms += now - c->zw_since;
	c->zw_since = 0;
	c->probes += c->ep_probes;
	c->ep_probes = 0;
}

static void
oconn_on_tick(uv_timer_t *t)
{
	struct oconn *c = t->data;
	const struct origin_opts *opt = &c->o->opt;
	uint64_t now = now_ms(c->o);
	struct tcpinfo ti;
	int64_t outq;
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->closing)
		return;
	if (tcpinfo_read(c->fd, &ti) < 0)
		return;
	/* A kernel abort (TCP_USER_TIMEOUT, or retries spent) leaves the
	 * socket closed with an error the application has not read yet. */
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err != 0) {
		socket_failed(c, err);
		return;
	}
	outq = tcpinfo_outq(c->fd);
	/* Data moved since the last look: the window opened in between
	 * (on loopback it refills within microseconds, so a 20 ms sample
	 * would see zero almost every time): the episode, and the probe
	 * schedule, start over.  Only a window that stays shut with nothing
	 * acknowledged counts. */
	if (ti.bytes_acked > c->acked_total) {
		c->acked_total = ti.bytes_acked;
		if (c->zw_since != 0)
			end_episode(c, now);
	}
	if (ti.snd_wnd == 0 && outq > 0) {
		log_debug("origin: %s: zero window: probes %u backoff %u rto "
		          "%u us outq %lld",
		    c->peer, ti.probes, ti.backoff, ti.rto_us, (long long)outq);
		if (c->zw_since == 0) {
			c->zw_since = now;
			c->ep_probes = 0;
		}
		if (opt->zwp_probes == 0) {
			/* the kernel's own probes in this episode: its backoff
			 * grows by one per probe, answered or not */
			if (ti.backoff > c->ep_probes)
				c->ep_probes = ti.backoff;
		} else {
			while (c->ep_probes < opt->zwp_probes &&
			    now - c->zw_since >=
			        probe_due(opt, c->ep_probes + 1))
				c->ep_probes++;
			if (c->ep_probes >= opt->zwp_probes) {
				end_episode(c, now);
				c->gave_up = "zwp-probes";
				oconn_close(
				    c, true, "zero window outlived the probes");
				return;
			}
		}
	} else if (c->zw_since != 0) {
		end_episode(c, now);
	}
	/* nginx's send_timeout: the application has bytes to write and the
	 * socket has taken none of them for that long. */
	if (opt->send_timeout_ms != 0 && c->blocked &&
	    now - c->last_write >= opt->send_timeout_ms) {
		c->gave_up = "send-timeout";
		oconn_close(c, false, "no write progress for send_timeout");
	}
}

/* ---- writing the response --------------------------------------------- */

/* Where the current response's body stops being sent: the end, or the
 * --truncate-at offset when the response covers it. */
static uint64_t
body_limit(const struct oconn *c)
{
	return c->stop_at < c->end ? c->stop_at : c->end;
}

/* Bytes of body the drip allows now (all when not dripping). */
static uint64_t
drip_room(const struct oconn *c)
{
	return c->o->opt.drip_bytes != 0 ? c->drip_allow : UINT64_MAX;
}

/* Fills obuf with the next body piece (pattern bytes, chunk-framed when
 * chunked), or the last chunk.  Returns false when nothing is to send. */
static bool
refill(struct oconn *c)
{
	const struct origin_opts *opt = &c->o->opt;
	uint64_t limit = body_limit(c), n;
	size_t pre = 0;

	c->olen = c->ooff = 0;
	c->ob_body_lo = c->ob_body_hi = 0;
	if (c->body != BODY_PATTERN)
		return false;
	if (c->off >= limit) {
		if (c->chunked && !c->last_chunk && c->off >= c->end) {
			memcpy(c->obuf, "0\r\n\r\n", 5);
			c->olen = 5;
			c->last_chunk = true;
			return true;
		}
		return false;
	}
	n = limit - c->off;
	if (n > OBUF_SIZE - 64)
		n = OBUF_SIZE - 64;
	if (n > drip_room(c))
		n = drip_room(c);
	if (n == 0)
		return false;
	if (c->chunked)
		pre = (size_t)snprintf(c->obuf, 32, "%" PRIx64 "\r\n", n);
	pattern_fill(opt->key, c->off, c->obuf + pre, (size_t)n);
	if (opt->flip_at >= c->off && opt->flip_at < c->off + n)
		c->obuf[pre + (opt->flip_at - c->off)] ^= (char)0xff;
	c->ob_body_lo = pre;
	c->ob_body_hi = pre + (size_t)n;
	c->olen = pre + (size_t)n;
	if (c->chunked) {
		memcpy(c->obuf + c->olen, "\r\n", 2);
		c->olen += 2;
	}
	c->off += n;
	if (opt->drip_bytes != 0)
		c->drip_allow -= n;
	return true;
}

/* Counts what a write of w bytes at ooff carried: body or framing. */
static void
account(struct oconn *c, size_t w)
{
	size_t lo = c->ooff, hi = c->ooff + w, b = 0;

	if (hi > c->ob_body_lo && lo < c->ob_body_hi)
		b = (hi < c->ob_body_hi ? hi : c->ob_body_hi) -
		    (lo > c->ob_body_lo ? lo : c->ob_body_lo);
	c->body_written += b;
	c->head_bytes += w - b;
	c->ooff += w;
}

/* Sends file bytes with sendfile(2); returns bytes sent, 0 when the socket
 * is full, or a negative errno. */
static ssize_t
send_file(struct oconn *c)
{
	uint64_t limit = body_limit(c), n = limit - c->off;
	off_t off = (off_t)c->off;
	ssize_t w;

	if (n > drip_room(c))
		n = drip_room(c);
	if (n == 0)
		return 0;
	if (n > (1u << 30))
		n = 1u << 30;
	w = sendfile(c->fd, c->file_fd, &off, (size_t)n);
	if (w < 0)
		return errno == EAGAIN ? 0 : -errno;
	c->off += (uint64_t)w;
	c->body_written += (uint64_t)w;
	if (c->o->opt.drip_bytes != 0)
		c->drip_allow -= (uint64_t)w;
	return w;
}

static void
response_done(struct oconn *c)
{
	const struct origin_opts *opt = &c->o->opt;

	c->responding = false;
	c->blocked = false;
	if (c->file_fd >= 0) {
		close(c->file_fd);
		c->file_fd = -1;
	}
	if (c->stop_at < c->end) {
		oconn_close(c, false, "--truncate-at reached");
		return;
	}
	if (opt->close_after_write) {
		/* Everything is in the kernel: close at once, leaving the rest
		 * to it (an orphan when bytes are still queued). */
		int64_t q = tcpinfo_outq(c->fd);

		if (q > 0)
			c->gave_up = "orphan";
		oconn_close(c, false, "closed after writing the body");
		return;
	}
	if (!c->keepalive) {
		oconn_close(c, false, NULL);
		return;
	}
	start_next_request(c);
}

/*
 * Writes as much as the socket takes.  Returns when the socket is full
 * (poll for writable), the drip allowance is spent (the drip timer goes
 * on), or the response is complete.
 */
static void
pump(struct oconn *c)
{
	ssize_t w;

	while (c->responding && !c->closing) {
		if (c->ooff == c->olen) {
			if (c->body == BODY_FILE && c->off < body_limit(c)) {
				w = send_file(c);
				if (w < 0) {
					socket_failed(c, (int)-w);
					return;
				}
				if (w == 0) {
					c->blocked = drip_room(c) > 0;
					break;
				}
				c->last_write = now_ms(c->o);
				continue;
			}
			if (!refill(c)) {
				if (c->off >= body_limit(c) || c->head_only ||
				    c->body == BODY_NONE) {
					if (!c->raw_stream) {
						response_done(c);
						return;
					}
				}
				break; /* waiting for the drip */
			}
		}
		w = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				c->blocked = true;
				break;
			}
			socket_failed(c, errno);
			return;
		}
		account(c, (size_t)w);
		c->blocked = false;
		c->last_write = now_ms(c->o);
	}
	update_poll(c);
}

static void
oconn_on_drip(uv_timer_t *t)
{
	struct oconn *c = t->data;

	if (c->closing)
		return;
	/* Like the article's server (send, then sleep): a new portion only
	 * once the last one is in the socket; no catching up in bursts. */
	if (c->drip_allow == 0)
		c->drip_allow = c->o->opt.drip_bytes;
	if (c->responding)
		pump(c);
}

/* ---- requests --------------------------------------------------------- */

static void oconn_on_poll(uv_poll_t *p, int status, int events);

static void
update_poll(struct oconn *c)
{
	int ev = 0;

	if (c->closing)
		return;
	if (!c->responding || c->raw_stream)
		ev |= UV_READABLE;
	if (c->responding && c->blocked)
		ev |= UV_WRITABLE;
	if (ev != 0)
		uv_poll_start(&c->poll, ev, oconn_on_poll);
	else
		uv_poll_stop(&c->poll);
}

static const char *
http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return buf;
}

/* What a request asks for, once its path is resolved. */
struct answer {
	int status;
	uint64_t size;        /* the whole body */
	uint64_t first, last; /* the part sent (inclusive), for 206 */
	char etag[80];
	char last_modified[64];
	const char *text; /* short text body for errors */
};

/* A small text answer (4xx) that ends the connection. */
static void
answer_text(struct oconn *c, int status, const char *text)
{
	char date[64];
	int n;

	n = snprintf(c->obuf, OBUF_SIZE,
	    "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: sluice-origin\r\n"
	    "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s",
	    status, http_reason(status), http_date(time(NULL), date, 64),
	    strlen(text), text);
	c->status = status;
	c->olen = (size_t)n;
	c->ooff = 0;
	c->body = BODY_NONE;
	c->head_only = true;
	c->keepalive = false;
	c->responding = true;
}

/* Resolves a path under --root; 0 with *fd open, or an HTTP status. */
static int
open_file(struct oconn *c, const char *path, int *fd, struct stat *st)
{
	char full[PATH_MAX];

	if (strstr(path, "/../") != NULL ||
	    strstr(path, "/..") == path + strlen(path) - 3 ||
	    strcmp(path, "/..") == 0 || strchr(path, '%') != NULL)
		return 403;
	if (snprintf(full, sizeof(full), "%s%s", c->o->opt.root, path) >=
	    (int)sizeof(full))
		return 414;
	if ((*fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == EACCES ? 403 : 404;
	if (fstat(*fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(*fd);
		*fd = -1;
		return 404;
	}
	return 0;
}

/* Applies Range and If-Range to a body of a->size bytes. */
static void
apply_range(struct oconn *c, struct answer *a)
{
	const char *v, *ir;
	size_t vlen, irlen;

	a->status = 200;
	a->first = 0;
	a->last = a->size - 1;
	v = http_head_get(&c->head, "range", &vlen);
	if (v == NULL || llhttp_get_method(&c->parser) != HTTP_GET)
		return;
	ir = http_head_get(&c->head, "if-range", &irlen);
	if (ir != NULL &&
	    !(irlen == strlen(a->etag) && memcmp(ir, a->etag, irlen) == 0) &&
	    !(irlen == strlen(a->last_modified) &&
	        memcmp(ir, a->last_modified, irlen) == 0))
		return; /* the representation changed: the whole body */
	switch (range_parse(v, vlen, a->size, &a->first, &a->last)) {
	case RANGE_OK:
		a->status = 206;
		break;
	case RANGE_UNSATISFIABLE:
		a->status = 416;
		break;
	case RANGE_NONE:
		break;
	}
}

static void
write_head(struct oconn *c, const struct answer *a, bool chunked)
{
	char date[64], range[96] = "";
	size_t n;

	if (a->status == 206)
		snprintf(range, sizeof(range),
		    "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64
		    "\r\n",
		    a->first, a->last, a->size);
	else if (a->status == 416)
		snprintf(range, sizeof(range),
		    "Content-Range: bytes */%" PRIu64 "\r\n", a->size);
	n = (size_t)snprintf(c->obuf, OBUF_SIZE,
	    "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: sluice-origin\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Accept-Ranges: bytes\r\nETag: %s\r\nLast-Modified: %s\r\n%s",
	    a->status,
	    a->status == 206       ? "Partial Content"
	        : a->status == 416 ? "Range Not Satisfiable"
	                           : "OK",
	    http_date(time(NULL), date, sizeof(date)), a->etag,
	    a->last_modified, range);
	if (chunked)
		n += (size_t)snprintf(c->obuf + n, OBUF_SIZE - n,
		    "Transfer-Encoding: chunked\r\n");
	else
		n += (size_t)snprintf(c->obuf + n, OBUF_SIZE - n,
		    "Content-Length: %" PRIu64 "\r\n",
		    a->status == 416 ? 0 : a->last - a->first + 1);
	if (!c->keepalive)
		n += (size_t)snprintf(
		    c->obuf + n, OBUF_SIZE - n, "Connection: close\r\n");
	else if (llhttp_get_http_minor(&c->parser) == 0)
		n += (size_t)snprintf(
		    c->obuf + n, OBUF_SIZE - n, "Connection: keep-alive\r\n");
	n += (size_t)snprintf(c->obuf + n, OBUF_SIZE - n, "\r\n");
	c->olen = n;
	c->ooff = 0;
	c->ob_body_lo = c->ob_body_hi = 0;
	c->status = a->status;
}

/* Starts the body of an answer whose head is in obuf. */
static void
start_body(struct oconn *c, const struct answer *a, enum body_kind kind)
{
	const struct origin_opts *opt = &c->o->opt;

	c->responding = true;
	c->last_chunk = false;
	c->body = kind;
	if (c->head_only || a->status == 416) {
		c->body = BODY_NONE;
		c->head_only = true;
		return;
	}
	c->off = a->first;
	c->end = a->last + 1;
	c->stop_at = opt->truncate_at > c->off && opt->truncate_at < c->end
	    ? opt->truncate_at
	    : UINT64_MAX;
	c->body_total += c->end - c->off;
	c->drip_allow = opt->drip_bytes;
	if (opt->drip_bytes != 0)
		uv_timer_start(&c->drip, oconn_on_drip, opt->drip_every_ms,
		    opt->drip_every_ms);
}

static void
handle_request(struct oconn *c)
{
	const struct http_head *h = &c->head;
	struct answer a = {0};
	char path[sizeof(c->path)];
	const char *q;
	bool chunked = false;
	int method = llhttp_get_method(&c->parser), st, fd = -1;
	struct stat sb;
	size_t plen;

	c->requests++;
	c->keepalive = llhttp_should_keep_alive(&c->parser) &&
	    !c->o->opt.close_after_write;
	plen = h->text_len < sizeof(path) - 1 ? h->text_len : sizeof(path) - 1;
	memcpy(path, h->buf + h->text_off, plen);
	path[plen] = '\0';
	if ((q = strchr(path, '?')) != NULL) {
		chunked = strstr(q, "chunked=1") != NULL;
		path[q - path] = '\0';
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	if (method != HTTP_GET && method != HTTP_HEAD) {
		answer_text(c, 405, "only GET and HEAD\n");
		goto send;
	}
	c->head_only = method == HTTP_HEAD;
	if (strncmp(path, "/bytes/", 7) == 0) {
		if (units_parse_size(path + 7, &a.size) < 0) {
			answer_text(c, 400, "bad size in /bytes/SIZE\n");
			goto send;
		}
		pattern_etag(c->o->opt.key, a.size, a.etag, sizeof(a.etag));
		http_date(1767225600, a.last_modified, sizeof(a.last_modified));
		apply_range(c, &a);
		if (a.size == 0 && a.status == 200)
			a.last = 0, a.first = 1; /* empty body */
		write_head(c, &a, chunked && a.status != 416);
		c->chunked = chunked && a.status != 416;
		start_body(c, &a, BODY_PATTERN);
		goto send;
	}
	if (c->o->opt.root == NULL) {
		answer_text(c, 404, "no such path; try /bytes/SIZE\n");
		goto send;
	}
	if ((st = open_file(c, path, &fd, &sb)) != 0) {
		answer_text(c, st, "not served\n");
		goto send;
	}
	a.size = (uint64_t)sb.st_size;
	snprintf(a.etag, sizeof(a.etag),
	    "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)sb.st_ino,
	    (uint64_t)sb.st_mtime, a.size);
	http_date(sb.st_mtime, a.last_modified, sizeof(a.last_modified));
	apply_range(c, &a);
	if (a.size == 0 && a.status == 200)
		a.last = 0, a.first = 1;
	write_head(c, &a, false);
	c->chunked = false;
	c->file_fd = fd;
	start_body(c, &a, BODY_FILE);
send:
	c->responding = true;
	pump(c);
}

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&((struct oconn *)p->data)->head, at, len);
}

static int
req_on_begin(llhttp_t *p)
{
	http_head_reset(&((struct oconn *)p->data)->head);
	return 0;
}

static int
req_on_complete(llhttp_t *p)
{
	((struct oconn *)p->data)->req_ready = true;
	return HPE_PAUSED;
}

static llhttp_settings_t req_settings;

/* Parses what is in c->in; answers a complete request. */
static void
parse_input(struct oconn *c)
{
	llhttp_errno_t err;
	size_t used;

	if (c->inlen == 0)
		return;
	err = llhttp_execute(&c->parser, c->in, c->inlen);
	if (err == HPE_PAUSED) {
		used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in);
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	} else if (err == HPE_OK) {
		c->inlen = 0;
	} else {
		answer_text(c, 400, "malformed request\n");
		pump(c);
		return;
	}
	if (c->req_ready) {
		c->req_ready = false;
		handle_request(c);
	}
}

static void
start_next_request(struct oconn *c)
{
	llhttp_resume(&c->parser);
	c->body = BODY_NONE;
	c->head_only = false;
	uv_timer_stop(&c->drip);
	update_poll(c);
	parse_input(c);
}

static void
oconn_on_poll(uv_poll_t *p, int status, int events)
{
	struct oconn *c = container_of(p, struct oconn, poll);
	ssize_t n;

	if (c->closing)
		return;
	if (status < 0) {
		socket_failed(c, -status);
		return;
	}
	if (events & UV_WRITABLE) {
		c->blocked = false;
		pump(c);
		if (c->closing)
			return;
	}
	if (!(events & UV_READABLE))
		return;
	if (c->raw_stream) {
		char sink[4096];

		n = read(c->fd, sink, sizeof(sink));
	} else {
		n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	}
	if (n == 0) {
		oconn_close(c, false, "peer closed");
		return;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		socket_failed(c, errno);
		return;
	}
	if (n < 0 || c->raw_stream)
		return;
	c->inlen += (size_t)n;
	if (c->inlen == sizeof(c->in) && !c->req_ready &&
	    c->head.len >= sizeof(c->headbuf)) {
		answer_text(c, 431, "request head too large\n");
		pump(c);
		return;
	}
	parse_input(c);
}

/* ---- accepting -------------------------------------------------------- */

static void
oconn_start(struct origin *o, int fd, const struct sockaddr_storage *ss)
{
	const struct origin_opts *opt = &o->opt;
	const char *which = NULL;
	struct oconn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL || (c->obuf = malloc(OBUF_SIZE)) == NULL) {
		free(c);
		close(fd);
		log_error("origin: out of memory");
		return;
	}
	c->o = o;
	c->fd = fd;
	c->file_fd = -1;
	c->t_start = now_ms(o);
	c->last_write = c->t_start;
	address_text(
	    (const struct sockaddr *)ss, NULL, 0, c->peer, sizeof(c->peer));
	setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
	if (sockopt_client(fd, opt->sndbuf, opt->user_timeout_ms, &which) < 0)
		log_warn("origin: cannot set %s: %s", which, strerror(errno));
	http_head_init(&c->head, c->headbuf, sizeof(c->headbuf));
	llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
	c->parser.data = c;
	uv_poll_init(o->loop, &c->poll, fd);
	uv_timer_init(o->loop, &c->tick);
	uv_timer_init(o->loop, &c->drip);
	c->poll.data = c->tick.data = c->drip.data = c;
	c->nhandles = 3;
	list_insert_head(&o->conns, &c->link);
	o->nconns++;
	uv_timer_start(&c->tick, oconn_on_tick, TICK_MS, TICK_MS);
	log_debug("origin: accepted %s", c->peer);
	if (opt->raw) {
		/* The seed article's server: no HTTP, the pattern from the
		 * first byte on, until the peer goes. */
		struct answer a = {.first = 0, .last = UINT64_MAX - 1};

		snprintf(c->path, sizeof(c->path), "(raw)");
		c->raw_stream = true;
		c->olen = c->ooff = 0;
		start_body(c, &a, BODY_PATTERN);
		c->body_total = 0;
		pump(c);
		return;
	}
	update_poll(c);
}

static void
origin_on_listen(uv_poll_t *p, int status, int events)
{
	struct origin *o = p->data;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	(void)events;
	if (status < 0 || o->stopping)
		return;
	for (int i = 0; i < 64; i++) {
		len = sizeof(ss);
		fd = accept4(o->lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("origin: accept: %s", strerror(errno));
			return;
		}
		oconn_start(o, fd, &ss);
	}
}

/* ---- the verb --------------------------------------------------------- */

void
origin_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice origin --listen ADDR [options]\n"
	    "\n"
	    "A fast HTTP/1.1 origin for the testbed.  GET/HEAD /bytes/SIZE\n"
	    "(/bytes/2.5G) sends SIZE bytes of the keyed pattern that\n"
	    "'sluice fetch --verify' checks, with Content-Length, a strong "
	    "ETag,\n"
	    "Accept-Ranges and single Range requests (206, 416);\n"
	    "/bytes/SIZE?chunked=1 sends it chunked.  It writes as fast as "
	    "the\n"
	    "socket takes.\n"
	    "\n"
	    "  --listen ADDR          host:port or [v6]:port (port 0: any)\n"
	    "  --root DIR             also serve the files under DIR "
	    "(sendfile)\n"
	    "  --key NAME             pattern key (default \"sluice\")\n"
	    "  --sndbuf SIZE          SO_SNDBUF of each connection\n"
	    "  --json FILE            one JSON line per connection (default: "
	    "stderr)\n"
	    "  --log-level LEVEL      error, warn, info (default), debug\n"
	    "\n"
	    "Give-up rules (how a server ends a download a zero-window "
	    "receiver\n"
	    "holds up; each logs which fired and sets gave_up in the JSON):\n"
	    "  --zwp-probes N --zwp-interval T0 [--zwp-max-interval TMAX]\n"
	    "                         abort with RST after N zero-window "
	    "probes\n"
	    "                         at T0, 2*T0, 4*T0... (capped at TMAX),\n"
	    "                         emulated from TCP_INFO (Linux never "
	    "gives\n"
	    "                         up while its probes are answered)\n"
	    "  --user-timeout T       TCP_USER_TIMEOUT: the kernel aborts\n"
	    "  --send-timeout T       close after T without write progress\n"
	    "                         (nginx send_timeout)\n"
	    "  --close-after-write    close() once the body is in the socket;\n"
	    "                         the kernel finishes or aborts the "
	    "orphan\n"
	    "\n"
	    "The seed article's server and fault injection:\n"
	    "  --drip BYTES --every T send BYTES every T\n"
	    "  --raw                  no HTTP: the pattern from the first "
	    "byte\n"
	    "  --flip-at OFFSET       corrupt the body byte at OFFSET\n"
	    "  --truncate-at OFFSET   close (FIN) after the body byte before "
	    "OFFSET\n"
	    "\n"
	    "JSON fields: bytes_written bytes_acked bytes_unsent "
	    "zero_window_s\n"
	    "probes gave_up duration_s (and peer requests path status\n"
	    "body_bytes queued_at_close).  SIGINT/SIGTERM end it (exit 0).\n");
}

static int
bad_option(const char *name, const char *value, const char *what)
{
	fprintf(stderr, "sluice origin: --%s %s: %s\n", name,
	    value ? value : "", what);
	return 2;
}

enum {
	OPT_LISTEN = 256,
	OPT_ROOT,
	OPT_KEY,
	OPT_SNDBUF,
	OPT_USER_TIMEOUT,
	OPT_SEND_TIMEOUT,
	OPT_ZWP_PROBES,
	OPT_ZWP_INTERVAL,
	OPT_ZWP_MAX,
	OPT_CLOSE_AFTER_WRITE,
	OPT_DRIP,
	OPT_EVERY,
	OPT_RAW,
	OPT_FLIP,
	OPT_TRUNCATE,
	OPT_JSON,
	OPT_LOG_LEVEL,
};

static const struct option origin_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"root", required_argument, NULL, OPT_ROOT},
    {"key", required_argument, NULL, OPT_KEY},
    {"sndbuf", required_argument, NULL, OPT_SNDBUF},
    {"user-timeout", required_argument, NULL, OPT_USER_TIMEOUT},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"zwp-probes", required_argument, NULL, OPT_ZWP_PROBES},
    {"zwp-interval", required_argument, NULL, OPT_ZWP_INTERVAL},
    {"zwp-max-interval", required_argument, NULL, OPT_ZWP_MAX},
    {"close-after-write", no_argument, NULL, OPT_CLOSE_AFTER_WRITE},
    {"drip", required_argument, NULL, OPT_DRIP},
    {"every", required_argument, NULL, OPT_EVERY},
    {"raw", no_argument, NULL, OPT_RAW},
    {"flip-at", required_argument, NULL, OPT_FLIP},
    {"truncate-at", required_argument, NULL, OPT_TRUNCATE},
    {"json", required_argument, NULL, OPT_JSON},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parses one option's value with the units parser it takes. */
static int
option_value(int opt, const char *v, struct origin_opts *o, const char **why)
{
	uint64_t u;

	switch (opt) {
	case OPT_LISTEN:
		*why = "not an address (host:port or [v6]:port)";
		return address_parse(v, 1, &o->listen);
	case OPT_ROOT:
		o->root = v;
		return 0;
	case OPT_KEY:
		o->key = pattern_key(v);
		return 0;
	case OPT_JSON:
		o->json_path = v;
		return 0;
	case OPT_LOG_LEVEL:
		*why = "not one of error, warn, info, debug";
		for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
			static const char *const n[] = {
			    "error", "warn", "info", "debug"};

			if (strcmp(v, n[i]) == 0) {
				log_set_level((enum log_level)i);
				return 0;
			}
		}
		return -EINVAL;
	case OPT_ZWP_PROBES:
		*why = "not a count from 1 to 64";
		if (units_parse_size(v, &u) < 0 || u < 1 || u > 64)
			return -EINVAL;
		o->zwp_probes = (unsigned)u;
		return 0;
	case OPT_SNDBUF:
	case OPT_DRIP:
	case OPT_FLIP:
	case OPT_TRUNCATE:
		*why = "not a size (bytes, or with k, M, G)";
		if (units_parse_size(v, &u) < 0)
			return -EINVAL;
		if (opt == OPT_SNDBUF)
			o->sndbuf = u;
		else if (opt == OPT_DRIP)
			o->drip_bytes = u;
		else if (opt == OPT_FLIP)
			o->flip_at = u;
		else
			o->truncate_at = u;
		return 0;
	default:
		*why = "not a duration (ms, s, m, h)";
		if (units_parse_duration(v, &u) < 0)
			return -EINVAL;
		if (opt == OPT_USER_TIMEOUT)
			o->user_timeout_ms = u;
		else if (opt == OPT_SEND_TIMEOUT)
			o->send_timeout_ms = u;
		else if (opt == OPT_ZWP_INTERVAL)
			o->zwp_interval_ms = u;
		else if (opt == OPT_ZWP_MAX)
			o->zwp_max_interval_ms = u;
		else
			o->drip_every_ms = u;
		return 0;
	}
}

static int
parse_args(int argc, char **argv, struct origin_opts *o)
{
	const char *why = "";
	int c, idx;

	memset(o, 0, sizeof(*o));
	o->key = pattern_key(PATTERN_DEFAULT_NAME);
	o->flip_at = o->truncate_at = UINT64_MAX;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", origin_options, &idx)) != -1) {
		if (c == 'h') {
			origin_usage(stdout);
			return -1;
		}
		if (c == '?')
			return 2;
		if (c == OPT_CLOSE_AFTER_WRITE)
			o->close_after_write = true;
		else if (c == OPT_RAW)
			o->raw = true;
		else if (option_value(c, optarg, o, &why) < 0)
			return bad_option(
			    origin_options[idx].name, optarg, why);
	}
	if (optind < argc)
		return bad_option("", argv[optind], "unexpected argument");
	if (o->listen.len == 0)
		return bad_option("listen", NULL, "is required");
	if ((o->zwp_probes != 0) != (o->zwp_interval_ms != 0))
		return bad_option("zwp-probes", NULL,
		    "--zwp-probes and --zwp-interval go together");
	if ((o->drip_bytes != 0) != (o->drip_every_ms != 0))
		return bad_option(
		    "drip", NULL, "--drip and --every go together");
	return 0;
}

static void
origin_stop(struct origin *o)
{
	if (o->stopping)
		return;
	o->stopping = true;
	uv_poll_stop(&o->lpoll);
	uv_close((uv_handle_t *)&o->lpoll, NULL);
	close(o->lfd);
	list_foreach(c, &o->conns, struct oconn, link)
	    oconn_close(c, false, "origin stopping");
	uv_close((uv_handle_t *)&o->sigint, NULL);
	uv_close((uv_handle_t *)&o->sigterm, NULL);
}

static void
origin_on_signal(uv_signal_t *s, int signum)
{
	log_info("origin: signal %d, stopping", signum);
	origin_stop(s->data);
}

/* Binds and listens; returns the descriptor or a negative errno. */
static int
listen_on(const struct sockaddr_any *a)
{
	int fd, one = 1, rc;

	fd = socket(
	    a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(fd, 1024) == -1) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void
print_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char text[INET6_ADDRSTRLEN + 8] = "?";

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		address_text(
		    (struct sockaddr *)&ss, NULL, 0, text, sizeof(text));
	log_info("origin: listening on %s", text);
}

int
origin_main(int argc, char **argv)
{
	struct origin o;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = parse_args(argc, argv, &o.opt)) != 0)
		return rc < 0 ? 0 : rc;
	signal(SIGPIPE, SIG_IGN);
	if (o.opt.json_path != NULL &&
	    (o.json = fopen(o.opt.json_path, "a")) == NULL) {
		fprintf(stderr, "sluice origin: --json %s: %s\n",
		    o.opt.json_path, strerror(errno));
		return 2;
	}
	if ((o.lfd = listen_on(&o.opt.listen)) < 0) {
		fprintf(stderr, "sluice origin: --listen %s: %s\n",
		    o.opt.listen.text, strerror(-o.lfd));
		if (o.json != NULL)
			fclose(o.json);
		return 2;
	}
	llhttp_settings_init(&req_settings);
	req_settings.on_message_begin = req_on_begin;
	req_settings.on_url = req_on_url;
	req_settings.on_header_field = req_on_field;
	req_settings.on_header_value = req_on_value;
	req_settings.on_message_complete = req_on_complete;
	o.loop = uv_default_loop();
	uv_poll_init(o.loop, &o.lpoll, o.lfd);
	o.lpoll.data = &o;
	uv_poll_start(&o.lpoll, UV_READABLE, origin_on_listen);
	uv_signal_init(o.loop, &o.sigint);
	uv_signal_init(o.loop, &o.sigterm);
	o.sigint.data = o.sigterm.data = &o;
	uv_signal_start(&o.sigint, origin_on_signal, SIGINT);
	uv_signal_start(&o.sigterm, origin_on_signal, SIGTERM);
	print_listening(o.lfd);
	uv_run(o.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(o.loop);
	if (o.json != NULL)
		fclose(o.json);
	return rc == 0 ? 0 : 1;
}
