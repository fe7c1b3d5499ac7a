/*
 * h1: the proxy's rules for HTTP/1.x messages on top of llhttp, shared by
 * the connection (proxy/conn_http.c) and the fuzz harnesses that check
 * them (tests/fuzz): how a head's bytes reach llhttp (through http_scan),
 * which requests are refused, how a body is framed toward the next hop,
 * and how a response head is rewritten toward the client.
 *
 * No sockets, no loop, no buffers of its own: the caller's parser, head
 * and output space.
 */
#ifndef SLUICE_H1_H
#define SLUICE_H1_H

#include <stddef.h>

#include <llhttp.h>

#include "base/http.h"

/* How a body goes to the next hop. */
enum frame {
	FRAME_NONE = 0, /* no body */
	FRAME_RAW,      /* body bytes as they are (Content-Length or close) */
	FRAME_CHUNKED,  /* the proxy adds chunk framing */
};

/*
 * Runs p over n bytes; those of a head go through h->scan first, which
 * counts every byte of it against the head buffer's size (llhttp's spans
 * leave out whitespace and line ends: a 5 MB head of them once passed a
 * 32k max_header_size) and refuses what llhttp lets through.  A head is
 * fed to llhttp up to its end only, so that the bytes after it are never
 * counted or scanned as head.  in_head(arg) says whether the current
 * message's head is still coming; it is asked again after every llhttp
 * run, whose callbacks change the answer.
 *
 * A refusal stops p for good: HPE_USER, h->error set, and *scan_err (when
 * not NULL) the http_scan error; otherwise *scan_err is left alone.
 */
llhttp_errno_t h1_execute(llhttp_t *p, struct http_head *h, int response,
    int (*in_head)(const void *arg), const void *arg, const char *data,
    size_t n, int *scan_err);

/* What llhttp leaves to us in a request head: an HTTP status to refuse it
 * with (505, 501, 400), h->error saying why; or 0. */
int h1_validate_request(struct http_head *h, const llhttp_t *p);

/* What llhttp leaves to us in a response head: -1, h->error saying why,
 * for a 101 (sluice never forwards Upgrade) or a coding other than
 * chunked (relayed as it is, its body would reach the client with no
 * framing or coding it could know); or 0. */
int h1_validate_response(struct http_head *h, int status);

/* The framing a request's body (parsed up to its head) gets upstream. */
enum frame h1_request_frame(const llhttp_t *p);

/* The framing of a final response (status >= 200) toward a client that
 * spoke HTTP/1.client_minor, for a request that was HEAD or not. */
struct h1_resp_frame {
	enum frame frame;
	int no_body;      /* HEAD, 204 or 304 */
	int by_close;     /* the client knows the end by the close */
	int head_chunked; /* the rewritten head says Transfer-Encoding:
	                   * chunked (a HEAD or 304 keeps the framing a GET
	                   * would have had) */
};
void h1_response_frame(const llhttp_t *p, int status, int is_head,
    int client_minor, struct h1_resp_frame *out);

/* Writes the response head h, which p parsed, rewritten for the client into
 * out: HTTP/1.1, the upstream's status and reason phrase (at most 100
 * bytes), a Via entry naming the version the upstream spoke, the given
 * Connection (NULL for none), chunked or not.  Returns its length, or
 * -ENOSPC when it does not fit (http_rewrite). */
int h1_response_head(const llhttp_t *p, const struct http_head *h,
    const char *connection, int chunked, char *out, size_t cap);

/* The size line of a chunk of len bytes ("1f40\r\n"), in buf (at least
 * H1_CHUNK_LINE bytes); returns its length. */
#define H1_CHUNK_LINE 24
int h1_chunk_line(char *buf, size_t len);

#endif
