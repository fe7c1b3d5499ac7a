/*
 * http: see http.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/http.h"

void
http_head_init(struct http_head *h, char *buf, size_t cap)
{
	h->buf = buf;
	h->cap = h->size = cap;
	h->owned = 0;
	http_head_reset(h);
	http_scan_init(&h->scan, cap, 0);
}

/* An owned head's buf before its first byte: h->buf + h->text_off and
 * the like stay valid pointers (to nothing); never written, as size 0
 * makes the first append grow. */
static char no_bytes[1];

void
http_head_init_owned(struct http_head *h, size_t cap)
{
	http_head_init(h, no_bytes, cap);
	h->size = 0;
	h->owned = 1;
}

void
http_head_free(struct http_head *h)
{
	if (!h->owned || h->size == 0)
		return;
	free(h->buf);
	h->buf = no_bytes;
	h->size = 0;
}

void
http_head_reset(struct http_head *h)
{
	if (h->owned && h->size > HTTP_HEAD_KEEP)
		http_head_free(h); /* one big head does not stay */
	h->len = 0;
	h->nf = 0;
	h->text_off = h->text_len = 0;
	h->last = 0;
	h->overflow = 0;
	h->error = NULL;
}

/* ---- the raw head ------------------------------------------------------ */

enum {
	SC_START = 0, /* before the start line: blank lines are skipped */
	SC_START_CR,  /* a CR there */
	SC_FIRST,     /* in the start line */
	SC_CR,        /* a CR ending the start line or a field line */
	SC_EOL,       /* at the start of a field line, or the empty line */
	SC_NAME,      /* in a field name */
	SC_VALUE,     /* after its colon */
	SC_END_CR,    /* the empty line's CR */
	SC_DONE,
	SC_REFUSED,
};

void
http_scan_init(struct http_scan *s, size_t max, int response)
{
	s->bytes = 0;
	s->max = max;
	s->state = SC_START;
	s->response = response;
}

int
http_scan_done(const struct http_scan *s)
{
	return s->state == SC_DONE;
}

/* RFC 9110 §5.6.2's tchar. */
static int
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int
is_ctl(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

/* The state after byte ch in state st, or an enum http_scan_err. */
static int
scan_byte(const struct http_scan *s, int st, unsigned char ch)
{
	switch (st) {
	case SC_START:
		if (ch == '\r')
			return SC_START_CR;
		if (ch == '\n')
			return SC_START;
		__attribute__((fallthrough)); /* the start line's first byte */
	case SC_FIRST:
		if (ch == '\r')
			return SC_CR;
		if (ch == '\n')
			return SC_EOL;
		if (is_ctl(ch) && !(s->response && ch == '\t'))
			return HTTP_SCAN_CTL;
		return SC_FIRST;
	case SC_START_CR:
		return ch == '\n' ? SC_START : HTTP_SCAN_BARE_CR;
	case SC_CR:
		return ch == '\n' ? SC_EOL : HTTP_SCAN_BARE_CR;
	case SC_END_CR:
		return ch == '\n' ? SC_DONE : HTTP_SCAN_BARE_CR;
	case SC_EOL:
		if (ch == '\r')
			return SC_END_CR;
		if (ch == '\n')
			return SC_DONE;
		if (ch == ' ' || ch == '\t')
			return HTTP_SCAN_FOLD;
		return is_tchar(ch) ? SC_NAME : HTTP_SCAN_NAME;
	case SC_NAME:
		if (ch == ':')
			return SC_VALUE;
		return is_tchar(ch) ? SC_NAME : HTTP_SCAN_NAME;
	default: /* SC_VALUE: field-vchar, SP, HTAB, obs-text */
		if (ch == '\r')
			return SC_CR;
		if (ch == '\n')
			return SC_EOL;
		if (is_ctl(ch) && ch != '\t')
			return HTTP_SCAN_CTL;
		return SC_VALUE;
	}
}

int
http_scan(struct http_scan *s, const char *p, size_t n, size_t *used)
{
	size_t i;
	int st = s->state;

	*used = 0;
	if (st == SC_REFUSED)
		return HTTP_SCAN_CTL;
	if (st == SC_DONE)
		return 1;
	for (i = 0; i < n && st != SC_DONE; i++) {
		if (s->bytes++ == s->max) {
			st = HTTP_SCAN_TOO_LARGE;
			break;
		}
		if ((st = scan_byte(s, st, (unsigned char)p[i])) < 0)
			break;
	}
	if (st < 0) {
		s->state = SC_REFUSED;
		return st;
	}
	s->state = st;
	*used = i;
	return st == SC_DONE;
}

const char *
http_scan_strerror(int err)
{
	switch (err) {
	case HTTP_SCAN_TOO_LARGE:
		return "head too large";
	case HTTP_SCAN_BARE_CR:
		return "bare CR in the head";
	case HTTP_SCAN_FOLD:
		return "folded header line (obs-fold)";
	case HTTP_SCAN_NAME:
		return "invalid header name";
	case HTTP_SCAN_CTL:
		return "control character in the head";
	}
	return "invalid head";
}

/* An owned buffer grown to hold need bytes (need <= cap); 0 or -1. */
static int
grow(struct http_head *h, size_t need)
{
	size_t size = h->size != 0 ? h->size : HTTP_HEAD_MIN;
	char *buf;

	while (size < need)
		size *= 2;
	if (size > h->cap)
		size = h->cap;
	if ((buf = realloc(h->size != 0 ? h->buf : NULL, size)) == NULL) {
		h->error = "out of memory";
		return -1;
	}
	h->buf = buf;
	h->size = size;
	return 0;
}

static int
append(struct http_head *h, const char *at, size_t len)
{
	if (h->overflow || len > h->cap - h->len) {
		h->overflow = 1;
		return -1;
	}
	if (len > h->size - h->len && (!h->owned || grow(h, h->len + len) < 0))
		return -1;
	memcpy(h->buf + h->len, at, len);
	h->len += len;
	return 0;
}

int
http_head_on_text(struct http_head *h, const char *at, size_t len)
{
	if (h->last != 1) {
		h->text_off = (uint32_t)h->len;
		h->text_len = 0;
		h->last = 1;
	}
	if (append(h, at, len) < 0)
		return -1;
	h->text_len += (uint32_t)len;
	return 0;
}

int
http_head_on_name(struct http_head *h, const char *at, size_t len)
{
	struct http_field *f;

	if (h->last != 2) {
		if (h->nf == HTTP_MAX_HEADERS) {
			h->overflow = 1;
			return -1;
		}
		f = &h->f[h->nf++];
		f->name_off = (uint32_t)h->len;
		f->name_len = 0;
		f->value_off = f->value_len = 0;
		h->last = 2;
	}
	f = &h->f[h->nf - 1];
	if (append(h, at, len) < 0)
		return -1;
	f->name_len += (uint32_t)len;
	return 0;
}

int
http_head_on_value(struct http_head *h, const char *at, size_t len)
{
	struct http_field *f;

	if (h->nf == 0)
		return -1;
	f = &h->f[h->nf - 1];
	if (h->last != 3) {
		f->value_off = (uint32_t)h->len;
		f->value_len = 0;
		h->last = 3;
	}
	if (append(h, at, len) < 0)
		return -1;
	f->value_len += (uint32_t)len;
	return 0;
}

static int
name_is(const struct http_head *h, const struct http_field *f, const char *name,
    size_t len)
{
	return f->name_len == len &&
	    strncasecmp(h->buf + f->name_off, name, len) == 0;
}

const char *
http_head_get(const struct http_head *h, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < h->nf; i++) {
		if (name_is(h, &h->f[i], name, nl)) {
			*len = h->f[i].value_len;
			return h->buf + h->f[i].value_off;
		}
	}
	return NULL;
}

static const char *const hop_by_hop[] = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    NULL,
};

/* Does the comma-separated list v (len bytes) hold the token tok? */
static int
list_has(const char *v, size_t vlen, const char *tok, size_t tlen)
{
	size_t i = 0;

	while (i < vlen) {
		size_t s, e;

		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < vlen && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tlen && strncasecmp(v + s, tok, tlen) == 0)
			return 1;
	}
	return 0;
}

/* What Connection may not nominate: the framing and the authority.
 * "Connection: Content-Length" on a POST once made the proxy drop the
 * length and relay the body unframed, a request smuggled inside it;
 * nginx keeps these fields whatever Connection says. */
static const char *const never_nominated[] = {
    "content-length",
    "transfer-encoding",
    "host",
    NULL,
};

static int
in_list(const char *const *list, const char *name, size_t len)
{
	for (int i = 0; list[i] != NULL; i++)
		if (strlen(list[i]) == len &&
		    strncasecmp(list[i], name, len) == 0)
			return 1;
	return 0;
}

int
http_is_hop_by_hop(const struct http_head *h, const char *name, size_t len)
{
	if (in_list(hop_by_hop, name, len))
		return 1;
	if (in_list(never_nominated, name, len))
		return 0;
	for (size_t i = 0; i < h->nf; i++) {
		const struct http_field *f = &h->f[i];

		if (name_is(h, f, "connection", 10) &&
		    list_has(h->buf + f->value_off, f->value_len, name, len))
			return 1;
	}
	return 0;
}

int
http_te_chunked(const struct http_head *h)
{
	const struct http_field *te = NULL;
	const char *v;
	size_t s = 0, e;

	for (size_t i = 0; i < h->nf; i++) {
		if (!name_is(h, &h->f[i], "transfer-encoding", 17))
			continue;
		if (te != NULL)
			return -1;
		te = &h->f[i];
	}
	if (te == NULL)
		return 0;
	v = h->buf + te->value_off;
	e = te->value_len;
	while (s < e && (v[s] == ' ' || v[s] == '\t'))
		s++;
	while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
		e--;
	return e - s == 7 && strncasecmp(v + s, "chunked", 7) == 0 ? 1 : -1;
}

struct out {
	char *p;
	size_t cap, len;
	int full;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void
put_field(struct out *o, const char *name, const char *v, size_t vlen)
{
	puts_(o, name);
	put(o, ": ", 2);
	put(o, v, vlen);
	put(o, "\r\n", 2);
}

int
http_rewrite(const struct http_head *h, const struct http_rewrite *rw,
    char *out, size_t cap)
{
	struct out o = {out, cap, 0, 0};
	int xff_done = 0;

	if (rw->method != NULL) {
		puts_(&o, rw->method);
		put(&o, " ", 1);
		put(&o, h->buf + h->text_off, h->text_len);
		puts_(&o, " HTTP/1.1\r\n");
	} else {
		puts_(&o, rw->first_line);
		put(&o, "\r\n", 2);
	}
	for (size_t i = 0; i < h->nf; i++) {
		const struct http_field *f = &h->f[i];
		const char *name = h->buf + f->name_off;

		if (http_is_hop_by_hop(h, name, f->name_len))
			continue;
		if (rw->drop_length && name_is(h, f, "content-length", 14))
			continue;
		if (rw->xff != NULL && name_is(h, f, "x-forwarded-for", 15)) {
			/* Merge every X-Forwarded-For field into the first,
			 * in order, then append the client (RFC 7239 §5.2's
			 * list semantics, as nginx's
			 * $proxy_add_x_forwarded_for). */
			if (xff_done)
				continue;
			put(&o, name, f->name_len);
			put(&o, ": ", 2);
			for (size_t j = i; j < h->nf; j++) {
				const struct http_field *g = &h->f[j];

				if (!name_is(h, g, "x-forwarded-for", 15))
					continue;
				put(&o, h->buf + g->value_off, g->value_len);
				put(&o, ", ", 2);
			}
			puts_(&o, rw->xff);
			put(&o, "\r\n", 2);
			xff_done = 1;
			continue;
		}
		put(&o, name, f->name_len);
		put(&o, ": ", 2);
		put(&o, h->buf + f->value_off, f->value_len);
		put(&o, "\r\n", 2);
	}
	if (rw->host != NULL && http_head_get(h, "host", &(size_t){0}) == NULL)
		put_field(&o, "Host", rw->host, strlen(rw->host));
	if (rw->xff != NULL && !xff_done)
		put_field(&o, "X-Forwarded-For", rw->xff, strlen(rw->xff));
	if (rw->via != NULL)
		put_field(&o, "Via", rw->via, strlen(rw->via));
	if (rw->chunked)
		put_field(&o, "Transfer-Encoding", "chunked", 7);
	if (rw->connection != NULL)
		put_field(
		    &o, "Connection", rw->connection, strlen(rw->connection));
	put(&o, "\r\n", 2);
	return o.full ? -ENOSPC : (int)o.len;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 416:
		return "Range Not Satisfiable";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	}
	return "Error";
}

int
http_error_response(int status, const char *detail, char *out, size_t cap)
{
	char body[256];
	int blen, n;

	blen = snprintf(body, sizeof(body), "%d %s: %s\n", status,
	    http_reason(status), detail);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		blen = (int)sizeof(body) - 1;
	n = snprintf(out, cap,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %d\r\n"
	    "Connection: close\r\n"
	    "Via: 1.1 sluice\r\n"
	    "\r\n"
	    "%.*s",
	    status, http_reason(status), blen, blen, body);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}
