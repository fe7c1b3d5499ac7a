#!/usr/bin/env python3
"""Memory test: with [buffer] policy = pause, a slow client does not make
the proxy buffer the body. Slow readers (SO_RCVBUF 64 KiB, reading 64 KiB
every 10 ms for ~3 s, then fast) get a 64 MiB body byte-exact while the
proxy's resident memory stays under high_watermark plus a fixed overhead.
Nothing is timed: the assertion is on /proc/PID/status figures only.

    python3 tests/integration/test_memory.py --sluice build/sluice --origin tests/origin.py
"""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, KiB, HttpConn, PatternSink, check, config  # noqa: E402

HIGH = 1 * MiB                 # [buffer] high_watermark
LOW = 256 * KiB                # [buffer] low_watermark
FIXED = 4 * MiB                # allowance for the proxy's own growth
PER_CONN = 1 * MiB             # per extra connection: read buffers, parsers
BODY = 64 * MiB
SLOW_SECONDS = 3.0             # slow phase length (bounded by rounds too)
SLOW_ROUNDS = 400              # at most this many slow recv()s per reader

env = harness.Env(__doc__)
S = {}


def setup():
    S["origin"] = env.start_origin(id="m")


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak(pid):
    """Reset VmHWM (peak RSS) of pid: `echo 5 > /proc/PID/clear_refs`.
    Returns False where the kernel does not allow it."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def slow_readers(count):
    check("origin" in S, "no origin: the setup case failed")
    px = env.start_proxy(config([S["origin"].addr],
                                buffer={"policy": "pause", "high_watermark": "1M",
                                        "low_watermark": "256k"}),
                         name="proxy-mem%d" % count)
    time.sleep(0.2)                      # let start-up settle before the baseline
    baseline = px.rss_kib()
    hwm_ok = reset_peak(px.pid)

    conns = []
    sinks = []
    errors = []
    try:
        for _ in range(count):
            c = HttpConn(px.port, rcvbuf=64 * KiB, timeout=20)
            conns.append(c)
            c.request("GET", "/bytes/64M")
        slow_until = time.monotonic() + SLOW_SECONDS

        def reader(c, sink):
            rounds = [0]

            def pace():
                # Slow phase: 64 KiB per recv (max_recv), 10 ms apart.
                rounds[0] += 1
                if time.monotonic() < slow_until and rounds[0] <= SLOW_ROUNDS:
                    time.sleep(0.010)
            try:
                c.max_recv = 64 * KiB
                c.on_recv = pace
                r = c.read_response(sink=sink, deadline=60)
                if r.status != 200:
                    errors.append("status %s" % r.status)
            except Exception as e:       # reported by the main thread
                errors.append("%s: %s" % (type(e).__name__, e))

        threads = []
        for c in conns:
            sink = PatternSink()
            sinks.append(sink)
            t = threading.Thread(target=reader, args=(c, sink), daemon=True)
            threads.append(t)
            t.start()

        # Sample VmRSS while the readers run (bounded: 60 s, 20000 samples).
        peak = baseline
        samples = 0
        deadline = time.monotonic() + 60
        slow_bytes = None
        while any(t.is_alive() for t in threads) and samples < 20000:
            check(time.monotonic() < deadline, "readers not done within 60 s")
            check(px.alive(), "proxy exited during the test")
            peak = max(peak, px.rss_kib())
            samples += 1
            if slow_bytes is None and time.monotonic() >= slow_until:
                slow_bytes = sum(s.length for s in sinks)
            time.sleep(0.005)
        for t in threads:
            t.join(5)
        hwm = status_kib(px.pid, "VmHWM") if hwm_ok else None
    finally:
        for c in conns:
            c.close()

    check(not errors, "reader failed: %s" % "; ".join(errors))
    for i, sink in enumerate(sinks):
        sink.check(BODY, "reader %d of %d" % (i + 1, count))

    top = max(peak, hwm or 0)
    delta = top - baseline
    bound = (HIGH + FIXED) // KiB if count == 1 else (count * (HIGH + PER_CONN) + FIXED) // KiB
    env.note("%d slow reader(s): baseline VmRSS %d KiB, sampled peak %d KiB (%d samples), "
             "VmHWM %s KiB, delta %d KiB, bound %d KiB; %s MiB read in the slow phase"
             % (count, baseline, peak, samples, hwm if hwm is not None else "n/a",
                delta, bound, "%.1f" % (slow_bytes / MiB) if slow_bytes is not None else "?"))
    check(delta <= bound, "proxy grew by %d KiB (peak %d - baseline %d) > bound %d KiB"
          % (delta, top, baseline, bound))


def prom(port):
    """/metrics as {name: value} (unlabelled samples)."""
    r = harness.get(port, "/metrics", timeout=10)
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("sluice_") and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out


def burst_gives_back():
    """Eight clients that read nothing make the proxy buffer 8 x 4 MiB;
    they go (RST).  The pool keeps the freed blocks' pages only while
    they are recently used: within 15 s every page is given back
    (sluice_pool_mapped_bytes and pool_free_resident_bytes 0) and VmRSS
    falls back to within 4 MiB of its idle figure.  The proxy then serves
    a download byte-exact from the same pool."""
    check("origin" in S, "no origin: the setup case failed")
    cfg = config([S["origin"].addr],
                 buffer={"policy": "pause", "high_watermark": "4M", "low_watermark": "1M"},
                 admin={"address": "127.0.0.1:0"})
    px = env.start_proxy(cfg, name="proxy-burst")
    aport = env.admin_port(px)
    time.sleep(0.2)
    baseline = px.rss_kib()
    conns = []
    try:
        for _ in range(8):
            c = HttpConn(px.port, rcvbuf=16 * KiB, timeout=20)
            c.request("GET", "/bytes/64M")
            conns.append(c)
        held = harness.wait_until(
            lambda: prom(aport).get("sluice_memory_buffered_bytes", 0) >= 28 * MiB, 30, 0.2)
        check(held, "the proxy did not buffer 28 MiB: %s" % prom(aport))
        m = prom(aport)
        peak = px.rss_kib()
    finally:
        for c in conns:
            c.close()
    after = prom(aport)
    gone = harness.wait_until(
        lambda: (lambda m2: m2.get("sluice_pool_mapped_bytes", -1) == 0 and
                 m2.get("sluice_pool_free_resident_bytes", -1) == 0)(prom(aport)), 15, 0.5)
    rss_end = [px.rss_kib()]
    back = harness.wait_until(lambda: rss_end.append(px.rss_kib()) or
                              rss_end[-1] - baseline <= 4 * 1024, 5, 0.5)
    env.note("idle VmRSS %d KiB; holding %.1f MiB buffered: VmRSS %d KiB, pool mapped %.1f MiB; "
             "right after the close: free resident %.1f MiB; at the end: VmRSS %d KiB, %s"
             % (baseline, m["sluice_memory_buffered_bytes"] / MiB, peak,
                m["sluice_pool_mapped_bytes"] / MiB,
                after.get("sluice_pool_free_resident_bytes", 0) / MiB, rss_end[-1],
                {k: v for k, v in prom(aport).items() if "pool" in k}))
    check(peak - baseline >= 24 * 1024, "VmRSS rose only %d KiB for 28 MiB held"
          % (peak - baseline))
    check(gone, "the pool still maps or holds pages 15 s after the burst: %s" % prom(aport))
    # (Not under ASan, whose shadow of the freed range and quarantined
    # mallocs stay resident.)
    if os.environ.get("SLUICE_SANITIZE", "none") in ("", "none"):
        check(back, "VmRSS %d KiB, %d KiB over idle after the burst"
              % (rss_end[-1], rss_end[-1] - baseline))
    with HttpConn(px.port, timeout=20) as c:
        c.request("GET", "/bytes/8M")
        sink = PatternSink()
        r = c.read_response(sink=sink, deadline=30)
    check(r.status == 200, "status %s" % r.status)
    sink.check(8 * MiB, "the download after the burst")


env.case("setup: origin starts", setup, keep_processes=True)
env.case("one slow reader: 64 MiB byte-exact, RSS within high_watermark + 4 MiB",
         slow_readers, 1)
env.case("four slow readers at once: byte-exact, RSS within 4*(high+1 MiB) + 4 MiB",
         slow_readers, 4)
env.case("a burst's memory is given back: pool unmapped, VmRSS within 4 MiB of idle",
         burst_gives_back)
env.finish()
