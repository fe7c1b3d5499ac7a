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

#include "base/h1.h"
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

/*
 * The phase of a connection's current download, changed only by
 * set_state() (conn.c), which logs the transition and arms the state's
 * deadline (arm_deadline, conn_io.c).  The order matters: a state at or
 * after DL_RELAYING has sent the client a response head.
 *
 *   state             waits for                       deadline
 *   idle              the first byte of a request     idle_timeout
 *   request_head      the rest of the head            header_timeout, whole
 *   connecting        the upstream's connect          connect_timeout
 *   waiting_response  the response head               read_timeout
 *   relaying          upstream bytes, client drain    read_timeout while
 *                                                     read; client rules
 *   resume_wait       resume_backoff to pass          resume_backoff
 *   flushing          the client to take the rest     client rules
 *   lingering         the client's FIN after ours     LINGER_MS
 *   closing           the handles' close callbacks    (none: no I/O)
 *
 * "Client rules": a write in flight is watched for a zero window
 * (zwp_timeout) or, with that off, for no progress in idle_timeout; a
 * request body being read, idle_timeout; nothing in flight either way (a
 * read held by memory_limit with `down` empty), the client's liveness
 * every CLIENT_CHECK_MS.  A resumed download goes back through
 * connecting and waiting_response with its head already sent
 * (d.resuming).
 */
enum dl_state {
	DL_IDLE = 0,
	DL_REQUEST_HEAD,
	DL_CONNECTING,
	DL_WAITING,
	DL_RELAYING,
	DL_RESUME_WAIT,
	DL_FLUSHING,
	DL_LINGERING,
	DL_CLOSING,
	DL_NSTATES,
};

/* Per request: everything here is cleared with one assignment when a
 * request begins (begin_request). */
struct download {
	char method[24];
	char target[160];
	int minor; /* client's HTTP/1.x minor version */
	enum frame req_frame;
	enum frame resp_frame;
	int status;
	int err_status; /* set by a parser callback that fails */
	uint64_t t_start;
	uint64_t t_head;   /* when the request head's first byte came */
	uint64_t body_out; /* response bytes written to the client */
	uint64_t tried;    /* servers tried for this request */
	int last_connect_err;

	unsigned keepalive : 1; /* the client allows another request */
	unsigned is_head : 1;
	unsigned req_done : 1;       /* the request (and body) is all in */
	unsigned resp_by_close : 1;  /* body delimited by our close */
	unsigned short_end : 1;      /* ends short: never keep-alive */
	unsigned logged : 1;         /* the access line of this request */
	unsigned resuming : 1;       /* the next response continues a body */
	unsigned client_range : 1;   /* the client sent Range */
	unsigned spill_fellback : 1; /* counted in stats.spill_fallbacks */
	unsigned may_resume : 1;     /* a GET resume may continue (req_copy) */
	unsigned may_resend : 1;     /* idempotent, bodiless (req_copy) */
	unsigned up_reused : 1;      /* its upstream socket was a parked one */
	unsigned up_fresh : 1;       /* the next connect takes no parked one */
	unsigned resent : 1;         /* sent again after a reused socket
	                              * closed before answering */
	unsigned resp_started : 1;   /* a response byte came from upstream */
	unsigned resp_clean : 1;     /* it ended where a read ended */
	unsigned splice : 1;         /* its body moves through the kernel
	                              * pipe ([buffer] splice, conn_splice.c) */
	/* splice's framing (conn_splice.c), set by splice_begin and kept for
	 * the whole response even if splice stops */
	unsigned own_chunks : 1; /* chunked to the client: one chunk per
	                          * upstream chunk, or per run (run_left) */
	unsigned up_chunked : 1; /* the upstream's body is chunked: inside a
	                          * chunk's data, resp.content_length is
	                          * what is left of it */
	unsigned in_chunk : 1;   /* between a chunk's size line and its end */
	unsigned run_open : 1;   /* the proxy's own chunk (close-delimited
	                          * body) had its size line, not its CRLF */
	uint64_t chunk_size;     /* the current upstream chunk's size */
	uint64_t run_left;       /* bytes of the proxy's own chunk still to
	                          * come from the upstream */

	/* the access log and /connections */
	enum outcome outcome;
	uint64_t resp_body_in; /* response body bytes from upstreams */
	uint64_t peak_mem;     /* most bytes `down` held in memory */
	uint64_t paused_ms;    /* upstream reads stopped, this request */
	uint64_t pause_start;  /* when they stopped (0: reading) */
	uint64_t spilled0;     /* down.spool.written when it began */
	uint64_t spliced;      /* body bytes spliced to the client */

	/* zero-window watch toward the client */
	uint64_t czw_since; /* when its window was first seen zero */
	uint64_t cw_acked;  /* its bytes_acked at the last write check */

	/* policy pace */
	double pace_rate;      /* the client's drain rate, bytes/s */
	double pace_tokens;    /* bytes the upstream may still be read */
	uint64_t pace_drained; /* client bytes since the last tick */
	uint64_t pace_last;    /* ms of the last tick */
	uint64_t pace_acked;   /* the client's tcpi_bytes_acked then */

	/* resume, and a request sent again on a new upstream socket */
	char *req_copy; /* the request head as sent upstream */
	size_t req_copy_len;
	int resume_tries;     /* resumes in a row that brought no byte */
	uint64_t resume_from; /* resp_body_in at the last resume */
	char validator[128];  /* strong ETag or Last-Modified */
	uint64_t resp_total;  /* the response's Content-Length */
	int resumes;
};

struct conn {
	struct proxy *px;
	struct proxy_gen *gen;    /* the config generation it started on */
	const struct config *cfg; /* gen->cfg, for the whole connection */
	struct list_node link;    /* px->conns */
	struct conn *mem_next, *mem_prev; /* px->mem_head.., mem_waiting */
	size_t mem_grant; /* bytes conn_memory_wake promised its next read
	                   * (0: none), counted in proxy_memory_granted */
	uint64_t id;
	int nhandles;
	enum dl_state state;
	uint64_t state_since; /* ms, when it was entered */

	uv_tcp_t client;
	uv_tcp_t upstream;
	uv_timer_t ctimer; /* the client side's deadline (arm_deadline) */
	uv_timer_t utimer; /* the upstream side's: connect, read, resume */
	uv_timer_t ptimer; /* policy pace: the token bucket's tick */
	uv_connect_t connect_req;
	uv_write_t cwrite, uwrite;
	uv_shutdown_t shutdown_req;
	size_t cw_nsegs, uw_nsegs;

	llhttp_t reqp, resp;
	struct http_head reqh, resph;

	struct pipe up;         /* request body toward the upstream */
	struct pipe down;       /* response toward the client */
	struct block *rd_block; /* block of the read being parsed (NULL:
	                         * the read landed in px->hread) */
	struct {
		struct block *b; /* pipelined bytes of the next request */
		const char *p;
		size_t n;
	} left;

	char peer[INET6_ADDRSTRLEN + 8];
	char peer_ip[INET6_ADDRSTRLEN];

	struct download d; /* the current request */
	int server;        /* balancer index, -1: none held */
	enum ustate ustate;
	uint64_t spool_written; /* down.spool.written counted in stats */
	unsigned spool_starts;  /* down.spool.starts counted in stats */

	/* independent conditions */
	unsigned close_after : 1; /* no further request on this conn */
	unsigned cw_busy : 1, uw_busy : 1;
	unsigned creading : 1, ureading : 1;
	unsigned retry_connect : 1, connect_pending : 1;
	unsigned served : 1;      /* a request began on this connection */
	unsigned mem_waiting : 1; /* queued for memory (px->mem_waiters) */
	unsigned mem_turn : 1;    /* woken with nothing to read yet: its next
	                           * read skips the queue, not the limit */
	unsigned usplice : 1;     /* the upstream is read by upoll (splice) */
	unsigned cw_splice : 1;   /* cw_busy is cpoll's: a splice waits for
	                           * the client socket to be writable */
	unsigned kfull : 1;       /* the kernel pipe took no more: memory
	                           * takes the bytes past it (splice_mode) */

	/* splice: polls on duplicates of the sockets' descriptors (libuv
	 * allows one handle per descriptor); -1: no such poll */
	uv_poll_t upoll, cpoll;
	int upoll_fd, cpoll_fd;
	uint64_t kfull_out; /* down.k.out when kfull was set */
};

#define LINGER_MS       2000 /* discard client input this long after FIN */
#define CLIENT_CHECK_MS 1000 /* liveness check of a client we wait with */

/* conn.c: a connection's life */
extern const char *const state_names[DL_NSTATES];
void set_state(struct conn *c, enum dl_state s);
int client_has_head(const struct conn *c);
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
int push_run_line(struct conn *c, uint64_t n);
int push_body_end(struct conn *c);

/* conn_io.c: reads, writes, what holds a read, the timers */
void arm_deadline(struct conn *c);
void kick_client_timer(struct conn *c);
void memory_unqueue(struct conn *c);
/* Ends the memory promise (or turn) of a read that happened or never will. */
void memory_grant_end(struct conn *c);
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
void kick_upstream_timer(struct conn *c);
void memory_note(struct conn *c);
void client_write_failed(struct conn *c, int err);
void spool_failed(struct conn *c);
size_t memory_room(const struct conn *c);

/* conn_splice.c: the zero-copy path of a response body ([buffer] splice) */
void splice_begin(struct conn *c, const llhttp_t *p, int no_body);
enum splice_mode {
	SPLICE_NONE = 0, /* the upstream is read into blocks */
	SPLICE_IN,       /* ... into the kernel pipe */
	SPLICE_WAIT,     /* not yet: memory's bytes go out first */
	SPLICE_HOLD,     /* not yet: the kernel pipe's bytes, then
	                  * memory's (framing), go out first */
	SPLICE_SPOOL,    /* policy spill: through the kernel pipe into
	                  * the spool file */
};
enum splice_mode splice_mode(struct conn *c);
int splice_read_start(struct conn *c);
void splice_read_stop(struct conn *c);
void splice_close_upstream(struct conn *c);
void splice_flush(struct conn *c);
void splice_end(struct conn *c);
size_t splice_read_max(const struct conn *c);

/* conn_upstream.c: the server, connect, close; failure mid-body, resume */
void release_server(struct conn *c);
void close_upstream(struct conn *c);
void upstream_broken(struct conn *c, const char *why, int err, enum outcome oc);
void connect_failed(struct conn *c, int err);
void start_upstream(struct conn *c);
void park_upstream(struct conn *c);
int resend_request(struct conn *c, int err);
void resume_now(struct conn *c);

#endif
