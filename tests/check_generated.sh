#!/bin/sh
# conf/sluice.ini and docs/config.md are generated from the parser's key
# table; this fails when either has drifted from it, and when the shipped
# config does not load.  Output is TAP (meson: protocol 'tap').
# Regenerate with:
#   build/sluice help config --ini > conf/sluice.ini
#   (and the table part of docs/config.md with: build/sluice help config)
#
# usage: check_generated.sh SLUICE SOURCE_ROOT
set -u
sluice=$1
src=$2
n=0
fail=0
pass=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name, command...: its output ("# " lines) follows the TAP line
	name=$1
	shift
	n=$((n + 1))
	if "$@" >"$tmp/diag" 2>&1; then
		echo "ok $n - $name"
		pass=$((pass + 1))
	else
		echo "not ok $n - $name"
		fail=$((fail + 1))
	fi
	sed '/^#/!s/^/# /' "$tmp/diag"
}

# What the key table generates; an empty output is an error, not a match.
generated() { # out-file, args...
	out=$1
	shift
	if ! "$sluice" help config "$@" >"$out" || ! [ -s "$out" ]; then
		echo "# sluice help config $* failed or printed nothing"
		return 1
	fi
}

ini_matches() {
	generated "$tmp/ini" --ini || return 1
	cmp -s "$tmp/ini" "$src/conf/sluice.ini" && return 0
	diff -u "$tmp/ini" "$src/conf/sluice.ini" | head -40 | sed 's/^/# /'
	return 1
}

# The markdown table must be in docs/config.md exactly: its lines as one
# contiguous block, in order, and the whole table there (no table row
# right before or after the block).  On a mismatch the table that
# docs/config.md has (from the generated header row on) is shown as a diff.
md_matches() {
	generated "$tmp/md" || return 1
	doc=$src/docs/config.md
	if awk 'NR == FNR { want[++n] = $0; next }
		{ line[++m] = $0 }
		END {
			for (i = 1; i + n - 1 <= m; i++) {
				for (j = 1; j <= n && line[i + j - 1] == want[j]; j++)
					;
				if (j > n && (i == 1 || line[i - 1] !~ /^\|/) &&
				    (i + n > m || line[i + n] !~ /^\|/))
					exit 0
			}
			exit 1
		}' "$tmp/md" "$doc"; then
		return 0
	fi
	head -n 1 "$tmp/md" >"$tmp/header"
	awk 'NR == FNR { h = $0; next }
		$0 == h { on = 1 }
		on && !/^\|/ { exit }
		on' "$tmp/header" "$doc" >"$tmp/doc-table"
	echo "# docs/config.md's table differs from sluice help config (- generated, + docs):"
	diff -u "$tmp/md" "$tmp/doc-table" | tail -n +3 | head -60 | sed 's/^/# /'
	return 1
}

loads() {
	"$sluice" check -c "$src/conf/sluice.ini" >"$tmp/check" 2>&1
	rc=$?
	sed 's/^/# /' "$tmp/check"
	return $rc
}

check "conf/sluice.ini is what the key table generates (sluice help config --ini)" \
	ini_matches
check "docs/config.md holds the key table (sluice help config) exactly, in one block" \
	md_matches
check "conf/sluice.ini is a working config (sluice check)" loads
echo "1..$n"
echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
