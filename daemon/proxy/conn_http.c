/*
 * conn_http: HTTP on a connection (see conn.c for the other files): the
 * callbacks of the request and the response llhttp parsers and their
 * settings, the checks llhttp leaves to us, each head's rewrite toward the
 * other side, the framing of the bodies the proxy sends, what a resume
 * keeps of the request and checks of the answer, and the proxy's own error
 * answers.  feed_client and feed_upstream run the parsers over what the
 * reads (conn_io.c) brought.
 *
 * Framing: llhttp strips the incoming framing; the proxy frames what it
 * sends itself.  Content-Length is passed through; chunked and
 * close-delimited responses go to HTTP/1.1 clients chunked (a chunk per
 * read slice, or on the splice path one per upstream chunk or run: see
 * push_own_chunked), to HTTP/1.0 clients close-delimited.  A download whose
 * upstream fails mid-body is never ended cleanly: the client gets every byte
 * that arrived, then a close that its framing shows as short (no last chunk,
 * fewer bytes than Content-Length) or, for a close-delimited body, a reset.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/h1.h"
#include "base/http.h"
#include "base/log.h"
#include "base/range.h"
#include "proxy/config.h"
#include "proxy/conn_int.h"
#include "proxy/pipe.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

/* ---- body framing and the proxy's own answers ------------------------ */

/* The proxy's own answer (4xx/5xx) before any response head went out. */
void
respond_error(struct conn *c, int status, const char *detail)
{
	char *buf = c->px->scratch;
	int n;

	log_info("conn %llu %s: %d for \"%s %s\": %s",
	    (unsigned long long)c->id, c->peer, status, c->d.method,
	    c->d.target, detail);
	close_upstream(c);
	memory_unqueue(c);
	c->d.status = status;
	c->d.err_status = status;
	/* other answers are complete once written (access_log), and
	 * client_gone if they never are (conn_close) */
	c->d.outcome = status == 502 ? OUTCOME_UPSTREAM_RESET
	    : status == 504          ? OUTCOME_UPSTREAM_TIMEOUT
	                             : OUTCOME_N;
	c->close_after = 1;
	set_state(c, DL_FLUSHING);
	update_client_reading(c);
	n = http_error_response(status, detail, buf, c->px->scratch_size);
	if (n > 0 && strcmp(c->d.method, "HEAD") == 0) {
		/* the head alone: no content in an answer to HEAD (RFC 9110
		 * §9.3.2); its Content-Length stays, as GET's would be */
		const char *end = memmem(buf, (size_t)n, "\r\n\r\n", 4);

		if (end != NULL)
			n = (int)(end + 4 - buf);
	}
	if (n < 0 || pipe_push_head(&c->down, buf, (size_t)n) < 0) {
		conn_close(c, 0, "the proxy's answer", UV_ENOMEM);
		return;
	}
	flush_client(c);
}

/* ---- the request (client -> upstream) -------------------------------- */

static struct conn *
of_parser(llhttp_t *p)
{
	return p->data;
}

static int
req_on_message_begin(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	c->served = 1;
	c->d.t_start = uv_now(c->px->loop);
	http_head_reset(&c->reqh);
	set_state(c, DL_REQUEST_HEAD);
	return 0;
}

static int
req_overflow(struct conn *c)
{
	/* past max_header_size, or no memory to grow the head into */
	c->d.err_status = c->reqh.overflow ? 431 : 503;
	return -1;
}

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_text(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

static int
req_on_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_name(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

static int
req_on_value(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	return http_head_on_value(&c->reqh, at, len) < 0 ? req_overflow(c) : 0;
}

/* Is the method idempotent (RFC 9110 §9.2.2)? */
static int
idempotent(int method)
{
	return method == HTTP_GET || method == HTTP_HEAD ||
	    method == HTTP_PUT || method == HTTP_DELETE ||
	    method == HTTP_OPTIONS || method == HTTP_TRACE;
}

/* A bodiless request keeps the head it sent upstream when it may need it
 * again: with resume on, a GET asks for the rest of the body with Range
 * if the upstream dies; with upstream keep-alive, an idempotent request
 * whose kept upstream connection closes before answering is sent again on
 * a new one. */
static void
keep_request(struct conn *c, llhttp_t *p, const char *head, size_t n)
{
	int method = llhttp_get_method(p);
	size_t len;

	c->d.client_range = http_head_get(&c->reqh, "range", &len) != NULL;
	if (c->d.req_frame != FRAME_NONE)
		return;
	c->d.may_resume =
	    c->cfg->buffer.resume && method == HTTP_GET && !c->d.client_range;
	c->d.may_resend = c->cfg->upstream.keepalive > 0 && idempotent(method);
	if (!c->d.may_resume && !c->d.may_resend)
		return;
	if ((c->d.req_copy = malloc(n)) == NULL) {
		/* no resume or resend for this one, no harm */
		c->d.may_resume = c->d.may_resend = 0;
		return;
	}
	memcpy(c->d.req_copy, head, n);
	c->d.req_copy_len = n;
}

static int
req_on_headers_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);
	const struct http_head *h = &c->reqh;
	struct http_rewrite rw = {0};
	char via[32];
	int n, st;

	snprintf(c->d.method, sizeof(c->d.method), "%s",
	    llhttp_method_name(llhttp_get_method(p)));
	snprintf(c->d.target, sizeof(c->d.target), "%.*s", (int)h->text_len,
	    h->buf + h->text_off);
	c->d.minor = llhttp_get_http_minor(p);
	if ((st = h1_validate_request(&c->reqh, p)) != 0) {
		c->d.err_status = st;
		return -1;
	}
	c->d.keepalive = llhttp_should_keep_alive(p) != 0;
	c->d.is_head = llhttp_get_method(p) == HTTP_HEAD;
	c->d.req_frame = h1_request_frame(p);

	/* HTTP/1.1 upstream: persistent unless keepalive is 0 */
	snprintf(via, sizeof(via), "1.%d sluice", c->d.minor);
	rw.method = c->d.method;
	rw.connection = c->cfg->upstream.keepalive > 0 ? NULL : "close";
	rw.via = via;
	rw.xff = c->peer_ip;
	/* An HTTP/1.0 request may come without Host; the upstream gets one
	 * (RFC 9112 §3.2): the upstream's name, as nginx's $proxy_host,
	 * which here is the first server's address. */
	rw.host = c->cfg->upstream.servers[0].text;
	rw.chunked = c->d.req_frame == FRAME_CHUNKED;
	rw.drop_length = rw.chunked;
	n = http_rewrite(h, &rw, c->px->scratch, c->px->scratch_size);
	if (n < 0) {
		c->d.err_status = 431;
		return -1;
	}
	if (pipe_push_head(&c->up, c->px->scratch, (size_t)n) < 0) {
		c->d.err_status = 503;
		return -1;
	}
	keep_request(c, p, c->px->scratch, (size_t)n);
	start_upstream(c);
	return 0;
}

static int
req_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);

	if (pipe_push_body(&c->up, c->rd_block, c->d.req_frame == FRAME_CHUNKED,
	        at, len) < 0) {
		c->d.err_status = 503;
		return -1;
	}
	return 0;
}

static int
req_on_message_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	if (c->d.req_frame == FRAME_CHUNKED &&
	    pipe_push_copy(&c->up, "0\r\n\r\n", 5) < 0) {
		c->d.err_status = 503;
		return -1;
	}
	c->d.req_done = 1;
	/* Stop here: what follows is the next request, parsed when this
	 * response is done (HTTP/1.1 pipelining, in order). */
	return HPE_PAUSED;
}

/* The request could not be parsed or was refused. */
static void
request_failed(struct conn *c, llhttp_errno_t err)
{
	const char *why = llhttp_get_error_reason(&c->reqp);
	int st = c->d.err_status ? c->d.err_status : 400;

	if (client_has_head(c)) {
		conn_close(c, 0, "bad request body after response head", 0);
		return;
	}
	if (why == NULL || *why == '\0')
		why = llhttp_errno_name(err);
	if (st == 431)
		why = "request head too large";
	else if (c->reqh.error != NULL)
		why = c->reqh.error;
	respond_error(c, st, why);
}

/* Keeps the bytes after a request (the next one, pipelined) for
 * begin_request, in a loose block of their own size (pool.h): a few
 * pipelined bytes do not pin the pool block they were read into, which
 * would count a whole block against memory_limit while the download waits.
 * Bytes that already lie in a loose block (kept before) keep it. */
static int
keep_left(struct conn *c, const char *p, size_t n)
{
	struct block *b = c->rd_block;

	if (b != NULL && b->pool == NULL) {
		block_ref(b);
	} else {
		if ((b = block_loose(p, n)) == NULL)
			return -1;
		p = b->data;
	}
	c->left.b = b;
	c->left.p = p;
	c->left.n = n;
	return 0;
}

/* Is the head of the parser's current message still coming? */
static int
in_request_head(const void *arg)
{
	return ((const struct conn *)arg)->state <= DL_REQUEST_HEAD;
}

static int
in_response_head(const void *arg)
{
	return ((const struct conn *)arg)->state < DL_RELAYING;
}

/* Runs a parser over bytes of its side (h1_execute): a request head too
 * large for max_header_size gets 431. */
static llhttp_errno_t
execute(struct conn *c, int response, const char *data, size_t n)
{
	int scan_err = 0;
	llhttp_errno_t err;

	if (response)
		return h1_execute(
		    &c->resp, &c->resph, 1, in_response_head, c, data, n, NULL);
	err = h1_execute(
	    &c->reqp, &c->reqh, 0, in_request_head, c, data, n, &scan_err);
	if (scan_err == HTTP_SCAN_TOO_LARGE)
		c->d.err_status = 431;
	return err;
}

/* Feeds client bytes (which lie in c->rd_block, or in c->px->hread when
 * it is NULL: nothing may point into them once this returns) to the
 * request parser. */
void
feed_client(struct conn *c, const char *data, size_t n)
{
	llhttp_errno_t err;
	size_t used;

	err = execute(c, 0, data, n);
	if (err == HPE_PAUSED_UPGRADE && c->state == DL_IDLE) {
		/* The last request asked for an Upgrade, which the rewrite
		 * dropped (Upgrade is hop-by-hop): no protocol switched, so
		 * what follows is the next HTTP/1.1 request. */
		used = (size_t)(llhttp_get_error_pos(&c->reqp) - data);
		llhttp_resume_after_upgrade(&c->reqp);
		data += used;
		n -= used;
		err = execute(c, 0, data, n);
	}
	if (c->state == DL_CLOSING)
		return;
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		used = (size_t)(llhttp_get_error_pos(&c->reqp) - data);
		if (used < n && keep_left(c, data + used, n - used) < 0) {
			conn_close(c, 0, "a pipelined request", UV_ENOMEM);
			return;
		}
	} else if (err != HPE_OK) {
		request_failed(c, err);
		return;
	}
	check_up(c);
	update_client_reading(c);
	flush_upstream(c);
}

/* ---- the response (upstream -> client) ------------------------------- */

static int
resp_on_message_begin(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	http_head_reset(&c->resph);
	c->d.resp_started = 1;
	return 0;
}

static int
resp_on_status(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(&of_parser(p)->resph, at, len);
}

static int
resp_on_field(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(&of_parser(p)->resph, at, len);
}

static int
resp_on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(&of_parser(p)->resph, at, len);
}

/* Pushes the rewritten response head into `down`. */
static int
push_resp_head(struct conn *c, const char *connection, int chunked)
{
	int n;

	n = h1_response_head(&c->resp, &c->resph, connection, chunked,
	    c->px->scratch, c->px->scratch_size);
	if (n < 0)
		return n;
	return pipe_push_head(&c->down, c->px->scratch, (size_t)n);
}

/* Keeps what a resume must check: the Content-Length and a strong
 * validator (ETag, else Last-Modified). */
static void
remember_validator(struct conn *c, llhttp_t *p)
{
	const char *v;
	size_t len;

	c->d.validator[0] = '\0';
	c->d.resp_total = 0;
	if (c->d.resp_frame != FRAME_RAW || c->d.resp_by_close ||
	    !(p->flags & F_CONTENT_LENGTH))
		return;
	c->d.resp_total = p->content_length;
	v = http_head_get(&c->resph, "etag", &len);
	if (v != NULL && len >= 2 && v[0] == '"' &&
	    len < sizeof(c->d.validator))
		snprintf(c->d.validator, sizeof(c->d.validator), "%.*s",
		    (int)len, v);
	else if ((v = http_head_get(&c->resph, "last-modified", &len)) !=
	        NULL &&
	    len < sizeof(c->d.validator))
		snprintf(c->d.validator, sizeof(c->d.validator), "%.*s",
		    (int)len, v);
}

/*
 * The answer to a resume: a 206 whose Content-Range starts at the byte we
 * need, for the same total, with the same validator; its body then goes on
 * the client's as if nothing happened.  Anything else ends the download
 * short, with no further attempt (the representation changed).
 */
static int
check_resumed(struct conn *c, llhttp_t *p, int status)
{
	uint64_t first, last, total;
	const char *v, *cr;
	size_t len, crlen;

	v = http_head_get(&c->resph,
	    c->d.validator[0] == '"' ? "etag" : "last-modified", &len);
	cr = http_head_get(&c->resph, "content-range", &crlen);
	if (status != 206 || cr == NULL ||
	    range_parse_content_range(cr, crlen, &first, &last, &total) < 0 ||
	    first != c->d.resp_body_in || total != c->d.resp_total ||
	    last + 1 != total || v == NULL || len != strlen(c->d.validator) ||
	    memcmp(v, c->d.validator, len) != 0 ||
	    !(p->flags & F_CONTENT_LENGTH) ||
	    p->content_length != total - first) {
		log_warn("conn %llu %s: resume refused (status %d, "
		         "Content-Range %.*s); ending the response short",
		    (unsigned long long)c->id, c->peer, status,
		    cr != NULL ? (int)crlen : 1, cr != NULL ? cr : "-");
		c->d.resume_tries =
		    (int)c->cfg->buffer.resume_attempts; /* no more */
		return -1;
	}
	log_info("conn %llu %s: resumed at byte %llu of %llu",
	    (unsigned long long)c->id, c->peer, (unsigned long long)first,
	    (unsigned long long)total);
	c->d.resuming = 0;
	set_state(c, DL_RELAYING);
	return 0;
}

static int
resp_on_headers_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);
	int status = llhttp_get_status_code(p);
	struct h1_resp_frame fr;
	const char *connection;
	int keep;

	if (h1_validate_response(&c->resph, status) < 0)
		return -1;
	if (status < 200) {
		/* Interim responses (100 Continue, 103 Early Hints) go to
		 * HTTP/1.1 clients as they come (RFC 9110 §15.2).  They have
		 * no content whatever their fields say, as the head scanner
		 * knows: 1 tells llhttp, which would read a Content-Length
		 * body, and so take the next head's first bytes for it. */
		if (c->d.minor == 0 || c->d.resuming)
			return 1;
		return push_resp_head(c, NULL, 0) < 0 ? -1 : 1;
	}
	if (c->d.resuming)
		return check_resumed(c, p, status);
	c->d.status = status;
	h1_response_frame(p, status, c->d.is_head, c->d.minor, &fr);
	c->d.resp_frame = fr.frame;
	c->d.resp_by_close = fr.by_close;
	if (fr.by_close)
		c->close_after = 1;
	keep = c->d.keepalive && !c->close_after && c->d.req_done &&
	    !c->px->draining;
	if (!keep)
		c->close_after = 1;
	connection = !keep ? "close" : c->d.minor == 0 ? "keep-alive" : NULL;
	if (push_resp_head(c, connection, fr.head_chunked) < 0)
		return -1;
	set_state(c, DL_RELAYING);
	remember_validator(c, p);
	start_pace(c);
	splice_begin(c, p, fr.no_body);
	return fr.no_body ? 1 : 0;
}

/*
 * Splice's framing (d.own_chunks, conn_splice.c): the proxy's chunks are
 * not one per slice read, since a spliced run of bytes never passes here.
 * An upstream chunk goes out as one chunk of its own size: its size line
 * at its header, its data as it comes (read or spliced), its CRLF at its
 * end.  A close-delimited body goes out in runs: a run's size is what the
 * upstream socket held when it began (push_run_line), its bytes come
 * spliced or read, and its CRLF goes before whatever follows it; slices
 * read outside a run are framed one by one, as without splice.
 */

/* Opens the proxy's next chunk of a close-delimited body, n bytes, closing
 * the one before.  0 or -1. */
int
push_run_line(struct conn *c, uint64_t n)
{
	char line[2 + H1_CHUNK_LINE];
	int len;

	len = h1_chunk_line(line + 2, (size_t)n);
	memcpy(line, "\r\n", 2);
	if (pipe_push_copy(&c->down, c->d.run_open ? line : line + 2,
	        (size_t)len + (c->d.run_open ? 2 : 0)) < 0)
		return -1;
	c->d.run_open = 1;
	c->d.run_left = n;
	return 0;
}

/* The response's end toward an HTTP/1.1 client: the last chunk, after the
 * CRLF of an open run.  A run the upstream ended inside (fewer bytes than
 * the socket held: never, short of a bug) is no end: -1. */
int
push_body_end(struct conn *c)
{
	if (c->d.resp_frame != FRAME_CHUNKED)
		return 0;
	if (c->d.run_left > 0)
		return -1;
	if (c->d.run_open && pipe_push_copy(&c->down, "\r\n0\r\n\r\n", 7) < 0)
		return -1;
	if (!c->d.run_open && pipe_push_copy(&c->down, "0\r\n\r\n", 5) < 0)
		return -1;
	c->d.run_open = 0;
	return 0;
}

/* A read slice under splice's framing: inside an upstream chunk, as it
 * is; of a close-delimited body, the rest of the open run as it is, what
 * follows in a chunk of its own. */
static int
push_own_chunked(struct conn *c, const char *at, size_t len)
{
	size_t k = len;

	if (c->d.up_chunked)
		return pipe_push_body(&c->down, c->rd_block, 0, at, len);
	if (k > c->d.run_left)
		k = (size_t)c->d.run_left;
	if (k > 0 && pipe_push_body(&c->down, c->rd_block, 0, at, k) < 0)
		return -1;
	c->d.run_left -= k;
	if (k == len)
		return 0;
	if (c->d.run_open && pipe_push_copy(&c->down, "\r\n", 2) < 0)
		return -1;
	c->d.run_open = 0;
	return pipe_push_body(&c->down, c->rd_block, 1, at + k, len - k);
}

static int
resp_on_chunk_header(llhttp_t *p)
{
	struct conn *c = of_parser(p);
	char line[H1_CHUNK_LINE];

	if (!c->d.up_chunked || p->content_length == 0)
		return 0; /* the last chunk: its line is push_body_end's */
	c->d.chunk_size = p->content_length;
	c->d.in_chunk = 1;
	if (!c->d.own_chunks)
		return 0;
	return pipe_push_copy(&c->down, line,
	           (size_t)h1_chunk_line(line, (size_t)p->content_length)) < 0
	    ? -1
	    : 0;
}

static int
resp_on_chunk_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	if (!c->d.in_chunk)
		return 0;
	c->d.in_chunk = 0;
	if (!c->d.own_chunks)
		return 0;
	return pipe_push_copy(&c->down, "\r\n", 2) < 0 ? -1 : 0;
}

static int
resp_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = of_parser(p);
	int rc;

	/* a chunk whose data was spliced to its end: llhttp's empty span */
	if (len == 0)
		return 0;
	if (c->d.own_chunks)
		rc = push_own_chunked(c, at, len);
	else
		rc = pipe_push_body(&c->down, c->rd_block,
		    c->d.resp_frame == FRAME_CHUNKED, at, len);
	if (rc < 0)
		return -1;
	/* counted once queued: a resume asks for the body from here, and a
	 * slice that could not be queued must be asked for again */
	c->d.resp_body_in += len;
	c->px->stats.bytes_in += len;
	if (c->cfg->buffer.policy == POLICY_PACE) {
		/* reads made while memory was nearly empty need no tokens:
		 * a debt from them would close the window later for nothing */
		c->d.pace_tokens -= (double)len;
		if (c->d.pace_tokens < -(double)c->gen->pool.block_size)
			c->d.pace_tokens = -(double)c->gen->pool.block_size;
	}
	return 0;
}

static int
resp_on_message_complete(llhttp_t *p)
{
	struct conn *c = of_parser(p);

	if (llhttp_get_status_code(p) < 200)
		return 0; /* the final response follows */
	if (push_body_end(c) < 0)
		return -1;
	set_state(c, DL_FLUSHING);
	return HPE_PAUSED; /* anything after the response is not ours */
}

/* The whole response arrived. */
void
upstream_done(struct conn *c)
{
	uv_timer_stop(&c->ptimer);
	end_pause(c);
	park_upstream(c);
	close_upstream(c);
	memory_unqueue(c);
	update_client_reading(c);
	flush_client(c);
}

static void
response_failed(struct conn *c, const char *why)
{
	if (client_has_head(c))
		upstream_broken(c, why, 0, OUTCOME_TRUNCATED);
	else
		respond_error(c, 502, why);
}

void
feed_upstream(struct conn *c, const char *data, size_t n)
{
	llhttp_errno_t err = execute(c, 1, data, n);
	char why[128];

	if (c->state == DL_CLOSING)
		return;
	if (c->state == DL_FLUSHING) {
		/* a kept socket must end where its response ended */
		c->d.resp_clean = err == HPE_PAUSED &&
		    llhttp_get_error_pos(&c->resp) == data + n;
		upstream_done(c);
		return;
	}
	if (err != HPE_OK) {
		snprintf(why, sizeof(why), "invalid response: %s",
		    c->resph.error != NULL ? c->resph.error
		        : llhttp_get_error_reason(&c->resp) != NULL
		        ? llhttp_get_error_reason(&c->resp)
		        : llhttp_errno_name(err));
		response_failed(c, why);
		return;
	}
	memory_note(c);
	check_down(c);
	flush_client(c);
}

/* ---- the parsers' settings --------------------------------------------- */

/* Both parsers' callbacks, set once, at the first accept (conn_accept). */
llhttp_settings_t conn_req_settings, conn_resp_settings;
int conn_settings_ready;

void
conn_init_settings(void)
{
	llhttp_settings_init(&conn_req_settings);
	conn_req_settings.on_message_begin = req_on_message_begin;
	conn_req_settings.on_url = req_on_url;
	conn_req_settings.on_header_field = req_on_field;
	conn_req_settings.on_header_value = req_on_value;
	conn_req_settings.on_headers_complete = req_on_headers_complete;
	conn_req_settings.on_body = req_on_body;
	conn_req_settings.on_message_complete = req_on_message_complete;
	llhttp_settings_init(&conn_resp_settings);
	conn_resp_settings.on_message_begin = resp_on_message_begin;
	conn_resp_settings.on_status = resp_on_status;
	conn_resp_settings.on_header_field = resp_on_field;
	conn_resp_settings.on_header_value = resp_on_value;
	conn_resp_settings.on_headers_complete = resp_on_headers_complete;
	conn_resp_settings.on_body = resp_on_body;
	conn_resp_settings.on_chunk_header = resp_on_chunk_header;
	conn_resp_settings.on_chunk_complete = resp_on_chunk_complete;
	conn_resp_settings.on_message_complete = resp_on_message_complete;
	conn_settings_ready = 1;
}
