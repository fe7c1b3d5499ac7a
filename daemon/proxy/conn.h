/*
 * conn: one client connection and the downloads it carries, one at a time:
 * the client socket, the upstream socket of the current request, their
 * timers, the two pipes (request body toward the upstream, response toward
 * the client) and the two llhttp parsers.
 *
 * Ownership (docs/architecture.md): the conn owns both sockets, both timers and
 * both pipes; it is freed in the close callback of its last handle, and nothing
 * else frees it.  Every way a connection ends goes through conn_close(),
 * which logs once with the reason.  It holds a reference on the config
 * generation it was accepted under (proxy.h) from accept to free: its
 * buffers, timeouts and server list are that generation's, whatever a
 * reload does meanwhile.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdint.h>
#include <stdio.h>

#include <llhttp.h>
#include <uv.h>

#include "base/http.h"
#include "proxy/pipe.h"

struct conn;
struct proxy;

/* Accepts one pending connection from server; it takes the current
 * config generation (px->gen) for its whole life.  0 (a connection that
 * fails after its accept is closed and logged here), or -ENOMEM with the
 * connection not taken: the caller must take it from server, or libuv
 * stops polling the listener (proxy.c refuses it). */
int conn_accept(struct proxy *px, uv_stream_t *server);
/* SIGTERM: an idle keep-alive connection closes now; one in a download
 * finishes it, then closes. */
void conn_drain(struct conn *c);
/* A reload made the connection's generation old: the download in progress
 * finishes on it, then the connection closes; an idle keep-alive one
 * closes now, one that never had a request keeps its first.  1 when the
 * connection stays open for that, 0 when it is closing. */
int conn_retire(struct conn *c);
/* Ends the connection at once (drain deadline). */
void conn_abort(struct conn *c, const char *reason);

/*
 * Writes one JSON object describing a live connection for GET /connections:
 * id, client, upstream, state, buffered bytes (memory, spool), whether the
 * upstream read is paused, and TCP_INFO of both sockets.  Exactly one
 * object, nothing before or after it: admin.c joins them with commas.
 * show_query 0: the path's query string is written as "?<redacted>".
 */
void conn_describe(const struct conn *c, FILE *out, int show_query);
/* Memory came back (or memory_limit changed): the downloads waiting for
 * memory read again, first come first served, as far as it goes. */
void conn_memory_wake(struct proxy *px);

/* The proxy's walk over its connections (newest first; NULL at the
 * end).  struct conn stays private to conn*.c (conn_int.h). */
struct conn *conn_first(const struct proxy *px);
struct conn *conn_next(const struct conn *c);

#endif
