#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sixteen real swarmd, each in its own network namespace, four sites of
# four joined by one bridge, 20 ms ± 5 ms and 1 % loss between sites:
# every node sees all sixteen alive from one seed; then the sites split in
# two halves (each half declares the other dead) and heal (all sixteen
# alive again everywhere).  Needs root: skips, saying why, without.
set -eu

: "${SWARMD_BINARY:?run through meson test}" "${SWARMCTL:?}" "${SOURCE_ROOT:?}"
. "$SOURCE_ROOT/tests/netns/netns-lib.sh"

NODES=${NN_NODES:-16}
SITES=4
nn_require

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() {
	echo "not ok $((n + 1)) - $*"
	for f in "$nn_dir"/*/log; do
		[ -f "$f" ] && { echo "# $f:"; tail -5 "$f" | sed 's/^/#   /'; }
	done
	exit 1
}

nn_init
for i in $(seq 0 $((NODES - 1))); do
	nn_add_public "n$i" $((i % SITES)) $((10 + i))
done
nn_wan 20 5 1 || fail "cannot emulate the WAN"
# The plan only now: until here the harness may still skip (no netem and
# no NFQUEUE).
echo "1..4"
# Two sites apart: a round trip crosses the WAN twice (about 40 ms).
rtt=$(nn_rtt_ms n0 10.200.1.11)
[ "$rtt" -ge 30 ] && [ "$rtt" -le 200 ] || fail "a round trip between sites took $rtt ms, not about 40"
ok "$NODES namespaces on a bridge, WAN by $nn_wan_mode, round trip between sites $rtt ms"

addr() { echo "10.200.$(($1 % SITES)).$((10 + $1))"; }
nn_seeds=""
nn_node_config n0 "$(addr 0)"
nn_start_node n0
i=0
until [ -S "$nn_dir/n0/state/control.sock" ]; do
	i=$((i + 1))
	[ $i -le 200 ] || fail "the seed did not start"
	sleep 0.1
done
nn_seeds="\"$(nn_node_id n0)@tcp://$(addr 0):7946\""
t0=$(date +%s)
for i in $(seq 1 $((NODES - 1))); do
	nn_node_config "n$i" "$(addr "$i")"
	nn_start_node "n$i"
done

# all_alive WANT: every node sees WANT nodes alive.
all_alive() {
	for i in $(seq 0 $((NODES - 1))); do
		[ "$(nn_alive "n$i")" -eq "$1" ] || return 1
	done
}
wait_all_alive() {
	deadline=$(($(date +%s) + $2))
	until all_alive "$1"; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 1
	done
}
counts() {
	for i in $(seq 0 $((NODES - 1))); do printf '%s ' "$(nn_alive "n$i")"; done
}
wait_all_alive "$NODES" 120 || fail "full membership not reached in 120 s: $(counts)"
ok "full membership of $NODES daemons in $(($(date +%s) - t0)) s"

# A partition: sites 0-1 from sites 2-3 (both ways, in the bridge).
half="10.200.0.0/23"
other="10.200.2.0/23"
nn_exec br iptables -I FORWARD -s "$half" -d "$other" -j DROP
nn_exec br iptables -I FORWARD -s "$other" -d "$half" -j DROP
halves_apart() {
	for i in $(seq 0 $((NODES - 1))); do
		[ "$(nn_alive "n$i")" -eq $((NODES / 2)) ] || return 1
	done
}
deadline=$(($(date +%s) + 90))
until halves_apart; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "the halves did not see each other dead in 90 s: $(counts)"
	sleep 1
done
ok "a partition: each half sees only its own $((NODES / 2))"

nn_exec br iptables -D FORWARD -s "$half" -d "$other" -j DROP
nn_exec br iptables -D FORWARD -s "$other" -d "$half" -j DROP
t0=$(date +%s)
wait_all_alive "$NODES" 120 || fail "the partition did not heal in 120 s: $(counts)"
nn_wan_alive || fail "the WAN emulator died during the test"
ok "healed: all $NODES alive everywhere again in $(($(date +%s) - t0)) s"
