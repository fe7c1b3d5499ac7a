#!/usr/bin/env python3
"""Upstream keep-alive ([upstream] keepalive, keepalive_timeout): requests
share kept upstream connections, which go when idle too long, when their
server closes them or speaks out of turn, and at a reload; a request sent
on a kept connection that closes before answering is sent again once, on a
new connection, only when it is idempotent and bodiless.

The upstream is nginx from Debian where a real server fits (its access log
names the connection of every request), and a scripted raw-socket server
where the case needs a server that misbehaves on cue.  Nothing asserts
speed: connections, bytes, counters; every wait bounded.

    python3 tests/integration/test_keepalive.py --sluice build/sluice
"""

import hashlib
import os
import re
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KiB, HttpConn, SLOW, check, config  # noqa: E402

env = harness.Env(__doc__)
S = {}


def metrics(aport):
    return harness.metrics_flat(aport)


def proxy(servers, name, **sections):
    sections.setdefault("admin", {})["address"] = "127.0.0.1:0"
    sections.setdefault("log", {})["access"] = env.path(name + "-access.json")
    px = env.start_proxy(config(servers, **sections), name=name)
    px.aport = env.admin_port(px)
    px.access = sections["log"]["access"]
    return px


def fetch(port, target, method="GET", body=b""):
    """One request on a new client connection: (status, body)."""
    with HttpConn(port, timeout=20) as c:
        c.request(method, target, body=body)
        r = c.read_response(method=method, deadline=20 * SLOW)
    return r.status, r.body


# ---- nginx, a real upstream -------------------------------------------------

def nginx_setup():
    www = env.path("www")
    os.mkdir(www)
    os.chmod(www, 0o755)
    data = os.urandom(64 * KiB)
    with open(os.path.join(www, "f"), "wb") as f:
        f.write(data)
    with open(os.path.join(www, "empty"), "wb"):
        pass
    S["data"] = data
    S["nglog"] = env.path("nginx-access.log")
    S["ng"] = env.start_nginx(www, access=S["nglog"])


def nginx_lines():
    """(connection, requests on it, request line) per nginx access line."""
    out = []
    try:
        with open(S["nglog"]) as f:
            for line in f:
                c, n, req = line.rstrip("\n").split(" ", 2)
                out.append((int(c), int(n), req))
    except FileNotFoundError:
        pass
    return out


def nginx_new_lines(before, want):
    """Waits (bounded) for want access lines after the first `before`."""
    got = harness.wait_until(lambda: len(nginx_lines()) >= before + want and True,
                             10 * SLOW, 0.05)
    check(got, "nginx logged %d lines, expected %d more than %d"
          % (len(nginx_lines()), want, before))
    return nginx_lines()[before:before + want]


def reuse_with_nginx():
    """20 downloads, each from a new client, go to nginx over one kept
    connection: nginx serves them as requests 1..20 of one connection;
    every body exact; 19 reuses counted, one connection left idle."""
    check("ng" in S, "no nginx: the setup case failed")
    px = proxy([S["ng"].addr], "proxy-ng")
    before = len(nginx_lines())
    for i in range(20):
        st, body = fetch(px.port, "/f" if i % 4 else "/empty")
        check(st == 200, "request %d: status %s" % (i, st))
        want = S["data"] if i % 4 else b""
        check(body == want, "request %d: %d bytes, not the file's %d" % (i, len(body), len(want)))
    lines = nginx_new_lines(before, 20)
    conns = sorted(set(c for c, _, _ in lines))
    env.note("nginx: %d requests on connection(s) %s, requests-per-connection %s"
             % (len(lines), conns, [n for _, n, _ in lines]))
    check(len(conns) == 1, "the requests went over %d nginx connections" % len(conns))
    check([n for _, n, _ in lines] == list(range(1, 21)), "not requests 1..20 of one "
          "connection: %s" % [n for _, n, _ in lines])
    m = metrics(px.aport)
    check(m.get("sluice_upstream_reused_total") == 19, "reused %s" % m.get(
        "sluice_upstream_reused_total"))
    check(m.get("sluice_upstream_idle_connections") == 1, "idle %s" % m.get(
        "sluice_upstream_idle_connections"))
    acc = harness.read_json_lines(px.access)
    check(sum(1 for a in acc if a.get("upstream_reused")) == 19,
          "access lines with upstream_reused: %d" % sum(1 for a in acc if a.get("upstream_reused")))
    env.stop_clean(px)


def keepalive_off():
    """keepalive = 0: a connection per request, as before (nginx sees 5
    connections of one request each); nothing is kept."""
    check("ng" in S, "no nginx: the setup case failed")
    px = proxy([S["ng"].addr], "proxy-ng-off", upstream={"keepalive": "0"})
    before = len(nginx_lines())
    for i in range(5):
        st, body = fetch(px.port, "/f")
        check(st == 200 and body == S["data"], "request %d: %s, %d bytes" % (i, st, len(body)))
    lines = nginx_new_lines(before, 5)
    check(len(set(c for c, _, _ in lines)) == 5 and all(n == 1 for _, n, _ in lines),
          "nginx connections: %s" % lines)
    m = metrics(px.aport)
    check(m.get("sluice_upstream_reused_total") == 0 and
          m.get("sluice_upstream_idle_connections") == 0, "kept with keepalive 0: %s"
          % {k: v for k, v in m.items() if "upstream_" in k})
    env.stop_clean(px)


def idle_timeout():
    """keepalive_timeout 1s: the kept connection is closed after it (the
    gauge goes to 0, one idle close counted) and the next request opens a
    new one."""
    check("ng" in S, "no nginx: the setup case failed")
    px = proxy([S["ng"].addr], "proxy-ng-idle", upstream={"keepalive_timeout": "1s"})
    before = len(nginx_lines())
    check(fetch(px.port, "/f")[0] == 200, "first request")
    check(metrics(px.aport).get("sluice_upstream_idle_connections") == 1, "not kept")
    gone = harness.wait_until(
        lambda: metrics(px.aport).get("sluice_upstream_idle_connections") == 0, 10 * SLOW, 0.2)
    check(gone, "still kept after 10 s with keepalive_timeout 1s")
    check(metrics(px.aport).get("sluice_upstream_idle_closed_total") == 1, "idle close not counted")
    check(fetch(px.port, "/f")[0] == 200, "second request")
    lines = nginx_new_lines(before, 2)
    check(lines[0][0] != lines[1][0], "the second request reused the timed-out connection")
    env.stop_clean(px)


def reload_closes():
    """SIGHUP: the old generation's kept connections go (its servers may
    have changed); the next request opens a new one."""
    check("ng" in S, "no nginx: the setup case failed")
    px = proxy([S["ng"].addr], "proxy-ng-reload")
    check(fetch(px.port, "/f")[0] == 200, "first request")
    check(metrics(px.aport).get("sluice_upstream_idle_connections") == 1, "not kept")
    px.popen.send_signal(signal.SIGHUP)
    done = harness.wait_until(lambda: metrics(px.aport).get(
        'sluice_config_reloads_total{result="ok"}') == 1, 10 * SLOW, 0.1)
    check(done, "the reload did not happen")
    check(metrics(px.aport).get("sluice_upstream_idle_connections") == 0,
          "a kept connection outlived its generation")
    st, body = fetch(px.port, "/f")
    check(st == 200 and body == S["data"], "after the reload: %s" % st)
    env.stop_clean(px)


# ---- a scripted upstream ------------------------------------------------------

class Scripted:
    """A raw HTTP/1.1 server on 127.0.0.1: each request it reads (a head,
    and a Content-Length body) is answered by the next action of `script`:
      "ok"       200, Content-Length 5, "hello", keep-alive
      "ok+junk"  the same, then bytes nobody asked for
      "ok+close" the same, then a close a moment later (idle)
      "drop"     no answer: the connection is closed
    It counts connections and requests."""

    def __init__(self, script):
        self.script = list(script)
        self.conns = 0
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def serve(self):
        deadline = time.monotonic() + 120
        while not self.stop and time.monotonic() < deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            t = threading.Thread(target=self.conn, args=(c, n), daemon=True)
            self.threads.append(t)
            t.start()

    def conn(self, c, n):
        c.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(buf) < need:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[need:]
                with self.lock:
                    self.requests.append((n, head.split(b"\r\n")[0].decode()))
                    act = self.script.pop(0) if self.script else "ok"
                if act == "drop":
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                if act == "ok+junk":
                    time.sleep(0.05)
                    c.sendall(b"JUNK")
                elif act == "ok+close":
                    time.sleep(0.3)
                    return
        except OSError:
            return
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()
        for t in self.threads:
            t.join(5)


def resend_get():
    """The kept connection closes as the second request reaches it (the
    race a server's own idle timeout makes): a GET is sent again on a new
    connection, and the client gets its 200; counted once."""
    up = Scripted(["ok", "drop", "ok"])
    try:
        px = proxy([up.addr], "proxy-resend")
        check(fetch(px.port, "/a") == (200, b"hello"), "first request")
        st, body = fetch(px.port, "/b")
        check((st, body) == (200, b"hello"), "the GET after the drop: %s %r" % (st, body))
        m = metrics(px.aport)
        env.note("upstream: %d connections, requests %s" % (up.conns, up.requests))
        check(m.get("sluice_upstream_resent_total") == 1, "resent %s" % m.get(
            "sluice_upstream_resent_total"))
        check(up.conns == 2 and [r[0] for r in up.requests] == [1, 1, 2],
              "connections/requests: %d %s" % (up.conns, up.requests))
        env.stop_clean(px)
    finally:
        up.close()


def no_resend_post():
    """The same race with a POST (not idempotent): never sent twice; the
    client gets a 502 and the upstream saw it once."""
    up = Scripted(["ok", "drop", "ok"])
    try:
        px = proxy([up.addr], "proxy-noresend")
        check(fetch(px.port, "/a") == (200, b"hello"), "first request")
        st, _ = fetch(px.port, "/b", method="POST", body=b"x" * 100)
        check(st == 502, "the POST after the drop: %s" % st)
        check(sum(1 for r in up.requests if r[1].startswith("POST")) == 1,
              "the POST reached the upstream %d times" % sum(
                  1 for r in up.requests if r[1].startswith("POST")))
        check(metrics(px.aport).get("sluice_upstream_resent_total") == 0, "a POST was resent")
        env.stop_clean(px)
    finally:
        up.close()


def not_kept_after_junk_or_close():
    """A server that sends bytes after its response, or closes its idle
    connection: the connection is dropped, not reused, and the next
    request gets its answer on a new one without being resent."""
    up = Scripted(["ok+junk", "ok+close", "ok"])
    try:
        px = proxy([up.addr], "proxy-junk")
        for i in range(3):
            check(fetch(px.port, "/%d" % i) == (200, b"hello"), "request %d" % i)
            # the junk and the close come a moment after the response
            harness.wait_until(lambda: metrics(px.aport).get(
                "sluice_upstream_idle_connections") == 0, 2 * SLOW, 0.05)
        m = metrics(px.aport)
        env.note("upstream: %d connections, requests %s; idle closed %s"
                 % (up.conns, up.requests, m.get("sluice_upstream_idle_closed_total")))
        check(up.conns == 3, "%d upstream connections for 3 requests" % up.conns)
        check(m.get("sluice_upstream_resent_total") == 0, "resent %s"
              % m.get("sluice_upstream_resent_total"))
        # the close always finds the socket parked; the junk does unless
        # the proxy read it with the response (then it is never parked)
        check(m.get("sluice_upstream_idle_closed_total") in (1, 2), "idle closed %s"
              % m.get("sluice_upstream_idle_closed_total"))
        env.stop_clean(px)
    finally:
        up.close()


env.case("setup: nginx with an access log of connections", nginx_setup, keep_processes=True)
env.case("20 downloads from 20 clients: one kept nginx connection, bodies exact",
         reuse_with_nginx)
env.case("keepalive = 0: a connection per request", keepalive_off)
env.case("keepalive_timeout 1s: the idle connection goes, the next is new", idle_timeout)
env.case("SIGHUP closes the old generation's kept connections", reload_closes)
env.case("a kept connection closes unanswered: the GET is sent again, once", resend_get)
env.case("the same with a POST: 502, never sent twice", no_resend_post)
env.case("junk after a response, or an idle close: dropped, not reused",
         not_kept_after_junk_or_close)
env.finish()
