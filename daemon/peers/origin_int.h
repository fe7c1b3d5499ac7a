/*
 * origin internals shared by the files of `sluice origin`: origin.c (the
 * verb, the listener, accepting), origin_conn.c (a connection's I/O),
 * origin_answer.c (what a request gets) and origin_giveup.c (the give-up
 * rules and the end of a connection).  Not for use outside daemon/peers.
 */
#ifndef SLUICE_ORIGIN_INT_H
#define SLUICE_ORIGIN_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <llhttp.h>
#include <uv.h>

#include "base/address.h"
#include "base/http.h"
#include "base/list.h"

#define OBUF_SIZE (256 * 1024)
#define TICK_MS   20
#define HEAD_MAX  16384

struct origin_opts {
	struct sockaddr_any listen;
	const char *root;
	const char *json_path;
	uint64_t key;
	uint64_t sndbuf;
	uint64_t user_timeout_ms, send_timeout_ms;
	unsigned zwp_probes;
	uint64_t zwp_interval_ms, zwp_max_interval_ms;
	bool close_after_write;
	uint64_t drip_bytes, drip_every_ms;
	bool raw;
	uint64_t flip_at, truncate_at; /* UINT64_MAX: off */
};

struct origin {
	uv_loop_t *loop;
	struct origin_opts opt;
	int lfd;
	uv_poll_t lpoll;
	uv_signal_t sigint, sigterm;
	FILE *json;
	struct list conns; /* of oconn */
	size_t nconns;
	bool stopping;
};

enum body_kind {
	BODY_NONE = 0,
	BODY_PATTERN,
	BODY_FILE,
};

struct oconn {
	struct origin *o;
	struct list_node link; /* o->conns */
	int fd;
	uv_poll_t poll;
	uv_timer_t tick;
	uv_timer_t drip;
	int nhandles;
	bool closing;
	char peer[INET6_ADDRSTRLEN + 8];
	uint64_t t_start;

	/* request */
	llhttp_t parser;
	struct http_head head;
	char headbuf[HEAD_MAX];
	char in[16384];
	size_t inlen;
	bool req_ready;
	bool keepalive;
	int requests;
	char path[256];
	int status;

	/* response */
	bool responding;
	bool head_only;
	bool chunked;
	bool raw_stream; /* --raw: pattern until the peer closes */
	enum body_kind body;
	int file_fd;
	uint64_t off, end; /* next body offset to queue, end (exclusive) */
	uint64_t stop_at;  /* --truncate-at: close after this offset */
	bool last_chunk;   /* the 0-chunk is queued */
	char *obuf;
	size_t olen, ooff;
	size_t ob_body_lo, ob_body_hi; /* body bytes inside obuf */
	uint64_t drip_allow;

	/* accounting */
	uint64_t head_bytes;   /* heads and framing written */
	uint64_t body_written; /* body bytes written by the application */
	uint64_t body_total;   /* sum of the bodies' sizes */
	uint64_t acked_total;  /* tcpi_bytes_acked, last seen */
	uint64_t zw_since;     /* ms; 0: window open */
	uint64_t zw_ms;        /* total zero-window time */
	unsigned probes;       /* emulated, or the kernel's per episode */
	unsigned ep_probes;    /* in the current episode */
	uint64_t last_write;   /* ms of the last write progress */
	bool blocked;          /* the last write met a full socket */
	int64_t queued_at_close;
	const char *gave_up;
};

/* What a request asks for, once its path is resolved. */
struct answer {
	int status;
	uint64_t size;        /* the whole body */
	uint64_t first, last; /* the part sent (inclusive), for 206 */
	char etag[80];
	char last_modified[64];
	const char *text; /* short text body for errors */
};

/* origin.c: the loop's time, ms. */
uint64_t now_ms(struct origin *o);

/* origin_conn.c: polls for what the connection waits for now. */
void update_poll(struct oconn *c);
/* Writes as much of the response as the socket takes. */
void pump(struct oconn *c);
/* The drip timer: a new portion of the body every --every. */
void oconn_on_drip(uv_timer_t *t);

/* origin_answer.c: a small text answer (4xx) that ends the connection. */
void answer_text(struct oconn *c, int status, const char *text);
/* Starts the body of an answer whose head is in obuf. */
void start_body(struct oconn *c, const struct answer *a, enum body_kind kind);
/* Answers the request the parser has just completed. */
void handle_request(struct oconn *c);

/* origin_giveup.c: ends the connection, logs a give-up, writes the JSON
 * line; reset sends RST. */
void oconn_close(struct oconn *c, bool reset, const char *why);
/* The socket failed (a write, the poll or the tick saw err). */
void socket_failed(struct oconn *c, int err);
/* The 20 ms TCP_INFO sample: zero window, probes, send timeout. */
void oconn_on_tick(uv_timer_t *t);

#endif
