#!/usr/bin/env python3
"""The limits an operator expects of the proxy (issue 13: #9, #10, #12 and
section 3): [listen] max_connections (503 past it, the open ones go on, a
freed slot is taken again), an accept that fails for memory or descriptors
does not stop the listener, spill_dir and [log] access are checked at start,
a spool that fails at run time says so at warn, every access line is valid
JSON written with one write(2), and GET /connections redacts query strings
and takes ?limit=N.

    python3 tests/integration/test_limits.py --sluice build/sluice --origin tests/origin.py
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import prom  # noqa: E402
from harness import KiB, MiB, PatternSink, check, config  # noqa: E402

env = harness.Env(__doc__)

origin = None


def the_origin():
    global origin
    if origin is None or not origin.alive():
        origin = env.start_origin(id="o")
    return origin


def admin_config(**sections):
    sections.setdefault("admin", {})["address"] = "127.0.0.1:0"
    return config([the_origin().addr], **sections)


def metrics(aport):
    r = harness.get(aport, "/metrics")
    check(r.status == 200, "GET /metrics: %s" % r.status)
    return prom.parse_prometheus(r.body.decode())


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())))


def wait_connections(aport, n):
    """Wait (bounded) until sluice_connections is n."""
    got = harness.wait_until(
        lambda: metric(metrics(aport), "sluice_connections") == n, 10.0 * harness.SLOW)
    check(got, "sluice_connections did not reach %d: %s"
          % (n, metric(metrics(aport), "sluice_connections")))


def request_ok(port, target="/bytes/4k", conn=None):
    """One GET on conn (or a new connection): 200 and the pattern's bytes."""
    own = conn is None
    c = conn or harness.HttpConn(port)
    try:
        c.request("GET", target)
        sink = PatternSink()
        r = c.read_response(sink=sink, deadline=10.0 * harness.SLOW)
        check(r.status == 200, "GET %s: %s %s" % (target, r.status, r.raw_head[:200]))
        sink.check(4 * KiB)
    finally:
        if own:
            c.close()


# ---------------------------------------------------------------------------
# max_connections

def max_connections():
    n = 4
    px = env.start_proxy(admin_config(listen={"max_connections": str(n)}))
    aport = env.admin_port(px)
    m = metrics(aport)
    check(metric(m, "sluice_connections_max") == n,
          "sluice_connections_max %s, expected %d" % (metric(m, "sluice_connections_max"), n))
    held = [harness.HttpConn(px.port) for _ in range(n)]
    try:
        for c in held:
            request_ok(px.port, conn=c)          # keep-alive: each stays open
        wait_connections(aport, n)
        harness.read_refusal(px.port)
        m = metrics(aport)
        got = metric(m, "sluice_connections_refused_total", reason="max_connections")
        check(got == 1, "refused{max_connections} %s, expected 1" % got)
        for c in held:                            # the ones open are unaffected
            request_ok(px.port, conn=c)
        held.pop().close()
        wait_connections(aport, n - 1)
        held.append(harness.HttpConn(px.port))
        request_ok(px.port, conn=held[-1])        # a freed slot is taken again
    finally:
        for c in held:
            c.close()
    harness.wait_log(px, rb"warn: refusing a client with 503: max_connections reached")
    env.stop_clean(px)


def max_connections_default():
    """0 (the default) is derived from RLIMIT_NOFILE, raised to its hard
    limit at start: (nofile - 128 - keepalive * servers) / per: per is 2
    (client and upstream sockets), one more with policy spill (a spool
    file), one more with splice (four, a kernel pipe and two duplicated
    sockets, for at most a quarter of the connections:
    sluice_splice_pipes_max); kept upstream sockets hold a descriptor
    each, the default keepalive is 32, one server here."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 1 << 30:
        raise harness.Skip("RLIMIT_NOFILE has no finite hard limit here")
    for policy, splice, per in (("pause", "off", 2), ("spill", "off", 3),
                                ("pause", "auto", 3), ("spill", "auto", 4)):
        spill = env.path("spill-default-%s-%s" % (policy, splice))
        os.mkdir(spill)
        px = env.start_proxy(admin_config(buffer={"policy": policy, "spill_dir": spill,
                                                  "splice": splice}))
        got = metric(metrics(env.admin_port(px)), "sluice_connections_max")
        want = max(1, (hard - 128 - 32) // per)
        check(got == want, "policy %s, splice %s: sluice_connections_max %s, expected %d"
              % (policy, splice, got, want))
        pipes = metric(metrics(env.admin_port(px)), "sluice_splice_pipes_max")
        want = want // 4 if splice == "auto" else 0
        check(pipes == want, "policy %s, splice %s: sluice_splice_pipes_max %s, expected %d"
              % (policy, splice, pipes, want))
        env.stop_clean(px)


# ---------------------------------------------------------------------------
# #9: a failed accept does not stop the listener (out of memory:
# test_faults.py, with fiu)

def open_fds(pid):
    return sorted(int(n) for n in os.listdir("/proc/%d/fd" % pid))


def accept_emfile():
    """RLIMIT_NOFILE lowered under the proxy to the descriptors it holds:
    a new client cannot be accepted (EMFILE).  It is closed, not left
    hanging (libuv takes it with its spare descriptor and closes it, and
    does not report it), and once descriptors are free again the listener
    serves."""
    px = env.start_proxy(admin_config(listen={"max_connections": "1000"}))
    aport = env.admin_port(px)
    request_ok(px.port)
    metrics(aport)
    # The connections just served close on their own time (the admin's
    # after its answer): count once the descriptors have settled, or a
    # descriptor freed after the count leaves a hole no filler fills.
    seen = [None]

    def settled():
        now = open_fds(px.pid)
        same = now == seen[0]
        seen[0] = now
        return same
    harness.wait_until(settled, 5.0 * harness.SLOW, 0.2)
    fillers = []
    limits = resource.prlimit(px.pid, resource.RLIMIT_NOFILE)
    try:
        fds = open_fds(px.pid)
        top = fds[-1] + 1
        resource.prlimit(px.pid, resource.RLIMIT_NOFILE, (top, limits[1]))
        # Idle connections fill the holes below the limit, so that the
        # next accept has no descriptor left.
        for _ in range(top - len(fds)):
            fillers.append(harness.HttpConn(px.port))
        check(harness.wait_until(lambda: len(open_fds(px.pid)) >= top, 10.0 * harness.SLOW),
              "the proxy holds %d descriptors, expected %d" % (len(open_fds(px.pid)), top))
        with harness.HttpConn(px.port) as c:
            c.request("GET", "/bytes/4k")
            try:
                r = c.read_response(deadline=10.0 * harness.SLOW)
                # A descriptor the proxy was still closing (the last
                # request's upstream) may free up after the count: then
                # the client is accepted and its upstream socket fails,
                # which is a 503, also an answer, not a hang.
                check(r.status == 503,
                      "a client past RLIMIT_NOFILE got %s" % r.status)
                env.note("past RLIMIT_NOFILE: 503 (%s)" % r.get("connection"))
            except (harness.ProtocolError, ConnectionError) as e:
                env.note("past RLIMIT_NOFILE: %s" % e)
    finally:
        resource.prlimit(px.pid, resource.RLIMIT_NOFILE, limits)
        for c in fillers:
            c.close()
    request_ok(px.port)
    env.stop_clean(px)


# ---------------------------------------------------------------------------
# #10: spill_dir and [log] access

def start_fails(cfg_text, section, key, must_say):
    proc, path = env.spawn_proxy(cfg_text, name="bad-start")
    try:
        rc = proc.popen.wait(10 * harness.SLOW)
    except subprocess.TimeoutExpired:
        raise AssertionError("the proxy started with a bad %s" % key)
    with open(proc.log_path, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    check(rc == 2, "exit status %s, expected 2: %r" % (rc, err[-300:]))
    check(re.search(r"^%s:\d+: \[%s\] %s: .*%s" % (re.escape(path), section, key, must_say),
                    err, re.M), "start-up error does not name [%s] %s (%s): %r"
          % (section, key, must_say, err[-300:]))
    res = env.run_sluice(["check", "-c", path])
    check(res.returncode == 2, "check: exit status %s, expected 2: %r"
          % (res.returncode, res.stderr[-300:]))
    check(re.search(r"^%s:\d+: \[%s\] %s: .*%s" % (re.escape(path), section, key, must_say),
                    res.stderr, re.M), "check does not name [%s] %s: %r"
          % (section, key, res.stderr[-300:]))


def spill_dir_missing():
    missing = os.path.join(env.tmp, "no-such-spill-dir")
    start_fails(config([the_origin().addr], buffer={"policy": "spill", "spill_dir": missing}),
                "buffer", "spill_dir", "No such file or directory")


def spill_dir_not_a_dir():
    """A regular file where the directory should be: fails even as root
    (a chmod 0500 directory would not)."""
    f = env.path("spill-file")
    open(f, "w").close()
    start_fails(config([the_origin().addr], buffer={"policy": "spill", "spill_dir": f}),
                "buffer", "spill_dir", "Not a directory")


def access_log_bad():
    d = env.path("access-dir")
    os.mkdir(d)
    start_fails(config([the_origin().addr], log={"access": d}), "log", "access",
                "Is a directory")


def spill_fallback(name, buffer, prepare, must_log):
    spill = env.path("spill-" + name)
    os.mkdir(spill)
    buf = {"policy": "spill", "spill_dir": spill, "high_watermark": "64k",
           "low_watermark": "16k", "block_size": "16k"}
    buf.update(buffer)
    px = env.start_proxy(admin_config(buffer=buf))
    aport = env.admin_port(px)
    prepare(spill)
    dl = harness.HeldDownload(px.port, "/bytes/8M", PatternSink(), hold_at=64 * KiB,
                              rcvbuf=16 * KiB)
    try:
        check(dl.wait_held(), dl.describe())
        m = harness.wait_log(px, must_log, 30.0)
        env.note("logged: %s" % m.group(0).decode(errors="replace"))
        fb = harness.wait_until(lambda: metric(metrics(aport),
                                               "sluice_spill_fallbacks_total") >= 1, 10.0)
        check(fb, "spill_fallbacks_total stays 0")
        dl.finish()
        dl.sink.check(8 * MiB)                  # paused instead: byte-exact
    finally:
        dl.close()
    env.stop_clean(px)


def spill_total_reached():
    spill_fallback("total", {"spill_total": "64k"}, lambda d: None,
                   rb"warn: conn \d+ [^ ]+: spill_total \(65536\) reached; "
                   rb"this download pauses instead")


def spill_dir_gone():
    """spill_dir removed after start: the spool's open fails (ENOENT), at
    warn with the directory and the cause."""
    spill_fallback("gone", {}, os.rmdir,
                   rb"warn: conn \d+ [^ ]+: spool open in spill_dir [^ ]+: "
                   rb"No such file or directory; this download pauses instead")


# ---------------------------------------------------------------------------
# #12: the access line

def access_lines(px):
    with open(px.log_path, "rb") as f:
        return [l for l in f.read().split(b"\n") if l.startswith(b"{")]


def access_line_0xff():
    px = env.start_proxy(config([the_origin().addr]))
    with harness.HttpConn(px.port) as c:
        c.send(b"GET /bytes/4k?q=\xff\xfe%20\"\\ HTTP/1.1\r\nHost: x\r\n"
               b"Connection: close\r\n\r\n")
        r = c.read_response(deadline=10.0 * harness.SLOW)
        env.note("status %s" % r.status)
    check(harness.wait_until(lambda: len(access_lines(px)) >= 1, 10.0 * harness.SLOW),
          "no access line: %s" % px.log_tail())
    line = access_lines(px)[-1]
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AssertionError("access line is not JSON (%s): %r" % (e, line))
    check(doc["path"] == "/bytes/4k?q=\u00ff\u00fe%20\"\\",
          "path %r" % doc["path"])
    env.stop_clean(px)


def write_calls(trace):
    """(fd, bytes) of every write(2) in an `strace -xx` output file."""
    out = []
    if not os.path.exists(trace):
        return out                              # strace not attached yet
    with open(trace) as f:
        for line in f:
            m = re.search(r'write\((\d+), "((?:\\x[0-9a-f]{2})*)"(\.\.\.)?, \d+\)', line)
            if m:
                out.append((int(m.group(1)), bytes.fromhex(m.group(2).replace("\\x", ""))))
    return out


def access_one_write():
    """strace counts the write(2) calls to stderr: each is one whole line
    (before: one per character of the JSON)."""
    strace = shutil.which("strace")
    if strace is None:
        raise harness.Skip("no strace")
    px = env.start_proxy(config([the_origin().addr]))
    trace = env.path("strace.out")
    st = subprocess.Popen([strace, "-qq", "-e", "trace=write", "-xx", "-s", "65536",
                           "-o", trace, "-p", str(px.pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          preexec_fn=harness._die_with_parent)
    try:
        # attached once a request's access line shows in the trace
        def traced():
            request_ok(px.port)
            return any(b'{"time"' in d for _, d in write_calls(trace))
        check(harness.wait_until(traced, 20.0, interval=0.2), "strace did not attach")
        before = len(access_lines(px))
        for i in range(5):
            request_ok(px.port, "/bytes/4k?n=%d" % i)
        check(harness.wait_until(lambda: len(access_lines(px)) >= before + 5, 10.0),
              "access lines missing")
        # strace's output may lag: more requests push it out
        def all_traced():
            request_ok(px.port, "/bytes/4k?more")
            return any(b"?n=4" in d for _, d in write_calls(trace))
        check(harness.wait_until(all_traced, 20.0, interval=0.2), "the trace lags")
    finally:
        st.send_signal(signal.SIGINT)
        try:
            st.wait(10)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(5)
        st.stderr.close()
    writes = [d for fd, d in write_calls(trace) if fd == 2]
    bad = [d for d in writes if not d.endswith(b"\n") or d.count(b"\n") != 1]
    check(not bad, "%d of %d writes to stderr are not one whole line, e.g. %r"
          % (len(bad), len(writes), bad[:3]))
    lines = [d for d in writes if d.startswith(b'{"time"')]
    for i in range(5):
        n = sum(b"?n=%d" % i in d for d in lines)
        check(n == 1, "access line ?n=%d: %d writes" % (i, n))
    env.note("%d writes to stderr, %d access lines" % (len(writes), len(lines)))
    env.stop_clean(px)


# ---------------------------------------------------------------------------
# section 3: /connections

def connections(aport, query=""):
    r = harness.get(aport, "/connections" + query)
    return r


def connections_redacted():
    px = env.start_proxy(admin_config(buffer={"high_watermark": "64k",
                                              "low_watermark": "16k"}))
    aport = env.admin_port(px)
    dls = [harness.HeldDownload(px.port, "/bytes/8M?token=s3cret%d" % i, PatternSink(),
                                hold_at=64 * KiB, rcvbuf=16 * KiB) for i in range(3)]
    try:
        for dl in dls:
            check(dl.wait_held(), dl.describe())
        r = connections(aport)
        check(r.status == 200, "GET /connections: %s" % r.status)
        doc = json.loads(r.body)
        check(len(doc) == 3, "%d entries, expected 3" % len(doc))
        check(r.get("x-total-count") == "3", "X-Total-Count %r" % r.get("x-total-count"))
        check(b"s3cret" not in r.body, "the query shows: %r" % r.body[:300])
        check(all(e["path"] == "/bytes/8M?<redacted>" for e in doc),
              "paths %r" % [e["path"] for e in doc])
        r = connections(aport, "?limit=1")
        check(r.status == 200 and len(json.loads(r.body)) == 1,
              "limit=1: %s %r" % (r.status, r.body[:200]))
        check(r.get("x-total-count") == "3", "limit=1: X-Total-Count %r"
              % r.get("x-total-count"))
        r = connections(aport, "?x=1&limit=0")
        check(r.status == 200 and json.loads(r.body) == [], "limit=0: %s %r"
              % (r.status, r.body[:200]))
        for bad in ("?limit=", "?limit=abc", "?limit=-1", "?limit=10001",
                    "?limit=99999999999"):
            r = connections(aport, bad)
            check(r.status == 400, "%s: %s, expected 400" % (bad, r.status))
        for dl in dls:
            dl.finish()
            dl.sink.check(8 * MiB)
        # the access log keeps the query
        lines = [json.loads(l) for l in access_lines(px)]
        check(sum("s3cret" in l["path"] for l in lines) == 3,
              "access log paths %r" % [l["path"] for l in lines])
    finally:
        for dl in dls:
            dl.close()
    env.stop_clean(px)


def connections_show_query():
    px = env.start_proxy(admin_config(admin={"show_query": "on"},
                                      buffer={"high_watermark": "64k",
                                              "low_watermark": "16k"}))
    aport = env.admin_port(px)
    dl = harness.HeldDownload(px.port, "/bytes/8M?token=visible", PatternSink(),
                              hold_at=64 * KiB, rcvbuf=16 * KiB)
    try:
        check(dl.wait_held(), dl.describe())
        doc = json.loads(connections(aport).body)
        check([e["path"] for e in doc] == ["/bytes/8M?token=visible"],
              "paths %r" % [e["path"] for e in doc])
        dl.finish()
    finally:
        dl.close()
    env.stop_clean(px)


env.case("max_connections: N held, the N+1th gets 503 (Retry-After, close), "
         "counted; a freed slot is taken", max_connections)
env.case("max_connections default: from RLIMIT_NOFILE", max_connections_default)
env.case("accept EMFILE: the client is closed, not left hanging; the listener goes on", accept_emfile)
env.case("spill_dir missing: check and start-up fail naming it", spill_dir_missing)
env.case("spill_dir a regular file: check and start-up fail naming it",
         spill_dir_not_a_dir)
env.case("[log] access a directory: check and start-up fail naming it", access_log_bad)
env.case("spill_total reached at run time: warn with the cause, download whole",
         spill_total_reached)
env.case("spill_dir removed at run time: warn with the cause, download whole",
         spill_dir_gone)
env.case("access line for a path with 0xff is valid JSON", access_line_0xff)
env.case("access log on stderr: one write(2) per line", access_one_write)
env.case("/connections redacts the query, takes ?limit=N, says the total",
         connections_redacted)
env.case("/connections with show_query = on shows the query", connections_show_query)
env.finish()
