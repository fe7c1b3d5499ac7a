#!/usr/bin/env python3
"""Command-line tests: --version, help, `check` of good and bad configs
(exit 2 and one "FILE:LINE: [section] key: message" line), `proxy` refusing
a bad config or a busy address, and SIGTERM: idle exit, and a graceful drain
of a download in flight while new connections are refused.

    python3 tests/integration/test_cli.py --sluice build/sluice --origin tests/origin.py
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, KiB, PatternSink, check, config  # noqa: E402

env = harness.Env(__doc__)

# A valid configuration; the comments give each line's number, which the
# bad variants below rely on.
BASE = [
    "; sluice test configuration",      # 1
    "[listen]",                          # 2
    "address = 127.0.0.1:0",             # 3
    "drain_timeout = 30s",               # 4
    "",                                  # 5
    "[upstream]",                        # 6
    "server = 127.0.0.1:9",              # 7
    "balance = round-robin",             # 8
    "connect_timeout = 5s",              # 9
    "read_timeout = 60s",                # 10
    "",                                  # 11
    "[client]",                          # 12
    "idle_timeout = 60s",                # 13
    "max_header_size = 32k",             # 14
    "",                                  # 15
    "[buffer]",                          # 16
    "policy = pause",                    # 17
    "high_watermark = 1M",               # 18
    "low_watermark = 256k",              # 19
    "",                                  # 20
    "[log]",                             # 21
    "level = info",                      # 22
]


def write_variant(name, replace=None, append=()):
    """BASE with some lines replaced ({line_number: text}) and lines appended;
    returns the file's absolute path."""
    lines = list(BASE)
    for num, text in (replace or {}).items():
        lines[num - 1] = text
    lines.extend(append)
    return env.write_config("\n".join(lines) + "\n", name + ".ini")


def one_error_line(res, path, line_re, section_re, key_re=None):
    """res: a finished `sluice check|proxy`. It must exit 2 with a line
    FILE:LINE: [section] key: message on stderr."""
    check(res.returncode == 2, "exit status %s, expected 2; stderr %r"
          % (res.returncode, res.stderr[-300:]))
    pat = r"^%s:(%s): \[%s\]%s: \S" % (re.escape(path), line_re, section_re,
                                       " " + key_re if key_re else "( [\\w.-]+)?")
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    hits = [l for l in lines if re.match(pat, l)]
    check(hits, "no stderr line matches %r: %r" % (pat, res.stderr[-400:]))
    return lines, hits


# ---------------------------------------------------------------------------

def version():
    res = env.run_sluice(["--version"])
    check(res.returncode == 0, "exit status %s; stderr %r" % (res.returncode, res.stderr))
    check(re.search(r"\d+\.\d+", res.stdout), "no version number on stdout: %r" % res.stdout)
    env.note("--version: %s" % res.stdout.strip().splitlines()[0])


def help_cmd():
    res = env.run_sluice(["help"])
    check(res.returncode == 0, "exit status %s; stderr %r" % (res.returncode, res.stderr))
    for word in ("proxy", "check"):
        check(word in res.stdout, "help on stdout does not mention %r: %r" % (word, res.stdout[:300]))


def check_ok():
    path = write_variant("ok")
    res = env.run_sluice(["check", "-c", path])
    check(res.returncode == 0, "exit status %s for a valid config; stderr %r"
          % (res.returncode, res.stderr))


def check_bad(name, replace, append, line_re, section_re, key_re, must_say=None):
    path = write_variant(name, replace, append)
    res = env.run_sluice(["check", "-c", path])
    lines, hits = one_error_line(res, path, line_re, section_re, key_re)
    check(len(lines) == 1, "expected exactly one stderr line, got %d: %r" % (len(lines), lines))
    if must_say:
        check(must_say in hits[0], "message does not mention %r: %r" % (must_say, hits[0]))


def check_missing_file():
    path = os.path.join(env.tmp, "no-such-dir", "sluice.ini")
    res = env.run_sluice(["check", "-c", path])
    check(res.returncode == 2, "exit status %s, expected 2" % res.returncode)
    check(path in res.stderr, "stderr does not name the file: %r" % res.stderr)


def proxy_bad_config():
    path = write_variant("proxy-bad", {9: "frobnicate = 1"})
    res = env.run_sluice(["proxy", "-c", path])
    one_error_line(res, path, "9", r"upstream", "frobnicate")


def proxy_address_in_use():
    # Hold a listening socket on a port; the proxy must fail to bind it.
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        path = write_variant("busy", {3: "address = 127.0.0.1:%d" % port})
        res = env.run_sluice(["proxy", "-c", path], timeout=10)
        one_error_line(res, path, "3", r"listen", "address")
    finally:
        held.close()


def sigterm_idle():
    px = env.start_proxy(config(["127.0.0.1:%d" % harness.free_port_refused()]), name="proxy-idle")
    t0 = time.monotonic()
    px.popen.send_signal(signal.SIGTERM)
    try:
        rc = px.popen.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("idle proxy still running 60 s after SIGTERM")
    check(rc == 0, "exit status %s after SIGTERM, expected 0" % rc)
    env.note("idle proxy exited %.2f s after SIGTERM" % (time.monotonic() - t0))


def sigterm_drains():
    origin = env.start_origin(id="drain")
    # sndbuf pinned: an autotuned send buffer (up to 4 MiB) could let the
    # kernel take most of the body while the reader is held.
    px = env.start_proxy(config([origin.addr], listen={"drain_timeout": "30s"},
                                client={"sndbuf": "64k"}),
                         name="proxy-drain")
    n = 8 * MiB
    # The reader stops after 256 KiB until released: the download is in
    # flight at the SIGTERM and while refusal is checked, however slow the
    # machine (nothing here is paced by the clock).
    dl = harness.HeldDownload(px.port, "/bytes/8M", PatternSink())
    try:
        check(dl.wait_held(), "download did not start: " + dl.describe())
        px.popen.send_signal(signal.SIGTERM)
        at_term = dl.sink.length

        # New connections are refused (poll, bounded: a generous 30 s).
        refused = harness.wait_until(lambda: harness.connect_refused(px.port), 30.0, 0.05)
        in_flight = dl.alive()

        resp = dl.finish()
        check(resp.status == 200, "status %s" % resp.status)
        dl.sink.check(n, "download in flight at SIGTERM")
        check(refused, "new connections still accepted 30 s after SIGTERM")
        try:
            rc = px.popen.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError("proxy still running 60 s after the drained download ended")
        check(rc == 0, "exit status %s after draining, expected 0" % rc)
        env.note("SIGTERM at %d KiB of 8 MiB; refused new connections while the download was "
                 "%s; download completed byte-exact; exit 0" %
                 (at_term // KiB, "still in flight" if in_flight else "already done"))
        check(in_flight, "the download had finished before refusal was checked: the drain "
                         "was not exercised")
    finally:
        dl.close()


def size_overflow_flags():
    """A size beyond 64 bits is out of range, with the range, not "not a
    size" (issue 13), on every verb that takes one."""
    for args, want in (
            (["origin", "--listen", "127.0.0.1:0", "--drip", "9999999999T"],
             "--drip 9999999999T: out of range (0 to 18446744073709551615)"),
            (["origin", "--listen", "127.0.0.1:0", "--zwp-probes", "9999999999T"],
             "--zwp-probes 9999999999T: out of range (1 to 64)"),
            (["fetch", "--read", "9999999999T", "http://127.0.0.1:9/"],
             "--read 9999999999T: out of range (1 to 1G)"),
            (["fetch", "--stall-at", "9999999999T", "--stall-for", "1s",
              "http://127.0.0.1:9/"],
             "--stall-at 9999999999T: out of range (0 to 18446744073709551615)"),
            (["plan", "--size", "9999999999T"],
             "9999999999T: out of range (0 to 18446744073709551615)"),
            (["plan", "--size", "12Q"], "12Q: not a size")):
        r = env.run_sluice(args, timeout=10)
        check(r.returncode == 2, "%s: exit status %s, expected 2 (stderr %r)"
              % (" ".join(args), r.returncode, r.stderr[-300:]))
        check(want in r.stderr, "%s: stderr %r, expected %r"
              % (" ".join(args), r.stderr[-300:], want))


def size_overflow_config():
    path = write_variant("size-overflow", {18: "high_watermark = 9999999999T"})
    res = env.run_sluice(["check", "-c", path])
    lines, hits = one_error_line(res, path, "18", "buffer", "high_watermark")
    check(hits[0].endswith("high_watermark: out of range (4k to 64G)"),
          "message %r, expected out of range (4k to 64G)" % hits[0])


env.case("sluice --version", version)
env.case("sluice help", help_cmd)
env.case("check: valid config -> exit 0", check_ok)
env.case("check: unknown key -> exit 2, line 9", check_bad, "unknown-key",
         {9: "frobnicate = 1"}, (), "9", "upstream", "frobnicate")
env.case("check: unknown section -> exit 2, names it", check_bad, "unknown-section",
         None, ["[bogus]", "answer = 42"], "23|24", "bogus", None, "bogus")
env.case("check: size 12Q -> exit 2, line 18", check_bad, "bad-size",
         {18: "high_watermark = 12Q"}, (), "18", "buffer", "high_watermark")
env.case("check: size 9999999999T -> exit 2, line 18, out of range (4k to 64G)",
         size_overflow_config)
env.case("origin/fetch/plan: size 9999999999T -> out of range with the range",
         size_overflow_flags)
env.case("check: duration '5 parsecs' -> exit 2, line 9", check_bad, "bad-duration",
         {9: "connect_timeout = 5 parsecs"}, (), "9", "upstream", "connect_timeout")
env.case("check: low_watermark > high_watermark -> names the low line (19)", check_bad,
         "low-above-high", {18: "high_watermark = 256k", 19: "low_watermark = 1M"}, (),
         "19", "buffer", "low_watermark")
env.case("check: low_watermark > high_watermark, low first -> names the low line (18)",
         check_bad, "low-above-high-2", {18: "low_watermark = 1M", 19: "high_watermark = 256k"},
         (), "18", "buffer", "low_watermark")
env.case("check: address 'nonsense' -> exit 2, line 3", check_bad, "bad-address",
         {3: "address = nonsense"}, (), "3", "listen", "address")
# 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this host: check binds
# it with port 0 and must fail; nothing is ever sent there.
env.case("check: address not local to this host -> exit 2, line 3", check_bad,
         "non-local-address", {3: "address = 192.0.2.1:8080"}, (), "3", "listen",
         "address", "cannot bind")
env.case("check: server 'nowhere' -> exit 2, line 7", check_bad, "bad-server",
         {7: "server = nowhere"}, (), "7", "upstream", "server")
env.case("check: balance 'random' -> exit 2, line 8", check_bad, "bad-balance",
         {8: "balance = random"}, (), "8", "upstream", "balance")
env.case("check: level 'loud' -> exit 2, line 22", check_bad, "bad-level",
         {22: "level = loud"}, (), "22", "log", "level")
env.case("check: missing file -> exit 2", check_missing_file)
env.case("proxy: bad config -> exit 2 with the line", proxy_bad_config)
env.case("proxy: address in use -> exit 2 naming [listen] address", proxy_address_in_use)
env.case("SIGTERM on an idle proxy -> exit 0", sigterm_idle)
env.case("SIGTERM during a slow download: drained byte-exact, new connections refused, exit 0",
         sigterm_drains)


# Files the config names are checked by `check` as by start-up (issue 13,
# #10): a spill_dir that is missing or no directory, an access log that
# cannot be appended to.  Each fails as root too.
env.case("check: policy spill, spill_dir missing -> exit 2, names spill_dir", check_bad,
         "spill-dir-missing",
         {17: "policy = spill", 20: "spill_dir = %s" % os.path.join(env.tmp, "no-such-dir")},
         (), "20", "buffer", "spill_dir", "No such file or directory")
env.case("check: policy spill, spill_dir a file -> exit 2, names spill_dir", check_bad,
         "spill-dir-file", {17: "policy = spill", 20: "spill_dir = %s" % os.path.abspath(__file__)},
         (), "20", "buffer", "spill_dir", "Not a directory")
env.case("check: [log] access in a missing directory -> exit 2, names it", check_bad,
         "access-missing-dir", {},
         ("access = %s" % os.path.join(env.tmp, "no-such-dir", "access.log"),), "23", "log",
         "access", "No such file or directory")
env.case("check: [log] access a directory -> exit 2, names it", check_bad,
         "access-is-dir", {}, ("access = %s" % env.tmp,), "23", "log", "access",
         "Is a directory")
env.finish()
