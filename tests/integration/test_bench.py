#!/usr/bin/env python3
"""Bench tests: `sluice bench bench/quick.ini` runs the incident scenario
with policy pause and policy spill through the lab, end to end:

- results.csv has one row per combination (2), each column named with its
  unit; the pause row (large gap, high 2M, low 0) is truncated, the spill
  row complete; every run's lab exited 0 (no `error` rows);
- summary.md names the cheapest setting that completes every run (spill);
- the plots exist and are PNGs of more than 1000 bytes (when gnuplot is
  installed);
- --json prints one object with the same runs;
- no sluice-PID-* namespace of the sweep's labs is left, exit 0.

Needs root (ip netns, tc); without it the script says so as TAP
(`1..0 # SKIP reason`, exit 0: meson reports SKIP).  About 40 s: a
truncated run of 10 s and a complete one of 26 s.

    python3 tests/integration/test_bench.py --sluice build/sluice
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "bench", "quick.ini")
PLOTS = ("completion", "memory", "hold", "fidelity")
LIMIT = 240.0       # the sweep's two runs, setup and teardown included

env = harness.Env(__doc__)


def run_quick():
    out = env.path("bench-quick")
    t0 = time.monotonic()
    p = subprocess.run([env.sluice, "bench", QUICK, "--out", out, "--json"],
                       capture_output=True, text=True, timeout=LIMIT,
                       stdin=subprocess.DEVNULL)
    return p, out, time.monotonic() - t0


def quick():
    p, out, wall = run_quick()
    env.note("sluice bench bench/quick.ini: exit %s after %.1f s" % (p.returncode, wall))
    check(p.returncode == 0, "exit %s: %s" % (p.returncode, p.stderr[-1500:]))
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(out, "results.csv")) as f:
        head = f.readline().strip().split(",")
    check(len(rows) == 2, "results.csv has %d rows, expected 2" % len(rows))
    for col in ("policy", "high_watermark_bytes", "client_rate_bps", "origin_give_up",
                "lb", "outcome", "client_bytes", "unsent_bytes", "finish_s",
                "origin_hold_s", "zero_window_s", "longest_zero_window_s",
                "lb_peak_rss_bytes", "lb_peak_memory_bytes", "lb_peak_spool_bytes",
                "predicted_outcome", "predicted_unsent_bytes"):
        check(col in head, "results.csv lacks column %s: %s" % (col, head))
    by = {r["policy"]: r for r in rows}
    env.note("pause: %s, %s unsent (model %s), origin held %s s" % (
        by["pause"]["outcome"], by["pause"]["unsent_bytes"],
        by["pause"]["predicted_unsent_bytes"], by["pause"]["origin_hold_s"]))
    env.note("spill: %s in %s s, spool %s bytes" % (
        by["spill"]["outcome"], by["spill"]["finish_s"], by["spill"]["lb_peak_spool_bytes"]))
    check(by["pause"]["outcome"] == "truncated", "pause row: %s" % by["pause"])
    check(by["spill"]["outcome"] == "complete", "spill row: %s" % by["spill"])
    check(int(by["pause"]["unsent_bytes"]) > 0, "pause row unsent: %s" % by["pause"])
    check(int(by["spill"]["lb_peak_spool_bytes"]) > 0, "spill row spool: %s" % by["spill"])
    check(all(r["lab_exit"] == "0" for r in rows), "a lab did not exit 0: %s" % rows)

    with open(os.path.join(out, "summary.md")) as f:
        md = f.read()
    check("Cheapest setting that completes every run" in md and "policy=spill" in md,
          "summary.md does not name the cheapest setting: %s" % md[:1500])
    check("| pause | 0/1 |" in md and "| spill | 1/1 |" in md, "summary.md table: " + md[:1500])

    s = json.loads(p.stdout)
    check(s["sweep"] == "quick" and len(s["runs"]) == 2, "--json: %s" % p.stdout[:400])
    check([r["outcome"] for r in s["runs"]] == [r["outcome"] for r in rows],
          "--json and results.csv disagree")

    if shutil.which("gnuplot") is None:
        env.note("plots not checked: no gnuplot")
    else:
        for name in PLOTS:
            png = os.path.join(out, "plots", name + ".png")
            check(os.path.exists(png), "no " + png)
            with open(png, "rb") as f:
                data = f.read()
            check(data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000,
                  "%s: %d bytes, not a PNG" % (png, len(data)))
            check(os.path.exists(os.path.join(out, "plots", name + ".gp")), name + ".gp")

    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = [int(r["lab_pid"]) for r in rows]
    check(all(pid > 0 for pid in mine), "lab_pid: %s" % mine)
    left = [line.split()[0] for line in ns.splitlines()
            if any(line.startswith("sluice-%d-" % pid) for pid in mine)]
    check(not left, "namespaces left: %s" % left)
    check("a sluice-* namespace was left" not in p.stderr, p.stderr[-800:])


def bad_sweep():
    path = env.path("bad.ini")
    with open(path, "w") as f:
        f.write("[bench]\nbase = %s\n[axes]\nlb = sluice, envoy\n"
                % os.path.join(ROOT, "conf", "scenarios", "incident.ini"))
    p = subprocess.run([env.sluice, "bench", path], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and p.stderr.startswith(path + ":4: [axes] lb: 'envoy'"),
          "exit %s: %s" % (p.returncode, p.stderr))


if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
    env.skip_all("sluice bench runs the lab, which needs root and iproute2 (ip, tc)")

env.case("a bad sweep file: file:line: [axes] key, exit 2", bad_sweep)
env.case("bench/quick.ini: pause truncated, spill complete, summary, plots, nothing left",
         quick)
env.finish()
