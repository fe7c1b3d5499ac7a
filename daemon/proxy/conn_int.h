/*
 * conn_int.h: private to the files of one connection, daemon/proxy/conn*.c
 * (conn.c says which owns what); nothing else includes it, and conn.h stays
 * the public API.  It holds struct conn and the helpers one of those files
 * defines and another calls, listed by the file that defines them; their
 * contracts are at their definitions.
 */
#ifndef SLUICE_CONN_INT_H
#define SLUICE_CONN_INT_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>
#include <uv.h>

#include "base/http.h"
#include "base/list.h"
#include "proxy/conn.h"
#include "proxy/pipe.h"
#include "proxy/stats.h"

struct config;
struct proxy_gen;

enum ustate {
	U_NONE = 0, /* no upstream handle */
	U_CONNECTING,
	U_OPEN,
	U_CLOSING, /* uv_close() called, close callback pending */
};

enum frame {
	FRAME_NONE = 0, /* no body */
	FRAME_RAW,      /* body bytes as they are (Content-Length or close) */
	FRAME_CHUNKED,  /* the proxy adds chunk framing */
};

struct conn {
	struct proxy *px;
	struct proxy_gen *gen;    /* the config generation it started on */
	const struct config *cfg; /* gen->cfg, for the whole connection */
	struct list_node link;    /* px->conns */
	uint64_t id;
	int nhandles;

	uv_tcp_t client;
	uv_tcp_t upstream;
	uv_timer_t ctimer; /* client: idle_timeout, zwp checks, lingering */
	uv_timer_t utimer; /* upstream: connect_timeout, read_timeout */
	uv_timer_t ptimer; /* policy pace: the token bucket's tick */
	uv_timer_t rtimer; /* resume_backoff */
	uv_connect_t connect_req;
	uv_write_t cwrite, uwrite;
	uv_shutdown_t shutdown_req;
	size_t cw_nsegs, uw_nsegs;

	llhttp_t reqp, resp;
	struct http_head reqh, resph;
	char *headbuf;

	struct pipe up;         /* request body toward the upstream */
	struct pipe down;       /* response toward the client */
	struct block *rd_block; /* block of the read being parsed */
	struct {
		struct block *b; /* pipelined bytes of the next request */
		const char *p;
		size_t n;
	} left;

	char peer[INET6_ADDRSTRLEN + 8];
	char peer_ip[INET6_ADDRSTRLEN];

	/* the current request */
	char method[24];
	char target[160];
	int minor; /* client's HTTP/1.x minor version */
	enum frame req_frame;
	enum frame resp_frame;
	int status;
	int err_status; /* set by a parser callback that fails */
	uint64_t t_start;
	uint64_t body_out; /* response bytes written to the client */
	int server;        /* balancer index, -1: none held */
	uint64_t tried;    /* servers tried for this request */
	int last_connect_err;
	enum ustate ustate;

	unsigned keepalive : 1; /* the client allows another request */
	unsigned is_head : 1;
	unsigned req_started : 1;
	unsigned req_head_done : 1;
	unsigned req_done : 1;
	unsigned resp_head_sent : 1;
	unsigned resp_done : 1;
	unsigned resp_by_close : 1; /* body delimited by our close */
	unsigned upstream_failed : 1;
	unsigned close_after : 1; /* no further request on this conn */
	unsigned cw_busy : 1, uw_busy : 1;
	unsigned creading : 1, ureading : 1;
	unsigned retry_connect : 1, connect_pending : 1;
	unsigned lingering : 1, shutting : 1;
	unsigned closing : 1;
	unsigned logged : 1;         /* the access line of this request */
	unsigned resuming : 1;       /* the next response continues a body */
	unsigned resume_wait : 1;    /* a resume is waiting for rtimer */
	unsigned client_range : 1;   /* the client sent Range */
	unsigned spill_fellback : 1; /* counted in stats.spill_fallbacks */
	unsigned served : 1;         /* a request began on this connection */

	/* the access log and /connections */
	enum outcome outcome;
	uint64_t resp_body_in;  /* response body bytes from upstreams */
	uint64_t peak_mem;      /* most bytes `down` held in memory */
	uint64_t paused_ms;     /* upstream reads stopped, this request */
	uint64_t pause_start;   /* when they stopped (0: reading) */
	uint64_t spilled0;      /* down.spool.written when it began */
	uint64_t spool_written; /* down.spool.written counted in stats */
	unsigned spool_starts;  /* down.spool.starts counted in stats */

	/* zero-window watch toward the client */
	uint64_t czw_since; /* when its window was first seen zero */

	/* policy pace */
	double pace_rate;      /* the client's drain rate, bytes/s */
	double pace_tokens;    /* bytes the upstream may still be read */
	uint64_t pace_drained; /* client bytes since the last tick */
	uint64_t pace_last;    /* ms of the last tick */
	uint64_t pace_acked;   /* the client's tcpi_bytes_acked then */

	/* resume */
	char *req_copy;       /* the request head as sent upstream */
	int resume_tries;     /* resumes in a row that brought no byte */
	uint64_t resume_from; /* resp_body_in at the last resume */
	size_t req_copy_len;
	char validator[128]; /* strong ETag or Last-Modified */
	uint64_t resp_total; /* the response's Content-Length */
	int resumes;
};

/* conn.c: a connection's life */
void conn_close(struct conn *c, int reset, const char *reason, int err);
void conn_on_handle_close(uv_handle_t *h);
void finish_response(struct conn *c);

/* conn_http.c: the parsers, heads, framing, error answers */
extern llhttp_settings_t conn_req_settings, conn_resp_settings;
extern int conn_settings_ready;
void conn_init_settings(void);
void respond_error(struct conn *c, int status, const char *detail);
void feed_client(struct conn *c, const char *data, size_t n);
void upstream_done(struct conn *c);
void feed_upstream(struct conn *c, const char *data, size_t n);

/* conn_io.c: reads, writes, what holds a read, the timers */
void kick_client_timer(struct conn *c);
void update_client_reading(struct conn *c);
void update_upstream_reading(struct conn *c);
void end_pause(struct conn *c);
void check_down(struct conn *c);
void start_pace(struct conn *c);
void check_up(struct conn *c);
void flush_client(struct conn *c);
void flush_upstream(struct conn *c);
void conn_on_utimer(uv_timer_t *t);
void conn_on_ctimer(uv_timer_t *t);

/* conn_upstream.c: the server, connect, close; failure mid-body, resume */
void release_server(struct conn *c);
void close_upstream(struct conn *c);
void upstream_broken(struct conn *c, const char *why, int err, enum outcome oc);
void connect_failed(struct conn *c, int err);
void start_upstream(struct conn *c);

#endif
