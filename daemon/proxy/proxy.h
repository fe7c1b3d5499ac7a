/*
 * proxy: the state of one worker ([proxy] workers, workers.h; with one
 * worker, the daemon's): the listener, the config generations, the list of
 * live connections and the signal handlers: SIGHUP reloads the config (in
 * every worker, worker 0 handles it), SIGTERM/SIGINT stop it (stop
 * accepting, drain in-flight downloads up to drain_timeout, exit 0).
 *
 * Ownership: a config generation (struct proxy_gen) owns one loaded config
 * and the runtime state that follows its settings: the block pool
 * (block_size), the balancer (the server list) and the spill settings.  It
 * is reference counted: the proxy holds one reference while it is current,
 * every connection one from accept to free.  The last reference frees it,
 * config included.  Process-wide limits (memory_limit, spill_total,
 * max_connections: counted in struct proxy_shared, for every worker), the
 * log level, the access log and the listeners follow the current one.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "base/list.h"
#include "base/log.h"
#include "proxy/balancer.h"
#include "proxy/config.h"
#include "proxy/pipe.h"
#include "proxy/keepalive.h"
#include "proxy/pool.h"
#include "proxy/stats.h"

struct conn;

/* Why a client was turned away at accept (sluice_connections_refused_total
 * {reason=...}). */
enum refuse_reason {
	REFUSE_MAX_CONNECTIONS = 0, /* [listen] max_connections reached: 503 */
	REFUSE_MEMORY,              /* no memory for the connection: 503 */
	REFUSE_FDS, /* EMFILE/ENFILE at accept: libuv closed it unanswered */
	REFUSE_N,
};

extern const char *const refuse_names[REFUSE_N];

/*
 * A connection taken from the listener only to be answered 503 and closed:
 * its handles are the proxy's, allocated at start, so that refusing needs
 * no memory (a refusal that needs memory cannot answer an out-of-memory
 * accept).  busy from accept to its last close callback.
 */
struct refuser {
	struct proxy *px;
	uv_tcp_t tcp;
	uv_timer_t timer; /* the whole refusal, linger included */
	uv_write_t wr;
	uv_shutdown_t sd;
	int nhandles; /* not yet closed */
	unsigned busy : 1, closing : 1, shut : 1, eof : 1;
};

#define PROXY_REFUSERS 8    /* refusals in flight; more wait in the backlog */
#define POOL_IDLE_MS   5000 /* a free block's pages go back after this */
#define POOL_TRIM_MS   1000 /* how often pool_trim looks */

/*
 * What the workers ([proxy] workers) share: the counters that the
 * process-wide limits compare (memory_limit, spill_total,
 * max_connections), updated with atomics by every worker, and the means
 * for worker 0, which runs the admin listener and reloads, to run a
 * function on another worker's thread (workers.h).  With one worker it is
 * the proxy's own (struct proxy's `own`), and no thread is started.
 */
struct proxy_shared {
	_Atomic uint64_t memory;      /* pool bytes in use, every worker */
	_Atomic uint64_t granted;     /* promised to woken waiters, every one */
	_Atomic uint64_t spool_bytes; /* in every spool file */
	_Atomic uint64_t pipe_bytes;  /* in every kernel pipe (splice) */
	_Atomic uint64_t npipes;      /* downloads holding a kernel pipe */
	_Atomic uint64_t nconns;      /* client connections open */
	size_t nworkers;
	struct proxy **workers; /* nworkers of them; NULL with one */
	/* where workers after the first bind their listener: the first's
	 * address as bound (port 0 resolved), set by worker 0 */
	struct sockaddr_storage listen_at;
	uv_mutex_t lock; /* the calls below, and each worker's `alive` */
	uv_cond_t done;  /* a call finished, or a worker exited */
};

struct proxy_gen {
	struct proxy *px;
	struct list_node link;  /* px->gens, newest first */
	struct config *cfg;     /* freed with the generation */
	uint64_t n;             /* 1: the config loaded at start */
	unsigned refs;          /* the proxy's (if current), conns' */
	size_t nconns;          /* connections that use it */
	struct pool pool;       /* blocks of buffer.block_size */
	struct balancer bal;    /* over cfg's server list */
	struct spill_cfg spill; /* what policy spill may use */
	struct keepalive ka;    /* parked upstream connections */
};

struct proxy {
	uv_loop_t *loop;
	const char *path;            /* the config file, read again on SIGHUP */
	struct proxy_gen *gen;       /* the current generation */
	const struct config *cfg;    /* gen->cfg */
	struct list gens;            /* every live generation */
	struct balancer_load *loads; /* per server, shared by all balancers */
	uv_tcp_t *listener;          /* clients; NULL once draining */
	uv_signal_t sigint, sigterm, sighup;
	uv_timer_t drain_timer;
	uv_timer_t mem_timer;  /* serves memory waiters after a release */
	uv_timer_t trim_timer; /* gives idle free blocks' pages back */
	struct list conns;     /* every live connection (struct conn) */
	size_t nconns;
	uint64_t next_id;
	int draining;
	struct stats stats;
	FILE *access;                     /* [log] access, or NULL for stderr */
	int mem_full;                     /* memory_limit reached: reads wait */
	struct conn *mem_head, *mem_tail; /* downloads waiting for memory,
	                                   * first come first */
	_Atomic int mem_wait;             /* it has waiters: wake it when
	                                   * another worker frees memory */
	struct admin *admin;              /* [admin] listener, or NULL */
	char *scratch;                    /* one head rewritten at a time */
	size_t scratch_size;              /* enough for every live generation */
	int reload_ok;        /* the last SIGHUP's result (1 before any) */
	uint64_t reload_time; /* its time (Unix seconds), 0: none yet */

	/* [listen] max_connections as it applies (proxy_max_connections) */
	size_t max_conns;
	/* downloads that may hold a kernel pipe at once, every worker's
	 * (splice: a quarter of max_connections; 0 with splice off) */
	size_t max_pipes;
	uint64_t refused[REFUSE_N]; /* clients turned away, by reason */
	struct refuser refusers[PROXY_REFUSERS];
	/* a listener left holding a connection (every refuser busy): libuv
	 * polls it again only once that one is taken (uv_accept) */
	uv_stream_t *pending;
	char refuse_rbuf[1024]; /* what a refused client sends, dropped */
	struct log_limit log_accept, log_refuse, log_spill;

	/* The workers: what they share (own when only one), and this one's
	 * place among them (workers.c) */
	struct proxy_shared *sh;
	struct proxy_shared own;
	size_t worker;     /* 0: the admin listener and SIGHUP are its */
	uint64_t accepted; /* clients this worker took */
	uv_async_t async;  /* a call or a wake-up from another worker */
	int alive;         /* async may be sent to (under sh->lock) */
	int call_pending;  /* under sh->lock: call_fn is to run here */
	void (*call_fn)(struct proxy *px, void *arg);
	void *call_arg;
	_Atomic int wake; /* another worker freed memory */

	/* Test seam, NULL outside tests/fuzz/conn (proxy_start leaves it
	 * NULL): how an upstream is connected, with uv_tcp_connect's
	 * contract.  The whole-connection harness sets it to hand the
	 * upstream handle one end of a socketpair instead of a TCP connect,
	 * so that it runs the real conn code with no port and no timer. */
	int (*upstream_connect)(uv_connect_t *req, uv_tcp_t *h,
	    const struct sockaddr *addr, uv_connect_cb cb);
};

/*
 * Loads nothing: takes cfg (which it frees from then on, in its
 * generation), binds the listeners, opens the access log and installs the
 * signal handlers.  path is the file SIGHUP reads again.  Returns 0, or -1
 * with err naming the config line of the failing key (cfg is then the
 * caller's again).
 */
int proxy_start(struct proxy *px, uv_loop_t *loop, struct config *cfg,
    const char *path, char *err, size_t errlen);
/* The same for worker `index` of sh->nworkers (workers.c): it shares sh;
 * worker 0 also runs the admin listener and handles SIGHUP, and must be
 * started first (the others bind the address its listener took). */
int proxy_start_worker(struct proxy *px, uv_loop_t *loop, struct config *cfg,
    const char *path, struct proxy_shared *sh, size_t index, char *err,
    size_t errlen);
/* After the loop: what the proxy holds. */
void proxy_release(struct proxy *px);
/* `sluice check`, start and reload: can the files the config names be
 * used?  With policy spill, a spool file can be created in spill_dir (an
 * O_TMPFILE opened and closed there); [log] access can be opened for
 * appending (or created: tried the same way in its directory, so check
 * leaves no file behind).  0, or a negative errno with err naming the
 * config line of the key. */
int proxy_check_files(const struct config *cfg, char *err, size_t errlen);
/* The client connections cfg allows at once: [listen] max_connections,
 * or when 0, (RLIMIT_NOFILE - 128) / 2, or / 3 with policy spill. */
size_t proxy_max_connections(const struct config *cfg);

/* accept.c: the listeners' callback; the connection a listener holds,
 * served or refused (also the one left waiting in px->pending, once a
 * refuser or a slot frees); max_connections applied from cfg (logged when
 * it changes); the soft RLIMIT_NOFILE raised to the hard one. */
void accept_on_connection(uv_stream_t *server, int status);
void accept_take(struct proxy *px, uv_stream_t *server);
void accept_apply_max(struct proxy *px, const struct config *cfg);
void accept_raise_nofile(void);
/* `sluice check`: can this host bind the listen address at all (a local
 * address)?  Binds port 0 so that a running instance does not fail it.
 * 0, or a negative errno with err naming the config line. */
int proxy_check_address(const struct config *cfg, char *err, size_t errlen);
/* Bytes buffered in memory by all downloads of every worker: the pools'
 * blocks in use and the bytes in kernel pipes ([buffer] splice). */
uint64_t proxy_memory(const struct proxy *px);
/* Bytes promised to woken memory waiters, every worker's (*_grant adds
 * or takes back bs bytes of px's). */
uint64_t proxy_memory_granted(const struct proxy *px);
void proxy_memory_grant(struct proxy *px, int64_t bs);
/* A download of px joined its queue of memory waiters: memory freed by
 * another worker wakes px from now on. */
void proxy_memory_wait(struct proxy *px);
/* Client connections open in every worker. */
uint64_t proxy_connections(const struct proxy *px);
/* Re-evaluates memory_limit after memory was freed (or the limit
 * changed): serves the downloads waiting for memory, in order. */
void proxy_memory_check(struct proxy *px);
/* Memory was freed (a block went back to its pool, a kernel pipe closed
 * with bytes in it): when downloads wait for memory, or memory_limit
 * counts as reached, they are looked at on the next turn of the loop, not
 * from inside whatever freed it. */
void proxy_memory_released(struct proxy *px);
/* Takes a reference on a generation (a connection starting on it). */
void proxy_gen_hold(struct proxy_gen *gen);
/* Called by conn when a connection is freed (after it unlinked itself and
 * gave back its blocks); drops its reference on gen. */
void proxy_conn_gone(struct proxy *px, struct proxy_gen *gen);
/* `sluice proxy -c FILE`: loads, starts, runs until drained.  Exit code. */
int proxy_main(const char *config_path);

#endif
