#!/bin/bash
# One bench, every peer, one run: the same files from one nginx origin
# (sendfile, page-cached), fetched directly and through sluice, nginx
# (proxy_buffering on and off), HAProxy (with and without splice) and h2o,
# one worker each, all on 127.0.0.1.  Targets are interleaved round by
# round (each round runs every target once per test, starting one target
# later than the round before), so that drift on the machine hits all of
# them alike, and the table holds medians across rounds.
#
#   bench/compare.sh [--quick] [--rounds N] [--out DIR]
#
# Tests, per round and target:
#   download  one 1 GiB file with curl: Gbit/s, ratio to direct (in the
#             same round), the proxy's CPU-seconds (utime+stime of all
#             its processes, from /proc) per GiB
#   wrk       wrk -t2 -c100 and -c1000 for 10 s on a 1 MiB file: req/s,
#             ratio to direct, p50, p99, errors (socket errors + non-2xx)
#   slow      500 and 5,000 clients that each read 16 KiB every 100 ms of
#             an 8 MiB body for 15 s (bench/slowclients.c): the proxy's
#             peak VmRSS over its idle VmRSS per client, the bytes sluice
#             holds per client (its /metrics), and each client's MB
#             (min/median/max: fairness).  For 5,000 clients sluice runs
#             with memory_limit = 64M, so that the limit is reached.
#
# Writes DIR/results.csv (round,test,target,metric,value), DIR/table.md
# (the medians, also printed), DIR/machine.txt and gnuplot plots
# DIR/throughput.png, DIR/wrk.png, DIR/rss.png.  --quick: small sizes, one
# round, a few seconds per test (a smoke run of the script).  SLUICE=path
# picks the binary (default: build/sluice of this checkout; build it with
# --buildtype=release).  Installs nginx-light, haproxy, h2o, wrk, curl,
# gnuplot-nox and gcc from Debian if missing (as root; the packages' own
# system services are not touched).  Every process it starts is killed by
# its PID on exit, Ctrl-C or failure, and its temporary directory removed.
# Not part of the test suite: performance is never asserted.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sluice=${SLUICE:-$here/build/sluice}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

quick=0
rounds=3
rounds_given=0
out=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--rounds)
		rounds=${2:-}
		rounds_given=1
		shift
		;;
	--out)
		out=${2:-}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "compare.sh: unknown argument $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done
case "$rounds" in
[1-9] | [1-9][0-9]) ;;
*)
	echo "compare.sh: --rounds takes 1 to 99" >&2
	exit 2
	;;
esac

if [ "$quick" = 1 ]; then
	[ "$rounds_given" = 1 ] || rounds=1
	big_mib=64 wrk_secs=2 slow_secs=3 slow_mib=2 slow_counts="100 1000"
else
	big_mib=1024 wrk_secs=10 slow_secs=15 slow_mib=8 slow_counts="500 5000"
fi
wrk_conns="100 1000"
slow_limited=${slow_counts##* } # the count at which sluice gets 64M
[ -n "$out" ] || out=$here/bench-results/compare-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ ! -x "$sluice" ]; then
	echo "compare.sh: no sluice binary at $sluice (meson setup build" \
		"--buildtype=release && ninja -C build, or SLUICE=path)" >&2
	exit 2
fi

# ---- what it needs ------------------------------------------------------
need=()
for pair in nginx:nginx-light haproxy:haproxy h2o:h2o wrk:wrk curl:curl \
	gnuplot:gnuplot-nox cc:gcc; do
	command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "compare.sh: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null &&
			apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

# Descriptors: 5,000 slow clients need 10,000 in a proxy.
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then
	nofile=65536
fi
ulimit -n "$nofile"

# ---- processes and cleanup ----------------------------------------------
tmp=$(mktemp -d /tmp/sluice-compare.XXXXXX)
chmod 755 "$tmp" # nginx's workers run as www-data and read the files
pids=()
# A PID is ours while it runs as a child of this shell: a daemon that died
# early does not get a signal meant for it after its PID was reused.
# (A zombie is not running: its exit is only not yet reaped.)
ours() {
	local ppid stat
	read -r ppid stat <<<"$(ps -o ppid=,stat= -p "$1" 2>/dev/null)"
	[ "$ppid" = "$$" ] && [ "${stat#Z}" = "$stat" ]
}
cleanup() {
	local p left
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do ours "$p" && kill "$p" 2>/dev/null; done
	for _ in $(seq 50); do # up to 5 s for them to exit, then KILL
		left=0
		for p in "${pids[@]}"; do ours "$p" && left=1; done
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do ours "$p" && kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	say "compare.sh: $*"
	exit 1
}
py() { python3 "$here/bench/compare.py" "$@"; }

# Run a long command in the background and wait for it: Ctrl-C then ends
# the wait and runs the trap at once (a foreground wrk would catch the
# SIGINT itself, and bash would go on as if the child had handled it).
waited() {
	local p rc=0
	"$@" &
	p=$!
	pids+=("$p")
	wait "$p" || rc=$?
	pids=("${pids[@]:0:${#pids[@]}-1}")
	return "$rc"
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Bounded wait until PORT serves /1m (200) or the process has died.
wait_ready() { # name port pid
	for _ in $(seq 100); do
		kill -0 "$3" 2>/dev/null || die "$1 exited at start (see $out/$1.log)"
		if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$2/1m" || true)" = 200 ]; then
			return 0
		fi
		sleep 0.1
	done
	die "$1 did not answer on 127.0.0.1:$2 in 10 s (see $out/$1.log)"
}

# ---- the files ------------------------------------------------------------
say "writing the files ($big_mib MiB, $slow_mib MiB, 1 MiB) to $tmp/www"
mkdir -p "$tmp/www"
head -c "$((big_mib << 20))" /dev/urandom >"$tmp/www/big"
head -c "$((slow_mib << 20))" /dev/urandom >"$tmp/www/slow"
head -c "$((1 << 20))" /dev/urandom >"$tmp/www/1m"
chmod 644 "$tmp/www/"*
cc -O2 -o "$tmp/slowclients" "$here/bench/slowclients.c"

# ---- the targets ----------------------------------------------------------
# name -> port, kind, root pid (its process tree is the proxy), label
declare -A port kind pid label metrics
targets=()
declare -A na

# Start a target from the config its *_start wrote (in the foreground, so
# that its PID is the one this script kills).
launch() { # name
	local c=$tmp/$1
	case ${kind[$1]} in
	nginx) nginx -c "$c/nginx.conf" 2>>"$out/$1.log" & ;;
	sluice) "$sluice" proxy -c "$c/sluice.ini" 2>>"$out/$1.log" & ;;
	haproxy) haproxy -f "$c/haproxy.cfg" -db >>"$out/$1.log" 2>&1 & ;;
	h2o) h2o -c "$c/h2o.conf" >>"$out/$1.log" 2>&1 & ;;
	esac
	pids+=($!)
	pid[$1]=$!
}

# A fresh process for each slow-client test, so that its idle VmRSS is
# not what an earlier test left in its allocator.
restart() { # name
	local old=${pid[$1]} p keep=()
	kill "$old" 2>/dev/null || true
	for _ in $(seq 100); do
		ours "$old" || break
		sleep 0.1
	done
	ours "$old" && kill -9 "$old" 2>/dev/null
	wait "$old" 2>/dev/null || true
	for p in "${pids[@]}"; do [ "$p" = "$old" ] || keep+=("$p"); done
	pids=("${keep[@]}")
	launch "$1"
	wait_ready "$1" "${port[$1]}" "${pid[$1]}"
}

nginx_start() { # name body...
	local name=$1 p
	: >"$out/$name.log"
	shift
	p=$(free_port)
	mkdir -p "$tmp/$name"
	cat >"$tmp/$name/nginx.conf" <<NGX
daemon off;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $tmp/$name/nginx.pid;
error_log $out/$name.log warn;
events { worker_connections $((nofile - 1000)); }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $tmp/$name/cbt;
  proxy_temp_path $tmp/$name/pt;
  fastcgi_temp_path $tmp/$name/ft; uwsgi_temp_path $tmp/$name/ut; scgi_temp_path $tmp/$name/st;
  server { listen 127.0.0.1:$p backlog=4096; $* }
}
NGX
	port[$name]=$p
	kind[$name]=nginx
	launch "$name"
}

sluice_start() { # name extra-ini-lines (with their [section])
	local name=$1 p a
	: >"$out/$name.log"
	p=$(free_port)
	a=$(free_port)
	mkdir -p "$tmp/$name"
	cat >"$tmp/$name/sluice.ini" <<INI
[listen]
address = 127.0.0.1:$p
[upstream]
server = 127.0.0.1:${port[direct]}
[log]
level = warn
access = /dev/null
[admin]
address = 127.0.0.1:$a
$2
INI
	port[$name]=$p
	kind[$name]=sluice
	launch "$name"
	metrics[$name]=http://127.0.0.1:$a/metrics
}

haproxy_start() { # name extra-defaults-lines
	local name=$1 p
	: >"$out/$name.log"
	p=$(free_port)
	mkdir -p "$tmp/$name"
	cat >"$tmp/$name/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn $(((nofile - 1000) / 3))
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  maxconn $(((nofile - 1000) / 3))
$2
frontend fe
  bind 127.0.0.1:$p
  default_backend be
backend be
  server o 127.0.0.1:${port[direct]}
HAP
	port[$name]=$p
	kind[$name]=haproxy
	launch "$name"
}

h2o_start() { # name
	local name=$1 p
	: >"$out/$name.log"
	p=$(free_port)
	mkdir -p "$tmp/$name"
	cat >"$tmp/$name/h2o.conf" <<H2O
user: root
num-threads: 1
max-connections: $(((nofile - 1000) / 2))
pid-file: $tmp/$name/h2o.pid
error-log: $out/$name.log
temp-buffer-path: $tmp/$name
listen:
  host: 127.0.0.1
  port: $p
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:${port[direct]}/
H2O
	port[$name]=$p
	kind[$name]=h2o
	launch "$name"
}

# Keys of the sluice under test: a variant runs only when its key exists.
sluice_key() { # key -> its section, or nothing
	"$sluice" help config | awk -F'|' -v k="\`$1\`" \
		'$3 ~ k { gsub(/[][ ]/, "", $2); print $2; exit }'
}

say "starting the origin and the proxies"
nginx_start direct "root $tmp/www; sendfile on;"
label[direct]="direct (nginx origin)"
targets+=(direct)
wait_ready direct "${port[direct]}" "${pid[direct]}"

sluice_start sluice ""
label[sluice]="sluice (defaults)"
targets+=(sluice)
# For the largest slow test: the same sluice with a memory_limit it
# reaches (measured under the name sluice).
sluice_start sluice-limited "[buffer]
memory_limit = 64M"
splice_sec=$(sluice_key splice)
workers_sec=$(sluice_key workers)
label[sluice-splice-off]="sluice, splice off"
targets+=(sluice-splice-off)
if [ -n "$splice_sec" ]; then
	sluice_start sluice-splice-off "[$splice_sec]
splice = off"
else
	na[sluice-splice-off]="n/a (not built yet)"
fi
label[sluice-workers2]="sluice, workers 2"
targets+=(sluice-workers2)
if [ -n "$workers_sec" ]; then
	sluice_start sluice-workers2 "[$workers_sec]
workers = 2"
else
	na[sluice-workers2]="n/a (not built yet)"
fi

proxy_to="proxy_pass http://127.0.0.1:${port[direct]}"
nginx_start nginx-buf "location / { $proxy_to; proxy_buffering on; }"
label[nginx-buf]="nginx, proxy_buffering on"
nginx_start nginx-nobuf "location / { $proxy_to; proxy_buffering off; }"
label[nginx-nobuf]="nginx, proxy_buffering off"
haproxy_start haproxy ""
label[haproxy]="HAProxy"
haproxy_start haproxy-splice "  option splice-request
  option splice-response"
label[haproxy-splice]="HAProxy, splice-request/response"
h2o_start h2o
label[h2o]="h2o, proxy.reverse.url"
targets+=(nginx-buf nginx-nobuf haproxy haproxy-splice h2o)

live=()
for t in "${targets[@]}" sluice-limited; do
	[ -n "${na[$t]:-}" ] && continue
	[ "$t" = direct ] || wait_ready "$t" "${port[$t]}" "${pid[$t]}"
	[ "$t" = sluice-limited ] || live+=("$t")
done

# ---- the record -----------------------------------------------------------
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "cores: $(nproc); cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "kernel: $(uname -r); RLIMIT_NOFILE: $nofile"
	echo "sluice: $sluice ($(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?'))"
	echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
	echo "haproxy: $(haproxy -v | awk 'NR == 1 {print $3}')"
	echo "h2o: $(h2o --version | awk 'NR == 1 {print $3}')"
	echo "wrk: $(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
	echo "curl: $(curl --version | awk 'NR == 1 {print $2}')"
	echo "rounds: $rounds; download: $big_mib MiB; wrk: -t2 -c{${wrk_conns// /,}}" \
		"-d${wrk_secs}s on 1 MiB; slow: {${slow_counts// /,}} clients," \
		"16 KiB per 100 ms of $slow_mib MiB for ${slow_secs}s" \
		"(sluice with memory_limit 64M at $slow_limited)"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2
csv=$out/results.csv
echo "round,test,target,metric,value" >"$csv"
record() { # round test target metric value
	echo "$1,$2,$3,$4,$5" >>"$csv"
}

# ---- the tests ------------------------------------------------------------
test_download() { # round target
	local r=$1 t=$2 c0 c1 code size speed
	c0=$(py cpu "${pid[$t]}")
	echo "0 0 0" >"$tmp/download.out"
	waited curl -sS --max-time 300 -o /dev/null \
		-w '%{http_code} %{size_download} %{speed_download}' \
		"http://127.0.0.1:${port[$t]}/big" >"$tmp/download.out" || true
	c1=$(py cpu "${pid[$t]}")
	read -r code size speed <"$tmp/download.out" || true
	if [ "$code" != 200 ] || [ "$size" != "$((big_mib << 20))" ]; then
		say "download via $t: status $code, $size bytes"
		record "$r" download "$t" errors 1
		return
	fi
	record "$r" download "$t" mib "$big_mib"
	record "$r" download "$t" gbps "$(awk -v s="$speed" 'BEGIN {printf "%.3f", s * 8 / 1e9}')"
	record "$r" download "$t" cpu_s_per_gib \
		"$(awk -v a="$c0" -v b="$c1" -v m="$big_mib" 'BEGIN {printf "%.3f", (b - a) * 1024 / m}')"
	say "download via $t: $(awk -v s="$speed" 'BEGIN {printf "%.2f", s * 8 / 1e9}') Gbit/s"
}

test_wrk() { # round target conns
	local r=$1 t=$2 n=$3 f rps p50 p99 errors reqs m v
	f=$tmp/wrk.out
	waited timeout -k 5 $((wrk_secs + 40)) wrk -t2 -c"$n" \
		-d"${wrk_secs}s" --latency --timeout 10s \
		"http://127.0.0.1:${port[$t]}/1m" >"$f" 2>&1 || true
	read -r rps p50 p99 errors reqs <<<"$(py wrk "$f")"
	for m in rps p50_ms p99_ms errors requests; do
		case $m in
		rps) v=$rps ;; p50_ms) v=$p50 ;; p99_ms) v=$p99 ;;
		errors) v=$errors ;; requests) v=$reqs ;;
		esac
		record "$r" "wrk$n" "$t" "$m" "$v"
	done
	say "wrk -c$n via $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errors errors"
}

test_slow() { # round target clients
	local r=$1 t=$2 n=$3 src=$2 idle sc sp peak held aborted
	local h0=0 h1=0 sum m v min med max errors eof unserved
	[ "$t" = sluice ] && [ "$n" = "$slow_limited" ] && src="sluice-limited"
	[ "$t" = direct ] || restart "$src"
	[ -n "${metrics[$src]:-}" ] &&
		h0=$(curl -s --max-time 2 "${metrics[$src]}" |
			awk '/^sluice_memory_limit_hits_total / {print $2}')
	# The sampler takes the idle sample first, then the clients start.
	# (python3 itself, not the py function: $! must be its PID.)
	rm -f "$tmp/sample."*
	python3 "$here/bench/compare.py" sample "${pid[$src]}" --ready-file "$tmp/sample.ready" \
		--stop-file "$tmp/sample.stop" --kill-file "$tmp/sample.kill" \
		--disk-dir "$tmp" --max-seconds $((slow_secs + 30)) \
		${metrics[$src]:+--metrics "${metrics[$src]}"} >"$tmp/sample.out" &
	sp=$!
	pids+=("$sp")
	for _ in $(seq 100); do
		[ -e "$tmp/sample.ready" ] && break
		sleep 0.05
	done
	"$tmp/slowclients" 127.0.0.1 "${port[$src]}" /slow "$n" "$slow_secs" \
		>"$tmp/slow.out" 2>"$tmp/slow.err" &
	sc=$!
	pids+=("$sc")
	echo "$sc" >"$tmp/sample.kill"
	wait "$sc" || true
	: >"$tmp/sample.stop"
	wait "$sp" || true
	pids=("${pids[@]:0:${#pids[@]}-2}") # both reaped
	read -r idle peak held aborted <"$tmp/sample.out" ||
		die "the sampler failed during $n slow via $src"
	[ -n "${metrics[$src]:-}" ] &&
		h1=$(curl -s --max-time 2 "${metrics[$src]}" |
			awk '/^sluice_memory_limit_hits_total / {print $2}')
	read -r _ _ min med max errors eof unserved <<<"$(py slow "$tmp/slow.out")"
	record "$r" "slow$n" "$t" idle_rss_kib "$idle"
	record "$r" "slow$n" "$t" peak_rss_kib "$peak"
	record "$r" "slow$n" "$t" rss_per_conn_kib \
		"$(awk -v p="$peak" -v i="$idle" -v n="$n" 'BEGIN {printf "%.2f", (p - i) / n}')"
	if [ -n "${metrics[$src]:-}" ]; then
		record "$r" "slow$n" "$t" held_per_conn_kib \
			"$(awk -v h="$held" -v n="$n" 'BEGIN {printf "%.2f", h / 1024 / n}')"
		record "$r" "slow$n" "$t" beyond_held_per_conn_kib \
			"$(awk -v p="$peak" -v i="$idle" -v h="$held" -v n="$n" \
				'BEGIN {printf "%.2f", (p - i - h / 1024) / n}')"
		record "$r" "slow$n" "$t" memory_limit_hits "$((h1 - h0))"
	fi
	for m in min_mb median_mb max_mb errors unserved eof aborted; do
		case $m in
		min_mb) v=$min ;; median_mb) v=$med ;; max_mb) v=$max ;;
		errors) v=$errors ;; unserved) v=$unserved ;; eof) v=$eof ;;
		aborted) v=$aborted ;;
		esac
		record "$r" "slow$n" "$t" "$m" "$v"
	done
	sum=$(cat "$tmp/slow.err")
	say "$n slow via $src: RSS $idle -> $peak KiB, MB min/med/max $min/$med/$max, $errors errors, $unserved unserved; $sum"
	[ "$aborted" = 1 ] && say "  stopped early: RSS cap, low MemAvailable or low disk space"
	return 0
}

# After thousands of slow clients the proxy and the origin take seconds to
# close their sockets: the next test waits (30 s at most) until both have
# used under 10 % of a core for half a second, so that it does not pay
# for the last one.
settle() { # target
	local a b ps=("${pid[direct]}" "${pid[$1]}")
	[ "$1" = sluice ] && ps+=("${pid[sluice-limited]}")
	a=$(py cpu "${ps[@]}")
	for _ in $(seq 60); do
		sleep 0.5
		b=$(py cpu "${ps[@]}")
		awk -v a="$a" -v b="$b" 'BEGIN {exit !(b - a < 0.05)}' && return 0
		a=$b
	done
	say "  $1 and the origin still busy after 30 s; going on"
}

# Round r starts with target r-1 of the list, so no target always runs
# first or right after the same neighbour.
order() { # round
	local k=$((($1 - 1) % ${#live[@]}))
	printf '%s\n' "${live[@]:$k}" "${live[@]:0:$k}"
}

start=$(date +%s)
for r in $(seq "$rounds"); do
	say "round $r of $rounds"
	mapfile -t ord < <(order "$r")
	for t in "${ord[@]}"; do test_download "$r" "$t"; done
	for n in $wrk_conns; do
		for t in "${ord[@]}"; do
			test_wrk "$r" "$t" "$n"
			sleep 1
		done
	done
	for n in $slow_counts; do
		for t in "${ord[@]}"; do
			# sluice's variants (splice off, workers 2) run without
			# memory_limit: at the largest count their 1 MiB per
			# client would be GBs; that count is sluice's (limited)
			case $t in sluice-*) [ "$n" = "$slow_limited" ] && continue ;; esac
			test_slow "$r" "$t" "$n"
			settle "$t"
		done
	done
done
say "ran $rounds rounds in $(($(date +%s) - start)) s"

# ---- the table and the plots ----------------------------------------------
args=(--csv "$csv" --out "$out" --targets "$(
	IFS=,
	echo "${targets[*]}"
)")
for t in "${targets[@]}"; do
	args+=(--label "$t=${label[$t]}")
	[ -n "${na[$t]:-}" ] && args+=(--na "$t=${na[$t]}")
done
echo
echo "Medians of $rounds rounds; ratios to direct within each round;" \
	"RSS per connection: peak VmRSS over idle / clients (held: sluice's" \
	"buffered bytes per client); sluice at $slow_limited slow clients:" \
	"memory_limit 64M."
echo
py report "${args[@]}"
echo
echo "results: $out (results.csv, table.md, machine.txt, *.png)"
