#!/bin/bash
# The main job until the lab exists (issue 5 replaces it): a fast origin on
# loopback, sluice in front of it with pause backpressure, and a client
# limited to 20 Mbit/s that downloads 64 MiB through it.  Prints the sha256
# check, how often the proxy paused the origin, and its peak memory.
# Everything it starts and writes is removed on exit, also on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sluice=${SLUICE:-$here/build/sluice}
size=${SIZE:-64M}
rate=${RATE:-2500k} # curl's --limit-rate is in bytes/s: 2500k ~ 20 Mbit/s

tmp=$(mktemp -d /tmp/sluice-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

wait_line() { # file pattern: wait up to 10 s for a line
	for _ in $(seq 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $1" >&2
	cat "$1" >&2
	return 1
}

python3 "$here/tests/origin.py" --listen 127.0.0.1:0 >"$tmp/origin.log" 2>&1 &
pids+=($!)
wait_line "$tmp/origin.log" "listening on"
oport=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$tmp/origin.log" | cut -d: -f2)

cat >"$tmp/sluice.ini" <<INI
[listen]
address = 127.0.0.1:0
[upstream]
server = 127.0.0.1:$oport
rcvbuf = 256k
[buffer]
policy = pause
high_watermark = 1M
low_watermark = 256k
INI
"$sluice" check -c "$tmp/sluice.ini"
"$sluice" proxy -c "$tmp/sluice.ini" 2>"$tmp/proxy.log" &
ppid_=$!
pids+=($ppid_)
wait_line "$tmp/proxy.log" "listening on"
pport=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$tmp/proxy.log" | cut -d: -f2)

echo "origin 127.0.0.1:$oport -> sluice 127.0.0.1:$pport -> curl at $rate/s, $size"
peak=0
curl -sS --limit-rate "$rate" -o "$tmp/body" "http://127.0.0.1:$pport/bytes/$size" &
cpid=$!
while kill -0 "$cpid" 2>/dev/null; do
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$ppid_/status")
	[ "$rss" -gt "$peak" ] && peak=$rss
	sleep 0.2
done
wait "$cpid"
got=$(sha256sum <"$tmp/body" | cut -d' ' -f1)
want=$(curl -sS "http://127.0.0.1:$oport/bytes/$size" | sha256sum | cut -d' ' -f1)
grep 'access:' "$tmp/proxy.log" | tail -n 1
echo "bytes received: $(stat -c %s "$tmp/body")"
echo "sha256 through sluice: $got"
echo "sha256 from origin:    $want"
echo "sluice peak VmRSS: ${peak} kB (high_watermark 1M)"
if [ "$got" != "$want" ]; then
	echo "demo: MISMATCH" >&2
	exit 1
fi
echo "demo: byte-exact"
