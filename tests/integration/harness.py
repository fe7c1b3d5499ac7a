"""Shared code for sluice's integration tests (Python 3 stdlib only).

Each test script does:

    env = harness.Env("what this script tests")      # parses --sluice/--origin
    origin = env.start_origin(id="a")
    proxy = env.start_proxy(harness.config([origin.addr]))
    env.case("name", fn)                              # one TAP line per case
    env.skip("name", "why")                           # a case that cannot run here
    ...
    env.finish()                                      # the plan, "1..N"

The output is TAP (what meson's `protocol : 'tap'` reads): `ok N - name`,
`not ok N - name` with the reason on `#` lines after it, `ok N - name # SKIP
reason` for a case that raised harness.Skip(reason) or was env.skip()ped,
"# " lines for figures, and the plan `1..N` at the end (cases are not known
in advance).  A script that cannot run at all calls env.skip_all(reason):
`1..0 # SKIP reason`, exit 0, which meson reports as SKIP.

For `sluice origin` and `sluice fetch` (tests/integration/test_peers.py):
env.start_sluice_origin(args), env.run_fetch(url, args) (its --json object in
.json), env.start_nginx(root), and sluice_bytes()/sluice_sha256()/sluice_etag(),
a port of daemon/base/pattern.c.

Everything binds port 0 on 127.0.0.1; every wait is bounded (wait_until(),
wait_log()), by deadlines generous enough for a loaded machine: nothing
asserts that something was fast, only what happened; every process the
harness starts is stopped (SIGTERM, then SIGKILL after 5 s) at the end of the
case that started it, at finish(), at exit, and on SIGTERM/SIGINT of the
script itself; the temporary directory is removed likewise.
"""

import argparse
import atexit
import hashlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ORIGIN = os.path.join(os.path.dirname(HERE), "origin.py")

KiB = 1024
MiB = 1024 * 1024

# SLUICE_WRAP runs the proxy (and sluice origin) under a checker such as
# valgrind, which starts and runs several times slower: waits on them are
# stretched by this factor.
SLOW = 6 if os.environ.get("SLUICE_WRAP") else 1


class Skip(Exception):
    """Raised by a case (or anything it calls) that cannot run here: the
    case is reported `ok N - name # SKIP reason`, neither passed nor failed."""


# ---------------------------------------------------------------------------
# The body pattern (shared with tests/origin.py, which defines it)
# ---------------------------------------------------------------------------

_origin_path = DEFAULT_ORIGIN
_origin_mod = None
_pattern = None
_pattern2 = None
_sha_cache = {}


def _origin_module():
    global _origin_mod
    if _origin_mod is None:
        spec = importlib.util.spec_from_file_location("sluice_test_origin", _origin_path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)     # safe: origin.py only runs main() as __main__
        _origin_mod = mod
    return _origin_mod


def pattern():
    """The origin's PERIOD-byte pattern (computed once)."""
    global _pattern, _pattern2
    if _pattern is None:
        _pattern = _origin_module().make_pattern()
        _pattern2 = _pattern + _pattern
    return _pattern


def period():
    return _origin_module().PERIOD


def parse_size(text):
    """'4k' -> 4096 etc., the same units as the origin and the proxy config."""
    return _origin_module().parse_size(text)


def expected_sha256(n):
    """Hex SHA-256 of the first n pattern bytes: whole periods are hashed by
    repeated update() of the cached pattern, so 256 MiB takes well under 1 s."""
    if n not in _sha_cache:
        p = pattern()
        h = hashlib.sha256()
        whole, rest = divmod(n, len(p))
        for _ in range(whole):
            h.update(p)
        h.update(p[:rest])
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


class PatternSink:
    """Consumes a body stream: counts it, hashes it, and compares it with the
    pattern as it goes so that a failure can name the first bad offset."""

    def __init__(self):
        pattern()
        self.length = 0
        self.h = hashlib.sha256()
        self.first_bad = None
        self._mv = memoryview(_pattern2)
        self._period = len(_pattern)

    def __call__(self, data):
        self.h.update(data)
        if self.first_bad is None:
            data = memoryview(data)
            off = 0
            while off < len(data):
                start = (self.length + off) % self._period
                k = min(len(data) - off, self._period)
                if data[off:off + k] != self._mv[start:start + k]:
                    for i in range(k):            # locate it (rare path)
                        if data[off + i] != self._mv[start + i]:
                            self.first_bad = self.length + off + i
                            break
                    break
                off += k
        self.length += len(data)

    @property
    def sha256(self):
        return self.h.hexdigest()

    def check(self, n, what="body"):
        """Assert that exactly the first n pattern bytes were received."""
        if self.first_bad is not None:
            raise AssertionError("%s differs from the pattern at offset %d (got %d bytes)"
                                 % (what, self.first_bad, self.length))
        if self.length != n:
            raise AssertionError("%s: got %d bytes, expected %d" % (what, self.length, n))
        if self.sha256 != expected_sha256(n):
            raise AssertionError("%s: sha256 %s != expected %s"
                                 % (what, self.sha256, expected_sha256(n)))

    def is_pattern_prefix(self):
        return self.first_bad is None and self.sha256 == expected_sha256(self.length)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


# ---------------------------------------------------------------------------
# sluice's own body pattern (daemon/base/pattern.h), served by `sluice origin`
# ---------------------------------------------------------------------------

_M64 = (1 << 64) - 1
_PHI = 0x9e3779b97f4a7c15


def _mix64(z):
    """splitmix64's finaliser, mod 2^64."""
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _M64
    return z ^ (z >> 31)


def sluice_key(name="sluice"):
    """pattern_key(name): FNV-1a-64 of the name, then mixed."""
    h = 0xcbf29ce484222325
    for c in name.encode():
        h = ((h ^ c) * 0x100000001b3) & _M64
    return _mix64(h)


def _sluice_words(key, j, count):
    """count pattern words from word j, little-endian bytes."""
    out = []
    z = (key + j * _PHI) & _M64
    for _ in range(count):
        y = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M64
        y = ((y ^ (y >> 27)) * 0x94d049bb133111eb) & _M64
        out.append(y ^ (y >> 31))
        z = (z + _PHI) & _M64
    return struct.pack("<%dQ" % count, *out)


def sluice_bytes(off, n, key=None):
    """Bytes off .. off+n-1 of the sluice pattern (default key "sluice").
    Pure Python: about 15 MB/s, so keep n to a few MiB."""
    key = sluice_key() if key is None else key
    j0 = off // 8
    j1 = (off + n + 7) // 8
    skip = off - j0 * 8
    return _sluice_words(key, j0, j1 - j0)[skip:skip + n]


def sluice_sha256(n, key=None):
    """Hex SHA-256 of the first n bytes of the sluice pattern."""
    h = hashlib.sha256()
    off = 0
    while off < n:
        k = min(n - off, 1 * MiB)
        h.update(sluice_bytes(off, k, key))
        off += k
    return h.hexdigest()


def sluice_etag(size, key=None):
    """The strong ETag `sluice origin` sends for a body of size bytes."""
    key = sluice_key() if key is None else key
    return '"sluice-%016x-%d"' % (key, size)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def check(cond, message):
    """assert that is not stripped by python -O, with a message."""
    if not cond:
        raise AssertionError(message)


def free_port_refused():
    """A port on 127.0.0.1 where nothing listens (connect gets ECONNREFUSED):
    bind port 0, note the port, close the socket."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vmrss_kib(pid):
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/%d/status" % pid)


def wait_until(pred, timeout, interval=0.02):
    """Poll pred() until it returns something true or timeout seconds pass;
    returns its last value (false on timeout).  pred may raise to end the
    wait early (e.g. the process it waits on exited)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        left = deadline - time.monotonic()
        if v or left <= 0:
            return v
        time.sleep(min(interval, left))


def splice_default(text):
    """SLUICE_TEST_SPLICE=off|auto runs every proxy the tests start with
    that [buffer] splice unless its config names one: the suite runs once
    with splice on (the default) and once off (.ci/run's sanitizer build).
    Appended as a [buffer] section of its own at the end, so that the
    line numbers a config error names do not move.  Proxy configs only
    (those with an [upstream] section, not the lab's scenarios)."""
    want = os.environ.get("SLUICE_TEST_SPLICE", "")
    if (not want or not re.search(r"(?m)^\[upstream\]", text)
            or re.search(r"(?m)^\[lab\]", text)
            or re.search(r"(?m)^\s*splice\s*=", text)):
        return text
    return text + ("" if text.endswith("\n") or not text else "\n") + \
        "[buffer]\nsplice = %s\n" % want


def wait_log(proc, pattern, timeout=10.0, count=1):
    """Wait until pattern (a bytes regex) has matched count times in proc's
    log (its stderr file); returns the last match.  Bounded: timeout
    seconds, times SLOW under SLUICE_WRAP.  Fails at once if proc exits
    without logging it."""
    def hits():
        with open(proc.log_path, "rb") as f:
            found = list(re.finditer(pattern, f.read()))
        return found[count - 1] if len(found) >= count else None

    def seen():
        m = hits()
        if m is None and not proc.alive():
            m = hits()            # it may have logged it, then exited
            if m is None:
                raise AssertionError("%s exited with %s before logging %r: %s"
                                     % (proc.name, proc.popen.returncode, pattern,
                                        " | ".join(proc.log_tail())))
        return m
    m = wait_until(seen, timeout * SLOW)
    if m is None:
        raise AssertionError("%s did not log %r in %.0f s: %s"
                             % (proc.name, pattern, timeout * SLOW, " | ".join(proc.log_tail())))
    return m


def sanitized():
    """True when the binary under test was built with sanitizers (meson
    passes its b_sanitize option as SLUICE_SANITIZE: "none" without)."""
    return os.environ.get("SLUICE_SANITIZE", "none") not in ("", "none")


_MALLOC_DEBUG = ("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
                 "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
                 "/lib64/libc_malloc_debug.so.0", "/usr/lib64/libc_malloc_debug.so.0")


def malloc_check_env():
    """Environment for a proxy in a plain build that makes glibc's malloc
    check its heap: MALLOC_CHECK_=3 (report and abort on corruption; since
    glibc 2.34 only with libc_malloc_debug.so preloaded, which is added
    when present), MALLOC_PERTURB_ (freed and fresh memory filled with a
    byte, so a stale read shows in the data), LIBC_FATAL_STDERR_=1 (the
    report goes to stderr, the proxy's log, not the tty).  Empty in a
    sanitizer build (ASan has its own allocator and must come first in
    the library list) and under SLUICE_WRAP (valgrind replaces malloc)."""
    if sanitized() or os.environ.get("SLUICE_WRAP"):
        return {}
    env = {"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165", "LIBC_FATAL_STDERR_": "1"}
    lib = next((p for p in _MALLOC_DEBUG if os.path.exists(p)), None)
    if lib:
        pre = os.environ.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = (pre + " " + lib).strip()
    return env


# What a heap checker prints: ASan/UBSan/LSan, glibc's malloc checks
# (malloc_printerr), valgrind's memcheck.
_MEMORY_ERROR = re.compile(
    rb"AddressSanitizer|LeakSanitizer|runtime error:|"
    rb"\b(?:malloc|free|realloc|calloc|malloc_consolidate|_int_malloc|_int_free|"
    rb"munmap_chunk|tcache_thread_shutdown)\(\): |"
    rb"double free or corruption|corrupted size vs\. prev_size|corrupted double-linked|"
    rb"Invalid (?:read|write|free)|Conditional jump or move|"
    rb"stack smashing detected")


def memory_errors(path):
    """The lines of a log (a process's stderr file) in which a memory checker
    reported an error (see _MEMORY_ERROR), at most 10; [] if none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    out = []
    for line in data.splitlines():
        if _MEMORY_ERROR.search(line):
            out.append(line.decode("utf-8", "replace")[:300])
            if len(out) == 10:
                break
    return out


def connect_refused(port):
    """True if a connect to 127.0.0.1:port is refused now.  A reset counts
    too: a connect that lands in the accept queue just as the listener
    closes is reset by the kernel, which is the same refusal, seen a moment
    later."""
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    finally:
        s.close()


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return lines[-n:]


# ---------------------------------------------------------------------------
# Proxy configuration
# ---------------------------------------------------------------------------

def config(servers, **sections):
    """INI text for `sluice proxy`. servers: list of "127.0.0.1:PORT".
    sections: {"buffer": {"high_watermark": "1M"}, ...} override or add keys;
    a value of None drops a key.  [listen] address defaults to 127.0.0.1:0."""
    base = {
        "listen": {"address": "127.0.0.1:0", "drain_timeout": "30s"},
        "upstream": {"balance": "round-robin", "connect_timeout": "5s",
                     "read_timeout": "60s"},
        "client": {"idle_timeout": "60s", "max_header_size": "32k"},
        "buffer": {"policy": "pause", "high_watermark": "1M", "low_watermark": "256k"},
        "log": {"level": "info"},
    }
    for sec, keys in sections.items():
        base.setdefault(sec, {}).update(keys)
    out = []
    for sec, keys in base.items():
        out.append("[%s]" % sec)
        if sec == "upstream":
            out.extend("server = %s" % s for s in servers)
        out.extend("%s = %s" % (k, v) for k, v in keys.items() if v is not None)
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

def _die_with_parent():
    """preexec_fn for children: the kernel sends them SIGKILL if this test
    script dies without cleaning up (e.g. SIGKILL), so none are left over."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # PR_SET_PDEATHSIG
    except Exception:
        pass


class Process:
    """A child process with a log file, stopped by stop() (SIGTERM, 5 s, SIGKILL)."""

    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, grace=5.0):
        """Stop the process; returns its exit status."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        for f in (self.popen.stdout, self.popen.stderr, self.popen.stdin):
            if f:
                f.close()
        return self.popen.returncode

    def log_tail(self, n=15):
        return tail(self.log_path, n)


class Origin(Process):
    def __init__(self, name, popen, log_path, port):
        super().__init__(name, popen, log_path)
        self.port = port
        self.addr = "127.0.0.1:%d" % port


class Proxy(Process):
    def __init__(self, name, popen, log_path, port, config_path):
        super().__init__(name, popen, log_path)
        self.port = port
        self.config_path = config_path
        self.url = "http://127.0.0.1:%d" % port

    def rss_kib(self):
        return vmrss_kib(self.pid)


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket:
    env.start_proxy(..., notify=ns) (or spawn_proxy) sets NOTIFY_SOCKET to
    it; ns.wait_for("READY=1") waits for what the proxy sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []       # each datagram as its list of VAR=value lines

    def collect(self, timeout=0.0):
        """Read what arrived (waiting up to timeout s for the first)."""
        self.sock.settimeout(timeout if timeout > 0 else 0.001)
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return self.messages
            self.messages.append(data.decode("utf-8", "replace").split("\n"))
            self.sock.settimeout(0.001)

    def count(self, var):
        return sum(1 for m in self.messages if var in m)

    def wait_for(self, var, count=1, timeout=30.0):
        """Wait (bounded: timeout s, times SLOW) until var (e.g. "READY=1")
        was sent count times in all; returns the datagram (text) that held
        it the count-th time, or None on timeout."""
        def seen():
            self.collect(0.05)
            hits = [m for m in self.messages if var in m]
            return "\n".join(hits[count - 1]) if len(hits) >= count else None
        return wait_until(seen, timeout * SLOW, 0)

    def sequence(self):
        """The READY/RELOADING/STOPPING variables in the order sent."""
        keys = ("READY=1", "RELOADING=1", "STOPPING=1")
        return [v for m in self.messages for v in m if v in keys]

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# Raw-socket HTTP/1.x client
# ---------------------------------------------------------------------------

class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []       # [(name, value)] exactly as received
        self.interim = []       # [(status, headers)] for 1xx responses
        self.body = None        # bytes, unless a sink was given
        self.body_length = 0
        self.framing = None     # "none" | "length" | "chunked" | "close"
        self.raw_head = b""

    def all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def get(self, name, default=None):
        v = self.all(name)
        return ", ".join(v) if v else default

    def tokens(self, name):
        """Comma-separated tokens of all field lines, lower-cased."""
        return [t.strip().lower() for v in self.all(name) for t in v.split(",") if t.strip()]

    def __repr__(self):
        return "<%s %s %s>" % (self.version, self.status, self.reason)


class ProtocolError(Exception):
    pass


class HttpConn:
    """One client TCP connection to the proxy, with a byte-exact HTTP/1.x
    response reader (Content-Length, chunked, close-delimited, no-body)."""

    def __init__(self, port, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect(), so that the window scale is chosen for it.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()
        self.eof = False
        self.max_recv = 256 * KiB     # cap on one recv() of body bytes
        self.on_recv = None           # called after each body recv()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, headers=(), body=b"", version="HTTP/1.1",
                host=True):
        lines = ["%s %s %s" % (method, target, version)]
        if host:
            lines.append("Host: 127.0.0.1")
        lines.extend("%s: %s" % hv for hv in headers)
        if body and not any(h[0].lower() in ("content-length", "transfer-encoding")
                            for h in headers):
            lines.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    # ---- reading ------------------------------------------------------
    def _fill(self, n=256 * KiB):
        if self.eof:
            return False
        data = self.sock.recv(n)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self, limit=64 * KiB):
        scan = 0
        while True:
            i = self.buf.find(b"\r\n", max(0, scan - 1))
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise ProtocolError("line longer than %d" % limit)
            scan = len(self.buf)
            if not self._fill():
                raise ProtocolError("EOF inside a line (%d bytes pending: %r)"
                                    % (len(self.buf), bytes(self.buf[:60])))

    def _head(self):
        scan = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", max(0, scan - 3))
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > 1 * MiB:
                raise ProtocolError("response head larger than 1 MiB")
            scan = len(self.buf)
            if not self._fill():
                raise ProtocolError("EOF before the end of a response head (got %r)"
                                    % bytes(self.buf[:200]))

    def _exact(self, n, sink, deadline):
        take = min(n, len(self.buf))
        if take:
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take
        while n > 0:
            if time.monotonic() > deadline:
                raise ProtocolError("deadline passed with %d body bytes missing" % n)
            data = self.sock.recv(min(n, self.max_recv))
            if not data:
                self.eof = True
                raise ProtocolError("EOF with %d body bytes missing" % n)
            sink(data)
            n -= len(data)
            if self.on_recv:
                self.on_recv()

    def read_response(self, method="GET", sink=None, deadline=60.0, head_only=False):
        """Read one final response (collecting any 1xx before it). Without a
        sink the body is kept in resp.body; with one, sink(bytes) gets it.
        head_only: return after the final head, leaving the body unread."""
        end = time.monotonic() + deadline
        resp = Response()
        while True:
            head = self._head()
            lines = head.decode("latin-1").split("\r\n")
            m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
            if not m:
                raise ProtocolError("bad status line %r" % lines[0][:100])
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("bad header line %r" % line[:100])
                headers.append((name, value.strip(" \t")))
            status = int(m.group(2))
            if 100 <= status < 200:
                resp.interim.append((status, headers))
                continue
            resp.version, resp.status, resp.reason = m.group(1), status, m.group(3) or ""
            resp.headers = headers
            resp.raw_head = head
            break
        if head_only:
            return resp
        return self.read_body(resp, method, sink, end - time.monotonic())

    def read_body(self, resp, method="GET", sink=None, deadline=60.0):
        """Read the body of resp (whose head read_response(head_only=True)
        returned) per its framing. recv sizes are capped by self.max_recv and
        self.on_recv(), if set, is called after each recv (pacing, sampling)."""
        end = time.monotonic() + deadline
        keep = []
        user_sink = sink
        if sink is None:
            def sink(data):
                keep.append(data)

        def counting(data):
            resp.body_length += len(data)
            sink(data)

        te = resp.tokens("transfer-encoding")
        cl = resp.all("content-length")
        if method == "HEAD" or resp.status in (204, 304):
            resp.framing = "none"
        elif te:
            if te[-1] != "chunked":
                raise ProtocolError("unexpected Transfer-Encoding %r" % te)
            resp.framing = "chunked"
            while True:
                if time.monotonic() > end:
                    raise ProtocolError("deadline passed reading a chunked body")
                size_line = self._line()
                size_text = size_line.split(b";", 1)[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_text):
                    raise ProtocolError("bad chunk size line %r" % size_line[:60])
                size = int(size_text, 16)
                if size == 0:
                    for _ in range(1000):
                        if self._line() == b"":
                            break
                    break
                self._exact(size, counting, end)
                if self._line() != b"":
                    raise ProtocolError("chunk data not followed by CRLF")
        elif cl:
            if len(set(cl)) != 1 or not cl[0].isdigit():
                raise ProtocolError("bad Content-Length %r" % cl)
            resp.framing = "length"
            self._exact(int(cl[0]), counting, end)
        else:
            resp.framing = "close"
            if self.buf:
                counting(bytes(self.buf))
                self.buf.clear()
            while True:
                if time.monotonic() > end:
                    raise ProtocolError("deadline passed reading a close-delimited body")
                data = self.sock.recv(self.max_recv)
                if not data:
                    self.eof = True
                    break
                counting(data)
                if self.on_recv:
                    self.on_recv()
        if user_sink is None:
            resp.body = b"".join(keep)
        return resp

    def at_eof(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout with no further
        bytes; raises if it sends bytes; False if it is still open."""
        if self.buf:
            raise ProtocolError("unexpected bytes after the response: %r" % bytes(self.buf[:80]))
        if self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(4096)
        except ConnectionResetError:
            return True
        if data:
            raise ProtocolError("unexpected bytes after the response: %r" % data[:80])
        self.eof = True
        return True


def get(port, target, method="GET", headers=(), timeout=10.0, **kw):
    """One request on a fresh connection; returns the Response."""
    with HttpConn(port, timeout=timeout) as c:
        c.request(method, target, headers=list(headers) + [("Connection", "close")])
        return c.read_response(method=method, deadline=timeout, **kw)


class HashSink:
    """Counts and hashes a body stream (any pattern: compare .sha256 with
    sluice_sha256(n, key) or a file's digest afterwards)."""

    def __init__(self):
        self.length = 0
        self.h = hashlib.sha256()

    def __call__(self, data):
        self.h.update(data)
        self.length += len(data)

    @property
    def sha256(self):
        return self.h.hexdigest()


class HeldDownload:
    """GET target on one connection, read in a thread: the response head
    and the first hold_at body bytes, then nothing until release(), then
    the rest.  While it is held the download is in flight however slow the
    machine is, so a test can signal the proxy, reload it or stop it and
    check what it does to a running download without racing the transfer
    (nothing is paced by the clock).  The hold is bounded (hold_limit s):
    after that the reader goes on and finish() fails the case.

        dl = HeldDownload(px.port, "/bytes/8M", PatternSink())
        check(dl.wait_held(), dl.describe())
        ... SIGHUP, checks ...
        dl.release()
        resp = dl.finish()          # the whole response, or the error
        dl.sink.check(8 * MiB)
    """

    def __init__(self, port, target, sink=None, hold_at=256 * KiB, rcvbuf=64 * KiB,
                 hold_limit=120.0, deadline=300.0):
        self.sink = sink if sink is not None else HashSink()
        self.hold_at = hold_at
        self.hold_limit = hold_limit
        self.resp = None
        self.error = None
        self.held = threading.Event()        # set when the hold starts (or the read ends)
        self._go = threading.Event()
        self.hold_expired = False
        self.conn = HttpConn(port, rcvbuf=rcvbuf, timeout=60.0 * SLOW)
        self.conn.max_recv = 64 * KiB
        self.conn.on_recv = self._on_recv
        self.conn.request("GET", target)

        def run():
            try:
                self.resp = self.conn.read_response(sink=self.sink, deadline=deadline)
            except Exception as e:               # reported by finish()
                self.error = "%s: %s" % (type(e).__name__, e)
            finally:
                self.held.set()
        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def _on_recv(self):
        if self.sink.length >= self.hold_at and not self._go.is_set():
            self.held.set()
            if not self._go.wait(self.hold_limit):
                self.hold_expired = True
                self._go.set()

    def wait_held(self, timeout=30.0):
        """True once hold_at body bytes arrived and the reader stopped
        (False on timeout or if the read ended first: see describe())."""
        return self.held.wait(timeout * SLOW) and self.alive()

    def alive(self):
        return self._t.is_alive()

    def release(self):
        self._go.set()

    def describe(self):
        return "download: %d bytes read, %s, status %s, error %s" % (
            self.sink.length, "still reading" if self.alive() else "ended",
            self.resp.status if self.resp else None, self.error)

    def finish(self, timeout=120.0):
        """Release the hold, wait (bounded) for the end of the response;
        returns it.  Fails on an error, a timeout or an expired hold."""
        self.release()
        self._t.join(timeout * SLOW)
        try:
            check(not self._t.is_alive(), "download not finished %.0f s after its release: %s"
                  % (timeout * SLOW, self.describe()))
            check(self.error is None, "download failed: " + self.describe())
            check(not self.hold_expired, "download held longer than %.0f s" % self.hold_limit)
            return self.resp
        finally:
            self.close()

    def close(self):
        self._go.set()
        self.conn.close()


# ---------------------------------------------------------------------------
# curl
# ---------------------------------------------------------------------------

class CurlResult:
    def __init__(self):
        self.rc = None
        self.sink = PatternSink()
        self.body = b""          # first 64 KiB of the body, for small replies
        self.stderr = ""
        self.write_out = {}      # from -w: key=value lines
        self.head_text = ""      # from -D

    def _blocks(self):
        """The response heads curl dumped, as lists of lines (1xx included)."""
        blocks = [b for b in re.split(r"\r?\n\r?\n", self.head_text) if b.strip()]
        return [b.splitlines() for b in blocks]

    def status(self):
        """Status code of the last (final) response head, or None."""
        blocks = self._blocks()
        if not blocks:
            return None
        m = re.match(r"HTTP/[\d.]+ (\d{3})", blocks[-1][0])
        return int(m.group(1)) if m else None

    def headers(self):
        """[(name, value)] of the last response head."""
        blocks = self._blocks()
        out = []
        for line in (blocks[-1][1:] if blocks else []):
            name, sep, value = line.partition(":")
            if sep:
                out.append((name.strip(), value.strip()))
        return out

    def header(self, name):
        vals = [v for n, v in self.headers() if n.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def describe(self):
        return "curl rc=%s status=%s got=%d bytes stderr=%r" % (
            self.rc, self.status(), self.sink.length, self.stderr[-300:])


# ---------------------------------------------------------------------------
# sluice fetch
# ---------------------------------------------------------------------------

class FetchResult:
    """What one `sluice fetch` run did: exit status, its --json object (or
    None), the tail of its stdout, its stderr and the wall time."""

    def __init__(self):
        self.rc = None
        self.json = None
        self.stdout_len = 0
        self.stdout_tail = b""
        self.stderr = ""
        self.wall = None
        self.cmd = []

    def get(self, key, default=None):
        return (self.json or {}).get(key, default)

    def describe(self):
        return "fetch rc=%s json=%s stderr=%r" % (
            self.rc, json.dumps(self.json) if self.json is not None
            else "(none; stdout %d bytes, tail %r)" % (self.stdout_len, self.stdout_tail[-200:]),
            self.stderr[-400:])



class ThreadedServer:
    """A TCP listener on 127.0.0.1:0 (self.addr, self.port) whose accept
    loop, on a thread of its own, hands each connection to self._conn(sock)
    on a new thread; stop() closes the listener.  A subclass sets what
    _conn needs before it calls this __init__ (connections may come at
    once)."""

    def __init__(self, backlog=16):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        raise NotImplementedError

    def stop(self):
        self.stopped = True
        self.sock.close()


def read_refusal(port, target="/bytes/4k"):
    """A new connection sends a request: the answer must be the proxy's 503
    with Connection: close and Retry-After, then EOF (max_connections,
    or no memory for the connection)."""
    with HttpConn(port) as c:
        c.request("GET", target)
        r = c.read_response(deadline=10.0 * SLOW)
        check(r.status == 503, "expected 503, got %s %r" % (r.status, r.raw_head[:200]))
        check("close" in r.tokens("connection"), "no Connection: close: %r" % r.headers)
        check(r.get("retry-after") is not None, "no Retry-After: %r" % r.headers)
        check(c.at_eof(5.0), "the refused connection stays open")


def metrics_flat(aport, timeout=10.0):
    """GET /metrics as {"sluice_name{labels}": value}: the proxy's samples,
    each under its name with its labels as written (none: the bare name)."""
    r = get(aport, "/metrics", timeout=timeout)
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r"^(sluice_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out

def _last_json_object(data):
    """The last line of data that parses as a JSON object, or None."""
    for line in reversed(data.splitlines()):
        line = line.strip()
        if line.startswith(b"{"):
            try:
                obj = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def read_json_lines(path):
    """Every line of path that parses as a JSON object (a missing file: [])."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    out = []
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(b"{"):
            try:
                obj = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


# ---------------------------------------------------------------------------
# The test environment
# ---------------------------------------------------------------------------

class Env:
    def __init__(self, description):
        global _origin_path
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--sluice", required=True, help="path to the sluice binary")
        ap.add_argument("--origin", default=DEFAULT_ORIGIN, help="path to tests/origin.py")
        ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir")
        ap.add_argument("--only", help="run only cases whose name contains this")
        self.args = ap.parse_args()
        self.sluice = os.path.abspath(self.args.sluice)
        self.origin_path = os.path.abspath(self.args.origin)
        _origin_path = self.origin_path
        self.tmp = tempfile.mkdtemp(prefix="sluice-it-")
        self.processes = []       # every Process started, stopped at the end
        self.timed = False  # case() notes each case's duration
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.number = 0           # TAP test lines printed
        self._seq = 0
        atexit.register(self.cleanup)
        # meson's test timeout (and ^C) must still run the cleanup.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        raise SystemExit(128 + signum)

    def path(self, name):
        self._seq += 1
        return os.path.join(self.tmp, "%02d-%s" % (self._seq, name))

    # ---- processes ----------------------------------------------------
    def start_origin(self, id=None, extra=(), timeout=10.0):
        """Start tests/origin.py on 127.0.0.1:0; wait for its listening line."""
        log = self.path("origin-%s.log" % (id or "x"))
        cmd = [sys.executable, self.origin_path, "--listen", "127.0.0.1:0"]
        if id is not None:
            cmd += ["--id", id]
        cmd += list(extra)
        errf = open(log, "wb")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
        errf.close()
        proc = Process("origin", p, log)
        self.processes.append(proc)
        deadline = time.monotonic() + timeout
        line = b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            r, _, _ = select.select([p.stdout], [], [], max(0, left))
            if not r:
                raise AssertionError("origin did not print its listening line in %.0f s" % timeout)
            b = os.read(p.stdout.fileno(), 4096)
            if not b:
                raise AssertionError("origin exited (%s): %s" % (p.wait(5), " | ".join(tail(log))))
            line += b
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise AssertionError("unexpected origin output %r" % line)
        o = Origin("origin", p, log, int(m.group(1)))
        self.processes[-1] = o
        return o

    def write_config(self, text, name="sluice.ini"):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(splice_default(text))
        return path

    def run_sluice(self, args, timeout=10.0):
        """Run sluice to completion; returns CompletedProcess (text)."""
        self.need_sluice()
        return subprocess.run([self.sluice] + list(args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def need_sluice(self):
        if not os.access(self.sluice, os.X_OK):
            raise AssertionError("sluice binary not found or not executable: %s" % self.sluice)

    def notify_socket(self):
        """A NotifySocket in the temp dir (the caller closes it)."""
        return NotifySocket(self.path("notify.sock"))

    def spawn_proxy(self, config_text, name="proxy", notify=None, journal=False,
                    env_extra=None, wrap=None):
        """Start `sluice proxy -c CFG` without waiting; returns (Process, cfg).
        notify: a NotifySocket, set as its NOTIFY_SOCKET; journal: set
        JOURNAL_STREAM to its stderr file's device:inode, as systemd does
        for a unit whose stderr is the journal.  Neither is inherited.
        env_extra: variables added to its environment (malloc_check_env()).
        wrap: the command (a list) the proxy runs under, instead of
        SLUICE_WRAP's, e.g. ["fiu-run", "-x"] (tests/integration/test_faults.py)."""
        self.need_sluice()
        cfg = self.write_config(config_text, name + ".ini")
        log = self.path(name + ".stderr")
        errf = open(log, "wb")
        penv = dict(os.environ)
        penv.pop("NOTIFY_SOCKET", None)
        penv.pop("JOURNAL_STREAM", None)
        if notify is not None:
            penv["NOTIFY_SOCKET"] = notify.path
        if journal:
            st = os.fstat(errf.fileno())
            penv["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        penv.update(env_extra or {})
        # SLUICE_WRAP runs the proxy under a checker, e.g.
        # SLUICE_WRAP="valgrind --error-exitcode=99 --leak-check=full".
        if wrap is None:
            wrap = os.environ.get("SLUICE_WRAP", "").split()
        p = subprocess.Popen(list(wrap) + [self.sluice, "proxy", "-c", cfg], stdout=errf, stderr=errf,
                             stdin=subprocess.DEVNULL, env=penv, preexec_fn=_die_with_parent)
        errf.close()
        proc = Process(name, p, log)
        self.processes.append(proc)
        return proc, cfg

    def stop_clean(self, proc):
        """SIGTERM the proxy and check that it exits 0: under ASan/LSan or
        SLUICE_WRAP=valgrind, a leak or memory error makes the exit status
        non-zero, so this is where those checkers speak."""
        rc = proc.stop(grace=30.0)
        check(rc == 0, "proxy exit status %s after SIGTERM: %s"
              % (rc, " | ".join(proc.log_tail())))

    def start_proxy(self, config_text, name="proxy", timeout=10.0, notify=None,
                    journal=False, env_extra=None, wrap=None):
        """Start the proxy (spawn_proxy) and wait (bounded) for "listening on
        127.0.0.1:PORT" on its stderr (not "admin: listening on ...", the
        [admin] listener's line: see admin_port())."""
        proc, cfg = self.spawn_proxy(config_text, name, notify=notify, journal=journal,
                                     env_extra=env_extra, wrap=wrap)
        m = wait_log(proc, rb"(?<!admin: )listening on 127\.0\.0\.1:(\d+)", timeout)
        px = Proxy(name, proc.popen, proc.log_path, int(m.group(1)), cfg)
        self.processes[self.processes.index(proc)] = px
        return px

    def admin_port(self, proxy, timeout=10.0):
        """The port of the proxy's [admin] listener, from its
        "admin: listening on 127.0.0.1:PORT" line (bounded wait)."""
        return int(wait_log(proxy, rb"admin: listening on 127\.0\.0\.1:(\d+)",
                            timeout).group(1))

    def start_sluice_origin(self, args=(), name="sluice-origin", timeout=10.0):
        """Start `sluice origin --listen 127.0.0.1:0 ARGS...` (stderr to a
        log file) and wait for its listening line; returns an Origin."""
        self.need_sluice()
        log = self.path(name + ".stderr")
        errf = open(log, "wb")
        wrap = os.environ.get("SLUICE_WRAP", "").split()
        cmd = wrap + [self.sluice, "origin", "--listen", "127.0.0.1:0"] + list(args)
        p = subprocess.Popen(cmd, stdout=errf, stderr=errf, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
        errf.close()
        proc = Process(name, p, log)
        self.processes.append(proc)
        port = int(wait_log(proc, rb"listening on 127\.0\.0\.1:(\d+)", timeout).group(1))
        o = Origin(name, p, log, port)
        self.processes[self.processes.index(proc)] = o
        return o

    def run_fetch(self, url, args=(), timeout=60.0, json_out=True):
        """Run `sluice fetch URL ARGS... [--json]` to completion (killed after
        timeout s, which fails the case); returns a FetchResult whose .json
        is the last JSON object line of its stdout (or of its stderr)."""
        self.need_sluice()
        res = FetchResult()
        res.cmd = [self.sluice, "fetch", url] + list(args) + (["--json"] if json_out else [])
        errpath = self.path("fetch.stderr")
        errf = open(errpath, "wb")
        t0 = time.monotonic()
        p = subprocess.Popen(res.cmd, stdout=subprocess.PIPE, stderr=errf,
                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        errf.close()
        tail_buf = bytearray()
        try:
            fd = p.stdout.fileno()
            deadline = t0 + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("sluice fetch %s did not finish within %.0f s"
                                         % (url, timeout))
                r, _, _ = select.select([fd], [], [], left)
                if not r:
                    continue
                data = os.read(fd, 1 * MiB)
                if not data:
                    break
                res.stdout_len += len(data)
                tail_buf += data
                if len(tail_buf) > 256 * KiB:
                    del tail_buf[:-64 * KiB]
            res.rc = p.wait(max(1.0, deadline - time.monotonic()))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()
        res.wall = time.monotonic() - t0
        res.stdout_tail = bytes(tail_buf[-64 * KiB:])
        with open(errpath, "rb") as f:
            err = f.read()
        res.stderr = err.decode("utf-8", "replace")
        res.json = _last_json_object(res.stdout_tail)
        if res.json is None:
            res.json = _last_json_object(err)
        return res

    def start_nginx(self, root, timeout=10.0, access=None):
        """Start nginx (master process, not daemonised) serving root on an
        ephemeral 127.0.0.1 port, with every path it writes in the temp dir;
        returns an Origin.  Its workers may run as another user (nobody or
        www-data when started as root), so root must be world-readable.
        access: a path for an access log of "$connection $connection_requests
        $request" lines (which connection served each request)."""
        exe = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
            None)
        check(exe, "nginx is not installed (Debian: apt-get install nginx-light)")
        os.chmod(self.tmp, 0o755)      # workers must reach root through it
        for attempt in range(3):
            port = free_port_refused()
            d = self.path("nginx")
            os.mkdir(d)
            os.chmod(d, 0o755)
            conf = os.path.join(d, "nginx.conf")
            log = os.path.join(d, "error.log")
            with open(conf, "w") as f:
                f.write("daemon off;\n"
                        "master_process on;\n"
                        "worker_processes 1;\n"
                        "pid %(d)s/nginx.pid;\n"
                        "error_log %(log)s info;\n"
                        "events { worker_connections 64; }\n"
                        "http {\n"
                        "%(access)s"
                        "  client_body_temp_path %(d)s/client_body;\n"
                        "  proxy_temp_path %(d)s/proxy;\n"
                        "  fastcgi_temp_path %(d)s/fastcgi;\n"
                        "  uwsgi_temp_path %(d)s/uwsgi;\n"
                        "  scgi_temp_path %(d)s/scgi;\n"
                        "  server {\n"
                        "    listen 127.0.0.1:%(port)d;\n"
                        "    root %(root)s;\n"
                        "  }\n"
                        "}\n" % {"d": d, "log": log, "port": port, "root": root,
                                  "access": "  access_log off;\n" if access is None else
                                  "  log_format conns '$connection $connection_requests "
                                  "$request';\n  access_log %s conns;\n" % access})
            p = subprocess.Popen([exe, "-p", d, "-e", log, "-c", conf],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            proc = Origin("nginx", p, log, port)
            self.processes.append(proc)

            def up():
                if not proc.alive():
                    return "exited"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return "up"
                except OSError:
                    return None
            state = wait_until(up, timeout)
            if state == "up":
                return proc
            proc.stop()
            self.processes.remove(proc)
            if state is None:
                raise AssertionError("nginx did not listen within %.0f s: %s"
                                     % (timeout, " | ".join(tail(log))))
            if attempt == 2 or "Address already in use" not in "\n".join(tail(log)):
                raise AssertionError("nginx exited with %s: %s"
                                     % (p.returncode, " | ".join(tail(log))))
        raise AssertionError("unreachable")

    # ---- curl -----------------------------------------------------------
    def curl(self, args, timeout=60.0, write_out=None):
        """Run curl, streaming its stdout (the body) through a PatternSink.
        write_out: curl -w variables, e.g. ["http_code", "num_connects"];
        they are written to curl's stderr and parsed into res.write_out."""
        res = CurlResult()
        errpath = self.path("curl.stderr")
        headpath = self.path("curl.head")
        cmd = ["curl", "-sS", "-D", headpath] + list(args)
        if write_out:
            cmd += ["-w", "%{stderr}" + "".join("@@%s=%%{%s}\\n" % (k, k) for k in write_out)]
        errf = open(errpath, "wb")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
        errf.close()
        deadline = time.monotonic() + timeout
        keep = bytearray()
        try:
            fd = p.stdout.fileno()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("curl did not finish within %.0f s" % timeout)
                r, _, _ = select.select([fd], [], [], left)
                if not r:
                    continue
                data = os.read(fd, 1 * MiB)
                if not data:
                    break
                if len(keep) < 64 * KiB:
                    keep += data[:64 * KiB - len(keep)]
                res.sink(data)
            res.rc = p.wait(max(1.0, deadline - time.monotonic()))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()
        res.body = bytes(keep)
        with open(errpath, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        lines = []
        for line in err.splitlines():
            if line.startswith("@@") and "=" in line:
                k, _, v = line[2:].partition("=")
                res.write_out.setdefault(k, []).append(v)
            else:
                lines.append(line)
        res.stderr = "\n".join(lines)
        try:
            with open(headpath, "rb") as f:
                res.head_text = f.read().decode("latin-1")
        except OSError:
            pass
        return res

    # ---- running cases (TAP) --------------------------------------------
    def _tap(self, ok, name, directive=None):
        """One TAP test line: `ok N - name`, `not ok N - name`, or with a
        `# SKIP reason` directive.  A '#' in the name would start one."""
        self.number += 1
        line = "%s %d - %s" % ("ok" if ok else "not ok", self.number,
                               name.replace("#", "no.").replace("\n", " "))
        if directive:
            line += " # " + directive.replace("\n", " | ")
        print(line, flush=True)

    def _selected(self, name, keep_processes=False):
        return not self.args.only or self.args.only in name or keep_processes

    def case(self, name, fn, *args, keep_processes=False):
        """Run one case: a TAP line for it.  An exception fails it (the
        reason follows on "#" lines), harness.Skip(reason) skips it.
        Processes it started are stopped when it ends, unless
        keep_processes (a setup case whose origin/proxy later cases use;
        they are stopped at finish()).  With env.timed set, each case
        notes how long it took, before its TAP line."""
        if not self._selected(name, keep_processes):
            return
        started = len(self.processes)
        t0 = time.monotonic()
        try:
            try:
                fn(*args)
            finally:
                if self.timed:
                    self.note("(%.1f s)" % (time.monotonic() - t0))
        except Skip as e:
            self.skipped += 1
            self._tap(True, name, "SKIP " + str(e))
        except Exception as e:
            self.failed += 1
            reason = str(e) if isinstance(e, AssertionError) else "%s: %s" % (type(e).__name__, e)
            self._tap(False, name)
            for line in reason.splitlines() or [""]:
                print("#   " + line)
            if not isinstance(e, AssertionError):
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
            for proc in self.processes:
                if isinstance(proc, Proxy) or proc.name.startswith(("proxy", "sluice")):
                    for line in proc.log_tail(8):
                        print("#   [%s stderr] %s" % (proc.name, line))
            sys.stdout.flush()
        else:
            self.passed += 1
            self._tap(True, name)
        finally:
            if not keep_processes:
                for proc in self.processes[started:]:
                    proc.stop()
                del self.processes[started:]

    def skip(self, name, reason):
        """A case that cannot run here: `ok N - name # SKIP reason`."""
        if self._selected(name):
            self.skipped += 1
            self._tap(True, name, "SKIP " + reason)

    def skip_all(self, reason):
        """The whole script cannot run here (not root, a tool missing):
        `1..0 # SKIP reason`, exit 0, which meson reports as SKIP.  Call it
        before any case."""
        self.cleanup()
        print("1..0 # SKIP %s" % reason.replace("\n", " "), flush=True)
        sys.exit(0)

    def note(self, text):
        """A diagnostic line (figures etc.)."""
        for line in text.splitlines() or [""]:
            print("# " + line, flush=True)

    def cleanup(self):
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception:
                pass
        self.processes = []
        if self.tmp and os.path.isdir(self.tmp):
            if self.args.keep_tmp:
                print("# kept %s" % self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None

    def finish(self):
        """The plan (1..N, at the end: cases are not known in advance), a
        closing comment with the counts; exit 1 if a case failed or none
        was reported at all."""
        self.cleanup()
        print("1..%d" % self.number)
        print("# %d passed, %d failed, %d skipped"
              % (self.passed, self.failed, self.skipped), flush=True)
        sys.exit(1 if self.failed or not self.number else 0)
