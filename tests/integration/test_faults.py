#!/usr/bin/env python3
"""Fault injection (issue 14, section 2): the real proxy under libfiu's
fiu-run, its system calls failing at random while clients download.

The proxy runs under `fiu-run -x` (libfiu's POSIX preload library, whose
wrappers of read, write, malloc... fail when their failure point is
enabled), with its remote control on a named pipe in the temp dir.  Each
round starts a proxy with one policy (pause, spill, pace, or pause with
resume on), warms it up with clean downloads, then enables the failure
points with fiu-ctrl at a probability, runs DOWNLOADS downloads (WORKERS at
a time, Content-Length and chunked, from `sluice origin`'s keyed pattern),
disables the points and checks:

  - every download either completed byte-exact (Content-Length reached, or
    the terminal chunk, and the bytes are the pattern's), or ended visibly:
    a reset or EOF before the head, a 5xx of the proxy's own, or a body
    short of its framing (EOF or reset before Content-Length, or before the
    terminal chunk) whose bytes are an exact prefix.  Never a body that
    ends at its framing but differs, a bad chunk line, a refused connect
    or a stall past the client's deadline;
  - each download that did not complete has its access line with an
    outcome other than "complete" (or, for the proxy's own 5xx, the status
    it sent).  Under faults of write(2) or malloc the access line itself
    may be lost (the log writes with write(2), formats with
    open_memstream): those rounds count lost lines and allow them; the
    spool rounds, which fault only pwrite/pread, allow none;
  - the proxy is alive, serves a clean download once injection stops,
    holds no connection, no buffered block (sluice_memory_buffered_bytes 0)
    and no spool byte, and exits 0 on SIGTERM.

The spool gets its own rounds (policy spill, slow clients): pwrite failing
with ENOSPC (always, then at random) falls back to memory and every
download completes exact; pread failing with EIO ends the downloads it
hits short, with outcome spool_error.

Which points exist: libfiu's preload wraps read, write, pread(64),
pwrite(64), readv, writev, open(64), malloc, calloc, realloc, socket,
connect, shutdown, recv... but accept(2) only, not accept4(2), which
libuv calls: posix/io/net/accept is enabled and never fires (it is listed
so that a libuv or libfiu that changes this is covered).  close(2) is left
alone: a failed close that closes nothing would leak descriptors no real
kernel leaks.

    python3 tests/integration/test_faults.py --sluice build/sluice [--keep-tmp]

(FAULTS_LOG_LEVEL=debug runs the proxies at debug, for their logs.)
"""

import collections
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KiB, MiB, check, config  # noqa: E402

env = harness.Env(__doc__)

FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")


def preload_dir():
    """The directory fiu-run takes its preload libraries from (its PLIBPATH
    default), or None."""
    try:
        with open(FIU_RUN) as f:
            m = re.search(r'^PLIBPATH="([^"]+)"', f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


if not FIU_RUN or not FIU_CTRL:
    env.skip_all("fiu-run/fiu-ctrl not installed (Debian: apt-get install fiu-utils)")
PLIB = preload_dir()
if not PLIB or not os.path.exists(os.path.join(PLIB, "fiu_posix_preload.so")):
    env.skip_all("libfiu's POSIX preload library not found (fiu-run's PLIBPATH %s)" % PLIB)
if harness.sanitized():
    env.skip_all("libfiu's preload library replaces malloc, which the sanitizers own")
if os.environ.get("SLUICE_WRAP"):
    env.skip_all("the proxy runs under fiu-run here, not under SLUICE_WRAP")

# The failure points of the random rounds (see the docstring).
RANDOM_POINTS = ("posix/io/rw/*", "posix/io/oc/open", "libc/mm/*", "posix/io/net/socket",
                 "posix/io/net/accept", "posix/io/net/connect", "posix/io/net/shutdown",
                 "posix/io/net/recv")
PROBABILITIES = (0.001, 0.003, 0.01)
POLICIES = ("pause", "spill", "pace", "resume")
DOWNLOADS = 24          # per round, under injection
WORKERS = 4             # downloads at a time
SIZES = (1 * MiB, 3 * MiB)
DL_DEADLINE = 30.0      # one download, head to last byte (a stall past it fails)
ENOSPC, EIO = 28, 5

FIGURES = []            # one line per round, repeated at the end
REF = None              # the first max(SIZES) bytes of the pattern


def ref():
    global REF
    if REF is None:
        REF = memoryview(harness.sluice_bytes(0, 4 * MiB))
    return REF


# ---------------------------------------------------------------------------
# fiu-run and fiu-ctrl
# ---------------------------------------------------------------------------

def fiu_prefix():
    return os.path.join(env.tmp, "fiu")


def fiu_wrap():
    """The proxy's command prefix: the POSIX preload, remote control on
    <tmp>/fiu-PID.in/.out; no point enabled at start (start-up may exit
    on a failed malloc, which is not what this tests)."""
    return [FIU_RUN, "-x", "-f", fiu_prefix()]


def fiu_ctrl(px, *commands):
    """Runs fiu-ctrl commands on the proxy (bounded); fails the case if one
    is refused."""
    args = [FIU_CTRL, "-f", fiu_prefix()]
    for c in commands:
        args += ["-c", c]
    args.append(str(px.pid))
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("fiu-ctrl %s did not answer in 20 s" % (commands,))
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and "rror" not in out,
          "fiu-ctrl %s: exit %s: %s" % (commands, r.returncode, out))


def enable_random(px, points, p, failinfo=None):
    extra = ",failinfo=%d" % failinfo if failinfo is not None else ""
    fiu_ctrl(px, *["enable_random name=%s,probability=%g%s" % (n, p, extra) for n in points])


def enable_always(px, points, failinfo=None):
    extra = ",failinfo=%d" % failinfo if failinfo is not None else ""
    fiu_ctrl(px, *["enable name=%s%s" % (n, extra) for n in points])


def disable(px, points):
    fiu_ctrl(px, *["disable name=%s" % n for n in points])


# ---------------------------------------------------------------------------
# The proxy, the origin, /metrics, the access log
# ---------------------------------------------------------------------------

ORIGIN = []


def origin():
    if not ORIGIN or not ORIGIN[0].alive():
        ORIGIN[:] = [env.start_sluice_origin()]
    return ORIGIN[0]


def start(policy, name, upstream=None, **over):
    """A proxy under fiu-run with this policy ("resume": pause with resume
    on), an [admin] listener and an access log file."""
    buf = {"policy": "pause" if policy == "resume" else policy,
           "high_watermark": "256k", "low_watermark": "64k", "block_size": "16k"}
    if policy == "spill":
        spill = env.path("spill")
        os.mkdir(spill)
        buf["spill_dir"] = spill
    if policy == "resume":
        buf.update({"resume": "on", "resume_backoff": "50ms", "resume_attempts": "3"})
    buf.update(over.pop("buffer", {}))
    access = env.path(name + ".access")
    sections = {"buffer": buf, "admin": {"address": "127.0.0.1:0"},
                "log": {"level": os.environ.get("FAULTS_LOG_LEVEL", "info"), "access": access},
                "client": {"idle_timeout": "20s", "sndbuf": "64k"},
                "upstream": {"read_timeout": "4s", "connect_timeout": "2s"}}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    px = env.start_proxy(config([upstream or origin().addr], **sections), name=name,
                         wrap=fiu_wrap())
    px.aport = env.admin_port(px)
    px.access = access
    px.spill = buf.get("spill_dir")
    return px


def metrics(px):
    return harness.metrics_flat(px.aport)


def access_lines(px):
    return harness.read_json_lines(px.access)


def alive(px):
    check(px.alive(), "the proxy exited with status %s: %s"
          % (px.popen.poll(), " | ".join(px.log_tail(8))))


# ---------------------------------------------------------------------------
# One download
# ---------------------------------------------------------------------------

class Sink:
    """Counts a body and compares it with the pattern as it comes."""

    def __init__(self):
        self.length = 0
        self.first_bad = None
        self.ref = ref()

    def __call__(self, data):
        n = len(data)
        if self.first_bad is None:
            want = self.ref[self.length:self.length + n]
            if want != data:
                for i in range(n):
                    if i >= len(want) or want[i] != data[i]:
                        self.first_bad = self.length + i
                        break
        self.length += n


class Result:
    """kind: complete | short (visible: a body short of its framing) |
    nohead (reset or EOF before a head) | status (the proxy's 5xx) | BAD."""

    def __init__(self, dl, size, chunked):
        self.dl, self.size, self.chunked = dl, size, chunked
        self.kind = None
        self.status = None
        self.detail = ""
        self.got = 0

    def __repr__(self):
        return "dl %d (%d bytes%s): %s%s, %d bytes%s" % (
            self.dl, self.size, ", chunked" if self.chunked else "", self.kind,
            " %s" % self.status if self.status else "", self.got,
            ": " + self.detail if self.detail else "")


def download(port, dl, size, chunked, slow):
    """GET /bytes/SIZE[?chunked=1]&dl=N through the proxy, read at a pace
    (a 64 KiB receive buffer, a short sleep every few reads: the proxy
    buffers, spills, paces), and classify how it ended."""
    res = Result(dl, size, chunked)
    target = "/bytes/%d?%sdl=%d" % (size, "chunked=1&" if chunked else "", dl)
    reads = [0]

    def pace():
        reads[0] += 1
        if reads[0] % 4 == 0:
            time.sleep(slow)
    try:
        c = harness.HttpConn(port, rcvbuf=64 * KiB, timeout=DL_DEADLINE)
    except ConnectionRefusedError as e:
        res.kind, res.detail = "BAD", "connect refused: the proxy stopped accepting (%s)" % e
        return res
    except OSError as e:
        res.kind, res.detail = "BAD", "connect: %s" % e
        return res
    sink = Sink()
    c.max_recv = 64 * KiB
    c.on_recv = pace
    try:
        try:
            c.request("GET", target, headers=[("Connection", "close")])
            resp = c.read_response(head_only=True, deadline=DL_DEADLINE)
        except (ConnectionResetError, BrokenPipeError) as e:
            res.kind, res.detail = "nohead", "%s" % e
            return res
        except harness.ProtocolError as e:
            # EOF before the head's end: visible, however much of a head came
            if "EOF before the end of a response head" in str(e):
                res.kind, res.detail = "nohead", "EOF after %d head bytes" % len(c.buf)
            else:
                res.kind, res.detail = "BAD", "head: %s" % e
            return res
        except socket.timeout:
            res.kind, res.detail = "BAD", "no head in %.0f s" % DL_DEADLINE
            return res
        res.status = resp.status
        if resp.status != 200:
            try:
                c.read_body(resp, deadline=DL_DEADLINE)
            except (OSError, harness.ProtocolError):
                pass
            res.kind = "status" if 500 <= resp.status <= 504 else "BAD"
            res.detail = "%s %s" % (resp.status, resp.reason)
            return res
        want = ["chunked"] if chunked else []
        if resp.tokens("transfer-encoding") != want or \
                (not chunked and resp.all("content-length") != [str(size)]):
            res.kind = "BAD"
            res.detail = "framing: %s" % resp.raw_head[:300]
            return res
        try:
            c.read_body(resp, sink=sink, deadline=DL_DEADLINE)
            ended = None
        except (ConnectionResetError, BrokenPipeError) as e:
            ended = "reset (%s)" % e
        except harness.ProtocolError as e:
            ended = str(e)
        except socket.timeout:
            res.got = sink.length
            res.kind, res.detail = "BAD", "stalled after %d bytes" % sink.length
            return res
        res.got = sink.length
        if sink.first_bad is not None:
            res.kind = "BAD"
            res.detail = "body differs from the pattern at offset %d (%s)" % (
                sink.first_bad, ended or "framing complete")
        elif ended is None:
            if sink.length == size:
                res.kind = "complete"
            else:
                res.kind = "BAD"
                res.detail = "framing complete with %d bytes" % sink.length
        elif ("missing" in ended or "EOF inside a line" in ended or
              ended.startswith("reset")):
            res.kind, res.detail = "short", ended
        else:
            res.kind, res.detail = "BAD", "chunked framing: %s" % ended
        return res
    finally:
        c.close()


def run_downloads(px, first_id, n, slow=0.002, sizes=SIZES, chunked=(False, True)):
    """n downloads, WORKERS at a time, going through sizes and, for each
    size, the framings in chunked; returns their Results."""
    jobs = queue.Queue()
    for i in range(n):
        jobs.put((first_id + i, sizes[i % len(sizes)],
                  chunked[(i // len(sizes)) % len(chunked)]))
    results = []
    lock = threading.Lock()

    def worker():
        while True:
            try:
                dl, size, chunked = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                r = download(px.port, dl, size, chunked, slow)
            except Exception as e:          # reported as a failure below
                r = Result(dl, size, chunked)
                r.kind, r.detail = "BAD", "%s: %s" % (type(e).__name__, e)
            with lock:
                results.append(r)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    bound = (n // WORKERS + 2) * (DL_DEADLINE + 5)
    t0 = time.monotonic()
    for t in threads:
        t.join(max(1.0, bound - (time.monotonic() - t0)))
    check(not any(t.is_alive() for t in threads),
          "downloads still running after %.0f s" % bound)
    return sorted(results, key=lambda r: r.dl)


# ---------------------------------------------------------------------------
# The checks after a round
# ---------------------------------------------------------------------------

def settle(px):
    """Injection is off: the proxy is alive, serves a clean download (one
    Content-Length, one chunked), and returns to no connection, no
    buffered block and no spool byte (bounded waits)."""
    alive(px)
    for r in run_downloads(px, 900000, 2, slow=0, sizes=(2 * MiB,)):
        check(r.kind == "complete", "clean download after injection stopped: %r" % r)

    def idle():
        m = metrics(px)
        if (m.get("sluice_connections") == 0 and m.get("sluice_memory_buffered_bytes") == 0
                and m.get("sluice_spool_bytes", 0) == 0):
            return m
        return None
    m = harness.wait_until(idle, 20.0, 0.2)
    if not m:
        m = metrics(px)
        raise AssertionError("not idle 20 s after the last download: connections %s, "
                             "memory_buffered_bytes %s, spool_bytes %s"
                             % (m.get("sluice_connections"),
                                m.get("sluice_memory_buffered_bytes"),
                                m.get("sluice_spool_bytes")))
    alive(px)
    return m


def check_access(px, results, lost_ok):
    """Each download's access line (matched by its dl=N) against what the
    client saw; returns (lines lost, outcome counts)."""
    byid = collections.defaultdict(list)
    for a in access_lines(px):
        m = re.search(r"[?&]dl=(\d+)", a.get("path") or "")
        if m:
            byid[int(m.group(1))].append(a)
    bad, lost = [], 0
    outcomes = collections.Counter()
    for r in results:
        lines = byid.get(r.dl, [])
        if len(lines) > 1:
            bad.append("%r: %d access lines" % (r, len(lines)))
            continue
        if not lines:
            if r.kind in ("nohead", "status") and r.status in (None, 503):
                continue        # the request may not have been read (or refused)
            if lost_ok:
                lost += 1
                continue
            bad.append("%r: no access line" % r)
            continue
        a = lines[0]
        oc = a.get("outcome")
        outcomes[oc] += 1
        if r.kind == "complete":
            if oc != "complete":
                bad.append("%r: access line says %s" % (r, oc))
        elif r.kind == "status":
            if a.get("status") != r.status:
                bad.append("%r: access line status %s" % (r, a.get("status")))
        elif oc == "complete":
            bad.append("%r: access line says complete: %s" % (r, json.dumps(a)))
    check(not bad, "\n".join(bad[:10]))
    return lost, outcomes


def tally(results):
    return collections.Counter(r.kind for r in results)


def round_figures(label, results, lost, outcomes, m):
    k = tally(results)
    line = ("%s: %d complete, %d short, %d nohead, %d 5xx; access outcomes %s; "
            "%d access lines lost; after: memory %d, spool %d bytes"
            % (label, k["complete"], k["short"], k["nohead"], k["status"],
               dict(sorted(outcomes.items())), lost,
               m.get("sluice_memory_buffered_bytes", -1), m.get("sluice_spool_bytes", 0)))
    FIGURES.append(line)
    env.note(line)


def no_bad(results):
    bad = [r for r in results if r.kind == "BAD"]
    check(not bad, "%d of %d downloads broke the rule:\n%s"
          % (len(bad), len(results), "\n".join(repr(r) for r in bad[:10])))


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------

def random_round(policy, p, points=RANDOM_POINTS, n=DOWNLOADS, sizes=SIZES, label=None,
                 chunked=(False, True), slow=0.002, **over):
    """n downloads with points failing at probability p."""
    label = label or "%s p=%g" % (policy, p)
    px = start(policy, "proxy-%s-%g" % (policy, p), **over)
    warm = run_downloads(px, 0, 2 * WORKERS, slow=0)
    check(all(r.kind == "complete" for r in warm), "warm-up: %s" % warm)
    enable_random(px, points, p)
    try:
        results = run_downloads(px, 1000, n, slow=slow, sizes=sizes, chunked=chunked)
    finally:
        if px.alive():
            disable(px, points)
    env.note("%s, as the clients saw it: %s" % (label, dict(sorted(tally(results).items()))))
    alive(px)
    m = settle(px)
    lost, outcomes = check_access(px, results, lost_ok=True)
    round_figures(label, results, lost, outcomes, m)
    no_bad(results)
    env.stop_clean(px)


def spool_enospc(always):
    """policy spill, slow clients: every pwrite (or one in 50) fails with
    ENOSPC.  The spool falls back to memory: every download completes
    byte-exact, the access lines all say complete, none is lost."""
    # splice off: the subject is the spool's pwrite, which the zero-copy
    # path (splice into the file, sendfile out; libfiu wraps neither) never
    # calls; test_strategies fills a real tmpfs for that path
    px = start("spill", "proxy-enospc-%s" % ("all" if always else "random"),
               buffer={"splice": "off"})
    if always:
        enable_always(px, ["posix/io/rw/pwrite"], failinfo=ENOSPC)
    else:
        enable_random(px, ["posix/io/rw/pwrite"], 0.02, failinfo=ENOSPC)
    try:
        results = run_downloads(px, 2000, 8, slow=0.005, sizes=(4 * MiB,))
        m0 = metrics(px)            # admin does not pwrite
    finally:
        if px.alive():
            disable(px, ["posix/io/rw/pwrite"])
    m = settle(px)
    lost, outcomes = check_access(px, results, lost_ok=False)
    round_figures("spill, pwrite ENOSPC %s" % ("always" if always else "p=0.02"),
                  results, lost, outcomes, m)
    spilled = sum(a.get("spilled_bytes", 0) for a in access_lines(px)
                  if "dl=20" in (a.get("path") or ""))
    env.note("spilled %d bytes, %d spill fallbacks; the log: %s"
             % (spilled, m0.get("sluice_spill_fallbacks_total", 0),
                " | ".join(sorted(set(re.findall(r"spool write in spill_dir \S+: [^;]+",
                                                 open(px.log_path).read()))))))
    no_bad(results)
    bad = [r for r in results if r.kind != "complete"]
    check(not bad, "a spool that cannot be written must not cost a download: %s" % bad)
    check(m0.get("sluice_spill_fallbacks_total", 0) > 0, "no spill fallback counted")
    if always:
        check(spilled == 0, "%d bytes spilled with every pwrite failing" % spilled)
    else:
        check(spilled > 0, "nothing spilled before the first failure: the case tested "
              "only the first write")
    env.stop_clean(px)


def spool_eio():
    """policy spill, slow clients: one pread in 100 fails with EIO.  The
    downloads it hits end short (a prefix, exact), with outcome
    spool_error; the others complete; no access line is lost."""
    px = start("spill", "proxy-eio", buffer={"splice": "off"})  # pread: as above
    enable_random(px, ["posix/io/rw/pread"], 0.01, failinfo=EIO)
    try:
        results = run_downloads(px, 3000, 8, slow=0.005, sizes=(4 * MiB,))
    finally:
        if px.alive():
            disable(px, ["posix/io/rw/pread"])
    m = settle(px)
    lost, outcomes = check_access(px, results, lost_ok=False)
    round_figures("spill, pread EIO p=0.01", results, lost, outcomes, m)
    no_bad(results)
    byid = {int(re.search(r"dl=(\d+)", a["path"]).group(1)): a
            for a in access_lines(px) if "dl=" in (a.get("path") or "")}
    wrong = [(r, byid.get(r.dl, {}).get("outcome")) for r in results
             if r.kind != "complete" and byid.get(r.dl, {}).get("outcome") != "spool_error"]
    check(not wrong, "short downloads not named spool_error: %s" % wrong)
    check(m.get("sluice_spilled_bytes_total", 0) > 0, "nothing was spilled: the case tested nothing")
    check(outcomes["spool_error"] > 0, "no pread failed in %d downloads" % len(results))
    env.stop_clean(px)


def write_enomem():
    """A client write libuv cannot allocate for: one malloc fails (fiu's
    onetime) just as a held client is released, which is the copy of the
    write's 24 segments uv_write() makes.  The download ends visibly
    short, the proxy serves on, and SIGTERM still ends it with status 0
    (libuv left the failed write counted as an active request, and the
    loop never ended)."""
    # splice off: the subject is uv_write's copy of the segments, which a
    # body moved with splice(2) ([buffer] splice = auto) never makes
    px = start("pause", "proxy-write-enomem",
               buffer={"high_watermark": "1M", "low_watermark": "256k", "splice": "off"})
    dl = harness.HeldDownload(px.port, "/bytes/%d" % (8 * MiB), Sink(), hold_at=256 * KiB,
                              rcvbuf=64 * KiB, deadline=60)
    try:
        check(dl.wait_held(), dl.describe())
        # enough for a write of more than 4 segments (16 KiB blocks), and
        # no longer growing: the upstream is paused, the loop idle
        seen = []

        def held():
            seen.append(metrics(px).get("sluice_memory_buffered_bytes") or 0)
            return len(seen) >= 3 and seen[-1] >= 256 * KiB and seen[-1] == seen[-3]
        check(harness.wait_until(held, 15, 0.2),
              "the proxy did not buffer 256 KiB behind the held client: %s" % seen[-5:])
        fiu_ctrl(px, "enable name=libc/mm/malloc,onetime")
        dl.release()
        dl._t.join(30)
        check(not dl.alive(), "the download did not end: %s" % dl.describe())
    finally:
        dl.close()
    with open(px.log_path) as f:
        log = f.read()
    env.note("client: %s" % dl.describe())
    check("closed: client write: not enough memory" in log,
          "the failed malloc was not the client write's: %s" % " | ".join(px.log_tail(5)))
    check(dl.error is not None and dl.sink.first_bad is None and dl.sink.length < 8 * MiB,
          "not a visibly short, exact prefix: %s" % dl.describe())
    # the proxy's failure, not the client's
    lines = harness.wait_until(lambda: [a for a in access_lines(px)
                                        if a.get("path") == "/bytes/%d" % (8 * MiB)], 10)
    check(lines and lines[0].get("outcome") == "proxy_error", "access line: %s" % lines)
    settle(px)
    env.stop_clean(px)


def error_answer_lost():
    """The proxy's own answer that never reaches its client: socket(2)
    fails (503 "cannot create a socket"), then the write of that 503
    fails (once, EIO).  The client sees no head, and the access line must
    not say complete (it did: the 503 was counted complete when queued)."""
    px = start("pause", "proxy-503-lost")
    # at warn the 503 is not logged, so the next write(2) is the answer's
    # (started at info, whose "listening on" line the harness waits for)
    with open(px.config_path) as f:
        text = f.read()
    with open(px.config_path, "w") as f:
        f.write(re.sub(r"(?m)^level = info$", "level = warn", text))
    px.popen.send_signal(signal.SIGHUP)
    check(harness.wait_until(lambda: metrics(px).get(
        'sluice_config_reloads_total{result="ok"}') == 1, 10, 0.1), "the reload to warn failed")
    enable_always(px, ["posix/io/net/socket"])
    fiu_ctrl(px, "enable name=posix/io/rw/write,failinfo=%d,onetime" % EIO)
    r = download(px.port, 4000, 1 * MiB, False, 0)
    disable(px, ["posix/io/net/socket", "posix/io/rw/write"])
    env.note("client: %r" % r)
    check(r.kind == "nohead", "the client got %r" % r)
    lines = harness.wait_until(lambda: [a for a in access_lines(px)
                                        if "dl=4000" in (a.get("path") or "")], 10)
    check(lines, "no access line")
    env.note("access line: status %s, outcome %s" % (lines[0].get("status"),
                                                     lines[0].get("outcome")))
    check(lines[0].get("status") == 503 and lines[0].get("outcome") != "complete",
          "access line: %s" % lines[0])
    settle(px)
    env.stop_clean(px)


def spool_eio_after_break():
    """policy spill: the upstream closes mid-body (at 4 MiB of 8) while the
    client holds, with most of what came spooled; then every pread fails
    with EIO.  The response already ends short for the upstream; the
    failed read must end it too (what memory held goes out, then EOF), not
    leave the client waiting for bytes that never come."""
    cut = env.start_sluice_origin(["--truncate-at", str(4 * MiB)], name="sluice-origin-cut")
    px = start("spill", "proxy-eio-break", upstream=cut.addr,
               buffer={"splice": "off"})  # pread, as spool_eio
    dl = harness.HeldDownload(px.port, "/bytes/%d" % (8 * MiB), Sink(), hold_at=256 * KiB,
                              rcvbuf=64 * KiB, deadline=60)
    try:
        check(dl.wait_held(), dl.describe())
        broke = harness.wait_until(lambda: "ending the client's response short" in
                                   open(px.log_path).read(), 15, 0.1)
        check(broke, "the upstream's close was not seen: %s" % " | ".join(px.log_tail(5)))
        spooled = metrics(px).get("sluice_spool_bytes", 0)
        check(spooled >= 1 * MiB, "only %d bytes spooled" % spooled)
        enable_always(px, ["posix/io/rw/pread"], failinfo=EIO)
        dl.release()
        dl._t.join(20)
        env.note("%d bytes spooled; client: %s" % (spooled, dl.describe()))
        check(not dl.alive(), "the client still waits 20 s after the failed read: %s"
              % dl.describe())
        disable(px, ["posix/io/rw/pread"])
    finally:
        dl.close()
    check(dl.error is not None and dl.sink.first_bad is None and dl.sink.length < 4 * MiB,
          "not a visibly short, exact prefix: %s" % dl.describe())
    lines = [a for a in access_lines(px) if a.get("path") == "/bytes/%d" % (8 * MiB)]
    check(lines and lines[0].get("outcome") != "complete", "access line: %s" % lines)
    settle(px)
    env.stop_clean(px)


def accept_enomem():
    """A new connection's memory cannot be had: fiu fails the next calloc
    (onetime) while the proxy is idle, which is conn_accept's.  That client
    is answered 503 with Connection: close and Retry-After (the refusal
    needs no memory), counted in refused{reason="memory"} and logged, and
    the next client is served.  (The connection's memory is small now:
    its heads' buffers grow with the heads, so an address-space cap can no
    longer single it out, as test_limits did before.)"""
    px = start("pause", "proxy-accept-enomem")

    def get(expect):
        with harness.HttpConn(px.port) as c:
            c.request("GET", "/bytes/4096")
            r = c.read_response(deadline=10.0 * harness.SLOW)
            check(r.status == expect, "expected %d, got %s %r"
                  % (expect, r.status, r.raw_head[:200]))
    get(200)
    fiu_ctrl(px, "enable name=libc/mm/calloc,onetime")
    harness.read_refusal(px.port, "/bytes/4096")
    get(200)
    got = metrics(px).get('sluice_connections_refused_total{reason="memory"}')
    check(got == 1, "refused{memory} %s, expected 1" % got)
    harness.wait_log(px, rb"warn: refusing a client with 503: out of memory")
    settle(px)
    env.stop_clean(px)


env.timed = True

env.case("setup: sluice origin", origin, keep_processes=True)
env.case("accept out of memory (calloc fails): 503, and the listener goes on", accept_enomem)
env.case("a client write libuv cannot allocate: short, proxy_error, and SIGTERM still exits 0",
         write_enomem)
for p in PROBABILITIES:
    for pol in POLICIES:
        env.case("random faults p=%g, policy %s: each download exact or visibly short, "
                 "named in the access log; then clean, idle, exit 0" % (p, pol),
                 random_round, pol, p)
# resume with only malloc failing, often: a failed push of body bytes (the
# pipe's segment ring grows mid-body, about once per download with 32
# blocks held) must not move the resume's Range past what the client got.
env.case("malloc faults p=0.1, policy resume, 32 blocks held: a resume never skips bytes",
         lambda: random_round("resume", 0.1, ("libc/mm/*",), 32, (3 * MiB,),
                              "resume, malloc only, p=0.1", (False,), 0.005,
                              buffer={"high_watermark": "512k", "low_watermark": "448k"}))
env.case("the proxy's 503 lost on its way: the access line does not say complete",
         error_answer_lost)
env.case("spool pread EIO after the upstream broke: the short end is not left hanging",
         spool_eio_after_break)
env.case("spool pwrite ENOSPC always: falls back to memory, every download exact",
         spool_enospc, True)
env.case("spool pwrite ENOSPC at random: falls back to memory, every download exact",
         spool_enospc, False)
env.case("spool pread EIO at random: short and spool_error, or exact", spool_eio)
for line in FIGURES:
    env.note(line)
env.finish()
