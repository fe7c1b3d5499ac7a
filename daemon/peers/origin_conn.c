/*
 * origin connection I/O: the uv_poll on the raw socket, reading requests
 * (llhttp, paused at each request's end, so pipelined requests wait in
 * the kernel until the answer is written), and writing the response from
 * the output buffer (head, chunk framing and pattern bytes) or with
 * sendfile(2), paced by --drip; then the next request on a keep-alive
 * connection.  What a request gets is decided in origin_answer.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#include "base/list.h"
#include "base/pattern.h"
#include "base/tcpinfo.h"
#include "peers/origin_int.h"

static void start_next_request(struct oconn *c);

/* ---- writing the response --------------------------------------------- */

/* Where the current response's body stops being sent: the end, or the
 * --truncate-at offset when the response covers it. */
static uint64_t
body_limit(const struct oconn *c)
{
	return c->stop_at < c->end ? c->stop_at : c->end;
}

/* Bytes of body the drip allows now (all when not dripping). */
static uint64_t
drip_room(const struct oconn *c)
{
	return c->o->opt.drip_bytes != 0 ? c->drip_allow : UINT64_MAX;
}

/* Fills obuf with the next body piece (pattern bytes, chunk-framed when
 * chunked), or the last chunk.  Returns false when nothing is to send. */
static bool
refill(struct oconn *c)
{
	const struct origin_opts *opt = &c->o->opt;
	uint64_t limit = body_limit(c), n;
	size_t pre = 0;

	c->olen = c->ooff = 0;
	c->ob_body_lo = c->ob_body_hi = 0;
	if (c->body != BODY_PATTERN)
		return false;
	if (c->off >= limit) {
		if (c->chunked && !c->last_chunk && c->off >= c->end) {
			memcpy(c->obuf, "0\r\n\r\n", 5);
			c->olen = 5;
			c->last_chunk = true;
			return true;
		}
		return false;
	}
	n = limit - c->off;
	if (n > OBUF_SIZE - 64)
		n = OBUF_SIZE - 64;
	if (n > drip_room(c))
		n = drip_room(c);
	if (n == 0)
		return false;
	if (c->chunked)
		pre = (size_t)snprintf(c->obuf, 32, "%" PRIx64 "\r\n", n);
	pattern_fill(opt->key, c->off, c->obuf + pre, (size_t)n);
	if (opt->flip_at >= c->off && opt->flip_at < c->off + n)
		c->obuf[pre + (opt->flip_at - c->off)] ^= (char)0xff;
	c->ob_body_lo = pre;
	c->ob_body_hi = pre + (size_t)n;
	c->olen = pre + (size_t)n;
	if (c->chunked) {
		memcpy(c->obuf + c->olen, "\r\n", 2);
		c->olen += 2;
	}
	c->off += n;
	if (opt->drip_bytes != 0)
		c->drip_allow -= n;
	return true;
}

/* Counts what a write of w bytes at ooff carried: body or framing. */
static void
account(struct oconn *c, size_t w)
{
	size_t lo = c->ooff, hi = c->ooff + w, b = 0;

	if (hi > c->ob_body_lo && lo < c->ob_body_hi)
		b = (hi < c->ob_body_hi ? hi : c->ob_body_hi) -
		    (lo > c->ob_body_lo ? lo : c->ob_body_lo);
	c->body_written += b;
	c->head_bytes += w - b;
	c->ooff += w;
}

/* Sends file bytes with sendfile(2); returns bytes sent, 0 when the socket
 * is full, or a negative errno. */
static ssize_t
send_file(struct oconn *c)
{
	uint64_t limit = body_limit(c), n = limit - c->off;
	off_t off = (off_t)c->off;
	ssize_t w;

	if (n > drip_room(c))
		n = drip_room(c);
	if (n == 0)
		return 0;
	if (n > (1u << 30))
		n = 1u << 30;
	w = sendfile(c->fd, c->file_fd, &off, (size_t)n);
	if (w < 0)
		return errno == EAGAIN ? 0 : -errno;
	c->off += (uint64_t)w;
	c->body_written += (uint64_t)w;
	if (c->o->opt.drip_bytes != 0)
		c->drip_allow -= (uint64_t)w;
	return w;
}

static void
response_done(struct oconn *c)
{
	const struct origin_opts *opt = &c->o->opt;

	c->responding = false;
	c->blocked = false;
	if (c->file_fd >= 0) {
		close(c->file_fd);
		c->file_fd = -1;
	}
	if (c->stop_at < c->end) {
		oconn_close(c, false, "--truncate-at reached");
		return;
	}
	if (opt->close_after_write) {
		/* Everything is in the kernel: close at once, leaving the rest
		 * to it (an orphan when bytes are still queued). */
		int64_t q = tcpinfo_outq(c->fd);

		if (q > 0)
			c->gave_up = "orphan";
		oconn_close(c, false, "closed after writing the body");
		return;
	}
	if (!c->keepalive) {
		oconn_close(c, false, NULL);
		return;
	}
	start_next_request(c);
}

/*
 * Writes as much as the socket takes.  Returns when the socket is full
 * (poll for writable), the drip allowance is spent (the drip timer goes
 * on), or the response is complete.
 */
void
pump(struct oconn *c)
{
	ssize_t w;

	while (c->responding && !c->closing) {
		if (c->ooff == c->olen) {
			if (c->body == BODY_FILE && c->off < body_limit(c)) {
				w = send_file(c);
				if (w < 0) {
					socket_failed(c, (int)-w);
					return;
				}
				if (w == 0) {
					c->blocked = drip_room(c) > 0;
					break;
				}
				c->last_write = now_ms(c->o);
				continue;
			}
			if (!refill(c)) {
				if (c->off >= body_limit(c) || c->head_only ||
				    c->body == BODY_NONE) {
					if (!c->raw_stream) {
						response_done(c);
						return;
					}
				}
				break; /* waiting for the drip */
			}
		}
		w = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				c->blocked = true;
				break;
			}
			socket_failed(c, errno);
			return;
		}
		account(c, (size_t)w);
		c->blocked = false;
		c->last_write = now_ms(c->o);
	}
	update_poll(c);
}

void
oconn_on_drip(uv_timer_t *t)
{
	struct oconn *c = t->data;

	if (c->closing)
		return;
	/* Like the article's server (send, then sleep): a new portion only
	 * once the last one is in the socket; no catching up in bursts. */
	if (c->drip_allow == 0)
		c->drip_allow = c->o->opt.drip_bytes;
	if (c->responding)
		pump(c);
}

/* ---- requests --------------------------------------------------------- */

static void oconn_on_poll(uv_poll_t *p, int status, int events);

void
update_poll(struct oconn *c)
{
	int ev = 0;

	if (c->closing)
		return;
	if (!c->responding || c->raw_stream)
		ev |= UV_READABLE;
	if (c->responding && c->blocked)
		ev |= UV_WRITABLE;
	if (ev != 0)
		uv_poll_start(&c->poll, ev, oconn_on_poll);
	else
		uv_poll_stop(&c->poll);
}

/* Parses what is in c->in; answers a complete request. */
static void
parse_input(struct oconn *c)
{
	llhttp_errno_t err;
	size_t used;

	if (c->inlen == 0)
		return;
	err = llhttp_execute(&c->parser, c->in, c->inlen);
	if (err == HPE_PAUSED) {
		used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in);
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	} else if (err == HPE_OK) {
		c->inlen = 0;
	} else {
		answer_text(c, 400, "malformed request\n");
		pump(c);
		return;
	}
	if (c->req_ready) {
		c->req_ready = false;
		handle_request(c);
	}
}

static void
start_next_request(struct oconn *c)
{
	llhttp_resume(&c->parser);
	c->body = BODY_NONE;
	c->head_only = false;
	uv_timer_stop(&c->drip);
	update_poll(c);
	parse_input(c);
}

static void
oconn_on_poll(uv_poll_t *p, int status, int events)
{
	struct oconn *c = container_of(p, struct oconn, poll);
	ssize_t n;

	if (c->closing)
		return;
	if (status < 0) {
		socket_failed(c, -status);
		return;
	}
	if (events & UV_WRITABLE) {
		c->blocked = false;
		pump(c);
		if (c->closing)
			return;
	}
	if (!(events & UV_READABLE))
		return;
	if (c->raw_stream) {
		char sink[4096];

		n = read(c->fd, sink, sizeof(sink));
	} else {
		n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	}
	if (n == 0) {
		oconn_close(c, false, "peer closed");
		return;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		socket_failed(c, errno);
		return;
	}
	if (n < 0 || c->raw_stream)
		return;
	c->inlen += (size_t)n;
	if (c->inlen == sizeof(c->in) && !c->req_ready &&
	    c->head.len >= sizeof(c->headbuf)) {
		answer_text(c, 431, "request head too large\n");
		pump(c);
		return;
	}
	parse_input(c);
}
