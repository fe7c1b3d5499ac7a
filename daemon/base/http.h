/*
 * http: HTTP/1.x message heads as the proxy sees them: collected from
 * llhttp's callbacks into one flat buffer, then rewritten for the next hop.
 *
 * Rewriting (RFC 9110 §7.6.1): the hop-by-hop fields Connection,
 * Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade and Trailer,
 * and every field the Connection header names, are removed, except that
 * Connection never removes Content-Length, Transfer-Encoding or Host (the
 * message's framing and authority, as nginx keeps them); the proxy adds its
 * own framing (Transfer-Encoding: chunked when it chunks) and Connection,
 * a Via entry (§7.6.3), Host when an HTTP/1.0 request had none, and for
 * requests appends the client's address to X-Forwarded-For (one merged
 * field).
 *
 * Before llhttp sees a head's bytes, http_scan checks them raw: llhttp's
 * callbacks leave out whitespace, CRLFs and the start line's separators
 * (so the size limit counts here), and llhttp as Debian builds it (without
 * LLHTTP_STRICT_MODE) lets through what RFC 9112 says to reject.
 *
 * Pure code: no sockets, no loop; tested in tests/unit/test_http.c.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 128
#define HTTP_HEAD_MIN    512  /* an owned head buffer's first size */
#define HTTP_HEAD_KEEP   4096 /* ... kept across heads up to this size */

/* What http_scan refuses (negative, as its errors). */
enum http_scan_err {
	HTTP_SCAN_TOO_LARGE = -1, /* more than max bytes */
	HTTP_SCAN_BARE_CR = -2,   /* CR not followed by LF (RFC 9112 §2.2) */
	HTTP_SCAN_FOLD = -3,      /* obs-fold, or whitespace before the
	                           * first field (§5.2, §2.2) */
	HTTP_SCAN_NAME = -4,      /* a field name empty, not a token, or
	                           * followed by whitespace (§5.1) */
	HTTP_SCAN_CTL = -5,       /* a control byte in the start line (a tab
	                           * in the request target) or a value */
};

/* The raw bytes of one head as they come, over any number of reads. */
struct http_scan {
	size_t bytes; /* of the head so far, blank lines before it included */
	size_t max;
	int state;
	int response; /* a status line may hold a tab (its reason phrase) */
};

struct http_field {
	uint32_t name_off, name_len;
	uint32_t value_off, value_len;
};

struct http_head {
	char *buf; /* names, values, url or reason, not terminated */
	size_t cap, len;
	size_t size; /* of buf; below cap while an owned buf may grow */
	int owned;   /* buf is the head's: http_head_init_owned */
	struct http_field f[HTTP_MAX_HEADERS];
	size_t nf;
	uint32_t text_off, text_len; /* request target, or reason phrase */
	int last;          /* 0 none, 1 text, 2 name, 3 value: for appends */
	int overflow;      /* cap or HTTP_MAX_HEADERS exceeded */
	const char *error; /* why the head was refused, or NULL */
	struct http_scan scan; /* its raw bytes: the feeder's, see below */
};

/* Uses buf (cap bytes, owned by the caller) for storage; h->scan starts
 * with cap as its limit.  http_head_reset (at llhttp's message begin)
 * clears the fields, not h->scan. */
void http_head_init(struct http_head *h, char *buf, size_t cap);
/* As http_head_init, but h owns its buffer: none (an empty one, not
 * NULL) until the head's first byte, then grown (doubling from HTTP_HEAD_MIN)
 * as far as cap while the head needs it, so that a connection's heads cost what
 * they hold, not cap.  A buffer that cannot grow fails the append as one past
 * cap does, but with h->error "out of memory" and h->overflow 0.
 * http_head_reset gives back a buffer grown past HTTP_HEAD_KEEP; http_head_free
 * frees it. */
void http_head_init_owned(struct http_head *h, size_t cap);
void http_head_free(struct http_head *h);
void http_head_reset(struct http_head *h);

/* Starts s over for a new head of at most max bytes, everything counted:
 * blank lines before the start line, the start line, whitespace and line
 * ends.  response: a status line is expected, not a request line. */
void http_scan_init(struct http_scan *s, size_t max, int response);

/*
 * Checks the next n bytes of a head.  Returns 1 when the head ends in
 * them (*used: its bytes among them, the empty line's LF included), 0
 * when it does not (*used = n), or an enum http_scan_err, after which s
 * stays refused.  http_scan_done tells whether s saw its head's end.
 */
int http_scan(struct http_scan *s, const char *p, size_t n, size_t *used);
int http_scan_done(const struct http_scan *s);
/* A short text for an enum http_scan_err, for the proxy's answer. */
const char *http_scan_strerror(int err);

/*
 * The Transfer-Encoding of h: 0 when it has none, 1 when it is exactly
 * "chunked" (one field, one coding), -1 for anything else ("gzip",
 * "gzip, chunked", two fields): the proxy neither decodes nor forwards
 * other codings (RFC 9112 §6.1; nginx answers 501 to such a request).
 */
int http_te_chunked(const struct http_head *h);

/* llhttp's data callbacks, which may split one token over several calls.
 * Each returns 0, or -1 once the head no longer fits (h->overflow set). */
int http_head_on_text(struct http_head *h, const char *at, size_t len);
int http_head_on_name(struct http_head *h, const char *at, size_t len);
int http_head_on_value(struct http_head *h, const char *at, size_t len);

/* The value of the first field named name (case-insensitive), or NULL. */
const char *http_head_get(
    const struct http_head *h, const char *name, size_t *len);

struct http_rewrite {
	const char *first_line; /* "HTTP/1.1 200 OK", when method is NULL */
	const char *method;     /* else "METHOD <head's target> HTTP/1.1" */
	const char *connection; /* value of the Connection field, or NULL */
	const char *via;        /* e.g. "1.1 sluice" */
	const char *xff;        /* client address to append, or NULL */
	const char *host;       /* Host to add when h has none, or NULL */
	int chunked;            /* add Transfer-Encoding: chunked */
	int drop_length;        /* drop Content-Length */
};

/*
 * Writes the rewritten head, CRLF CRLF included, into out.  Returns its
 * length or -ENOSPC when it does not fit in cap.
 */
int http_rewrite(const struct http_head *h, const struct http_rewrite *rw,
    char *out, size_t cap);

/* True when the field name is hop-by-hop by RFC 9110 §7.6.1 or named by a
 * Connection field of h. */
int http_is_hop_by_hop(const struct http_head *h, const char *name, size_t len);

/*
 * A response the proxy makes itself: status line, Content-Type text/plain,
 * Content-Length, Connection: close, a Via, and a one-line text body.
 * Returns its length or -ENOSPC.
 */
int http_error_response(int status, const char *detail, char *out, size_t cap);

/* The standard reason phrase for the statuses the proxy makes. */
const char *http_reason(int status);

#endif
