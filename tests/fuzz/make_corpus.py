#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harnesses: tests/fuzz/corpus/<target>/.

Run from anywhere: python3 tests/fuzz/make_corpus.py.  It rewrites the
files it makes (deterministic names and bytes) and leaves the others: the
real capture corpus/pcap/loopback-curl (tcpdump -s 128 on lo of curl
fetching a small file from python3 -m http.server) and any crash input a
fuzzer found, minimized and added by hand as a regression case.

Each harness's input layout is in its file's opening comment: the HTTP
harnesses take option bytes and four read sizes before the bytes a peer
sends.  The requests and responses are the shapes of
tests/integration/test_smuggling.py and test_hardening.py (Connection
naming the framing, both framings, duplicate lengths, codings other than
chunked, bare CR, obs-fold, bad field names, blank lines, huge heads) and
plain traffic, each in a few read splits.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
H = b"Host: 127.0.0.1\r\n"

REQUESTS = {
    "get": b"GET / HTTP/1.1\r\n" + H + b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "get10": b"GET /old HTTP/1.0\r\n\r\n",
    "get10-keepalive": b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "head": b"HEAD /h HTTP/1.1\r\n" + H + b"\r\n",
    "post-length": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    "pipelined": (b"GET /1 HTTP/1.1\r\n" + H + b"\r\n") * 2 +
                 b"POST /3 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc" +
                 b"GET /4 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    "xff": b"GET /x HTTP/1.1\r\n" + H + b"X-Forwarded-For: 10.0.0.1\r\n"
           b"Via: 1.0 other\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\r\n",
    "hop-by-hop": b"GET /hop HTTP/1.1\r\n" + H + b"Connection: keep-alive, X-Secret, TE\r\n"
                  b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                  b"Proxy-Connection: keep-alive\r\nTrailer: X\r\n\r\n",
    "conn-via-xff": b"GET /v HTTP/1.1\r\n" + H + b"Connection: Via, X-Forwarded-For\r\n"
                    b"Via: 1.1 other\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n",
    "upgrade": b"GET /ws HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
               b"GET /after HTTP/1.1\r\n" + H + b"\r\n",
    "expect": b"PUT /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    "absolute": b"GET http://example.test/a?b=c HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "options": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    # the smuggling shapes
    "conn-content-length": b"POST /a HTTP/1.1\r\n" + H + b"Connection: Content-Length\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "conn-transfer-encoding": b"POST /a HTTP/1.1\r\n" + H + b"Connection: Transfer-Encoding\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" +
                              b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
    "conn-host": b"GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Host\r\n\r\n",
    "cl-and-te": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-and-cl": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                 b"Content-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "cl-twice": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    "cl-list": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "te-twice": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n",
    "te-space": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:  chunked \r\n\r\n0\r\n\r\n",
    "te-xchunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
    "bare-cr": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\rX-A: b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "name-space": b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n",
    "name-space-colon": b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n",
    "name-empty": b"GET / HTTP/1.1\r\n" + H + b": v\r\n\r\n",
    "target-tab": b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n",
    "ctl-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n",
    "lf-only": b"GET / HTTP/1.1\nHost: 127.0.0.1\nX-A: b\n\n",
    "blank-lines": b"\r\n" * 600 + b"GET /bl HTTP/1.1\r\n" + H + b"\r\n",
    "padded": b"GET /ws HTTP/1.1\r\n" + H + b"X-Pad:" + b" " * 3000 + b"v\r\n\r\n",
    "many-fields": b"GET /m HTTP/1.1\r\n" + H + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(140)) + b"\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "http2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "connect": b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
    "http09": b"GET /\r\n\r\n",
}

RESPONSES = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: t\r\n\r\n",
    "close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
    "http10": b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n"
              b"Content-type: text/plain\r\nContent-Length: 21\r\n\r\nhello from a fixture\n",
    "no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "not-modified": b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n",
    "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "partial": b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/10\r\n"
               b"ETag: \"e\"\r\nContent-Length: 5\r\n\r\nhello",
    "conn-content-length": b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
    "hop-by-hop": b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\n"
                  b"Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nok",
    "te-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "te-gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n",
    "cl-twice": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "bare-cr-reason": b"HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nhi",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
    "tab-reason": b"HTTP/1.1 200 All\tgood\r\nContent-Length: 2\r\n\r\nhi",
    "no-reason": b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
    "short-length": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    "short-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX\r\n",
    "many-fields": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(140))
                   + b"Content-Length: 0\r\n\r\n",
    "padded": b"HTTP/1.1 200 OK\r\nX-Pad:" + b" " * 3000 + b"v\r\nContent-Length: 0\r\n\r\n",
    "http2": b"HTTP/2 200\r\n\r\n",
}

# (in framing, minor, body): byte 0 of fuzz_framing is built from these.
FRAMING = {
    "chunked": (0, 1, b"5;ext=v\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"),
    "chunked-trailers": (0, 1, b"3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"),
    "chunked-big": (0, 1, b"400\r\n" + bytes(range(256)) * 4 + b"\r\n0\r\n\r\n"),
    "chunked-to-10": (0, 0, b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"),
    "chunked-short": (0, 1, b"10\r\nonly part"),
    "chunked-bad": (0, 1, b"2\r\nokXX\r\n0\r\n\r\n"),
    "chunked-ones": (0, 1, b"".join(b"1\r\n%c\r\n" % c for c in b"one byte each") + b"0\r\n\r\n"),
    "length": (1, 1, b"exactly this body"),
    "length-10": (1, 0, b"exactly this body"),
    "close": (2, 1, b"until the upstream closes"),
    "close-10": (2, 0, b"until the upstream closes"),
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


SPLITS = {  # suffix: (four read sizes)
    "": (0, 0, 0, 0),
    "-bytes": (1, 1, 1, 1),
    "-split": (7, 3, 11, 0),
}


def http_seeds():
    for name, data in REQUESTS.items():
        for sfx, sizes in SPLITS.items():
            # opt: max_header_size 32k (3); a second copy with 1k
            write("request_head", name + sfx, bytes([3]) + bytes(sizes) + data)
        write("request_head", name + "-1k-v6", bytes([0x10]) + bytes(4) + data)
    for name, data in RESPONSES.items():
        for sfx, sizes in SPLITS.items():
            # opt: HTTP/1.1 client, GET, keep-alive, max 32k
            write("response_head", name + sfx, bytes([0x31]) + bytes(sizes) + data)
        write("response_head", name + "-10", bytes([0x30]) + bytes(4) + data)
    write("response_head", "length-head", bytes([0x33]) + bytes(4) + RESPONSES["length"])
    write("response_head", "chunked-head", bytes([0x33]) + bytes(4) + RESPONSES["chunked"])
    write("response_head", "close-1k", bytes([0x05]) + bytes(4) + RESPONSES["close"])
    for name, (fin, minor, body) in FRAMING.items():
        for sfx, sizes in SPLITS.items():
            opt = fin | minor << 2 | 2 << 3  # 256-byte blocks
            write("framing", name + sfx, bytes([opt, 0]) + bytes(sizes) + body)
        # 64-byte blocks, drained after each read, spooled
        opt = fin | minor << 2 | 0 << 3 | 1 << 6
        write("framing", name + "-spill", bytes([opt, 1]) + bytes([5, 0, 0, 0]) + body)
    fin, minor, body = FRAMING["length"]
    write("framing", "length-short", bytes([1 | 1 << 2 | 2 << 3 | 0x80, 0]) + bytes(4) + body)


def ini_seeds():
    write("config", "sluice.ini", open(os.path.join(ROOT, "conf", "sluice.ini"), "rb").read())
    write("config", "spill.ini", b"[listen]\naddress = [::1]:0\n[upstream]\n"
          b"server = 127.0.0.1:9000\nserver = [::1]:9001\nbalance = least-conn\n"
          b"[buffer]\npolicy = spill\nspill_dir = /tmp\nhigh_watermark = 2M\n"
          b"low_watermark = 512k\nmemory_limit = 64M\nresume = on\n"
          b"[client]\nzwp_probes = 4\nzwp_interval = 250ms\nzwp_timeout = 3s\n"
          b"[log]\nlevel = debug\n[admin]\naddress = 127.0.0.1:9090\n")
    write("config", "errors.ini", b"[buffer]\nlow_watermark = 2M\nhigh_watermark = 1M\n")
    scen = os.path.join(ROOT, "conf", "scenarios")
    for f in sorted(os.listdir(scen)):
        if f.endswith(".ini"):
            shutil.copyfile(os.path.join(scen, f), os.path.join(CORPUS, "scenario", f))
    bench = os.path.join(ROOT, "bench")
    for f in sorted(os.listdir(bench)):
        if f.endswith(".ini"):
            shutil.copyfile(os.path.join(bench, f), os.path.join(CORPUS, "sweep", f))
    write("sweep", "axes.ini", b"[bench]\nbase = ../conf/scenarios/incident.ini\nrepeat = 2\n"
          b"[axes]\npolicy = pause, spill, pace\nhigh_watermark = 256k, 4M\n"
          b"give_up = zwp-probes=4,interval=200ms | send-timeout=3s\nlb = sluice, nginx\n"
          b"body = 1M\nclient_rate = 2mbit\n")


def units_seeds():
    def seed(name, sel, num, text):
        write("units_range", name, bytes([sel]) + struct.pack("<Q", num) + text)

    for i, t in enumerate([b"64k", b"2.5G", b" 1536 ", b"4 MiB", b"16T", b"18446744073709551615",
                           b"0.5k", b"9999999999T"]):
        seed("size-%d" % i, 0, 1 << 30, t)
    for i, t in enumerate([b"250ms", b"30s", b"5m", b"2h", b"1.5min", b"0"]):
        seed("duration-%d" % i, 1, 86400000, t)
    for i, t in enumerate([b"2mbit", b"500kbit", b"1gbit", b"8", b"100mbps"]):
        seed("rate-%d" % i, 2, 10 ** 10, t)
    for i, t in enumerate([b"bytes=0-499", b"bytes=500-", b"bytes=-500", b" bytes = 5-4",
                           b"bytes=0-0,5-9", b"bytes=99999999999999999999-"]):
        seed("range-%d" % i, 3 | 0x80, 1000, t)
    for i, t in enumerate([b"bytes 0-499/1234", b"bytes */1234", b"bytes 0-0/*",
                           b"bytes 5-4/10", b"bytes 0-9/10 "]):
        seed("content-range-%d" % i, 4, 0, t)
    for i, t in enumerate([b"1:1460, 201:1260, 401:0", b"", b"1:2:3",
                           b",".join(b"%d:%d" % (i, i) for i in range(20))]):
        seed("article-%d" % i, 5, 0, t)


def pcap_seeds():
    """Captures of a zero-window stall with Linux's probes, as the lab's
    own run records them, in each link type the reader knows."""
    cisn, sisn = 2374033554, 0xffffff00
    segs = [  # t, from client, flags, seq, ack, win, len, wscale, mss
        (0.000, 1, 0x02, 0, 0, 64240, 0, 7, 1460),
        (0.001, 0, 0x12, 0, 1, 65160, 0, 7, 1460),
        (0.002, 1, 0x10, 1, 1, 502, 0, -1, 0),
        (0.003, 1, 0x18, 1, 1, 502, 80, -1, 0),
        (0.010, 0, 0x10, 1, 81, 509, 1448, -1, 0),
        (0.020, 1, 0x10, 81, 1449, 0, 0, -1, 0),
        (0.220, 0, 0x10, 1448, 81, 509, 0, -1, 0),
        (0.221, 1, 0x10, 81, 1449, 0, 0, -1, 0),
        (0.620, 0, 0x10, 1448, 81, 509, 0, -1, 0),
        (0.621, 1, 0x10, 81, 1449, 0, 0, -1, 0),
        (1.420, 0, 0x10, 1448, 81, 509, 0, -1, 0),
        (1.421, 1, 0x10, 81, 1449, 100, 0, -1, 0),
        (1.430, 0, 0x18, 1449, 81, 509, 1000, -1, 0),
        (1.440, 0, 0x11, 2449, 81, 509, 0, -1, 0),
        (1.441, 1, 0x04, 81, 0, 0, 0, -1, 0),
    ]

    def frame(s, link):
        t, cl, flags, seq, ack, win, ln, ws, mss = s
        opts = b""
        if mss:
            opts += struct.pack(">BBH", 2, 4, mss)
        if ws >= 0:
            opts += struct.pack(">BBBB", 1, 3, 3, ws)
        src, dst = (b"\x0a\x09\x00\x02", b"\x0a\x09\x00\x01") if cl else (b"\x0a\x09\x00\x01", b"\x0a\x09\x00\x02")
        sp, dp = (56848, 9999) if cl else (9999, 56848)
        seq = ((cisn if cl else sisn) + seq) & 0xffffffff
        ack = ((sisn if cl else cisn) + ack) & 0xffffffff if flags & 0x10 else 0
        tcp = struct.pack(">HHIIBBHHH", sp, dp, seq, ack, (5 + len(opts) // 4) << 4,
                          flags, win, 0, 0) + opts
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + ln, 0, 0x4000, 64, 6, 0,
                         src, dst)
        pkt = ip + tcp + b"x" * ln
        if link == 1:
            pkt = b"\x00" * 12 + b"\x08\x00" + pkt
        elif link == 113:
            pkt = b"\x00\x00\x03\x04\x00\x06" + b"\x00" * 8 + b"\x08\x00" + pkt
        wire = len(pkt)
        pkt = pkt[:128]
        sec = 1700000000 + int(t)
        usec = int(round((t - int(t)) * 1e6))
        return struct.pack("<IIII", sec, usec, len(pkt), wire) + pkt

    for link in (1, 113, 101):
        data = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 128, link)
        data += b"".join(frame(s, link) for s in segs)
        write("pcap", "zero-window-link%d" % link, data)


def main():
    for t in ("request_head", "response_head", "framing", "config", "scenario",
              "sweep", "units_range", "pcap"):
        os.makedirs(os.path.join(CORPUS, t), exist_ok=True)
    http_seeds()
    ini_seeds()
    units_seeds()
    pcap_seeds()


if __name__ == "__main__":
    main()
