/*
 * test_http: message heads collected from llhttp's callbacks and rewritten
 * for the next hop (http.h).
 *
 * The rewrite is where RFC 9110 §7.6.1 is enforced: a hop-by-hop field
 * that leaks through lets a client steer the upstream connection (request
 * smuggling through Transfer-Encoding, a forwarded Upgrade).  So outputs
 * are compared whole, byte for byte, not searched for a field or two.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#include "base/h1.h"
#include "base/http.h"

static char hbuf[4096];
static struct http_head head;

static int
setup(void **state)
{
	(void)state;
	http_head_init(&head, hbuf, sizeof(hbuf));
	return 0;
}

/* Adds one field the way llhttp reports it: a name, then a value. */
static void
add(struct http_head *h, const char *name, const char *value)
{
	assert_int_equal(http_head_on_name(h, name, strlen(name)), 0);
	assert_int_equal(http_head_on_value(h, value, strlen(value)), 0);
}

static void
target(struct http_head *h, const char *s)
{
	assert_int_equal(http_head_on_text(h, s, strlen(s)), 0);
}

/* The value of name as a C string, or NULL. */
static const char *
get(const struct http_head *h, const char *name)
{
	static char v[256];
	const char *p;
	size_t len;

	if ((p = http_head_get(h, name, &len)) == NULL)
		return NULL;
	assert_true(len < sizeof(v));
	memcpy(v, p, len);
	v[len] = '\0';
	return v;
}

static void
rewrite_is(const struct http_rewrite *rw, const char *want)
{
	char out[2048];
	int n;

	n = http_rewrite(&head, rw, out, sizeof(out));
	assert_true(n > 0);
	out[n] = '\0';
	assert_string_equal(out, want);
}

/* ---- collecting ----------------------------------------------------- */

static void
collect_split(void **state)
{
	(void)state;
	/* llhttp hands a token over in as many pieces as the reads cut it
	 * into; consecutive calls of one kind extend the same token. */
	assert_int_equal(http_head_on_text(&head, "/do", 3), 0);
	assert_int_equal(http_head_on_text(&head, "wnl", 3), 0);
	assert_int_equal(http_head_on_text(&head, "oad?x=1", 7), 0);
	assert_int_equal(http_head_on_name(&head, "Ho", 2), 0);
	assert_int_equal(http_head_on_name(&head, "s", 1), 0);
	assert_int_equal(http_head_on_name(&head, "t", 1), 0);
	assert_int_equal(http_head_on_value(&head, "exam", 4), 0);
	assert_int_equal(http_head_on_value(&head, "ple.com", 7), 0);
	assert_int_equal(http_head_on_name(&head, "A", 1), 0);
	assert_int_equal(http_head_on_name(&head, "ccept", 5), 0);
	assert_int_equal(http_head_on_value(&head, "*/", 2), 0);
	assert_int_equal(http_head_on_value(&head, "*", 1), 0);
	assert_int_equal(http_head_on_name(&head, "X-Empty", 7), 0);
	assert_int_equal(http_head_on_value(&head, "", 0), 0);

	assert_int_equal(head.nf, 3);
	assert_int_equal(head.overflow, 0);
	assert_memory_equal(head.buf + head.text_off, "/download?x=1", 13);
	assert_int_equal(head.text_len, 13);
	assert_string_equal(get(&head, "Host"), "example.com");
	assert_string_equal(get(&head, "host"), "example.com");
	assert_string_equal(get(&head, "ACCEPT"), "*/*");
	assert_string_equal(get(&head, "x-empty"), "");
	assert_null(get(&head, "Hos"));
	assert_null(get(&head, "Hostx"));
	assert_null(get(&head, "Content-Length"));
}

static void
get_first_of_several(void **state)
{
	(void)state;
	add(&head, "Via", "1.0 a");
	add(&head, "via", "1.1 b");
	assert_string_equal(get(&head, "VIA"), "1.0 a");
}

static void
value_without_name(void **state)
{
	(void)state;
	assert_int_equal(http_head_on_value(&head, "x", 1), -1);
	assert_int_equal(head.nf, 0);
}

static void
reset(void **state)
{
	(void)state;
	target(&head, "/a");
	add(&head, "Host", "a");
	http_head_reset(&head);
	assert_int_equal(head.nf, 0);
	assert_int_equal(head.len, 0);
	assert_int_equal(head.text_len, 0);
	assert_null(get(&head, "Host"));
	/* The head is reusable for the next message on the connection. */
	target(&head, "/b");
	add(&head, "Host", "b");
	assert_string_equal(get(&head, "Host"), "b");
	assert_memory_equal(head.buf + head.text_off, "/b", 2);
}

static void
overflow_buffer(void **state)
{
	char small[16];
	struct http_head h;

	(void)state;
	http_head_init(&h, small, sizeof(small));
	assert_int_equal(http_head_on_text(&h, "/", 1), 0);
	assert_int_equal(http_head_on_name(&h, "Host", 4), 0);
	assert_int_equal(http_head_on_value(&h, "example.co", 10), 0);
	assert_int_equal(h.len, 15);
	/* Exactly full is still fine; one byte more is not. */
	assert_int_equal(http_head_on_name(&h, "X", 1), 0);
	assert_int_equal(h.len, 16);
	assert_int_equal(http_head_on_value(&h, "y", 1), -1);
	assert_int_equal(h.overflow, 1);
	assert_int_equal(h.len, 16);
	/* Once overflowed, even an empty append fails: the head is lost. */
	assert_int_equal(http_head_on_value(&h, "", 0), -1);
	assert_int_equal(http_head_on_text(&h, "", 0), -1);
	http_head_reset(&h);
	assert_int_equal(h.overflow, 0);
	assert_int_equal(http_head_on_name(&h, "Host", 4), 0);
}

static void
owned_buffer_grows(void **state)
{
	struct http_head h;
	char big[8192];
	const char *v;
	size_t len;

	(void)state;
	/* no buffer until the first byte; then HTTP_HEAD_MIN */
	http_head_init_owned(&h, 8192);
	assert_non_null(h.buf);
	assert_int_equal(h.size, 0);
	assert_int_equal(http_head_on_text(&h, "/", 1), 0);
	assert_int_equal(h.size, HTTP_HEAD_MIN);
	/* grown as far as the head needs, the bytes kept (offsets, not
	 * pointers: realloc may move them) */
	memset(big, 'a', sizeof(big));
	assert_int_equal(http_head_on_name(&h, "Host", 4), 0);
	assert_int_equal(http_head_on_value(&h, "example.com", 11), 0);
	assert_int_equal(http_head_on_name(&h, "X-Big", 5), 0);
	assert_int_equal(http_head_on_value(&h, big, 3000), 0);
	assert_int_equal(h.size, 4096);
	v = http_head_get(&h, "host", &len);
	assert_non_null(v);
	assert_int_equal(len, 11);
	assert_memory_equal(v, "example.com", 11);
	assert_memory_equal(h.buf + h.text_off, "/", 1);
	/* never past cap: exactly full is fine, one byte more overflows */
	assert_int_equal(http_head_on_value(&h, big, 8192 - h.len), 0);
	assert_int_equal(h.size, 8192);
	assert_int_equal(http_head_on_value(&h, "b", 1), -1);
	assert_int_equal(h.overflow, 1);
	assert_null(h.error);
	/* a buffer grown past HTTP_HEAD_KEEP goes at the next head */
	http_head_reset(&h);
	assert_int_equal(h.size, 0);
	assert_int_equal(http_head_on_text(&h, "/next", 5), 0);
	assert_int_equal(h.size, HTTP_HEAD_MIN);
	http_head_reset(&h);
	assert_int_equal(h.size, HTTP_HEAD_MIN); /* a small one stays */
	http_head_free(&h);
	assert_int_equal(h.size, 0);
	http_head_free(&h); /* twice: nothing to free */
}

static void
overflow_fields(void **state)
{
	char name[16];

	(void)state;
	for (int i = 0; i < HTTP_MAX_HEADERS; i++) {
		snprintf(name, sizeof(name), "X-%d", i);
		add(&head, name, "v");
	}
	assert_int_equal(head.nf, HTTP_MAX_HEADERS);
	/* The last name and value may still grow... */
	assert_int_equal(http_head_on_value(&head, "w", 1), 0);
	assert_string_equal(get(&head, "X-127"), "vw");
	/* ...but there is no room for another field. */
	assert_int_equal(http_head_on_name(&head, "X-128", 5), -1);
	assert_int_equal(head.overflow, 1);
	assert_int_equal(head.nf, HTTP_MAX_HEADERS);
}

/* ---- llhttp feeding the head ---------------------------------------- */

static int
on_text(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_text(p->data, at, len);
}

static int
on_name(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_name(p->data, at, len);
}

static int
on_value(llhttp_t *p, const char *at, size_t len)
{
	return http_head_on_value(p->data, at, len);
}

/* Runs llhttp over msg cut into pieces of step bytes, as reads would. */
static void
parse_pieces(const char *msg, size_t step)
{
	llhttp_settings_t s;
	llhttp_t p;
	size_t len = strlen(msg);

	llhttp_settings_init(&s);
	s.on_url = on_text;
	s.on_header_field = on_name;
	s.on_header_value = on_value;
	llhttp_init(&p, HTTP_REQUEST, &s);
	p.data = &head;
	http_head_reset(&head);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;

		assert_int_equal(llhttp_execute(&p, msg + off, n), HPE_OK);
	}
}

static void
llhttp_pieces(void **state)
{
	static const char msg[] = "GET /file?a=b HTTP/1.1\r\n"
	                          "Host: example.com\r\n"
	                          "X-Empty:\r\n"
	                          "X-Blank:    \r\n"
	                          "Accept: */*\r\n"
	                          "\r\n";

	(void)state;
	/* An empty value must still close its field, or the next name
	 * would be appended to it. */
	for (size_t step = 1; step <= sizeof(msg); step++) {
		parse_pieces(msg, step);
		assert_int_equal(head.nf, 4);
		assert_int_equal(head.text_len, 9);
		assert_memory_equal(head.buf + head.text_off, "/file?a=b", 9);
		assert_string_equal(get(&head, "host"), "example.com");
		assert_string_equal(get(&head, "x-empty"), "");
		assert_string_equal(get(&head, "x-blank"), "");
		assert_string_equal(get(&head, "accept"), "*/*");
	}
}

/* ---- rewriting ------------------------------------------------------ */

static void
rewrite_hop_by_hop(void **state)
{
	const struct http_rewrite rw = {.first_line = "HTTP/1.1 200 OK"};

	(void)state;
	add(&head, "Host", "example.com");
	add(&head, "Connection", "close, X-Foo , x-bar");
	add(&head, "Keep-Alive", "timeout=5");
	add(&head, "X-Keep", "1");
	add(&head, "Proxy-Connection", "keep-alive");
	add(&head, "TE", "trailers");
	add(&head, "x-foo", "named by Connection");
	add(&head, "Transfer-Encoding", "chunked");
	add(&head, "Upgrade", "websocket");
	add(&head, "X-BAR", "named by Connection");
	add(&head, "Trailer", "Expires");
	add(&head, "Accept", "*/*");
	add(&head, "X-Foobar", "a longer name than X-Foo");
	add(&head, "CONNECTION", "\tX-Other,,");
	add(&head, "x-other", "named by the second Connection");
	add(&head, "keep-alive", "lower case");
	add(&head, "te", "lower case");
	add(&head, "Date", "Thu, 01 Jan 2026 00:00:00 GMT");
	rewrite_is(&rw,
	    "HTTP/1.1 200 OK\r\n"
	    "Host: example.com\r\n"
	    "X-Keep: 1\r\n"
	    "Accept: */*\r\n"
	    "X-Foobar: a longer name than X-Foo\r\n"
	    "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
	    "\r\n");
}

static void
is_hop_by_hop(void **state)
{
	static const char *const hop[] = {
	    "Connection",
	    "connection",
	    "Proxy-Connection",
	    "Keep-Alive",
	    "TE",
	    "te",
	    "Transfer-Encoding",
	    "TRANSFER-ENCODING",
	    "Upgrade",
	    "Trailer",
	    NULL,
	};
	static const char *const end_to_end[] = {
	    "Host",
	    "Content-Length",
	    "Trailers",
	    "T",
	    "Connectio",
	    "X-Foobar",
	    "X-Fo",
	    "Via",
	    "X-Forwarded-For",
	    NULL,
	};

	(void)state;
	add(&head, "Connection", "keep-alive, X-Foo");
	add(&head, "Connection", "x-bar");
	for (size_t i = 0; hop[i] != NULL; i++)
		assert_true(http_is_hop_by_hop(&head, hop[i], strlen(hop[i])));
	for (size_t i = 0; end_to_end[i] != NULL; i++)
		assert_false(http_is_hop_by_hop(
		    &head, end_to_end[i], strlen(end_to_end[i])));
	assert_true(http_is_hop_by_hop(&head, "X-Foo", 5));
	assert_true(http_is_hop_by_hop(&head, "x-foo", 5));
	assert_true(http_is_hop_by_hop(&head, "X-BAR", 5));
	/* The length bounds the name: "X-Foobar" cut at 5 is X-Foo. */
	assert_true(http_is_hop_by_hop(&head, "X-Foobar", 5));
	http_head_reset(&head);
	assert_false(http_is_hop_by_hop(&head, "X-Foo", 5));
}

static void
xff_merged(void **state)
{
	const struct http_rewrite rw = {
	    .method = "GET",
	    .xff = "10.0.0.9",
	};

	(void)state;
	target(&head, "/x");
	add(&head, "x-forwarded-for", "1.1.1.1");
	add(&head, "Host", "example.com");
	add(&head, "X-Forwarded-For", "2.2.2.2, 3.3.3.3");
	add(&head, "Accept", "*/*");
	add(&head, "X-FORWARDED-FOR", "4.4.4.4");
	/* One field, where the first one was, under its spelling. */
	rewrite_is(&rw,
	    "GET /x HTTP/1.1\r\n"
	    "x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, "
	    "4.4.4.4, 10.0.0.9\r\n"
	    "Host: example.com\r\n"
	    "Accept: */*\r\n"
	    "\r\n");
}

static void
xff_added(void **state)
{
	const struct http_rewrite rw = {
	    .method = "GET",
	    .xff = "::1",
	};

	(void)state;
	target(&head, "/x");
	add(&head, "Host", "example.com");
	rewrite_is(&rw,
	    "GET /x HTTP/1.1\r\n"
	    "Host: example.com\r\n"
	    "X-Forwarded-For: ::1\r\n"
	    "\r\n");
}

static void
xff_untouched_without_client(void **state)
{
	/* Responses carry no client address: their fields pass as they
	 * are. */
	const struct http_rewrite rw = {.first_line = "HTTP/1.1 200 OK"};

	(void)state;
	add(&head, "X-Forwarded-For", "1.1.1.1");
	add(&head, "X-Forwarded-For", "2.2.2.2");
	rewrite_is(&rw,
	    "HTTP/1.1 200 OK\r\n"
	    "X-Forwarded-For: 1.1.1.1\r\n"
	    "X-Forwarded-For: 2.2.2.2\r\n"
	    "\r\n");
}

static void
added_fields(void **state)
{
	const struct http_rewrite rw = {
	    .first_line = "HTTP/1.1 200 OK",
	    .via = "1.1 sluice",
	    .chunked = 1,
	    .connection = "keep-alive",
	    .drop_length = 1,
	};

	(void)state;
	add(&head, "Content-Type", "text/plain");
	add(&head, "Content-Length", "12");
	add(&head, "Via", "1.0 origin");
	add(&head, "Transfer-Encoding", "gzip");
	add(&head, "Connection", "close");
	/* The proxy's own framing replaces the upstream's. */
	rewrite_is(&rw,
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "Via: 1.0 origin\r\n"
	    "Via: 1.1 sluice\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "Connection: keep-alive\r\n"
	    "\r\n");
}

/* ---- what Connection may not nominate (issue 13) -------------------- */

static void
connection_keeps_framing(void **state)
{
	const struct http_rewrite rw = {.method = "POST"};

	(void)state;
	/* "Connection: Content-Length" once dropped the length while the
	 * body went on: a request smuggled in the body reached the
	 * upstream as the next request. */
	target(&head, "/a");
	add(&head, "Host", "h");
	add(&head, "Connection",
	    "Content-Length, Host, Transfer-Encoding, X-A");
	add(&head, "Content-Length", "5");
	add(&head, "X-A", "named");
	assert_false(http_is_hop_by_hop(&head, "Content-Length", 14));
	assert_false(http_is_hop_by_hop(&head, "host", 4));
	assert_true(http_is_hop_by_hop(&head, "Transfer-Encoding", 17));
	assert_true(http_is_hop_by_hop(&head, "x-a", 3));
	rewrite_is(&rw,
	    "POST /a HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "Content-Length: 5\r\n"
	    "\r\n");
}

static void
host_added_when_missing(void **state)
{
	const struct http_rewrite rw = {.method = "GET", .host = "10.0.0.1:80"};

	(void)state;
	target(&head, "/old");
	add(&head, "Accept", "*/*");
	rewrite_is(&rw,
	    "GET /old HTTP/1.1\r\n"
	    "Accept: */*\r\n"
	    "Host: 10.0.0.1:80\r\n"
	    "\r\n");
	http_head_reset(&head);
	target(&head, "/new");
	add(&head, "host", "example.com");
	rewrite_is(&rw,
	    "GET /new HTTP/1.1\r\n"
	    "host: example.com\r\n"
	    "\r\n");
}

static void
te_chunked(void **state)
{
	(void)state;
	assert_int_equal(http_te_chunked(&head), 0);
	add(&head, "Transfer-Encoding", " Chunked\t");
	assert_int_equal(http_te_chunked(&head), 1);
	http_head_reset(&head);
	add(&head, "Transfer-Encoding", "gzip, chunked");
	assert_int_equal(http_te_chunked(&head), -1);
	http_head_reset(&head);
	add(&head, "Transfer-Encoding", "gzip");
	assert_int_equal(http_te_chunked(&head), -1);
	http_head_reset(&head);
	add(&head, "Transfer-Encoding", "chunked");
	add(&head, "transfer-encoding", "chunked");
	assert_int_equal(http_te_chunked(&head), -1);
	http_head_reset(&head);
	add(&head, "Transfer-Encoding", "chunkedx");
	assert_int_equal(http_te_chunked(&head), -1);
}

/* ---- the raw head (issue 13) ---------------------------------------- */

/* Scans s whole, then in pieces of every size from 1 byte: the verdict
 * may not depend on how the reads cut the head.  Returns it, with *used
 * the head's bytes when it ended. */
static int
scan_all(const char *s, size_t max, int response, size_t *used)
{
	struct http_scan sc;
	size_t n = strlen(s), u, total;
	int rc, want = 0;
	size_t want_used = 0;

	for (size_t piece = n ? n : 1; piece >= 1; piece--) {
		http_scan_init(&sc, max, response);
		total = 0;
		rc = 0;
		for (size_t off = 0; off < n && rc == 0; off += piece) {
			size_t k = n - off < piece ? n - off : piece;

			rc = http_scan(&sc, s + off, k, &u);
			if (rc >= 0)
				total += u;
		}
		if (piece == (n ? n : 1)) {
			want = rc;
			want_used = total;
		}
		assert_int_equal(rc, want);
		if (rc == 1)
			assert_int_equal(total, want_used);
		if (piece == 1)
			break;
	}
	*used = want_used;
	return want;
}

static void
scan_accepts(void **state)
{
	static const char *const ok[] = {
	    "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	    "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
	    "GET / HTTP/1.1\nHost: h\n\n",
	    "GET /\xff HTTP/1.1\r\nX-A:\t a b\t\r\nX-B:\r\n\r\n",
	    "GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\x80\r\n\r\n",
	    NULL,
	};
	size_t used;

	(void)state;
	for (size_t i = 0; ok[i] != NULL; i++) {
		assert_int_equal(scan_all(ok[i], 4096, 0, &used), 1);
		assert_int_equal(used, strlen(ok[i]));
	}
	/* a tab in the reason phrase is allowed (RFC 9112 §4) */
	assert_int_equal(
	    scan_all("HTTP/1.1 200 O\tK\r\n\r\n", 4096, 1, &used), 1);
}

static void
scan_stops_at_the_end(void **state)
{
	struct http_scan sc;
	const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\nbody\r\r";
	size_t used;

	(void)state;
	http_scan_init(&sc, 4096, 0);
	assert_int_equal(http_scan(&sc, s, strlen(s), &used), 1);
	assert_int_equal(used, strlen(s) - 6);
	assert_true(http_scan_done(&sc));
	assert_int_equal(sc.bytes, used);
}

static void
scan_refuses(void **state)
{
	static const struct {
		const char *head;
		int response;
		int want;
	} bad[] = {
	    {"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 0, HTTP_SCAN_CTL},
	    {"GET /a\x01 HTTP/1.1\r\n\r\n", 0, HTTP_SCAN_CTL},
	    {"GET / HTTP/1.1\r\n: v\r\n\r\n", 0, HTTP_SCAN_NAME},
	    {"GET / HTTP/1.1\r\nX A: v\r\n\r\n", 0, HTTP_SCAN_NAME},
	    {"GET / HTTP/1.1\r\nX-A : v\r\n\r\n", 0, HTTP_SCAN_NAME},
	    {"GET / HTTP/1.1\r\nX(A: v\r\n\r\n", 0, HTTP_SCAN_NAME},
	    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, HTTP_SCAN_NAME},
	    {"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 0, HTTP_SCAN_FOLD},
	    {"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", 0, HTTP_SCAN_FOLD},
	    {"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 0, HTTP_SCAN_FOLD},
	    {"GET / HTTP/1.1\r\nX-A: a\x01"
	     "b\r\n\r\n",
	        0, HTTP_SCAN_CTL},
	    {"GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", 0, HTTP_SCAN_CTL},
	    {"GET / HTTP/1.1\rHost: h\r\n\r\n", 0, HTTP_SCAN_BARE_CR},
	    {"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 0, HTTP_SCAN_BARE_CR},
	    {"GET / HTTP/1.1\r\n\rX", 0, HTTP_SCAN_BARE_CR},
	    {"\rGET / HTTP/1.1\r\n\r\n", 0, HTTP_SCAN_BARE_CR},
	    {"HTTP/1.1 200 O\rK\r\n\r\n", 1, HTTP_SCAN_BARE_CR},
	    {"HTTP/1.1 200 O\x01K\r\n\r\n", 1, HTTP_SCAN_CTL},
	    {NULL, 0, 0},
	};
	size_t used;

	(void)state;
	for (size_t i = 0; bad[i].head != NULL; i++)
		assert_int_equal(
		    scan_all(bad[i].head, 4096, bad[i].response, &used),
		    bad[i].want);
	for (int e = HTTP_SCAN_CTL; e <= HTTP_SCAN_TOO_LARGE; e++)
		assert_string_not_equal(http_scan_strerror(e), "invalid head");
}

static void
scan_counts_every_byte(void **state)
{
	static char big[8192];
	const char *line = "GET / HTTP/1.1\r\n\r\n";
	size_t used, n = strlen(line);

	(void)state;
	/* exactly max bytes pass, one more does not */
	assert_int_equal(scan_all(line, n, 0, &used), 1);
	assert_int_equal(scan_all(line, n - 1, 0, &used), HTTP_SCAN_TOO_LARGE);
	/* whitespace before a value counts (llhttp's spans leave it out) */
	snprintf(
	    big, sizeof(big), "GET / HTTP/1.1\r\nX-A:%*sv\r\n\r\n", 5000, "");
	assert_int_equal(scan_all(big, 4096, 0, &used), HTTP_SCAN_TOO_LARGE);
	assert_int_equal(scan_all(big, 8192, 0, &used), 1);
	/* and so do blank lines before the request line */
	memset(big, 0, sizeof(big));
	for (size_t i = 0; i < 2100; i++)
		memcpy(big + 2 * i, "\r\n", 2);
	strcat(big, line);
	assert_int_equal(scan_all(big, 4096, 0, &used), HTTP_SCAN_TOO_LARGE);
}

static void
scan_refusal_sticks(void **state)
{
	struct http_scan sc;
	size_t used;

	(void)state;
	http_scan_init(&sc, 4096, 0);
	assert_int_equal(http_scan(&sc, "GET /\t", 6, &used), HTTP_SCAN_CTL);
	assert_int_equal(
	    http_scan(&sc, " HTTP/1.1\r\n\r\n", 15, &used), HTTP_SCAN_CTL);
	assert_false(http_scan_done(&sc));
}

static void
length_kept(void **state)
{
	const struct http_rewrite rw = {
	    .first_line = "HTTP/1.1 206 Partial Content",
	    .connection = "close",
	};

	(void)state;
	add(&head, "content-length", "12");
	rewrite_is(&rw,
	    "HTTP/1.1 206 Partial Content\r\n"
	    "content-length: 12\r\n"
	    "Connection: close\r\n"
	    "\r\n");
}

static void
method_line(void **state)
{
	const struct http_rewrite rw = {.method = "HEAD"};

	(void)state;
	/* The target is forwarded as received; the version is ours. */
	parse_pieces("GET /a%20b?q=1 HTTP/1.0\r\nHost: h\r\n\r\n", 7);
	rewrite_is(&rw,
	    "HEAD /a%20b?q=1 HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "\r\n");
}

static void
no_fields(void **state)
{
	const struct http_rewrite rw = {
	    .first_line = "HTTP/1.1 204 No Content",
	};

	(void)state;
	rewrite_is(&rw, "HTTP/1.1 204 No Content\r\n\r\n");
}

static void
no_space(void **state)
{
	const struct http_rewrite rw = {
	    .method = "GET",
	    .xff = "10.0.0.9",
	    .via = "1.1 sluice",
	    .chunked = 1,
	    .connection = "close",
	};
	char full[1024], *out;
	int len;

	(void)state;
	target(&head, "/x");
	add(&head, "Host", "example.com");
	add(&head, "X-Forwarded-For", "1.1.1.1");
	len = http_rewrite(&head, &rw, full, sizeof(full));
	assert_true(len > 0);
	/* Every cap short of the whole head fails, and writes no byte past
	 * cap (the sanitizer build checks the heap copy's bounds). */
	for (int cap = 0; cap < len; cap++) {
		out = malloc(cap > 0 ? (size_t)cap : 1);
		assert_non_null(out);
		assert_int_equal(
		    http_rewrite(&head, &rw, out, (size_t)cap), -ENOSPC);
		free(out);
	}
	out = malloc((size_t)len);
	assert_non_null(out);
	assert_int_equal(http_rewrite(&head, &rw, out, (size_t)len), len);
	assert_memory_equal(out, full, (size_t)len);
	free(out);
}

/* ---- the proxy's own responses ------------------------------------- */

/* What llhttp saw of a response: its body, and whether it ended where the
 * framing says. */
static int body_len, complete;
static char body[512];

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	(void)p;
	assert_true(body_len + len < sizeof(body));
	memcpy(body + body_len, at, len);
	body_len += (int)len;
	return 0;
}

static int
on_complete(llhttp_t *p)
{
	(void)p;
	complete = 1;
	return 0;
}

static void
parse_response(const char *resp, size_t len)
{
	llhttp_settings_t s;
	llhttp_t p;

	llhttp_settings_init(&s);
	s.on_header_field = on_name;
	s.on_header_value = on_value;
	s.on_body = on_body;
	s.on_message_complete = on_complete;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	p.data = &head;
	http_head_reset(&head);
	body_len = complete = 0;
	assert_int_equal(llhttp_execute(&p, resp, len), HPE_OK);
	assert_int_equal(complete, 1);
	body[body_len] = '\0';
}

static void
error_response(void **state)
{
	static const char want[] = "HTTP/1.1 502 Bad Gateway\r\n"
	                           "Content-Type: text/plain; charset=utf-8\r\n"
	                           "Content-Length: 36\r\n"
	                           "Connection: close\r\n"
	                           "Via: 1.1 sluice\r\n"
	                           "\r\n"
	                           "502 Bad Gateway: connection refused\n";
	char out[1024];
	int n;

	(void)state;
	n = http_error_response(502, "connection refused", out, sizeof(out));
	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(out, want);
	parse_response(out, (size_t)n);
	assert_string_equal(get(&head, "Content-Length"), "36");
	assert_string_equal(get(&head, "Connection"), "close");
	assert_int_equal(body_len, 36);
}

static void
error_response_framing(void **state)
{
	static const int statuses[] = {400, 404, 405, 408, 413, 414, 416, 431,
	    500, 501, 502, 503, 504, 505, 599};
	char out[1024], line[64], detail[600];
	int n;

	(void)state;
	memset(detail, 'd', sizeof(detail) - 1);
	detail[sizeof(detail) - 1] = '\0';
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		int st = statuses[i];

		n = http_error_response(st, "why", out, sizeof(out));
		assert_true(n > 0);
		snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", st,
		    http_reason(st));
		assert_memory_equal(out, line, strlen(line));
		parse_response(out, (size_t)n);
		assert_int_equal(body_len, atoi(get(&head, "Content-Length")));
		snprintf(
		    line, sizeof(line), "%d %s: why\n", st, http_reason(st));
		assert_string_equal(body, line);
	}
	/* A long detail is cut, and the length still matches the body. */
	n = http_error_response(500, detail, out, sizeof(out));
	assert_true(n > 0);
	parse_response(out, (size_t)n);
	assert_int_equal(body_len, atoi(get(&head, "Content-Length")));
	assert_int_equal(body_len, 255);
}

static void
error_response_no_space(void **state)
{
	char out[1024];
	int n;

	(void)state;
	n = http_error_response(504, "upstream timed out", out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(
	    http_error_response(504, "upstream timed out", out, (size_t)n),
	    -ENOSPC);
	assert_int_equal(
	    http_error_response(504, "upstream timed out", out, (size_t)n + 1),
	    n);
	assert_int_equal(http_error_response(504, "x", out, 0), -ENOSPC);
}

static void
reasons(void **state)
{
	(void)state;
	assert_string_equal(http_reason(400), "Bad Request");
	assert_string_equal(http_reason(408), "Request Timeout");
	assert_string_equal(http_reason(413), "Content Too Large");
	assert_string_equal(
	    http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(http_reason(502), "Bad Gateway");
	assert_string_equal(http_reason(503), "Service Unavailable");
	assert_string_equal(http_reason(504), "Gateway Timeout");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(http_reason(200), "Error");
}

/* ---- h1: the message rules on top of llhttp ---------------------------- */

static int h1_done; /* the parsed message's head is complete */

static int
h1_on_headers_complete(llhttp_t *p)
{
	(void)p;
	h1_done = 1;
	return HPE_PAUSED;
}

static int
h1_in_head(const void *arg)
{
	(void)arg;
	return !h1_done;
}

/* Parses one head of the given type (HTTP_REQUEST or HTTP_RESPONSE) into
 * the test's head through h1_execute; returns its llhttp error, *scan_err
 * the scanner's refusal or 0. */
static llhttp_errno_t
h1_parse(llhttp_t *p, int type, const char *msg, int *scan_err)
{
	static llhttp_settings_t st;

	llhttp_settings_init(&st);
	st.on_url = on_text; /* the llhttp feeders above */
	st.on_status = on_text;
	st.on_header_field = on_name;
	st.on_header_value = on_value;
	st.on_headers_complete = h1_on_headers_complete;
	llhttp_init(p, (llhttp_type_t)type, &st);
	p->data = &head;
	h1_done = 0;
	*scan_err = 0;
	return h1_execute(p, &head, type == HTTP_RESPONSE, h1_in_head, NULL,
	    msg, strlen(msg), scan_err);
}

static void
h1_execute_whole_head(void **state)
{
	const char *msg = "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y";
	llhttp_t p;
	int err;

	(void)state;
	assert_int_equal(h1_parse(&p, HTTP_REQUEST, msg, &err), HPE_PAUSED);
	assert_int_equal(err, 0);
	/* the head was counted up to its end, and llhttp stopped there */
	assert_int_equal(head.scan.bytes, strlen(msg) - strlen("GET /y"));
	assert_ptr_equal(llhttp_get_error_pos(&p), msg + head.scan.bytes);
	assert_string_equal(get(&head, "Host"), "a");
}

static void
h1_execute_refuses(void **state)
{
	char big[sizeof(hbuf) + 64];
	llhttp_t p;
	int err;

	(void)state;
	/* every byte counts, whitespace too: llhttp's spans would not */
	snprintf(big, sizeof(big),
	    "GET / HTTP/1.1\r\nHost: a\r\nX: %*s\r\n\r\n", (int)sizeof(hbuf),
	    "v");
	assert_int_equal(h1_parse(&p, HTTP_REQUEST, big, &err), HPE_USER);
	assert_int_equal(err, HTTP_SCAN_TOO_LARGE);
	assert_non_null(head.error);
	/* and stays refused */
	assert_int_equal(llhttp_get_errno(&p), HPE_USER);

	http_head_init(&head, hbuf, sizeof(hbuf));
	assert_int_equal(
	    h1_parse(&p, HTTP_REQUEST,
	        "GET / HTTP/1.1\r\nHost: a\r\n X: y\r\n\r\n", &err),
	    HPE_USER);
	assert_int_equal(err, HTTP_SCAN_FOLD);
}

static void
h1_requests(void **state)
{
	static const struct {
		const char *msg;
		int status;
		enum frame frame;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, FRAME_NONE},
	    {"GET / HTTP/1.0\r\n\r\n", 0, FRAME_NONE},
	    {"GET / HTTP/1.1\r\n\r\n", 400, FRAME_NONE},
	    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, FRAME_NONE},
	    {"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501, FRAME_NONE},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, "
	     "chunked\r\n\r\n",
	        501, FRAME_CHUNKED},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	        0, FRAME_CHUNKED},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 0,
	        FRAME_RAW},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0,
	        FRAME_NONE},
	};
	llhttp_t p;
	int err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_head_init(&head, hbuf, sizeof(hbuf));
		assert_int_equal(
		    h1_parse(&p, HTTP_REQUEST, cases[i].msg, &err), HPE_PAUSED);
		assert_int_equal(
		    h1_validate_request(&head, &p), cases[i].status);
		assert_true((cases[i].status == 0) == (head.error == NULL));
		assert_int_equal(h1_request_frame(&p), cases[i].frame);
	}
}

static void
h1_responses(void **state)
{
	static const struct {
		const char *msg;
		int is_head, minor;
		enum frame frame;
		int no_body, by_close, head_chunked;
	} cases[] = {
	    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 0, 1, FRAME_RAW, 0,
	        0, 0},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 1,
	        FRAME_CHUNKED, 0, 0, 1},
	    /* toward an HTTP/1.0 client: the close ends it */
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0,
	        FRAME_RAW, 0, 1, 0},
	    {"HTTP/1.1 200 OK\r\n\r\n", 0, 1, FRAME_CHUNKED, 0, 0, 1},
	    {"HTTP/1.1 200 OK\r\n\r\n", 0, 0, FRAME_RAW, 0, 1, 0},
	    /* HEAD and 304 keep the framing a GET would have; 204 none */
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1, 1,
	        FRAME_NONE, 1, 0, 1},
	    {"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	        0, 1, FRAME_NONE, 1, 0, 1},
	    {"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	        1, FRAME_NONE, 1, 0, 0},
	    {"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", 0, 1,
	        FRAME_NONE, 1, 0, 0},
	};
	struct h1_resp_frame fr;
	llhttp_t p;
	int err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_head_init(&head, hbuf, sizeof(hbuf));
		assert_int_equal(
		    h1_parse(&p, HTTP_RESPONSE, cases[i].msg, &err),
		    HPE_PAUSED);
		assert_int_equal(
		    h1_validate_response(&head, llhttp_get_status_code(&p)), 0);
		h1_response_frame(&p, llhttp_get_status_code(&p),
		    cases[i].is_head, cases[i].minor, &fr);
		assert_int_equal(fr.frame, cases[i].frame);
		assert_int_equal(fr.no_body, cases[i].no_body);
		assert_int_equal(fr.by_close, cases[i].by_close);
		assert_int_equal(fr.head_chunked, cases[i].head_chunked);
	}
}

static void
h1_response_refused(void **state)
{
	llhttp_t p;
	int err;

	(void)state;
	assert_int_equal(h1_parse(&p, HTTP_RESPONSE,
	                     "HTTP/1.1 101 Switching Protocols\r\n"
	                     "Upgrade: x\r\nConnection: upgrade\r\n\r\n",
	                     &err),
	    HPE_PAUSED);
	assert_int_equal(h1_validate_response(&head, 101), -1);
	assert_non_null(head.error);
	http_head_init(&head, hbuf, sizeof(hbuf));
	assert_int_equal(
	    h1_parse(&p, HTTP_RESPONSE,
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &err),
	    HPE_PAUSED);
	assert_int_equal(h1_validate_response(&head, 200), -1);
	assert_string_equal(head.error, "Transfer-Encoding other than chunked");
}

static void
h1_response_heads(void **state)
{
	char out[1024], reason[200], msg[300];
	llhttp_t p;
	int err, n;

	(void)state;
	assert_int_equal(h1_parse(&p, HTTP_RESPONSE,
	                     "HTTP/1.0 204 Empty\r\nContent-Length: 9\r\n"
	                     "Keep-Alive: 5\r\n\r\n",
	                     &err),
	    HPE_PAUSED);
	/* HTTP/1.1 toward the client, Via naming the upstream's 1.0 */
	n = h1_response_head(&p, &head, "close", 0, out, sizeof(out));
	assert_true(n > 0);
	out[n] = '\0';
	assert_string_equal(out,
	    "HTTP/1.1 204 Empty\r\nVia: 1.0 sluice\r\n"
	    "Connection: close\r\n\r\n");
	/* a reason phrase is cut at 100 bytes; none gets the standard one */
	memset(reason, 'r', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	snprintf(msg, sizeof(msg), "HTTP/1.1 200 %s\r\n\r\n", reason);
	http_head_init(&head, hbuf, sizeof(hbuf));
	assert_int_equal(h1_parse(&p, HTTP_RESPONSE, msg, &err), HPE_PAUSED);
	n = h1_response_head(&p, &head, NULL, 1, out, sizeof(out));
	assert_true(n > 0);
	assert_memory_equal(out + 13, reason, 100);
	assert_memory_equal(out + 113, "\r\nVia: 1.1 sluice\r\n", 19);
	http_head_init(&head, hbuf, sizeof(hbuf));
	assert_int_equal(
	    h1_parse(&p, HTTP_RESPONSE, "HTTP/1.1 404 \r\n\r\n", &err),
	    HPE_PAUSED);
	n = h1_response_head(&p, &head, NULL, 0, out, sizeof(out));
	assert_true(n > 0);
	assert_memory_equal(out, "HTTP/1.1 404 Not Found\r\n", 24);
	assert_true(h1_response_head(&p, &head, NULL, 0, out, 10) < 0);
	assert_int_equal(h1_chunk_line(out, 8000), 6);
	assert_memory_equal(out, "1f40\r\n", 6);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(collect_split, setup),
	    cmocka_unit_test_setup(get_first_of_several, setup),
	    cmocka_unit_test_setup(value_without_name, setup),
	    cmocka_unit_test_setup(reset, setup),
	    cmocka_unit_test_setup(overflow_buffer, setup),
	    cmocka_unit_test(owned_buffer_grows),
	    cmocka_unit_test_setup(overflow_fields, setup),
	    cmocka_unit_test_setup(llhttp_pieces, setup),
	    cmocka_unit_test_setup(rewrite_hop_by_hop, setup),
	    cmocka_unit_test_setup(is_hop_by_hop, setup),
	    cmocka_unit_test_setup(xff_merged, setup),
	    cmocka_unit_test_setup(xff_added, setup),
	    cmocka_unit_test_setup(xff_untouched_without_client, setup),
	    cmocka_unit_test_setup(added_fields, setup),
	    cmocka_unit_test_setup(length_kept, setup),
	    cmocka_unit_test_setup(connection_keeps_framing, setup),
	    cmocka_unit_test_setup(host_added_when_missing, setup),
	    cmocka_unit_test_setup(te_chunked, setup),
	    cmocka_unit_test(scan_accepts),
	    cmocka_unit_test(scan_stops_at_the_end),
	    cmocka_unit_test(scan_refuses),
	    cmocka_unit_test(scan_counts_every_byte),
	    cmocka_unit_test(scan_refusal_sticks),
	    cmocka_unit_test_setup(method_line, setup),
	    cmocka_unit_test_setup(no_fields, setup),
	    cmocka_unit_test_setup(no_space, setup),
	    cmocka_unit_test_setup(error_response, setup),
	    cmocka_unit_test_setup(error_response_framing, setup),
	    cmocka_unit_test_setup(error_response_no_space, setup),
	    cmocka_unit_test(reasons),
	    cmocka_unit_test_setup(h1_execute_whole_head, setup),
	    cmocka_unit_test_setup(h1_execute_refuses, setup),
	    cmocka_unit_test_setup(h1_requests, setup),
	    cmocka_unit_test_setup(h1_responses, setup),
	    cmocka_unit_test_setup(h1_response_refused, setup),
	    cmocka_unit_test_setup(h1_response_heads, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
