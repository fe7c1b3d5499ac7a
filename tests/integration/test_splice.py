#!/usr/bin/env python3
"""[buffer] splice: response bodies that need no inspection move upstream
socket -> kernel pipe -> client socket with splice(2), and every policy
keeps its meaning.

Real peers: curl and tests/origin.py (Content-Length, chunked and
close-delimited bodies), a scripted origin below (chunked bodies with
chunk sizes, extensions, trailers and aborts chosen byte by byte),
`sluice origin` and `sluice fetch --verify` (every byte checked
against the origin's pattern).  That splice was really used is read from
the access log's "spliced" field and sluice_spliced_bytes_total; that it
held no more than it may, from GET /connections (memory_bytes, which
counts the kernel pipe, and pipe_bytes, the kernel pipe alone, read back
with FIONREAD).  Nothing asserts speed: bytes, counters, states; every
wait bounded.

    python3 tests/integration/test_splice.py --sluice build/sluice
"""

import json
import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KiB, MiB, SLOW, check, config  # noqa: E402

env = harness.Env(__doc__)
S = {}
PIPE_MAX = 1 * MiB      # /proc/sys/fs/pipe-max-size's default; read below


def metrics(aport):
    return harness.metrics_flat(aport)


def connections(aport):
    r = harness.get(aport, "/connections", timeout=10)
    check(r.status == 200, "GET /connections: status %s" % r.status)
    return json.loads(r.body)


def proxy(servers, name, splice="auto", sections=None, **buf):
    b = {"splice": splice}
    b.update(buf)
    log = env.path(name + "-access.json")
    sec = dict(sections or {})
    sec.update(buffer=b, admin={"address": "127.0.0.1:0"}, log={"access": log})
    px = env.start_proxy(config(servers, **sec), name=name)
    px.aport = env.admin_port(px)
    px.access = log
    return px


def access(px, path, count=1):
    """The access lines of path, once count of them were written."""
    def lines():
        try:
            with open(px.access) as f:
                return [json.loads(x) for x in f if x.strip()]
        except OSError:
            return []
    harness.wait_until(lambda: len([a for a in lines() if a["path"] == path]) >= count,
                       10 * SLOW)
    got = [a for a in lines() if a["path"] == path]
    check(len(got) >= count, "%d access line(s) for %s, expected %d" % (len(got), path, count))
    return got


def fds(px):
    return len(os.listdir("/proc/%d/fd" % px.pid))


def release_all(dls):
    """Held downloads released all at once (a download waiting for memory
    waits on the others), then each read to its end."""
    for dl in dls:
        dl.release()
    for dl in dls:
        dl.finish()


def peak_under_limit(px, seconds):
    """Waits (bounded) for memory_limit to be reached, then samples
    sluice_memory_buffered_bytes for `seconds`: its peak.  Downloads past
    the limit wait for memory, some before their head: the limit is waited
    for, not each hold."""
    check(harness.wait_until(lambda: metrics(px.aport).get(
        "sluice_memory_limit_hits_total", 0) >= 1, 30 * SLOW), "memory_limit never reached")
    peak = 0
    for _ in range(int(seconds * 10 * SLOW)):
        peak = max(peak, metrics(px.aport).get("sluice_memory_buffered_bytes", 0))
        time.sleep(0.1)
    return peak


def all_exact(dls, n):
    for dl in dls:
        check(dl.sink.sha256 == harness.sluice_sha256(n), "a body differs: %s" % dl.describe())


def setup():
    global PIPE_MAX
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            PIPE_MAX = int(f.read())
    except OSError:
        pass
    S["po"] = env.start_origin(id="a")
    S["so"] = env.start_sluice_origin([], name="sluice-origin")
    S["cut"] = env.start_sluice_origin(["--truncate-at", str(3 * MiB)], name="sluice-origin-cut")


def curl_exact(px, target, n, http10=False):
    url = "http://127.0.0.1:%d%s" % (px.port, target)
    res = env.curl((["--http1.0"] if http10 else []) + [url], timeout=60 * SLOW,
                   write_out=["http_code"])
    check(res.rc == 0, "curl rc %s: %s" % (res.rc, res.stderr))
    check(res.write_out.get("http_code") == ["200"], "status %s" % res.write_out)
    res.sink.check(n)
    return res


def fetch_exact(px, path, n, args=()):
    res = env.run_fetch("http://127.0.0.1:%d%s" % (px.port, path),
                        ["--verify"] + list(args), timeout=120 * SLOW)
    j = res.json or {}
    check(j.get("verified") is True and j.get("received_bytes") == n and
          j.get("outcome") == "complete", "sluice fetch: %s" % j)
    return j


# ---- auto and off ---------------------------------------------------------

def content_length_spliced():
    """A Content-Length body, curl and sluice fetch: exact, and all but
    what came with the head's read went through the kernel pipe."""
    px = proxy([S["po"].addr], "cl")
    n = 8 * MiB
    curl_exact(px, "/bytes/%d?mode=cl" % n, n)
    a = access(px, "/bytes/%d?mode=cl" % n)[0]
    env.note("curl: %s" % {k: a[k] for k in ("bytes_from_upstream", "bytes_to_client",
                                              "spliced", "peak_memory")})
    check(a["bytes_from_upstream"] == n, "bytes_from_upstream %d" % a["bytes_from_upstream"])
    check(n - 256 * KiB <= a["spliced"] <= n, "spliced %d of %d" % (a["spliced"], n))
    check(a["bytes_to_client"] > n, "bytes_to_client %d (head + body)" % a["bytes_to_client"])
    px2 = proxy([S["so"].addr], "cl-fetch")
    fetch_exact(px2, "/bytes/12M", 12 * MiB)
    a = access(px2, "/bytes/12M")[0]
    check(a["spliced"] > 11 * MiB, "spliced %d" % a["spliced"])
    m = metrics(px2.aport)
    check(m.get("sluice_spliced_bytes_total") == a["spliced"],
          "sluice_spliced_bytes_total %s, access %d" % (m.get("sluice_spliced_bytes_total"),
                                                        a["spliced"]))
    check(m.get("sluice_memory_buffered_bytes") == 0, "memory_buffered_bytes %s after the "
          "download" % m.get("sluice_memory_buffered_bytes"))
    env.stop_clean(px)
    env.stop_clean(px2)


def close_delimited():
    """A close-delimited body: to an HTTP/1.0 client it is passed as it
    came, to an HTTP/1.1 client the proxy frames it chunked, one chunk per
    run spliced; both spliced, both exact."""
    px = proxy([S["po"].addr], "close")
    n = 5 * MiB + 7
    curl_exact(px, "/bytes/%d?mode=close" % n, n, http10=True)
    a = access(px, "/bytes/%d?mode=close" % n)[0]
    check(a["bytes_from_upstream"] == n and a["spliced"] > n - 256 * KiB,
          "HTTP/1.0: from upstream %d, spliced %d" % (a["bytes_from_upstream"], a["spliced"]))
    res = curl_exact(px, "/bytes/%d?mode=close" % n, n)
    check("chunked" in (res.header("transfer-encoding") or ""),
          "HTTP/1.1: Transfer-Encoding %r" % res.header("transfer-encoding"))
    a = access(px, "/bytes/%d?mode=close" % n, 2)[1]
    env.note("HTTP/1.1 (chunked): spliced %d of %d" % (a["spliced"], n))
    check(a["bytes_from_upstream"] == n and a["spliced"] > n - 256 * KiB,
          "HTTP/1.1 (chunked): from upstream %d, spliced %d" % (a["bytes_from_upstream"],
                                                               a["spliced"]))
    check(a["outcome"] == "complete", "outcome %s" % a["outcome"])
    env.stop_clean(px)


# ---- chunked bodies -----------------------------------------------------------

class ScriptedOrigin(harness.ThreadedServer):
    """An origin that answers every request with a script: bytes to send,
    ("sleep", s), or "rst" (an abortive close); then it closes."""

    def __init__(self, script):
        self.script = script
        super().__init__()

    def _conn(self, c):
        try:
            c.settimeout(30 * SLOW)
            data = b""
            while b"\r\n\r\n" not in data:
                got = c.recv(4096)
                if not got:
                    return
                data += got
            for part in self.script:
                if part == "rst":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                if isinstance(part, tuple):
                    time.sleep(part[1])
                    continue
                c.sendall(part)
        except OSError:
            pass
        finally:
            c.close()


def chunked_script(sizes, trailers=b"", ext=b"", last=True):
    """The pattern's first sum(sizes) bytes as one chunk per size."""
    pat = harness.pattern()
    per = len(pat)
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
             b"Content-Type: application/octet-stream\r\n\r\n"]
    off = 0
    for size in sizes:
        data = bytearray()
        while len(data) < size:
            start = (off + len(data)) % per
            data += pat[start:start + min(size - len(data), per - start)]
        parts.append(b"%x%s\r\n" % (size, ext) + bytes(data) + b"\r\n")
        off += size
    if last:
        parts.append(b"0\r\n" + trailers + b"\r\n")
    return parts, off


def chunked_spliced():
    """A chunked body (tests/origin.py: chunks of 1 byte to 100 KB) to an
    HTTP/1.1 client: the proxy frames each upstream chunk as one of its own,
    the large chunks' data spliced; curl's body is exact, and so is
    sluice_spliced_bytes_total."""
    px = proxy([S["po"].addr], "chunked")
    n = 8 * MiB + 3
    t = "/bytes/%d?mode=chunked" % n
    res = curl_exact(px, t, n)
    check("chunked" in (res.header("transfer-encoding") or ""),
          "Transfer-Encoding %r" % res.header("transfer-encoding"))
    a = access(px, t)[0]
    env.note("chunked: %s" % {k: a[k] for k in ("bytes_from_upstream", "bytes_to_client",
                                                 "spliced", "peak_memory", "outcome")})
    check(a["bytes_from_upstream"] == n, "bytes_from_upstream %d" % a["bytes_from_upstream"])
    check(a["spliced"] > n // 2, "spliced %d of %d" % (a["spliced"], n))
    check(a["outcome"] == "complete", "outcome %s" % a["outcome"])
    # again: the upstream socket kept from the first (keep-alive) starts
    # where the last chunk ended
    curl_exact(px, t, n)
    m = metrics(px.aport)
    got = sum(x["spliced"] for x in access(px, t, 2))
    check(m.get("sluice_spliced_bytes_total") == got, "sluice_spliced_bytes_total %s, "
          "access %d" % (m.get("sluice_spliced_bytes_total"), got))
    env.stop_clean(px)


def chunked_scripted(name, sizes, trailers=b"", ext=b"", http10=False):
    parts, n = chunked_script(sizes, trailers=trailers, ext=ext)
    o = ScriptedOrigin(parts)
    px = proxy([o.addr], name)
    try:
        curl_exact(px, "/" + name, n, http10=http10)
        a = access(px, "/" + name)[0]
    finally:
        env.stop_clean(px)
        o.stop()
    env.note("%s: %d chunks, %d bytes, spliced %d" % (name, len(sizes), n, a["spliced"]))
    check(a["bytes_from_upstream"] == n and a["outcome"] == "complete",
          "access %s" % a)
    return n, a


def chunked_trailers_ext():
    """Chunks with extensions, a trailer section, and a chunk spliced to
    its end at a read boundary: exact, spliced; to an HTTP/1.0 client too
    (the proxy takes the framing away, the data spliced)."""
    sizes = [100000, 70000, 5, 65536, 131072, 1, 200000]
    n, a = chunked_scripted("trailers", sizes, ext=b";name=value",
                            trailers=b"X-Sum: abc\r\nX-Other: 1\r\n")
    check(a["spliced"] > n // 2, "spliced %d of %d" % (a["spliced"], n))
    n, a = chunked_scripted("http10", sizes, http10=True)
    check(a["spliced"] > n // 2, "HTTP/1.0: spliced %d of %d" % (a["spliced"], n))


def chunked_small():
    """Many small chunks (through memory) around large ones (spliced): the
    proxy switches between the two paths at every large chunk; exact."""
    sizes = ([7, 1, 300, 12] * 1500 + [150000] + [3, 2000, 1] * 800 + [90000, 17] +
             [1] * 3000 + [300000])
    n, a = chunked_scripted("small", sizes)
    check(a["spliced"] >= 300000, "spliced %d of %d" % (a["spliced"], n))


def chunked_slow_client():
    """policy pause, chunked, a client that stops reading: the upstream is
    paused at the watermarks, what the download holds is bounded, and after
    the client reads on the body is exact."""
    high = 512 * KiB
    px = proxy([S["po"].addr], "chunked-stall", high_watermark="512k", low_watermark="128k")
    n = 16 * MiB
    t = "/bytes/%d?mode=chunked" % n
    dl = harness.HeldDownload(px.port, t, harness.HashSink(), hold_at=256 * KiB,
                              rcvbuf=64 * KiB)
    try:
        check(dl.wait_held(), dl.describe())
        peak = 0
        paused = False
        for _ in range(int(40 * SLOW)):
            cs = [c for c in connections(px.aport) if c["path"].split("?")[0] == t.split("?")[0]]
            if cs:
                peak = max(peak, cs[0]["memory_bytes"])
                paused = paused or cs[0]["upstream_paused"]
                if paused:
                    break
            time.sleep(0.1)
        env.note("chunked, held: memory_bytes peak %d, upstream paused %s" % (peak, paused))
        check(paused, "the upstream was never paused")
        check(peak <= high + PIPE_MAX + 64 * KiB, "held %d > high_watermark %d + one pipe %d"
              % (peak, high, PIPE_MAX))
        resp = dl.finish()
    finally:
        dl.close()
    check(resp.status == 200, "status %s" % resp.status)
    check(dl.sink.sha256 == harness.expected_sha256(n), "body differs from the pattern")
    a = access(px, t)[0]
    check(a["spliced"] > 0 and a["paused_s"] > 0 and a["bytes_from_upstream"] == n,
          "access %s" % a)
    check(a["peak_memory"] <= high + PIPE_MAX + 64 * KiB, "peak_memory %d" % a["peak_memory"])
    env.stop_clean(px)


def chunked_abort():
    """An upstream that closes or resets mid-body, inside a spliced chunk
    or between chunks: the client gets every byte that came, then a close
    its framing shows as short (curl fails: no last chunk), never a clean
    end."""
    px = proxy([S["po"].addr], "chunked-abort")
    for kind in ("close-after", "reset-after"):
        got = 3 * MiB + 11
        t = "/%s/%d?total=%d&mode=chunked" % (kind, got, 8 * MiB)
        res = env.curl(["http://127.0.0.1:%d%s" % (px.port, t)], timeout=60 * SLOW)
        a = access(px, t)[0]
        env.note("%s: curl rc %s, %d bytes; access %s" % (kind, res.rc, res.sink.length,
                 {k: a[k] for k in ("outcome", "spliced", "bytes_from_upstream")}))
        check(res.rc != 0, "%s: curl rc 0: a clean end" % kind)
        check(res.sink.is_pattern_prefix(), "%s: body not a prefix of the pattern" % kind)
        if kind == "close-after":
            check(res.sink.length == got, "%s: %d bytes, sent %d" % (kind, res.sink.length, got))
        check(a["outcome"] != "complete" and a["spliced"] > 0, "%s: access %s" % (kind, a))
    env.stop_clean(px)
    # inside a large chunk's data, which is being spliced
    parts, n = chunked_script([100000, 400000], last=False)
    cut = parts[2][:len(parts[2]) // 2]
    o = ScriptedOrigin(parts[:2] + [cut, ("sleep", 0.2), "rst"])
    px = proxy([o.addr], "chunked-cut")
    try:
        for _ in range(2):
            res = env.curl(["http://127.0.0.1:%d/cut" % px.port], timeout=60 * SLOW)
            check(res.rc != 0, "cut in a chunk: curl rc 0: a clean end")
            check(res.sink.is_pattern_prefix(), "cut: body not a prefix of the pattern")
        a = access(px, "/cut", 2)
        env.note("cut in a chunk: curl %d bytes; access %s" % (
            res.sink.length, [{k: x[k] for k in ("outcome", "spliced")} for x in a]))
        check(all(x["outcome"] != "complete" for x in a), "access %s" % a)
    finally:
        env.stop_clean(px)
        o.stop()
    o = ScriptedOrigin(parts[:2] + [cut])
    px = proxy([o.addr], "chunked-fin")
    try:
        res = env.curl(["http://127.0.0.1:%d/fin" % px.port], timeout=60 * SLOW)
        a = access(px, "/fin")[0]
        env.note("FIN in a chunk: curl rc %s, %d bytes; access %s" % (
            res.rc, res.sink.length, {k: a[k] for k in ("outcome", "spliced")}))
        check(res.rc != 0, "FIN in a chunk: curl rc 0: a clean end")
        check(res.sink.length == 100000 + len(cut) - len(b"61a80\r\n") and
              res.sink.is_pattern_prefix(), "FIN in a chunk: %d bytes" % res.sink.length)
        check(a["outcome"] != "complete" and a["spliced"] > 0, "access %s" % a)
    finally:
        env.stop_clean(px)
        o.stop()


def splice_off():
    px = proxy([S["so"].addr], "off", splice="off")
    fetch_exact(px, "/bytes/6M", 6 * MiB)
    a = access(px, "/bytes/6M")[0]
    check(a["spliced"] == 0, "splice off: spliced %d" % a["spliced"])
    check(metrics(px.aport).get("sluice_spliced_bytes_total") == 0,
          "splice off: sluice_spliced_bytes_total not 0")
    env.stop_clean(px)


# ---- the policies -----------------------------------------------------------

def stalled_client_bounded():
    """policy pause, a client that stops reading: the download holds at
    most high_watermark + one kernel pipe (memory_bytes counts the pipe,
    pipe_bytes is the pipe alone), its upstream is paused, and after the
    client reads on the body is exact."""
    high = 512 * KiB
    px = proxy([S["so"].addr], "stall", high_watermark="512k", low_watermark="128k")
    base = fds(px)
    n = 16 * MiB
    dl = harness.HeldDownload(px.port, "/bytes/%d" % n, harness.HashSink(),
                              hold_at=256 * KiB, rcvbuf=64 * KiB)
    try:
        check(dl.wait_held(), dl.describe())
        peak = peak_pipe = 0
        paused = False
        for _ in range(int(40 * SLOW)):
            cs = [c for c in connections(px.aport) if c["path"] == "/bytes/%d" % n]
            if cs:
                c = cs[0]
                peak = max(peak, c["memory_bytes"])
                peak_pipe = max(peak_pipe, c["pipe_bytes"])
                paused = paused or c["upstream_paused"]
                if paused and c["pipe_bytes"] > 0:
                    break
            time.sleep(0.1)
        env.note("held: memory_bytes peak %d, pipe_bytes peak %d, upstream paused %s"
                 % (peak, peak_pipe, paused))
        check(paused, "the upstream was never paused")
        check(peak_pipe > 0, "the kernel pipe never held a byte")
        check(peak <= high + PIPE_MAX, "held %d > high_watermark %d + one pipe %d"
              % (peak, high, PIPE_MAX))
        env.note("descriptors while splicing: %d (%d before)" % (fds(px), base))
        resp = dl.finish()
    finally:
        dl.close()
    check(resp.status == 200, "status %s" % resp.status)
    check(dl.sink.sha256 == harness.sluice_sha256(n), "body differs from the pattern")
    a = access(px, "/bytes/%d" % n)[0]
    check(a["spliced"] > 0 and a["paused_s"] > 0, "spliced %d, paused_s %s"
          % (a["spliced"], a["paused_s"]))
    check(a["peak_memory"] <= high + PIPE_MAX, "peak_memory %d" % a["peak_memory"])
    # what stays: the upstream connection parked for the next request
    def left():
        return fds(px) - base - metrics(px.aport).get("sluice_upstream_idle_connections", 0)
    # wait_until's own answer: another left() would count the socket of
    # the /metrics request just made, which the proxy may not have closed
    check(harness.wait_until(lambda: left() == 0, 10 * SLOW), "descriptors after the download: %d, before %d, %s kept upstream "
          "connection(s)" % (fds(px), base,
                             metrics(px.aport).get("sluice_upstream_idle_connections")))
    env.stop_clean(px)


def paced_and_slow():
    """policy pace and pause with a client draining at 40 Mbit/s: exact, and
    spliced; pace's held bytes stay small."""
    for pol in ("pace", "pause"):
        px = proxy([S["so"].addr], pol, policy=pol)
        fetch_exact(px, "/bytes/10M", 10 * MiB, ["--rate", "40mbit"])
        a = access(px, "/bytes/10M")[0]
        env.note("%s: spliced %d, peak_memory %d, paused_s %s"
                 % (pol, a["spliced"], a["peak_memory"], a["paused_s"]))
        check(a["spliced"] > 0, "%s: spliced 0" % pol)
        check(a["bytes_from_upstream"] == 10 * MiB, "%s: from upstream %d"
              % (pol, a["bytes_from_upstream"]))
        check(a["peak_memory"] <= 1 * MiB + PIPE_MAX, "%s: peak_memory %d"
              % (pol, a["peak_memory"]))
        env.stop_clean(px)


def chunked_policies():
    """Chunked bodies (`sluice origin` ?chunked=1) under pace and pause with
    a 40 Mbit/s client, and four of them stalled under a 512 KiB
    memory_limit (a stalled chunked download holds about one 256 KiB chunk
    in its kernel pipe: four of them reach it): exact, spliced, held within
    the bounds."""
    for pol in ("pace", "pause"):
        px = proxy([S["so"].addr], "chunked-" + pol, policy=pol)
        fetch_exact(px, "/bytes/10M?chunked=1", 10 * MiB, ["--rate", "40mbit"])
        a = access(px, "/bytes/10M?chunked=1")[0]
        env.note("chunked, %s: spliced %d, peak_memory %d, paused_s %s"
                 % (pol, a["spliced"], a["peak_memory"], a["paused_s"]))
        check(a["spliced"] > 0 and a["bytes_from_upstream"] == 10 * MiB,
              "%s: access %s" % (pol, a))
        check(a["peak_memory"] <= 1 * MiB + PIPE_MAX, "%s: peak_memory %d"
              % (pol, a["peak_memory"]))
        env.stop_clean(px)
    px = proxy([S["so"].addr], "chunked-memlimit", memory_limit="512k",
               high_watermark="256k", low_watermark="64k")
    n = 8 * MiB
    t = "/bytes/%d?chunked=1" % n
    dls = [harness.HeldDownload(px.port, t, harness.HashSink(), hold_at=64 * KiB,
                                rcvbuf=64 * KiB) for _ in range(4)]
    try:
        peak = peak_under_limit(px, 1)
        env.note("chunked, memory_limit 512k: memory_buffered_bytes peak %d" % peak)
        check(peak <= 512 * KiB + 4 * 64 * KiB, "buffered %d > memory_limit 512k + a block "
              "each" % peak)
        release_all(dls)
    finally:
        for dl in dls:
            dl.close()
    all_exact(dls, n)
    check(sum(a["spliced"] for a in access(px, t, 4)) > 0, "spliced 0")
    env.stop_clean(px)


def spill_spliced():
    """policy spill on the zero-copy path: a slow client (40 Mbit/s) behind
    an 8 MiB Content-Length body with high_watermark 256k.  Every body byte
    but those the head's read brought leaves through the kernel (spliced
    from the pipe or sent from the spool file), the spool took half or more, the body is exact, and nothing is
    left on disk, in the spill_total count or in memory."""
    d = env.path("spill")
    os.mkdir(d)
    px = proxy([S["so"].addr], "spill", policy="spill", spill_dir=d, high_watermark="256k",
               low_watermark="64k")
    fetch_exact(px, "/bytes/8M", 8 * MiB, ["--rate", "40mbit"])
    a = access(px, "/bytes/8M")[0]
    env.note("spill: %s" % {k: a.get(k) for k in ("spliced", "spilled_bytes", "outcome",
                                                 "peak_memory")})
    # all but what came with the head, in the head's read (a block at most)
    check(a["spliced"] >= 8 * MiB - 64 * KiB, "spill: spliced %d of %d" % (a["spliced"], 8 * MiB))
    check(a["spilled_bytes"] >= 4 * MiB, "spill: %d spilled" % a["spilled_bytes"])
    m = harness.wait_until(lambda: (lambda m: m if m.get("sluice_spool_bytes", 1) == 0
                                    and m.get("sluice_memory_buffered_bytes", 1) == 0
                                    else None)(metrics(px.aport)), 10)
    check(m, "spool or memory not given back: %s" % metrics(px.aport))
    check(os.listdir(d) == [], "left in spill_dir: %s" % os.listdir(d))
    env.stop_clean(px)


def spill_chunked_copies():
    """policy spill with a chunked body: the memory path (the proxy's
    framing would lie between spooled bytes), exact, spooled."""
    d = env.path("spill-chunked")
    os.mkdir(d)
    px = proxy([S["so"].addr], "spill-chunked", policy="spill", spill_dir=d,
               high_watermark="256k", low_watermark="64k")
    t = "/bytes/%d?chunked=1" % (8 * MiB)
    fetch_exact(px, t, 8 * MiB, ["--rate", "40mbit"])
    a = access(px, t)[0]
    check(a["spliced"] == 0, "spill, chunked: spliced %d" % a["spliced"])
    check(a["spilled_bytes"] > 0, "spill, chunked: nothing spilled")
    env.stop_clean(px)


def resume_exact():
    """resume on: the upstream closes at 3 MiB (of 8) while the kernel pipe
    holds bytes for a slow client; the proxy asks for the rest with Range
    and the client's body is exact."""
    px = proxy([S["cut"].addr], "resume", resume="on", resume_backoff="100ms",
               resume_attempts="5")
    j = fetch_exact(px, "/bytes/8M", 8 * MiB, ["--rate", "80mbit"])
    check(j.get("resumes") == 0, "fetch resumed itself: %s" % j)
    a = access(px, "/bytes/8M")[0]
    env.note("resume: %s" % {k: a[k] for k in ("resumes", "spliced", "bytes_from_upstream",
                                              "outcome")})
    check(a["resumes"] >= 1, "no resume")
    check(a["spliced"] > 0, "spliced 0")
    check(a["bytes_from_upstream"] == 8 * MiB, "from upstream %d" % a["bytes_from_upstream"])
    env.stop_clean(px)


def memory_limit_shared():
    """memory_limit counts the kernel pipes: four stalled downloads under a
    2 MiB limit hold no more than the limit and a pipe's worth each, then
    all complete exactly."""
    px = proxy([S["so"].addr], "memlimit", memory_limit="2M", high_watermark="1M")
    n = 8 * MiB
    dls = [harness.HeldDownload(px.port, "/bytes/%d" % n, harness.HashSink(),
                                hold_at=64 * KiB, rcvbuf=64 * KiB) for _ in range(4)]
    try:
        peak = peak_under_limit(px, 2)
        m = metrics(px.aport)
        env.note("memory_buffered_bytes peak %d, memory_limit_hits %s" %
                 (peak, m.get("sluice_memory_limit_hits_total")))
        check(peak <= 2 * MiB + 4 * 64 * KiB, "buffered %d > memory_limit 2M + a block each"
              % peak)
        check(m.get("sluice_memory_limit_hits_total", 0) >= 1, "memory_limit never reached")
        # all at once: a download waiting for memory waits on the others
        release_all(dls)
    finally:
        for dl in dls:
            dl.close()
    all_exact(dls, n)
    check(sum(a["spliced"] for a in access(px, "/bytes/%d" % n, 4)) > 0, "spliced 0")
    env.stop_clean(px)


def pipe_budget():
    """max_connections 4: one download at a time may hold a kernel pipe
    (a quarter of them, as HAProxy's maxpipes), so that spliced downloads
    never take the descriptors the connections were promised.  Of three
    held downloads one is spliced and two go through memory (counted in
    sluice_splice_no_pipe_total); all three are exact, and the slot is
    free again after: the next download is spliced."""
    # a small client send buffer: a body must not fit in the kernel's
    # queues toward the held clients, or each would end (and give its pipe
    # back) before the next one starts
    px = proxy([S["so"].addr], "pipes", sections={"listen": {"max_connections": "4"},
                                                  "client": {"sndbuf": "64k"}},
               high_watermark="256k", low_watermark="64k")
    m = metrics(px.aport)
    check(m.get("sluice_splice_pipes_max") == 1, "splice_pipes_max %s, expected 1"
          % m.get("sluice_splice_pipes_max"))
    n = 4 * MiB
    dls = [harness.HeldDownload(px.port, "/bytes/%d" % n, harness.HashSink(),
                                hold_at=64 * KiB, rcvbuf=64 * KiB) for _ in range(3)]
    try:
        for dl in dls:
            check(dl.wait_held(), dl.describe())
        m = metrics(px.aport)
        env.note("held: splice_pipes %s, splice_no_pipe_total %s" %
                 (m.get("sluice_splice_pipes"), m.get("sluice_splice_no_pipe_total")))
        check(m.get("sluice_splice_pipes") == 1, "splice_pipes %s, expected 1"
              % m.get("sluice_splice_pipes"))
        check(m.get("sluice_splice_no_pipe_total") == 2, "splice_no_pipe_total %s, expected 2"
              % m.get("sluice_splice_no_pipe_total"))
        release_all(dls)
    finally:
        for dl in dls:
            dl.close()
    all_exact(dls, n)
    got = sorted(a["spliced"] > 0 for a in access(px, "/bytes/%d" % n, 3))
    check(got == [False, False, True], "spliced per download: %s" % got)
    check(harness.wait_until(lambda: metrics(px.aport).get("sluice_splice_pipes") == 0,
                             10 * SLOW), "a pipe slot left taken")
    fetch_exact(px, "/bytes/%d?again" % n, n)
    check(access(px, "/bytes/%d?again" % n)[0]["spliced"] > 0, "the freed slot was not used")
    env.stop_clean(px)


def deadlines():
    """The deadlines keep working while a body is spliced: an upstream that
    goes silent mid-body meets read_timeout (upstream_timeout, the client's
    body visibly short), a client whose window stays zero meets
    zwp_timeout (client_zwp_timeout), each after bytes were spliced."""
    n = 16 * MiB
    px = proxy([S["po"].addr], "read-timeout", sections={"upstream": {"read_timeout": "1s"}})
    target = "/stall-after/%d?total=%d&for=20" % (4 * MiB, n)
    res = env.curl(["http://127.0.0.1:%d%s" % (px.port, target)], timeout=60 * SLOW)
    a = access(px, target)[0]
    env.note("read_timeout: curl rc %s, %d bytes; access %s" % (
        res.rc, res.sink.length, {k: a[k] for k in ("outcome", "spliced", "bytes_to_client")}))
    check(res.rc != 0 and res.sink.length == 4 * MiB, "curl rc %s after %d bytes: not the "
          "4 MiB sent, visibly short" % (res.rc, res.sink.length))
    check(a["outcome"] == "upstream_timeout" and a["spliced"] > 0, "access %s" % a)
    env.stop_clean(px)

    px = proxy([S["so"].addr], "zwp", sections={"client": {"zwp_timeout": "2s"}})
    dl = harness.HeldDownload(px.port, "/bytes/%d" % n, harness.HashSink(),
                              hold_at=256 * KiB, rcvbuf=16 * KiB, hold_limit=60)
    try:
        check(dl.wait_held(), dl.describe())
        got = access(px, "/bytes/%d" % n)
    finally:
        dl.close()
    env.note("zwp_timeout: access %s" % {k: got[0][k] for k in ("outcome", "spliced")})
    check(got[0]["outcome"] == "client_zwp_timeout", "outcome %s" % got[0]["outcome"])
    check(got[0]["spliced"] > 0, "spliced 0")
    env.stop_clean(px)


env.case("setup: origins", setup, keep_processes=True)
env.case("Content-Length body, splice auto: exact (curl, sluice fetch), spliced, counted",
         content_length_spliced)
env.case("close-delimited body: spliced to HTTP/1.0, chunked (memory) to HTTP/1.1, exact",
         close_delimited)
env.case("chunked body to HTTP/1.1: one chunk per upstream chunk, spliced, exact, counted",
         chunked_spliced)
env.case("chunked with extensions and trailers, to HTTP/1.1 and 1.0: spliced, exact",
         chunked_trailers_ext)
env.case("many small chunks around large ones: exact, the large ones spliced", chunked_small)
env.case("chunked, stalled client: paused, bounded, exact", chunked_slow_client)
env.case("chunked, upstream closes or resets mid-body: never a clean end", chunked_abort)
env.case("splice off: exact, nothing spliced", splice_off)
env.case("stalled client: held <= high_watermark + one pipe, paused, exact, no fd left",
         stalled_client_bounded)
env.case("pace and pause with a 40 Mbit/s client: exact, spliced", paced_and_slow)
env.case("chunked under pace, pause and memory_limit: exact, spliced, bounded",
         chunked_policies)
env.case("spill: through the kernel pipe, the spool file and sendfile, exact", spill_spliced)
env.case("spill, chunked: through memory and the spool, exact", spill_chunked_copies)
env.case("resume after the upstream closes mid-body: exact, spliced", resume_exact)
env.case("memory_limit counts kernel pipes: bounded, all exact", memory_limit_shared)
env.case("read_timeout and zwp_timeout while splicing", deadlines)
env.case("kernel pipes for a quarter of max_connections; the others copy, all exact",
         pipe_budget)
env.finish()
