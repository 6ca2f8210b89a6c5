#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Makes the minimal Debian 12 root that the system suite boots, once, and
# caches it: DIR/root, with DIR/key naming what it was made from.  A second
# call with the same inputs returns at once; one running meanwhile (the
# background call early in tools/test.sh) is waited for.
#
# The root has systemd, D-Bus, polkit and logind's PAM module installed, and
# the libraries the packages' Depends resolve to downloaded into apt's
# cache but not installed: the test installs the .debs inside the booted,
# network-less container, where apt takes the dependencies from that cache,
# so only what the Depends name gets installed.
#
# Usage: make-root.sh [--probe] DIR
# Exit status: 0 ready, 77 cannot be made here (not root, no debootstrap,
# no network to the mirror: the reason is on stderr), 1 failed.  With
# --probe it only says, in seconds, whether it would be ready or 77.
set -eu

probe=false
if [ "$1" = --probe ]; then
	probe=true
	shift
fi
dir=$1
mirror=${SWARM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

# What the system itself needs: systemd as PID 1, the system bus, polkit
# and logind sessions through PAM.  Nothing more: no procps (no /bin/kill),
# no iproute2, as on a minimal server.
os_packages=systemd,systemd-sysv,dbus,polkitd,libpam-systemd
# What the built packages depend on (dpkg-shlibdeps' answer for swarmd,
# swarmctl and the skills), downloaded with their own dependencies but not
# installed.  When the Depends change, the test's apt install names what is
# missing here.
deb_depends="libjson-c5 libmicrohttpd12 libopenblas0 libpng16-16 libprotobuf-c1 libsodium23 libsqlite3-0 libyaml-0-2 libzmq5"

skip() {
	echo "make-root: skipped: $*" >&2
	exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (tools/install-deps.sh)"

key=$({ printf '%s\n' "$suite" "$mirror"; cat "$0"; } | sha256sum | cut -c1-16)

cached() {
	[ -d "$dir/root" ] && [ "$(cat "$dir/key" 2>/dev/null)" = "$key" ]
}

mkdir -p "$dir"
exec 9>"$dir.lock"
if $probe; then
	# Made already, or being made (locked): the caller waits for it.
	cached && exit 0
	flock -n 9 || exit 0
else
	flock 9
	cached && exit 0
fi

command -v wget >/dev/null || skip "wget is not installed (debootstrap needs it)"
wget -q -T 10 -t 1 -O /dev/null "$mirror/dists/$suite/Release" \
	|| skip "the Debian mirror $mirror cannot be reached (set SWARM_DEBIAN_MIRROR)"
$probe && exit 0

# A debootstrap that was killed may have left /proc and /sys mounted in
# its root.
awk -v d="$dir/root.new/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
	while read -r m; do umount -l "$m"; done
rm -rf --one-file-system "$dir/root" "$dir/root.new" "$dir/key"
start=$(date +%s)
echo "make-root: debootstrap --variant=minbase $suite into $dir/root.new" >&2
nice -n 10 timeout 900 debootstrap --variant=minbase --include="$os_packages" \
	"$suite" "$dir/root.new" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
	tail -20 "$dir/debootstrap.log" >&2
	echo "make-root: debootstrap failed (log: $dir/debootstrap.log)" >&2
	exit 1
}
# debootstrap leaves the package lists of $suite main; fetch the
# dependencies into apt's cache against them, and only those.
chroot "$dir/root.new" apt-get clean
# shellcheck disable=SC2086
timeout 600 chroot "$dir/root.new" apt-get install -y -qq --download-only --no-install-recommends \
	$deb_depends >>"$dir/debootstrap.log" 2>&1 || {
	tail -20 "$dir/debootstrap.log" >&2
	echo "make-root: downloading the packages' dependencies failed (log: $dir/debootstrap.log)" >&2
	exit 1
}
# The container takes the host's name otherwise.
echo swarmtest >"$dir/root.new/etc/hostname"
mv "$dir/root.new" "$dir/root"
echo "$key" >"$dir/key"
echo "make-root: ready in $(($(date +%s) - start)) s ($(du -sh "$dir/root" | cut -f1))" >&2
