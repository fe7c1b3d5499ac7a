#!/bin/sh
# What a user who cloned sluice reads must stand on its own (issue 18): no
# file under daemon/, docs/, man/, conf/, bench/ or README.md names "the
# seed article" (the article is cited in docs/references.md) or DESIGN.md
# (a file users do not have; the kernel facts are in docs/kernel.md), nor
# DESIGN or "the design notes" for the same file.  "seed" and
# "DESIGN.md" are checked case-insensitively, as the issue's grep does.  The
# files are git's tracked ones (build outputs and lab results are not
# shipped); outside a git checkout, every file under those paths.
# Output is TAP (meson: protocol 'tap').
#
# usage: check_words.sh SOURCE_ROOT
set -u
src=$1
paths="daemon docs man conf bench README.md"
n=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$src" || exit 1
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# shellcheck disable=SC2086 # the paths are words
	git ls-files -z -- $paths >"$tmp/files"
	how="git ls-files"
else
	# shellcheck disable=SC2086
	find $paths -type f -print0 >"$tmp/files" 2>/dev/null
	how="find"
fi
nfiles=$(tr -cd '\0' <"$tmp/files" | wc -c)

n=$((n + 1))
if [ "$nfiles" -gt 0 ]; then
	echo "ok $n - $nfiles files to check ($how)"
else
	echo "not ok $n - no files found under $paths ($how)"
	fail=$((fail + 1))
fi

# word, then grep's options for it: the issue's two words, and the other
# names the team used for the same file ("DESIGN", "the design notes").
check() {
	word=$1
	shift
	n=$((n + 1))
	# -I: binary files (the docs' plots) are not text to read.
	xargs -0 -r grep -n -I -F "$@" -e "$word" -- <"$tmp/files" \
	    >"$tmp/hits" 2>/dev/null
	if [ -s "$tmp/hits" ]; then
		echo "not ok $n - \"$word\" appears in $(cut -d: -f1 "$tmp/hits" |
		    sort -u | wc -l) shipped files"
		sed 's/^/# /' "$tmp/hits"
		fail=$((fail + 1))
	else
		echo "ok $n - no shipped file says \"$word\""
	fi
}
check seed -i
check DESIGN.md -i
check DESIGN -w
check "design notes" -i

echo "1..$n"
[ "$fail" -eq 0 ]
