#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_conn (tests/fuzz/conn/corpus/).

An input is byte 0 (the config: 0 pause, 1 spill, 2 pace, 3 pause with
resume and memory_limit) then operations, as fuzz_conn.c's enum op says.
Run from anywhere: python3 tests/fuzz/conn/gen_seeds.py
"""
import os

CSEND, USEND, CREAD, UREAD, RUN, TIMER, CSHUT, CCLOSE, USHUT, UCLOSE, \
    CONNECT, UFILL, CFILL = range(13)
ALL = 255


def send(op, data):
    out = b''
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        out += bytes([op, len(part)]) + part
    return out


def c(data):
    return send(CSEND, data)


def u(data):
    return send(USEND, data)


def op(o, arg=None):
    return bytes([o]) if arg is None else bytes([o, arg])


def step(n=1):
    return op(RUN, n - 1)


GET = b'GET /a HTTP/1.1\r\nHost: origin\r\n\r\n'
READ_ALL = op(UREAD, ALL) + op(CREAD, ALL)

SEEDS = {
    'get-content-length': bytes([0]) + c(GET) + step(2) + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello') + step(2)
    + op(CREAD, ALL),
    'get-chunked': bytes([0]) + c(GET) + step(2) + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
        b'5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n') + step(2) + op(CREAD, ALL),
    'keepalive-two': bytes([0]) + c(b'GET /1 HTTP/1.1\r\nHost: o\r\n\r\n')
    + step(2) + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none') + step(2)
    + op(CREAD, ALL) + c(b'GET /2 HTTP/1.1\r\nHost: o\r\n\r\n') + step(2)
    + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
        b'3\r\ntwo\r\n0\r\n\r\n') + step(2) + op(CREAD, ALL),
    'pipelined-two': bytes([0])
    + c(b'GET /1 HTTP/1.1\r\nHost: o\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: o\r\n\r\n')
    + step(2) + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none') + step(3)
    + op(UREAD, ALL)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n') + step(2),
    'upstream-early-close': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial')
    + step(2) + op(UCLOSE) + step(3) + op(CREAD, ALL),
    'client-early-close': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n')
    + op(UFILL, 40) + op(CCLOSE) + step(3) + op(UFILL, 40) + step(2),
    'head-only-then-eof': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\n') + op(USHUT) + step(3),
    'backpressure-pause': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n')
    + (op(UFILL, 63) + step() + op(CREAD, 15)) * 10 + op(UFILL, 255)
    + step(3),
    'backpressure-spill': bytes([1]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n')
    + (op(UFILL, 63) + step(2)) * 10 + op(CREAD, ALL) + step(3),
    'pace': bytes([2]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
        b'1000\r\n') + op(UFILL, 63) + op(TIMER) + step(2) + op(CREAD, 31)
    + op(TIMER) + step(2) + u(b'\r\n0\r\n\r\n') + step(3),
    'resume': bytes([3]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: "v1"\r\n\r\n0123')
    + step(2) + op(UCLOSE) + step(4) + op(UREAD, ALL)
    + u(b'HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-9/10\r\n'
        b'ETag: "v1"\r\nContent-Length: 6\r\n\r\n456789') + step(3),
    'http10-close-delimited': bytes([0])
    + c(b'GET /a HTTP/1.0\r\nHost: o\r\n\r\n') + step(2)
    + u(b'HTTP/1.1 200 OK\r\n\r\nuntil the end') + op(UCLOSE) + step(3),
    'head-request': bytes([0]) + c(b'HEAD /a HTTP/1.1\r\nHost: o\r\n\r\n')
    + step(2) + u(b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n') + step(2),
    'post-body': bytes([0])
    + c(b'POST /u HTTP/1.1\r\nHost: o\r\nContent-Length: 3008\r\n\r\n')
    + op(CFILL, 46) + step(2) + op(UREAD, ALL)
    + u(b'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok') + step(2),
    'connect-refused-retry': bytes([0]) + op(CONNECT, 1) + c(GET) + step(3)
    + u(b'HTTP/1.1 204 No Content\r\n\r\n') + step(2),
    'connect-timeout': bytes([0]) + op(CONNECT, 2) + c(GET) + step(2)
    + op(TIMER) + step(2) + op(TIMER) + step(2),
    'interim-100': bytes([0])
    + c(b'POST /u HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\n'
        b'Content-Length: 4\r\n\r\n') + step(2)
    + u(b'HTTP/1.1 100 Continue\r\n\r\n') + step(2) + c(b'body') + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok') + step(2),
    'smuggle-cl-te': bytes([0])
    + c(b'POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 4\r\n'
        b'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n')
    + step(3),
    'response-te-gzip': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'
        b'3\r\nabc\r\n0\r\n\r\n') + step(3),
    # the proxy forwarded these framing fields (RFC 9110 §8.6: a server
    # MUST NOT send them); a client would take the next response as a body
    'interim-content-length': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n'
        b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok') + step(3),
    'no-content-length-keepalive': bytes([0])
    + c(b'GET /1 HTTP/1.1\r\nHost: o\r\n\r\n') + step(2)
    + u(b'HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n')
    + step(2) + c(b'GET /2 HTTP/1.1\r\nHost: o\r\n\r\n') + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok') + step(3),
    # the proxy's own 502 to a HEAD carried its text as content (RFC 9110
    # §9.3.2: none)
    'head-upstream-gone': bytes([0])
    + c(b'HEAD /a HTTP/1.1\r\nHost: o\r\n\r\n') + step(2) + op(USHUT)
    + step(3),
    'read-timeout-mid-body': bytes([0]) + c(GET) + step(2)
    + u(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc') + step(2)
    + op(TIMER) + step(3),
}


def main():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
    os.makedirs(d, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
