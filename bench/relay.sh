#!/bin/bash
# Relay throughput and memory on loopback: the same 1 GiB file from one
# nginx origin, fetched through sluice, nginx (proxy_buffering on and off)
# and HAProxy, in one run, so the figures are ratios on the same machine.
#
#   bench/relay.sh [SIZE_MiB] [REPEATS]      (defaults: 1024, 3)
#
# Prints, per relay, the median of REPEATS downloads in MB/s, its ratio to
# sluice, and the relay's peak VmRSS.  Installs nginx-light and haproxy
# from Debian if missing.  Everything runs on 127.0.0.1 and is cleaned up
# on exit.  Not part of the test suite: performance is never asserted.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sluice=${SLUICE:-$here/build/sluice}
size_mib=${1:-1024}
repeats=${2:-3}

for tool in nginx haproxy curl; do
	command -v "$tool" >/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			nginx-light haproxy curl >/dev/null
done

tmp=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$tmp" # nginx workers (www-data) read the file
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$tmp/origin.pid" ] && kill "$(cat "$tmp/origin.pid")" 2>/dev/null
	[ -f "$tmp/ngx.pid" ] && kill "$(cat "$tmp/ngx.pid")" 2>/dev/null
	[ -f "$tmp/ngxnb.pid" ] && kill "$(cat "$tmp/ngxnb.pid")" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$tmp/www"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$tmp/www/file"

nginx_conf() { # name port body
	cat >"$tmp/$1.conf" <<NGX
daemon on;
worker_processes 1;
pid $tmp/$1.pid;
error_log $tmp/$1.err warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $tmp/$1.cbt;
  proxy_temp_path $tmp/$1.pt;
  fastcgi_temp_path $tmp/$1.ft; uwsgi_temp_path $tmp/$1.ut; scgi_temp_path $tmp/$1.st;
  server { listen 127.0.0.1:$2; $3 }
}
NGX
	nginx -c "$tmp/$1.conf"
}

oport=$(free_port)
nginx_conf origin "$oport" "root $tmp/www; sendfile on;"

sport=$(free_port)
cat >"$tmp/sluice.ini" <<INI
[listen]
address = 127.0.0.1:$sport
[upstream]
server = 127.0.0.1:$oport
[log]
level = warn
INI
"$sluice" proxy -c "$tmp/sluice.ini" 2>"$tmp/sluice.log" &
pids+=($!)
sluice_pid=$!

nport=$(free_port)
nginx_conf ngx "$nport" "location / { proxy_pass http://127.0.0.1:$oport; proxy_buffering on; }"
nbport=$(free_port)
nginx_conf ngxnb "$nbport" "location / { proxy_pass http://127.0.0.1:$oport; proxy_buffering off; }"

hport=$(free_port)
cat >"$tmp/haproxy.cfg" <<HAP
global
  maxconn 64
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$hport
  default_backend be
backend be
  server o 127.0.0.1:$oport
HAP
haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
pids+=($!)
haproxy_pid=$!
sleep 1

# The relay's worker pid, for VmRSS (nginx: the worker, not the master).
worker_of() { pgrep -P "$(cat "$1")" | head -n 1; }

measure() { # name port pid
	local speeds=() peak=0 s rss
	for _ in $(seq "$repeats"); do
		curl -sS --fail -o /dev/null -w '%{speed_download}\n' \
			"http://127.0.0.1:$2/file" >"$tmp/speed" &
		local c=$!
		while kill -0 "$c" 2>/dev/null; do
			rss=$(awk '/^VmRSS/ {print $2}' "/proc/$3/status" 2>/dev/null || echo 0)
			[ "${rss:-0}" -gt "$peak" ] && peak=$rss
			sleep 0.05
		done
		wait "$c"
		s=$(cat "$tmp/speed")
		speeds+=("$s")
	done
	local med
	med=$(printf '%s\n' "${speeds[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "$1 $med $peak"
}

{
	measure sluice "$sport" "$sluice_pid"
	measure nginx-buffering "$nport" "$(worker_of "$tmp/ngx.pid")"
	measure nginx-nobuffering "$nbport" "$(worker_of "$tmp/ngxnb.pid")"
	measure haproxy "$hport" "$haproxy_pid"
	measure direct "$oport" "$(worker_of "$tmp/origin.pid")"
} >"$tmp/results"
[ -n "${BENCH_DEBUG:-}" ] && cat "$tmp/results"

echo "relay of ${size_mib} MiB on loopback, median of $repeats runs"
awk 'NR == 1 {base = $2}
     BEGIN {printf "%-20s %12s %10s %14s\n", "relay", "MB/s", "vs sluice", "peak VmRSS kB"}
     {printf "%-20s %12.1f %10.2f %14d\n", $1, $2 / 1e6, $2 / base, $3}' "$tmp/results"
