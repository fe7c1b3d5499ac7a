#!/usr/bin/env python3
"""[proxy] workers (issue 15, part 4): several event loops, each on its own
thread with its own SO_REUSEPORT listener, and the limits that hold for
all of them together.

  1  `sluice check` takes workers = auto and 2, refuses 0, -1 and junk
     with FILE:LINE and the key;
  2  workers = 2: READY=1 once, parallel downloads byte-exact (sluice
     fetch --verify, curl), both workers take connections
     (sluice_worker_connections_total{worker=...}), /metrics sums them,
     /connections lists the downloads of both;
  3  memory_limit is global: slow clients on both workers hold downloads;
     the bytes buffered stay within the limit plus a block per worker,
     while each worker alone would have taken more;
  4  max_connections is global: once that many are open, every further
     client gets 503, whichever worker takes it;
  5  SIGHUP changes a setting in every worker (max_header_size: 431 from
     both after the reload);
  6  SIGTERM drains downloads in flight on both workers, refuses new
     clients, exits 0.

Nothing asserts speed: bytes, counts and statuses, every wait bounded.

    python3 tests/integration/test_workers.py --sluice build/sluice
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KiB, MiB, HttpConn, HashSink, SLOW, check, config  # noqa: E402

env = harness.Env(__doc__)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def origin():
    return env.start_sluice_origin([], name="sluice-origin")


def proxy(o, workers=2, notify=None, **sections):
    sections.setdefault("proxy", {})["workers"] = str(workers)
    sections.setdefault("admin", {})["address"] = "127.0.0.1:0"
    px = env.start_proxy(config([o.addr], **sections), notify=notify,
                         env_extra=harness.malloc_check_env())
    px.aport = env.admin_port(px)
    return px


def metrics(px):
    r = harness.get(px.aport, "/metrics")
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    return r.body.decode("utf-8")


def sample(text, name):
    """An unlabelled sample (None when absent)."""
    m = re.search(r"(?m)^%s (\S+)$" % re.escape(name), text)
    return float(m.group(1)) if m else None


def per_worker(text):
    """{worker: connections accepted}, from
    sluice_worker_connections_total{worker="N"}."""
    return {int(w): int(float(v)) for w, v in re.findall(
        r'(?m)^sluice_worker_connections_total\{worker="(\d+)"\} (\S+)$', text)}


def connections(px):
    r = harness.get(px.aport, "/connections")
    check(r.status == 200, "GET /connections: status %s" % r.status)
    return json.loads(r.body.decode("utf-8"))


def fetch_many(urls, args=(), timeout=120.0):
    """`sluice fetch URL --verify -o /dev/null --json` for every URL at
    once; returns their JSON summaries (None for one that printed none)
    and exit statuses."""
    procs = [subprocess.Popen([env.sluice, "fetch", u, "--verify", "-o", "/dev/null",
                               "--json"] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, preexec_fn=harness._die_with_parent)
             for u in urls]
    out = []
    deadline = time.monotonic() + timeout * SLOW
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("sluice fetch did not finish within %.0f s" % timeout)
        lines = [ln for ln in so.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
        out.append((p.returncode, json.loads(lines[-1]) if lines else None,
                    se.decode("utf-8", "replace")[-300:]))
    return out


def check_fetches(results, n):
    for rc, js, err in results:
        check(rc == 0 and js is not None, "fetch: exit %s, %s %s" % (rc, js, err))
        check(js.get("outcome") == "complete" and js.get("received_bytes") == n
              and js.get("verified") is True, "fetch: %s" % js)


def stop_ok(proc):
    rc = proc.stop(grace=30.0)
    check(rc == 0, "%s exit status %s after SIGTERM: %s"
          % (proc.name, rc, " | ".join(proc.log_tail())))


# ---------------------------------------------------------------------------
# 1: sluice check
# ---------------------------------------------------------------------------

def check_values():
    """workers = auto and 2 load; 0, -1 and junk are refused naming the
    file, the line and the key."""
    good = []
    for v in ("auto", "2", "1"):
        path = env.write_config("[proxy]\nworkers = %s\n" % v, "w-%s.ini" % v)
        r = env.run_sluice(["check", "-c", path])
        check(r.returncode == 0, "workers = %s: exit %s: %s" % (v, r.returncode, r.stderr))
        good.append(v)
    for v, why in (("0", "out of range"), ("-1", "not a whole number or auto"),
                   ("junk", "not a whole number or auto"), ("257", "out of range"),
                   ("2x", "not a whole number or auto")):
        path = env.write_config("; workers\n[proxy]\nworkers = %s\n" % v, "w-bad.ini")
        r = env.run_sluice(["check", "-c", path])
        want = "%s:3: [proxy] workers: %s" % (path, why)
        check(r.returncode != 0, "workers = %s accepted" % v)
        check(want in r.stderr, "workers = %s: %r, expected %r" % (v, r.stderr.strip(), want))
    env.note("accepted %s; refused 0, -1, junk, 257, 2x with FILE:LINE: [proxy] workers"
             % ", ".join(good))


# ---------------------------------------------------------------------------
# 2: parallel downloads on two workers
# ---------------------------------------------------------------------------

N_PARALLEL = 24


def parallel():
    """READY=1 once both listen; 24 parallel 4 MiB downloads verified byte
    by byte, then 8 with curl; both workers took some; /metrics sums the
    workers' counters."""
    o = origin()
    ns = env.notify_socket()
    try:
        px = proxy(o, notify=ns)
        check(ns.wait_for("READY=1", timeout=10 * SLOW), "no READY=1: %s" % ns.sequence())
        ready = ns.count("READY=1")
    finally:
        ns.close()
    res = fetch_many([px.url + "/bytes/4M"] * N_PARALLEL)
    check_fetches(res, 4 * MiB)
    for i in range(8):
        r = env.curl([px.url + "/bytes/1M"], write_out=["http_code"])
        check(r.rc == 0 and r.write_out.get("http_code") == ["200"]
              and r.sink.length == MiB
              and r.sink.sha256 == harness.sluice_sha256(MiB),
              "curl: rc %s, %s, %d bytes" % (r.rc, r.write_out, r.sink.length))
    total = N_PARALLEL + 8
    # a download is counted once its last write completed, which may come
    # a moment after the client has its last byte
    harness.wait_until(lambda: sample(metrics(px), 'sluice_downloads_total{outcome="complete"}')
                       == total, 10 * SLOW, 0.05)
    text = metrics(px)
    w = per_worker(text)
    check(sorted(w) == [0, 1], "per-worker samples: %s" % w)
    check(sum(w.values()) == total, "workers accepted %s, %d connections made" % (w, total))
    check(all(v > 0 for v in w.values()), "a worker took no connection: %s" % w)
    done = sample(text, 'sluice_downloads_total{outcome="complete"}')
    check(done == total, "downloads complete %s, expected %d (the sum of both workers)"
          % (done, total))
    check(sample(text, "sluice_client_bytes_total") >= total * MiB,
          "client bytes %s" % sample(text, "sluice_client_bytes_total"))
    env.note("READY=1 x%d; per-worker connections %s; %d downloads complete in /metrics"
             % (ready, w, done))
    check(ready == 1, "READY=1 sent %d times" % ready)
    stop_ok(px)


def connections_listed():
    """/connections lists the held downloads of both workers (their ids
    are unique)."""
    o = origin()
    px = proxy(o)
    dls = []
    try:
        while len(dls) < 16:
            dls.append(harness.HeldDownload(px.port, "/bytes/64M", hold_at=64 * KiB))
            check(dls[-1].wait_held(), dls[-1].describe())
            w = per_worker(metrics(px))
            if len(dls) >= 4 and all(w.get(i, 0) > 0 for i in (0, 1)):
                break
        check(all(w.get(i, 0) > 0 for i in (0, 1)), "one worker took all %d: %s"
              % (len(dls), w))
        cs = [c for c in connections(px) if c.get("path") == "/bytes/64M"]
        ids = [c["id"] for c in cs]
        check(len(cs) == len(dls), "/connections lists %d downloads, %d open: %s"
              % (len(cs), len(dls), ids))
        check(len(set(ids)) == len(ids), "ids not unique: %s" % ids)
        check(sample(metrics(px), "sluice_connections") == len(dls), "connections gauge")
        env.note("%d held downloads, workers %s, ids %s" % (len(dls), w, sorted(ids)))
    finally:
        for d in dls:
            d.close()
    stop_ok(px)


# ---------------------------------------------------------------------------
# 3: memory_limit across workers
# ---------------------------------------------------------------------------

LIMIT = 512 * KiB
BLOCK = 16 * KiB
N_SLOW = 12


def memory_global():
    """memory_limit 512k, high_watermark 128k, 16k blocks: 12 clients that
    read nothing past their socket buffers, spread over both workers.
    Each such download buffers 64k in memory (the rest of its 128k is in
    the socket buffers), so eight fill the limit; had each worker its own
    limit, the two would buffer more than the limit plus two blocks
    together, whatever the split.  The bytes buffered, read from /metrics while
    they hold, never pass the limit plus a block per worker.  (They reach
    3/4 of it at least, and memory_limit_hits_total counts the limit
    reached; the FIFO queue may leave a few blocks unused, as with one
    worker.)"""
    o = origin()
    px = proxy(o, buffer={"policy": "pause", "high_watermark": "128k",
                          "low_watermark": "32k", "block_size": "16k",
                          "memory_limit": "512k"},
               client={"sndbuf": "16k"})
    dls, peak, samples = [], 0, []
    try:
        for _ in range(N_SLOW):
            dls.append(harness.HeldDownload(px.port, "/bytes/64M", hold_at=16 * KiB,
                                            rcvbuf=16 * KiB))
        check(harness.wait_until(
            lambda: sample(metrics(px), "sluice_connections") == N_SLOW, 10 * SLOW, 0.05),
            "the %d clients were not all taken" % N_SLOW)
        w = per_worker(metrics(px))
        check(all(w.get(i, 0) >= 1 for i in (0, 1)),
              "one worker took all %d: %s (the case needs both)" % (N_SLOW, w))
        full = harness.wait_until(
            lambda: (sample(metrics(px), "sluice_memory_buffered_bytes") or 0)
            >= LIMIT * 3 // 4, 15 * SLOW, 0.1)
        for _ in range(30):
            text = metrics(px)
            m = sample(text, "sluice_memory_buffered_bytes")
            samples.append(int(m))
            peak = max(peak, m)
            time.sleep(0.05)
        hits = sample(text, "sluice_memory_limit_hits_total")
        per_conn = [c.get("memory_bytes", 0) for c in connections(px)]
        env.note("%d slow downloads on workers %s: buffered %d..%d bytes (limit %d + %d "
                 "blocks of %d); limit hits %s; per download %s"
                 % (N_SLOW, w, min(samples), peak, LIMIT, len(w), BLOCK, hits,
                    sorted(per_conn)))
        check(full, "memory never reached the limit (%s): not exercised" % samples[-1:])
        check(peak <= LIMIT + len(w) * BLOCK,
              "buffered %d bytes, over memory_limit %d + a block per worker" % (peak, LIMIT))
        check(sum(per_conn) <= LIMIT + len(w) * BLOCK,
              "downloads hold %d bytes together" % sum(per_conn))
        check(hits is not None and hits >= 1, "memory_limit_hits_total %s" % hits)
    finally:
        for d in dls:
            d.close()
    gone = harness.wait_until(
        lambda: (sample(metrics(px), "sluice_memory_buffered_bytes") or 0) == 0, 15 * SLOW, 0.1)
    check(gone, "memory not returned after the clients left")
    # memory came back for both workers: new downloads are served whole
    res = fetch_many([px.url + "/bytes/2M"] * 6)
    check_fetches(res, 2 * MiB)
    stop_ok(px)


# ---------------------------------------------------------------------------
# 4: max_connections across workers
# ---------------------------------------------------------------------------

MAXC = 6


def max_global():
    """max_connections 6: six clients open (idle, no request yet) are
    spread over the workers; then every one of 10 more clients gets 503,
    whichever worker takes it, and the six still get their answers."""
    o = origin()
    px = proxy(o, listen={"max_connections": str(MAXC)})
    held = []
    try:
        for i in range(MAXC):
            held.append(HttpConn(px.port, timeout=10 * SLOW))
            n = i + 1
            check(harness.wait_until(
                lambda: sample(metrics(px), "sluice_connections") == n, 10 * SLOW, 0.05),
                "connection %d not counted" % n)
        w = per_worker(metrics(px))
        statuses = []
        for _ in range(10):
            with HttpConn(px.port, timeout=10 * SLOW) as c:
                c.request("GET", "/bytes/1k")
                r = c.read_response(deadline=10 * SLOW)
                statuses.append(r.status)
        text = metrics(px)
        refused = sample(text, 'sluice_connections_refused_total{reason="max_connections"}')
        env.note("6 open on workers %s; 10 more: statuses %s; refused %s"
                 % (w, statuses, refused))
        check(statuses == [503] * 10, "past max_connections: %s" % statuses)
        check(refused == 10, "refused_total %s" % refused)
        check(sample(text, "sluice_connections") == MAXC, "connections gauge")
        for c in held:
            c.request("GET", "/bytes/1k")
            r = c.read_response(deadline=10 * SLOW)
            check(r.status == 200 and len(r.body) == 1024, "held client: %s" % r.status)
    finally:
        for c in held:
            c.close()
    stop_ok(px)


# ---------------------------------------------------------------------------
# 5: SIGHUP reaches every worker
# ---------------------------------------------------------------------------

def big_head_status(px):
    with HttpConn(px.port, timeout=10 * SLOW) as c:
        c.request("GET", "/bytes/1k", headers=[("X-Pad", "p" * 3000)])
        return c.read_response(deadline=10 * SLOW).status


def reload_all():
    """A request with a 3 KiB head is served; after SIGHUP with
    max_header_size 2k, 16 such requests all get 431, and both workers
    took some of them."""
    o = origin()
    px = proxy(o)
    before = [big_head_status(px) for _ in range(4)]
    check(before == [200] * 4, "before the reload: %s" % before)
    with open(px.config_path) as f:
        text = f.read()
    with open(px.config_path, "w") as f:
        f.write(text.replace("max_header_size = 32k", "max_header_size = 2k"))
    w0 = per_worker(metrics(px))
    px.popen.send_signal(signal.SIGHUP)
    harness.wait_log(px, rb"reload: worker 1: \S+ taken as config generation 2")
    harness.wait_log(px, rb"reload: worker 0: \S+ taken as config generation 2")
    after = [big_head_status(px) for _ in range(16)]
    w1 = per_worker(metrics(px))
    took = {i: w1.get(i, 0) - w0.get(i, 0) for i in (0, 1)}
    text = metrics(px)
    env.note("before %s; after the reload %s; taken per worker %s; generation %s"
             % (before, after, took, sample(text, "sluice_config_generation")))
    check(after == [431] * 16, "after the reload: %s" % after)
    check(all(v > 0 for v in took.values()), "one worker took all 16: %s" % took)
    check(sample(text, 'sluice_config_reloads_total{result="ok"}') == 1, "reloads_total")
    stop_ok(px)


# ---------------------------------------------------------------------------
# 6: SIGTERM drains every worker
# ---------------------------------------------------------------------------

def drain_all():
    """Held downloads on both workers; SIGTERM: new clients are refused,
    each held download completes byte-exact once released, exit 0."""
    o = origin()
    px = proxy(o)
    dls = []
    try:
        while len(dls) < 16:
            dls.append(harness.HeldDownload(px.port, "/bytes/4M", HashSink()))
            check(dls[-1].wait_held(), dls[-1].describe())
            w = per_worker(metrics(px))
            if len(dls) >= 2 and all(w.get(i, 0) > 0 for i in (0, 1)):
                break
        check(all(w.get(i, 0) > 0 for i in (0, 1)), "one worker took all: %s" % w)
        px.popen.send_signal(signal.SIGTERM)
        harness.wait_log(px, rb"signal 15: stop accepting", count=2)
        check(harness.wait_until(lambda: harness.connect_refused(px.port), 10 * SLOW, 0.05),
              "a new client was not refused while draining")
        for d in dls:
            r = d.finish()
            check(r.status == 200 and d.sink.length == 4 * MiB
                  and d.sink.sha256 == harness.sluice_sha256(4 * MiB),
                  "drained download: status %s, %d bytes, pattern %s"
                  % (r.status, d.sink.length,
                     d.sink.sha256 == harness.sluice_sha256(d.sink.length)))
        rc = px.popen.wait(30 * SLOW)
        check(rc == 0, "exit status %s after the drain: %s" % (rc, " | ".join(px.log_tail())))
        env.note("%d downloads on workers %s drained whole; exit %s" % (len(dls), w, rc))
    finally:
        for d in dls:
            d.close()


env.case("sluice check: workers = auto, 2 and 1 load; 0, -1, junk refused with FILE:LINE",
         check_values)
env.case("workers = 2: READY=1 once, 24 parallel downloads verified, both workers serve, "
         "/metrics sums", parallel)
env.case("workers = 2: /connections lists the downloads of both workers", connections_listed)
env.case("workers = 2: memory_limit holds for both together", memory_global)
env.case("workers = 2: max_connections holds for both together (503 past it)", max_global)
env.case("workers = 2: SIGHUP changes max_header_size in both", reload_all)
env.case("workers = 2: SIGTERM drains downloads on both, refuses new clients, exit 0",
         drain_all)
env.finish()
