#!/usr/bin/env python3
"""Counts the cases of a `meson test` run from its meson-logs/testlog.json
(one JSON object per test), for .ci/run's closing line.  meson 1.0 records
no subtests there, only each test's stdout and stderr, so:

- a TAP test (the integration scripts, generated-config-docs): one case per
  `ok` / `not ok` line of its stdout; `ok ... # SKIP` is a skip, and so is
  `not ok ... # TODO`; a plan `1..0 # SKIP reason` with no test line is one
  skipped case;
- a cmocka test (tests/unit): its summary lines, `[  PASSED  ] N test(s)`,
  `[  FAILED  ] N test(s)`, `[  SKIPPED ] N test(s)`;
- anything else: one case, by meson's result.

A test that meson counts as failed (FAIL, ERROR, TIMEOUT, UNEXPECTEDPASS,
INTERRUPT) with no failed case in its output (a crash, a timeout, a leak
reported at exit, a plan that does not match) adds one failed case, so a
failure is never hidden.

    python3 tests/integration/tally.py build/meson-logs/testlog.json [-v]
        [--failures FILE]

prints "PASSED FAILED SKIPPED" on one line (-v: each test's figures on
stderr first).  --failures appends what failed to FILE: each `not ok`
line with the diagnostics after it, or the end of a crashed test's
output, so that the tail of a long CI log names the culprit.  A missing
or unreadable log counts as one failure.
"""

import json
import re
import sys

TAP_TEST = re.compile(r"((?:not )?ok)\b\s*(?:[0-9]+\s*)?([^#]*)(?:#\s*(\S+)\b(.*))?$")
TAP_PLAN = re.compile(r"1\.\.([0-9]+)(?:\s*#\s*(\S+)\b(.*))?$")
CMOCKA = re.compile(r"^\[  (PASSED|FAILED|SKIPPED) ?\s*\] (\d+) test\(s\)", re.M)
BAD = ("FAIL", "ERROR", "TIMEOUT", "UNEXPECTEDPASS", "INTERRUPT")


def tap_counts(stdout):
    """(passed, failed, skipped) of TAP output, or None if it is not TAP."""
    p = f = s = 0
    seen = False
    skip_all = False
    for line in stdout.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        m = TAP_TEST.match(line)
        if m:
            seen = True
            ok = m.group(1) == "ok"
            directive = (m.group(3) or "").upper()
            if directive.startswith("SKIP") and ok:
                s += 1
            elif directive == "TODO":
                if ok:
                    p += 1
                else:
                    s += 1
            elif ok:
                p += 1
            else:
                f += 1
            continue
        m = TAP_PLAN.match(line)
        if m:
            seen = True
            if int(m.group(1)) == 0:
                skip_all = True
    if not seen:
        return None
    if skip_all and p + f + s == 0:
        s = 1
    return p, f, s


def cmocka_counts(text):
    found = dict((k, int(n)) for k, n in CMOCKA.findall(text))
    if not found:
        return None
    return found.get("PASSED", 0), found.get("FAILED", 0), found.get("SKIPPED", 0)


def test_counts(t):
    """(passed, failed, skipped, how) of one testlog.json entry."""
    result = t.get("result", "ERROR")
    out = t.get("stdout") or ""
    err = t.get("stderr") or ""
    counts, how = tap_counts(out), "tap"
    if counts is None:
        counts, how = cmocka_counts(out + "\n" + err), "cmocka"
    if counts is None:
        how = "result"
        if result in ("OK", "EXPECTEDFAIL"):
            counts = (1, 0, 0)
        elif result == "SKIP":
            counts = (0, 0, 1)
        else:
            counts = (0, 1, 0)
    p, f, s = counts
    if result in BAD and f == 0:
        f = 1
        how += " + " + result
    return p, f, s, how


def failure_text(t, f):
    """What failed in one testlog.json entry with f failed cases."""
    out = (t.get("stdout") or "").splitlines()
    lines = []
    for i, line in enumerate(out):
        if line.startswith("not ok") and "# TODO" not in line:
            lines.append(line)
            for diag in out[i + 1:i + 9]:
                if not diag.startswith("#"):
                    break
                lines.append(diag)
    if not lines and f:
        tail = ((t.get("stdout") or "") + (t.get("stderr") or "")).splitlines()[-12:]
        lines = ["%s (no failed case line; the end of its output:)" % t.get("result")] + tail
    return "\n".join("  " + x for x in lines)


def main(argv):
    verbose = "-v" in argv
    failures = None
    if "--failures" in argv:
        i = argv.index("--failures")
        if i + 1 >= len(argv):
            sys.stderr.write("usage: tally.py TESTLOG.json [-v] [--failures FILE]\n")
            return 2
        failures = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    paths = [a for a in argv if a != "-v"]
    if len(paths) != 1:
        sys.stderr.write("usage: tally.py TESTLOG.json [-v] [--failures FILE]\n")
        return 2
    total = [0, 0, 0]
    try:
        with open(paths[0]) as f:
            tests = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        sys.stderr.write("tally: %s: %s (counted as one failure)\n" % (paths[0], e))
        print("0 1 0")
        return 0
    for t in tests:
        p, f, s, how = test_counts(t)
        total[0] += p
        total[1] += f
        total[2] += s
        if verbose:
            sys.stderr.write("%-50s %-7s %4d passed %3d failed %3d skipped  (%s)\n"
                             % (t.get("name"), t.get("result"), p, f, s, how))
        if failures is not None and f:
            with open(failures, "a") as out:
                out.write("FAILED %s (%s, %s):\n%s\n" % (t.get("name"), paths[0],
                                                        t.get("result"), failure_text(t, f)))
    print("%d %d %d" % tuple(total))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
