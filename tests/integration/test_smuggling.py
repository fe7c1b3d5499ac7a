#!/usr/bin/env python3
"""Smuggling and lenient-parsing tests (issue 13, defects 4, 7 and 13): what
the proxy forwards is framed exactly once, whatever the client or the
upstream says in Connection, and what RFC 9112 says to reject is answered
with nginx's status, never passed on.

The upstream is a raw socket in this script that records every byte the
proxy sends it on each connection (up to the proxy's close), so a request
smuggled inside another one's body shows as bytes after the first request.

    python3 tests/integration/test_smuggling.py --sluice build/sluice --origin tests/origin.py
"""

import os
import queue
import socket
import sys
import threading

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, HttpConn, check, config  # noqa: E402

env = harness.Env(__doc__)
S = {}

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Request:
    """One connection's bytes as the upstream received them."""

    def __init__(self):
        self.head = b""         # up to and including the empty line
        self.body = b""         # what its framing says the body is
        self.extra = b""        # bytes after that, up to the proxy's close
        self.error = None

    def headers(self):
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        out = []
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                out.append((name.lower(), value.strip(" \t")))
        return out

    def all(self, name):
        return [v for n, v in self.headers() if n == name]

    def line(self):
        return self.head.split(b"\r\n", 1)[0]


class RawUpstream(harness.ThreadedServer):
    """Accepts connections on 127.0.0.1:0; on each, reads one request head
    and its body by its framing, answers with the next scripted response
    (OK_RESPONSE by default), then reads what else comes until the proxy
    closes.  Each connection's Request goes to self.got."""

    def __init__(self):
        self.got = queue.Queue()
        self.responses = queue.Queue()
        super().__init__(backlog=64)

    def script(self, *responses):
        """The responses of the next connections, in order."""
        while not self.responses.empty():
            self.responses.get_nowait()
        for r in responses:
            self.responses.put(r)

    def drain(self):
        while not self.got.empty():
            self.got.get_nowait()

    def next(self, timeout=10.0):
        try:
            return self.got.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the upstream got no request in %.0f s" % timeout)

    def _conn(self, c):
        req = Request()
        buf = bytearray()
        c.settimeout(10)

        def fill():
            data = c.recv(65536)
            if not data:
                raise EOFError("EOF")
            buf.extend(data)

        try:
            while b"\r\n\r\n" not in buf:
                fill()
            i = buf.index(b"\r\n\r\n") + 4
            req.head = bytes(buf[:i])
            del buf[:i]
            te = [t.strip().lower() for v in req.all("transfer-encoding") for t in v.split(",")]
            cl = req.all("content-length")
            if te and te[-1] == "chunked":
                body = bytearray()
                while True:
                    while b"\r\n" not in buf:
                        fill()
                    j = buf.index(b"\r\n")
                    size = int(bytes(buf[:j]).split(b";")[0], 16)
                    del buf[:j + 2]
                    while len(buf) < size + 2:
                        fill()
                    body += buf[:size]
                    del buf[:size + 2]
                    if size == 0:
                        break
                req.body = bytes(body)
            elif cl:
                while len(buf) < int(cl[0]):
                    fill()
                req.body = bytes(buf[:int(cl[0])])
                del buf[:int(cl[0])]
            try:
                resp = self.responses.get_nowait()
            except queue.Empty:
                resp = OK_RESPONSE
            c.sendall(resp)
            # What else the proxy sends on this connection: nothing, if the
            # request was framed as it should be.  Bounded by the timeout.
            c.shutdown(socket.SHUT_WR)
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        break
                    buf.extend(data)
            except (socket.timeout, ConnectionResetError):
                pass
            req.extra = bytes(buf)
        except Exception as e:
            req.error = "%s: %s" % (type(e).__name__, e)
            req.extra = bytes(buf)
        finally:
            c.close()
            self.got.put(req)


def proxy():
    check("proxy" in S, "no proxy: the setup case failed")
    return S["proxy"]


def up():
    return S["upstream"]


def setup():
    S["upstream"] = RawUpstream()
    S["proxy"] = env.start_proxy(config([S["upstream"].addr]))
    env.note("raw upstream on %s, proxy pid %d on port %d (max_header_size 32k)"
             % (up().addr, proxy().pid, proxy().port))


def exchange(data, read=True):
    """Sends raw bytes on a fresh connection; returns the response."""
    with HttpConn(proxy().port, timeout=15) as c:
        c.send(data)
        return c.read_response(deadline=15) if read else None


def framed_once(req, body):
    """The upstream got one request carrying body, framed, then nothing."""
    check(req.error is None, "upstream: %s (head %r, then %r)"
          % (req.error, req.head[:300], req.extra[:200]))
    check(req.body == body, "upstream got body %r, expected %r (head %r)"
          % (req.body[:100], body[:100], req.head[:300]))
    check(req.extra == b"", "upstream got bytes after the request: %r (head %r)"
          % (req.extra[:200], req.head[:300]))


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def connection_content_length():
    up().drain()
    r = exchange(b"POST /a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Content-Length\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
    check(r.status == 200, "status %s, expected 200" % r.status)
    req = up().next()
    check(req.all("content-length") == [str(len(SMUGGLED))],
          "upstream head without the Content-Length (%r)" % req.head[:300])
    framed_once(req, SMUGGLED)


def connection_transfer_encoding():
    # Control: Transfer-Encoding is the proxy's own framing, re-added.
    up().drain()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    r = exchange(b"POST /a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Transfer-Encoding\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + body)
    check(r.status == 200, "status %s, expected 200" % r.status)
    req = up().next()
    check(req.all("transfer-encoding") == ["chunked"],
          "upstream head without Transfer-Encoding: chunked (%r)" % req.head[:300])
    framed_once(req, SMUGGLED)


def connection_host():
    up().drain()
    r = exchange(b"GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Host\r\n\r\n")
    check(r.status == 200, "status %s, expected 200" % r.status)
    req = up().next()
    check(req.all("host") == ["example.test"], "upstream Host %r, expected example.test"
          % req.all("host"))


def response_connection_content_length():
    """An upstream's Connection: Content-Length must not leave a keep-alive
    response unframed: two in a row on one client connection."""
    up().drain()
    up().script(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nworld")
    try:
        with HttpConn(proxy().port, timeout=15) as c:
            for want in (b"hello", b"world"):
                c.request("GET", "/r")
                r = c.read_response(head_only=True)
                check(r.status == 200, "status %s, expected 200" % r.status)
                check(r.get("content-length") == "5" or r.tokens("transfer-encoding")
                      == ["chunked"], "response without framing (%r)" % r.raw_head[:300])
                c.read_body(r, deadline=15)
                check(r.body == want, "body %r, expected %r" % (r.body[:60], want))
    finally:
        up().script()


def send_all_quietly(sock, data):
    """Sends data from a thread; the proxy may answer and close first."""
    def run():
        try:
            sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def whitespace_head():
    """5 MB of optional whitespace before a value: every byte counts."""
    up().drain()
    data = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad:" + b" " * (5 * MiB)
            + b"v\r\n\r\n")
    c = HttpConn(proxy().port, timeout=15)
    try:
        t = send_all_quietly(c.sock, data)
        r = c.read_response(deadline=15)
        check(r.status == 431, "status %s, expected 431" % r.status)
        check("close" in r.tokens("connection"), "431 without Connection: close")
    finally:
        c.close()
        t.join(15)


def blank_lines_head():
    """Blank lines before the request line count too."""
    up().drain()
    data = b"\r\n" * (64 * 1024) + b"GET /bl HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    c = HttpConn(proxy().port, timeout=15)
    try:
        t = send_all_quietly(c.sock, data)
        r = c.read_response(deadline=15)
        check(r.status == 431, "status %s, expected 431" % r.status)
    finally:
        c.close()
        t.join(15)


def refused(data, status):
    up().drain()
    with HttpConn(proxy().port, timeout=15) as c:
        c.send(data)
        r = c.read_response(deadline=15)
        check(r.status == status, "status %s, expected %d" % (r.status, status))
        check("close" in r.tokens("connection"),
              "%d without Connection: close" % status)
        check(c.at_eof(15.0), "connection still open 15 s after a %d" % status)
    check(up().got.empty(), "the refused request reached the upstream")


def http10_without_host():
    up().drain()
    r = exchange(b"GET /old HTTP/1.0\r\n\r\n")
    check(r.status == 200, "status %s, expected 200" % r.status)
    req = up().next()
    check(req.line() == b"GET /old HTTP/1.1", "request line %r" % req.line())
    check(req.all("host") == [up().addr], "upstream Host %r, expected [%r] (head %r)"
          % (req.all("host"), up().addr, req.head[:300]))


def bad_response(response, status=502):
    up().drain()
    up().script(response)
    try:
        r = exchange(b"GET /bad HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        check(r.status == status, "status %s, expected %d (body %r)"
              % (r.status, status, (r.body or b"")[:100]))
    finally:
        up().script()


def interim_with_content_length():
    """A 1xx has no content whatever its fields say (RFC 9110 15.2):
    llhttp 8 would read a Content-Length body after it, handing the
    client the next response's first bytes raw."""
    up().drain()
    up().script(b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        r = exchange(b"GET /interim HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        check(r.status == 200 and r.body == b"ok", "status %s body %r (interim %r)"
              % (r.status, r.body, r.interim))
        for status, headers in r.interim:
            names = [n.lower() for n, _ in headers]
            check("content-length" not in names and "transfer-encoding" not in names,
                  "the %d toward the client carries framing: %r" % (status, headers))
    finally:
        up().script()


def head_error_has_no_body():
    """The proxy's own error answer to HEAD is a head alone (RFC 9110
    9.3.2): a body after it would be read as the next response."""
    up().drain()
    up().script(b"NOT HTTP AT ALL\r\n\r\n")
    try:
        with HttpConn(proxy().port, timeout=15) as c:
            c.send(b"HEAD /gone HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r = c.read_response(method="HEAD", deadline=15)
            check(r.status == 502, "status %s, expected 502" % r.status)
            rest = bytes(c.buf)
            c.sock.settimeout(5)
            try:
                while True:
                    d = c.sock.recv(4096)
                    if not d:
                        break
                    rest += d
            except OSError:
                pass
            check(rest == b"", "bytes after the head of a HEAD's 502: %r" % rest[:100])
    finally:
        up().script()


def still_serving():
    up().drain()
    r = exchange(b"GET /end HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    check(r.status == 200 and r.body == b"ok", "status %s body %r" % (r.status, r.body))
    check(proxy().alive(), "proxy died")


GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
env.case("setup: raw upstream and proxy start", setup, keep_processes=True)
env.case("Connection: Content-Length on a POST: upstream gets one framed request",
         connection_content_length)
env.case("Connection: Transfer-Encoding on a chunked POST: framed once (control)",
         connection_transfer_encoding)
env.case("Connection: Host: upstream still gets the client's Host",
         connection_host)
env.case("response Connection: Content-Length, keep-alive: both framed",
         response_connection_content_length)
env.case("5 MB of whitespace in a head over max_header_size 32k -> 431",
         whitespace_head)
env.case("128 KiB of blank lines before a request line -> 431", blank_lines_head)
env.case("tab in the request target -> 400", refused,
         b"GET /a\tb HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400)
env.case("empty header name (': v') -> 400", refused, GET + b": v\r\n\r\n", 400)
env.case("obs-fold (a folded header line) -> 400", refused,
         GET + b"X-A: a\r\n b\r\n\r\n", 400)
env.case("space in a header name -> 400", refused, GET + b"X A: b\r\n\r\n", 400)
env.case("space before a header's colon -> 400", refused, GET + b"X-A : b\r\n\r\n", 400)
env.case("request Transfer-Encoding: gzip -> 501", refused,
         b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501)
env.case("request Transfer-Encoding: gzip, chunked -> 501", refused,
         b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\n\r\n", 501)
env.case("HTTP/1.0 without Host: upstream gets Host (the server's address)",
         http10_without_host)
env.case("upstream Transfer-Encoding: gzip, chunked -> 502", bad_response,
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
env.case("upstream Transfer-Encoding: gzip -> 502", bad_response,
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc")
env.case("bare CR in the upstream status line -> 502", bad_response,
         b"HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nhi")
env.case("upstream obs-fold -> 502", bad_response,
         b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi")
env.case("upstream 100 with Content-Length, then 200: the client gets 100 (no framing) and 200",
         interim_with_content_length)
env.case("the proxy's 502 to a HEAD is a head alone", head_error_has_no_body)
env.case("proxy still serving after all of the above", still_serving)
env.case("proxy exits 0 on SIGTERM (no leak or memory error reported)",
         lambda: env.stop_clean(proxy()))
if "upstream" in S:
    S["upstream"].stop()
env.finish()
