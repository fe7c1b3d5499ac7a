#!/bin/sh
# Installs what sluice needs to build and test, from Debian 12's packages
# only.  llhttp comes as C sources in node-llhttp; meson compiles them.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	gcc libc6-dev meson ninja-build pkg-config \
	libuv1-dev libinih-dev libcmocka-dev node-llhttp \
	python3 curl procps ca-certificates clang-format valgrind >/dev/null
echo "deps: installed"
