/*
 * workers: [proxy] workers = N | auto.  Each worker is a struct proxy with
 * its own libuv loop on its own thread (worker 0 on the main thread), its
 * own SO_REUSEPORT listener, connections, memory queue, block pools and
 * upstream keep-alive; what the process-wide limits count is shared
 * (struct proxy_shared, atomics).  Worker 0 also runs the admin listener
 * and handles SIGHUP; every worker handles SIGTERM/SIGINT itself (libuv
 * delivers a signal to every loop that watches it), so each drains its
 * own connections, and the process exits once all have.
 *
 * Worker 0 reaches the others only through workers_call: the function
 * runs on the other worker's thread, in its loop, while worker 0 waits.
 * So a worker's state is only ever touched by its own thread, and what
 * worker 0 reads of it (the /metrics sums, the /connections list, a
 * reload's outcome) is handed over under sh->lock.  Only worker 0 calls,
 * so no two calls wait on each other.
 *
 * With one worker (the default) there is no thread and no call: the
 * proxy runs as it always has, on the default loop.
 */
#ifndef SLUICE_WORKERS_H
#define SLUICE_WORKERS_H

#include <stddef.h>

#include <uv.h>

#include "proxy/config.h"

struct proxy;

#define WORKERS_MAX 256 /* [proxy] workers' range */

/* cfg's [proxy] workers, with auto (0) resolved to the CPUs this process
 * may run on. */
size_t workers_count(const struct config *cfg);
/* Runs fn(to, arg) on worker `to`'s thread and waits for it to return (at
 * once when to is from).  0, or -ESRCH when that worker has exited (fn
 * did not run). */
int workers_call(struct proxy *from, struct proxy *to,
    void (*fn)(struct proxy *px, void *arg), void *arg);
/* Memory came back in `from`: the other workers with downloads waiting
 * for memory serve them (proxy_memory_check) on their next loop turn. */
void workers_wake(struct proxy *from);
/* The async handle's callback (proxy_start_worker installs it). */
void workers_on_async(uv_async_t *a);
/* Worker px's loop has ended or is about to: calls to it return -ESRCH
 * from now on; closes its async handle. */
void workers_exit(struct proxy *px);
/* `sluice proxy` with more than one worker: starts cfg's workers (cfg is
 * worker 0's, copies go to the others), runs them until all have drained,
 * releases them.  Exit code. */
int workers_main(struct config *cfg, const char *path, size_t n);

#endif
