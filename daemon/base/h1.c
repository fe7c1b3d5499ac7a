/*
 * h1: see h1.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/h1.h"

llhttp_errno_t
h1_execute(llhttp_t *p, struct http_head *h, int response,
    int (*in_head)(const void *arg), const void *arg, const char *data,
    size_t n, int *scan_err)
{
	llhttp_errno_t err;
	size_t used;
	int rc;

	/* a paused parser answers at once: scan nothing twice */
	while (n > 0 && in_head(arg) && llhttp_get_errno(p) == HPE_OK) {
		if (http_scan_done(&h->scan) || h->scan.bytes == 0)
			http_scan_init(&h->scan, h->cap, response);
		if ((rc = http_scan(&h->scan, data, n, &used)) < 0) {
			h->error = http_scan_strerror(rc);
			if (scan_err != NULL)
				*scan_err = rc;
			p->error = HPE_USER;
			llhttp_set_error_reason(p, h->error);
			return HPE_USER;
		}
		if ((err = llhttp_execute(p, data, used)) != HPE_OK)
			return err;
		data += used;
		n -= used;
	}
	return llhttp_execute(p, data, n);
}

static int
count_fields(const struct http_head *h, const char *name)
{
	size_t nl = strlen(name);
	int n = 0;

	for (size_t i = 0; i < h->nf; i++)
		if (h->f[i].name_len == nl &&
		    strncasecmp(h->buf + h->f[i].name_off, name, nl) == 0)
			n++;
	return n;
}

int
h1_validate_request(struct http_head *h, const llhttp_t *p)
{
	int hosts = count_fields(h, "host");

	if (p->http_major != 1) {
		h->error = "HTTP version not supported";
		return 505;
	}
	if (p->method == HTTP_CONNECT) {
		h->error = "method not supported";
		return 501;
	}
	/* RFC 9112 §3.2: a 1.1 request without Host, or with several. */
	if (hosts > 1 || (hosts == 0 && p->http_minor >= 1)) {
		h->error = "missing or repeated Host";
		return 400;
	}
	/* RFC 9112 §6.1: only chunked is ours to decode; nginx answers 501
	 * to any other coding. */
	if (http_te_chunked(h) < 0) {
		h->error = "Transfer-Encoding other than chunked";
		return 501;
	}
	return 0;
}

int
h1_validate_response(struct http_head *h, int status)
{
	if (status == 101) {
		h->error = "101 Switching Protocols (Upgrade is not forwarded)";
		return -1;
	}
	if (http_te_chunked(h) < 0) {
		h->error = "Transfer-Encoding other than chunked";
		return -1;
	}
	return 0;
}

enum frame
h1_request_frame(const llhttp_t *p)
{
	if (p->flags & F_CHUNKED)
		return FRAME_CHUNKED;
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
		return FRAME_RAW;
	return FRAME_NONE;
}

void
h1_response_frame(const llhttp_t *p, int status, int is_head, int client_minor,
    struct h1_resp_frame *out)
{
	int chunked_in = (p->flags & F_CHUNKED) != 0;

	memset(out, 0, sizeof(*out));
	out->no_body = is_head || status == 204 || status == 304;
	if (out->no_body) {
		out->frame = FRAME_NONE;
	} else if (chunked_in || !(p->flags & F_CONTENT_LENGTH)) {
		/* Chunked or close-delimited: chunked for 1.1 clients, the
		 * close for 1.0 ones. */
		if (client_minor >= 1) {
			out->frame = FRAME_CHUNKED;
		} else {
			out->frame = FRAME_RAW;
			out->by_close = 1;
		}
	} else {
		out->frame = FRAME_RAW;
	}
	/* a bodiless answer keeps the framing it names (HEAD, 304), but a
	 * 204 has none (RFC 9110 §6.1) */
	out->head_chunked = out->frame == FRAME_CHUNKED ||
	    (out->no_body && chunked_in && client_minor >= 1 && status != 204);
}

int
h1_response_head(const llhttp_t *p, const struct http_head *h,
    const char *connection, int chunked, char *out, size_t cap)
{
	struct http_rewrite rw = {0};
	int status = p->status_code;
	char line[160], via[32];

	if (h->text_len > 0)
		snprintf(line, sizeof(line), "HTTP/1.1 %d %.*s", status,
		    (int)(h->text_len > 100 ? 100 : h->text_len),
		    h->buf + h->text_off);
	else
		snprintf(line, sizeof(line), "HTTP/1.1 %d %s", status,
		    http_reason(status));
	rw.first_line = line;
	/* RFC 9110 §8.6: no Content-Length in a 1xx or a 204 (an upstream's
	 * would make a client read the next response as a body) */
	rw.drop_length = status < 200 || status == 204;
	rw.connection = connection;
	/* RFC 9110 §7.6.3: the protocol the message was received with */
	snprintf(via, sizeof(via), "1.%d sluice", p->http_minor == 0 ? 0 : 1);
	rw.via = via;
	rw.chunked = chunked;
	return http_rewrite(h, &rw, out, cap);
}

int
h1_chunk_line(char *buf, size_t len)
{
	return snprintf(buf, H1_CHUNK_LINE, "%zx\r\n", len);
}
