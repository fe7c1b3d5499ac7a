#!/bin/sh
# A soak of the proxy: a bounded mix of slow, fast, aborting, zero-window,
# uploading, keep-alive and stalling clients against one proxy per policy
# (pause, spill, pace, pause with resume) on loopback for MINUTES (default
# 30), a SIGHUP every minute, samples every 10 s, and a verdict: memory,
# descriptors and spool back to idle, no unexplained outcome
# (bench/soak.py says exactly what is checked).  Not part of the test
# suite.  Needs a build (build/sluice, or SLUICE=path).
#
#   bench/soak.sh [MINUTES] [--out DIR] [--workers N] [--random N]
#
# Writes samples.csv, results.json, verdict.txt and soak.png (gnuplot) to
# DIR (default: a new /tmp/sluice-soak.* directory); exits 0 on "pass".
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
minutes=30
case "${1:-}" in
[0-9]*) minutes=$1; shift ;;
esac
exec python3 "$here/bench/soak.py" --sluice "${SLUICE:-$here/build/sluice}" \
	--minutes "$minutes" "$@"
