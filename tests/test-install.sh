#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the build into a scratch DESTDIR and checks that every file lands
# at its distro path, the installed configuration validates with the installed
# binary, the unit passes 'systemd-analyze verify', and the D-Bus policy is
# accepted by a real dbus-daemon.
#
# Usage: test-install.sh BUILD_ROOT SBINDIR SYSCONFDIR UNITDIR SYSUSERSDIR TMPFILESDIR DATADIR POLKIT
set -eu

build=$1 sbindir=$2 sysconfdir=$3 unitdir=$4 sysusersdir=$5 tmpfilesdir=$6 datadir=$7 polkit=$8

dest=$(mktemp -d /tmp/swarmharness-install-XXXXXX)
bus_pid=
cleanup() {
	[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
	rm -rf "$dest"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

DESTDIR=$dest meson install -C "$build" --no-rebuild --quiet >/dev/null \
	|| fail "meson install into DESTDIR failed"

for f in \
	"$sbindir/swarmd" \
	"$unitdir/swarmd.service" \
	"$sysusersdir/swarmd.conf" \
	"$tmpfilesdir/swarmd.conf" \
	"$sysconfdir/swarmd.yaml" \
	"$datadir/dbus-1/system.d/org.swarmharness.Swarm1.conf"
do
	[ -f "$dest$f" ] || fail "$f not installed"
	echo "ok: $f"
done
[ -x "$dest$sbindir/swarmd" ] || fail "$sbindir/swarmd is not executable"
[ -d "$dest$sysconfdir/swarmd.yaml.d" ] || fail "$sysconfdir/swarmd.yaml.d not installed"
if [ "$polkit" = true ]; then
	[ -f "$dest$datadir/polkit-1/actions/org.swarmharness.policy" ] || fail "polkit action not installed"
	echo "ok: polkit action"
	# swarmd asks polkit about other users' processes: polkit allows that only
	# to root and to the action's owner, which must be the unit's User=.
	user=$(sed -n 's/^User=//p' "$dest$unitdir/swarmd.service")
	grep -q "<annotate key=\"org.freedesktop.policykit.owner\">unix-user:$user</annotate>" \
		"$dest$datadir/polkit-1/actions/org.swarmharness.policy" \
		|| fail "the polkit action's owner is not unix-user:$user, the user swarmd runs as"
	echo "ok: polkit action owned by $user"
fi

"$dest$sbindir/swarmd" --check-config "$dest$sysconfdir/swarmd.yaml" \
	|| fail "installed swarmd rejects the installed configuration"

# The unit must name the installed paths.
grep -q "^ExecStart=$sbindir/swarmd --config $sysconfdir/swarmd.yaml\$" "$dest$unitdir/swarmd.service" \
	|| fail "ExecStart= does not point at the installed binary and config"
# Reload needs nothing but swarmd itself (a minimal system has no /bin/kill).
grep -q "^ExecReload=$sbindir/swarmd --reload \$MAINPID\$" "$dest$unitdir/swarmd.service" \
	|| fail "ExecReload= does not reload through the installed swarmd"

# One state directory for the service, for swarmd started by hand (and
# swarmd --show-identity) and for the swarmd user's home: what systemd makes
# of StateDirectory= is always under /var/lib.
unit_state=/var/lib/$(sed -n 's/^StateDirectory=//p' "$dest$unitdir/swarmd.service")
[ "$unit_state" != /var/lib/ ] || fail "swarmd.service has no StateDirectory="
tmpfiles_state=$(awk '$1 == "d" && $3 == "0700" { print $2 }' "$dest$tmpfilesdir/swarmd.conf")
sysusers_home=$(awk '$1 == "u" && $2 == "swarmd" { print $(NF - 1) }' "$dest$sysusersdir/swarmd.conf")
compiled_state=$("$dest$sbindir/swarmd" --help | sed -n 's/.*\$STATE_DIRECTORY, then \([^)]*\)).*/\1/p')
for d in "$tmpfiles_state" "$sysusers_home" "$compiled_state"; do
	[ "$d" = "$unit_state" ] || fail "state directories disagree: unit $unit_state, tmpfiles $tmpfiles_state," \
		"sysusers home $sysusers_home, swarmd's default $compiled_state"
done
echo "ok: one state directory, $unit_state"

if command -v systemd-analyze >/dev/null; then
	# Verify against the host's units (sysinit.target & co. are not in DESTDIR):
	# a copy of the installed unit whose ExecStart= points into DESTDIR, so
	# the executable check sees the binary we just installed.  The grep above
	# already checked the real paths.
	mkdir "$dest/verify"
	sed "s|$sbindir/swarmd|$dest$sbindir/swarmd|g" "$dest$unitdir/swarmd.service" \
		>"$dest/verify/swarmd.service"
	out=$(systemd-analyze verify --man=no "$dest/verify/swarmd.service" 2>&1) || {
		echo "$out" >&2
		fail "systemd-analyze verify rejects swarmd.service"
	}
	# verify exits 0 on some warnings; treat any complaint about our unit as failure.
	if echo "$out" | grep -q "swarmd.service"; then
		echo "$out" >&2
		fail "systemd-analyze verify warns about swarmd.service"
	fi
	echo "ok: systemd-analyze verify"
	# Exposure 2.0 or less (systemd's scale, ×10 for --threshold).
	if systemd-analyze security --help 2>&1 | grep -q -- --offline; then
		systemd-analyze security --offline=true --threshold=20 "$dest/verify/swarmd.service" >"$dest/security" 2>&1 || {
			tail -5 "$dest/security" >&2
			fail "systemd-analyze security rates swarmd.service above 2.0"
		}
		echo "ok: $(tail -1 "$dest/security")"
	fi
else
	echo "SKIP: systemd-analyze not installed, unit not verified"
fi

if command -v dbus-daemon >/dev/null; then
	cat > "$dest/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dest/bus</listen>
  <policy context="default"><allow user="*"/></policy>
  <include>$dest$datadir/dbus-1/system.d/org.swarmharness.Swarm1.conf</include>
</busconfig>
CONF
	dbus-daemon --config-file="$dest/bus.conf" --nofork --nopidfile --print-address=1 \
		>"$dest/bus.addr" 2>"$dest/bus.err" &
	bus_pid=$!
	i=0
	while [ ! -s "$dest/bus.addr" ] && kill -0 "$bus_pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -s "$dest/bus.addr" ] || { cat "$dest/bus.err" >&2; fail "dbus-daemon rejects the bus policy"; }
	# Tolerated: the swarmd user exists only once sysusers ran, and an
	# unprivileged container may not raise the fd limit.
	sleep 0.1
	if grep -v -e 'Unknown username "swarmd"' -e 'Failed to set fd limit' "$dest/bus.err" | grep -q .; then
		cat "$dest/bus.err" >&2
		fail "dbus-daemon complains about the bus policy"
	fi
	echo "ok: dbus-daemon accepts the bus policy"
else
	echo "SKIP: dbus-daemon not installed, bus policy not loaded"
fi

echo "install: all checks passed"
