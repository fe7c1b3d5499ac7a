#!/usr/bin/env python3
"""sluice test origin: a small but real HTTP/1.1 server on raw sockets.

Used by the integration tests (tests/integration/) as the upstream behind
the proxy.  It is written on socket + threading rather than http.server so
that the framing of every response (Content-Length, chunked, close-delimited,
truncated, reset, stalled, garbage) is exactly what the endpoint says.

Usage:
    python3 tests/origin.py --listen 127.0.0.1:0 [--port-file F]
                            [--id ID] [--count-file F] [--idle-timeout S]

When ready it prints "listening on 127.0.0.1:PORT" to stdout (flushed) and,
with --port-file, writes PORT to that file.  One thread per connection.

Endpoints (all responses carry X-Origin-Id when --id is given):
  GET|HEAD /bytes/N[?mode=cl|chunked|close]   N pattern bytes (N: 123, 4k, 5M, 1G)
  GET      /status/N                           status N; no body for 204/304
  POST|PUT /sha256                             JSON {"length","sha256","chunked"}
  GET      /headers                            JSON of the request line and headers
  GET      /early-hints                        103 Early Hints, then 200
  GET      /reset-after/N?total=M[&mode=]      head, N bytes, then RST
  GET      /close-after/N?total=M[&mode=]      head, N bytes, then FIN
  GET      /stall-after/N?total=M&for=S        head, N bytes, S s of silence, close
  GET      /slow-head/S                        S s of silence, then 200
  GET      /garbage                            "NOT HTTP AT ALL" and close
  anything else                                404

The body pattern: byte i of every /bytes (and truncated) body is
PATTERN[i % PERIOD], PERIOD = 1048573 (a prime, so blocks that a relay
reorders or repeats are caught by the checksum), PATTERN = SHA-256 in counter
mode over SEED.  tests/integration/harness.py imports make_pattern() from
this file to compute expected digests.
"""

import argparse
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import select
import socket
import struct
import sys
import termios
import threading
import time
from urllib.parse import parse_qs, urlsplit

PERIOD = 1048573          # prime, ~1 MiB
SEED = b"sluice-test"

MAX_HEAD = 1 << 20        # the origin is lenient: limits are the proxy's job
MAX_LINE = 64 * 1024      # chunk-size lines, trailer lines
RECV_SIZE = 256 * 1024

_UNITS = {"": 1, "k": 1024, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def make_pattern():
    """The PERIOD-byte body pattern: SHA-256(SEED || counter) blocks."""
    out = bytearray()
    counter = 0
    while len(out) < PERIOD:
        out += hashlib.sha256(SEED + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:PERIOD])


def parse_size(text):
    """'123' -> 123, '4k' -> 4096, '5M', '1G' (1024-based). ValueError if bad."""
    m = re.fullmatch(r"(\d+)([kKMG]?)", text)
    if not m:
        raise ValueError("bad size %r" % text)
    return int(m.group(1)) * _UNITS[m.group(2)]


def _chunk_sizes():
    """A fixed, deterministic cycle of chunk sizes between 1 and 100000."""
    rng = random.Random(0x51CE)
    sizes = []
    for _ in range(997):
        r = rng.random()
        if r < 0.10:
            sizes.append(rng.randint(1, 16))          # tiny chunks
        elif r < 0.30:
            sizes.append(rng.randint(17, 8192))       # small
        else:
            sizes.append(rng.randint(8193, 100000))   # large
    return sizes


# Built once at start-up; PATTERN2 is the pattern twice, so that any run of
# up to PERIOD bytes starting at any offset is one contiguous slice.
PATTERN = None
PATTERN2 = None
CHUNK_SIZES = _chunk_sizes()

STATUS_REASONS = {
    100: "Continue", 103: "Early Hints", 200: "OK", 201: "Created",
    202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 418: "I'm a teapot", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class BadRequest(Exception):
    """The request cannot be parsed; answer 400 and close."""


class PeerGone(Exception):
    """The peer closed the connection (EOF) where more bytes were due."""


class Conn:
    """One accepted connection: buffered reading plus response helpers."""

    def __init__(self, sock, server):
        self.sock = sock
        self.server = server
        self.buf = bytearray()

    # ---- reading ------------------------------------------------------
    def _fill(self):
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self):
        """The request head without its final CRLFCRLF, or None on a clean EOF
        before any byte of a new request."""
        scan = 0
        while True:
            # RFC 9112 2.2: ignore at least one empty line before a request.
            while self.buf[:2] == b"\r\n":
                del self.buf[:2]
            i = self.buf.find(b"\r\n\r\n", max(0, scan - 3))
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("request head larger than %d" % MAX_HEAD)
            scan = len(self.buf)
            if not self._fill():
                if self.buf:
                    raise PeerGone()
                return None

    def read_line(self):
        scan = 0
        while True:
            i = self.buf.find(b"\r\n", max(0, scan - 1))
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > MAX_LINE:
                raise BadRequest("line too long")
            scan = len(self.buf)
            if not self._fill():
                raise PeerGone()

    def read_exact(self, n, sink):
        """Pass exactly n body bytes to sink(bytes-like), streaming."""
        if self.buf:
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take
        while n > 0:
            data = self.sock.recv(min(n, RECV_SIZE))
            if not data:
                raise PeerGone()
            sink(data)
            n -= len(data)

    def read_body(self, req, sink):
        """Read the request body per its framing. Returns True if chunked."""
        if req.chunked:
            while True:
                line = self.read_line()
                size_text = line.split(b";", 1)[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_text):
                    raise BadRequest("bad chunk size line %r" % line[:40])
                size = int(size_text, 16)
                if size == 0:
                    # Trailer section, ends with an empty line.
                    for _ in range(1000):
                        if self.read_line() == b"":
                            return True
                    raise BadRequest("too many trailer lines")
                self.read_exact(size, sink)
                if self.read_line() != b"":
                    raise BadRequest("chunk data not followed by CRLF")
        if req.length:
            self.read_exact(req.length, sink)
        return False

    def wait_silence(self, seconds):
        """Sleep up to `seconds`, but return early if the peer closes (EOF)
        or resets. Bytes the peer sends meanwhile are read and dropped."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if r:
                try:
                    if not self.sock.recv(RECV_SIZE):
                        return
                except OSError:
                    return

    # ---- writing ------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def send_pattern(self, offset, n):
        """Send n pattern bytes starting at pattern offset `offset`."""
        mv = memoryview(PATTERN2)
        while n > 0:
            start = offset % PERIOD
            k = min(n, PERIOD)
            self.sock.sendall(mv[start:start + k])
            offset += k
            n -= k

    def send_pattern_chunked(self, n, final=True):
        """Send n pattern bytes as chunks of the CHUNK_SIZES cycle; with
        final, end with the last-chunk and an empty trailer section."""
        mv = memoryview(PATTERN2)
        offset = 0
        idx = 0
        while offset < n:
            size = min(CHUNK_SIZES[idx % len(CHUNK_SIZES)], n - offset)
            idx += 1
            start = offset % PERIOD
            self.sendmsg_all([b"%x\r\n" % size, mv[start:start + size], b"\r\n"])
            offset += size
        if final:
            self.send(b"0\r\n\r\n")

    def sendmsg_all(self, buffers):
        """sendmsg() until every byte of every buffer has gone."""
        bufs = [memoryview(b) for b in buffers]
        while bufs:
            sent = self.sock.sendmsg(bufs)
            while bufs and sent >= len(bufs[0]):
                sent -= len(bufs[0])
                bufs.pop(0)
            if bufs and sent:
                bufs[0] = bufs[0][sent:]

    def head(self, status, headers, keep_alive):
        """Serialise a response head with the common headers."""
        lines = ["HTTP/1.1 %d %s" % (status, STATUS_REASONS.get(status, "Status"))]
        lines.append("Server: sluice-test-origin")
        if self.server.origin_id is not None:
            lines.append("X-Origin-Id: %s" % self.server.origin_id)
        # Hop-by-hop headers that the proxy must not pass on to its client:
        # Keep-Alive, the Connection header(s) themselves, and X-Origin-Hop,
        # which is named in a second Connection field line (RFC 9110 7.6.1:
        # every Connection line counts).
        lines.append("Connection: %s" % ("keep-alive" if keep_alive else "close"))
        lines.append("Keep-Alive: timeout=5")
        lines.append("X-Origin-Hop: yes")
        lines.append("Connection: X-Origin-Hop")
        lines.extend(headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def simple(self, req, status, body, keep_alive,
               ctype="text/plain; charset=utf-8", extra=()):
        if isinstance(body, str):
            body = body.encode()
        hdrs = ["Content-Type: %s" % ctype, "Content-Length: %d" % len(body)]
        hdrs.extend(extra)
        data = self.head(status, hdrs, keep_alive)
        if req is None or req.method != "HEAD":
            data += body
        self.send(data)

    def wait_outq_empty(self, limit):
        """Wait (bounded) until the kernel has no unacknowledged bytes queued
        for this socket, i.e. the peer's kernel holds all we sent."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            raw = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            if struct.unpack("i", raw)[0] == 0:
                return
            time.sleep(0.005)

    def lingering_close(self):
        """Graceful close: FIN, then read (bounded) until the peer closes so
        that unread request bytes don't turn our close() into a RST."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            got = 0
            while time.monotonic() < deadline and got < (1 << 20):
                r, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
                if not r:
                    break
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    break
                got += len(data)
        except OSError:
            pass
        self.sock.close()

    def abortive_close(self):
        """close() with SO_LINGER {1, 0}: the kernel sends a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class Request:
    def __init__(self, head):
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise BadRequest("undecodable head")
        lines = text.split("\r\n")
        self.request_line = lines[0]
        parts = self.request_line.split(" ")
        if len(parts) != 3 or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
            raise BadRequest("bad request line %r" % self.request_line[:80])
        self.method, self.target, self.version = parts
        self.headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise BadRequest("bad header line %r" % line[:80])
            self.headers.append([name, value.strip(" \t")])
        url = urlsplit(self.target)
        self.path = url.path
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}

        conn_tokens = {t.strip().lower() for v in self.all("connection") for t in v.split(",")}
        if self.version == "HTTP/1.1":
            self.keep_alive = "close" not in conn_tokens
        else:
            self.keep_alive = "keep-alive" in conn_tokens and "close" not in conn_tokens

        te = ",".join(self.all("transfer-encoding")).lower()
        cls = self.all("content-length")
        self.chunked = False
        self.length = 0
        if te:
            if cls:
                raise BadRequest("both Transfer-Encoding and Content-Length")
            codings = [c.strip() for c in te.split(",") if c.strip()]
            if not codings or codings[-1] != "chunked":
                raise BadRequest("unsupported transfer coding %r" % te)
            self.chunked = True
        elif cls:
            if len(set(cls)) != 1 or not re.fullmatch(r"\d{1,18}", cls[0]):
                raise BadRequest("bad Content-Length %r" % cls)
            self.length = int(cls[0])
        self.expect_continue = any(v.lower() == "100-continue" for v in self.all("expect"))

    def all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    @property
    def has_body(self):
        return self.chunked or self.length > 0


class Server:
    def __init__(self, args):
        self.args = args
        self.origin_id = args.id
        self.count_lock = threading.Lock()

    def note_connection(self, peer):
        if not self.args.count_file:
            return
        with self.count_lock:
            with open(self.args.count_file, "a") as f:
                f.write("%s %s:%d\n" % (self.origin_id or "-", peer[0], peer[1]))

    def serve(self, lsock):
        while True:
            sock, peer = lsock.accept()
            self.note_connection(peer)
            t = threading.Thread(target=self.handle, args=(sock, peer), daemon=True)
            t.start()

    def handle(self, sock, peer):
        sock.settimeout(self.args.idle_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock, self)
        try:
            while True:
                head = conn.read_head()
                if head is None:
                    break
                try:
                    req = Request(head)
                except BadRequest as e:
                    conn.simple(None, 400, "bad request: %s\n" % e, False)
                    break
                # Returns "keep" to read the next request, "closed" when the
                # endpoint already closed the socket itself, else "close".
                outcome = self.dispatch(conn, req)
                if outcome == "closed":
                    return
                if outcome != "keep":
                    break
        except (PeerGone, ConnectionError, socket.timeout, BrokenPipeError):
            pass
        except BadRequest as e:
            try:
                conn.simple(None, 400, "bad request: %s\n" % e, False)
            except OSError:
                pass
        except OSError as e:
            if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF):
                print("origin: %s: %r" % (peer, e), file=sys.stderr, flush=True)
        except Exception as e:  # report and drop the connection, keep serving
            print("origin: %s: unexpected %r" % (peer, e), file=sys.stderr, flush=True)
        try:
            conn.lingering_close()
        except OSError:
            pass

    # ---- endpoints ------------------------------------------------------
    def dispatch(self, conn, req):
        ka = req.keep_alive
        parts = req.path.split("/")[1:]        # "/bytes/4k" -> ["bytes", "4k"]
        name = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else None

        if name == "sha256" and len(parts) == 1:
            if req.method not in ("POST", "PUT"):
                self.discard_body(conn, req)
                conn.simple(req, 405, "use POST or PUT\n", ka, extra=["Allow: POST, PUT"])
                return "keep" if ka else "close"
            if req.expect_continue and req.version == "HTTP/1.1":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            h = hashlib.sha256()
            total = [0]

            def sink(data):
                h.update(data)
                total[0] += len(data)
            chunked = conn.read_body(req, sink)
            body = json.dumps({"length": total[0], "sha256": h.hexdigest(), "chunked": chunked})
            conn.simple(req, 200, body + "\n", ka, ctype="application/json")
            return "keep" if ka else "close"

        # Every other endpoint ignores a request body, but must consume it to
        # keep the connection's framing.
        self.discard_body(conn, req)
        if req.method not in ("GET", "HEAD"):
            conn.simple(req, 405, "method not allowed\n", ka, extra=["Allow: GET, HEAD"])
            return "keep" if ka else "close"

        try:
            if name == "bytes" and arg is not None and len(parts) == 2:
                return self.ep_bytes(conn, req, parse_size(arg))
            if name == "status" and arg is not None and len(parts) == 2:
                return self.ep_status(conn, req, int(arg))
            if name == "headers" and len(parts) == 1:
                body = json.dumps({
                    "request_line": req.request_line, "method": req.method,
                    "target": req.target, "version": req.version,
                    "headers": req.headers,
                })
                conn.simple(req, 200, body + "\n", ka, ctype="application/json")
                return "keep" if ka else "close"
            if name == "early-hints" and len(parts) == 1:
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                conn.simple(req, 200, "early hints done\n", ka)
                return "keep" if ka else "close"
            if name in ("reset-after", "close-after", "stall-after") and arg is not None:
                return self.ep_truncated(conn, req, name, parse_size(arg))
            if name == "slow-head" and arg is not None and len(parts) == 2:
                delay = float(arg)
                if not 0 <= delay <= 300:
                    raise ValueError("delay out of range")
                conn.wait_silence(delay)
                conn.simple(req, 200, "slow head done\n", ka)
                return "keep" if ka else "close"
            if name == "garbage" and len(parts) == 1:
                conn.send(b"NOT HTTP AT ALL\r\n\r\n")
                conn.lingering_close()
                return "closed"
        except ValueError as e:
            conn.simple(req, 400, "bad argument: %s\n" % e, ka)
            return "keep" if ka else "close"
        conn.simple(req, 404, "not found\n", ka)
        return "keep" if ka else "close"

    @staticmethod
    def discard_body(conn, req):
        if req.has_body:
            if req.expect_continue and req.version == "HTTP/1.1":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.read_body(req, lambda data: None)

    def ep_bytes(self, conn, req, n):
        mode = req.query.get("mode", "cl")
        common = ["Content-Type: application/octet-stream", 'ETag: "pattern-%d"' % n]
        if mode == "cl":
            conn.send(conn.head(200, common + ["Content-Length: %d" % n], req.keep_alive))
            if req.method != "HEAD":
                conn.send_pattern(0, n)
            return "keep" if req.keep_alive else "close"
        if mode == "chunked":
            if req.version != "HTTP/1.1":
                # A 1.0 client cannot take chunked: close-delimit instead.
                conn.send(conn.head(200, common, False))
                if req.method != "HEAD":
                    conn.send_pattern(0, n)
                return "close"
            conn.send(conn.head(200, common + ["Transfer-Encoding: chunked"], req.keep_alive))
            if req.method != "HEAD":
                conn.send_pattern_chunked(n)
            return "keep" if req.keep_alive else "close"
        if mode == "close":
            # No framing: the end of the body is the end of the connection.
            conn.send(conn.head(200, common, False))
            if req.method != "HEAD":
                conn.send_pattern(0, n)
            return "close"
        raise ValueError("unknown mode %r" % mode)

    def ep_status(self, conn, req, code):
        if not 200 <= code <= 599:
            raise ValueError("status %d out of range" % code)
        ka = req.keep_alive
        if code == 204:
            # No Content-Length, no body (RFC 9110 8.6: MUST NOT send it).
            conn.send(conn.head(204, ['ETag: "status-204"'], ka))
        elif code == 304:
            conn.send(conn.head(304, ['ETag: "status-304"'], ka))
        else:
            conn.simple(req, code, "status %d\n" % code, ka)
        return "keep" if ka else "close"

    def ep_truncated(self, conn, req, kind, n):
        """Promise `total` bytes, send n, then reset / close / stall."""
        total = parse_size(req.query.get("total", str(2 * n)))
        mode = req.query.get("mode", "cl")
        common = ["Content-Type: application/octet-stream"]
        if mode == "cl":
            conn.send(conn.head(200, common + ["Content-Length: %d" % total], True))
            conn.send_pattern(0, n)
        elif mode == "chunked":
            conn.send(conn.head(200, common + ["Transfer-Encoding: chunked"], True))
            conn.send_pattern_chunked(n, final=False)   # no last-chunk: truncated
        else:
            raise ValueError("unknown mode %r" % mode)
        if kind == "reset-after":
            # Let the peer's kernel take what we sent (bounded wait), so that
            # the RST truncates the body rather than racing the head.
            conn.wait_outq_empty(2.0)
            conn.abortive_close()
        elif kind == "close-after":
            conn.sock.shutdown(socket.SHUT_WR)
            conn.wait_silence(2.0)
            conn.sock.close()
        else:  # stall-after: silence without closing, like a dead peer
            seconds = float(req.query.get("for", "30"))
            if not 0 <= seconds <= 300:
                raise ValueError("stall out of range")
            conn.wait_silence(seconds)
            conn.sock.close()
        return "closed"


def main():
    global PATTERN, PATTERN2
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    ap.add_argument("--port-file", help="write the bound port to this file")
    ap.add_argument("--id", help="sent as X-Origin-Id in every response")
    ap.add_argument("--count-file", help="append one line per accepted connection")
    ap.add_argument("--idle-timeout", type=float, default=120.0,
                    help="seconds a socket may be idle (reads and writes)")
    args = ap.parse_args()

    PATTERN = make_pattern()
    PATTERN2 = PATTERN + PATTERN

    host, _, port = args.listen.rpartition(":")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, int(port)))
    lsock.listen(512)
    bound = lsock.getsockname()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound[1])
        os.replace(tmp, args.port_file)   # readers never see a partial file
    print("listening on %s:%d" % bound, flush=True)
    try:
        Server(args).serve(lsock)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
