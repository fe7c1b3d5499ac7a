"""What the lab tests share: one `sluice lab` run as a process, its
summary, and the check that it left nothing behind (namespaces named for
its pid, the lab's veth names in the root namespace, processes marked
SLUICE_LAB=PID, capture files outside its results directory).

    import labrun; labrun.ENV = env   # the test's harness.Env
"""

import json
import os
import re
import signal
import subprocess
import time

import harness
from harness import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "conf", "scenarios")
SUMMARY_FIELDS = ["outcome", "body_bytes", "client_bytes", "unsent_bytes", "gave_up",
                  "zero_window_s", "predicted_outcome", "predicted_unsent_bytes",
                  "lb_kind", "kernel"]
LAB_LINKS = ("to-lb", "to-origin", "to-client")
RUN_LIMIT = 150.0         # one scenario, setup and teardown included
ENV = None                # set by the test script
VERDICTS = []


class Run:
    """One `sluice lab` process: its exit code, stdout, stderr, pid."""

    def __init__(self, rc, out, err, pid, out_dir, wall):
        self.rc, self.out, self.err, self.pid = rc, out, err, pid
        self.out_dir, self.wall = out_dir, wall

    def describe(self):
        return "exit %s after %.1f s; stderr: %s" % (
            self.rc, self.wall, " | ".join(self.err.strip().splitlines()[-12:]))


def _die_with_parent():
    harness._die_with_parent()


def start_lab(scenario, extra=()):
    out_dir = ENV.path("lab-" + os.path.basename(scenario).replace(".ini", ""))
    cmd = [ENV.sluice, "lab", scenario, "--json", "--out", out_dir] + list(extra)
    errf = open(out_dir + ".stderr", "wb")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL,
                         preexec_fn=_die_with_parent)
    errf.close()
    return p, out_dir


def finish_lab(p, out_dir, t0, timeout=RUN_LIMIT):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)          # let it tear down
        out, _ = p.communicate(timeout=15)
        raise AssertionError("sluice lab did not end within %.0f s" % timeout)
    with open(out_dir + ".stderr", "rb") as f:
        err = f.read().decode("utf-8", "replace")
    return Run(p.returncode, out.decode("utf-8", "replace"), err, p.pid, out_dir,
               time.monotonic() - t0)


def run_lab(scenario, extra=()):
    t0 = time.monotonic()
    p, out_dir = start_lab(scenario, extra)
    return finish_lab(p, out_dir, t0)


def leftovers(run):
    """What a run left behind: namespaces named for its pid, the lab's veth
    names in the root namespace, processes of the run."""
    left = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    prefix = "sluice-%d-" % run.pid
    left += ["namespace " + line.split()[0] for line in ns.splitlines()
             if line.startswith(prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        m = re.match(r"\d+: ([^:@]+)", line)
        if m and m.group(1) in LAB_LINKS:
            left.append("link " + m.group(1))
    mark = b"SLUICE_LAB=%d" % run.pid      # every child of the lab has it
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if mark in environ or run.out_dir in cmd:
            left.append("process %s: %s" % (pid, cmd.strip()))
    left += ["capture " + path for path in stray_captures(run)]
    return left


def stray_captures(run):
    """pcap files written during the run outside any lab results directory
    of this test, where a capture could have gone: the working directory,
    the source tree's top, the test's temporary directory and /tmp (other
    test runs' directories, sluice-it-*, are theirs)."""
    found = []
    since = time.time() - run.wall - 1.0
    for top in {os.getcwd(), ROOT, ENV.tmp, "/tmp"}:
        for dirpath, dirnames, files in os.walk(top):
            name = os.path.basename(dirpath)
            if (dirpath != top and (name.startswith("sluice-it-") or "-lab-" in name)) \
                    or dirpath.count(os.sep) - top.count(os.sep) > 2:
                dirnames[:] = []
                continue
            for f in files:
                path = os.path.join(dirpath, f)
                try:
                    if f.endswith(".pcap") and os.path.getmtime(path) >= since:
                        found.append(path)
                except OSError:
                    continue
    return found


def check_clean(run):
    # The lab removes all this before it exits: the wait only gives a
    # loaded machine time to reap what was killed.
    left = harness.wait_until(lambda: not leftovers(run), 15.0, 0.2)
    check(left, "left behind: " + "; ".join(leftovers(run)))


def summary_of(run, lb_kind="sluice"):
    check(run.rc == 0, run.describe())
    try:
        s = json.loads(run.out)
    except ValueError:
        raise AssertionError("--json did not print one JSON object: %r; %s"
                             % (run.out[:300], run.describe()))
    with open(os.path.join(run.out_dir, "summary.json")) as f:
        check(json.load(f) == s, "summary.json differs from what --json printed")
    missing = [k for k in SUMMARY_FIELDS if k not in s]
    check(not missing, "summary.json lacks " + ", ".join(missing))
    check(s["lb_kind"] == lb_kind, "lb_kind %r, expected %r" % (s["lb_kind"], lb_kind))
    check(s["kernel"] == os.uname().release, "kernel %r" % s["kernel"])
    raw = str((s.get("fetch") or {}).get("url", "")).startswith("tcp://")
    check(raw or s["unsent_bytes"] == s["body_bytes"] - s["client_bytes"],
          "unsent_bytes != body_bytes - client_bytes: %s" % run.out[:400])
    for line in run.err.splitlines():
        if line.startswith(s.get("scenario", "?") + ":") or line.startswith("  "):
            VERDICTS.append(line)
    return s
