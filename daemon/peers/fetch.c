/*
 * fetch: see fetch.h.
 *
 * One blocking socket per attempt and poll(2) for the timeouts: a client
 * that reads at a chosen pace needs no event loop, and blocking reads of a
 * chosen size are what make its receive window what the reader makes it
 * (with a small --rcvbuf).  llhttp parses the response; every body byte
 * passes through on_body, where it is verified against the pattern at its
 * offset and written to -o.
 *
 * A download is `complete` when the body's framing says it ended with all
 * its bytes (Content-Length reached, last chunk, or the close of a
 * close-delimited body), `truncated` when the connection ended first,
 * `corrupt` at the first byte that differs from the pattern, `refused` when
 * no connection or no 2xx answer could be had, `timeout` when no byte came
 * for --timeout.  --resume turns a truncation into another request with
 * Range: bytes=N- and If-Range: ETAG, whose 206 must start at N.
 *
 * --stall-at BYTES --stall-for T is the article's printer out of
 * paper: once BYTES body bytes came, the socket is not read for T, so the
 * receive buffer fills and the window closes; then reading goes on at the
 * same pace.  The reads before it are capped so that exactly BYTES are
 * taken when it starts (the head's end is found by peeking).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "base/http.h"
#include "base/json.h"
#include "base/pattern.h"
#include "base/range.h"
#include "base/units.h"
#include "peers/fetch.h"
#include "version.h"

#define BUF_SIZE (64 * 1024)
/* --read's reads kept for the JSON (the lab plots them): the first ones. */
#define READ_LOG 1024

enum outcome {
	OUT_COMPLETE = 0,
	OUT_TRUNCATED,
	OUT_CORRUPT,
	OUT_REFUSED,
	OUT_TIMEOUT,
};

static const char *const outcome_names[] = {
    "complete", "truncated", "corrupt", "refused", "timeout"};

struct fetch_opts {
	char url[1024];
	bool raw; /* tcp:// */
	char host[256];
	char port[16];
	char path[768];
	uint64_t rate_bps;    /* 0: as fast as possible */
	uint64_t read_bytes;  /* --read */
	uint64_t interval_ms; /* --interval */
	uint64_t count;       /* --count (0: until the end) */
	uint64_t rcvbuf;
	uint64_t window_clamp; /* --window-clamp: TCP_WINDOW_CLAMP, 0: none */
	const char *source; /* --source: the local address to bind, or NULL */
	bool resume;
	unsigned resume_attempts;
	bool verify;
	bool json;
	const char *out_path;
	uint64_t timeout_ms;
	bool have_key;
	uint64_t key;
	bool have_stall_at;
	uint64_t stall_at;     /* --stall-at: body bytes before the stall */
	uint64_t stall_for_ms; /* --stall-for; 0: no stall */
};

struct fetch {
	struct fetch_opts opt;
	FILE *out;
	int fd;
	double t0;
	double pace_t0;      /* --rate: the pace counts from here... */
	uint64_t pace_bytes; /* ...and from this many wire bytes */

	/* the representation */
	int status;        /* of the first answer */
	uint64_t expected; /* body size, UINT64_MAX: unknown */
	char etag[128];
	bool etag_strong;
	bool verifiable;
	uint64_t key;

	/* progress */
	uint64_t received;   /* body bytes in order, from offset 0 */
	uint64_t wire_bytes; /* all bytes read, for pacing */
	uint64_t reads;      /* --count */
	int clamp_at_end;    /* TCP_WINDOW_CLAMP read back before close */
	struct {
		double t;     /* seconds since the start */
		size_t n;     /* bytes */
	} read_log[READ_LOG]; /* with --read: when each read returned */
	size_t nread_log;
	int resumes;
	bool corrupt;
	uint64_t first_bad;
	enum outcome outcome;
	char why[160];
	bool stalled;     /* the one stall has been done */
	double stalled_s; /* and lasted this long */

	/* the attempt in progress */
	llhttp_t parser;
	struct http_head head;
	char headbuf[16384];
	uint64_t offset; /* body offset of the next byte */
	bool head_done;
	bool done;    /* message complete */
	bool restart; /* a resume got 200: start over */
	bool bad_answer;
	double last_progress;
	int head_match; /* chars of "\r\n\r\n" ending the head bytes read */
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void set_outcome(struct fetch *f, enum outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_outcome(struct fetch *f, enum outcome o, const char *fmt, ...)
{
	va_list ap;

	f->outcome = o;
	va_start(ap, fmt);
	vsnprintf(f->why, sizeof(f->why), fmt, ap);
	va_end(ap);
}

/* ---- URL and connection ------------------------------------------------ */

/* http://host[:port]/path, http://[v6]:port/path, tcp://host:port */
static int
parse_url(const char *url, struct fetch_opts *o)
{
	const char *p, *hs, *he, *ps;
	size_t hl;

	snprintf(o->url, sizeof(o->url), "%s", url);
	if (strncmp(url, "http://", 7) == 0) {
		p = url + 7;
		strcpy(o->port, "80");
	} else if (strncmp(url, "tcp://", 6) == 0) {
		p = url + 6;
		o->raw = true;
		o->port[0] = '\0';
	} else {
		return -EINVAL;
	}
	if (*p == '[') {
		hs = p + 1;
		if ((he = strchr(hs, ']')) == NULL)
			return -EINVAL;
		ps = he + 1;
	} else {
		hs = p;
		he = hs + strcspn(hs, ":/");
		ps = he;
	}
	hl = (size_t)(he - hs);
	if (hl == 0 || hl >= sizeof(o->host))
		return -EINVAL;
	memcpy(o->host, hs, hl);
	o->host[hl] = '\0';
	if (*ps == ':') {
		size_t pl = strspn(ps + 1, "0123456789");

		if (pl == 0 || pl >= sizeof(o->port))
			return -EINVAL;
		memcpy(o->port, ps + 1, pl);
		o->port[pl] = '\0';
		ps += 1 + pl;
	}
	if (o->port[0] == '\0')
		return -EINVAL; /* tcp:// needs a port */
	if (*ps == '\0')
		strcpy(o->path, "/");
	else if (*ps == '/' && strlen(ps) < sizeof(o->path))
		snprintf(o->path, sizeof(o->path), "%s", ps);
	else
		return -EINVAL;
	return 0;
}

/* --source: binds fd to that address (any port) of ai's family, so one
 * host can be several clients (the lab's [dos] clients use their own). */
static int
bind_source(int fd, const struct addrinfo *ai, const struct fetch_opts *o)
{
	struct addrinfo hints = {0}, *res;
	int rc;

	hints.ai_family = ai->ai_family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	if (getaddrinfo(o->source, "0", &hints, &res) != 0)
		return -EADDRNOTAVAIL;
	rc = bind(fd, res->ai_addr, res->ai_addrlen) == 0 ? 0 : -errno;
	freeaddrinfo(res);
	return rc;
}

/* Connects within the timeout; the socket or a negative errno. */
static int
dial(const struct fetch_opts *o)
{
	struct addrinfo hints = {0}, *res, *ai;
	int fd = -1, rc = -ECONNREFUSED, one = 1;

	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(o->host, o->port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		int err = 0;
		socklen_t len = sizeof(err);

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		/* Before connect: the window scale is fixed in the SYN. */
		if (o->rcvbuf != 0) {
			int v = (int)o->rcvbuf;

			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
		}
		/* Before connect too, so the SYN's window honours it. */
		if (o->window_clamp != 0) {
			int v = (int)o->window_clamp;

			if (setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &v,
			        sizeof(v)) == -1) {
				rc = -errno;
				goto next;
			}
		}
		setsockopt(
		    fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
		if (o->source != NULL && (rc = bind_source(fd, ai, o)) < 0)
			goto next;
		fcntl(fd, F_SETFL, O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			goto connected;
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto next;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, o->timeout_ms ? (int)o->timeout_ms : -1) <=
		    0) {
			rc = -ETIMEDOUT;
			goto next;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err == 0)
			goto connected;
		rc = -err;
	next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return rc;
connected:
	freeaddrinfo(res);
	fcntl(fd, F_SETFL, 0); /* blocking reads: the reader sets the pace */
	return fd;
}

static int
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
send_request(struct fetch *f)
{
	char req[2048];
	int n;

	n = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
	    "User-Agent: sluice-fetch/%s\r\nAccept: */*\r\n",
	    f->opt.path, strchr(f->opt.host, ':') ? "[" : "", f->opt.host,
	    strchr(f->opt.host, ':') ? "]" : "", f->opt.port, SLUICE_VERSION);
	if (f->offset > 0)
		n += snprintf(req + n, sizeof(req) - (size_t)n,
		    "Range: bytes=%" PRIu64 "-\r\nIf-Range: %s\r\n", f->offset,
		    f->etag);
	n += snprintf(
	    req + n, sizeof(req) - (size_t)n, "Connection: close\r\n\r\n");
	return send_all(f->fd, req, (size_t)n);
}

/* ---- the response ------------------------------------------------------ */

static struct fetch *
of(llhttp_t *p)
{
	return p->data;
}

static int
on_begin(llhttp_t *p)
{
	http_head_reset(&of(p)->head);
	return 0;
}

static int
on_status(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&of(p)->head, at, len);
}

static int
on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&of(p)->head, at, len);
}

static int
on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&of(p)->head, at, len);
}

/* The first answer: what the body is, and whether we can verify it. */
static int
first_answer(struct fetch *f, llhttp_t *p, int status)
{
	const char *v;
	size_t len;
	uint64_t a, b, total;

	f->status = status;
	if (status != 200 && status != 206) {
		set_outcome(f, OUT_REFUSED, "HTTP %d", status);
		f->bad_answer = true;
		return -1;
	}
	f->expected =
	    (p->flags & F_CONTENT_LENGTH) ? p->content_length : UINT64_MAX;
	if (status == 206) {
		v = http_head_get(&f->head, "content-range", &len);
		if (v == NULL ||
		    range_parse_content_range(v, len, &a, &b, &total) < 0 ||
		    a == UINT64_MAX) {
			set_outcome(f, OUT_REFUSED,
			    "206 without a usable "
			    "Content-Range");
			f->bad_answer = true;
			return -1;
		}
		f->offset = a;
	}
	f->etag[0] = '\0';
	f->etag_strong = false;
	if ((v = http_head_get(&f->head, "etag", &len)) != NULL &&
	    len < sizeof(f->etag)) {
		memcpy(f->etag, v, len);
		f->etag[len] = '\0';
		f->etag_strong = strncmp(f->etag, "W/", 2) != 0;
	}
	f->verifiable = true;
	if (f->opt.have_key)
		f->key = f->opt.key;
	else if (pattern_etag_key(f->etag, strlen(f->etag), &f->key) == 0)
		;
	else if (strncmp(f->opt.path, "/bytes/", 7) == 0)
		f->key = pattern_key(PATTERN_DEFAULT_NAME);
	else
		f->verifiable = false;
	return 0;
}

/* A resumed request's answer: a 206 that continues exactly where we are,
 * or a 200 because the representation changed (If-Range), which starts
 * the download over. */
static int
resumed_answer(struct fetch *f, llhttp_t *p, int status)
{
	const char *v;
	size_t len;
	uint64_t a, b, total;

	if (status == 200) {
		f->restart = true;
		f->received = f->offset = 0;
		f->corrupt = false;
		if (f->out != NULL &&
		    (fflush(f->out) != 0 || ftruncate(fileno(f->out), 0) != 0 ||
		        fseek(f->out, 0, SEEK_SET) != 0))
			return -1;
		return first_answer(f, p, status);
	}
	v = http_head_get(&f->head, "content-range", &len);
	if (status != 206 || v == NULL ||
	    range_parse_content_range(v, len, &a, &b, &total) < 0 ||
	    a != f->offset ||
	    (f->expected != UINT64_MAX && total != f->expected)) {
		set_outcome(f, OUT_TRUNCATED,
		    "resume answered %d, not a 206 from byte %" PRIu64, status,
		    f->offset);
		f->bad_answer = true;
		return -1;
	}
	return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct fetch *f = of(p);
	int status = llhttp_get_status_code(p);

	if (status < 200)
		return 0; /* 100 Continue, 103 Early Hints */
	f->head_done = true;
	if (f->resumes > 0 && !f->restart)
		return resumed_answer(f, p, status);
	return first_answer(f, p, status);
}

/* Every body byte passes here, in order, at its offset. */
static int
take_body(struct fetch *f, const char *at, size_t len)
{
	size_t good;

	if (f->opt.verify && f->verifiable) {
		good = pattern_check(f->key, f->offset, at, len);
		if (good < len) {
			f->corrupt = true;
			f->first_bad = f->offset + good;
			len = good; /* keep what was right */
		}
	}
	if (f->out != NULL && len > 0 && fwrite(at, 1, len, f->out) != len) {
		set_outcome(f, OUT_REFUSED, "-o: %s", strerror(errno));
		return -1;
	}
	f->offset += len;
	f->received += len;
	if (f->corrupt) {
		set_outcome(f, OUT_CORRUPT,
		    "byte %" PRIu64 " differs from the pattern", f->first_bad);
		return -1;
	}
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	return take_body(of(p), at, len);
}

static int
on_complete(llhttp_t *p)
{
	struct fetch *f = of(p);

	if (llhttp_get_status_code(p) < 200)
		return 0;
	f->done = true;
	return HPE_PAUSED;
}

static llhttp_settings_t settings;

/* ---- reading ----------------------------------------------------------- */

static void
progress(struct fetch *f, bool final)
{
	static double last;
	double now = now_s(), el = now - f->t0;
	double rate = el > 0 ? (double)f->received * 8 / el : 0;
	char eta[32] = "";

	if (!isatty(STDERR_FILENO) || (!final && now - last < 0.2))
		return;
	last = now;
	if (f->expected != UINT64_MAX && rate > 0 && !final) {
		double s = (double)(f->expected - f->received) * 8 / rate;

		snprintf(eta, sizeof(eta), " ETA %d:%02d:%02d", (int)s / 3600,
		    (int)s / 60 % 60, (int)s % 60);
	}
	if (f->expected != UINT64_MAX)
		fprintf(stderr, "\r%10.1f / %.1f MiB %3d%% %8.2f Mbit/s%s   ",
		    (double)f->received / 1048576.0,
		    (double)f->expected / 1048576.0,
		    f->expected ? (int)(f->received * 100 / f->expected) : 100,
		    rate / 1e6, eta);
	else
		fprintf(stderr, "\r%10.1f MiB %8.2f Mbit/s   ",
		    (double)f->received / 1048576.0, rate / 1e6);
	if (final)
		fputc('\n', stderr);
}

/* How many bytes the next read may take, after sleeping as the pace asks. */
static size_t
paced_read_size(struct fetch *f)
{
	const struct fetch_opts *o = &f->opt;
	double bps, due;
	size_t n;

	if (o->read_bytes != 0)
		return o->read_bytes < BUF_SIZE ? (size_t)o->read_bytes
		                                : BUF_SIZE;
	if (o->rate_bps == 0)
		return BUF_SIZE;
	bps = (double)o->rate_bps / 8;
	/* About 50 reads a second, so the drain is smooth. */
	n = (size_t)(bps / 50);
	if (n < 1)
		n = 1;
	if (n > BUF_SIZE)
		n = BUF_SIZE;
	due = f->pace_t0 + (double)(f->wire_bytes - f->pace_bytes) / bps;
	sleep_s(due - now_s());
	return n;
}

/* Waits for data up to --timeout; 1 ready, 0 timed out, <0 error. */
static int
wait_readable(struct fetch *f)
{
	struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
	int rc;

	do
		rc = poll(
		    &pfd, 1, f->opt.timeout_ms ? (int)f->opt.timeout_ms : -1);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : rc;
}

/* ---- the stall (the printer out of paper) ----------------------------- */

static bool
stall_pending(const struct fetch *f)
{
	return f->opt.stall_for_ms != 0 && !f->stalled;
}

/* Before the next read: BYTES counts body bytes, so over HTTP the head
 * must be in (--stall-at 0 stops right after it).  Once per run, even
 * across resumes. */
static bool
stall_due(const struct fetch *f)
{
	return stall_pending(f) && (f->opt.raw || f->head_done) &&
	    f->received >= f->opt.stall_at;
}

/* Not reading at all is the point: the receive buffer fills and the window
 * goes to zero.  No poll runs meanwhile, so --timeout cannot count the
 * stall; the pacer restarts here instead of bursting to catch up. */
static void
stall(struct fetch *f)
{
	double t = now_s();

	sleep_s((double)f->opt.stall_for_ms / 1000);
	f->stalled = true;
	f->pace_t0 = now_s();
	f->pace_bytes = f->wire_bytes;
	f->stalled_s += f->pace_t0 - t; /* a second stall would show */
}

/* Where the first "\r\n\r\n" ends in p[0..n), the match carried over
 * reads in *m (a read may end inside it); n when none ends there. */
static size_t
head_end(const char *p, size_t n, int *m)
{
	size_t i = 0;

	while (i < n) {
		char c = p[i++];

		*m = c == "\r\n\r\n"[*m] ? *m + 1 : c == '\r';
		if (*m == 4) {
			*m = 0;
			return i;
		}
	}
	return n;
}

/* Keeps the head match over what a read took, 1xx heads included. */
static void
track_head(struct fetch *f, const char *p, size_t n)
{
	size_t off = 0;

	if (!stall_pending(f) || f->opt.raw || f->head_done)
		return;
	while (off < n)
		off += head_end(p + off, n - off, &f->head_match);
}

/* Caps a read so that it takes no body byte past --stall-at: each body
 * byte costs at least one wire byte, and within the head, a peek finds
 * where the head ends.  0: nothing to take yet (poll again). */
static size_t
stall_cap(struct fetch *f, char *buf, size_t want)
{
	uint64_t left;
	ssize_t n;
	size_t end;
	int m = f->head_match;

	if (!stall_pending(f))
		return want;
	left =
	    f->received < f->opt.stall_at ? f->opt.stall_at - f->received : 0;
	if (f->opt.raw || f->head_done)
		return left < want ? (size_t)left : want;
	n = recv(f->fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return want; /* the recv reports the end or the error */
	end = head_end(buf, (size_t)n, &m);
	return left < (size_t)n - end ? end + (size_t)left : (size_t)n;
}

/* One connection's worth of reading.  Sets done or an outcome. */
static void
read_attempt(struct fetch *f)
{
	static char buf[BUF_SIZE];
	llhttp_errno_t err;
	ssize_t n;
	size_t want;
	int rc;

	while (!f->done) {
		if (stall_due(f))
			stall(f);
		want = paced_read_size(f);
		if ((rc = wait_readable(f)) <= 0) {
			if (rc == 0)
				set_outcome(f, OUT_TIMEOUT,
				    "no byte for %" PRIu64 " ms",
				    f->opt.timeout_ms);
			else
				set_outcome(f, OUT_TRUNCATED, "poll: %s",
				    strerror(-rc));
			return;
		}
		if ((want = stall_cap(f, buf, want)) == 0)
			continue;
		n = recv(f->fd, buf, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 && !f->opt.raw)
				llhttp_finish(&f->parser); /* close-delimited */
			if (f->done || (n == 0 && f->opt.raw))
				break;
			set_outcome(f,
			    f->head_done || f->received > 0 ? OUT_TRUNCATED
			                                    : OUT_REFUSED,
			    "%s after %" PRIu64 " body bytes",
			    n == 0 ? "connection closed" : strerror(errno),
			    f->received);
			return;
		}
		f->wire_bytes += (uint64_t)n;
		if (f->opt.read_bytes != 0 && f->nread_log < READ_LOG)
			f->read_log[f->nread_log++] = (typeof(f->read_log[0])){
			    now_s() - f->t0, (size_t)n};
		track_head(f, buf, (size_t)n);
		if (f->opt.raw) {
			if (take_body(f, buf, (size_t)n) < 0)
				return;
		} else {
			err = llhttp_execute(&f->parser, buf, (size_t)n);
			if (err != HPE_OK && err != HPE_PAUSED) {
				if (!f->bad_answer && !f->corrupt)
					set_outcome(f, OUT_TRUNCATED,
					    "invalid response: %s",
					    llhttp_errno_name(err));
				return;
			}
		}
		progress(f, false);
		if (f->opt.count != 0 && ++f->reads >= f->opt.count)
			break;
		if (f->opt.read_bytes != 0)
			sleep_s((double)f->opt.interval_ms / 1000);
	}
	if (f->done || f->opt.raw)
		set_outcome(f, OUT_COMPLETE, "%s", "");
	else
		set_outcome(f, OUT_TRUNCATED, "stopped after %" PRIu64 " reads",
		    f->reads);
}

/* Can a truncated download go on with Range? */
static bool
resumable(const struct fetch *f)
{
	return f->opt.resume && !f->opt.raw && f->outcome == OUT_TRUNCATED &&
	    !f->bad_answer && f->head_done && f->etag_strong &&
	    f->expected != UINT64_MAX && f->received < f->expected &&
	    (unsigned)f->resumes < f->opt.resume_attempts &&
	    (f->opt.count == 0 || f->reads < f->opt.count);
}

/* What the kernel made of --window-clamp once data flowed (it may raise
 * the clamp from the receive buffer: docs/peers.md). */
static void
clamp_read_back(struct fetch *f)
{
	socklen_t len = sizeof(f->clamp_at_end);

	if (getsockopt(f->fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &f->clamp_at_end,
	        &len) == -1)
		f->clamp_at_end = -1;
}

static void
run(struct fetch *f)
{
	int fd;

	for (;;) {
		f->done = f->head_done = f->restart = f->bad_answer = false;
		f->head_match = 0;
		llhttp_init(&f->parser, HTTP_RESPONSE, &settings);
		f->parser.data = f;
		if ((fd = dial(&f->opt)) < 0) {
			if (f->resumes > 0)
				set_outcome(f, OUT_TRUNCATED,
				    "resume: connect: %s", strerror(-fd));
			else
				set_outcome(f,
				    fd == -ETIMEDOUT ? OUT_TIMEOUT
				                     : OUT_REFUSED,
				    "connect: %s", strerror(-fd));
			return;
		}
		f->fd = fd;
		if (!f->opt.raw && send_request(f) < 0) {
			set_outcome(
			    f, OUT_REFUSED, "send: %s", strerror(errno));
			close(fd);
			return;
		}
		read_attempt(f);
		if (f->opt.window_clamp != 0)
			clamp_read_back(f);
		close(fd);
		if (!resumable(f))
			return;
		f->resumes++;
		fprintf(stderr,
		    "sluice fetch: %s; resuming at byte %" PRIu64
		    " (attempt %d)\n",
		    f->why, f->received, f->resumes);
		sleep_s(0.2);
	}
}

/* ---- the verb ---------------------------------------------------------- */

void
fetch_usage(FILE *out)
{
	fprintf(out,
	    "usage: sluice fetch URL [options]\n"
	    "\n"
	    "A slow HTTP/1.1 client that proves every byte.  URL is\n"
	    "http://HOST[:PORT]/PATH, or tcp://HOST:PORT for a raw stream\n"
	    "(sluice origin --raw, the article's server: docs/references.md).\n"
	    "\n"
	    "  --rate RATE            drain at RATE bits/s (2mbit, 500kbit, "
	    "1gbit)\n"
	    "  --read BYTES --interval T [--count N]\n"
	    "                         read BYTES every T, N times (the\n"
	    "                         article's client: -b 100 -d 2 -c 1000)\n"
	    "  --stall-at BYTES --stall-for T\n"
	    "                         once BYTES body bytes came (0: right\n"
	    "                         after the head), read nothing for T,\n"
	    "                         then go on at the same pace (the\n"
	    "                         article's printer out of paper)\n"
	    "  --rcvbuf SIZE          SO_RCVBUF before connect: the window is\n"
	    "                         what the reader makes it\n"
	    "  --window-clamp BYTES   TCP_WINDOW_CLAMP before connect: the\n"
	    "                         window advertised, from the SYN on,\n"
	    "                         is at most BYTES (the kernel rounds\n"
	    "                         it down to whole segments; at least\n"
	    "                         1152); pair it with a small --rcvbuf\n"
	    "                         for the window to close\n"
	    "  --source IP            connect from this local address\n"
	    "  --verify               check every byte against the origin's\n"
	    "                         pattern (key from its ETag), report the\n"
	    "                         first bad offset (a body that is not\n"
	    "                         the pattern: verified null, a warning)\n"
	    "  --resume               continue a truncated download with\n"
	    "                         Range: bytes=N- and If-Range\n"
	    "  --resume-attempts N    at most N resumes (default 5)\n"
	    "  --timeout T            give up when no byte comes for T "
	    "(default 60s; 0: never)\n"
	    "  --key NAME             the pattern key, when the ETag does not "
	    "carry it\n"
	    "  -o FILE                write the body to FILE\n"
	    "  --json                 print one summary object on stdout:\n"
	    "                         url status expected_bytes "
	    "received_bytes\n"
	    "                         verified outcome resumes seconds "
	    "rate_bps\n"
	    "                         stalled_s (window_clamp and\n"
	    "                         window_clamp_at_end with\n"
	    "                         --window-clamp; with --read, reads:\n"
	    "                         [seconds, bytes] of the first 1024)\n"
	    "\n"
	    "A progress bar goes to stderr when it is a terminal.\n"
	    "Outcomes and exit codes:\n"
	    "  0  complete (and verified, with --verify)\n"
	    "  2  bad usage\n"
	    "  3  truncated: the connection ended before the body did\n"
	    "  4  corrupt: a byte differs from the pattern\n"
	    "  5  refused (no connection, or not a 2xx answer) or timeout\n");
}

enum {
	O_RATE = 256,
	O_READ,
	O_INTERVAL,
	O_COUNT,
	O_RCVBUF,
	O_WINDOW_CLAMP,
	O_RESUME,
	O_RESUME_ATTEMPTS,
	O_VERIFY,
	O_JSON,
	O_TIMEOUT,
	O_KEY,
	O_STALL_AT,
	O_STALL_FOR,
	O_SOURCE,
};

static const struct option fetch_options[] = {
    {"rate", required_argument, NULL, O_RATE},
    {"read", required_argument, NULL, O_READ},
    {"interval", required_argument, NULL, O_INTERVAL},
    {"count", required_argument, NULL, O_COUNT},
    {"rcvbuf", required_argument, NULL, O_RCVBUF},
    {"window-clamp", required_argument, NULL, O_WINDOW_CLAMP},
    {"resume", no_argument, NULL, O_RESUME},
    {"resume-attempts", required_argument, NULL, O_RESUME_ATTEMPTS},
    {"verify", no_argument, NULL, O_VERIFY},
    {"json", no_argument, NULL, O_JSON},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"key", required_argument, NULL, O_KEY},
    {"stall-at", required_argument, NULL, O_STALL_AT},
    {"stall-for", required_argument, NULL, O_STALL_FOR},
    {"source", required_argument, NULL, O_SOURCE},
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
usage_error(const char *opt, const char *v, const char *what)
{
	fprintf(stderr, "sluice fetch: %s%s%s: %s\n", opt, v ? " " : "",
	    v ? v : "", what);
	return FETCH_EXIT_USAGE;
}

#define MAX_RATE 100000000000ULL /* 100gbit: --rate's bound */

static int
parse_args(int argc, char **argv, struct fetch_opts *o)
{
	char msg[96];
	uint64_t u;
	int c, idx, rc;

	memset(o, 0, sizeof(*o));
	o->resume_attempts = 5;
	o->timeout_ms = 60000;
	optind = 1;
	while (
	    (c = getopt_long(argc, argv, "ho:", fetch_options, &idx)) != -1) {
		switch (c) {
		case 'h':
			fetch_usage(stdout);
			return -1;
		case 'o':
			o->out_path = optarg;
			break;
		case O_RATE:
			if (units_parse_in(UNITS_RATE, optarg, 8, MAX_RATE,
			        &o->rate_bps, msg, sizeof(msg)) < 0)
				return usage_error("--rate", optarg, msg);
			break;
		case O_READ:
		case O_RCVBUF:
			if (units_parse_in(UNITS_SIZE, optarg, c == O_READ,
			        1073741824, &u, msg, sizeof(msg)) < 0)
				return usage_error(
				    c == O_READ ? "--read" : "--rcvbuf", optarg,
				    msg);
			if (c == O_READ)
				o->read_bytes = u;
			else
				o->rcvbuf = u;
			break;
		case O_WINDOW_CLAMP:
			if (units_parse_in(UNITS_SIZE, optarg, 1, 1073741824,
			        &o->window_clamp, msg, sizeof(msg)) < 0)
				return usage_error(
				    "--window-clamp", optarg, msg);
			break;
		case O_INTERVAL:
		case O_TIMEOUT:
			if (units_parse_in(UNITS_DURATION, optarg, 0, 86400000,
			        &u, msg, sizeof(msg)) < 0)
				return usage_error(c == O_INTERVAL
				        ? "--interval"
				        : "--timeout",
				    optarg, msg);
			if (c == O_INTERVAL)
				o->interval_ms = u;
			else
				o->timeout_ms = u;
			break;
		case O_COUNT:
		case O_RESUME_ATTEMPTS:
			if ((rc = units_parse_in(UNITS_SIZE, optarg, 0,
			         100000000, &u, msg, sizeof(msg))) < 0)
				return usage_error(c == O_COUNT
				        ? "--count"
				        : "--resume-attempts",
				    optarg,
				    rc == -EINVAL ? "not a count" : msg);
			if (c == O_COUNT)
				o->count = u;
			else
				o->resume_attempts = (unsigned)u;
			break;
		case O_RESUME:
			o->resume = true;
			break;
		case O_VERIFY:
			o->verify = true;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_KEY:
			o->have_key = true;
			o->key = pattern_key(optarg);
			break;
		case O_STALL_AT:
			if (units_parse_in(UNITS_SIZE, optarg, 0, UINT64_MAX,
			        &o->stall_at, msg, sizeof(msg)) < 0)
				return usage_error("--stall-at", optarg, msg);
			o->have_stall_at = true;
			break;
		case O_SOURCE: {
			unsigned char a[16];

			if (inet_pton(AF_INET, optarg, a) != 1 &&
			    inet_pton(AF_INET6, optarg, a) != 1)
				return usage_error("--source", optarg,
				    "not an IPv4 or IPv6 address");
			o->source = optarg;
			break;
		}
		case O_STALL_FOR:
			if (units_parse_in(UNITS_DURATION, optarg, 1, 86400000,
			        &u, msg, sizeof(msg)) < 0)
				return usage_error("--stall-for", optarg, msg);
			o->stall_for_ms = u;
			break;
		default:
			return FETCH_EXIT_USAGE;
		}
	}
	if (optind != argc - 1)
		return usage_error("URL", NULL, "exactly one URL is required");
	if (parse_url(argv[optind], o) < 0)
		return usage_error("URL", argv[optind],
		    "not http://HOST[:PORT]/PATH or tcp://HOST:PORT");
	if (o->read_bytes != 0 && o->rate_bps != 0)
		return usage_error("--read", NULL,
		    "--read and --rate exclude "
		    "each other");
	if (o->have_stall_at != (o->stall_for_ms != 0))
		return usage_error(
		    o->have_stall_at ? "--stall-at" : "--stall-for", NULL,
		    "--stall-at and --stall-for go together");
	return 0;
}

static void
print_json(const struct fetch *f, double seconds)
{
	const char *verified = "null";

	if (f->opt.verify && f->verifiable)
		verified = f->corrupt            ? "false"
		    : f->outcome == OUT_COMPLETE ? "true"
		                                 : "null";
	printf("{\"url\":");
	json_string(stdout, f->opt.url);
	printf(",\"status\":%d,\"expected_bytes\":", f->status);
	if (f->expected == UINT64_MAX)
		printf("null");
	else
		printf("%" PRIu64, f->expected);
	printf(",\"received_bytes\":%" PRIu64 ",\"verified\":%s,"
	       "\"outcome\":\"%s\",\"resumes\":%d,\"seconds\":%.3f,"
	       "\"rate_bps\":%.0f,\"stalled_s\":%.3f",
	    f->received, verified, outcome_names[f->outcome], f->resumes,
	    seconds, seconds > 0 ? (double)f->received * 8 / seconds : 0.0,
	    f->stalled_s);
	if (f->corrupt)
		printf(",\"first_bad_offset\":%" PRIu64, f->first_bad);
	if (f->opt.read_bytes != 0) {
		printf(",\"reads\":[");
		for (size_t i = 0; i < f->nread_log; i++)
			printf("%s[%.3f,%zu]", i > 0 ? "," : "",
			    f->read_log[i].t, f->read_log[i].n);
		printf("]");
	}
	if (f->opt.window_clamp != 0)
		printf(",\"window_clamp\":%" PRIu64
		       ",\"window_clamp_at_end\":%d",
		    f->opt.window_clamp, f->clamp_at_end);
	if (f->outcome != OUT_COMPLETE) {
		printf(",\"error\":");
		json_string(stdout, f->why);
	}
	printf("}\n");
}

int
fetch_main(int argc, char **argv)
{
	static struct fetch f;
	double seconds;
	int rc;

	memset(&f, 0, sizeof(f));
	if ((rc = parse_args(argc, argv, &f.opt)) != 0)
		return rc < 0 ? 0 : rc;
	if (f.opt.out_path != NULL &&
	    (f.out = fopen(f.opt.out_path, "w")) == NULL) {
		fprintf(stderr, "sluice fetch: -o %s: %s\n", f.opt.out_path,
		    strerror(errno));
		return FETCH_EXIT_USAGE;
	}
	llhttp_settings_init(&settings);
	settings.on_message_begin = on_begin;
	settings.on_status = on_status;
	settings.on_header_field = on_field;
	settings.on_header_value = on_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	http_head_init(&f.head, f.headbuf, sizeof(f.headbuf));
	f.expected = UINT64_MAX;
	f.verifiable = f.opt.raw;
	f.key = f.opt.have_key ? f.opt.key : pattern_key(PATTERN_DEFAULT_NAME);
	f.t0 = f.pace_t0 = now_s();
	run(&f);
	seconds = now_s() - f.t0;
	progress(&f, true);
	if (f.out != NULL && fclose(f.out) != 0 && f.outcome == OUT_COMPLETE)
		set_outcome(&f, OUT_REFUSED, "-o: %s", strerror(errno));
	if (f.opt.verify && !f.verifiable && f.outcome == OUT_COMPLETE)
		fprintf(stderr,
		    "sluice fetch: --verify: the body is not the "
		    "sluice pattern; nothing verified\n");
	if (f.opt.json)
		print_json(&f, seconds);
	if (f.outcome != OUT_COMPLETE)
		fprintf(stderr, "sluice fetch: %s: %s\n",
		    outcome_names[f.outcome], f.why);
	switch (f.outcome) {
	case OUT_COMPLETE:
		return FETCH_EXIT_COMPLETE;
	case OUT_TRUNCATED:
		return FETCH_EXIT_TRUNCATED;
	case OUT_CORRUPT:
		return FETCH_EXIT_CORRUPT;
	default:
		return FETCH_EXIT_ERROR;
	}
}
