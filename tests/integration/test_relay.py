#!/usr/bin/env python3
"""Relay tests: bodies pass through sluice byte-exact, keep-alive works,
hop-by-hop headers are handled, and upstreams are balanced.

    python3 tests/integration/test_relay.py --sluice build/sluice --origin tests/origin.py
"""

import collections
import hashlib
import json
import os
import socket
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, KiB, HttpConn, PatternSink, check, config  # noqa: E402

env = harness.Env(__doc__)
S = {}   # the shared origin and proxy, started by the setup case


def proxy():
    check("proxy" in S, "no proxy: the setup case failed")
    return S["proxy"]


def setup():
    S["origin"] = env.start_origin(id="a")
    S["proxy"] = env.start_proxy(config([S["origin"].addr]))
    env.note("origin on %s, proxy pid %d on port %d"
             % (S["origin"].addr, S["proxy"].pid, S["proxy"].port))


# ---------------------------------------------------------------------------
# Large bodies through curl
# ---------------------------------------------------------------------------

def relay_256m(mode, http10=False):
    n = 256 * MiB
    url = "%s/bytes/256M?mode=%s" % (proxy().url, mode)
    t0 = time.monotonic()
    r = env.curl(["--fail-with-body", "--http1.0" if http10 else "--http1.1", url],
                 timeout=60)
    took = time.monotonic() - t0
    check(r.rc == 0, r.describe())
    check(r.status() == 200, "status %s, expected 200" % r.status())
    r.sink.check(n, "256 MiB %s body" % mode)
    if http10:
        # An HTTP/1.0 client does not understand chunked: the proxy must
        # send the body unchunked (close-delimited or with a length).
        check(r.header("Transfer-Encoding") is None,
              "Transfer-Encoding %r sent to an HTTP/1.0 client" % r.header("Transfer-Encoding"))
    env.note("%s%s: 256 MiB in %.2f s, sha256 %s" % (mode, " (HTTP/1.0)" if http10 else "",
                                                  took, r.sink.sha256[:16]))
    if http10:
        # The origin sends chunked only to an HTTP/1.1 request: say whether
        # the proxy's dechunking path was the one exercised.
        h = env.curl(["--http1.0", "--fail-with-body", proxy().url + "/headers"])
        check(h.rc == 0, h.describe())
        env.note("an HTTP/1.0 client's request reaches the origin as %r"
                 % json.loads(h.body)["request_line"])


# ---------------------------------------------------------------------------
# Message framing on one raw client connection
# ---------------------------------------------------------------------------

def head_then_get(mode):
    with HttpConn(proxy().port) as c:
        c.request("HEAD", "/bytes/1M?mode=%s" % mode)
        r = c.read_response("HEAD")
        check(r.status == 200, "HEAD status %s" % r.status)
        if mode == "cl":
            check(r.get("Content-Length") == "1048576",
                  "HEAD Content-Length %r, expected 1048576" % r.get("Content-Length"))
        check(r.get("Content-Type") == "application/octet-stream",
              "HEAD Content-Type %r" % r.get("Content-Type"))
        # No body may follow a HEAD response: the next bytes on the wire must
        # be the GET's status line, which read_response checks.
        c.request("GET", "/bytes/1M?mode=%s" % mode)
        sink = PatternSink()
        r = c.read_response("GET", sink=sink)
        check(r.status == 200, "GET after HEAD: status %s" % r.status)
        sink.check(MiB, "GET after HEAD")


def no_body_statuses():
    with HttpConn(proxy().port) as c:
        c.request("GET", "/status/204")
        r = c.read_response()
        check(r.status == 204, "status %s, expected 204" % r.status)
        check(r.get("Content-Length") is None, "204 carries Content-Length %r" % r.get("Content-Length"))
        check(r.get("Transfer-Encoding") is None, "204 carries Transfer-Encoding")

        c.request("GET", "/status/304")
        r = c.read_response()
        check(r.status == 304, "status %s, expected 304" % r.status)
        check(r.get("ETag") == '"status-304"', "304 ETag %r" % r.get("ETag"))
        check(r.get("Transfer-Encoding") is None, "304 carries Transfer-Encoding")

        # If the proxy had put a body (or a last-chunk) after either, this
        # request's response would not parse.
        c.request("GET", "/bytes/10k")
        sink = PatternSink()
        r = c.read_response(sink=sink)
        check(r.status == 200, "request after 204/304: status %s" % r.status)
        sink.check(10 * KiB, "request after 204/304")


def keep_alive_three():
    plan = [("/bytes/1M?mode=cl", MiB), ("/bytes/3M?mode=chunked", 3 * MiB),
            ("/bytes/100k", 100 * KiB)]
    with HttpConn(proxy().port) as c:
        for target, n in plan:
            c.request("GET", target)
            sink = PatternSink()
            r = c.read_response(sink=sink)
            check(r.status == 200, "%s: status %s" % (target, r.status))
            check("close" not in r.tokens("connection"),
                  "%s: proxy answered Connection: close to a keep-alive request" % target)
            sink.check(n, target)
        check(not c.at_eof(0.3), "proxy closed the kept-alive connection after 3 requests")


def curl_reuse():
    base = proxy().url
    r = env.curl(["--http1.1", "-o", "/dev/null", "-o", "/dev/null",
                  base + "/bytes/1M", base + "/bytes/2M?mode=chunked"],
                 write_out=["http_code", "num_connects", "size_download"])
    check(r.rc == 0, r.describe())
    w = r.write_out
    check(w.get("http_code") == ["200", "200"], "http codes %r" % w.get("http_code"))
    check(w.get("size_download") == [str(MiB), str(2 * MiB)],
          "sizes %r" % w.get("size_download"))
    # num_connects is per transfer: 1 for the first, 0 if the second reused it.
    check(w.get("num_connects") == ["1", "0"],
          "num_connects %r: curl did not reuse the connection" % w.get("num_connects"))


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------

def make_file(size):
    """A file of `size` random bytes in the temp dir; returns (path, sha256)."""
    path = env.path("upload.bin")
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(left, 4 * MiB)
            f.write(os.urandom(k))
            left -= k
    return path, harness.sha256_file(path)


def post(size, chunked):
    path, sha = make_file(size)
    try:
        args = ["--http1.1", "--fail-with-body", "--data-binary", "@" + path,
                "-H", "Content-Type: application/octet-stream"]
        if chunked:
            args += ["-H", "Transfer-Encoding: chunked"]
        t0 = time.monotonic()
        r = env.curl(args + [proxy().url + "/sha256"], timeout=60)
        took = time.monotonic() - t0
    finally:
        os.unlink(path)
    check(r.rc == 0, r.describe())
    try:
        got = json.loads(r.body)
    except ValueError:
        raise AssertionError("reply is not JSON: %r" % r.body[:200])
    check(got["length"] == size, "origin got %d bytes, sent %d" % (got["length"], size))
    check(got["sha256"] == sha, "origin sha256 %s != file %s" % (got["sha256"], sha))
    env.note("POST %d MiB %s: %.2f s; origin saw chunked=%s"
             % (size // MiB, "chunked" if chunked else "with Content-Length", took, got["chunked"]))


def expect_continue():
    """A client that sends Expect: 100-continue and waits for the 100 before
    the body (as RFC 9110 10.1.1 lets it) gets it through the proxy."""
    body = os.urandom(MiB)
    with HttpConn(proxy().port, timeout=5) as c:
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n"
               b"Expect: 100-continue\r\n\r\n" % len(body))
        # Bounded, not timed: the client waits for the 100 before the body.
        c.sock.settimeout(30)
        try:
            head = c._head()
        except socket.timeout:
            raise AssertionError("no 100 Continue within 30 s")
        check(head.startswith(b"HTTP/1.1 100"), "expected 100 Continue first, got %r" % head[:60])
        c.sock.settimeout(10)
        c.send(body)
        r = c.read_response()
        check(r.status == 200, "status %s" % r.status)
        got = json.loads(r.body)
        check(got["sha256"] == hashlib.sha256(body).hexdigest() and got["length"] == MiB,
              "origin got %r" % got)


def early_hints():
    with HttpConn(proxy().port) as c:
        c.request("GET", "/early-hints")
        r = c.read_response()
        check([s for s, _ in r.interim] == [103],
              "interim responses %r, expected one 103" % [s for s, _ in r.interim])
        links = [v for n, v in r.interim[0][1] if n.lower() == "link"]
        check(links == ["</a.css>; rel=preload"], "103 Link %r" % links)
        check(r.status == 200, "final status %s" % r.status)
        check(r.body == b"early hints done\n", "final body %r" % r.body)


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------

def hop_by_hop():
    sent = [
        ("Connection", "keep-alive, X-Drop-Me"),
        ("Keep-Alive", "timeout=9"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Drop-Me", "named in Connection"),
        ("X-Keep-Me", "end-to-end"),
        ("X-Forwarded-For", "192.0.2.1"),
    ]
    with HttpConn(proxy().port) as c:
        c.request("GET", "/headers", headers=sent)
        r = c.read_response()
    check(r.status == 200, "status %s" % r.status)
    seen = json.loads(r.body)["headers"]
    names = [n.lower() for n, _ in seen]
    for hop in ("te", "upgrade", "proxy-connection", "x-drop-me"):
        check(hop not in names, "%s was forwarded to the origin: %r" % (hop, seen))
    # The proxy may send Connection (e.g. "close") and Keep-Alive of its own
    # to the origin, but not the client's.
    conn_tokens = {t.strip().lower() for n, v in seen if n.lower() == "connection"
                   for t in v.split(",")}
    check(conn_tokens <= {"close", "keep-alive"},
          "the client's Connection tokens were forwarded: %r" % sorted(conn_tokens))
    check(not any(n.lower() == "keep-alive" and v == "timeout=9" for n, v in seen),
          "the client's Keep-Alive was forwarded: %r" % seen)
    keep = [v for n, v in seen if n.lower() == "x-keep-me"]
    check(keep == ["end-to-end"], "X-Keep-Me forwarded as %r" % keep)
    check("host" in names, "no Host forwarded")
    via = ", ".join(v for n, v in seen if n.lower() == "via")
    check("sluice" in via.lower(), "request Via %r lacks sluice" % via)
    xff = [t.strip() for n, v in seen if n.lower() == "x-forwarded-for" for t in v.split(",")]
    check(xff == ["192.0.2.1", "127.0.0.1"],
          "X-Forwarded-For %r, expected the client's value then 127.0.0.1" % xff)

    # The response: the origin's hop-by-hop fields do not reach the client.
    check(r.get("X-Origin-Hop") is None, "X-Origin-Hop (named in the origin's Connection) passed")
    check("timeout=5" not in r.all("Keep-Alive"), "the origin's Keep-Alive passed")
    check("x-origin-hop" not in r.tokens("connection"),
          "the origin's Connection tokens passed: %r" % r.all("Connection"))
    check(r.get("X-Origin-Id") == "a", "end-to-end X-Origin-Id %r" % r.get("X-Origin-Id"))
    check("sluice" in (r.get("Via") or "").lower(), "response Via %r lacks sluice" % r.get("Via"))


# ---------------------------------------------------------------------------
# Upstream selection
# ---------------------------------------------------------------------------

def origin_ids(port, count, target="/bytes/1k"):
    ids = []
    for i in range(count):
        r = harness.get(port, target)
        check(r.status == 200, "request %d: status %s" % (i + 1, r.status))
        ids.append(r.get("X-Origin-Id"))
    return ids


def round_robin():
    a = env.start_origin(id="rr-a")
    b = env.start_origin(id="rr-b")
    px = env.start_proxy(config([a.addr, b.addr], upstream={"balance": "round-robin"}),
                         name="proxy-rr")
    ids = origin_ids(px.port, 4)
    counts = collections.Counter(ids)
    check(counts == {"rr-a": 2, "rr-b": 2}, "4 requests went to %r" % ids)
    check(ids[0] != ids[1] and ids[1] != ids[2], "not alternating: %r" % ids)


def least_conn():
    a = env.start_origin(id="lc-a")
    b = env.start_origin(id="lc-b")
    px = env.start_proxy(config([a.addr, b.addr], upstream={"balance": "least-conn"}),
                         name="proxy-lc")
    check(set(origin_ids(px.port, 2)) <= {"lc-a", "lc-b"}, "unknown origin id")
    # Hold one request open on one origin (head sent, body stalled) ...
    with HttpConn(px.port) as held:
        held.request("GET", "/stall-after/1k?total=2k&for=20")
        r = held.read_response(head_only=True)
        busy = r.get("X-Origin-Id")
        check(busy in ("lc-a", "lc-b"), "held request: origin id %r" % busy)
        # ... then every new request must go to the other one.
        ids = origin_ids(px.port, 3)
        other = "lc-b" if busy == "lc-a" else "lc-a"
        check(ids == [other] * 3,
              "with one request open on %s, 3 new requests went to %r" % (busy, ids))


def dead_upstream_skipped():
    dead = "127.0.0.1:%d" % harness.free_port_refused()
    alive = env.start_origin(id="alive")
    px = env.start_proxy(config([dead, alive.addr]), name="proxy-dead")
    ids = origin_ids(px.port, 4)
    check(ids == ["alive"] * 4, "with one refusing upstream, answers came from %r" % ids)


def socket_options_logged():
    """The socket settings are applied and read back with getsockopt at
    debug level: SO_RCVBUF/SO_SNDBUF come back doubled by the kernel."""
    import re
    px = env.start_proxy(config(
        [S["origin"].addr],
        upstream={"rcvbuf": "128k", "window_clamp": "40k", "user_timeout": "5s"},
        client={"sndbuf": "256k", "user_timeout": "7s"},
        log={"level": "debug"}), name="proxy-sockopt")
    r = harness.get(px.port, "/bytes/64k")
    check(r.status == 200, "status %s" % r.status)
    env.stop_clean(px)
    log = open(px.log_path, "rb").read().decode(errors="replace")
    up = re.search(r"upstream \S+ socket: (.*)", log)
    cl = re.search(r"client \S+ socket: (.*)", log)
    check(up and cl, "no socket read-back lines at debug level: %r" % log[-800:])
    env.note("upstream: %s" % up.group(1))
    env.note("client: %s" % cl.group(1))
    check("rcvbuf=262144" in up.group(1), "upstream SO_RCVBUF not 2*128k: %s" % up.group(1))
    check("window_clamp=40960" in up.group(1), "upstream clamp not 40k: %s" % up.group(1))
    check("user_timeout=5000ms" in up.group(1), "upstream user_timeout: %s" % up.group(1))
    check("sndbuf=524288" in cl.group(1), "client SO_SNDBUF not 2*256k: %s" % cl.group(1))
    check("user_timeout=7000ms" in cl.group(1), "client user_timeout: %s" % cl.group(1))


env.case("setup: origin and proxy start", setup, keep_processes=True)
env.case("256 MiB Content-Length body byte-exact", relay_256m, "cl")
env.case("256 MiB chunked body byte-exact", relay_256m, "chunked")
env.case("256 MiB close-delimited body byte-exact", relay_256m, "close")
env.case("256 MiB chunked body to an HTTP/1.0 client, dechunked", relay_256m, "chunked", True)
env.case("HEAD then GET on one connection (Content-Length)", head_then_get, "cl")
env.case("HEAD then GET on one connection (chunked)", head_then_get, "chunked")
env.case("204 and 304 without body, connection reusable", no_body_statuses)
env.case("three requests on one kept-alive connection", keep_alive_three)
env.case("curl reuses the connection for two URLs", curl_reuse)
env.case("100 MiB POST with Content-Length", post, 100 * MiB, False)
env.case("32 MiB chunked POST", post, 32 * MiB, True)
env.case("Expect: 100-continue gets 100 Continue", expect_continue)
env.case("103 Early Hints forwarded before the 200", early_hints)
env.case("hop-by-hop headers removed, Via and X-Forwarded-For added", hop_by_hop)
env.case("round-robin over two origins", round_robin)
env.case("least-conn avoids the busy origin", least_conn)
env.case("refusing upstream skipped, next server used", dead_upstream_skipped)
env.case("socket options applied and read back at debug level", socket_options_logged)
env.case("proxy still running after all cases", lambda: check(proxy().alive(), "proxy exited"))
env.case("proxy exits 0 on SIGTERM (no leak or memory error reported)",
         lambda: env.stop_clean(proxy()))
env.finish()
