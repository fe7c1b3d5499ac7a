/*
 * fuzz_request_head: what a client sends, through the proxy's request path
 * (daemon/proxy/conn_http.c): http_scan over each read, llhttp and the
 * head collection of base/http.c, the limits (max_header_size,
 * HTTP_MAX_HEADERS), the checks llhttp leaves to us, and http_rewrite for
 * the upstream; pipelined requests in turn, as begin_request feeds them.
 *
 * Input: byte 0 picks max_header_size, the client's address, the
 * upstream's name and whether upstream keep-alive is on; bytes 1-4 the
 * sizes of the reads (fuzz.h); the rest is the client's bytes.
 *
 * The rules are the proxy's own: base/h1.c (h1_execute, which feeds llhttp
 * through http_scan; h1_validate_request; h1_request_frame; h1_chunk_line)
 * and base/http.c.  What is left here is conn_http.c's callbacks, which
 * only store into struct conn what those return.
 *
 * Invariants, each an abort():
 *   - no head reaches llhttp with more than max_header_size bytes;
 *   - an accepted head's rewrite fits the proxy's scratch buffer
 *     (2 * max_header_size + 8192, proxy.c);
 *   - the rewritten head parses with llhttp as the same request (method,
 *     target, HTTP/1.1) and carries exactly one framing: never both
 *     Content-Length and Transfer-Encoding, at most one Content-Length,
 *     Transfer-Encoding only "chunked" and only when the proxy chunks, and
 *     the body length llhttp reads from it is the one the proxy sends;
 *   - no hop-by-hop field survives but the proxy's own Connection: close
 *     (none with upstream keep-alive);
 *     one Host, one Via, one X-Forwarded-For ending with the client;
 *   - a whole request's bytes toward the upstream (head and framed body)
 *     parse as exactly one request with the client's body, nothing after;
 *   - a refused request gets an answer that parses as that status.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "base/h1.h"
#include "base/http.h"
#include "fuzz.h"
#include "fuzz_http.h"

/* The download states conn_http.c's execute looks at (enum dl_state). */
enum {
	ST_IDLE = 0, /* DL_IDLE */
	ST_HEAD,     /* DL_REQUEST_HEAD */
	ST_BODY,     /* DL_CONNECTING and on: the head went upstream */
};

struct req {
	llhttp_t p;
	struct http_head h;
	size_t max;
	char *scratch;
	size_t scratch_size;
	const char *peer_ip, *server;
	int up_keepalive; /* no Connection: close toward the upstream */

	/* per request (struct download) */
	int state;
	int err_status;
	int minor;
	int req_done;
	int keepalive;
	enum frame frame;
	uint64_t content_length;
	char method[24];
	struct fbuf up;   /* what the upstream gets */
	struct fbuf body; /* the body as llhttp decoded it */
};

static const size_t max_sizes[4] = {1024, 2048, 4096, 32768};
static const char *const servers[4] = {
    "127.0.0.1:8000", "[::1]:8000", "localhost:80", "o.example:8080"};

/* ---- the proxy's output, parsed again ---------------------------------- */

/* The rewritten head of the request q is parsing. */
static void
check_rewritten(struct req *q, const char *head, size_t n)
{
	static const char *const hop[] = {
	    "proxy-connection", "keep-alive", "te", "upgrade", "trailer", NULL};
	static struct reparse rp;
	const struct http_head *h = &q->h;
	size_t cl, te, nl;
	llhttp_errno_t err;
	char via[32];

	snprintf(via, sizeof(via), "1.%d sluice", q->minor);
	reparse_init(&rp, HTTP_REQUEST, 0);
	err = reparse_run(&rp, head, n);
	/* A bodyless request completes (paused); one with a body waits. */
	CHECK(err == HPE_OK || (err == HPE_PAUSED && rp.complete));
	CHECK(rp.headers_done);
	if (err == HPE_PAUSED)
		CHECK(llhttp_get_error_pos(&rp.p) == head + n);
	CHECK(llhttp_get_method(&rp.p) == llhttp_get_method(&q->p));
	CHECK(rp.p.http_major == 1 && rp.p.http_minor == 1);
	CHECK(rp.ulen == h->text_len &&
	    memcmp(rp.url, h->buf + h->text_off, rp.ulen) == 0);

	/* One framing, the proxy's. */
	cl = reparse_count(&rp, "content-length");
	te = reparse_count(&rp, "transfer-encoding");
	CHECK(cl <= 1 && te <= 1 && !(cl && te));
	switch (q->frame) {
	case FRAME_CHUNKED:
		CHECK(te == 1 &&
		    reparse_value_is(&rp, "transfer-encoding", "chunked"));
		CHECK(rp.flags & F_CHUNKED);
		break;
	case FRAME_RAW:
		CHECK(cl == 1 && (rp.flags & F_CONTENT_LENGTH));
		CHECK(rp.content_length == q->content_length);
		break;
	case FRAME_NONE:
		CHECK(te == 0);
		CHECK(cl == 0 || rp.content_length == 0);
		break;
	}

	/* Hop-by-hop fields are gone; the proxy's own are there once. */
	for (size_t i = 0; i < rp.nf; i++) {
		for (int k = 0; hop[k] != NULL; k++)
			CHECK(!reparse_name_is(&rp, i, hop[k]));
		/* the proxy's own, which a client's Connection may name too */
		if (reparse_name_is(&rp, i, "connection") ||
		    reparse_name_is(&rp, i, "transfer-encoding") ||
		    reparse_name_is(&rp, i, "via") ||
		    reparse_name_is(&rp, i, "x-forwarded-for"))
			continue;
		CHECK(!http_is_hop_by_hop(h, rp.f[i].name, rp.f[i].nlen));
	}
	/* Named by the client's Connection, its own Via and
	 * X-Forwarded-For went; the proxy's alone are left. */
	if (http_is_hop_by_hop(h, "via", 3))
		CHECK(reparse_count(&rp, "via") == 1);
	if (http_is_hop_by_hop(h, "x-forwarded-for", 15))
		CHECK(reparse_value_is(&rp, "x-forwarded-for", q->peer_ip));
	/* Connection: close unless upstream keep-alive is on; then none */
	if (q->up_keepalive)
		CHECK(reparse_count(&rp, "connection") == 0);
	else
		CHECK(reparse_count(&rp, "connection") == 1 &&
		    reparse_value_is(&rp, "connection", "close"));
	CHECK(reparse_count(&rp, "host") == 1);
	CHECK(last_via_is(&rp, via));
	CHECK(reparse_count(&rp, "x-forwarded-for") == 1);
	nl = strlen(q->peer_ip);
	for (size_t i = 0; i < rp.nf; i++)
		if (reparse_name_is(&rp, i, "x-forwarded-for"))
			CHECK(rp.f[i].vlen >= nl &&
			    memcmp(rp.f[i].value + rp.f[i].vlen - nl,
			        q->peer_ip, nl) == 0);
}

/* A whole request toward the upstream: one request, the client's body. */
static void
check_upstream(struct req *q)
{
	static struct reparse rp;

	reparse_init(&rp, HTTP_REQUEST, 0);
	CHECK(
	    reparse_run(&rp, q->up.p, q->up.len) == HPE_PAUSED && rp.complete);
	CHECK(llhttp_get_error_pos(&rp.p) == q->up.p + q->up.len);
	CHECK(rp.body.len == q->body.len &&
	    (rp.body.len == 0 ||
	        memcmp(rp.body.p, q->body.p, rp.body.len) == 0));
}

/* ---- conn_http.c's request callbacks, mirrored -------------------------- */

static struct req *
of_parser(llhttp_t *p)
{
	return p->data;
}

static int
req_on_message_begin(llhttp_t *p)
{
	struct req *q = of_parser(p);

	http_head_reset(&q->h);
	q->state = ST_HEAD;
	return 0;
}

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct req *q = of_parser(p);

	if (http_head_on_text(&q->h, at, len) < 0) {
		q->err_status = 431;
		return -1;
	}
	return 0;
}

static int
req_on_field(llhttp_t *p, const char *at, size_t len)
{
	struct req *q = of_parser(p);

	if (http_head_on_name(&q->h, at, len) < 0) {
		q->err_status = 431;
		return -1;
	}
	return 0;
}

static int
req_on_value(llhttp_t *p, const char *at, size_t len)
{
	struct req *q = of_parser(p);

	if (http_head_on_value(&q->h, at, len) < 0) {
		q->err_status = 431;
		return -1;
	}
	return 0;
}

static int
req_on_headers_complete(llhttp_t *p)
{
	struct req *q = of_parser(p);
	const struct http_head *h = &q->h;
	struct http_rewrite rw = {0};
	char via[32];
	int n, st;

	snprintf(q->method, sizeof(q->method), "%s",
	    llhttp_method_name(llhttp_get_method(p)));
	q->minor = llhttp_get_http_minor(p);
	if ((st = h1_validate_request(&q->h, p)) != 0) {
		q->err_status = st;
		return -1;
	}
	q->keepalive = llhttp_should_keep_alive(p) != 0;
	q->frame = h1_request_frame(p);
	q->content_length = p->content_length;

	snprintf(via, sizeof(via), "1.%d sluice", q->minor);
	rw.method = q->method;
	rw.connection = q->up_keepalive ? NULL : "close";
	rw.via = via;
	rw.xff = q->peer_ip;
	rw.host = q->server;
	rw.chunked = q->frame == FRAME_CHUNKED;
	rw.drop_length = rw.chunked;
	n = http_rewrite(h, &rw, q->scratch, q->scratch_size);
	CHECK(n > 0); /* the scratch is sized for any head that fits */
	check_rewritten(q, q->scratch, (size_t)n);
	fbuf_add(&q->up, q->scratch, (size_t)n);
	q->state = ST_BODY;
	return 0;
}

static int
req_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct req *q = of_parser(p);

	CHECK(q->frame != FRAME_NONE);
	fbuf_add(&q->body, at, len);
	fbuf_push_body(&q->up, q->frame == FRAME_CHUNKED, at, len);
	return 0;
}

static int
req_on_message_complete(llhttp_t *p)
{
	struct req *q = of_parser(p);

	if (q->frame == FRAME_CHUNKED)
		fbuf_add(&q->up, "0\r\n\r\n", 5);
	q->req_done = 1;
	check_upstream(q);
	return HPE_PAUSED;
}

static llhttp_settings_t req_settings;

/* Asked by h1_execute after every llhttp run: the scan never let a head
 * grow past its limit. */
static int
in_head(const void *arg)
{
	const struct req *q = arg;

	CHECK(q->h.scan.bytes <= q->max);
	return q->state <= ST_HEAD;
}

/* conn_http.c's execute, for the request parser. */
static llhttp_errno_t
execute(struct req *q, const char *data, size_t n)
{
	int scan_err = 0;
	llhttp_errno_t err;

	err = h1_execute(&q->p, &q->h, 0, in_head, q, data, n, &scan_err);
	if (scan_err == HTTP_SCAN_TOO_LARGE)
		q->err_status = 431;
	return err;
}

/* conn_http.c's request_failed: the proxy's answer must parse. */
static void
request_failed(struct req *q, llhttp_errno_t err)
{
	static struct reparse rp;
	const char *why = llhttp_get_error_reason(&q->p);
	int st = q->err_status ? q->err_status : 400;
	char out[1024];
	int n;

	if (why == NULL || *why == '\0')
		why = llhttp_errno_name(err);
	if (st == 431)
		why = "request head too large";
	else if (q->h.error != NULL)
		why = q->h.error;
	n = http_error_response(st, why, out, sizeof(out));
	CHECK(n > 0);
	if (strcmp(q->method, "HEAD") == 0) { /* respond_error: head alone */
		const char *end = memmem(out, (size_t)n, "\r\n\r\n", 4);

		CHECK(end != NULL);
		n = (int)(end + 4 - out);
	}
	reparse_init(&rp, HTTP_RESPONSE, strcmp(q->method, "HEAD") == 0);
	CHECK(reparse_run(&rp, out, (size_t)n) == HPE_PAUSED && rp.complete &&
	    llhttp_get_status_code(&rp.p) == st);
}

/* begin_request's reset of the per-request state. */
static void
begin_request(struct req *q)
{
	q->state = ST_IDLE;
	q->method[0] = '\0';
	q->err_status = 0;
	q->req_done = 0;
	q->keepalive = 0;
	q->frame = FRAME_NONE;
	q->up.len = 0;
	q->body.len = 0;
	llhttp_resume(&q->p);
}

/*
 * feed_client: 1 to read on, 0 when the connection is done (refused, or
 * no keep-alive after a request).  *left receives the bytes after a
 * complete request (pipelined), which the next request parses first.
 */
static int
feed(
    struct req *q, const char *data, size_t n, const char **left, size_t *nleft)
{
	llhttp_errno_t err;
	size_t used;

	*nleft = 0;
	err = execute(q, data, n);
	if (err == HPE_PAUSED_UPGRADE && q->state == ST_IDLE) {
		used = (size_t)(llhttp_get_error_pos(&q->p) - data);
		llhttp_resume_after_upgrade(&q->p);
		data += used;
		n -= used;
		err = execute(q, data, n);
	}
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		used = (size_t)(llhttp_get_error_pos(&q->p) - data);
		CHECK(used <= n);
		*left = data + used;
		*nleft = n - used;
		return 1;
	}
	if (err != HPE_OK) {
		request_failed(q, err);
		return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char headbuf[32768], scratch[2 * 32768 + 8192];
	static struct req q;
	struct splits sp;
	const char *left;
	size_t nleft;
	uint8_t opt;

	if (size < 1)
		return 0;
	opt = data[0];
	data++;
	size--;
	splits_init(&sp, &data, &size);
	if (req_settings.on_message_begin == NULL) {
		llhttp_settings_init(&req_settings);
		req_settings.on_message_begin = req_on_message_begin;
		req_settings.on_url = req_on_url;
		req_settings.on_header_field = req_on_field;
		req_settings.on_header_value = req_on_value;
		req_settings.on_headers_complete = req_on_headers_complete;
		req_settings.on_body = req_on_body;
		req_settings.on_message_complete = req_on_message_complete;
	}

	q.max = max_sizes[opt & 3];
	q.server = servers[(opt >> 2) & 3];
	q.peer_ip = opt & 16 ? "::1" : "127.0.0.1";
	q.up_keepalive = (opt & 32) != 0; /* [upstream] keepalive > 0 */
	q.scratch = scratch;
	q.scratch_size = 2 * q.max + 8192;
	http_head_init(&q.h, headbuf, q.max);
	llhttp_init(&q.p, HTTP_REQUEST, &req_settings);
	q.p.data = &q;
	begin_request(&q);

	while (size > 0) {
		size_t n = splits_next(&sp, size);
		int go = feed(&q, (const char *)data, n, &left, &nleft);

		data += n;
		size -= n;
		/* The response is done: the next request, if the client may
		 * send one, starts with what it pipelined. */
		while (go && q.req_done) {
			if (!q.keepalive) {
				go = 0;
				break;
			}
			begin_request(&q);
			if (nleft > 0)
				go = feed(&q, left, nleft, &left, &nleft);
		}
		if (!go)
			break;
	}
	fbuf_free(&q.up);
	fbuf_free(&q.body);
	return 0;
}
