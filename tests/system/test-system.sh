#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The system suite: the Debian packages, built from the tree with
# dpkg-buildpackage and checked with lintian, installed with apt into a
# minimal Debian 12 booted with systemd as PID 1 under systemd-nspawn (its
# own network namespace: nothing leaves it), and checked from inside
# (checks.sh): the unit, its user and directories, skills in the delegated
# cgroups, the D-Bus API, polkit with real logind sessions, reload, crash,
# stop and purge.
#
# Usage: test-system.sh SOURCE_ROOT BUILD_ROOT
# The Debian root is made once and kept in BUILD_ROOT/system-root
# (make-root.sh); the rest lives in BUILD_ROOT/system and the container is
# gone when this exits.  Exit status 77 (skipped) with the reason when it
# cannot run here: not root, tools missing, no network to the mirror,
# systemd-nspawn cannot boot.
set -eu

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
here=$src/tests/system
work=$build/system
machine=$work/machine
t_start=$(date +%s)

nspawn_pid= root_pid=
cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null || true
		i=0
		while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 300 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
		wait "$nspawn_pid" 2>/dev/null || true
	fi
	if [ -n "$root_pid" ] && kill -0 "$root_pid" 2>/dev/null; then
		kill -TERM -- "-$root_pid" 2>/dev/null || true
		wait "$root_pid" 2>/dev/null || true
	fi
	# The overlay was mounted in the container's private mount namespace,
	# gone with it: this removes only the container's own writes.
	rm -rf "$machine"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
step() {
	echo "== $* (at $(($(date +%s) - t_start)) s)"
}

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
for c in dpkg-buildpackage dpkg-checkbuilddeps lintian debootstrap systemd-nspawn nsenter unshare flock; do
	command -v "$c" >/dev/null || skip "$c is not installed (tools/install-deps.sh installs it)"
done
unmet=$(cd "$src" && dpkg-checkbuilddeps 2>&1) ||
	skip "unmet build dependencies, tools/install-deps.sh installs them: ${unmet#*: }"

mkdir -p "$work"
rm -rf "$machine"
# Before minutes of building: can the root be made at all?
rc=0
"$here/make-root.sh" --probe "$build/system-root" 2>"$work/make-root.log" || rc=$?
case $rc in
0) ;;
77) skip "$(sed -n 's/^make-root: skipped: //p' "$work/make-root.log")" ;;
*) fail "make-root.sh --probe failed: $(cat "$work/make-root.log")" ;;
esac

# The root, cached; usually made already by the background call in
# tools/test.sh (then this only waits for it), else while the packages
# build below.
step "the Debian 12 root ($build/system-root)"
# In a process group of its own, so that all of it can be stopped.
setsid "$here/make-root.sh" "$build/system-root" 2>"$work/make-root.log" &
root_pid=$!

# --- the packages --------------------------------------------------------------
step "dpkg-buildpackage -us -uc -b"
rm -rf "$work/src" "$work"/*.deb "$work"/*.ddeb "$work"/*.changes "$work"/*.buildinfo
mkdir -p "$work/src"
if [ -e "$src/.git" ] && command -v git >/dev/null; then
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		tar -C "$src" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$work/src" -xf -
else
	tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$work/src" -xf -
fi
# nocheck: the suite ran from the tree already; the package builds none
# of it (-Dtests=false).
t=$(date +%s)
if ! (cd "$work/src" &&
	DEB_BUILD_OPTIONS="nocheck parallel=${SWARM_DEB_JOBS:-$(nproc)}" \
		timeout 900 dpkg-buildpackage -us -uc -b) >"$work/dpkg-buildpackage.log" 2>&1; then
	tail -30 "$work/dpkg-buildpackage.log"
	fail "dpkg-buildpackage failed (log: $work/dpkg-buildpackage.log)"
fi
echo "dpkg-buildpackage: $(($(date +%s) - t)) s"
for f in "$work"/*.deb; do
	printf '  %-48s %8d bytes, installed %5d KiB\n' "${f##*/}" "$(stat -c %s "$f")" \
		"$(dpkg-deb -f "$f" Installed-Size)"
done
rm -rf "$work/src"

step "lintian"
# Errors and warnings fail; overrides are in debian/*.lintian-overrides,
# each with its reason.
if ! timeout 300 lintian --info --pedantic --fail-on error,warning "$work"/*.changes \
	>"$work/lintian.log" 2>&1; then
	cat "$work/lintian.log"
	fail "lintian found errors or warnings"
fi
grep -v 'root privileges' "$work/lintian.log" || echo "lintian: no findings"

rc=0
wait "$root_pid" || rc=$?
root_pid=
cat "$work/make-root.log"
case $rc in
0) ;;
77) skip "$(sed -n 's/^make-root: skipped: //p' "$work/make-root.log")" ;;
*) fail "the Debian root could not be made (log: $build/system-root/debootstrap.log)" ;;
esac

# --- boot ----------------------------------------------------------------------
step "boot with systemd-nspawn -b --private-network"
mkdir -p "$machine/root" "$machine/upper/swarm-test/debs" "$machine/work"
cp "$work"/*.deb "$machine/upper/swarm-test/debs/"
cp "$here/checks.sh" "$machine/upper/swarm-test/"
rm -f "$machine"/upper/swarm-test/debs/*-dbgsym_*

set -- -q -D "$machine/root" --private-network -b --machine=swarmtest \
	--link-journal=no --resolv-conf=off --timezone=off --console=read-only
# Without systemd as PID 1 on the host there is no manager to run the
# container in a scope of its own, nor a machined to register with.
[ -d /run/systemd/system ] || set -- --keep-unit --register=no "$@"
# A private mount namespace holds the overlay (the cached root stays as it
# is) and, where /run is not a tmpfs, one on /run/systemd/nspawn: nspawn
# refuses to clean up its propagation directory on a disk file system.
mkdir -p /run/systemd/nspawn
unshare -m --propagation private sh -c '
	set -e
	machine=$1 lower=$2
	shift 2
	[ "$(stat -f -c %T /run)" = tmpfs ] || mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
	mount -t overlay overlay -o "lowerdir=$lower,upperdir=$machine/upper,workdir=$machine/work" "$machine/root"
	exec systemd-nspawn "$@"' sh "$machine" "$build/system-root/root" "$@" \
	>"$work/boot.log" 2>&1 </dev/null &
nspawn_pid=$!

# The container's PID 1: nspawn's child that is PID 1 in its namespace.
leader=
i=0
while [ -z "$leader" ] && [ $i -lt 300 ] && kill -0 "$nspawn_pid" 2>/dev/null; do
	for s in /proc/[0-9]*/status; do
		if grep -q "^PPid:[[:space:]]*$nspawn_pid\$" "$s" 2>/dev/null &&
			grep -q "^NSpid:.*[[:space:]]1\$" "$s" 2>/dev/null; then
			leader=${s#/proc/}
			leader=${leader%/status}
		fi
	done
	[ -n "$leader" ] || sleep 0.1
	i=$((i + 1))
done
if [ -z "$leader" ]; then
	tail -20 "$work/boot.log"
	skip "systemd-nspawn could not start the container here: $(grep -v '^$' "$work/boot.log" | tail -1)"
fi
inside() {
	nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
state=$(timeout 120 nsenter -t "$leader" -a systemctl is-system-running --wait 2>&1) || true
echo "booted: $state, in $(($(date +%s) - t_start)) s from the start"
case $state in
running) ;;
degraded) echo "failed units: $(inside systemctl --failed --no-legend | tr '\n' ' ')" ;;
*)
	tail -30 "$work/boot.log"
	skip "systemd did not finish booting in the container (state: ${state:-none})"
	;;
esac

# --- inside ----------------------------------------------------------------------
step "checks inside the container"
rc=0
timeout 420 nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/sh /swarm-test/checks.sh /swarm-test/debs 2>&1 | tee "$work/checks.log" || true
grep -q '^# [0-9]* checks, 0 failed$' "$work/checks.log" || rc=1

step "power off"
kill -TERM "$nspawn_pid"
i=0
while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -0 "$nspawn_pid" 2>/dev/null && echo "the container did not power off in 30 s; killed"
step "done"
exit $rc
