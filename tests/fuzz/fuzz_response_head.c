/*
 * fuzz_response_head: what an upstream answers, through the proxy's
 * response path (daemon/proxy/conn_http.c): http_scan over each read,
 * llhttp and the head collection of base/http.c, the checks llhttp leaves
 * to us, the framing decision, http_rewrite toward the client (interim
 * responses included) and the body's framing, up to the upstream's close.
 *
 * Input: byte 0 is the request the response answers (the client's HTTP
 * minor version, HEAD or not, keep-alive or not) and max_header_size;
 * bytes 1-4 the sizes of the reads (fuzz.h); the rest is the upstream's
 * bytes, then its close.
 *
 * As in fuzz_request_head, the rules are the proxy's own (base/h1.c:
 * h1_execute, h1_validate_response, h1_response_frame, h1_response_head,
 * h1_chunk_line; base/http.c); what is left here is conn_http.c's
 * callbacks, which only store what those return.
 *
 * Invariants, each an abort():
 *   - no head reaches llhttp with more than max_header_size bytes, and an
 *     accepted head's rewrite fits the proxy's scratch buffer;
 *   - each head sent to the client parses with llhttp as HTTP/1.1 with the
 *     upstream's status and carries exactly one framing: never both
 *     Content-Length and Transfer-Encoding, at most one of each,
 *     Transfer-Encoding only "chunked" and only when the proxy chunks, an
 *     upstream's Content-Length kept as it was, a close-delimited body
 *     only with Connection: close; no hop-by-hop field but the proxy's
 *     own, one Via;
 *   - what the client gets parses as the interim responses, then the final
 *     one with the upstream's body, byte for byte, when the upstream's
 *     response was whole; when it was not (cut, or invalid after its
 *     head), the client's framing shows it short: its parse of the bytes
 *     does not complete (a close-delimited body is reset instead, which
 *     bytes cannot show);
 *   - a response refused before its head gets the proxy's 502, which
 *     parses.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "base/h1.h"
#include "base/http.h"
#include "fuzz.h"
#include "fuzz_http.h"

enum {
	ST_WAITING = 0, /* DL_WAITING: the response head is still coming */
	ST_RELAYING,    /* DL_RELAYING: the client has a head */
	ST_FLUSHING,    /* DL_FLUSHING: the response is whole */
};

struct resp {
	llhttp_t p;
	struct http_head h;
	size_t max;
	char *scratch;
	size_t scratch_size;

	/* the request (struct download) */
	int minor, is_head, keepalive, req_done;
	int close_after;

	int state;
	int status;
	enum frame frame;
	int by_close;
	int failed;       /* refused or broken: respond_error/upstream_broken */
	struct fbuf down; /* what the client gets */
	struct fbuf body; /* the final response's body from the upstream */
	int interims;     /* 1xx heads sent to the client */
};

static const size_t max_sizes[4] = {1024, 2048, 4096, 32768};

static struct resp *
of_parser(llhttp_t *p)
{
	return p->data;
}

/* ---- one head sent to the client, parsed again -------------------------- */

static void
check_head(struct resp *r, int status, const char *connection, int chunked,
    int drop_length, const char *head, size_t n)
{
	static const char *const hop[] = {
	    "proxy-connection", "keep-alive", "te", "upgrade", "trailer", NULL};
	static struct reparse rp;
	const struct http_head *h = &r->h;
	size_t cl, te, n_in;
	llhttp_errno_t err;

	/* Interims parse whole; a final head waits for its body unless it
	 * has none. */
	reparse_init(&rp, HTTP_RESPONSE, r->is_head);
	err = reparse_run(&rp, head, n);
	CHECK(err == HPE_OK || err == HPE_PAUSED);
	CHECK(memcmp(head, "HTTP/1.1 ", 9) == 0);
	CHECK(llhttp_get_status_code(&rp.p) == status);
	CHECK(rp.p.http_major == 1 && rp.p.http_minor == 1);

	cl = reparse_count(&rp, "content-length");
	te = reparse_count(&rp, "transfer-encoding");
	CHECK(cl <= 1 && te <= 1 && !(cl && te));
	CHECK(te == (size_t)(chunked != 0));
	if (te)
		CHECK(reparse_value_is(&rp, "transfer-encoding", "chunked"));
	/* The upstream's Content-Length goes on as it was, unless dropped. */
	n_in = 0;
	for (size_t i = 0; i < h->nf; i++)
		if (h->f[i].name_len == 14 &&
		    strncasecmp(
		        h->buf + h->f[i].name_off, "content-length", 14) == 0)
			n_in++;
	CHECK(cl == (drop_length || chunked ? 0 : n_in));
	if (status >= 200 && r->frame == FRAME_RAW && !r->by_close)
		CHECK(cl == 1 && rp.content_length == r->p.content_length);
	if (r->by_close && status >= 200)
		CHECK(cl == 0 && te == 0);

	for (size_t i = 0; i < rp.nf; i++) {
		for (int k = 0; hop[k] != NULL; k++)
			CHECK(!reparse_name_is(&rp, i, hop[k]));
		/* the proxy's own, which the upstream's Connection may name */
		if (reparse_name_is(&rp, i, "connection") ||
		    reparse_name_is(&rp, i, "transfer-encoding") ||
		    reparse_name_is(&rp, i, "via"))
			continue;
		CHECK(!http_is_hop_by_hop(h, rp.f[i].name, rp.f[i].nlen));
	}
	if (http_is_hop_by_hop(h, "via", 3))
		CHECK(reparse_count(&rp, "via") == 1);
	CHECK(reparse_count(&rp, "connection") == (connection != NULL));
	if (connection != NULL)
		CHECK(reparse_value_is(&rp, "connection", connection));
	if (r->by_close && status >= 200)
		CHECK(connection != NULL && strcmp(connection, "close") == 0);
	CHECK(last_via_is(
	    &rp, r->p.http_minor == 0 ? "1.0 sluice" : "1.1 sluice"));
}

/* ---- conn_http.c's response callbacks, mirrored ------------------------- */

static int
resp_on_message_begin(llhttp_t *p)
{
	http_head_reset(&of_parser(p)->h);
	return 0;
}

static int
resp_on_status(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&of_parser(p)->h, at, len);
}

static int
resp_on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&of_parser(p)->h, at, len);
}

static int
resp_on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&of_parser(p)->h, at, len);
}

/* conn_http.c's push_resp_head, into a flat buffer. */
static int
push_resp_head(struct resp *r, int status, const char *connection, int chunked)
{
	int n = h1_response_head(
	    &r->p, &r->h, connection, chunked, r->scratch, r->scratch_size);

	CHECK(n > 0); /* the scratch is sized for any head that fits */
	check_head(r, status, connection, chunked,
	    status < 200 || status == 204, r->scratch, (size_t)n);
	fbuf_add(&r->down, r->scratch, (size_t)n);
	return 0;
}

static int
resp_on_headers_complete(llhttp_t *p)
{
	struct resp *r = of_parser(p);
	int status = llhttp_get_status_code(p);
	struct h1_resp_frame fr;
	const char *connection;
	int keep;

	if (h1_validate_response(&r->h, status) < 0)
		return -1;
	if (status < 200) {
		if (r->minor == 0)
			return 1;
		r->interims++;
		return push_resp_head(r, status, NULL, 0) < 0 ? -1 : 1;
	}
	r->status = status;
	h1_response_frame(p, status, r->is_head, r->minor, &fr);
	r->frame = fr.frame;
	r->by_close = fr.by_close;
	if (fr.by_close)
		r->close_after = 1;
	keep = r->keepalive && !r->close_after && r->req_done;
	if (!keep)
		r->close_after = 1;
	connection = !keep ? "close" : r->minor == 0 ? "keep-alive" : NULL;
	if (push_resp_head(r, status, connection, fr.head_chunked) < 0)
		return -1;
	r->state = ST_RELAYING;
	return fr.no_body ? 1 : 0;
}

static int
resp_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct resp *r = of_parser(p);

	CHECK(r->state == ST_RELAYING && r->frame != FRAME_NONE);
	fbuf_add(&r->body, at, len);
	fbuf_push_body(&r->down, r->frame == FRAME_CHUNKED, at, len);
	return 0;
}

static int
resp_on_message_complete(llhttp_t *p)
{
	struct resp *r = of_parser(p);

	if (llhttp_get_status_code(p) < 200)
		return 0;
	if (r->frame == FRAME_CHUNKED)
		fbuf_add(&r->down, "0\r\n\r\n", 5);
	r->state = ST_FLUSHING;
	return HPE_PAUSED;
}

static llhttp_settings_t resp_settings;

/* Asked by h1_execute after every llhttp run: the scan never let a head
 * grow past its limit. */
static int
in_head(const void *arg)
{
	const struct resp *r = arg;

	CHECK(r->h.scan.bytes <= r->max);
	return r->state < ST_RELAYING;
}

/* conn_http.c's execute, for the response parser. */
static llhttp_errno_t
execute(struct resp *r, const char *data, size_t n)
{
	return h1_execute(&r->p, &r->h, 1, in_head, r, data, n, NULL);
}

/* response_failed: a 502 before the head, a short end after it. */
static void
response_failed(struct resp *r)
{
	char out[1024];
	int n;

	r->failed = 1;
	if (r->state >= ST_RELAYING)
		return; /* upstream_broken: the client's framing shows it */
	/* respond_error, after the interims that went out */
	n = http_error_response(502, "invalid response", out, sizeof(out));
	CHECK(n > 0);
	if (r->is_head) { /* the head alone, as respond_error sends it */
		const char *end = memmem(out, (size_t)n, "\r\n\r\n", 4);

		CHECK(end != NULL);
		n = (int)(end + 4 - out);
	}
	fbuf_add(&r->down, out, (size_t)n);
	r->status = 502;
	r->frame = FRAME_RAW;
	r->by_close = 0;
}

/* What the client got, parsed as a client would. */
static void
check_client(struct resp *r)
{
	static struct reparse rp;
	llhttp_errno_t err;

	reparse_init(&rp, HTTP_RESPONSE, r->is_head);
	err = reparse_run(&rp, r->down.p, r->down.len);
	/* the proxy's close ends a close-delimited body, whole or not */
	if (r->by_close && err == HPE_OK)
		err = llhttp_finish(&rp.p);
	if (r->state == ST_FLUSHING || (r->failed && r->state < ST_RELAYING)) {
		/* whole: the interims, then the final response */
		CHECK(err == HPE_PAUSED && rp.complete);
		CHECK(r->by_close ||
		    llhttp_get_error_pos(&rp.p) == r->down.p + r->down.len);
		CHECK(llhttp_get_status_code(&rp.p) == r->status);
		CHECK(rp.interims == r->interims);
		if (!r->failed) {
			CHECK(rp.body.len == r->body.len &&
			    (rp.body.len == 0 ||
			        memcmp(rp.body.p, r->body.p, rp.body.len) ==
			            0));
		}
	} else if (r->state == ST_RELAYING && !r->by_close) {
		/* short: the client must be able to tell */
		CHECK(err == HPE_OK && !rp.complete);
		CHECK(rp.body.len == r->body.len &&
		    (rp.body.len == 0 ||
		        memcmp(rp.body.p, r->body.p, rp.body.len) == 0));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char headbuf[32768], scratch[2 * 32768 + 8192];
	static struct resp r;
	struct splits sp;
	llhttp_errno_t err = HPE_OK;
	uint8_t opt;

	if (size < 1)
		return 0;
	opt = data[0];
	data++;
	size--;
	splits_init(&sp, &data, &size);
	if (resp_settings.on_message_begin == NULL) {
		llhttp_settings_init(&resp_settings);
		resp_settings.on_message_begin = resp_on_message_begin;
		resp_settings.on_status = resp_on_status;
		resp_settings.on_header_field = resp_on_field;
		resp_settings.on_header_value = resp_on_value;
		resp_settings.on_headers_complete = resp_on_headers_complete;
		resp_settings.on_body = resp_on_body;
		resp_settings.on_message_complete = resp_on_message_complete;
	}

	r.minor = opt & 1;
	r.is_head = (opt >> 1) & 1;
	r.keepalive = !((opt >> 2) & 1);
	r.req_done = !((opt >> 3) & 1);
	r.max = max_sizes[(opt >> 4) & 3];
	r.close_after = 0;
	r.state = ST_WAITING;
	r.status = 0;
	r.frame = FRAME_NONE;
	r.by_close = 0;
	r.failed = 0;
	r.interims = 0;
	r.down.len = 0;
	r.body.len = 0;
	r.scratch = scratch;
	r.scratch_size = 2 * r.max + 8192;
	http_head_init(&r.h, headbuf, r.max);
	llhttp_init(&r.p, HTTP_RESPONSE, &resp_settings);
	r.p.data = &r;

	/* feed_upstream, read by read, until the response is whole */
	while (size > 0 && r.state != ST_FLUSHING) {
		size_t n = splits_next(&sp, size);

		err = execute(&r, (const char *)data, n);
		data += n;
		size -= n;
		if (r.state == ST_FLUSHING)
			break;
		if (err != HPE_OK) {
			response_failed(&r);
			break;
		}
	}
	/* upstream_eof: the close ends a close-delimited body */
	if (!r.failed && r.state != ST_FLUSHING)
		llhttp_finish(&r.p);
	if (!r.failed && r.state == ST_WAITING)
		response_failed(&r); /* closed before the head: 502 */
	check_client(&r);
	return 0;
}
