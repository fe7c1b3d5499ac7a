#!/bin/sh
# conf/sluice.ini and docs/config.md are generated from the parser's key
# table; this fails when either has drifted from it, and when the shipped
# config does not load.  Regenerate with:
#   build/sluice help config --ini > conf/sluice.ini
#   (and the table part of docs/config.md with: build/sluice help config)
set -u
sluice=$1
src=$2
fail=0
pass=0
check() { # name, command...
	name=$1
	shift
	if "$@"; then
		echo "ok - $name"
		pass=$((pass + 1))
	else
		echo "not ok - $name"
		fail=$((fail + 1))
	fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$sluice" help config --ini >"$tmp/ini"
"$sluice" help config >"$tmp/md"
check "conf/sluice.ini is what the key table generates" \
	cmp -s "$tmp/ini" "$src/conf/sluice.ini"
check "docs/config.md holds the key table's markdown" \
	grep -qxFf "$tmp/md" "$src/docs/config.md"
check "every key of the table is a row in docs/config.md" \
	sh -c "[ \$(grep -cxFf '$tmp/md' '$src/docs/config.md') -eq \$(wc -l <'$tmp/md') ]"
check "conf/sluice.ini is a working config" \
	"$sluice" check -c "$src/conf/sluice.ini"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
