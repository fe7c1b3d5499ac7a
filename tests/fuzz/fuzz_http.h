/*
 * fuzz_http: the harnesses' own reading of what the proxy wrote: an HTTP
 * message parsed again with llhttp, its fields kept as spans of the
 * buffer, its body collected.  Interim (1xx) responses are counted and
 * skipped; the parser pauses at the end of the first complete final
 * message, so that llhttp_get_error_pos tells where it ended.
 */
#ifndef SLUICE_FUZZ_HTTP_H
#define SLUICE_FUZZ_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "fuzz.h"

#define REPARSE_FIELDS 300

struct reparse {
	llhttp_t p;
	struct {
		const char *name, *value;
		size_t nlen, vlen;
	} f[REPARSE_FIELDS]; /* of the last message begun */
	size_t nf;
	const char *url;
	size_t ulen;
	int skip_body;    /* a response to HEAD */
	int headers_done; /* of the final message */
	int complete;     /* the final message ended */
	int interims;     /* 1xx responses before it */
	uint64_t flags, content_length;
	struct fbuf body;
};

/* Starts r over for one message of type (HTTP_REQUEST, HTTP_RESPONSE);
 * skip_body: the response answers a HEAD. */
void reparse_init(struct reparse *r, llhttp_type_t type, int skip_body);
/* Runs the parser over n bytes; returns llhttp's result. */
llhttp_errno_t reparse_run(struct reparse *r, const char *p, size_t n);
void reparse_free(struct reparse *r);

/* How many fields are named name (case-insensitive). */
size_t reparse_count(const struct reparse *r, const char *name);
/* Whether the first field named name has exactly the value v (case
 * insensitive). */
int reparse_value_is(const struct reparse *r, const char *name, const char *v);
/* Whether the last Via field is exactly v: the proxy's entry comes after
 * those of the hops before it (RFC 9110 §7.6.3). */
int last_via_is(const struct reparse *r, const char *v);
/* Whether field i is named name. */
int reparse_name_is(const struct reparse *r, size_t i, const char *name);

/* pipe_push_body (proxy/pipe.c) into a flat buffer: a body slice, in
 * chunk framing when chunked, as the proxy queues it for the next hop. */
void fbuf_push_body(struct fbuf *out, int chunked, const char *at, size_t len);

#endif
