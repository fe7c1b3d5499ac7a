#!/usr/bin/env python3
"""The soak behind bench/soak.sh: a bounded mix of clients against one
sluice proxy per policy for MINUTES, on loopback, sampled every 10 s,
ending with a verdict.

Proxies (each with its own port, admin port, access log and spill dir):
  pause, spill, pace   upstream tests/origin.py (its /bytes pattern, POST
                       /sha256 for uploads)
  resume               policy pause with resume = on, upstream `sluice
                       origin` giving up after 4 zero-window probes, so a
                       stalled client makes the origin give up and the
                       proxy resume with Range (the article's incident);
                       socket buffers pinned at 64k on both sides (origin
                       --sndbuf, proxy [upstream] rcvbuf and [client]
                       sndbuf) so that the stall reaches the origin; the
                       verdict fails when stalls brought no resume

The mix (each worker draws one at a time; at most WORKERS in flight per
proxy, every wait bounded):
  slow        GET 1-4 MiB read at 2-8 Mbit/s, verified byte for byte
  fast        GET 8-32 MiB read at once, verified
  keepalive   5 GETs of 16-256 KiB on one connection (length and
              chunked framing), each verified
  abort       GET 64 MiB, read 0-2 MiB, then close (FIN or RST)
  zerowindow  GET 16 MiB with a 4 KiB receive buffer, read nothing for
              12 s (past the proxy's zwp_timeout 5s), then close
  upload      POST 1-8 MiB (Content-Length or chunked) to /sha256: the
              origin's length and digest must match what was sent
  stall       (resume proxy) sluice fetch --stall-at 512k --stall-for
              4s --verify (under the proxy's zwp_timeout, over the
              origin's 3 s of probes): must complete, verified, the
              proxy resuming with Range after the origin gave up

Every 60 s each proxy gets SIGHUP.  Every 10 s: VmRSS, open descriptors,
and from /metrics the bytes buffered, the spool bytes and the open
connections, to samples.csv.  At the end the load stops; once the proxies
are idle (30 s at most) the verdict: buffered memory and spool back to 0,
descriptors back to their idle count, no proxy died, and no unexplained
outcome (a verified download that came out short or wrong, an upload the
origin did not receive whole, an access line with an outcome the action
does not explain).  Exit 0 when the verdict is "pass".
"""

import argparse
import collections
import csv
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (HttpConn, PatternSink: the tests' own client)

KiB, MiB = 1024, 1024 * 1024
POLICIES = ["pause", "spill", "pace", "resume"]
# What an access line may say for each action; anything else is unexplained.
EXPLAINS = {
    "slow": {"complete"},
    "fast": {"complete"},
    "keepalive": {"complete"},
    "upload": {"complete"},
    "stall": {"complete"},
    "abort": {"complete", "client_gone"},
    "zerowindow": {"complete", "client_gone", "client_zwp_timeout"},
}


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


class Proxy:
    def __init__(self, sluice, policy, upstream, tmp):
        self.policy = policy
        self.dir = os.path.join(tmp, policy)
        os.makedirs(os.path.join(self.dir, "spill"))
        self.port, self.admin = free_port(), free_port()
        self.access = os.path.join(self.dir, "access.log")
        buf = {"pause": "policy = pause", "spill": "policy = spill",
               "pace": "policy = pace",
               "resume": "policy = pause\nresume = on\nresume_attempts = 5"}[policy]
        # The resume proxy pins its socket buffers, as its origin pins its
        # send buffer (--sndbuf 64k): autotuning would otherwise grow them
        # to megabytes, which hold all of a 4 MiB body through the client's
        # 4 s stall, and the origin would never see the zero window that
        # makes it give up (and the proxy resume).
        up_extra = "rcvbuf = 64k\n" if policy == "resume" else ""
        client_extra = "sndbuf = 64k\n" if policy == "resume" else ""
        conf = os.path.join(self.dir, "sluice.ini")
        with open(conf, "w") as f:
            f.write("[listen]\naddress = 127.0.0.1:%d\ndrain_timeout = 5s\n"
                    "[upstream]\nserver = %s\nread_timeout = 20s\n%s"
                    "[client]\nidle_timeout = 20s\nheader_timeout = 10s\n"
                    "zwp_timeout = 5s\n%s"
                    "[buffer]\n%s\nhigh_watermark = 512k\nlow_watermark = 128k\n"
                    "block_size = 16k\nmemory_limit = 16M\nspill_dir = %s\n"
                    "spill_limit = 64M\n"
                    "[log]\naccess = %s\n[admin]\naddress = 127.0.0.1:%d\n"
                    % (self.port, upstream, up_extra, client_extra, buf, os.path.join(self.dir, "spill"),
                       self.access, self.admin))
        self.err = open(os.path.join(self.dir, "proxy.log"), "w")
        self.proc = subprocess.Popen([sluice, "proxy", "-c", conf],
                                     stdout=self.err, stderr=self.err)

    def metrics(self):
        s = socket.create_connection(("127.0.0.1", self.admin), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        out = collections.defaultdict(float)
        for line in data.decode("latin-1").split("\r\n\r\n", 1)[-1].splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m:
                out[m.group(1)] += float(m.group(3))
        return out

    def sample(self):
        pid = self.proc.pid
        with open("/proc/%d/status" % pid) as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        fds = len(os.listdir("/proc/%d/fd" % pid))
        m = self.metrics()
        return {"rss_kib": rss, "fds": fds,
                "buffered": int(m["sluice_memory_buffered_bytes"]),
                "spool": int(m["sluice_spool_bytes"]),
                "connections": int(m["sluice_connections"])}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ---- the actions: each returns (outcome, detail); "ok" or "expected" pass

def paced(conn, rate_bps):
    """Reads of 16 KiB at most, slept to rate_bps on average."""
    conn.max_recv = 16 * KiB
    state = {"t0": time.monotonic(), "n": 0}

    def pace():
        state["n"] += conn.max_recv
        ahead = state["n"] * 8.0 / rate_bps - (time.monotonic() - state["t0"])
        if ahead > 0:
            time.sleep(min(ahead, 1.0))
    conn.on_recv = pace


def get_verified(port, size, rate=None, mode=None):
    target = "/bytes/%d" % size + ("?mode=%s" % mode if mode else "")
    with harness.HttpConn(port, timeout=30) as c:
        if rate:
            paced(c, rate)
        c.request("GET", target)
        sink = harness.PatternSink()
        r = c.read_response(sink=sink, deadline=120)
        if r.status != 200:
            return "fail", "status %d for %s" % (r.status, target)
        try:
            sink.check(size)
        except AssertionError as e:
            return "fail", str(e)
    return "ok", ""


def act_slow(p, rnd):
    return get_verified(p.port, rnd.randint(1, 4) * MiB, rate=rnd.choice([2, 4, 8]) * 1e6)


def act_fast(p, rnd):
    return get_verified(p.port, rnd.choice([8, 16, 32]) * MiB)


def act_keepalive(p, rnd):
    with harness.HttpConn(p.port, timeout=30) as c:
        for _ in range(5):
            size = rnd.randint(16, 256) * KiB
            mode = rnd.choice(["cl", "chunked"])
            c.request("GET", "/bytes/%d?mode=%s" % (size, mode))
            sink = harness.PatternSink()
            r = c.read_response(sink=sink, deadline=60)
            if r.status != 200:
                return "fail", "status %d" % r.status
            try:
                sink.check(size)
            except AssertionError as e:
                return "fail", str(e)
    return "ok", ""


def act_abort(p, rnd):
    with harness.HttpConn(p.port, timeout=30) as c:
        c.request("GET", "/bytes/%d" % (64 * MiB))
        c.read_response(head_only=True, deadline=30)
        want, got = rnd.randint(0, 2 * MiB), 0
        while got < want:
            d = c.sock.recv(min(64 * KiB, want - got))
            if not d:
                break
            got += len(d)
        if rnd.random() < 0.5:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return "expected", ""


def act_zerowindow(p, rnd):
    with harness.HttpConn(p.port, rcvbuf=4 * KiB, timeout=30) as c:
        c.request("GET", "/bytes/%d" % (16 * MiB))
        time.sleep(12)
    return "expected", ""


def act_upload(p, rnd):
    size = rnd.randint(1, 8) * MiB
    body = os.urandom(64 * KiB) * (size // (64 * KiB))
    chunked = rnd.random() < 0.5
    with harness.HttpConn(p.port, timeout=30) as c:
        if chunked:
            parts = [b"%x\r\n%s\r\n" % (len(body[i:i + 256 * KiB]), body[i:i + 256 * KiB])
                     for i in range(0, len(body), 256 * KiB)]
            c.request("POST", "/sha256", headers=[("Transfer-Encoding", "chunked")],
                      body=b"".join(parts) + b"0\r\n\r\n")
        else:
            c.request("POST", "/sha256", body=body)
        r = c.read_response(deadline=60)
    if r.status != 200:
        return "fail", "upload status %d" % r.status
    j = json.loads(r.body)
    if j.get("length") != len(body) or j.get("sha256") != hashlib.sha256(body).hexdigest():
        return "fail", "origin received %r of %d bytes" % (j, len(body))
    return "ok", ""


def act_stall(p, rnd, sluice):
    r = subprocess.run([sluice, "fetch", "http://127.0.0.1:%d/bytes/4M" % p.port,
                        "--stall-at", "512k", "--stall-for", "4s", "--rcvbuf", "4k",
                        "--verify", "--json", "--timeout", "60s"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return "fail", "fetch rc %d: %s" % (r.returncode, r.stdout.strip()[:300])
    return "ok", ""


MIX = [("slow", act_slow, 30), ("fast", act_fast, 15), ("keepalive", act_keepalive, 15),
       ("abort", act_abort, 10), ("zerowindow", act_zerowindow, 10),
       ("upload", act_upload, 20)]
RESUME_MIX = [("slow", None, 40), ("stall", None, 40), ("abort", None, 20)]


def fetch_action(name, p, rnd, sluice):
    """The resume proxy's upstream is `sluice origin`, whose pattern
    `sluice fetch --verify` checks."""
    if name == "abort":
        return act_abort(p, rnd)
    if name == "stall":
        return act_stall(p, rnd, sluice)
    rate = "%dmbit" % rnd.choice([2, 4, 8])
    r = subprocess.run([sluice, "fetch", "http://127.0.0.1:%d/bytes/%dM"
                        % (p.port, rnd.randint(1, 4)), "--rate", rate, "--verify",
                        "--json", "--timeout", "60s"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return "fail", "fetch rc %d: %s" % (r.returncode, r.stdout.strip()[:300])
    return "ok", ""


def worker(p, sequence, deadline, results, lock, sluice):
    rnd = random.Random(sequence)
    mix = RESUME_MIX if p.policy == "resume" else MIX
    names = [m[0] for m in mix]
    weights = [m[2] for m in mix]
    while time.monotonic() < deadline:
        name = rnd.choices(names, weights)[0]
        t = time.time()
        try:
            if p.policy == "resume":
                out, detail = fetch_action(name, p, rnd, sluice)
            else:
                out, detail = dict((m[0], m[1]) for m in mix)[name](p, rnd)
        except (OSError, harness.ProtocolError, subprocess.TimeoutExpired,
                ValueError) as e:
            out, detail = ("expected", "") if name in ("abort", "zerowindow") \
                else ("fail", "%s: %s" % (type(e).__name__, e))
        with lock:
            results.append({"policy": p.policy, "action": name, "result": out,
                            "detail": detail, "t": t, "s": time.time() - t})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--workers", type=int, default=6, help="clients in flight per proxy")
    ap.add_argument("--out", default=None, help="directory for samples.csv, "
                    "results.json, verdict.txt (default: a new one under /tmp)")
    ap.add_argument("--random", type=int, default=1, metavar="N",
                    help="which pseudo-random sequence the clients follow: "
                    "the same N makes the same choices (default 1)")
    a = ap.parse_args()
    a.sluice = os.path.abspath(a.sluice)
    out = a.out or tempfile.mkdtemp(prefix="sluice-soak.")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sluice-soak-run.")
    procs = []

    def cleanup(*_):
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
        for pr in procs:
            try:
                pr.wait(5)
            except subprocess.TimeoutExpired:
                pr.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        oport, sport = free_port(), free_port()
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "origin.py"), "--listen",
             "127.0.0.1:%d" % oport], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [a.sluice, "origin", "--listen", "127.0.0.1:%d" % sport, "--sndbuf", "64k", "--zwp-probes", "4",
             "--zwp-interval", "200ms", "--json", os.path.join(tmp, "origin.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not (wait_port(oport) and wait_port(sport)):
            raise SystemExit("soak: the origins did not start")
        proxies = []
        for pol in POLICIES:
            up = "127.0.0.1:%d" % (sport if pol == "resume" else oport)
            px = Proxy(a.sluice, pol, up, tmp)
            procs.append(px.proc)
            proxies.append(px)
        for px in proxies:
            if not (wait_port(px.port) and wait_port(px.admin)):
                raise SystemExit("soak: proxy %s did not start (%s)"
                                 % (px.policy, os.path.join(px.dir, "proxy.log")))
        idle = {px.policy: px.sample() for px in proxies}
        log("soak: %.0f min, %d workers per proxy, policies %s; out %s"
            % (a.minutes, a.workers, " ".join(POLICIES), out))
        deadline = time.monotonic() + a.minutes * 60
        results, lock = [], threading.Lock()
        threads = [threading.Thread(target=worker, daemon=True,
                                    args=(px, a.random * 1000 + i * 10 + k, deadline,
                                          results, lock, a.sluice))
                   for i, px in enumerate(proxies) for k in range(a.workers)]
        for t in threads:
            t.start()
        f = open(os.path.join(out, "samples.csv"), "w", newline="")
        w = csv.writer(f)
        w.writerow(["t_s", "policy", "rss_kib", "fds", "buffered", "spool", "connections",
                    "actions_done"])
        t0, next_hup, died = time.monotonic(), time.monotonic() + 60, []
        while any(t.is_alive() for t in threads):
            time.sleep(10 - (time.monotonic() - t0) % 10)
            now = time.monotonic()
            for px in proxies:
                if px.proc.poll() is not None:
                    if px.policy not in died:
                        died.append(px.policy)
                    continue
                try:
                    s = px.sample()
                except OSError:
                    continue
                w.writerow([round(now - t0), px.policy, s["rss_kib"], s["fds"],
                            s["buffered"], s["spool"], s["connections"],
                            sum(1 for r in results if r["policy"] == px.policy)])
            f.flush()
            if now >= next_hup and now < deadline:
                for px in proxies:
                    px.proc.send_signal(signal.SIGHUP)
                next_hup += 60
            if now > deadline + 180:
                break  # every action is bounded well under this
        # idle again?
        end = time.monotonic() + 30
        final = {}
        while time.monotonic() < end:
            final = {px.policy: px.sample() for px in proxies if px.proc.poll() is None}
            if all(s["connections"] == 0 and s["buffered"] == 0 for s in final.values()):
                break
            time.sleep(1)
        f.close()
        verdict = verdict_of(proxies, idle, final, died, results)
        with open(os.path.join(out, "results.json"), "w") as fr:
            json.dump(results, fr)
        with open(os.path.join(out, "verdict.txt"), "w") as fv:
            fv.write(verdict["text"])
        print(verdict["text"], end="")
        plot(out)
        return 0 if verdict["pass"] else 1
    finally:
        cleanup()


def access_outcomes(px):
    """Outcomes of the access log, and the resumes it counts (under
    "resumes", which is not an outcome)."""
    c = collections.Counter()
    try:
        with open(px.access) as f:
            for line in f:
                try:
                    j = json.loads(line)
                    c[j["outcome"]] += 1
                    c["resumes"] += j.get("resumes", 0)
                except (ValueError, KeyError):
                    c["(invalid line)"] += 1
    except OSError:
        pass
    return c


def verdict_of(proxies, idle, final, died, results):
    lines, ok = [], True
    for px in proxies:
        pol = px.policy
        rs = [r for r in results if r["policy"] == pol]
        by = collections.Counter((r["action"], r["result"]) for r in rs)
        fails = [r for r in rs if r["result"] == "fail"]
        outc = access_outcomes(px)
        allowed = set().union(*EXPLAINS.values())
        odd = {k: v for k, v in outc.items() if k not in allowed and k != "resumes"}
        s, i = final.get(pol), idle[pol]
        lines.append("%s: %d actions (%s)" % (pol, len(rs), ", ".join(
            "%s %s %d" % (a, r, n) for (a, r), n in sorted(by.items()))))
        lines.append("  access outcomes: %s" % dict(sorted(outc.items())))
        if s is None:
            lines.append("  FAIL: the proxy died")
            ok = False
            continue
        lines.append("  idle before/after: rss %d/%d KiB, fds %d/%d, buffered %d/%d, "
                     "spool %d/%d, connections %d/%d"
                     % (i["rss_kib"], s["rss_kib"], i["fds"], s["fds"], i["buffered"],
                        s["buffered"], i["spool"], s["spool"], i["connections"],
                        s["connections"]))
        if s["buffered"] != 0 or s["spool"] != 0 or s["connections"] != 0:
            lines.append("  FAIL: memory, spool or connections not back to 0")
            ok = False
        if s["fds"] > i["fds"]:
            lines.append("  FAIL: %d descriptors more than idle" % (s["fds"] - i["fds"]))
            ok = False
        for r in fails[:5]:
            lines.append("  FAIL: %s: %s" % (r["action"], r["detail"]))
        if fails:
            ok = False
        if odd:
            lines.append("  FAIL: unexplained outcomes %s" % odd)
            ok = False
        # the stalls are there to make the origin give up: a soak whose
        # resume proxy never resumed did not test resume
        if pol == "resume" and by[("stall", "ok")] > 0 and outc.get("resumes", 0) == 0:
            lines.append("  FAIL: %d stalls and no resume (the origin never "
                         "gave up)" % by[("stall", "ok")])
            ok = False
    if died:
        ok = False
    lines.append("verdict: %s" % ("pass" if ok else "FAIL"))
    return {"pass": ok, "text": "\n".join(lines) + "\n"}


def plot(out):
    """RSS and buffered memory per policy over time (gnuplot, if present)."""
    if shutil.which("gnuplot") is None:
        return
    script = ("set terminal pngcairo size 900,500\nset output '%s/soak.png'\n"
              "set datafile separator ','\nset key outside\nset xlabel 'seconds'\n"
              "set ylabel 'MiB'\nset title 'sluice soak: VmRSS (lines) and bytes "
              "buffered (points)'\nplot " % out)
    plots = []
    for pol in POLICIES:
        rows = "'< grep \",%s,\" %s/samples.csv'" % (pol, out)
        plots.append("%s using 1:($3/1024) with lines title '%s rss'" % (rows, pol))
        plots.append("%s using 1:($5/1048576) with points title '%s buffered'"
                     % (rows, pol))
    subprocess.run(["gnuplot"], input=script + ", ".join(plots) + "\n", text=True,
                   capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
