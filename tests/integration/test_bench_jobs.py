#!/usr/bin/env python3
"""Concurrent sweeps: `sluice bench --jobs N` gives the answer of --jobs 1.

- bench/quick.ini run with --jobs 1 and with --jobs 4 (two runs, so both
  at once): the same rows in the same order, each combination with the
  same outcome and its unsent bytes within the model's 5 %; every lab
  exited 0; the plain progress lines (stderr is not a terminal) say
  done/total and the outcomes; no namespace of either sweep's labs left;
- SIGTERM to a --jobs 2 sweep while both labs run: exit 143, every lab's
  namespaces gone and no lab process left; SIGKILL to it: the same, the
  labs told by the kernel (PR_SET_PDEATHSIG, SIGTERM);
- a run whose lab fails to set up (a sysctl the kernel does not have) is
  started once more (the first stderr kept as lab.stderr.1), then is an
  `error` row with the lab's reason; the sweep still exits 0;
- --jobs 0, x and 65 are bad usage (exit 2);
- across hosts, docs/lab.md's recipe with GNU parallel on this machine
  (`--sshlogin :`, 2 jobs): `sluice bench --emit`, parallel running
  `sluice lab FILE --json`, `sluice bench --collect`: the same rows,
  axes, outcomes and unsent bytes (5 %) as the plain --jobs 1 sweep, and
  each lab its own results directory though both started in the same
  second; a summary missing or of another run is an error row saying so
  (another run's before the run's own: the run's own is taken);
  --emit into a directory that is not empty and --collect without the
  emitted sweep are refused.

Needs root (ip netns, tc); without it the script says so as TAP
(`1..0 # SKIP reason`, exit 0: meson reports SKIP).  About 80 s: the
sweep one at a time (about 40 s), both runs at once (about 27 s), the
same two through GNU parallel (about 27 s), and a sweep stopped after a
few seconds.

    python3 tests/integration/test_bench_jobs.py --sluice build/sluice
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "bench", "quick.ini")
LIMIT = 240.0       # a sweep of two runs, setup and teardown included
TOLERANCE = 0.05    # the model's 5 %

env = harness.Env(__doc__)


def namespaces_of(pids):
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in ns.splitlines()
            if any(line.startswith("sluice-%d-" % pid) for pid in pids)]


def sweep(jobs):
    out = env.path("quick-jobs%s" % jobs)
    t0 = time.monotonic()
    p = subprocess.run([env.sluice, "bench", QUICK, "--jobs", str(jobs), "--out", out],
                       capture_output=True, text=True, timeout=LIMIT,
                       stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    check(p.returncode == 0, "--jobs %s: exit %s: %s" % (jobs, p.returncode, p.stderr[-1500:]))
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    env.note("--jobs %s: %.1f s; %s" % (jobs, wall, ", ".join(
        "%s %s unsent %s" % (r["policy"], r["outcome"], r["unsent_bytes"]) for r in rows)))
    check([r["run"] for r in rows] == ["1", "2"] and
          [r["policy"] for r in rows] == ["pause", "spill"],
          "--jobs %s: rows not in the sweep's order: %s" % (jobs, rows))
    check(all(r["lab_exit"] == "0" for r in rows), "--jobs %s: a lab failed: %s" % (jobs, rows))
    check("2/2 done" in p.stderr and "truncated 1" in p.stderr,
          "--jobs %s: no progress line: %s" % (jobs, p.stderr[-800:]))
    left = namespaces_of([int(r["lab_pid"]) for r in rows])
    check(not left, "--jobs %s: namespaces left: %s" % (jobs, left))
    return rows


PLAIN = []     # the --jobs 1 sweep's rows, for the parallel recipe


def same_rows(one, other, what):
    check(len(one) == len(other), "%s: %d rows, not %d" % (what, len(other), len(one)))
    for a, b in zip(one, other):
        check(all(a[k] == b[k] for k in ("run", "repeat", "policy", "body_bytes")),
              "%s: row %s is not the plain sweep's: %s" % (what, a["run"], b))
        check(a["outcome"] == b["outcome"],
              "%s: %s: plain %s, here %s" % (what, a["policy"], a["outcome"], b["outcome"]))
        ua, ub = int(a["unsent_bytes"]), int(b["unsent_bytes"])
        check(abs(ua - ub) <= TOLERANCE * max(ua, ub),
              "%s: %s: unsent %d plain, %d here" % (what, a["policy"], ua, ub))


def same_answer():
    one = sweep(1)
    PLAIN.extend(one)
    four = sweep(4)
    for a, b in zip(one, four):
        check(a["outcome"] == b["outcome"],
              "%s: --jobs 1 %s, --jobs 4 %s" % (a["policy"], a["outcome"], b["outcome"]))
        ua, ub = int(a["unsent_bytes"]), int(b["unsent_bytes"])
        check(abs(ua - ub) <= TOLERANCE * max(ua, ub),
              "%s: unsent %d with --jobs 1, %d with --jobs 4" % (a["policy"], ua, ub))


def lab_children(pid):
    kids = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            kids += [int(x) for x in f.read().split()]
    return kids


def two_labs_running(out):
    """A --jobs 2 sweep of bench/quick.ini once both labs have their three
    namespaces each: (the bench's Popen, the labs' pids)."""
    p = subprocess.Popen([env.sluice, "bench", QUICK, "--jobs", "2", "--out", out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    labs = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        labs = lab_children(p.pid)
        if len(labs) == 2 and len(namespaces_of(labs)) == 6:
            break
        time.sleep(0.2)
    if len(namespaces_of(labs)) != 6:
        p.kill()
        p.wait()
        check(False, "two labs with three namespaces each did not start: %s" % labs)
    return p, labs


def nothing_left(labs):
    check(not namespaces_of(labs), "namespaces left: %s" % namespaces_of(labs))
    alive = [pid for pid in labs if os.path.exists("/proc/%d" % pid)]
    check(not alive, "labs left: %s" % alive)


def sigterm_tears_down():
    p, labs = two_labs_running(env.path("quick-term"))
    try:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    env.note("stopped: exit %s, %s" % (p.returncode, err.strip().splitlines()[-1:]))
    check(p.returncode == 128 + signal.SIGTERM, "exit %s: %s" % (p.returncode, err[-800:]))
    nothing_left(labs)


def sigkill_tears_down():
    """A bench killed outright: each lab is sent SIGTERM (PDEATHSIG) and
    tears down on its own."""
    out = env.path("quick-kill")
    p, labs = two_labs_running(out)
    p.kill()
    p.communicate()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
            namespaces_of(labs) or any(os.path.exists("/proc/%d" % pid) for pid in labs)):
        time.sleep(0.2)
    env.note("SIGKILL: labs gone after %.1f s" % (60 - (deadline - time.monotonic())))
    nothing_left(labs)
    # Stopped, not run to their end: each lab says so in its stderr.
    for run in sorted(os.listdir(os.path.join(out, "runs"))):
        with open(os.path.join(out, "runs", run, "lab.stderr")) as f:
            text = f.read()
        check("stopped by signal 15" in text,
              "%s was not stopped by SIGTERM: %s" % (run, text[-300:]))


def setup_retried():
    base = env.path("bad-base.ini")
    with open(os.path.join(ROOT, "conf", "scenarios", "incident.ini")) as f:
        text = f.read()
    with open(base, "w") as f:
        f.write(text.replace("[origin]\n", "[origin]\nsysctl.net.ipv4.no_such_key = 1\n", 1))
    sweep_file = env.path("bad-sysctl.ini")
    with open(sweep_file, "w") as f:
        f.write("[bench]\nname = bad\nbase = %s\n[axes]\npolicy = pause, spill\n" % base)
    out = env.path("bad-out")
    p = subprocess.run([env.sluice, "bench", sweep_file, "--jobs", "2", "--out", out],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    check(p.returncode == 0, "exit %s: %s" % (p.returncode, p.stderr[-800:]))
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    check([r["outcome"] for r in rows] == ["error", "error"], "rows: %s" % rows)
    check(all("no_such_key" in r["error"] and r["lab_exit"] == "1" for r in rows),
          "no reason: %s" % rows)
    check(p.stderr.count("starting it again") == 2, p.stderr[-800:])
    for r in rows:
        check(os.path.exists(os.path.join(r["results_dir"], "lab.stderr.1")),
              "no lab.stderr.1 in " + r["results_dir"])
    left = namespaces_of([int(r["lab_pid"]) for r in rows])
    check(not left, "namespaces left: %s" % left)


def bad_jobs():
    for v in ("0", "x", "65"):
        p = subprocess.run([env.sluice, "bench", QUICK, "--jobs", v],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and "--jobs" in p.stderr,
              "--jobs %s: exit %s: %s" % (v, p.returncode, p.stderr))


def collect(dirs, out):
    p = subprocess.run([env.sluice, "bench", "--collect"] + dirs + ["--out", out],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    check(p.returncode == 0, "--collect: exit %s: %s" % (p.returncode, p.stderr[-800:]))
    with open(os.path.join(out, "results.csv")) as f:
        return list(csv.DictReader(f))


def parallel_recipe():
    """docs/lab.md's recipe, local: emit, GNU parallel, collect."""
    v = subprocess.run(["parallel", "--version"], capture_output=True, text=True)
    check(v.returncode == 0 and v.stdout.startswith("GNU parallel"),
          "GNU parallel is not installed (scripts/deps.sh installs it): %s" % v.stdout[:80])
    emit = env.path("emitted")
    p = subprocess.run([env.sluice, "bench", QUICK, "--emit", emit],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "--emit: exit %s: %s" % (p.returncode, p.stderr))
    with open(os.path.join(emit, "runs.txt")) as f:
        files = f.read().split()
    check(files == ["001-policy=pause.ini", "002-policy=spill.ini"], "runs.txt: %s" % files)
    # Self-contained: each file runs from the emitted directory alone.
    again = subprocess.run([env.sluice, "bench", QUICK, "--emit", emit],
                           capture_output=True, text=True, timeout=60)
    check(again.returncode == 1 and "not empty" in again.stderr,
          "--emit into a full directory: exit %s: %s" % (again.returncode, again.stderr))
    # The recipe as docs/lab.md gives it, with --sshlogin : (this machine).
    env_path = dict(os.environ, PATH=os.path.dirname(os.path.abspath(env.sluice)) +
                    ":" + os.environ.get("PATH", ""))
    t0 = time.monotonic()
    p = subprocess.run(["parallel", "--sshlogin", ":", "--jobs", "2",
                        "--transferfile", "{}", "--return", "{.}.json",
                        "--return", "{.}.stderr", "--cleanup",
                        "sluice lab {} --json > {.}.json 2> {.}.stderr",
                        "::::", "runs.txt"],
                       cwd=emit, env=env_path, capture_output=True, text=True,
                       timeout=LIMIT, stdin=subprocess.DEVNULL)
    env.note("parallel -j 2: %.1f s, exit %s" % (time.monotonic() - t0, p.returncode))
    check(p.returncode == 0, "parallel: exit %s: %s" % (p.returncode, p.stderr[-800:]))
    results = []
    for name in files:
        with open(os.path.join(emit, name[:-4] + ".json")) as f:
            results.append(json.load(f)["results"])
    check(len(set(results)) == 2, "the two labs shared a results directory: %s" % results)
    for d in results:
        shutil.rmtree(os.path.join(emit, d), ignore_errors=True)
    out = env.path("collected")
    rows = collect([emit], out)
    env.note("collected: " + ", ".join("%s %s unsent %s" % (r["policy"], r["outcome"],
                                                             r["unsent_bytes"]) for r in rows))
    same_rows(PLAIN, rows, "parallel + --collect")
    check(all(r["lab_exit"] == "" and r["error"] == "" for r in rows), "rows: %s" % rows)
    for name in ("results.csv", "summary.md", "plots/completion.png"):
        check(os.path.exists(os.path.join(out, name)), "no " + name)
    # One summary elsewhere (a second host's directory), one missing, one
    # put under another run's name: rows say which.
    other = env.path("host2")
    os.mkdir(other)
    shutil.move(os.path.join(emit, "002-policy=spill.json"), other)
    rows = collect([emit, other], env.path("collected2"))
    same_rows(PLAIN, rows, "--collect from two directories")
    rows = collect([emit], env.path("collected3"))
    check(rows[1]["outcome"] == "error" and "not collected" in rows[1]["error"],
          "a missing summary: %s" % rows[1])
    shutil.copy(os.path.join(emit, "001-policy=pause.json"),
                os.path.join(emit, "002-policy=spill.json"))
    rows = collect([emit], env.path("collected4"))
    check(rows[1]["outcome"] == "error" and "is the summary of" in rows[1]["error"],
          "another run's summary: %s" % rows[1])
    # ... and the run's own in the next directory is the one taken.
    rows = collect([emit, other], env.path("collected5"))
    same_rows(PLAIN, rows, "a wrong summary first, the run's own after it")
    p = subprocess.run([env.sluice, "bench", "--collect", other, "--out", env.path("c5")],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 1 and "sweep/sweep.ini" in p.stderr,
          "--collect without the emitted sweep: exit %s: %s" % (p.returncode, p.stderr))


if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
    env.skip_all("sluice bench runs the lab, which needs root and iproute2 (ip, tc)")

env.case("--jobs 0, x, 65: bad usage, exit 2", bad_jobs)
env.case("bench/quick.ini: --jobs 4 gives --jobs 1's outcomes and unsent bytes (5 %)",
         same_answer)
env.case("GNU parallel (--sshlogin :, 2 jobs): emit, run, collect = the plain sweep",
         parallel_recipe)
env.case("a failed setup is retried once, then an error row with its reason",
         setup_retried)
env.case("SIGTERM during --jobs 2: exit 143, no namespace or lab left", sigterm_tears_down)
env.case("SIGKILL of the bench: every lab still tears down", sigkill_tears_down)
env.finish()
