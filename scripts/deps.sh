#!/bin/sh
# Installs what sluice needs to build and test, from Debian 12's packages
# only.  llhttp comes as C sources in node-llhttp; meson compiles them.
# nginx-light and haproxy are real peers in the tests and the lab; their
# packages would start system services, so services are kept from
# starting during the install (policy-rc.d), and the tests run their own
# instances on loopback or in the lab's namespaces.  tcpdump writes the
# lab's captures.  systemd (systemd-analyze) and man-db check the unit
# and the man page that meson installs.  clang with libclang-rt-14-dev
# builds the fuzz harnesses (libFuzzer); libfiu-dev and fiu-utils inject
# faults into the proxy's system calls.  GNU parallel runs docs/lab.md's
# recipe for sweeps across hosts in its test.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=yes
fi
trap '[ "$own_policy" = yes ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends \
	gcc libc6-dev meson ninja-build pkg-config \
	libuv1-dev libinih-dev libcmocka-dev node-llhttp \
	python3 curl procps ca-certificates clang-format valgrind iproute2 gnuplot-nox \
	nginx-light haproxy tcpdump systemd man-db \
	clang libclang-rt-14-dev libfiu-dev fiu-utils parallel >/dev/null
echo "deps: installed"
