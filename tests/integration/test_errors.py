#!/usr/bin/env python3
"""Error tests: bad requests get their 4xx, upstream failures their 5xx, and
a response the upstream cuts short is never passed off as complete.

    python3 tests/integration/test_errors.py --sluice build/sluice --origin tests/origin.py
"""

import os
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, KiB, HttpConn, PatternSink, check, config  # noqa: E402

env = harness.Env(__doc__)
S = {}


def proxy():
    check("proxy" in S, "no proxy: the setup case failed")
    return S["proxy"]


def setup():
    S["origin"] = env.start_origin(id="e")
    S["proxy"] = env.start_proxy(config(
        [S["origin"].addr],
        upstream={"read_timeout": "1s"},
        client={"max_header_size": "4k"}))
    env.note("origin on %s, proxy pid %d on port %d (read_timeout 1s, max_header_size 4k)"
             % (S["origin"].addr, S["proxy"].pid, S["proxy"].port))


def send_raw(data, port=None):
    """Send raw bytes on a fresh connection; return (response, connection).
    The caller closes the connection."""
    c = HttpConn(port or proxy().port, timeout=10)
    try:
        c.send(data)
        return c.read_response(deadline=10), c
    except Exception:
        c.close()
        raise


# ---------------------------------------------------------------------------
# Bad requests
# ---------------------------------------------------------------------------

def bad_request(data):
    r, c = send_raw(data)
    with c:
        check(r.status == 400, "status %s, expected 400" % r.status)
        check("close" in r.tokens("connection"),
              "400 without Connection: close (Connection %r)" % r.all("Connection"))
        ctype = r.get("Content-Type") or ""
        check(ctype.startswith("text/"), "400 Content-Type %r, expected text/*" % ctype)
        check(0 < len(r.body) <= 1024, "400 body of %d bytes, expected a short text" % len(r.body))
        check(c.at_eof(30.0), "proxy kept the connection open 30 s after a 400")


def head_too_large():
    # 8 fields of 1000 bytes: ~8 KiB of head against max_header_size = 4k.
    fill = "".join("X-Fill-%d: %s\r\n" % (i, "f" * 1000) for i in range(8))
    r, c = send_raw(("GET /bytes/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % fill).encode())
    c.close()
    check(r.status == 431, "status %s, expected 431" % r.status)


def head_under_limit():
    # The control for the case above: ~3 KiB of head is served normally.
    fill = "".join("X-Fill-%d: %s\r\n" % (i, "f" * 1000) for i in range(3))
    r, c = send_raw(("GET /bytes/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n%s\r\n" % fill).encode())
    c.close()
    check(r.status == 200, "status %s, expected 200" % r.status)
    check(r.body == harness.pattern()[:KiB], "body not the 1 KiB pattern")


def bad_framing(data):
    r, c = send_raw(data)
    c.close()
    check(r.status == 400, "status %s, expected 400" % r.status)


# ---------------------------------------------------------------------------
# Upstream failures before the response head
# ---------------------------------------------------------------------------

def all_upstreams_refused():
    dead = ["127.0.0.1:%d" % harness.free_port_refused() for _ in range(2)]
    px = env.start_proxy(config(dead), name="proxy-refused")
    r = harness.get(px.port, "/bytes/1k")
    check(r.status == 502, "status %s, expected 502" % r.status)
    check(px.alive(), "proxy exited after a refused upstream")


def connect_timeout():
    """An upstream whose accept queue is full drops our SYN (Linux, with
    tcp_abort_on_overflow 0), so the connect hangs: a real connect timeout
    on loopback.  connect_timeout 1s -> 504, in about a second."""
    import socket
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        # Fill the accept queue (backlog 0 holds one), never accept; each
        # filler connect is bounded.
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        px = env.start_proxy(config(["127.0.0.1:%d" % port],
                                    upstream={"connect_timeout": "1s"}),
                             name="proxy-connect-timeout")
        t0 = time.monotonic()
        r = harness.get(px.port, "/bytes/1k", timeout=15)
        took = time.monotonic() - t0
        env.note("full accept queue -> %s after %.2f s" % (r.status, took))
        check(r.status == 504, "status %s, expected 504" % r.status)
        check("close" in r.tokens("connection"), "504 without Connection: close")
        env.stop_clean(px)
    finally:
        for f in fillers:
            f.close()
        lst.close()


def status_of(target, expected):
    t0 = time.monotonic()
    r = harness.get(proxy().port, target, timeout=15)
    took = time.monotonic() - t0
    check(r.status == expected, "status %s, expected %d" % (r.status, expected))
    env.note("%s -> %d after %.2f s" % (target, r.status, took))


# ---------------------------------------------------------------------------
# Upstream failures in the middle of the body
# ---------------------------------------------------------------------------

def truncated(target, total):
    """The upstream promises `total` bytes (or a chunked body) and stops
    early. The client must see an error: curl exits non-zero with fewer
    bytes than promised, all of them correct; or a 5xx status.  (A proxy
    that waited out the origin's 20 s stall would pass the whole body on:
    curl would exit 0, which fails below; -m 60 only bounds the wait.)"""
    t0 = time.monotonic()
    r = env.curl(["--http1.1", "-m", "60", proxy().url + target], timeout=75)
    took = time.monotonic() - t0
    env.note("%s: curl rc=%s status=%s got %d bytes in %.2f s" %
             (target, r.rc, r.status(), r.sink.length, took))
    check(r.rc != 28, "curl timed out after 60 s: the proxy never ended the response "
                      "(%d bytes received)" % r.sink.length)
    if r.status() in (502, 504):
        return              # failed before any body byte reached the client: visible
    check(r.status() == 200, r.describe())
    check(r.rc != 0, "curl saw a clean, complete response of %d bytes: the truncation "
                     "was hidden from the client" % r.sink.length)
    if total is not None:
        check(r.sink.length < total, "got %d of %d bytes yet curl failed" % (r.sink.length, total))
    check(r.sink.is_pattern_prefix(), "the bytes received are not the pattern (first bad "
                                      "offset %s)" % r.sink.first_bad)


def still_serving():
    check(proxy().alive(), "proxy process exited (status %s)" % proxy().popen.poll())
    with HttpConn(proxy().port) as c:
        c.request("GET", "/bytes/1M")
        sink = PatternSink()
        r = c.read_response(sink=sink)
        check(r.status == 200, "status %s" % r.status)
        sink.check(MiB)


def client_leaves_mid_body(rst):
    """A client that goes away mid-download, with FIN or RST, while the
    proxy still has the upstream open: the proxy must tear both down
    cleanly (this once read freed memory in the upstream's close callback)
    and keep serving."""
    import socket
    import struct
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", proxy().port), timeout=10)
        s.sendall(b"GET /bytes/256M HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < MiB:
            b = s.recv(65536)
            check(b, "connection closed after %d bytes" % got)
            got += len(b)
        if rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.3)
    still_serving()


H = b"Host: 127.0.0.1\r\n"
env.case("setup: origin and proxy start", setup, keep_processes=True)
env.case("malformed request line -> 400, close", bad_request, b"THIS IS NOT HTTP\r\n\r\n")
env.case("bad HTTP version -> 400, close", bad_request, b"GET / HTTP/9.Z\r\n" + H + b"\r\n")
env.case("header line without colon -> 400, close", bad_request,
         b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n")
env.case("8 KiB request head over max_header_size 4k -> 431", head_too_large)
env.case("3 KiB request head under max_header_size -> 200", head_under_limit)
env.case("Content-Length with Transfer-Encoding -> 400", bad_framing,
         b"POST /sha256 HTTP/1.1\r\n" + H +
         b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
env.case("two differing Content-Length -> 400", bad_framing,
         b"POST /sha256 HTTP/1.1\r\n" + H +
         b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
env.case("all upstreams refuse -> 502", all_upstreams_refused)
env.case("connect timeout (upstream accept queue full) -> 504", connect_timeout)
env.case("upstream answers garbage -> 502", status_of, "/garbage", 502)
env.case("upstream head slower than read_timeout 1s -> 504", status_of, "/slow-head/5", 504)
env.case("upstream reset mid-body (Content-Length) is visible", truncated,
         "/reset-after/1M?total=4M", 4 * MiB)
env.case("upstream FIN mid-body (Content-Length) is visible", truncated,
         "/close-after/1M?total=4M", 4 * MiB)
env.case("upstream stalls mid-body past read_timeout is visible", truncated,
         "/stall-after/1M?total=4M&for=20", 4 * MiB)
env.case("upstream reset mid-body (chunked) is visible", truncated,
         "/reset-after/1M?mode=chunked", None)
env.case("upstream FIN mid-body (chunked) is visible", truncated,
         "/close-after/1M?mode=chunked", None)
env.case("client closes mid-body (FIN): proxy cleans up, keeps serving",
         client_leaves_mid_body, False)
env.case("client resets mid-body (RST): proxy cleans up, keeps serving",
         client_leaves_mid_body, True)
env.case("proxy still alive and serving after all errors", still_serving)
env.case("proxy exits 0 on SIGTERM (no leak or memory error reported)",
         lambda: env.stop_clean(proxy()))
env.finish()
