#!/usr/bin/env python3
"""SIGHUP reload and SIGTERM drain of `sluice proxy` (daemon/proxy.c):

  1. reload under load: a slow verified download from origin A survives a
     reload that points the proxy at origin B, byte-exact; the next request
     goes to B; an idle keep-alive connection of the old config is closed;
     the old config generation is released when its download ends; /metrics
     counts one ok reload; RELOADING=1 and READY=1 reach $NOTIFY_SOCKET.
  2. refused reloads: a bad value on line 7, then a [listen] address in use:
     the proxy goes on serving through the old upstream, logs FILE:7: and
     the key (as "<3>" lines to a journal stream: JOURNAL_STREAM names its
     stderr), counts the failures; a good file is then taken.
  3. drain: SIGTERM during a 5 s download: STOPPING=1, new connections
     refused, a SIGHUP ignored, the download completes verified, exit 0.
  4. [listen] and [admin] address change: the new ports accept, the old
     refuse, the download in flight on the old listener completes.
  5. least-conn across a reload that reorders the servers: a download of
     the old generation still counts against its server.

Origins are `sluice origin` with distinct --key values, so a body's ETag
(and its pattern) says which origin sent it.

    python3 tests/integration/test_reload.py --sluice build/sluice --origin tests/origin.py
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import prom  # noqa: E402
from harness import MiB, KiB, check  # noqa: E402

env = harness.Env(__doc__)
SLOW = 6 if os.environ.get("SLUICE_WRAP") else 1   # valgrind is slower


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
        "[buffer]",                          # 11
        "policy = pause",                    # 12
        "high_watermark = 1M",               # 13
        "low_watermark = 256k",              # 14
        "[admin]",                           # 15
        "address = %s" % admin,              # 16
        "[log]",                             # 17
        "level = info",                      # 18
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


# ---------------------------------------------------------------------------
# The proxy with an environment of its own (NOTIFY_SOCKET, JOURNAL_STREAM)
# ---------------------------------------------------------------------------

class Notify:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self):
        self.path = os.path.join(env.tmp, "notify-%d.sock" % time.monotonic_ns())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []       # each a list of VAR=value lines

    def collect(self, timeout=0.0):
        """Read what arrived (waiting up to timeout for the first)."""
        self.sock.settimeout(timeout if timeout > 0 else 0.001)
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return self.messages
            self.messages.append(data.decode("utf-8", "replace").split("\n"))
            self.sock.settimeout(0.001)

    def wait_for(self, var, count=1, timeout=10.0):
        """Wait until var (e.g. "READY=1") was sent count times."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            self.collect(0.05)
            if self.count(var) >= count:
                return True
            if time.monotonic() > deadline:
                return False

    def count(self, var):
        return sum(1 for m in self.messages if var in m)

    def sequence(self):
        """The RELOADING/READY/STOPPING variables in the order sent."""
        keys = ("READY=1", "RELOADING=1", "STOPPING=1")
        return [v for m in self.messages for v in m if v in keys]

    def close(self):
        self.sock.close()


def start_proxy(text, name, notify=None, journal=False):
    """Start `sluice proxy` like env.start_proxy, with NOTIFY_SOCKET and/or
    JOURNAL_STREAM (the device:inode of its stderr file, as systemd sets
    it) in its environment."""
    env.need_sluice()
    cfg = env.write_config(text, name + ".ini")
    log = env.path(name + ".stderr")
    errf = open(log, "wb")
    penv = dict(os.environ)
    penv.pop("NOTIFY_SOCKET", None)
    penv.pop("JOURNAL_STREAM", None)
    if notify is not None:
        penv["NOTIFY_SOCKET"] = notify.path
    if journal:
        st = os.fstat(errf.fileno())
        penv["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    wrap = os.environ.get("SLUICE_WRAP", "").split()
    p = subprocess.Popen(wrap + [env.sluice, "proxy", "-c", cfg], stdout=errf, stderr=errf,
                         stdin=subprocess.DEVNULL, env=penv,
                         preexec_fn=harness._die_with_parent)
    errf.close()
    proc = harness.Process(name, p, log)
    env.processes.append(proc)
    port = wait_log(proc, rb"(?<!admin: )listening on 127\.0\.0\.1:(\d+)", 10)
    px = harness.Proxy(name, p, log, int(port.group(1)), cfg)
    env.processes[env.processes.index(proc)] = px
    return px


def log_text(proc):
    with open(proc.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_log(proc, pattern, timeout, count=1):
    """Wait (bounded) until pattern (bytes regex) matched count times in the
    process's stderr; returns the last match."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        with open(proc.log_path, "rb") as f:
            hits = list(re.finditer(pattern, f.read()))
        if len(hits) >= count:
            return hits[count - 1]
        if not proc.alive():
            raise AssertionError("%s exited with %s before logging %r: %s"
                                 % (proc.name, proc.popen.returncode, pattern,
                                    " | ".join(proc.log_tail())))
        if time.monotonic() > deadline:
            raise AssertionError("%s did not log %r in %.0f s: %s"
                                 % (proc.name, pattern, timeout, " | ".join(proc.log_tail())))
        time.sleep(0.02)


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


class Download:
    """`sluice fetch URL --rate RATE --verify --json` in a thread."""

    def __init__(self, url, rate="8mbit", timeout=60, extra=()):
        self.res = None
        self.error = None
        self.t0 = time.monotonic()

        def run():
            try:
                self.res = env.run_fetch(url, ["--rate", rate, "--verify"] + list(extra),
                                         timeout=timeout * SLOW)
            except Exception as e:
                self.error = "%s: %s" % (type(e).__name__, e)
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def alive(self):
        return self.t.is_alive()

    def finish(self, n, timeout):
        self.t.join(timeout * SLOW)
        check(not self.t.is_alive(), "download not finished in %.0f s" % timeout)
        check(self.error is None, "fetch: %s" % self.error)
        r = self.res
        check(r.rc == 0 and r.get("verified") is True and r.get("outcome") == "complete"
              and r.get("received_bytes") == n,
              "download not complete and verified: %s" % r.describe())
        return r


def wait_relaying(aport, minimum=64 * KiB, timeout=10):
    """Wait until GET /connections shows a download with bytes sent."""
    import json

    def going():
        doc = json.loads(harness.get(aport, "/connections").body)
        return any(c.get("bytes_to_client", 0) >= minimum for c in doc)
    check(harness.wait_until(going, timeout * SLOW, 0.05),
          "no download under way after %.0f s" % timeout)


# ---------------------------------------------------------------------------

def origins():
    a = env.start_sluice_origin(["--key", "A"], name="origin-A")
    b = env.start_sluice_origin(["--key", "B"], name="origin-B")
    return a, b


def reload_under_load():
    a, b = origins()
    notify = Notify()
    try:
        px = start_proxy(base_config(a.addr), "proxy-load", notify=notify)
        aport = env.admin_port(px)
        check(notify.wait_for("READY=1"), "no READY=1 after start: %s" % notify.messages)
        check(which_origin(px.port, "AB") == "A", "before the reload: not A")

        # An idle keep-alive connection of generation 1.
        idle = harness.HttpConn(px.port)
        idle.request("GET", "/bytes/1k")
        check(idle.read_response().status == 200, "keep-alive request failed")

        n = 8 * MiB
        dl = Download(px.url + "/bytes/8M")        # about 8.4 s at 8 Mbit/s
        wait_relaying(aport)
        time.sleep(0.8)
        rewrite(px.config_path, base_config(b.addr))
        at = time.monotonic() - dl.t0
        px.popen.send_signal(signal.SIGHUP)
        wait_log(px, rb"reload: \S+ taken as config generation 2; 1 in-flight", 10)
        check(notify.wait_for("READY=1", 2), "no READY=1 after the reload: %s" % notify.messages)
        check(notify.sequence()[:3] == ["READY=1", "RELOADING=1", "READY=1"],
              "notify sequence %s" % notify.sequence())
        check(dl.alive(), "the download ended before the reload was done: not exercised")

        check(which_origin(px.port, "AB") == "B", "after the reload: not B")
        check(idle.at_eof(3.0), "the idle keep-alive connection of the old config "
                                "was not closed by the reload")
        idle.close()
        m = metrics(aport)
        check(metric(m, "sluice_config_generation") == 2, "generation gauge not 2")
        check(metric(m, "sluice_config_generations_live") == 2,
              "generations_live %s during the old download, expected 2"
              % metric(m, "sluice_config_generations_live"))
        check("config generation 1 released" not in log_text(px),
              "generation 1 released while its download runs")

        r = dl.finish(n, 60)
        wait_log(px, rb"config generation 1 released", 5)
        ok, failed = reloads(aport)
        check((ok, failed) == (1, 0), "reloads ok=%s failed=%s, expected 1, 0" % (ok, failed))
        m = metrics(aport)
        check(metric(m, "sluice_config_generations_live") == 1, "old generation still live")
        check(metric(m, "sluice_config_last_reload_successful") == 1, "last reload not ok")
        env.stop_clean(px)
        env.note("8 MiB from A verified in %.1f s, SIGHUP %.1f s into it; next request from "
                 "B; idle keep-alive closed; generation 1 released after the download; "
                 "notify %s" % (r.wall, at, notify.sequence()))
    finally:
        notify.close()


def invalid_reload():
    a, b = origins()
    access = os.path.join(env.tmp, "access-invalid.log")
    px = start_proxy(base_config(a.addr, access=access), "proxy-invalid", journal=True)
    aport = env.admin_port(px)
    check(which_origin(px.port, "AB") == "A", "before the reload: not A")

    # 1. A bad duration on line 7, and B as the server: nothing of it taken.
    rewrite(px.config_path, base_config(b.addr, access=access,
                                        line7="read_timeout = 5 parsecs"))
    px.popen.send_signal(signal.SIGHUP)
    pat = (r"(?m)^<3>reload failed: %s:7: \[upstream\] read_timeout: .*generation 1 stays$"
           % re.escape(px.config_path))
    wait_log(px, pat.encode(), 10)
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
        wait_log(px, (r"<3>reload failed: %s:3: \[listen\] address: cannot listen on %s"
                      % (re.escape(px.config_path), re.escape(busy))).encode(), 10)
    finally:
        held.close()
    check(which_origin(px.port, "AB") == "A", "after a refused bind: not A")
    check(reloads(aport) == (0, 2), "reloads %s, expected (0, 2)" % (reloads(aport),))

    # 3. A good file is taken.
    rewrite(px.config_path, base_config(b.addr, access=access))
    px.popen.send_signal(signal.SIGHUP)
    wait_log(px, rb"<6>reload: \S+ taken as config generation 2", 10)
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
    notify = Notify()
    try:
        px = start_proxy(base_config(a.addr).replace("drain_timeout = 30s",
                                                     "drain_timeout = 20s"),
                         "proxy-drain", notify=notify)
        aport = env.admin_port(px)
        check(notify.wait_for("READY=1"), "no READY=1 after start: %s" % notify.messages)
        n = 5 * MiB
        dl = Download(px.url + "/bytes/5M")         # about 5.2 s at 8 Mbit/s
        wait_relaying(aport)
        t0 = time.monotonic()
        px.popen.send_signal(signal.SIGTERM)
        check(notify.wait_for("STOPPING=1"), "no STOPPING=1: %s" % notify.messages)
        refused = harness.wait_until(lambda: harness.connect_refused(px.port), 3.0, 0.05)
        in_flight = dl.alive()
        px.popen.send_signal(signal.SIGHUP)
        wait_log(px, rb"SIGHUP while draining: reload ignored", 5)
        r = dl.finish(n, 30)
        try:
            rc = px.popen.wait(20 * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError("proxy still running 20 s after the drained download")
        took = time.monotonic() - t0
        check(rc == 0, "exit status %s after the drain: %s" % (rc, " | ".join(px.log_tail())))
        check(refused, "new connections still accepted 3 s after SIGTERM")
        check(in_flight, "the download had ended before refusal was checked")
        check(took < 20 * SLOW, "exit %.1f s after SIGTERM, beyond drain_timeout" % took)
        notify.collect(0.2)
        check(notify.sequence() == ["READY=1", "STOPPING=1"],
              "notify sequence %s, expected READY=1, STOPPING=1" % notify.sequence())
        env.note("5 MiB in %.1f s; SIGTERM -> refused, SIGHUP ignored, exit 0 %.1f s later; "
                 "notify %s" % (r.wall, took, notify.sequence()))
    finally:
        notify.close()


def address_change():
    a, _ = origins()
    px = start_proxy(base_config(a.addr), "proxy-move")
    old_port = px.port
    old_aport = env.admin_port(px)
    n = 4 * MiB
    dl = Download(px.url + "/bytes/4M")             # about 4.2 s at 8 Mbit/s
    wait_relaying(old_aport)
    new_port = harness.free_port_refused()
    new_aport = harness.free_port_refused()
    rewrite(px.config_path, base_config(a.addr, listen="127.0.0.1:%d" % new_port,
                                        admin="127.0.0.1:%d" % new_aport))
    px.popen.send_signal(signal.SIGHUP)
    wait_log(px, rb"reload: \S+ taken as config generation 2", 10)
    wait_log(px, (r"(?<!admin: )listening on 127\.0\.0\.1:%d" % new_port).encode(), 1)
    wait_log(px, (r"admin: listening on 127\.0\.0\.1:%d" % new_aport).encode(), 1)
    check(dl.alive(), "the download ended before the reload: not exercised")
    check(which_origin(new_port, "A") == "A", "no answer on the new port")
    check(harness.wait_until(lambda: harness.connect_refused(old_port), 3.0, 0.05),
          "the old port still accepts")
    check(harness.wait_until(lambda: harness.connect_refused(old_aport), 3.0, 0.05),
          "the old admin port still accepts")
    check(reloads(new_aport) == (1, 0), "reloads %s on the new admin port" % (reloads(new_aport),))
    r = dl.finish(n, 30)
    env.stop_clean(px)
    env.note("port %d -> %d, admin %d -> %d; the download on the old listener completed "
             "(%.1f s)" % (old_port, new_port, old_aport, new_aport, r.wall))


def least_conn_across():
    a, b = origins()
    lc = "balance = least-conn"
    small = "idle_timeout = 60s\nsndbuf = 64k"
    px = start_proxy(base_config(a.addr, line7=lc).replace(
        "server = %s" % a.addr, "server = %s\nserver = %s" % (a.addr, b.addr)).replace(
        "idle_timeout = 60s", small), "proxy-lc")
    aport = env.admin_port(px)
    # Small windows, so that the upstream is read until the end (kernel
    # buffers would otherwise take all of it at once, and A be done).
    dl = Download(px.url + "/bytes/3M", extra=["--rcvbuf", "64k"])  # to A, ~3 s
    wait_relaying(aport)
    # The same servers in the other order: generation 2's indices differ,
    # and its round-robin tie-break would now pick A.  A's download of
    # generation 1 must count: B is the least loaded.
    rewrite(px.config_path, base_config(b.addr, line7=lc).replace(
        "server = %s" % b.addr, "server = %s\nserver = %s" % (b.addr, a.addr)).replace(
        "idle_timeout = 60s", small))
    px.popen.send_signal(signal.SIGHUP)
    wait_log(px, rb"reload: \S+ taken as config generation 2", 10)
    check(dl.alive(), "the download ended before the reload: not exercised")
    check("/bytes/3M" not in log_text(px), "A's download was done upstream before the "
                                            "reload: not exercised")
    got = [which_origin(px.port, "AB") for _ in range(3)]
    check(got == ["B", "B", "B"], "least-conn after the reload picked %s while A "
                                  "had a download of the old generation" % got)
    dl.finish(3 * MiB, 30)
    env.stop_clean(px)
    env.note("servers [A, B] -> [B, A] during a download from A: next picks %s" % got)


env.case("SIGHUP under load: the download finishes on A verified, the next request goes to B",
         reload_under_load)
env.case("SIGHUP with a bad value or a busy address: refused with FILE:LINE, still serving",
         invalid_reload)
env.case("SIGTERM: STOPPING=1, new connections refused, the 5 s download completes, exit 0",
         drain)
env.case("SIGHUP with new [listen] and [admin] addresses: new ports accept, old refuse",
         address_change)
env.case("SIGHUP, least-conn: downloads of the old generation count for the new one",
         least_conn_across)
env.finish()
