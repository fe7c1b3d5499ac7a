#!/usr/bin/env python3
"""Peer tests (issue 3): `sluice origin` and `sluice fetch` against each
other, through `sluice proxy`, and against curl and nginx.

fetch verifies every byte against the pattern (daemon/base/pattern.h) that the
origin serves; the byte-level checks here use harness.sluice_bytes(), a
Python port of it, so that neither verb is checked only by the other.  The
give-up cases hold a reader that never reads (SO_RCVBUF 4096) against the
origin and wait for its per-connection JSON line.

    python3 tests/integration/test_peers.py --sluice build/sluice --origin tests/origin.py
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (MiB, KiB, HttpConn, check, config, sluice_bytes,  # noqa: E402
                     sluice_etag, sluice_key, sluice_sha256)

env = harness.Env(__doc__)
GIVE_UPS = {}     # gave_up value -> the origin's JSON line, for the closing note
GIVE_UP_WAIT = 20.0


def url(origin, path):
    return "http://127.0.0.1:%d%s" % (origin.port, path)


def expect(res, key, want):
    got = res.get(key, "(missing)")
    check(got == want, "%s %r, expected %r: %s" % (key, got, want, res.describe()))


def expect_complete(res, n, verified=True):
    """fetch exited 0 with the whole body of n bytes (verified when asked)."""
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "complete")
    check(res.rc == 0, "exit status %s, expected 0: %s" % (res.rc, res.describe()))
    expect(res, "received_bytes", n)
    expect(res, "verified", verified)


def stop_ok(proc):
    """SIGTERM a sluice origin and check that it exits 0: under ASan/LSan
    a leak or memory error makes the status non-zero."""
    rc = proc.stop(grace=30.0)
    check(rc == 0, "%s exit status %s after SIGTERM: %s"
          % (proc.name, rc, " | ".join(proc.log_tail())))


def figures(what, res):
    env.note("%s: rc %s outcome %s received %s in %.3f s (%s bit/s) verified %s resumes %s"
             % (what, res.rc, res.get("outcome"), res.get("received_bytes"),
                res.get("seconds") or 0.0, res.get("rate_bps"), res.get("verified"),
                res.get("resumes")))


# ---------------------------------------------------------------------------
# 1-3: whole bodies, direct, through the proxy, chunked
# ---------------------------------------------------------------------------

def direct_256m():
    o = env.start_sluice_origin()
    n = 256 * MiB
    res = env.run_fetch(url(o, "/bytes/256M"), ["--verify"], timeout=120)
    expect_complete(res, n)
    expect(res, "status", 200)
    expect(res, "expected_bytes", n)
    expect(res, "resumes", 0)
    expect(res, "url", url(o, "/bytes/256M"))
    check(isinstance(res.get("rate_bps"), (int, float)) and res.get("rate_bps") > 0,
          "rate_bps %r" % res.get("rate_bps"))
    figures("direct 256 MiB", res)
    stop_ok(o)


def via_proxy_256m():
    o = env.start_sluice_origin()
    px = env.start_proxy(config([o.addr]))
    n = 256 * MiB
    res = env.run_fetch(px.url + "/bytes/256M", ["--verify"], timeout=120)
    expect_complete(res, n)
    expect(res, "status", 200)
    expect(res, "expected_bytes", n)
    figures("through sluice proxy 256 MiB", res)
    env.stop_clean(px)
    stop_ok(o)


def chunked():
    o = env.start_sluice_origin()
    # The framing itself, read byte-exact by the harness's own client.
    with HttpConn(o.port, timeout=30) as c:
        c.request("GET", "/bytes/1M?chunked=1")
        r = c.read_response(deadline=30)
    check(r.status == 200, "status %s" % r.status)
    check(r.framing == "chunked", "framing %s, expected chunked; head %r"
          % (r.framing, r.raw_head))
    check(r.get("Content-Length") is None, "Content-Length %r with chunked"
          % r.get("Content-Length"))
    check(r.body == sluice_bytes(0, MiB), "chunked 1 MiB body differs from the pattern")
    check(r.get("ETag") == sluice_etag(MiB), "ETag %r, expected %r"
          % (r.get("ETag"), sluice_etag(MiB)))
    n = 64 * MiB
    res = env.run_fetch(url(o, "/bytes/64M?chunked=1"), ["--verify"], timeout=60)
    expect_complete(res, n)
    expect(res, "status", 200)
    figures("chunked 64 MiB", res)
    stop_ok(o)


# ---------------------------------------------------------------------------
# 4: ranges, HEAD, If-Range, errors
# ---------------------------------------------------------------------------

def curl_range(o, path, rng, extra=()):
    return env.curl(["-r", rng] + list(extra) + [url(o, path)], timeout=30)


def expect_206(r, first, last, size, key=None):
    check(r.rc == 0, r.describe())
    check(r.status() == 206, "status %s, expected 206: %s" % (r.status(), r.head_text))
    want_cr = "bytes %d-%d/%d" % (first, last, size)
    check(r.header("Content-Range") == want_cr, "Content-Range %r, expected %r"
          % (r.header("Content-Range"), want_cr))
    n = last - first + 1
    check(r.header("Content-Length") == str(n), "Content-Length %r, expected %d"
          % (r.header("Content-Length"), n))
    check(len(r.body) == n, "got %d bytes, expected %d" % (len(r.body), n))
    check(r.body == sluice_bytes(first, n, key), "bytes %d-%d differ from the pattern"
          % (first, last))


def ranges():
    o = env.start_sluice_origin()
    big = 256 * MiB
    r = curl_range(o, "/bytes/256M", "1000-1999")
    expect_206(r, 1000, 1999, big)
    check(r.header("ETag") == sluice_etag(big), "ETag %r on the 206" % r.header("ETag"))
    env.note("206: Content-Range %s, %d bytes match the pattern"
             % (r.header("Content-Range"), len(r.body)))
    expect_206(curl_range(o, "/bytes/4k", "-500"), 3596, 4095, 4096)
    expect_206(curl_range(o, "/bytes/4k", "4000-"), 4000, 4095, 4096)
    expect_206(curl_range(o, "/bytes/4k", "4000-9999"), 4000, 4095, 4096)
    expect_206(curl_range(o, "/bytes/4k", "0-0"), 0, 0, 4096)
    # Past 4 GiB: offsets are 64-bit all the way.
    g5 = 5 * 1024 * MiB
    expect_206(curl_range(o, "/bytes/5G", "%d-%d" % (g5 - 100, g5 - 1)), g5 - 100, g5 - 1, g5)

    r = curl_range(o, "/bytes/256M", "999999999-")
    check(r.status() == 416, "status %s, expected 416: %s" % (r.status(), r.head_text))
    check(r.header("Content-Range") == "bytes */%d" % big,
          "416 Content-Range %r, expected 'bytes */%d'" % (r.header("Content-Range"), big))

    # Several ranges: ignored, the whole body with 200.
    r = curl_range(o, "/bytes/4k", "0-1,5-6")
    check(r.status() == 200, "multi-range: status %s, expected 200" % r.status())
    check(r.body == sluice_bytes(0, 4096), "multi-range: body is not the whole pattern")

    # HEAD then GET on one kept-alive connection.
    with HttpConn(o.port, timeout=10) as c:
        c.request("HEAD", "/bytes/256M")
        h = c.read_response(method="HEAD", deadline=10)
        c.request("GET", "/bytes/1k")
        g = c.read_response(deadline=10)
    check(h.status == 200, "HEAD status %s" % h.status)
    check(h.get("Content-Length") == str(big), "HEAD Content-Length %r" % h.get("Content-Length"))
    check(h.get("ETag") == sluice_etag(big), "HEAD ETag %r, expected %r"
          % (h.get("ETag"), sluice_etag(big)))
    check(h.get("Accept-Ranges") == "bytes", "HEAD Accept-Ranges %r" % h.get("Accept-Ranges"))
    check(h.get("Last-Modified"), "HEAD has no Last-Modified")
    check(g.status == 200 and g.body == sluice_bytes(0, 1024),
          "GET after HEAD on the same connection: status %s, %d bytes"
          % (g.status, len(g.body or b"")))
    env.note("HEAD: Content-Length %s ETag %s Accept-Ranges %s Last-Modified %s"
             % (h.get("Content-Length"), h.get("ETag"), h.get("Accept-Ranges"),
                h.get("Last-Modified")))

    # If-Range: the current ETag keeps the range, another one gets 200.
    expect_206(curl_range(o, "/bytes/4k", "100-199",
                          ["-H", "If-Range: " + sluice_etag(4096)]), 100, 199, 4096)
    r = curl_range(o, "/bytes/4k", "100-199", ["-H", "If-Range: " + sluice_etag(4097)])
    check(r.status() == 200, "If-Range with another ETag: status %s, expected 200"
          % r.status())
    check(r.body == sluice_bytes(0, 4096), "If-Range with another ETag: not the whole body")
    env.note("sluice fetch has no option to send a Range: fetch-side ranges are "
             "covered by --resume in the truncation case")
    stop_ok(o)


def other_key():
    o = env.start_sluice_origin(["--key", "other"])
    key = sluice_key("other")
    r = curl_range(o, "/bytes/64k", "8-4103")
    expect_206(r, 8, 4103, 65536, key)
    check(r.header("ETag") == sluice_etag(65536, key), "ETag %r, expected %r"
          % (r.header("ETag"), sluice_etag(65536, key)))
    res = env.run_fetch(url(o, "/bytes/4M"), ["--verify"], timeout=30)
    expect_complete(res, 4 * MiB)


def errors():
    o = env.start_sluice_origin()
    r = harness.get(o.port, "/nope")
    check(r.status == 404, "unknown path: status %s, expected 404" % r.status)
    for method in ("POST", "PUT", "DELETE"):
        with HttpConn(o.port) as c:
            c.request(method, "/bytes/1k", headers=[("Connection", "close")],
                      body=b"x" if method != "DELETE" else b"")
            r = c.read_response(method=method)
        check(r.status == 405, "%s: status %s, expected 405" % (method, r.status))


# ---------------------------------------------------------------------------
# 5-7: truncated, corrupt, refused
# ---------------------------------------------------------------------------

def truncated():
    o = env.start_sluice_origin(["--truncate-at", "1M"])
    res = env.run_fetch(url(o, "/bytes/4M"), ["--verify"], timeout=30)
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "truncated")
    check(res.rc == 3, "exit status %s, expected 3: %s" % (res.rc, res.describe()))
    expect(res, "received_bytes", MiB)
    expect(res, "expected_bytes", 4 * MiB)
    figures("truncated at 1 MiB", res)

    out = env.path("resumed.bin")
    res = env.run_fetch(url(o, "/bytes/4M"), ["--resume", "--verify", "-o", out], timeout=30)
    expect_complete(res, 4 * MiB)
    check(isinstance(res.get("resumes"), int) and res.get("resumes") >= 1,
          "resumes %r, expected >= 1" % res.get("resumes"))
    check(os.path.getsize(out) == 4 * MiB, "-o file has %d bytes" % os.path.getsize(out))
    check(harness.sha256_file(out) == sluice_sha256(4 * MiB),
          "-o file after resume differs from the pattern")
    figures("resumed", res)

    # curl sees the truncation as a short body (FIN before Content-Length).
    r = env.curl([url(o, "/bytes/4M")], timeout=30)
    check(r.rc == 18, "curl rc %s, expected 18 (partial file): %s" % (r.rc, r.describe()))
    check(r.sink.length == MiB, "curl got %d bytes, expected %d" % (r.sink.length, MiB))
    stop_ok(o)


def corrupt():
    o = env.start_sluice_origin(["--flip-at", "123457"])
    res = env.run_fetch(url(o, "/bytes/1M"), ["--verify"], timeout=30)
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "corrupt")
    check(res.rc == 4, "exit status %s, expected 4: %s" % (res.rc, res.describe()))
    expect(res, "first_bad_offset", 123457)
    expect(res, "verified", False)
    figures("corrupt", res)
    r = curl_range(o, "/bytes/1M", "123450-123463")
    want = bytearray(sluice_bytes(123450, 14))
    want[7] ^= 0xff
    check(r.status() == 206 and r.body == bytes(want),
          "bytes 123450-123463: %s, expected %s" % (r.body.hex(), bytes(want).hex()))
    stop_ok(o)


def refused():
    port = harness.free_port_refused()
    res = env.run_fetch("http://127.0.0.1:%d/bytes/1k" % port, timeout=30)
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "refused")
    check(res.rc == 5, "exit status %s, expected 5: %s" % (res.rc, res.describe()))


def http_error():
    o = env.start_sluice_origin()
    res = env.run_fetch(url(o, "/nope"), timeout=30)
    check(res.rc == 5, "exit status %s, expected 5: %s" % (res.rc, res.describe()))
    expect(res, "status", 404)


def fetch_timeout():
    o = env.start_sluice_origin(["--drip", "100", "--every", "30s"])
    res = env.run_fetch(url(o, "/bytes/1M"), ["--timeout", "1s"], timeout=30)
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "timeout")
    check(res.rc == 5, "exit status %s, expected 5: %s" % (res.rc, res.describe()))
    # The first drip goes with the head, the next is 30 s away.
    check(res.get("received_bytes") == 100, "received %r, expected 100 (one drip)"
          % res.get("received_bytes"))
    check(res.wall >= 1.0, "fetch ended after %.2f s, before its 1 s timeout" % res.wall)


# ---------------------------------------------------------------------------
# 8: give-up behaviours against a reader that never reads
# ---------------------------------------------------------------------------

def stuck_reader(port, target):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect(), so that the window scale is chosen for it.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % target).encode())
    return s


def reader_holds(s):
    """(bytes queued in the reader's socket, response head length): peeked,
    so that reading opens no window for more bytes to arrive."""
    inq = struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    data = b""
    if inq > 0:
        data = s.recv(inq, socket.MSG_PEEK)
    end = data.find(b"\r\n\r\n")
    check(end >= 0, "the reader holds %d bytes and no complete response head: %r"
          % (inq, data[:200]))
    check(data.startswith(b"HTTP/1.1 200"), "reader got %r" % data[:60])
    return inq, end + 4


def drain(s, limit=10.0):
    """Read s until EOF, a reset, 1 s of silence or limit s; (bytes, how)."""
    s.settimeout(1.0)
    total = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            b = s.recv(256 * KiB)
        except ConnectionResetError:
            return total, "RST"
        except socket.timeout:
            return total, "still open"
        if not b:
            return total, "EOF"
        total += len(b)
    return total, "still sending after %.0f s" % limit


def give_up(want, args, target="/bytes/1G", size=1024 * MiB, min_duration=0.0,
            acked_at_end=True):
    """acked_at_end: the origin's socket is gone when its JSON line is
    written, so bytes_acked counts every byte the reader holds.  Not so for
    --close-after-write, whose line is written at close(): the orphaned
    socket goes on sending, and the reader holds more than was acked."""
    jf = env.path("origin-%s.json" % want)
    o = env.start_sluice_origin(list(args) + ["--json", jf], name="sluice-origin-" + want)
    s = stuck_reader(o.port, target)
    try:
        t0 = time.monotonic()
        lines = harness.wait_until(lambda: harness.read_json_lines(jf), GIVE_UP_WAIT, 0.05)
        took = time.monotonic() - t0
        check(lines, "no JSON line in %s within %.0f s; origin: %s"
              % (jf, GIVE_UP_WAIT, " | ".join(o.log_tail(6))))
        j = lines[0]
        env.note("%s after %.2f s: %s" % (want, took, json.dumps(j, sort_keys=True)))
        GIVE_UPS[want] = j
        inq, head = reader_holds(s)
        held = inq - head
        got, how = drain(s)
        env.note("%s: the reader held %d bytes (head %d, body %d); reading it to the end "
                 "gave %d bytes, then %s" % (want, inq, head, held, got, how))
    finally:
        s.close()
    missing = [k for k in ("bytes_written", "bytes_acked", "bytes_unsent", "zero_window_s",
                           "probes", "gave_up", "duration_s", "body_bytes",
                           "queued_at_close", "peer", "requests") if k not in j]
    check(not missing, "JSON line lacks %s" % ", ".join(missing))
    check(j["gave_up"] == want, "gave_up %r, expected %r" % (j["gave_up"], want))
    check(j["body_bytes"] == size, "body_bytes %r, expected %d" % (j["body_bytes"], size))
    check(j["body_bytes"] == j["bytes_acked"] + j["bytes_unsent"],
          "body_bytes %d != bytes_acked %d + bytes_unsent %d"
          % (j["body_bytes"], j["bytes_acked"], j["bytes_unsent"]))
    if acked_at_end:
        check(j["bytes_acked"] >= held, "bytes_acked %d < %d body bytes the reader holds"
              % (j["bytes_acked"], held))
    # What was written and not acked is what the kernel still held (the
    # head is acked with the first body bytes).
    if j["bytes_acked"] > 0:
        check(j["bytes_written"] - j["bytes_acked"] == j["queued_at_close"],
              "bytes_written %d - bytes_acked %d != queued_at_close %d"
              % (j["bytes_written"], j["bytes_acked"], j["queued_at_close"]))
    check(j["bytes_written"] >= j["bytes_acked"], "bytes_written %d < bytes_acked %d"
          % (j["bytes_written"], j["bytes_acked"]))
    check(j["requests"] == 1, "requests %r, expected 1" % j["requests"])
    check(j["duration_s"] >= min_duration, "duration_s %r < %.1f" % (j["duration_s"], min_duration))
    stop_ok(o)
    return j, got - head, how


def give_up_send_timeout():
    j, _, _ = give_up("send-timeout", ["--send-timeout", "1s"], min_duration=1.0)
    check(j["bytes_written"] < j["body_bytes"], "the whole 1 GiB was written?")


def give_up_user_timeout():
    j, _, _ = give_up("user-timeout", ["--user-timeout", "2s"], min_duration=2.0)
    check(j["bytes_written"] < j["body_bytes"], "the whole 1 GiB was written?")


def give_up_zwp():
    j, _, how = give_up("zwp-probes", ["--zwp-probes", "3", "--zwp-interval", "200ms"],
                     min_duration=1.4)
    check(j["probes"] == 3, "probes %r, expected 3" % j["probes"])
    # 0.2 + 0.4 + 0.8 s with the window seen closed.
    check(j["zero_window_s"] >= 1.35, "zero_window_s %r < 1.4 (0.2 + 0.4 + 0.8)"
          % j["zero_window_s"])
    check(how == "RST", "the reader saw %s after the abort, expected a RST" % how)


def give_up_orphan():
    # The whole body must fit in the kernel's buffers for close() to come
    # at once: 8 MiB does not (the send queue stops near 2.8 MB on loopback
    # with the default tcp_wmem), and adding --send-timeout then reports
    # "send-timeout".  1 MiB fits with room to spare.
    j, body, how = give_up("orphan", ["--close-after-write"], target="/bytes/1M", size=MiB,
                           acked_at_end=False)
    check(j["queued_at_close"] > 0, "queued_at_close %r, expected > 0" % j["queued_at_close"])
    check(j["bytes_written"] == j["body_bytes"], "bytes_written %d, expected the whole %d"
          % (j["bytes_written"], j["body_bytes"]))
    # The orphaned socket still delivers what was queued once the reader reads.
    check(body == MiB and how == "EOF", "after the close the reader got %d body bytes, then %s;"
          " expected the whole %d, then EOF" % (body, how, MiB))


def give_up_note():
    have = sorted(GIVE_UPS)
    want = sorted(["send-timeout", "user-timeout", "zwp-probes", "orphan"])
    for k in have:
        j = GIVE_UPS[k]
        env.note("%-12s written %d acked %d unsent %d zero_window %.2f s probes %s "
                 "queued_at_close %s duration %.2f s"
                 % (k, j["bytes_written"], j["bytes_acked"], j["bytes_unsent"],
                    j["zero_window_s"], j["probes"], j["queued_at_close"], j["duration_s"]))
    check(have == want, "give-ups seen: %s, expected one of each of %s" % (have, want))


# ---------------------------------------------------------------------------
# 9-10: drip and rate
# ---------------------------------------------------------------------------

def drip_http():
    o = env.start_sluice_origin(["--drip", "200", "--every", "100ms"])
    res = env.run_fetch(url(o, "/bytes/2000"), ["--verify"], timeout=30)
    expect_complete(res, 2000)
    # Ten drips of 200 bytes: nine intervals of 100 ms at least.
    check(res.get("seconds") >= 0.8, "seconds %r < 0.8 for 10 drips every 100 ms"
          % res.get("seconds"))
    figures("drip 200 B / 100 ms", res)
    stop_ok(o)


def drip_raw():
    o = env.start_sluice_origin(["--raw"])
    with socket.create_connection(("127.0.0.1", o.port), timeout=10) as s:
        data = bytearray()
        while len(data) < 64 * KiB:
            b = s.recv(64 * KiB - len(data))
            check(b, "raw origin closed after %d bytes" % len(data))
            data += b
    check(bytes(data) == sluice_bytes(0, 64 * KiB),
          "raw origin: the first 64 KiB are not the pattern from offset 0 (%r)" % bytes(data[:40]))
    o.stop()

    o = env.start_sluice_origin(["--raw", "--drip", "200", "--every", "100ms"],
                                name="sluice-origin-raw-drip")
    res = env.run_fetch("tcp://127.0.0.1:%d" % o.port,
                        ["--read", "100", "--interval", "50ms", "--count", "10", "--verify"],
                        timeout=30)
    expect_complete(res, 1000)
    check(res.get("seconds") >= 0.45, "seconds %r < 0.45 for 10 reads every 50 ms"
          % res.get("seconds"))
    figures("raw drip, 10 reads of 100 B", res)
    stop_ok(o)


def rate():
    o = env.start_sluice_origin()
    n = 4 * MiB
    res = env.run_fetch(url(o, "/bytes/4M"), ["--rate", "8mbit", "--verify"], timeout=60)
    expect_complete(res, n)
    # 4 MiB at 8 Mbit/s is 4.19 s: pacing can make it slower, never faster.
    check(res.get("seconds") >= 3.0, "4 MiB at 8mbit took %r s, expected >= 3"
          % res.get("seconds"))
    check(res.wall >= 3.0, "4 MiB at 8mbit: the process ran %.2f s, expected >= 3" % res.wall)
    figures("rate 8mbit", res)
    stop_ok(o)


def rcvbuf():
    o = env.start_sluice_origin()
    res = env.run_fetch(url(o, "/bytes/8M"), ["--rcvbuf", "64k", "--verify"], timeout=30)
    expect_complete(res, 8 * MiB)


# ---------------------------------------------------------------------------
# 10b: the printer out of paper (--stall-at, --stall-for)
# ---------------------------------------------------------------------------

def expect_stalled(res, want_s):
    """stalled_s is the time fetch spent in its --stall-for sleeps, summed:
    one stall is want_s or more (a loaded machine only sleeps longer); two
    would be 2 * want_s or more, so the upper bound counts stalls, it does
    not time one."""
    st = res.get("stalled_s")
    check(isinstance(st, (int, float)) and st >= want_s - 0.1,
          "stalled_s %r, expected at least the %.1f s stall: %s" % (st, want_s, res.describe()))
    check(st < 2 * (want_s - 0.1), "stalled_s %r: two stalls of %.1f s, expected one: %s"
          % (st, want_s, res.describe()))


def client_socket(port):
    """(Recv-Q, bytes_received) of the client's socket to 127.0.0.1:port
    from ss -tin, or None when there is none."""
    out = subprocess.run(["ss", "-tinH", "dport = :%d" % port], capture_output=True,
                         text=True, timeout=10).stdout
    m = re.search(r"^\S+\s+(\d+)\s+\d+\s+\S+\s+127\.0\.0\.1:%d\b.*\n.*?\bbytes_received:(\d+)"
                  % port, out, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def sample_client(port, samples, stop):
    while not stop.is_set():
        got = client_socket(port)
        if got:
            samples.append(got)
        stop.wait(0.1)


def stall_http():
    # --sndbuf 64k: with the default tcp_wmem (max 4 MiB) the whole 4 MiB
    # body fits in the origin's socket at once, its connection ends before
    # the stall, and it sees no zero window.
    jf = env.path("origin-stall.json")
    o = env.start_sluice_origin(["--sndbuf", "64k", "--json", jf], name="sluice-origin-stall")
    samples, stop = [], threading.Event()
    t = None
    if shutil.which("ss"):
        t = threading.Thread(target=sample_client, args=(o.port, samples, stop), daemon=True)
        t.start()
    try:
        res = env.run_fetch(url(o, "/bytes/4M"),
                            ["--stall-at", "1M", "--stall-for", "2s", "--rcvbuf", "64k",
                             "--verify"], timeout=60)
    finally:
        stop.set()
        if t:
            t.join(15)
    expect_complete(res, 4 * MiB)
    expect_stalled(res, 2.0)
    check(res.get("seconds") >= 1.9, "seconds %r, shorter than the 2 s stall"
          % res.get("seconds"))
    figures("stall 2 s at 1 MiB", res)
    lines = harness.wait_until(lambda: harness.read_json_lines(jf), 10, 0.05)
    check(lines, "no JSON line from the origin: " + " | ".join(o.log_tail(6)))
    j = lines[0]
    check(j["zero_window_s"] > 1.0, "the origin saw a zero window for %r s, expected > 1: %s"
          % (j["zero_window_s"], json.dumps(j)))
    env.note("origin during the stall: zero_window_s %.3f probes %s"
             % (j["zero_window_s"], j["probes"]))
    if t is None:
        env.note("ss not found: the client's socket was not sampled")
    else:
        expect_held_at(samples, MiB)
    stop_ok(o)


def expect_held_at(samples, at):
    """Some ss sample shows the client stopped at the stall point: it took
    `at` body bytes and a head (under 1 KiB), not one more, and the kernel
    holds what came after them unread."""
    held = [(q, got - q) for q, got in samples if q > 0 and at <= got - q <= at + KiB]
    check(held, "no ss sample of the client holding unread bytes after %d body bytes: %r"
          % (at, samples[-20:]))
    env.note("ss during the stall: %d of %d samples at the stall point, e.g. Recv-Q %d "
             "after %d bytes taken" % (len(held), len(samples), held[-1][0], held[-1][1]))


def stall_raw():
    o = env.start_sluice_origin(["--raw"], name="sluice-origin-raw-stall")
    res = env.run_fetch("tcp://127.0.0.1:%d" % o.port,
                        ["--stall-at", "0", "--stall-for", "1s", "--read", "64k",
                         "--interval", "10ms", "--count", "20", "--verify"], timeout=30)
    check(res.json is not None, "no JSON object from fetch: " + res.describe())
    expect(res, "outcome", "complete")
    check(res.rc == 0, "exit status %s, expected 0: %s" % (res.rc, res.describe()))
    expect(res, "verified", True)
    n = res.get("received_bytes")
    check(isinstance(n, int) and 0 < n <= 20 * 64 * KiB, "received_bytes %r, expected 1.."
          "%d (20 reads of 64 KiB)" % (n, 20 * 64 * KiB))
    expect_stalled(res, 1.0)
    figures("raw stall 1 s before the first read", res)
    stop_ok(o)


def stall_rate():
    # 2 MiB at 8 Mbit/s is 2.1 s, plus the 1 s stall.  A pacer that made up
    # for the stall would burst and end near 2.1 s; pacing is never faster.
    o = env.start_sluice_origin()
    res = env.run_fetch(url(o, "/bytes/2M"), ["--rate", "8mbit", "--stall-at", "512k",
                                              "--stall-for", "1s", "--verify"], timeout=60)
    expect_complete(res, 2 * MiB)
    expect_stalled(res, 1.0)
    check(res.get("seconds") >= 2.8, "2 MiB at 8mbit with a 1 s stall took %r s, expected "
          ">= 2.8: the pacer caught up the stall" % res.get("seconds"))
    figures("rate 8mbit, 1 s stall at 512 KiB", res)
    stop_ok(o)


def stall_resume():
    # Truncated at 1 MiB, resumed: stalls at 512 KiB, at 1 MiB (the
    # truncation point) and at 2 MiB (in the resumed connection), once each.
    o = env.start_sluice_origin(["--truncate-at", "1M"])
    for at in ("512k", "1M", "2M"):
        res = env.run_fetch(url(o, "/bytes/4M"), ["--resume", "--verify", "--stall-at", at,
                                                  "--stall-for", "1s"], timeout=30)
        expect_complete(res, 4 * MiB)
        check(res.get("resumes") == 1, "--stall-at %s: resumes %r, expected 1"
              % (at, res.get("resumes")))
        expect_stalled(res, 1.0)
        figures("resume with a stall at %s" % at, res)
    stop_ok(o)


def stall_usage():
    u = "http://127.0.0.1:9/bytes/1M"
    for args, want in ((["--stall-at", "1M"], "--stall-at and --stall-for go together"),
                       (["--stall-for", "1s"], "--stall-at and --stall-for go together"),
                       (["--stall-at", "1M", "--stall-for", "xyz"],
                        "--stall-for xyz: not a duration"),
                       (["--stall-at", "1M", "--stall-for", "0"],
                        "--stall-for 0: out of range (1ms to 24h)"),
                       (["--stall-at", "lots", "--stall-for", "1s"],
                        "--stall-at lots: not a size")):
        r = env.run_sluice(["fetch", u] + args, timeout=10)
        check(r.returncode == 2, "%s: exit status %s, expected 2 (stderr %r)"
              % (" ".join(args), r.returncode, r.stderr))
        check(want in r.stderr, "%s: stderr %r, expected %r" % (" ".join(args), r.stderr, want))
        check(not r.stdout.strip(), "%s: stdout %r on bad usage" % (" ".join(args), r.stdout))
    r = env.run_sluice(["help", "fetch"])
    check("--stall-at BYTES --stall-for T" in r.stdout and "stalled_s" in r.stdout,
          "sluice help fetch does not document --stall-at/--stall-for and stalled_s")


def source():
    """--source: the connection comes from that local address (the lab's
    [dos] clients use their own); a bad one is a usage error."""
    jf = env.path("origin-source.json")
    o = env.start_sluice_origin(["--json", jf], name="sluice-origin-source")
    res = env.run_fetch(url(o, "/bytes/64k"), ["--verify", "--source", "127.0.0.2"])
    expect_complete(res, 64 * 1024)
    lines = harness.wait_until(lambda: harness.read_json_lines(jf), 5.0, 0.05)
    check(lines and str(lines[0].get("peer", "")).startswith("127.0.0.2:"),
          "the origin saw the peer %r, not 127.0.0.2" % (lines and lines[0].get("peer")))
    r = env.run_sluice(["fetch", url(o, "/bytes/1k"), "--source", "nowhere"], timeout=10)
    check(r.returncode == 2 and "--source nowhere: not an IPv4 or IPv6 address" in r.stderr,
          "bad --source: exit %s, stderr %r" % (r.returncode, r.stderr))
    stop_ok(o)


# ---------------------------------------------------------------------------
# 11: interop with curl and nginx
# ---------------------------------------------------------------------------

FILE = {}


def www_file():
    """A 32 MiB random file in a world-readable www dir, made once."""
    if not FILE:
        www = os.path.join(env.tmp, "www")
        os.makedirs(www)
        os.chmod(www, 0o755)
        path = os.path.join(www, "big.bin")
        data = os.urandom(32 * MiB)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        FILE.update(www=www, path=path, data=data, sha=hashlib.sha256(data).hexdigest())
        # The pattern as a plain file: served with nginx's ETag, not ours.
        pat = os.path.join(www, "pattern.bin")
        with open(pat, "wb") as f:
            f.write(sluice_bytes(0, 4 * MiB))
        os.chmod(pat, 0o644)
        # A file outside the root that no request may reach, by ".." or
        # by a symlink inside the root.
        secret = os.path.join(env.tmp, "secret.txt")
        with open(secret, "w") as f:
            f.write("SECRET-OUTSIDE-ROOT\n")
        os.symlink(secret, os.path.join(www, "link.txt"))
    return FILE


def curl_from_origin():
    o = env.start_sluice_origin()
    n = 16 * MiB
    out = env.path("curl-16m.bin")
    r = env.curl(["-o", out, url(o, "/bytes/16M")], timeout=60)
    check(r.rc == 0, r.describe())
    check(r.status() == 200, "status %s" % r.status())
    check(r.header("Content-Length") == str(n), "Content-Length %r" % r.header("Content-Length"))
    check(os.path.getsize(out) == n, "curl wrote %d bytes" % os.path.getsize(out))
    got = harness.sha256_file(out)
    want = sluice_sha256(n)
    check(got == want, "sha256 %s, expected the pattern's %s" % (got, want))
    env.note("curl from sluice origin: 16 MiB, sha256 %s" % got[:16])


def fetch_from_nginx():
    f = www_file()
    ng = env.start_nginx(f["www"])
    out = env.path("from-nginx.bin")
    res = env.run_fetch(url(ng, "/big.bin"), ["-o", out], timeout=60)
    expect_complete(res, 32 * MiB, verified=None)
    expect(res, "status", 200)
    expect(res, "expected_bytes", 32 * MiB)
    check(harness.sha256_file(out) == f["sha"], "-o file differs from the file nginx served")
    figures("fetch from nginx 32 MiB", res)
    # nginx's ETag does not carry the key: --key gives it.
    res = env.run_fetch(url(ng, "/pattern.bin"), ["--verify", "--key", "sluice"], timeout=30)
    expect_complete(res, 4 * MiB)
    res = env.run_fetch(url(ng, "/pattern.bin"), ["--verify", "--key", "other"], timeout=30)
    expect(res, "outcome", "corrupt")
    check(res.rc == 4, "--key other: exit status %s, expected 4" % res.rc)
    expect(res, "first_bad_offset", 0)
    res = env.run_fetch(url(ng, "/pattern.bin"), ["--verify"], timeout=30)
    check(res.get("verified") is not True, "verified without knowing the key: " + res.describe())
    env.note("--verify without --key from nginx: rc %s verified %s outcome %s; stderr %r"
             % (res.rc, res.get("verified"), res.get("outcome"), res.stderr.strip()[-120:]))
    res = env.run_fetch(url(ng, "/missing.bin"), timeout=30)
    check(res.rc == 5, "nginx 404: exit status %s, expected 5: %s" % (res.rc, res.describe()))
    expect(res, "status", 404)


def origin_root():
    f = www_file()
    o = env.start_sluice_origin(["--root", f["www"]])
    out = env.path("root-curl.bin")
    r = env.curl(["-o", out, url(o, "/big.bin")], timeout=60)
    check(r.rc == 0, r.describe())
    check(r.status() == 200, "status %s" % r.status())
    check(r.header("Content-Length") == str(32 * MiB), "Content-Length %r"
          % r.header("Content-Length"))
    check(harness.sha256_file(out) == f["sha"], "curl's copy differs from the file")
    r = env.curl(["-r", "1000000-1999999", url(o, "/big.bin")], timeout=30)
    check(r.status() == 206, "status %s, expected 206" % r.status())
    check(r.header("Content-Range") == "bytes 1000000-1999999/%d" % (32 * MiB),
          "Content-Range %r" % r.header("Content-Range"))
    # env.curl keeps only the first 64 KiB in .body; compare that and the digest.
    want = f["data"][1000000:2000000]
    check(r.sink.length == len(want) and r.body == want[:64 * KiB]
          and r.sink.sha256 == hashlib.sha256(want).hexdigest(),
          "range 1000000-1999999 differs from the file (%d bytes)" % r.sink.length)
    r = env.curl(["-r", "-10", url(o, "/big.bin")], timeout=30)
    check(r.status() == 206 and r.body == f["data"][-10:], "suffix range: %s %r"
          % (r.status(), r.body))
    out2 = env.path("root-fetch.bin")
    res = env.run_fetch(url(o, "/big.bin"), ["-o", out2], timeout=60)
    expect_complete(res, 32 * MiB, verified=None)
    check(harness.sha256_file(out2) == f["sha"], "fetch's copy differs from the file")
    r = harness.get(o.port, "/missing.bin")
    check(r.status == 404, "missing file: status %s" % r.status)
    for target in ("/../secret.txt", "/./../secret.txt", "/x/../../secret.txt",
                   "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/link.txt"):
        r = harness.get(o.port, target)
        check(r.status in (400, 403, 404), "%s: status %s, expected 400/403/404"
              % (target, r.status))
        check(b"SECRET" not in (r.body or b""), "%s: served the file outside the root" % target)
    stop_ok(o)


env.case("fetch <- origin, 256 MiB verified", direct_256m)
env.case("--source: the connection comes from that address", source)
env.case("fetch <- proxy <- origin, 256 MiB verified", via_proxy_256m)
env.case("chunked body, framing and 64 MiB verified", chunked)
env.case("ranges: 206 bytes, suffix, clipped, 416, multi, HEAD, If-Range", ranges)
env.case("--key: another pattern, ETag and verify follow it", other_key)
env.case("unknown path 404, other methods 405", errors)
env.case("truncated body: exit 3, then --resume completes", truncated)
env.case("flipped byte: exit 4 at the exact offset", corrupt)
env.case("refused connect: exit 5", refused)
env.case("non-2xx: exit 5 with the status", http_error)
env.case("--timeout with no byte: exit 5", fetch_timeout)
env.case("give-up: --send-timeout 1s", give_up_send_timeout)
env.case("give-up: --user-timeout 2s", give_up_user_timeout)
env.case("give-up: --zwp-probes 3 --zwp-interval 200ms", give_up_zwp)
env.case("give-up: --close-after-write leaves an orphan", give_up_orphan)
env.case("give-up: one JSON line of each kind", give_up_note)
env.case("drip 200 B every 100 ms over HTTP", drip_http)
env.case("raw origin: pattern from 0, paced reads", drip_raw)
env.case("fetch --rate 8mbit is paced", rate)
env.case("fetch --rcvbuf 64k", rcvbuf)
env.case("fetch --stall-at 1M --stall-for 2s: zero window, then complete", stall_http)
env.case("fetch --stall-at 0 --stall-for 1s over tcp://", stall_raw)
env.case("fetch --rate with a stall: no burst after it", stall_rate)
env.case("fetch --stall-at with --resume: one stall in total", stall_resume)
env.case("fetch --stall-at/--stall-for: bad usage exits 2", stall_usage)
env.case("curl from sluice origin, sha256 of the pattern", curl_from_origin)
env.case("fetch from nginx, 32 MiB byte-exact", fetch_from_nginx)
env.case("origin --root: curl whole and ranges, fetch, no escape", origin_root)
env.finish()
