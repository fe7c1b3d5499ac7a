#!/usr/bin/env python3
"""The article's Figure 2 on a real kernel (issue 16 part 2):
conf/scenarios/figure2.ini run end to end, with its intervals shrunk by
[lab] time_scale = 0.1 (the shipped 0.2 halved: about 11 s of exchange).

- the scenario runs: the client reads the 10,000 bytes of the origin's
  stream (truncate_at) and the stream ends;
- the capture of the lb-client link shows the client's window at 0 and
  the origin's zero-window probes, each answered with window 0 or not at
  all (Linux rate-limits answers to out-of-window segments);
- the client's SYN honours --window-clamp 4000 (its first window is at
  most 4000), set before connect;
- summary.json's "walk" holds the textbook's figures (rwnd 0 at T35, the
  probe at T40 answered 800, the one at T45 0, all read at T96) and the
  kernel's side, and the verdict prints both with where Linux differs;
- figure2.png is drawn when gnuplot is there;
- nothing is left behind (namespaces, processes, captures).

Asserts bytes and states, never speed.  Needs root (ip netns, tc) and
tcpdump, or the script is a TAP skip.

    python3 tests/integration/test_figure2.py --sluice build/sluice
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


def scaled_scenario(scale):
    """figure2.ini with another time_scale, in the test's directory."""
    with open(os.path.join(SCENARIOS, "figure2.ini")) as f:
        text = f.read()
    check("time_scale = 0.2" in text, "figure2.ini no longer sets time_scale = 0.2")
    path = env.path("figure2.ini")
    with open(path, "w") as f:
        f.write(text.replace("time_scale = 0.2", "time_scale = %g" % scale))
    return path


def figure2():
    run = run_lab(scaled_scenario(0.1))
    s = summary_of(run, "none")
    check(s["client_bytes"] == 10000 and s["fetch_outcome"] == "complete",
          "the client got %s bytes (%s): %s" % (s["client_bytes"], s["fetch_outcome"],
                                                run.describe()))
    link = (s.get("capture") or {}).get("lb-client")
    check(link is not None, "no lb-client capture: " + run.describe())
    wins = [w[2] for w in link["windows"]]
    check(wins and 0 < wins[0] <= 4000,
          "the first window is %s: the clamp of 4000 not in the SYN" % wins[:3])
    check(0 in wins and link["first_zero_ack"] is not None,
          "the window never reached 0: %s" % wins)
    probes = link["probes"]             # [t, len, interval, answer]
    check(len(probes) >= 1, "no zero-window probe: %s" % link)
    check(all(p[3] in (0, None) for p in probes),
          "a probe answered with an open window: %s" % probes)

    w = s.get("walk")
    check(w is not None and w["time_scale"] == 0.1, "no walk in summary.json: %s" % w)
    t = w["textbook"]
    check(t["first_zero_T"] == 35 and t["probes"][:2] == [[40, 800], [45, 0]]
          and t["all_read_T"] == 96, "the textbook's walk: %s" % t)
    k = w["kernel"]
    check(k["measured"] and k["first_zero_T"] is not None and k["syn_window"] == wins[0],
          "the kernel's side: %s" % k)
    check("The article's Figure 2, step by step" in run.err
          and "Where Linux differs" in run.err, run.describe())
    if shutil.which("gnuplot"):
        check(w["plot"] and os.path.getsize(w["plot"]) > 1000, "no figure2.png: %s" % w)
    env.note("figure2: zero window at T%s (textbook T35), first window %d, probes %s, "
             "reopened at T%s to %s"
             % (k["first_zero_T"], wins[0], [p[3] for p in probes], k["reopen_T"],
                k["reopen_window"]))
    check_clean(run)


if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tcpdump") is None:
    env.skip_all("the lab needs root, iproute2 (ip, tc) and tcpdump")

env.case("figure2 at time_scale 0.1: zero window, probes, the walk beside", figure2)
for line in VERDICTS:
    env.note("verdict: " + line)
env.finish()
