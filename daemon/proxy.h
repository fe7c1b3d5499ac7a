/*
 * proxy: the daemon's process-wide state: the listener, the block pool, the
 * balancer, the list of live connections and the signal handlers that stop
 * it (stop accepting, drain in-flight downloads up to drain_timeout, exit 0).
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "balancer.h"
#include "config.h"
#include "pipe.h"
#include "pool.h"
#include "stats.h"

struct conn;

struct proxy {
	uv_loop_t *loop;
	const struct config *cfg;
	struct pool pool;
	struct balancer bal;
	uv_tcp_t listener;
	uv_signal_t sigint, sigterm;
	uv_timer_t drain_timer;
	struct conn *conns; /* every live connection, doubly linked */
	size_t nconns;
	uint64_t next_id;
	int draining;
	struct stats stats;
	FILE *access;           /* [log] access, or NULL for stderr */
	uint64_t spool_bytes;   /* bytes in all spool files now */
	int mem_full;           /* memory_limit reached: reads wait */
	struct admin *admin;    /* [admin] listener, or NULL */
	struct spill_cfg spill; /* what policy spill may use */
	char *scratch;          /* one head rewritten at a time */
	size_t scratch_size;
};

/*
 * Binds the listener and installs the signal handlers.  Returns 0, or -1 with
 * err naming the config line of the failing key.
 */
int proxy_start(struct proxy *px, uv_loop_t *loop, const struct config *cfg,
    char *err, size_t errlen);
/* `sluice check`: can this host bind the listen address at all (a local
 * address)?  Binds port 0 so that a running instance does not fail it.
 * 0, or a negative errno with err naming the config line. */
int proxy_check_address(const struct config *cfg, char *err, size_t errlen);
/* Bytes buffered in memory by all downloads: the pool's blocks in use. */
uint64_t proxy_memory(const struct proxy *px);
/* Re-evaluates memory_limit after memory was freed; wakes paused reads. */
void proxy_memory_check(struct proxy *px);
/* Called by conn when a connection is freed (after it unlinked itself). */
void proxy_conn_gone(struct proxy *px, struct conn *c);
/* `sluice proxy -c FILE`: loads, starts, runs until drained.  Exit code. */
int proxy_main(const char *config_path);

#endif
