#!/usr/bin/env python3
"""SIGHUP reload and SIGTERM drain of `sluice proxy` (daemon/proxy/proxy.c):

  1. reload under load: a download from origin A, held by its reader
     after 256 KiB so that it is in flight whatever the machine's speed
     (harness.HeldDownload), survives a
     reload that points the proxy at origin B, byte-exact; the next request
     goes to B; an idle keep-alive connection of the old config is closed;
     the old config generation is released when its download ends; /metrics
     counts one ok reload; RELOADING=1 and READY=1 reach $NOTIFY_SOCKET.
  2. refused reloads: a bad value on line 7, then a [listen] address in use:
     the proxy goes on serving through the old upstream, logs FILE:7: and
     the key (as "<3>" lines to a journal stream: JOURNAL_STREAM names its
     stderr), counts the failures; a good file is then taken.
  3. drain: SIGTERM during a held 5 MiB download: STOPPING=1, new
     connections refused, a SIGHUP ignored, the download completes
     byte-exact once released, exit 0.
  4. [listen] and [admin] address change: the new ports accept, the old
     refuse, the download in flight on the old listener completes.
  5. least-conn across a reload that reorders the servers: a download of
     the old generation still counts against its server.

Origins are `sluice origin` with distinct --key values, so a body's ETag
(and its pattern) says which origin sent it.  Nothing is timed: every wait
is a generous deadline, every check is on an outcome.

    python3 tests/integration/test_reload.py --sluice build/sluice --origin tests/origin.py
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import prom  # noqa: E402
from harness import MiB, KiB, check  # noqa: E402

env = harness.Env(__doc__)
SLOW = harness.SLOW


def base_config(server, admin="127.0.0.1:0", listen="127.0.0.1:0", access=None,
                line7="read_timeout = 60s"):
    """The proxy's config; the comments give line numbers (case 2 breaks
    line 7)."""
    lines = [
        "; sluice reload test",              # 1
        "[listen]",                          # 2
        "address = %s" % listen,             # 3
        "drain_timeout = 30s",               # 4
        "[upstream]",                        # 5
        "server = %s" % server,              # 6
        line7,                               # 7
        "connect_timeout = 5s",              # 8
        "[client]",                          # 9
        "idle_timeout = 60s",                # 10
        # Pinned: with an autotuned send buffer (up to tcp_wmem's 4 MiB)
        # plus the pipe's 1 MiB, a held download of a few MiB could be
        # taken whole by the kernel and end while the test still needs it
        # in flight.
        "sndbuf = 64k",                      # 11
        "[buffer]",                          # 12
        "policy = pause",                    # 13
        "high_watermark = 1M",               # 14
        "low_watermark = 256k",              # 15
        "[admin]",                           # 16
        "address = %s" % admin,              # 17
        "[log]",                             # 18
        "level = info",                      # 19
    ]
    if access:
        lines.append("access = %s" % access)
    return "\n".join(lines) + "\n"


def rewrite(path, text):
    """Replace the config file as an editor or a deployment would: a new
    file renamed over the old one."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def log_text(proc):
    with open(proc.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def metrics(aport):
    r = harness.get(aport, "/metrics")
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    return prom.parse_prometheus(r.body.decode())


def metric(m, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in m, "no sample %s%s in /metrics" % (name, labels or ""))
    return m[key]


def reloads(aport):
    m = metrics(aport)
    return (metric(m, "sluice_config_reloads_total", result="ok"),
            metric(m, "sluice_config_reloads_total", result="failed"))


def which_origin(port, keys, size=4 * KiB):
    """GET /bytes/SIZE on a fresh connection; the name in keys whose ETag
    came back (the origin that served it)."""
    r = harness.get(port, "/bytes/%d" % size)
    check(r.status == 200, "GET through the proxy: status %s" % r.status)
    etag = r.get("etag")
    for name in keys:
        if etag == harness.sluice_etag(size, harness.sluice_key(name)):
            check(r.body == harness.sluice_bytes(0, size, harness.sluice_key(name)),
                  "body from origin %s is not its pattern" % name)
            return name
    raise AssertionError("ETag %r is from none of the origins %s" % (etag, keys))


def held_download(port, target, key):
    """A download through the proxy that stops after 256 KiB until the
    test releases it (harness.HeldDownload): in flight for as long as the
    test needs, whatever the machine's speed."""
    dl = harness.HeldDownload(port, target)
    dl.key = key
    check(dl.wait_held(), "the download did not start: " + dl.describe())
    return dl


def finish(dl, n):
    """Release dl; it must end complete: n bytes of origin dl.key's pattern."""
    r = dl.finish()
    check(r.status == 200, "download: status %s" % r.status)
    check(dl.sink.length == n, "download: %d bytes, expected %d" % (dl.sink.length, n))
    check(dl.sink.sha256 == harness.sluice_sha256(n, harness.sluice_key(dl.key)),
          "download: the bytes are not origin %s's pattern" % dl.key)
    return r


def wait_relaying(aport, minimum=64 * KiB, timeout=10):
    """Wait until GET /connections shows a download with bytes sent."""
    import json

    def going():
        doc = json.loads(harness.get(aport, "/connections").body)
        return any(c.get("bytes_to_client", 0) >= minimum for c in doc)
    check(harness.wait_until(going, timeout * SLOW, 0.05),
          "no download under way after %.0f s" % (timeout * SLOW))


# ---------------------------------------------------------------------------

def origins():
    a = env.start_sluice_origin(["--key", "A"], name="origin-A")
    b = env.start_sluice_origin(["--key", "B"], name="origin-B")
    return a, b


def reload_under_load():
    a, b = origins()
    notify = env.notify_socket()
    try:
        px = env.start_proxy(base_config(a.addr), "proxy-load", notify=notify)
        aport = env.admin_port(px)
        check(notify.wait_for("READY=1"), "no READY=1 after start: %s" % notify.messages)
        check(which_origin(px.port, "AB") == "A", "before the reload: not A")

        # An idle keep-alive connection of generation 1.
        idle = harness.HttpConn(px.port)
        idle.request("GET", "/bytes/1k")
        check(idle.read_response().status == 200, "keep-alive request failed")

        n = 8 * MiB
        dl = held_download(px.port, "/bytes/8M", "A")  # in flight until finish()
        wait_relaying(aport)
        rewrite(px.config_path, base_config(b.addr))
        px.popen.send_signal(signal.SIGHUP)
        harness.wait_log(px, rb"reload: \S+ taken as config generation 2; 1 in-flight")
        check(notify.wait_for("READY=1", 2), "no READY=1 after the reload: %s" % notify.messages)
        check(notify.sequence()[:3] == ["READY=1", "RELOADING=1", "READY=1"],
              "notify sequence %s" % notify.sequence())
        check(dl.alive(), "the download ended before the reload was done: " + dl.describe())

        check(which_origin(px.port, "AB") == "B", "after the reload: not B")
        check(idle.at_eof(30.0 * SLOW), "the idle keep-alive connection of the old config "
                                        "was not closed by the reload")
        idle.close()
        m = metrics(aport)
        check(metric(m, "sluice_config_generation") == 2, "generation gauge not 2")
        check(metric(m, "sluice_config_generations_live") == 2,
              "generations_live %s during the old download, expected 2"
              % metric(m, "sluice_config_generations_live"))
        check("config generation 1 released" not in log_text(px),
              "generation 1 released while its download runs")

        finish(dl, n)
        harness.wait_log(px, rb"config generation 1 released")
        ok, failed = reloads(aport)
        check((ok, failed) == (1, 0), "reloads ok=%s failed=%s, expected 1, 0" % (ok, failed))
        m = metrics(aport)
        check(metric(m, "sluice_config_generations_live") == 1, "old generation still live")
        check(metric(m, "sluice_config_last_reload_successful") == 1, "last reload not ok")
        env.stop_clean(px)
        env.note("8 MiB from A byte-exact, SIGHUP after its first 256 KiB; next request from "
                 "B; idle keep-alive closed; generation 1 released after the download; "
                 "notify %s" % notify.sequence())
    finally:
        notify.close()


def invalid_reload():
    a, b = origins()
    access = os.path.join(env.tmp, "access-invalid.log")
    px = env.start_proxy(base_config(a.addr, access=access), "proxy-invalid", journal=True)
    aport = env.admin_port(px)
    check(which_origin(px.port, "AB") == "A", "before the reload: not A")

    # 1. A bad duration on line 7, and B as the server: nothing of it taken.
    rewrite(px.config_path, base_config(b.addr, access=access,
                                        line7="read_timeout = 5 parsecs"))
    px.popen.send_signal(signal.SIGHUP)
    pat = (r"(?m)^<3>reload failed: %s:7: \[upstream\] read_timeout: .*generation 1 stays$"
           % re.escape(px.config_path))
    harness.wait_log(px, pat.encode())
    check(which_origin(px.port, "AB") == "A", "after a refused reload: not A")
    check(reloads(aport) == (0, 1), "after the bad value: reloads %s, expected (0, 1)"
          % (reloads(aport),))
    check(metric(metrics(aport), "sluice_config_last_reload_successful") == 0,
          "last reload shown as successful")

    # 2. A [listen] address in use: a bind failure refuses the whole reload.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        busy = "127.0.0.1:%d" % held.getsockname()[1]
        rewrite(px.config_path, base_config(b.addr, listen=busy, access=access))
        px.popen.send_signal(signal.SIGHUP)
        harness.wait_log(px, (r"<3>reload failed: %s:3: \[listen\] address: cannot listen "
                              r"on %s" % (re.escape(px.config_path), re.escape(busy))).encode())
    finally:
        held.close()
    check(which_origin(px.port, "AB") == "A", "after a refused bind: not A")
    check(reloads(aport) == (0, 2), "reloads %s, expected (0, 2)" % (reloads(aport),))

    # 3. A good file is taken.
    rewrite(px.config_path, base_config(b.addr, access=access))
    px.popen.send_signal(signal.SIGHUP)
    harness.wait_log(px, rb"<6>reload: \S+ taken as config generation 2")
    check(which_origin(px.port, "AB") == "B", "after the good reload: not B")
    check(reloads(aport) == (1, 2), "reloads %s, expected (1, 2)" % (reloads(aport),))
    env.stop_clean(px)

    # journald: one event per line, every line with its priority.
    lines = log_text(px).splitlines()
    # (SLUICE_WRAP=valgrind writes its own "==PID==" lines there)
    bad = [l for l in lines if not re.match(r"<[0-7]>\S|==\d+==", l)]
    check(not bad, "stderr lines without a <N> prefix: %r" % bad[:3])
    n_access = len(harness.read_json_lines(access))
    check(n_access == 4, "%d access log lines, expected 4" % n_access)
    env.note("refused: a bad value (line 7) and a busy address (line 3), still on A; then "
             "taken: B; %d stderr lines, all <N>-prefixed" % len(lines))


def drain():
    a, _ = origins()
    notify = env.notify_socket()
    try:
        px = env.start_proxy(base_config(a.addr), "proxy-drain", notify=notify)
        aport = env.admin_port(px)
        check(notify.wait_for("READY=1"), "no READY=1 after start: %s" % notify.messages)
        n = 5 * MiB
        dl = held_download(px.port, "/bytes/5M", "A")  # in flight until finish()
        wait_relaying(aport)
        t0 = time.monotonic()
        px.popen.send_signal(signal.SIGTERM)
        check(notify.wait_for("STOPPING=1"), "no STOPPING=1: %s" % notify.messages)
        check(harness.wait_until(lambda: harness.connect_refused(px.port), 30.0 * SLOW, 0.05),
              "new connections still accepted %.0f s after SIGTERM" % (30.0 * SLOW))
        check(dl.alive(), "the download ended before its release: " + dl.describe())
        px.popen.send_signal(signal.SIGHUP)
        harness.wait_log(px, rb"SIGHUP while draining: reload ignored")
        # Complete and byte-exact: drain_timeout (30 s) did not cut it.
        finish(dl, n)
        try:
            rc = px.popen.wait(60 * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError("proxy still running %d s after the drained download"
                                 % (60 * SLOW))
        took = time.monotonic() - t0
        check(rc == 0, "exit status %s after the drain: %s" % (rc, " | ".join(px.log_tail())))
        notify.collect(0.2)
        check(notify.sequence() == ["READY=1", "STOPPING=1"],
              "notify sequence %s, expected READY=1, STOPPING=1" % notify.sequence())
        env.note("5 MiB byte-exact; SIGTERM -> refused, SIGHUP ignored, exit 0 %.1f s later; "
                 "notify %s" % (took, notify.sequence()))
    finally:
        notify.close()


def address_change():
    a, _ = origins()
    px = env.start_proxy(base_config(a.addr), "proxy-move")
    old_port = px.port
    old_aport = env.admin_port(px)
    n = 4 * MiB
    dl = held_download(px.port, "/bytes/4M", "A")  # in flight until finish()
    wait_relaying(old_aport)
    new_port = harness.free_port_refused()
    new_aport = harness.free_port_refused()
    rewrite(px.config_path, base_config(a.addr, listen="127.0.0.1:%d" % new_port,
                                        admin="127.0.0.1:%d" % new_aport))
    px.popen.send_signal(signal.SIGHUP)
    harness.wait_log(px, rb"reload: \S+ taken as config generation 2")
    harness.wait_log(px, (r"(?<!admin: )listening on 127\.0\.0\.1:%d" % new_port).encode())
    harness.wait_log(px, (r"admin: listening on 127\.0\.0\.1:%d" % new_aport).encode())
    check(dl.alive(), "the download ended before the reload: " + dl.describe())
    check(which_origin(new_port, "A") == "A", "no answer on the new port")
    check(harness.wait_until(lambda: harness.connect_refused(old_port), 30.0 * SLOW, 0.05),
          "the old port still accepts")
    check(harness.wait_until(lambda: harness.connect_refused(old_aport), 30.0 * SLOW, 0.05),
          "the old admin port still accepts")
    check(reloads(new_aport) == (1, 0), "reloads %s on the new admin port" % (reloads(new_aport),))
    finish(dl, n)
    env.stop_clean(px)
    env.note("port %d -> %d, admin %d -> %d; the download on the old listener completed "
             "byte-exact" % (old_port, new_port, old_aport, new_aport))


def least_conn_across():
    a, b = origins()
    lc = "balance = least-conn"
    px = env.start_proxy(base_config(a.addr, line7=lc).replace(
        "server = %s" % a.addr, "server = %s\nserver = %s" % (a.addr, b.addr)), "proxy-lc")
    aport = env.admin_port(px)
    # Held after 256 KiB (small windows on both sides): the proxy cannot
    # finish A's download, nor read its upstream to the end, until the
    # test lets it.
    dl = held_download(px.port, "/bytes/3M", "A")
    wait_relaying(aport)
    # The same servers in the other order: generation 2's indices differ,
    # and its round-robin tie-break would now pick A.  A's download of
    # generation 1 must count: B is the least loaded.
    rewrite(px.config_path, base_config(b.addr, line7=lc).replace(
        "server = %s" % b.addr, "server = %s\nserver = %s" % (b.addr, a.addr)))
    px.popen.send_signal(signal.SIGHUP)
    harness.wait_log(px, rb"reload: \S+ taken as config generation 2")
    check(dl.alive(), "the download ended before the reload: " + dl.describe())
    check("/bytes/3M" not in log_text(px), "A's download was done upstream before the "
                                            "reload: not exercised")
    got = [which_origin(px.port, "AB") for _ in range(3)]
    check(got == ["B", "B", "B"], "least-conn after the reload picked %s while A "
                                  "had a download of the old generation" % got)
    finish(dl, 3 * MiB)
    env.stop_clean(px)
    env.note("servers [A, B] -> [B, A] during a download from A: next picks %s" % got)


env.case("SIGHUP under load: the download finishes on A verified, the next request goes to B",
         reload_under_load)
env.case("SIGHUP with a bad value or a busy address: refused with FILE:LINE, still serving",
         invalid_reload)
env.case("SIGTERM: STOPPING=1, new connections refused, the 5 MiB download completes, exit 0",
         drain)
env.case("SIGHUP with new [listen] and [admin] addresses: new ports accept, old refuse",
         address_change)
env.case("SIGHUP, least-conn: downloads of the old generation count for the new one",
         least_conn_across)
env.finish()
