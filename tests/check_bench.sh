#!/bin/sh
# bench/compare.sh is not run by the test suite (performance is never
# asserted), but it must not rot: it parses, --help works, shellcheck
# (when installed) has nothing to say, compare.py reports a known
# results.csv as expected and slowclients.c compiles cleanly.  Output is
# TAP (meson: protocol 'tap').
#
# usage: check_bench.sh SOURCE_ROOT
set -u
src=$1
n=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name, command...: its output follows the TAP line as "# "
	name=$1
	shift
	n=$((n + 1))
	if "$@" >"$tmp/diag" 2>&1; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		fail=$((fail + 1))
	fi
	sed 's/^/# /' "$tmp/diag"
}
skip() { # name, reason
	n=$((n + 1))
	echo "ok $n - $1 # SKIP $2"
}

help_works() {
	bash "$src/bench/compare.sh" --help >"$tmp/help" &&
		grep -q 'bench/compare.sh \[--quick\] \[--rounds N\] \[--out DIR\]' \
			"$tmp/help"
}

bad_argument_refused() {
	bash "$src/bench/compare.sh" --no-such-option
	[ $? -eq 2 ]
}

# Two rounds: the ratio is taken within each round, then the median.
report_as_expected() {
	cat >"$tmp/results.csv" <<CSV
round,test,target,metric,value
1,download,direct,mib,1024
1,download,direct,gbps,10
1,download,sluice,gbps,5
1,download,sluice,cpu_s_per_gib,1.5
2,download,direct,gbps,20
2,download,sluice,gbps,16
2,download,sluice,cpu_s_per_gib,0.5
1,wrk100,direct,rps,1000
1,wrk100,sluice,rps,500
1,wrk100,sluice,p50_ms,10
1,wrk100,sluice,p99_ms,30
1,wrk100,sluice,errors,0
1,slow500,sluice,rss_per_conn_kib,20
1,slow500,sluice,held_per_conn_kib,4
1,slow500,sluice,min_mb,1
1,slow500,sluice,median_mb,2
1,slow500,sluice,max_mb,3
1,slow500,sluice,errors,0
1,slow500,sluice,unserved,1
CSV
	PATH=/nonexistent:$PATH python3 "$src/bench/compare.py" report \
		--csv "$tmp/results.csv" --out "$tmp" \
		--targets direct,sluice,later --label "sluice=sluice (defaults)" \
		--na "later=n/a (not built yet)" >/dev/null 2>&1 || return 1
	cat "$tmp/table.md"
	grep -q '^| sluice (defaults) | 10.50 (0.65) | 1.00 | 500 (0.50) | 10.0 / 30.0 (3.0) | 0 | 20.0 (4.0) | 1.00 / 2.00 / 3.00 | 0 / 1 |$' \
		"$tmp/table.md" &&
		grep -q '^| later | n/a (not built yet) |' "$tmp/table.md"
}

check "compare.sh parses (bash -n)" bash -n "$src/bench/compare.sh"
check "compare.sh --help prints its usage" help_works
check "compare.sh refuses an unknown argument (exit 2)" bad_argument_refused
if command -v shellcheck >/dev/null; then
	check "shellcheck compare.sh" shellcheck "$src/bench/compare.sh"
else
	skip "shellcheck compare.sh" "shellcheck not installed"
fi
check "compare.py report: medians, per-round ratios, n/a rows" \
	report_as_expected
if command -v cc >/dev/null; then
	check "slowclients.c compiles with -Wall -Wextra -Werror" \
		cc -fsyntax-only -Wall -Wextra -Werror "$src/bench/slowclients.c"
else
	skip "slowclients.c compiles" "no cc"
fi
echo "1..$n"
[ "$fail" -eq 0 ]
