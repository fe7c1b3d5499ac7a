/*
 * http: HTTP/1.x message heads as the proxy sees them: collected from
 * llhttp's callbacks into one flat buffer, then rewritten for the next hop.
 *
 * Rewriting (RFC 9110 §7.6.1): the hop-by-hop fields Connection,
 * Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade and Trailer,
 * and every field the Connection header names, are removed; the proxy adds
 * its own framing (Transfer-Encoding: chunked when it chunks) and
 * Connection, a Via entry (§7.6.3), and for requests appends the client's
 * address to X-Forwarded-For (one merged field).
 *
 * Pure code: no sockets, no loop; tested in tests/unit/test_http.c.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 128

struct http_field {
	uint32_t name_off, name_len;
	uint32_t value_off, value_len;
};

struct http_head {
	char *buf; /* names, values, url or reason, not terminated */
	size_t cap, len;
	struct http_field f[HTTP_MAX_HEADERS];
	size_t nf;
	uint32_t text_off, text_len; /* request target, or reason phrase */
	int last;     /* 0 none, 1 text, 2 name, 3 value: for appends */
	int overflow; /* cap or HTTP_MAX_HEADERS exceeded */
};

/* Uses buf (cap bytes, owned by the caller) for storage. */
void http_head_init(struct http_head *h, char *buf, size_t cap);
void http_head_reset(struct http_head *h);

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
