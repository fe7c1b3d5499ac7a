/*
 * stats: the proxy's process-wide counters, kept by conn.c and proxy.c and
 * served by admin.c as Prometheus text (GET /metrics).  Plain data, no
 * locking: one loop thread.  Gauges (open connections, bytes in memory and
 * in spool files) are read from the proxy when served, not kept here.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdint.h>

#include "proxy/fault.h"

/* How a download ended: the access log's `outcome`, a metrics label. */
enum outcome {
	OUTCOME_COMPLETE = 0,       /* the whole response went to the client */
	OUTCOME_CLIENT_GONE,        /* the client closed or failed first */
	OUTCOME_CLIENT_ZWP_TIMEOUT, /* we gave up on its zero window */
	OUTCOME_UPSTREAM_RESET,     /* the upstream refused, reset or closed */
	OUTCOME_UPSTREAM_TIMEOUT,   /* connect or read timeout */
	OUTCOME_TRUNCATED,          /* ended short otherwise (resume failed,
	                             * a bad body) */
	OUTCOME_SPOOL_ERROR,        /* the spool could not be read back */
	OUTCOME_PROXY_ERROR,        /* the proxy could not go on (out of
	                             * memory) */
	OUTCOME_N,
};

extern const char *const outcome_names[OUTCOME_N];

struct stats {
	uint64_t downloads[OUTCOME_N];
	uint64_t bytes_in;        /* response body bytes from upstreams */
	uint64_t bytes_out;       /* bytes written to clients */
	uint64_t upstream_pauses; /* times an upstream read was stopped */
	uint64_t paused_ms;       /* total time upstream reads were stopped */
	uint64_t spills;          /* downloads that started spooling */
	uint64_t spilled_bytes;   /* bytes written to spool files */
	uint64_t spill_fallbacks; /* spill fell back to pause (limit, ENOSPC) */
	uint64_t resumes;         /* upstream reconnects with Range */
	uint64_t spliced_bytes;   /* body bytes spliced to clients */
	uint64_t splice_no_pipe;  /* bodies copied: max_pipes were in use */
	uint64_t upstream_reused; /* requests sent on a parked connection */
	uint64_t upstream_resent; /* ... sent again: it closed unanswered */
	uint64_t upstream_idle_closed; /* kept ones closed while idle */
	uint64_t client_zwp_timeouts;
	uint64_t memory_limit_hits; /* times memory_limit stopped reads */
	uint64_t reloads_ok;        /* SIGHUP: a new config generation */
	uint64_t reloads_failed;    /* SIGHUP: refused, the old one stays */
	uint64_t faults_applied[FAULT_NACTIONS]; /* by action (fault.h) */
};

#endif
