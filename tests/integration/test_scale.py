#!/usr/bin/env python3
"""A full-size question asked in a scaled run (issue 17 part 4): [lab]
scale = K divides the bytes transferred and keeps rates, buffers and
timers, and the verdict and summary.json's "scale" map the run back.

- incident.ini's question at 100 times its size (a 600 MiB body) runs with
  a 6 MiB body: measured truncated, like the question the model predicts;
  summary.json's "scale" holds the question's and the run's bodies, the
  question's prediction, and the measured run mapped back by the formulas
  of docs/model.md for a download truncated in its first zero window:
  unsent + (S - S/K), the client's end and the longest zero window as
  measured, the zero windows as counted (about 15 s; needs root);
- a scale whose run could not see the question's zero window (policy
  spill, a 64 MiB spool, 2.5 GB at 100 times smaller) is refused before
  anything runs, with the largest scale that works: by `sluice lab`,
  `sluice bench` (a `scale` axis) and `sluice plan --scale`.

Asserts bytes and states, never speed.

    python3 tests/integration/test_scale.py --sluice build/sluice
"""

import os
import shutil
import sys

sys.dont_write_bytecode = True      # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402
import labrun  # noqa: E402
from labrun import SCENARIOS, VERDICTS, check_clean, run_lab, summary_of  # noqa: E402

env = harness.Env(__doc__)
labrun.ENV = env

K = 100
QUESTION = 600 * 1048576            # incident.ini's 6 MiB, 100 times over


def scenario(name, replace):
    """A shipped scenario with lines replaced, in the test's directory."""
    with open(os.path.join(SCENARIOS, name)) as f:
        text = f.read()
    for old, new in replace:
        check(old in text, "%s no longer has '%s'" % (name, old))
        text = text.replace(old, new)
    path = env.path(name)
    with open(path, "w") as f:
        f.write(text)
    return path


def scaled_incident():
    path = scenario("incident.ini", [("body = 6M", "body = 600M\nscale = %d" % K)])
    run = run_lab(path)
    s = summary_of(run)
    sc = s.get("scale")
    check(sc is not None, "no \"scale\" in summary.json: " + run.describe())
    S, s_run = sc["question_body_bytes"], sc["run_body_bytes"]
    check(S == QUESTION and s_run == QUESTION // K and s["body_bytes"] == s_run,
          "bodies: question %s, run %s, summary %s" % (S, s_run, s["body_bytes"]))
    q, r, m, off = sc["question"], sc["run"], sc["mapped"], sc["offsets"]
    check(s["outcome"] == "truncated" and r["outcome"] == "truncated",
          "the run was %s: %s" % (s["outcome"], run.describe()))
    check(q["outcome"] == "truncated" and m["outcome"] == q["outcome"],
          "mapped %s, the question's prediction %s" % (m["outcome"], q["outcome"]))
    check(sc["model_agrees"] and s["predicted_outcome"] == "truncated",
          "the model's run: %s" % s["predicted_outcome"])
    # the run's measured figures, as the top level has them
    check(r["unsent_bytes"] == s["unsent_bytes"]
          and abs(r["client_finish_s"] - s["seconds"]) < 1e-3
          and abs(r["longest_zero_window_s"] - s["origin_longest_zero_window_s"]) < 0.051,
          "the run's figures %s against the summary's" % r)
    # truncated in the first zero window: the formulas of docs/model.md
    check(off["unsent_bytes"] == S - s_run and m["unsent_bytes"] == r["unsent_bytes"] + S - s_run,
          "unsent: mapped %s, run %s, S - S/K %s" % (m["unsent_bytes"], r["unsent_bytes"],
                                                    S - s_run))
    check(abs(off["client_finish_s"]) < 1e-3
          and abs(m["client_finish_s"] - r["client_finish_s"]) < 2e-3,
          "the client's end: mapped %s, run %s" % (m["client_finish_s"], r["client_finish_s"]))
    check(m["longest_zero_window_s"] == r["longest_zero_window_s"]
          and off["zero_windows"] == 0 and m["zero_windows"] == r["zero_windows"],
          "zero windows: mapped %s, run %s" % (m, r))
    # the question's prediction is the run's plus S - S/K unsent
    check(q["unsent_bytes"] == s["predicted_unsent_bytes"] + S - s_run,
          "the question's prediction %s, the run's %s" % (q["unsent_bytes"],
                                                          s["predicted_unsent_bytes"]))
    check("Measured, mapped back: truncated; %d bytes unsent" % m["unsent_bytes"] in run.err,
          "no mapped verdict: " + run.describe())
    env.note("scaled incident: run %d bytes, %d unsent, mapped %d unsent of %d; the model "
             "%d for the question; %.1f s" % (s_run, r["unsent_bytes"], m["unsent_bytes"], S,
                                              q["unsent_bytes"], run.wall))
    check_clean(run)


SPILL = [("body = 6M", "body = 2500000000\nscale = 100")]
REFUSED = "[lab] scale: 100 leaves a 25000000-byte body, which the path holds"


def refused():
    path = scenario("spill.ini", SPILL)
    out = env.path("refused-lab")
    p = env.run_sluice(["lab", path, "--out", out])
    check(p.returncode == 2 and REFUSED in p.stderr and "at most scale = 35" in p.stderr,
          "sluice lab: exit %s: %s" % (p.returncode, p.stderr.strip()))
    check(not os.path.exists(out), "sluice lab made %s before refusing" % out)

    # the base must load on its own: the axis gives the refused scale
    base = scenario("spill.ini", [("body = 6M", "body = 2500000000\nscale = 10")])
    sweep = env.path("sweep.ini")
    with open(sweep, "w") as f:
        f.write("[bench]\nname = scaled\nbase = %s\n[axes]\nscale = 10, 100\n" % base)
    out = env.path("refused-bench")
    p = env.run_sluice(["bench", sweep, "--out", out])
    check(p.returncode == 2 and "scale=100" in p.stderr and REFUSED in p.stderr,
          "sluice bench: exit %s: %s" % (p.returncode, p.stderr.strip()))
    check(not os.path.exists(os.path.join(out, "results.csv")),
          "sluice bench ran before refusing")

    p = env.run_sluice(["plan", "--size", "2500000000", "--client-rate", "2mbit",
                        "--policy", "spill", "--high", "2M", "--low", "0",
                        "--spill-limit", "64M", "--rcvbuf", "64k",
                        "--origin-give-up", "zwp-probes=4,interval=200ms", "--scale", "100"])
    check(p.returncode == 2 and "100 leaves a 25000000-byte body" in p.stderr,
          "sluice plan: exit %s: %s" % (p.returncode, p.stderr.strip()))
    p = env.run_sluice(["plan", "--size", "2500000000", "--client-rate", "2mbit",
                        "--policy", "spill", "--high", "2M", "--low", "0",
                        "--spill-limit", "64M", "--rcvbuf", "64k",
                        "--origin-give-up", "zwp-probes=4,interval=200ms", "--scale", "30",
                        "--json"])
    check(p.returncode == 0 and '"scale":{"factor":30,"run_body_bytes":83333333' in p.stdout,
          "sluice plan --scale 30: exit %s: %s %s" % (p.returncode, p.stdout, p.stderr))


env.case("a scale that hides the question's zero window is refused: lab, bench, plan",
         refused)
if os.geteuid() != 0 or shutil.which("ip") is None:
    env.skip("incident.ini at 100 times its size, mapped back", "the lab needs root and iproute2")
else:
    env.case("incident.ini at 100 times its size, mapped back", scaled_incident)
for line in VERDICTS:
    env.note("verdict: " + line)
env.finish()
