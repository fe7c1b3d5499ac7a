/*
 * fuzz_framing: a response body through the proxy's framing: read into
 * the pooled blocks of a real pipe (proxy/pipe.c, proxy/pool.c) as
 * conn_io.c reads, decoded by llhttp (chunked, Content-Length or
 * close-delimited), re-framed by pipe_push_body as conn_http.c does (chunked
 * for an HTTP/1.1 client, as it is for an HTTP/1.0 one or a
 * Content-Length), optionally spooled (policy spill) and written out
 * through pipe_peek/pipe_consume.
 *
 * Input: byte 0 picks the framing in, the client's version, the block
 * size, whether the writer drains after each read, and a Content-Length
 * one byte longer than the body (an upstream that closes short); byte 1
 * turns the spool on and picks its limit; bytes 2-5 the sizes of the reads
 * (fuzz.h); the rest is the body as the upstream frames it.
 *
 * Invariants, each an abort():
 *   - the bytes out decode (llhttp, as a client would) to the bytes in,
 *     in order, and end where the body in ended;
 *   - a body in that ended whole ends whole out; one that did not (cut
 *     short, or invalid framing) ends out without its end (no last chunk,
 *     fewer bytes than Content-Length), except a close-delimited body,
 *     which the proxy resets;
 *   - the pipe gives every block back: after it is drained and destroyed
 *     the pool has none in use, and the spool's bytes are accounted to 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <llhttp.h>

#include "base/h1.h"
#include "fuzz.h"
#include "fuzz_http.h"
#include "proxy/pipe.h"
#include "proxy/pool.h"

enum in_frame {
	IN_CHUNKED = 0,
	IN_LENGTH,
	IN_CLOSE,
};

struct fr {
	llhttp_t p;
	struct pipe down;
	struct block *rd_block; /* the block the bytes being parsed lie in */
	enum frame frame;
	int by_close;
	int complete, failed;
	struct fbuf in;  /* the body as llhttp decoded it */
	struct fbuf out; /* what the client got */
};

static const size_t block_sizes[8] = {
    64, 128, 256, 512, 1024, 4096, 16384, 65536};

static struct fr *
of_parser(llhttp_t *p)
{
	return p->data;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct fr *f = of_parser(p);

	fbuf_add(&f->in, at, len);
	CHECK(pipe_push_body(&f->down, f->rd_block, f->frame == FRAME_CHUNKED,
	          at, len) == 0);
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct fr *f = of_parser(p);

	if (f->frame == FRAME_CHUNKED)
		CHECK(pipe_push_copy(&f->down, "0\r\n\r\n", 5) == 0);
	f->complete = 1;
	return HPE_PAUSED;
}

static llhttp_settings_t settings;

/* The client's write: whatever pipe_peek hands out, then its release. */
static void
drain(struct fr *f)
{
	uv_buf_t bufs[8];
	size_t n;

	while ((n = pipe_peek(&f->down, bufs, 8)) > 0) {
		for (size_t i = 0; i < n; i++)
			fbuf_add(&f->out, bufs[i].base, bufs[i].len);
		pipe_consume(&f->down, n);
	}
	CHECK(f->down.error == 0);
}

/* One read of at most n bytes as conn_io.c does it: into the pipe's
 * current block, then parsed where it landed.  Returns the bytes read. */
static size_t
read_into_pipe(struct fr *f, const uint8_t *data, size_t n)
{
	struct block *b;
	char *base;
	size_t len;
	llhttp_errno_t err;

	CHECK(pipe_reserve(&f->down, &base, &len, &b) == 0);
	if (len > n)
		len = n;
	memcpy(base, data, len);
	pipe_commit(&f->down, len);
	f->rd_block = b;
	err = llhttp_execute(&f->p, base, len);
	f->rd_block = NULL;
	block_unref(b);
	if (err != HPE_OK && !(err == HPE_PAUSED && f->complete))
		f->failed = 1;
	return len;
}

/* The client's reading of out. */
static void
check_out(struct fr *f)
{
	static struct reparse rp;
	llhttp_errno_t err;

	reparse_init(&rp, HTTP_RESPONSE, 0);
	err = reparse_run(&rp, f->out.p, f->out.len);
	if (f->by_close && err == HPE_OK)
		err = llhttp_finish(&rp.p); /* the proxy's close */
	if (f->complete && !f->failed) {
		CHECK(err == HPE_PAUSED && rp.complete);
		CHECK(f->by_close ||
		    llhttp_get_error_pos(&rp.p) == f->out.p + f->out.len);
	} else if (!f->by_close) {
		CHECK(err == HPE_OK && !rp.complete); /* visibly short */
	}
	CHECK(rp.body.len == f->in.len &&
	    (rp.body.len == 0 || memcmp(rp.body.p, f->in.p, f->in.len) == 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pool pools[8];
	static struct fr f;
	static _Atomic uint64_t spooled_total;
	static unsigned runs;
	struct pool *pool;
	struct spill_cfg sc = {"/dev/shm", &spooled_total, 0};
	char head[128];
	struct splits sp;
	uint8_t opt, opt1;
	enum in_frame in;
	int minor, drain_each, n;

	if (size < 2)
		return 0;
	opt = data[0];
	opt1 = data[1];
	data += 2;
	size -= 2;
	splits_init(&sp, &data, &size);
	if (settings.on_body == NULL) {
		llhttp_settings_init(&settings);
		settings.on_body = on_body;
		settings.on_message_complete = on_message_complete;
	}
	in = (opt & 3) == 3 ? IN_CHUNKED : (enum in_frame)(opt & 3);
	minor = (opt >> 2) & 1;
	drain_each = (opt >> 6) & 1;

	f.complete = f.failed = 0;
	f.in.len = f.out.len = 0;
	/* one pool per block size for the whole run, as the proxy keeps one
	 * per generation: its arenas are mapped once, and every input must
	 * give back every block (below) */
	pool = &pools[(opt >> 3) & 7];
	if (pool->block_size == 0)
		pool_init(pool, block_sizes[(opt >> 3) & 7], 0);
	pipe_init(&f.down, pool, SIZE_MAX, 0);
	if (opt1 & 1) {
		sc.total_limit = opt1 & 2 ? 4096 : 1 << 20;
		pipe_spill_setup(&f.down, &sc, 2 * pool->block_size);
	}

	/* The framing conn_http.c chooses, and the head the client gets
	 * (its rewrite is fuzz_response_head's). */
	f.by_close = 0;
	if (in == IN_LENGTH) {
		f.frame = FRAME_RAW;
		n = snprintf(head, sizeof(head),
		    "HTTP/1.%d 200 OK\r\nContent-Length: %zu\r\n\r\n", minor,
		    size + (opt >> 7));
	} else if (minor >= 1) {
		f.frame = FRAME_CHUNKED;
		n = snprintf(head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	} else {
		f.frame = FRAME_RAW;
		f.by_close = 1;
		n = snprintf(head, sizeof(head), "HTTP/1.0 200 OK\r\n\r\n");
	}
	CHECK(pipe_push_copy(&f.down, head, (size_t)n) == 0);

	/* The upstream's head. */
	if (in == IN_CHUNKED)
		n = snprintf(head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	else if (in == IN_LENGTH)
		n = snprintf(head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
		    size + (opt >> 7));
	else
		n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n\r\n");
	llhttp_init(&f.p, HTTP_RESPONSE, &settings);
	f.p.data = &f;
	if (llhttp_execute(&f.p, head, (size_t)n) != HPE_OK)
		CHECK(f.complete); /* Content-Length: 0 */

	while (size > 0 && !f.complete && !f.failed) {
		size_t got = read_into_pipe(&f, data, splits_next(&sp, size));

		data += got;
		size -= got;
		if (drain_each)
			drain(&f);
	}
	/* the upstream's close ends a close-delimited body */
	if (!f.complete && !f.failed && llhttp_finish(&f.p) != HPE_PAUSED)
		f.failed = 1;
	drain(&f);
	check_out(&f);

	CHECK(pipe_held(&f.down) == 0 && pipe_empty(&f.down));
	pipe_destroy(&f.down);
	CHECK(pool->nused == 0);
	CHECK(spooled_total == 0);
	/* now and then, what the inputs freed goes back to the system as the
	 * proxy's idle blocks do, and nothing stays mapped */
	if ((++runs & 1023) == 0) {
		pool_trim(pool, UINT64_MAX / 2);
		CHECK(
		    pool->narenas == 0 && pool->nhot == 0 && pool->ncold == 0);
	}
	return 0;
}
