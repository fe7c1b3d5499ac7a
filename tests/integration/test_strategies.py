#!/usr/bin/env python3
"""Backpressure strategies and zero-window settings (issue 4), on loopback
with real processes: `sluice origin` with a give-up rule of a few seconds,
`sluice proxy` with an access log and an [admin] listener, and `sluice
fetch --rate --verify` as the slow user.

The incident-shaped runs share one setup: the origin resets a receiver that
held a zero window for 4 probes from 200 ms (0.2+0.4+0.8+1.6 = 3 s), the
proxy pins SO_RCVBUF 64k toward it and SO_SNDBUF 128k toward the client,
and fetch drains at 8 Mbit/s (1 MB/s) with SO_RCVBUF 128k.  A pause gap of
4M - 256k takes about 3.8 s to drain, longer than the give-up: pause
truncates, spill / pace / resume complete.  Then memory_limit with 50 slow
downloads, 50 zero-window clients against zwp_timeout, and /metrics against
the access log.  Nothing is timed except where the spec gives a bound;
every wait is bounded; figures go to "# " lines for the closing note.

    python3 tests/integration/test_strategies.py --sluice build/sluice --origin tests/origin.py
"""

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, KiB, HttpConn, check, config  # noqa: E402

try:
    import prom  # noqa: E402  (tests/integration/prom.py)
except ImportError:             # reported by the /metrics case
    prom = None

env = harness.Env(__doc__)

RATE = "8mbit"                  # the user's drain rate (1 MB/s)
GIVE_UP = ["--zwp-probes", "4", "--zwp-interval", "200ms"]
GIVE_UP_S = 3.0                 # 0.2 + 0.4 + 0.8 + 1.6 s
CLIENT_PIN = {"sndbuf": "128k"}
FETCH_PIN = ["--rcvbuf", "128k"]
BLOCK = 64 * KiB                # [buffer] block_size default
FIGURES = []                    # one line per strategy, repeated at the end

OUTCOMES = ("complete", "client_gone", "client_zwp_timeout", "upstream_reset",
            "upstream_timeout", "truncated")
NUM = (int, float)
ACCESS_FIELDS = {
    "time": (str,), "client": (str,), "upstream": (str, type(None)),
    "method": (str,), "path": (str,), "status": (int, type(None)),
    "policy": (str,), "bytes_from_upstream": (int,), "bytes_to_client": (int,),
    "peak_memory": (int,), "spilled_bytes": (int,), "paused_s": NUM,
    "resumes": (int,), "outcome": (str,), "duration_s": NUM,
}
COUNTERS = ("sluice_downloads_total", "sluice_upstream_bytes_total",
            "sluice_client_bytes_total", "sluice_upstream_pauses_total",
            "sluice_upstream_paused_seconds_total", "sluice_spills_total",
            "sluice_spilled_bytes_total", "sluice_spill_fallbacks_total",
            "sluice_resumes_total", "sluice_client_zwp_timeouts_total",
            "sluice_memory_limit_hits_total")
GAUGES = ("sluice_connections", "sluice_memory_buffered_bytes", "sluice_spool_bytes",
          "sluice_memory_limit_bytes")


# ---------------------------------------------------------------------------
# /metrics and /connections
# ---------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def _parse_fallback(text):
    """A minimal exposition-format reader, used only when prom.py is absent
    (the /metrics case then fails on its own)."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("bad metrics line %r" % line)
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class Metrics:
    """One GET /metrics: its text and samples, looked up by name and labels."""

    def __init__(self, text):
        self.text = text
        parsed = prom.parse_prometheus(text) if prom else _parse_fallback(text)
        self.samples = []
        for (name, labels), value in parsed.items():
            if labels and not all(isinstance(x, tuple) and len(x) == 2 for x in labels):
                parsed = _parse_fallback(text)       # labels as names only
                self.samples = [(n, dict(ls), v) for (n, ls), v in parsed.items()]
                break
            self.samples.append((name, dict(labels), value))

    def get(self, name, **labels):
        """The value of the sample name{labels} (exactly those), or None."""
        for n, ls, v in self.samples:
            if n == name and ls == labels:
                return v
        return None

    def total(self, name):
        """Sum over every label set of name (None when it has no sample)."""
        vals = [v for n, _, v in self.samples if n == name]
        return sum(vals) if vals else None

    def by(self, name, label):
        return {ls.get(label): v for n, ls, v in self.samples if n == name}


def metrics(aport, timeout=5.0):
    r = harness.get(aport, "/metrics", timeout=timeout)
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    return Metrics(r.body.decode("utf-8"))


def connections(aport, timeout=5.0):
    r = harness.get(aport, "/connections", timeout=timeout)
    check(r.status == 200, "GET /connections: status %s" % r.status)
    doc = json.loads(r.body.decode("utf-8"))
    check(isinstance(doc, list), "GET /connections is not a JSON array: %r" % r.body[:200])
    return doc


def need(m, name, **labels):
    v = m.get(name, **labels) if labels else m.total(name)
    check(v is not None, "/metrics has no %s%s" % (name, labels or ""))
    return v


# ---------------------------------------------------------------------------
# Access log
# ---------------------------------------------------------------------------

def json_lines(path):
    """JSON objects of a file, one a line; on a log (stderr) the object may
    follow a prefix, so each line is read from its first '{'."""
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return out
    for line in data.splitlines():
        i = line.find("{")
        if i < 0:
            continue
        try:
            obj = json.loads(line[i:])
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def access_lines(path):
    return [a for a in json_lines(path) if "outcome" in a and "bytes_to_client" in a]


def check_access_line(a):
    """Every field of the issue, with its type and domain."""
    for k, types in ACCESS_FIELDS.items():
        check(k in a, "access line has no %r: %s" % (k, json.dumps(a)))
        v = a[k]
        check(isinstance(v, types) and not isinstance(v, bool),
              "access %s = %r is not %s: %s" % (k, v, "/".join(t.__name__ for t in types),
                                                 json.dumps(a)))
        if isinstance(v, NUM) and not isinstance(v, bool):
            check(v >= 0, "access %s = %r < 0" % (k, v))
    check(a["outcome"] in OUTCOMES, "access outcome %r not one of %s" % (a["outcome"], OUTCOMES))
    check(a["policy"] in ("pause", "spill", "pace"), "access policy %r" % a["policy"])


def wait_access(path, pred, count=1, timeout=10.0):
    """Access lines matching pred, once there are count of them (bounded)."""
    got = harness.wait_until(lambda: len([a for a in access_lines(path) if pred(a)]) >= count,
                             timeout, 0.05)
    lines = [a for a in access_lines(path) if pred(a)]
    check(got, "%d access line(s) in %.0f s, expected %d: %s"
          % (len(lines), timeout, count, harness.tail(path, 5)))
    return lines


def check_metrics_match_access(m, lines):
    """The counters of /metrics against the access log's lines (all
    downloads of the proxy finished): a list of mismatches, empty if none."""
    bad = []
    by_outcome = m.by("sluice_downloads_total", "outcome")
    total = sum(by_outcome.values()) if by_outcome else None
    if total != len(lines):
        bad.append("sum of sluice_downloads_total %s != %d access lines" % (total, len(lines)))
    for o in OUTCOMES:
        n = len([a for a in lines if a["outcome"] == o])
        got = by_outcome.get(o, 0)
        if got != n:
            bad.append("sluice_downloads_total{outcome=%s} %s != %d access lines" % (o, got, n))
    for metric, field in (("sluice_client_bytes_total", "bytes_to_client"),
                          ("sluice_upstream_bytes_total", "bytes_from_upstream"),
                          ("sluice_spilled_bytes_total", "spilled_bytes"),
                          ("sluice_resumes_total", "resumes")):
        want = sum(a[field] for a in lines)
        got = m.total(metric)
        if got != want:
            bad.append("%s %s != sum of access %s %d" % (metric, got, field, want))
    paused = sum(a["paused_s"] for a in lines)
    got = m.total("sluice_upstream_paused_seconds_total")
    if got is None or abs(got - paused) > 0.01 * len(lines) + 0.01:
        bad.append("sluice_upstream_paused_seconds_total %s != sum of paused_s %.3f"
                   % (got, paused))
    return bad


# ---------------------------------------------------------------------------
# Watching a run: VmRSS, gauges, the spill directory, the proxy's fds
# ---------------------------------------------------------------------------

def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def spool_fds(pid, spill_dir):
    """(path, deleted, bytes of disk allocated) of the proxy's fds that
    point into spill_dir."""
    out = []
    d = os.path.realpath(spill_dir) + "/"
    for fd in os.listdir("/proc/%d/fd" % pid):
        link = "/proc/%d/fd/%s" % (pid, fd)
        try:
            target = os.readlink(link)
            disk = os.stat(link).st_blocks * 512
        except OSError:
            continue
        if target.startswith(d):
            out.append((target, target.endswith(" (deleted)"), disk))
    return out


class Sampler:
    """Samples the proxy every `every` s in a thread until stop(): peak
    VmRSS, peak gauges from /metrics, what spill_dir lists, the proxy's
    open spool files, and (origin_json) how many bytes the client had when
    the origin's connection ended (its JSON line appeared)."""

    def __init__(self, px, aport, spill_dir=None, ignore=(), every=0.1, origin_json=None):
        self.px, self.aport, self.spill_dir, self.every = px, aport, spill_dir, every
        self.origin_json = origin_json
        self.origin_done_at = None  # the download's bytes_to_client then (-1: it had ended)
        self.ignore = set(ignore)
        self.base_rss = px.rss_kib()
        self.peak_rss = self.base_rss
        self.peak = {g: 0 for g in GAUGES}
        self.peak_held = 0        # a download's memory_bytes + spool_bytes
        self.peak_conn_spool = 0  # a download's spool_bytes
        self.samples = 0
        self.errors = []
        self.listed = []          # non-empty listings of spill_dir
        self.spool_files = set()  # readlink of spool fds seen
        self.undeleted = set()    # spool fds whose file still had a name
        self.peak_disk = 0        # disk allocated to open spool files
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join(10)

    def sample(self):
        if not self.px.alive():
            return
        if self.origin_json and self.origin_done_at is None and json_lines(self.origin_json):
            try:                          # read after the line: an upper bound
                sent = [c.get("bytes_to_client", 0) for c in connections(self.aport, 2.0)]
                self.origin_done_at = max(sent) if sent else -1
            except Exception as e:  # noqa: BLE001  (kept, reported by cases)
                if len(self.errors) < 5:
                    self.errors.append("%s: %s" % (type(e).__name__, e))
        try:
            self.peak_rss = max(self.peak_rss, self.px.rss_kib())
        except (OSError, AssertionError):
            return
        if self.aport:
            try:
                m = metrics(self.aport, timeout=2.0)
                for g in GAUGES:
                    v = m.get(g)
                    if v is not None:
                        self.peak[g] = max(self.peak[g], v)
                if self.spill_dir:
                    for c in connections(self.aport, timeout=2.0):
                        self.peak_held = max(self.peak_held,
                                             c["memory_bytes"] + c["spool_bytes"])
                        self.peak_conn_spool = max(self.peak_conn_spool, c["spool_bytes"])
            except Exception as e:  # noqa: BLE001  (kept, reported by cases)
                if len(self.errors) < 5:
                    self.errors.append("%s: %s" % (type(e).__name__, e))
        if self.spill_dir:
            names = [n for n in os.listdir(self.spill_dir) if n not in self.ignore]
            if names:
                self.listed.append(names)
            try:
                fds = spool_fds(self.px.pid, self.spill_dir)
                for path, deleted, _ in fds:
                    self.spool_files.add(path)
                    if not deleted:
                        self.undeleted.add(path)
                self.peak_disk = max(self.peak_disk, sum(f[2] for f in fds))
            except OSError:
                pass
        self.samples += 1

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def rss_growth_kib(self):
        return self.peak_rss - self.base_rss


# ---------------------------------------------------------------------------
# The incident-shaped run
# ---------------------------------------------------------------------------

class Run:
    pass


def proxy_config(servers, buffer, access, client=None, upstream=None, **more):
    # keepalive 0: each download has an origin connection of its own,
    # whose JSON line (written when it ends) the cases read
    up = {"rcvbuf": "64k", "keepalive": "0"}
    up.update(upstream or {})
    cl = dict(CLIENT_PIN)
    cl.update(client or {})
    return config(servers, upstream=up, client=cl, buffer=buffer,
                  log={"level": "info", "access": access},
                  admin={"address": "127.0.0.1:0"}, **more)


def incident(name, buffer, size, origin_args=GIVE_UP, rate=RATE, spill_dir=None,
             ignore=(), fetch_timeout=40.0):
    """One download of /bytes/SIZE: origin (give-up rule) -> proxy (buffer
    settings) -> fetch at rate.  Returns a Run with the fetch result, the
    origin's JSON lines, the download's access line, the final /metrics and
    the sampler."""
    r = Run()
    r.name, r.size = name, harness.parse_size(size)
    r.origin_json = env.path(name + "-origin.json")
    r.origin = env.start_sluice_origin(list(origin_args) + ["--json", r.origin_json],
                                       name="sluice-origin-" + name)
    r.access = env.path(name + "-access.json")
    buf = {"policy": "pause", "high_watermark": "1M", "low_watermark": "256k"}
    buf.update(buffer)
    if spill_dir:
        buf["spill_dir"] = spill_dir
    r.px = env.start_proxy(proxy_config([r.origin.addr], buf, r.access), name="proxy-" + name)
    r.aport = env.admin_port(r.px)
    time.sleep(0.2)                      # let start-up settle before the baseline
    r.sampler = Sampler(r.px, r.aport, spill_dir, ignore, origin_json=r.origin_json).start()
    try:
        r.fetch = env.run_fetch(r.px.url + "/bytes/" + size,
                                ["--rate", rate, "--verify"] + FETCH_PIN,
                                timeout=fetch_timeout)
    finally:
        r.sampler.stop()
    check(r.fetch.json is not None, "no JSON object from fetch: " + r.fetch.describe())
    r.line = wait_access(r.access, lambda a: a.get("path") == "/bytes/" + size)[0]
    check_access_line(r.line)
    harness.wait_until(lambda: json_lines(r.origin_json), 10.0, 0.05)
    r.olines = json_lines(r.origin_json)
    check(r.olines, "the origin wrote no JSON line: %s" % " | ".join(r.origin.log_tail()))
    r.metrics = metrics(r.aport)
    return r


def figures(r, strategy):
    a, f = r.line, r.fetch
    gave = [o.get("gave_up") for o in r.olines]
    zw = sum(o.get("zero_window_s") or 0 for o in r.olines)
    text = ("%s: fetch %s rc %s, %d of %d bytes in %.1f s (verified %s); access outcome %s, "
            "from upstream %d, to client %d, peak_memory %d, spilled %d, paused %.2f s, "
            "resumes %d; origin %d conn(s), gave_up %s, zero window %.2f s, first conn "
            "%.2f s; proxy VmRSS +%d KiB, spool gauge max %d, spool disk max %d, memory "
            "gauge max %d"
            % (strategy, f.get("outcome"), f.rc, f.get("received_bytes") or 0, r.size,
               f.get("seconds") or 0, f.get("verified"), a["outcome"],
               a["bytes_from_upstream"], a["bytes_to_client"], a["peak_memory"],
               a["spilled_bytes"], a["paused_s"], a["resumes"], len(r.olines), gave, zw,
               r.olines[0].get("duration_s") or 0, r.sampler.rss_growth_kib(),
               r.sampler.peak["sluice_spool_bytes"], r.sampler.peak_disk,
               r.sampler.peak["sluice_memory_buffered_bytes"]))
    env.note(text)
    FIGURES.append(text)


def expect_complete(r):
    f = r.fetch
    check(f.rc == 0 and f.get("outcome") == "complete" and f.get("verified") is True
          and f.get("received_bytes") == r.size,
          "expected complete and verified %d bytes: %s" % (r.size, f.describe()))
    check(r.line["outcome"] == "complete", "access outcome %r, expected complete: %s"
          % (r.line["outcome"], json.dumps(r.line)))
    check(r.line["bytes_from_upstream"] >= r.size, "access bytes_from_upstream %d < %d"
          % (r.line["bytes_from_upstream"], r.size))
    check(r.size <= r.line["bytes_to_client"] <= r.size + 64 * KiB,
          "access bytes_to_client %d for a %d-byte body" % (r.line["bytes_to_client"], r.size))
    check(r.line["status"] == 200, "access status %r" % r.line["status"])


def expect_no_give_up(r):
    gave = [o.get("gave_up") for o in r.olines if o.get("gave_up") is not None]
    check(not gave, "the origin gave up (%s): %s" % (gave, json.dumps(r.olines)))


def expect_consistent(r):
    bad = check_metrics_match_access(r.metrics, access_lines(r.access))
    check(not bad, "/metrics does not match the access log: " + "; ".join(bad))


def expect_spool_gone(r, spill_dir, ignore=()):
    left = [n for n in os.listdir(spill_dir) if n not in ignore]
    check(not left, "spill_dir holds %s after the run" % left)
    check(not r.sampler.listed, "spill_dir listed %s while the download ran (spool files "
          "must be unlinked at once)" % r.sampler.listed[:3])
    check(not r.sampler.undeleted, "spool file(s) with a name while open: %s"
          % sorted(r.sampler.undeleted))


def expect_spill_bounds(r, limit, high=1 * MiB):
    """spill_limit bounds the bytes held ahead of the client in the spool,
    not the bytes ever spooled (docs/backpressure.md): the spool stays
    within spill_limit (one read may land past it) while memory stays
    within high_watermark.  Sampled from GET /connections (memory_bytes,
    spool_bytes) and the sluice_spool_bytes gauge (one download runs)."""
    peak = max(r.sampler.peak["sluice_spool_bytes"], r.sampler.peak_conn_spool)
    held = r.sampler.peak_held
    check(r.sampler.samples >= 10, "only %d samples of /metrics (errors: %s)"
          % (r.sampler.samples, r.sampler.errors))
    check(peak > 0, "sluice_spool_bytes never above 0 in %d samples" % r.sampler.samples)
    env.note("spill_limit %d: spool peak %d (= limit %+d), memory + spool peak %d, disk "
             "peak %d, spilled in all %s, fallbacks %s"
             % (limit, peak, peak - limit, held, r.sampler.peak_disk,
                r.metrics.total("sluice_spilled_bytes_total"),
                r.metrics.total("sluice_spill_fallbacks_total")))
    check(peak <= limit + BLOCK, "sluice_spool_bytes peaked at %d > spill_limit %d + "
          "one block" % (peak, limit))
    check(held <= high + limit + 2 * BLOCK, "memory_bytes + spool_bytes peaked at %d > "
          "high_watermark %d + spill_limit %d + two blocks" % (held, high, limit))


def mkdir(name):
    d = env.path(name)
    os.mkdir(d)
    return d


# ---- a: pause with a gap longer than the give-up --------------------------

def pause_truncated():
    r = incident("pause", {"policy": "pause", "high_watermark": "4M",
                           "low_watermark": "256k"}, "16M")
    figures(r, "pause (high 4M, low 256k)")
    f = r.fetch
    check(f.rc == 3 and f.get("outcome") == "truncated",
          "expected fetch exit 3, truncated: " + f.describe())
    check((f.get("received_bytes") or 0) < r.size, "truncated yet got every byte")
    gave = [o for o in r.olines if o.get("gave_up") is not None]
    check(gave, "the origin did not give up: %s" % json.dumps(r.olines))
    a = r.line
    check(a["outcome"] in ("upstream_reset", "truncated"),
          "access outcome %r, expected upstream_reset or truncated" % a["outcome"])
    check(a["policy"] == "pause", "access policy %r" % a["policy"])
    check(a["bytes_from_upstream"] < r.size, "bytes_from_upstream %d, body %d"
          % (a["bytes_from_upstream"], r.size))
    # The origin saw a zero window only while the proxy did not read it.
    zw = max(o.get("zero_window_s") or 0 for o in r.olines)
    check(a["paused_s"] >= zw - 0.5, "access paused_s %.3f, but the origin saw a %.3f s "
          "zero window" % (a["paused_s"], zw))
    m = r.metrics
    check(need(m, "sluice_downloads_total", outcome=a["outcome"]) == 1,
          "sluice_downloads_total{outcome=%s} %s" % (a["outcome"],
                                                    m.get("sluice_downloads_total",
                                                          outcome=a["outcome"])))
    check(need(m, "sluice_upstream_pauses_total") >= 1, "sluice_upstream_pauses_total 0")
    check(need(m, "sluice_spills_total") == 0, "sluice_spills_total %s with policy pause"
          % m.total("sluice_spills_total"))
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- b: spill -------------------------------------------------------------

def spill_complete():
    d = mkdir("spill-b")
    r = incident("spill", {"policy": "spill", "high_watermark": "1M"}, "12M", spill_dir=d)
    figures(r, "spill (high 1M)")
    expect_complete(r)
    expect_no_give_up(r)
    # The origin finished early: its connection ended (its JSON line was
    # there) while the client had less than half of the body.  Bytes, not
    # seconds: a slow machine slows both sides.
    at = r.sampler.origin_done_at
    check(at is not None and 0 <= at <= r.size // 2,
          "the client had %s of %d bytes when the origin's connection ended (-1: the "
          "download was over; None: not seen in %d samples, errors %s): it did not finish "
          "early" % (at, r.size, r.sampler.samples, r.sampler.errors))
    env.note("spill: the origin's connection ended when the client had %d of %d bytes "
             "(after %s s of the fetch's %s s)" % (at, r.size, r.olines[0].get("duration_s"),
                                                  r.fetch.get("seconds")))
    check(r.line["policy"] == "spill", "access policy %r" % r.line["policy"])
    check(r.line["spilled_bytes"] > 0, "access spilled_bytes %d" % r.line["spilled_bytes"])
    check(need(r.metrics, "sluice_spills_total") >= 1, "sluice_spills_total 0")
    check(need(r.metrics, "sluice_spool_bytes") == 0, "sluice_spool_bytes %s after the run"
          % r.metrics.total("sluice_spool_bytes"))
    expect_spool_gone(r, d)
    check(r.sampler.spool_files, "no open spool file in %s seen in %d samples"
          % (d, r.sampler.samples))
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- c: spill_limit below the body: space is reclaimed ----------------------

def spill_limit_reclaimed():
    d = mkdir("spill-c")
    limit = 4 * MiB
    r = incident("spill-limit", {"policy": "spill", "high_watermark": "1M",
                                 "spill_limit": "4M"}, "12M", spill_dir=d)
    figures(r, "spill (high 1M, spill_limit 4M)")
    expect_complete(r)
    expect_no_give_up(r)
    expect_spill_bounds(r, limit)
    spilled = r.metrics.total("sluice_spilled_bytes_total")
    check(spilled > limit, "sluice_spilled_bytes_total %s <= spill_limit: no space was "
          "reclaimed and spooled again" % spilled)
    expect_spool_gone(r, d)
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- d: pace --------------------------------------------------------------

def pace_complete():
    r = incident("pace", {"policy": "pace", "high_watermark": "1M"}, "12M")
    figures(r, "pace (high 1M)")
    expect_complete(r)
    expect_no_give_up(r)
    check(r.line["policy"] == "pace", "access policy %r" % r.line["policy"])
    check(r.line["spilled_bytes"] == 0, "pace spilled %d bytes" % r.line["spilled_bytes"])
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- e: resume ------------------------------------------------------------

def resume_complete():
    r = incident("resume", {"policy": "pause", "high_watermark": "4M", "low_watermark": "256k",
                            "resume": "on", "resume_attempts": "10",
                            "resume_backoff": "100ms"}, "12M")
    figures(r, "pause + resume (high 4M, low 256k)")
    expect_complete(r)
    check(r.fetch.get("resumes") == 0, "fetch resumed itself (%s): the proxy should have"
          % r.fetch.get("resumes"))
    check(r.line["resumes"] >= 1, "access resumes %d" % r.line["resumes"])
    check(need(r.metrics, "sluice_resumes_total") >= 1, "sluice_resumes_total 0")
    check(len(r.olines) >= 2, "the origin saw %d connection(s), expected a resume's second"
          % len(r.olines))
    check(any(o.get("gave_up") for o in r.olines), "the origin never gave up: nothing to "
          "resume: %s" % json.dumps(r.olines))
    check(any(o.get("status") == 206 for o in r.olines), "no 206 (Range) answer among the "
          "origin's connections: %s" % json.dumps(r.olines))
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- f: spill with a tiny spill_limit falls back to pause -------------------

def spill_tiny_limit():
    d = mkdir("spill-f")
    r = incident("spill-tiny", {"policy": "spill", "high_watermark": "1M",
                                "spill_limit": "64k"}, "8M", origin_args=[], spill_dir=d)
    figures(r, "spill (spill_limit 64k: falls back to pause)")
    expect_complete(r)
    check(need(r.metrics, "sluice_spill_fallbacks_total") >= 1,
          "sluice_spill_fallbacks_total 0: no fallback to pause")
    expect_spill_bounds(r, 64 * KiB)
    expect_spool_gone(r, d)
    expect_consistent(r)
    env.stop_clean(r.px)


# ---- g: spill_dir on a full filesystem --------------------------------------

def spill_enospc():
    d = mkdir("spill-tmpfs")
    mnt = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", d],
                         capture_output=True, text=True, timeout=10)
    if mnt.returncode != 0:
        raise harness.Skip("mount -t tmpfs failed (%s): needs root and CAP_SYS_ADMIN"
                           % (mnt.stderr.strip() or mnt.returncode))
    r = None
    try:
        # Fill it but 64k, so that spooling starts, then meets ENOSPC.
        with open(os.path.join(d, "filler"), "wb") as f:
            f.write(b"\0" * (448 * KiB))
        free = os.statvfs(d)
        env.note("tmpfs %s: %d bytes free of %d" % (d, free.f_bavail * free.f_frsize,
                                                    free.f_blocks * free.f_frsize))
        r = incident("spill-enospc", {"policy": "spill", "high_watermark": "1M"}, "8M",
                     origin_args=[], spill_dir=d, ignore=("filler",))
        figures(r, "spill (spill_dir full: falls back to pause)")
        expect_complete(r)
        check(need(r.metrics, "sluice_spill_fallbacks_total") >= 1,
              "sluice_spill_fallbacks_total 0: no fallback to pause on ENOSPC")
        expect_spool_gone(r, d, ignore=("filler",))
        expect_consistent(r)
        env.stop_clean(r.px)
    finally:
        if r is not None:
            r.px.stop()               # it holds the unlinked spool open
        if subprocess.run(["umount", d], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True, timeout=10)


# ---------------------------------------------------------------------------
# memory_limit: 50 slow downloads
# ---------------------------------------------------------------------------

NSLOW = 50


def memory_limit_50():
    limit = 8 * MiB
    o = env.start_sluice_origin([], name="sluice-origin-mem")
    access = env.path("mem-access.json")
    px = env.start_proxy(proxy_config([o.addr], {"policy": "pause", "high_watermark": "1M",
                                                 "low_watermark": "256k",
                                                 "memory_limit": "8M"},
                                      access, client={"sndbuf": "64k"}),
                         name="proxy-memlimit")
    aport = env.admin_port(px)
    time.sleep(0.3)
    sampler = Sampler(px, aport, every=0.05).start()
    procs = []
    try:
        for i in range(NSLOW):
            out = open(env.path("mem-fetch-%d.json" % i), "wb")
            p = subprocess.Popen([env.sluice, "fetch", px.url + "/bytes/4M", "--rate", "4mbit",
                                  "--rcvbuf", "64k", "--verify", "--json"],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 preexec_fn=harness._die_with_parent)
            out.close()
            procs.append((p, out.name))
        deadline = time.monotonic() + 60
        for p, _ in procs:
            p.wait(max(0.1, deadline - time.monotonic()))
    finally:
        sampler.stop()
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    bad = []
    for p, path in procs:
        with open(path, "rb") as f:
            res = harness._last_json_object(f.read())
        if p.returncode != 0 or not res or res.get("outcome") != "complete" \
                or res.get("verified") is not True or res.get("received_bytes") != 4 * MiB:
            bad.append("rc %s %s" % (p.returncode, json.dumps(res)))
    check(not bad, "%d of %d downloads failed: %s" % (len(bad), NSLOW, bad[:3]))
    lines = wait_access(access, lambda a: a["outcome"] == "complete", NSLOW)
    for a in lines:
        check_access_line(a)
    m = metrics(aport)
    growth = sampler.rss_growth_kib() * KiB
    bound = limit + NSLOW * 256 * KiB + 8 * MiB
    gauge = sampler.peak["sluice_memory_buffered_bytes"]
    peaks = sorted(a["peak_memory"] for a in lines)
    text = ("memory_limit 8M, %d downloads of 4M at 4 Mbit/s: VmRSS %d -> peak %d KiB "
            "(+%.1f MiB, bound %.1f MiB); memory gauge peak %.1f MiB; memory_limit hits %s; "
            "access peak_memory median %d max %d; %d samples"
            % (NSLOW, sampler.base_rss, sampler.peak_rss, growth / MiB, bound / MiB,
               gauge / MiB, m.total("sluice_memory_limit_hits_total"),
               peaks[len(peaks) // 2], peaks[-1], sampler.samples))
    env.note(text)
    FIGURES.append(text)
    check(sampler.samples >= 20, "only %d samples" % sampler.samples)
    check(growth <= bound, "VmRSS grew %d bytes > bound %d" % (growth, bound))
    check(gauge > 0, "sluice_memory_buffered_bytes never above 0 (sampler errors %s)"
          % sampler.errors)
    check(gauge <= limit + NSLOW * 256 * KiB, "sluice_memory_buffered_bytes peaked at %d > "
          "memory_limit + %d x 256 KiB" % (gauge, NSLOW))
    check(need(m, "sluice_memory_limit_bytes") == limit, "sluice_memory_limit_bytes %s"
          % m.total("sluice_memory_limit_bytes"))
    check(need(m, "sluice_memory_limit_hits_total") >= 1,
          "sluice_memory_limit_hits_total 0: 50 x 1M never reached 8M?")
    bad = check_metrics_match_access(m, access_lines(access))
    check(not bad, "/metrics does not match the access log: " + "; ".join(bad))
    env.stop_clean(px)


# ---------------------------------------------------------------------------
# Zero-window clients
# ---------------------------------------------------------------------------

NZWP = 50
ZWP_BOUND = 60.0    # a deadline for the wait, not a figure of the spec: the
                    # outcome checked is each access line's client_zwp_timeout
                    # after at least the 3 s rule


def stuck_client(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # before connect
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /bytes/1G HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def read_to_end(socks, timeout=20.0):
    """Read every socket until EOF or a reset (bounded); returns the
    sockets still open."""
    open_ = {s.fileno(): s for s in socks}
    for s in socks:
        s.setblocking(False)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        r, _, _ = select.select(list(open_.values()), [], [], 0.5)
        for s in r:
            try:
                if s.recv(1 * MiB):
                    continue
            except (ConnectionResetError, BrokenPipeError):
                pass
            except BlockingIOError:
                continue
            del open_[s.fileno()]
    return list(open_.values())


def zwp_wave(st, wave, honest, n=NZWP):
    """n clients that never read, and maybe an honest fetch meanwhile;
    st["total"] counts the clients of every wave so far."""
    px, aport, access = st["px"], st["aport"], st["access"]
    done_before = len([a for a in access_lines(access) if a["outcome"] == "client_zwp_timeout"])
    lines_before = len(access_lines(access))
    sampler = Sampler(px, aport, every=0.1).start()
    socks = []
    try:
        t0 = time.monotonic()
        for _ in range(n):
            socks.append(stuck_client(px.port))
        res = None
        if honest:
            res = env.run_fetch(px.url + "/bytes/16M", ["--rate", "32mbit", "--verify"],
                                timeout=ZWP_BOUND)

        def all_closed():
            k = len(access_lines(access)) - lines_before - (1 if honest else 0)
            return k >= n and nfds(px.pid) <= st["fds"] + 1
        ok = harness.wait_until(all_closed, max(0.1, t0 + ZWP_BOUND - time.monotonic()), 0.1)
        took = time.monotonic() - t0
        sampler.stop()
        zl = [a for a in access_lines(access) if a["outcome"] == "client_zwp_timeout"]
        new = [a["outcome"] for a in access_lines(access)[lines_before:]]
        check(ok and len(zl) - done_before == n,
              "wave %d: after %.1f s, %d client_zwp_timeout access lines (want %d more; "
              "new lines' outcomes: %s), proxy fds %d (baseline %d)"
              % (wave, took, len(zl) - done_before, n,
                 {o: new.count(o) for o in sorted(set(new))}, nfds(px.pid), st["fds"]))
        still = read_to_end(socks)
        check(not still, "wave %d: %d of %d clients still open after the proxy gave up"
              % (wave, len(still), n))
    finally:
        sampler.stop()
        for s in socks:
            s.close()
    if honest:
        check(res.rc == 0 and res.get("outcome") == "complete" and res.get("verified") is True
              and res.get("received_bytes") == 16 * MiB,
              "the honest download did not complete: " + res.describe())
    for a in zl[done_before:]:
        check_access_line(a)
        check(a["duration_s"] >= 3.0 - 0.1, "a client_zwp_timeout download lasted %.3f s, "
              "the give-up time is 3 s" % a["duration_s"])
    m = metrics(aport)
    conns = connections(aport)
    after = px.rss_kib()
    gauge_after = need(m, "sluice_memory_buffered_bytes")
    text = ("zero-window clients, wave %d: %d closed within %.1f s (deadline %.0f s); VmRSS "
            "baseline %d, peak %d, after %d KiB; memory gauge peak %.1f MiB, after %d bytes%s"
            % (wave, n, took, ZWP_BOUND, st["rss"], sampler.peak_rss, after,
               sampler.peak["sluice_memory_buffered_bytes"] / MiB, gauge_after,
               "; honest 16M in %.1f s" % res.get("seconds") if honest else ""))
    env.note(text)
    FIGURES.append(text)
    st["total"] = st.get("total", 0) + n
    check(need(m, "sluice_client_zwp_timeouts_total") == st["total"],
          "sluice_client_zwp_timeouts_total %s, expected %d"
          % (m.total("sluice_client_zwp_timeouts_total"), st["total"]))
    check(need(m, "sluice_downloads_total", outcome="client_zwp_timeout") == st["total"],
          "sluice_downloads_total{outcome=client_zwp_timeout} %s"
          % m.get("sluice_downloads_total", outcome="client_zwp_timeout"))
    check(need(m, "sluice_connections") <= 1, "sluice_connections %s after all closed"
          % m.total("sluice_connections"))
    check(conns == [], "GET /connections lists %d after all closed: %s"
          % (len(conns), json.dumps(conns)[:300]))
    check(gauge_after <= 256 * KiB, "sluice_memory_buffered_bytes %d after all closed"
          % gauge_after)
    # Back near the baseline: the pool keeps freed blocks' pages while
    # they are recently used, and gives them back after 5 s idle (checked
    # every 1 s); what may stay is malloc's slack, far less than the
    # ~50 MiB the clients held.  (Not under ASan: its allocator keeps
    # freed memory in quarantine.)
    if os.environ.get("SLUICE_SANITIZE", "none") in ("", "none"):
        rss = [after]
        harness.wait_until(lambda: rss.append(px.rss_kib()) or
                           rss[-1] <= st["rss"] + 16 * 1024, 12, 0.5)
        after = rss[-1]
        env.note("wave %d: VmRSS %d KiB once the pool gave the pages back" % (wave, after))
        check(after <= st["rss"] + 16 * 1024, "VmRSS %d KiB 12 s after all closed, baseline "
              "%d KiB (+16 MiB allowed; peak %d KiB)" % (after, st["rss"], sampler.peak_rss))
    bad = check_metrics_match_access(m, access_lines(access))
    check(not bad, "/metrics does not match the access log: " + "; ".join(bad))
    return sampler.peak_rss, after


def zero_window_clients():
    o = env.start_sluice_origin([], name="sluice-origin-zwp")
    access = env.path("zwp-access.json")
    px = env.start_proxy(config([o.addr], client={"zwp_timeout": "3s"},
                                buffer={"policy": "pause", "high_watermark": "1M",
                                        "low_watermark": "256k"},
                                log={"level": "info", "access": access},
                                admin={"address": "127.0.0.1:0"}), name="proxy-zwp")
    aport = env.admin_port(px)
    time.sleep(0.3)
    st = {"px": px, "aport": aport, "access": access, "rss": px.rss_kib(), "fds": nfds(px.pid)}
    peak1, after1 = zwp_wave(st, 1, honest=True)
    # Freed memory is reused: a second wave does not grow the process
    # (the pool keeps free blocks, so VmRSS need not fall back by itself).
    peak2, after2 = zwp_wave(st, 2, honest=False)
    if os.environ.get("SLUICE_SANITIZE", "none") in ("", "none"):  # see zwp_wave
        check(peak2 <= peak1 + 8 * 1024, "second wave: VmRSS peak %d KiB > first %d KiB + "
              "8 MiB: memory of closed clients was not freed" % (peak2, peak1))
    env.stop_clean(px)


def zero_window_probes():
    """The same rule as zwp_probes 4 from 200 ms (0.2+0.4+0.8+1.6 = 3 s,
    config_client_zwp_ms), zwp_timeout off; it is also the clients'
    TCP_USER_TIMEOUT, so whichever of the proxy and the kernel ends them
    first, the outcome is the zero-window give-up."""
    o = env.start_sluice_origin([], name="sluice-origin-zwp-probes")
    access = env.path("zwp-probes-access.json")
    px = env.start_proxy(config([o.addr], client={"zwp_timeout": "0", "zwp_probes": "4",
                                                  "zwp_interval": "200ms"},
                                log={"level": "info", "access": access},
                                admin={"address": "127.0.0.1:0"}), name="proxy-zwp-probes")
    aport = env.admin_port(px)
    time.sleep(0.3)
    st = {"px": px, "aport": aport, "access": access, "rss": px.rss_kib(), "fds": nfds(px.pid)}
    zwp_wave(st, 1, honest=False, n=5)
    env.stop_clean(px)


# ---------------------------------------------------------------------------
# /metrics, /connections, the access log on stderr
# ---------------------------------------------------------------------------

def metrics_and_access():
    check(prom is not None, "tests/integration/prom.py is missing (parse_prometheus)")
    o = env.start_sluice_origin([], name="sluice-origin-metrics")
    access = env.path("metrics-access.json")
    px = env.start_proxy(proxy_config([o.addr], {"policy": "pause"}, access),
                         name="proxy-metrics")
    aport = env.admin_port(px)
    r = harness.get(aport, "/metrics")
    check(r.status == 200, "GET /metrics: status %s" % r.status)
    check((r.get("Content-Type") or "").startswith("text/plain"),
          "GET /metrics: Content-Type %r, expected text/plain" % r.get("Content-Type"))
    text = r.body.decode("utf-8")
    try:
        prom.parse_prometheus(text)
    except ValueError as e:
        raise AssertionError("/metrics does not parse: %s" % e)
    for line in text.splitlines():
        check(line == "" or line.startswith("#") or _SAMPLE.match(line),
              "/metrics line %r is neither a sample nor a comment" % line)
    for name in COUNTERS:
        check(re.search(r"^# TYPE %s(_total)? counter$" % re.escape(name[:-6]), text, re.M),
              "no '# TYPE %s counter' line" % name)
    for name in GAUGES:
        check(re.search(r"^# TYPE %s gauge$" % name, text, re.M), "no '# TYPE %s gauge'" % name)
    m = Metrics(text)
    for name in COUNTERS + GAUGES:
        need(m, name)
    check(need(m, "sluice_connections") <= 1, "sluice_connections %s at start"
          % m.total("sluice_connections"))
    check(connections(aport) == [], "GET /connections not [] at start")
    check(harness.get(aport, "/nosuch").status == 404, "GET /nosuch on admin is not 404")

    # complete: two fetches; a 404 from the origin is a complete download too.
    for size in ("1M", "3M"):
        res = env.run_fetch(px.url + "/bytes/" + size, ["--verify"], timeout=30)
        check(res.rc == 0, res.describe())
    r = harness.get(px.port, "/nosuch")
    check(r.status == 404, "GET /nosuch via the proxy: %s" % r.status)
    # A live download in /connections, then client_gone.
    c = HttpConn(px.port, rcvbuf=64 * KiB, timeout=10)
    try:
        c.request("GET", "/bytes/64M")
        head = c.read_response(head_only=True)
        check(head.status == 200, "status %s" % head.status)
        live = harness.wait_until(lambda: connections(aport), 5.0, 0.1)
        check(live and len(live) == 1 and isinstance(live[0], dict),
              "GET /connections during a download: %r" % live)
        env.note("one /connections entry: %s" % json.dumps(live[0])[:600])
        m = metrics(aport)
        check(need(m, "sluice_connections") >= 1, "sluice_connections 0 during a download")
        # The body follows the head: wait for it to be buffered (a
        # download holds no block until its upstream's bytes arrive).
        check(harness.wait_until(
            lambda: need(metrics(aport), "sluice_memory_buffered_bytes") > 0, 5.0, 0.05),
              "no bytes buffered with a client that does not read")
    finally:
        c.close()
    lines = wait_access(access, lambda a: True, 4)
    for a in lines:
        check_access_line(a)
    gone = [a for a in lines if a["path"] == "/bytes/64M"]
    check(gone and gone[0]["outcome"] == "client_gone", "the abandoned download's outcome: %s"
          % json.dumps(gone))
    check(harness.wait_until(lambda: connections(aport) == [], 5.0, 0.1),
          "GET /connections not [] after every download ended")
    m = metrics(aport)
    bad = check_metrics_match_access(m, access_lines(access))
    check(not bad, "/metrics does not match the access log: " + "; ".join(bad))
    env.note("metrics after %d downloads: downloads %s, client bytes %s, upstream bytes %s"
             % (len(lines), m.by("sluice_downloads_total", "outcome"),
                m.total("sluice_client_bytes_total"), m.total("sluice_upstream_bytes_total")))
    env.stop_clean(px)

    # [log] access empty: the JSON line goes to stderr.
    px2 = env.start_proxy(config([o.addr], log={"level": "info", "access": ""}),
                          name="proxy-stderr-access")
    res = env.run_fetch(px2.url + "/bytes/100k", ["--verify"], timeout=30)
    check(res.rc == 0, res.describe())
    check(harness.wait_until(lambda: access_lines(px2.log_path), 5.0, 0.05),
          "no JSON access line on stderr: %s" % " | ".join(px2.log_tail()))
    a = access_lines(px2.log_path)[0]
    check_access_line(a)
    check(a["outcome"] == "complete" and a["path"] == "/bytes/100k", json.dumps(a))
    env.stop_clean(px2)


env.case("a. pause, gap drains slower than the origin's 3 s give-up: truncated",
         pause_truncated)
env.case("b. spill: complete, origin finished early, spool unlinked", spill_complete)
env.case("c. spill_limit 4M < 12M body: complete, space reclaimed, held <= high + limit",
         spill_limit_reclaimed)
env.case("d. pace: complete, the origin never gave up", pace_complete)
env.case("e. pause + resume = on: complete with resumes >= 1", resume_complete)
env.case("f. spill_limit 64k: falls back to pause, complete", spill_tiny_limit)
env.case("g. spill_dir on a full tmpfs: falls back to pause, complete", spill_enospc)
env.case("memory_limit 8M holds with 50 slow downloads", memory_limit_50)
env.case("50 zero-window clients closed by zwp_timeout 3s, memory freed, honest "
         "download completes", zero_window_clients)
env.case("5 zero-window clients closed by zwp_probes 4 x 200ms (3 s)", zero_window_probes)
env.case("/metrics parses and matches the access log; /connections; access on stderr",
         metrics_and_access)
for line in FIGURES:
    env.note("figures: " + line)
env.finish()
