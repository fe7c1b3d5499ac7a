/*
 * origin answers: what a request gets.  The path is resolved to /bytes/SIZE
 * (the keyed pattern, chunked with ?chunked=1) or a file under --root;
 * Range and If-Range pick the part (206, 416); the response head is
 * written to the output buffer and the body's bounds, --truncate-at and
 * the drip set up for origin_conn.c to send.  Errors are short text
 * answers that end the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#include "base/http.h"
#include "base/pattern.h"
#include "base/range.h"
#include "base/units.h"
#include "peers/origin_int.h"

static const char *
http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return buf;
}

/* A small text answer (4xx) that ends the connection. */
void
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
	size_t len = strlen(path);

	/* No "/../" inside and no "/.." at the end: a path never leaves
	 * --root.  (The end is compared as a suffix: strstr finds only the
	 * first "/..", and path + len - 3 is no pointer for len < 3.) */
	if (strstr(path, "/../") != NULL ||
	    (len >= 3 && strcmp(path + len - 3, "/..") == 0) ||
	    strchr(path, '%') != NULL)
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
void
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

void
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
