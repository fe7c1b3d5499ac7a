#!/bin/bash
# tests/fuzz/run.sh BUILDDIR SECONDS: runs every fuzz harness of BUILDDIR
# (tests/fuzz/fuzz_* and tests/fuzz/conn/fuzz_*, built with -Dfuzz=enabled)
# for SECONDS each, one after the other, starting from its seed corpus
# tests/fuzz/corpus/<name without fuzz_>/ (tests/fuzz/conn/corpus/ for
# fuzz_conn).  The corpus is copied to a temporary directory first: what a
# run adds stays out of the repository (a crash found is minimized and
# added by hand, docs/testing.md).
#
# Prints one line per harness, "fuzz: NAME: ok|CRASH, N execs, cov C ft F",
# from libFuzzer's -print_final_stats=1, and exits 1 when any harness
# crashed, leaked, broke an invariant or could not run (its log and the
# crash input are kept and named).  -timeout: an input that takes 10 s is a
# hang, reported as a crash; -rss_limit_mb keeps a runaway input from
# taking the machine.
set -u
if [ $# -ne 2 ] || ! [ "$2" -gt 0 ] 2>/dev/null; then
	echo "usage: $0 BUILDDIR SECONDS" >&2
	exit 2
fi
build=$1
secs=$2
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/sluice-fuzz.XXXXXX)
keep=0
trap '[ "$keep" -eq 1 ] || rm -rf "$work"' EXIT

harnesses=$(find "$build/tests/fuzz" -maxdepth 2 -type f -name 'fuzz_*' \
	-perm -u+x | sort)
if [ -z "$harnesses" ]; then
	echo "fuzz: no harness in $build/tests/fuzz (meson setup -Dfuzz=enabled)" >&2
	exit 1
fi

status=0
for exe in $harnesses; do
	name=$(basename "$exe")
	target=${name#fuzz_}
	corpus=$work/corpus-$target
	mkdir -p "$corpus" "$work/crash-$target"
	seeds=$src/corpus/$target
	[ -d "$seeds" ] || seeds=$src/$target/corpus # tests/fuzz/conn's
	if [ -d "$seeds" ]; then
		cp -r "$seeds/." "$corpus/"
	fi
	log=$work/$name.log
	# -detect_leaks: a leak is a finding too (LeakSanitizer, at exit and
	# every few thousand inputs).
	"$exe" "$corpus" -max_total_time="$secs" -print_final_stats=1 \
		-timeout=10 -rss_limit_mb=2048 -detect_leaks=1 \
		-artifact_prefix="$work/crash-$target/" </dev/null >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	if [ $rc -eq 0 ]; then
		verdict=ok
	else
		verdict="CRASH (exit $rc)"
		status=1
		keep=1
	fi
	echo "fuzz: $name: $verdict, ${execs:-0} execs, cov ${cov:-?} ft ${ft:-?}"
	if [ $rc -ne 0 ]; then
		grep -E 'invariant broken|ERROR:|SUMMARY:|Test unit written' "$log" |
			sed 's/^/fuzz:   /' | head -20
		echo "fuzz:   log: $log"
	fi
done
if [ $status -ne 0 ]; then
	echo "fuzz: crash inputs and logs kept in $work" >&2
fi
exit $status
