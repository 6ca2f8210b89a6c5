#!/bin/sh
# Installs the Debian 12 packages SwarmHarness needs to build, run and test.
# The one list of build and test dependencies: the README's commands and
# .ci/run all go through this script.  Installs only what is missing, so a
# second run costs one dpkg-query.
set -eu

PACKAGES="
	meson ninja-build pkg-config gcc clang
	libsystemd-dev libyaml-dev libsodium-dev libopenblas-dev make
	libzmq3-dev protobuf-c-compiler libprotobuf-c-dev libclang-rt-14-dev
	libcriterion-dev libsqlite3-dev libjson-c-dev libmicrohttpd-dev libpng-dev curl procps
	systemd dbus
	iproute2 iptables nftables
	debhelper dpkg-dev lintian debootstrap systemd-container
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages:$missing" >&2
	echo "install-deps: run as root (or: sudo apt-get install$missing)" >&2
	exit 1
fi

echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
