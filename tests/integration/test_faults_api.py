#!/usr/bin/env python3
"""Faults on demand (issue 16, part 1): the admin API's fault routes and
`sluice ctl`, against the real proxy, `sluice origin` and curl.

  1  `sluice check` refuses [admin] faults = on unless the admin address is
     on loopback or a Unix socket path (FILE:LINE and the key); a Unix
     socket admin address is served, mode 0600, by curl and sluice ctl;
  2  faults off: every fault route answers 403 (ctl exits 3), /metrics and
     /connections still answer;
  3  bad requests: 400 with a one-line JSON error naming the field (rule
     bodies, query parameters), 404 for unknown ids and rules, 405, 413 for
     a body over 4 KiB (not read);
  4  a live stall of the upstream is a named state with a deadline in
     /connections, and the origin sees a real zero window: its own JSON
     line counts the zero-window probes and it gives up (--zwp-probes)
     while the client reads as fast as it can;
  5  a live stall of the client: nothing more is written while it lasts
     (bytes_to_client holds), then the download completes byte-exact;
  6  throttle (shown in /connections, 0 removes it), reset of the client
     (curl sees the reset), close of the upstream (a short end);
  7  rules for new downloads: limit_data, latency, bandwidth, reset and
     stall at after_bytes, matched by path, server and client address;
     /metrics counts each fault applied by action, and the access line of
     each download names its faults and rule;
  8  sluice ctl: exit codes 0, 1 (unreachable), 2 (bad usage), 3 (refused),
     --json.

Cases 4 to 7 run with [proxy] workers = 1 and 2 (a fault on a connection
of another worker is applied on that worker's loop).  SLUICE_TEST_SPLICE
(off, auto) applies as everywhere.  Nothing asserts speed: states, bytes,
counts.

    python3 tests/integration/test_faults_api.py --sluice build/sluice
"""

import json
import os
import re
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KiB, MiB, SLOW, check, config  # noqa: E402

env = harness.Env(__doc__)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def proxy(o, workers=1, faults="on", admin="127.0.0.1:0", name="proxy", **sections):
    sections.setdefault("proxy", {})["workers"] = str(workers)
    sections.setdefault("admin", {}).update({"address": admin, "faults": faults})
    access = env.path(name + ".access")     # a new name each call
    sections.setdefault("log", {})["access"] = access
    px = env.start_proxy(config([o.addr], **sections), name=name)
    px.admin = admin if admin.startswith("/") else "127.0.0.1:%d" % env.admin_port(px)
    px.access = access
    return px


def admin_url(px, target):
    if px.admin.startswith("/"):
        return ["--unix-socket", px.admin, "http://sluice" + target]
    return ["http://%s%s" % (px.admin, target)]


def call(px, method, target, body=None):
    """curl as the admin API's client: (status, parsed JSON body or text)."""
    cmd = ["curl", "-sS", "-X", method, "-o", "-", "-w", "\n@@%{http_code}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    p = subprocess.run(cmd + admin_url(px, target), input=body, capture_output=True,
                       timeout=30 * SLOW)
    out = p.stdout.decode("utf-8", "replace")
    text, _, code = out.rpartition("\n@@")
    check(p.returncode == 0 and code.isdigit(),
          "curl %s %s: exit %d %s" % (method, target, p.returncode, p.stderr[-200:]))
    try:
        return int(code), json.loads(text)
    except ValueError:
        return int(code), text


def ctl(px_or_addr, *args):
    addr = px_or_addr if isinstance(px_or_addr, str) else px_or_addr.admin
    p = subprocess.run([env.sluice, "ctl", "-a", addr] + list(args),
                       capture_output=True, timeout=30 * SLOW)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def connections(px):
    status, body = call(px, "GET", "/connections")
    check(status == 200, "GET /connections: %s %s" % (status, body))
    return body


def conn_of(px, path):
    for c in connections(px):
        if c["path"] == path:
            return c
    return None


def wait_conn(px, path, pred, what, timeout=30.0):
    """The connection downloading path once pred(it) holds (bounded)."""
    found = harness.wait_until(
        lambda: (lambda c: c if c is not None and pred(c) else None)(conn_of(px, path)),
        timeout * SLOW)
    check(found, "%s: %s never %s; /connections: %s"
          % (path, path, what, json.dumps(connections(px))[:600]))
    return found


def access_line(px, path, timeout=30.0):
    line = harness.wait_until(
        lambda: next((a for a in harness.read_json_lines(px.access) if a["path"] == path), None),
        timeout * SLOW)
    check(line, "no access line for %s" % path)
    return line


def faults_applied(px):
    m = harness.metrics_flat(int(px.admin.rsplit(":", 1)[1]))
    return {k[len('sluice_faults_applied_total{action="'):-2]: v
            for k, v in m.items() if k.startswith("sluice_faults_applied_total{")}


def curl_bg(px, target, rate=None):
    """A curl download in the background, its body counted by wc -c."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{http_code}"]
    if rate:
        cmd += ["--limit-rate", rate]
    p = subprocess.Popen(cmd + [px.url + target], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=harness._die_with_parent)
    env.processes.append(harness.Process("curl " + target, p, os.devnull))
    return p


def curl_end(p, timeout=120.0):
    out, err = p.communicate(timeout=timeout * SLOW)
    size, _, code = out.decode().partition(" ")
    return p.returncode, int(size or 0), code, err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# 1, 2, 3: configuration, faults off, bad requests
# ---------------------------------------------------------------------------

def case_check():
    path = env.write_config("[upstream]\nserver = 127.0.0.1:9\n[admin]\n"
                            "address = 0.0.0.0:9100\nfaults = on\n", "open.ini")
    p = env.run_sluice(["check", "-c", path])
    err = p.stderr
    check(p.returncode == 2 and re.search(r"open\.ini:5: \[admin\] faults: on is refused", err),
          "check of faults on 0.0.0.0: exit %d, %s" % (p.returncode, err))
    for addr in ("127.0.0.1:9100", "[::1]:9100", env.path("a.sock")):
        path = env.write_config("[upstream]\nserver = 127.0.0.1:9\n[admin]\n"
                                "address = %s\nfaults = on\n" % addr, "ok.ini")
        p = env.run_sluice(["check", "-c", path])
        check(p.returncode == 0, "check of faults on %s: exit %d, %s"
              % (addr, p.returncode, p.stderr))


def case_unix_socket():
    o = env.start_sluice_origin([])
    sock = env.path("admin.sock")
    px = proxy(o, admin=sock)
    harness.wait_log(px, rb"admin: listening on " + sock.encode())
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    check(mode == 0o600, "admin socket mode %o" % mode)
    status, body = call(px, "GET", "/faults")
    check(status == 200 and body == [], "GET /faults on the socket: %s %s" % (status, body))
    rc, out, err = ctl(sock, "faults")
    check(rc == 0 and out.strip() == "[]", "ctl faults: %d %s %s" % (rc, out, err))
    env.stop_clean(px)
    check(not os.path.exists(sock), "the admin socket is left after the stop")


def case_faults_off():
    o = env.start_sluice_origin([])
    px = proxy(o, faults="off")
    for method, target in (("GET", "/faults"), ("POST", "/faults"),
                           ("DELETE", "/faults/x"), ("POST", "/connections/1/stall?for=1s")):
        status, body = call(px, method, target, b"{}" if method == "POST" else None)
        check(status == 403 and "faults" in body.get("error", ""),
              "%s %s with faults off: %s %s" % (method, target, status, body))
    rc, out, err = ctl(px, "stall", "1", "--for", "1s")
    check(rc == 3 and "403" in err, "ctl with faults off: %d %s" % (rc, err))
    check(call(px, "GET", "/connections")[0] == 200, "/connections with faults off")


BAD_RULES = [
    (b'', "(body)"),
    (b'[1]', "(body)"),
    (b'{"name":"a","action":"stall","for":"1s"} x', "(body)"),
    (b'{"action":"stall","for":"1s"}', "name"),
    (b'{"name":"a b","action":"stall","for":"1s"}', "name"),
    (b'{"name":"a","for":"1s"}', "action"),
    (b'{"name":"a","action":"explode"}', "action"),
    (b'{"name":"a","action":"stall"}', "for"),
    (b'{"name":"a","action":"stall","for":"soon"}', "for"),
    (b'{"name":"a","action":"stall","for":"1s","rate":"1mbit"}', "rate"),
    (b'{"name":"a","action":"stall","for":"1s","side":"left"}', "side"),
    (b'{"name":"a","action":"bandwidth"}', "rate"),
    (b'{"name":"a","action":"limit_data"}', "after_bytes"),
    (b'{"name":"a","action":"reset","after_bytes":-1}', "after_bytes"),
    (b'{"name":"a","action":"reset","after_bytes":1.5}', "after_bytes"),
    (b'{"name":"a","name":"b","action":"reset"}', "name"),
    (b'{"name":"a","action":"reset","bogus":1}', "bogus"),
    (b'{"name":"a","action":"reset","match":{"path":"x"}}', "match.path"),
    (b'{"name":"a","action":"reset","match":{"server":"nowhere"}}', "match.server"),
    (b'{"name":"a","action":"reset","match":{"client":"1.2.3"}}', "match.client"),
    (b'{"name":"a","action":"reset","match":{"port":"1"}}', "match.port"),
    (b'{"name":"\\u0041","action":"reset"}', "name"),
    (b'{"name":"a\x01","action":"reset"}', "name"),
]


def case_bad_requests():
    o = env.start_sluice_origin([])
    px = proxy(o)
    for body, field in BAD_RULES:
        status, js = call(px, "POST", "/faults", body)
        check(status == 400 and isinstance(js, dict)
              and js.get("error", "").startswith(field + ":"),
              "POST /faults %r: %s %s (want 400 naming %s)" % (body, status, js, field))
    for target, field in (("/connections/1/stall", "for"),
                          ("/connections/1/stall?for=1s&side=left", "side"),
                          ("/connections/1/stall?for=2h", "for"),
                          ("/connections/1/throttle?rate=fast", "rate"),
                          ("/connections/1/reset?side=up&x=1", "x")):
        status, js = call(px, "POST", target)
        check(status == 400 and js.get("error", "").startswith(field + ":"),
              "POST %s: %s %s (want 400 naming %s)" % (target, status, js, field))
    for target in ("/connections/999999/stall?for=1s", "/connections/abc/reset",
                   "/connections/1/explode"):
        status, js = call(px, "POST", target)
        check(status == 404, "POST %s: %s %s (want 404)" % (target, status, js))
    status, js = call(px, "DELETE", "/faults/nosuch")
    check(status == 404 and js["error"].startswith("name:"), "DELETE unknown: %s %s" % (status, js))
    status, js = call(px, "GET", "/connections/1/stall")
    check(status == 405, "GET on a fault action: %s" % status)
    status, js = call(px, "POST", "/faults", b'{"name":"x",' + b' ' * 5000 + b'"action":"reset"}')
    check(status == 413, "a 5 KB rule: %s %s (want 413)" % (status, js))
    status, js = call(px, "GET", "/faults")
    check(status == 200 and js == [], "no rule was added: %s" % js)


# ---------------------------------------------------------------------------
# 4, 5, 6: live faults
# ---------------------------------------------------------------------------

def case_stall_upstream(workers):
    # The origin gives up after 2 zero-window probes; the client reads as
    # fast as it can, so only the stall can hold the origin's window shut.
    ojson = env.path("origin.json")
    o = env.start_sluice_origin(["--zwp-probes", "2", "--zwp-interval", "200ms",
                                 "--json", ojson])
    px = proxy(o, workers=workers)
    dl = curl_bg(px, "/bytes/8G")
    c = wait_conn(px, "/bytes/8G", lambda c: c["bytes_to_client"] > 2 * MiB, "flowing")
    rc, out, err = ctl(px, "stall", str(c["id"]), "--side", "upstream", "--for", "10s")
    check(rc == 0 and json.loads(out)["action"] == "stall", "ctl stall: %d %s %s" % (rc, out, err))
    c = conn_of(px, "/bytes/8G")
    check(c is None or (c["fault"] == "stall_upstream" and c["fault_left_s"] > 0
                        and c["upstream_paused"]),
          "/connections during the stall: %s" % c)
    gone = harness.wait_until(lambda: [j for j in harness.read_json_lines(ojson)
                                       if j.get("path") == "/bytes/8G"], 60 * SLOW)
    check(gone, "the origin did not give up during the stall")
    js = gone[0]
    check(js.get("gave_up") and js.get("probes", 0) >= 2 and js.get("zero_window_s", 0) > 0,
          "the origin's line: %s" % js)
    check(js["body_bytes"] > js["bytes_acked"], "the origin sent it all? %s" % js)
    rc, size, code, err = curl_end(dl)
    check(size < 8 * 1024 * MiB, "the client got %d bytes" % size)
    a = access_line(px, "/bytes/8G")
    check("stall" in a["faults"] and a["outcome"] == "upstream_reset" and a["fault_rule"] is None,
          "access line: %s" % a)
    check(faults_applied(px).get("stall") == 1, "metrics: %s" % faults_applied(px))
    env.note("origin gave up after %d probes, %.3f s of zero window, %d bytes acked"
             % (js["probes"], js["zero_window_s"], js["bytes_acked"]))


def case_stall_client(workers):
    o = env.start_sluice_origin([])
    px = proxy(o, workers=workers)
    dl = curl_bg(px, "/bytes/64M", rate="20M")
    c = wait_conn(px, "/bytes/64M", lambda c: c["bytes_to_client"] > 1 * MiB, "flowing")
    status, js = call(px, "POST", "/connections/%d/stall?side=client&for=3s" % c["id"])
    check(status == 200 and js["side"] == "client", "stall client: %s %s" % (status, js))
    # a write in flight finishes; after it, nothing more while the stall lasts
    held = None
    for _ in range(40):
        a = conn_of(px, "/bytes/64M")
        time.sleep(0.2)
        b = conn_of(px, "/bytes/64M")
        if a and b and b["fault"] == "stall_client" and a["bytes_to_client"] == b["bytes_to_client"]:
            held = b
            break
    check(held, "bytes_to_client kept moving during the client stall: %s" % conn_of(px, "/bytes/64M"))
    rc, size, code, err = curl_end(dl)
    check(rc == 0 and size == 64 * MiB and code == "200", "curl: %d %d %s %s" % (rc, size, code, err))
    a = access_line(px, "/bytes/64M")
    check(a["faults"] == ["stall"] and a["outcome"] == "complete", "access line: %s" % a)


def case_throttle_reset_close(workers):
    o = env.start_sluice_origin([])
    px = proxy(o, workers=workers)
    dl = curl_bg(px, "/bytes/256M", rate="5M")
    c = wait_conn(px, "/bytes/256M", lambda c: c["bytes_to_client"] > 0, "flowing")
    rc, out, err = ctl(px, "throttle", str(c["id"]), "2mbit")
    check(rc == 0, "ctl throttle: %d %s" % (rc, err))
    wait_conn(px, "/bytes/256M", lambda c: c["throttle_bps"] == 2000000, "throttled")
    # held to the rate, what the kernel pipe sends included (splice): the
    # bytes written over a measured interval, the interval taken wide
    # (before the first look, after the last), are at most its time at
    # 2 Mbit/s, plus a write issued before the throttle that completes in
    # it (at most half the default watermark gap: 6 blocks of 64 KiB; seen
    # under ASan with splice off: 917,504 bytes in 2.02 s), plus two
    # blocks the throttle allowed
    t0 = time.monotonic()
    a = conn_of(px, "/bytes/256M")
    time.sleep(2.0)
    b = conn_of(px, "/bytes/256M")
    dt = time.monotonic() - t0
    moved = b["bytes_to_client"] - a["bytes_to_client"]
    env.note("throttled to 2 Mbit/s: %d bytes written in %.2f s" % (moved, dt))
    check(moved <= 250000 * dt + 8 * 64 * KiB,
          "throttle 2mbit: %d bytes written in %.2f s" % (moved, dt))
    rc, out, err = ctl(px, "throttle", str(c["id"]), "0")
    wait_conn(px, "/bytes/256M", lambda c: c["throttle_bps"] == 0, "unthrottled")
    rc, out, err = ctl(px, "reset", str(c["id"]), "--side", "client")
    check(rc == 0, "ctl reset: %d %s" % (rc, err))
    rc, size, code, err = curl_end(dl)
    check(rc != 0 and size < 256 * MiB, "curl after the reset: exit %d, %d bytes" % (rc, size))
    a = access_line(px, "/bytes/256M")
    check(a["faults"] == ["bandwidth", "reset"], "access line: %s" % a)

    dl = curl_bg(px, "/bytes/255M", rate="5M")
    c = wait_conn(px, "/bytes/255M", lambda c: c["bytes_to_client"] > 0, "flowing")
    rc, out, err = ctl(px, "--json", "close", str(c["id"]), "--side", "upstream")
    check(rc == 0 and json.loads(out)["action"] == "close", "ctl close: %d %s %s" % (rc, out, err))
    rc, size, code, err = curl_end(dl)
    check(rc != 0 and size < 255 * MiB, "curl after the upstream's close: %d, %d" % (rc, size))
    a = access_line(px, "/bytes/255M")
    check(a["faults"] == ["close"] and a["outcome"] == "upstream_reset", "access line: %s" % a)
    m = faults_applied(px)
    check(m["bandwidth"] == 2 and m["reset"] == 1 and m["close"] == 1, "metrics: %s" % m)


# ---------------------------------------------------------------------------
# 7: rules
# ---------------------------------------------------------------------------

def case_rules(workers):
    o = env.start_sluice_origin([])
    px = proxy(o, workers=workers)
    rules = [
        {"name": "lim", "match": {"path": "/bytes/20M"}, "action": "limit_data",
         "after_bytes": "1M"},
        {"name": "lat", "match": {"path": "/bytes/1k", "server": o.addr,
                                  "client": "127.0.0.1"}, "action": "latency", "for": "300ms"},
        {"name": "bw", "match": {"path": "/bytes/300k"}, "action": "bandwidth", "rate": "8mbit"},
        {"name": "rst", "match": {"path": "/bytes/30M"}, "action": "reset", "side": "upstream",
         "after_bytes": 2 * MiB},
        {"name": "st", "match": {"path": "/bytes/9M"}, "action": "stall", "side": "upstream",
         "after_bytes": "1M", "for": "500ms"},
        {"name": "other", "match": {"path": "/bytes/", "client": "10.9.9.9"},
         "action": "reset", "side": "client"},
    ]
    for r in rules:
        status, js = call(px, "POST", "/faults", json.dumps(r).encode())
        check(status == 201 and js["name"] == r["name"], "POST %s: %s %s" % (r["name"], status, js))
    status, js = call(px, "POST", "/faults", json.dumps(rules[0]).encode())
    check(status == 409, "the same name twice: %s" % status)
    rc, out, err = ctl(px, "faults")
    check(rc == 0 and [r["name"] for r in json.loads(out)] == [r["name"] for r in rules],
          "ctl faults: %s" % out)

    want = {"/bytes/20M": (lambda n: 0 < n < 20 * MiB, ["limit_data"], "lim"),
            "/bytes/1k": (lambda n: n == KiB, ["latency"], "lat"),
            "/bytes/300k": (lambda n: n == 300 * KiB, ["bandwidth"], "bw"),
            "/bytes/30M": (lambda n: 2 * MiB <= n < 30 * MiB, ["reset"], "rst"),
            "/bytes/9M": (lambda n: n == 9 * MiB, ["stall"], "st"),
            "/bytes/3M": (lambda n: n == 3 * MiB, [], None)}
    for target, (size_ok, faults, rule) in want.items():
        rc, size, code, err = curl_end(curl_bg(px, target))
        check(size_ok(size), "%s: curl exit %d, %d bytes" % (target, rc, size))
        a = access_line(px, target)
        check(a["faults"] == faults and a["fault_rule"] == rule, "%s: access line %s" % (target, a))
    st = access_line(px, "/bytes/9M")
    check(st["paused_s"] > 0 and st["outcome"] == "complete", "the stalled rule's line: %s" % st)
    m = faults_applied(px)
    check(m == {"stall": 1, "bandwidth": 1, "latency": 1, "reset": 1, "close": 0,
                "limit_data": 1}, "metrics: %s" % m)
    rc, out, err = ctl(px, "fault", "rm", "lim")
    check(rc == 0, "ctl fault rm: %d %s" % (rc, err))
    rc, size, code, err = curl_end(curl_bg(px, "/bytes/20M"))
    check(rc == 0 and size == 20 * MiB, "after rm: %d %d" % (rc, size))


# ---------------------------------------------------------------------------
# 8: sluice ctl
# ---------------------------------------------------------------------------

def case_ctl():
    o = env.start_sluice_origin([])
    px = proxy(o)
    rule = env.path("rule.json")
    with open(rule, "w") as f:
        f.write('{"name": "slow", "action": "latency", "for": "10ms"}\n')
    for args, want in ((["faults"], 0), (["fault", "add", rule], 0),
                       (["fault", "add", rule], 3), (["--json", "connections"], 0),
                       (["connections"], 0), (["fault", "rm", "slow"], 0),
                       (["fault", "rm", "slow"], 3), (["stall", "77777", "--for", "1s"], 3),
                       (["stall", "1"], 2), (["explode"], 2), (["stall", "x", "--for", "1s"], 2),
                       (["reset", "1", "--side", "left"], 2), (["--bogus", "faults"], 2),
                       (["fault", "add", env.path("nosuch.json")], 2)):
        rc, out, err = ctl(px, *args)
        check(rc == want, "sluice ctl %s: exit %d (want %d) %s" % (" ".join(args), rc, want, err))
    p = subprocess.run([env.sluice, "ctl", "faults"], capture_output=True, timeout=30)
    check(p.returncode == 2, "ctl without -a: %d" % p.returncode)
    rc, out, err = ctl("127.0.0.1:%d" % harness.free_port_refused(), "faults")
    check(rc == 1, "ctl to nothing: %d %s" % (rc, err))
    p = subprocess.run([env.sluice, "help", "ctl"], capture_output=True, timeout=30)
    check(p.returncode == 0 and b"fault add" in p.stdout, "sluice help ctl")


env.case("check refuses faults on a non-local admin address", case_check)
env.case("admin on a Unix socket path, mode 0600", case_unix_socket)
env.case("faults off: 403", case_faults_off)
env.case("bad requests: 400 naming the field, 404, 405, 413", case_bad_requests)
for w in (1, 2):
    env.case("workers %d: a stalled upstream: the origin's zero window" % w,
             case_stall_upstream, w)
    env.case("workers %d: a stalled client: nothing written, then complete" % w,
             case_stall_client, w)
    env.case("workers %d: throttle, reset, close" % w, case_throttle_reset_close, w)
    env.case("workers %d: rules for new downloads" % w, case_rules, w)
env.case("sluice ctl: exit codes", case_ctl)
env.finish()
