#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# NATed nodes reached through relays, with real swarmd in network
# namespaces (issue 21): six public nodes on three sites (three of them
# relay), four homes each behind its own NAT router (masquerade, no port
# forwarding), 20 ms ± 5 ms and 1 % loss between sites.  The homes find out
# by dial-back that no one can reach them, register with relays and say so
# in their records; everyone sees everyone alive (home to home only through
# relays); a job from a NATed requester runs on a NATed provider through a
# relay; a relay killed in the middle of a batch: no job lost (those in
# flight through it are rerouted), the homes move to live relays and
# re-publish their records.  Needs root: skips, saying why, without.
set -eu

: "${SWARMD_BINARY:?run through meson test}" "${SWARMCTL:?}" "${SOURCE_ROOT:?}" "${SKILL_BUILD_DIR:?}"
. "$SOURCE_ROOT/tests/netns/netns-lib.sh"

PUBLIC=6
HOMES=4
# Ten daemons and a batch of jobs on two shared cores: probes get a second
# (400 ms to answer), so a busy loop is not taken for a dead peer.
NN_PROBE_INTERVAL=${NN_PROBE_INTERVAL:-1s}
ALL=$((PUBLIC + HOMES))
nn_require

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() {
	echo "not ok $((n + 1)) - $*"
	for f in "$nn_dir"/*/log; do
		[ -f "$f" ] && { echo "# $f:"; grep -v 'Cannot send' "$f" | tail -8 | sed 's/^/#   /'; }
	done
	exit 1
}

nn_init
for i in $(seq 0 $((PUBLIC - 1))); do
	nn_add_public "p$i" $((i % 3)) $((10 + i))
done
for k in $(seq 0 $((HOMES - 1))); do
	nn_add_home "h$k" $((k % 3)) $((100 + k)) "$k"
done
nn_wan 20 5 1 || fail "cannot emulate the WAN"
# The plan only now: until here the harness may still skip (no netem and
# no NFQUEUE).
echo "1..8"

# The NAT: a home reaches out (a refused connection is an answer), no one
# reaches in (10.200.128.0/17 is routed nowhere on the bridge).
[ "$(nn_rtt_ms h0 10.200.0.10)" -ge 0 ] || fail "home h0 cannot reach a public node"
[ "$(nn_rtt_ms p0 10.200.128.2)" -lt 0 ] || fail "a public node reached into home h0"
ok "$PUBLIC public namespaces and $HOMES homes behind NAT, WAN by $nn_wan_mode"

paddr() { echo "10.200.$(($1 % 3)).$((10 + $1))"; }
nn_seeds=""
# p0 is also the swarm's issuer: it mints the credits h0 pays with.
nn_make_identity p0 "$(paddr 0)" || fail "p0 did not start"
nn_issuers="\"$(nn_node_id p0)\""
nn_node_config p0 "$(paddr 0)" "  reachability: auto"
nn_start_node p0
i=0
until [ -S "$nn_dir/p0/state/control.sock" ]; do
	i=$((i + 1))
	[ $i -le 200 ] || fail "the seed did not start"
	sleep 0.1
done
nn_seeds="\"$(nn_node_id p0)@tcp://$(paddr 0):7946\""
for i in $(seq 1 $((PUBLIC - 1))); do
	relay=""
	[ "$i" -le 3 ] && relay="relay:
  enabled: true"
	nn_node_config "p$i" "$(paddr "$i")" "" "$relay"
	nn_start_node "p$i"
done
for k in $(seq 0 $((HOMES - 1))); do
	skills="skills:
  directory: \"$SKILL_BUILD_DIR\""
	# h1, h2 and h3 provide; h0 asks (it verifies with the plugin, hosts
	# none).  A requester tries each provider once: three give a relay's
	# death time to be noticed and routed around.
	[ "$k" -ge 1 ] && skills="$skills
  enabled: [hash]"
	nn_node_config "h$k" "10.200.$((128 + k)).2" "" "$skills"
	nn_start_node "h$k"
done
t0=$(date +%s)

# self_field NODE FIELD: a field of the node's own entry in peers --json.
self_field() {
	nn_ctl "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p["self"]:
        v = p[sys.argv[1]]
        print(len(v) if isinstance(v, list) else v)' "$2"
}
homes_private() {
	for k in $(seq 0 $((HOMES - 1))); do
		[ "$(self_field "h$k" reachability)" = private ] || return 1
		[ "$(self_field "h$k" relays)" -ge 1 ] || return 1
	done
	for i in $(seq 0 $((PUBLIC - 1))); do
		[ "$(self_field "p$i" reachability)" = public ] || return 1
	done
}
deadline=$(($(date +%s) + 90))
until homes_private; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "homes not private with a relay, or public nodes not public, in 90 s: $(for k in $(seq 0 $((HOMES - 1))); do printf 'h%s:%s/%s ' "$k" "$(self_field "h$k" reachability)" "$(self_field "h$k" relays)"; done; for i in $(seq 0 $((PUBLIC - 1))); do printf 'p%s:%s ' "$i" "$(self_field "p$i" reachability)"; done)"
	sleep 1
done
ok "dial-back: every home private with relays, every public node public, in $(($(date +%s) - t0)) s"

counts() {
	for i in $(seq 0 $((PUBLIC - 1))); do printf 'p%s:%s ' "$i" "$(nn_alive "p$i")"; done
	for k in $(seq 0 $((HOMES - 1))); do printf 'h%s:%s ' "$k" "$(nn_alive "h$k")"; done
}
all_alive() {
	for i in $(seq 0 $((PUBLIC - 1))); do [ "$(nn_alive "p$i")" -eq $ALL ] || return 1; done
	for k in $(seq 0 $((HOMES - 1))); do [ "$(nn_alive "h$k")" -eq $ALL ] || return 1; done
}
deadline=$(($(date +%s) + 120))
until all_alive; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "no full membership through relays in 120 s: $(counts)"
	sleep 1
done
ok "full membership of $ALL, homes included, in $(($(date +%s) - t0)) s"

# route OBSERVER SUBJECT: how OBSERVER sends to SUBJECT ("relay:VIA", ...).
route() {
	nn_ctl "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p["name"] == sys.argv[1]:
        print(p["route"] + (":" + p["via"] if p["via"] else ""))' "$2"
}
case $(route h0 h1) in
relay:*) ;;
*) fail "h0 does not reach h1 through a relay: $(route h0 h1)" ;;
esac
case $(route p0 h2) in
relay:*) ;;
*) fail "p0 does not reach h2 through a relay: $(route p0 h2)" ;;
esac
[ "$(route h0 p0)" = direct ] || fail "h0 does not reach p0 directly: $(route h0 p0)"
nn_ctl h0 peers | grep -q 'relay via' || fail "swarmctl peers does not say 'relay via'"
ok "swarmctl peers: homes reached through relays, public nodes directly"

nn_mint p0 h0 1000000000000 || fail "p0's mint of 1,000,000 credits did not reach h0"
jobs_sock="$nn_dir/h0/state/jobs.sock"
out=$("$SWARMCTL" submit --skill hash --input data=text:abc --deadline 60s --socket "$jobs_sock" 2>&1) ||
	fail "a job from h0 (NATed) did not run: $out"
ok "a job from a NATed requester verified, run by a NATed provider through a relay"

# A batch; in its middle, the relay that carries it is killed.  Inputs of
# 8 KiB: over the size that travels through two relays at once, so each
# job's request goes through one relay, the first live one the provider
# names.  The nearest provider (h3, on h0's site) takes most jobs: its
# relay dies.
batch="$nn_dir/batch"
head -c 8192 /dev/urandom >"$nn_dir/input.bin"
JOBS=600
for j in $(seq 1 $JOBS); do echo "hash data=@$nn_dir/input.bin"; done >"$batch"
via=$(route h0 h3)
via=${via#relay:}
victim=""
for i in 1 2 3; do
	[ "$(nn_node_id "p$i")" = "$via" ] && victim="p$i"
done
[ -n "$victim" ] || fail "h3's relay $via is none of the relays"
"$SWARMCTL" submit --batch "$batch" --parallel 4 --deadline 90s --socket "$jobs_sock" -q \
	>"$nn_dir/batch.out" 2>&1 &
submit=$!
sleep 1
kill -0 "$submit" 2>/dev/null || fail "the batch was over before the relay died: $(tail -3 "$nn_dir/batch.out" | tr '\n' ' ')"
eval "nn_unspawn \$nn_pid_$victim"
rc=0
wait "$submit" || rc=$?
verified=$(sed -n 's/^  done (verified) *//p' "$nn_dir/batch.out")
[ $rc -eq 0 ] && [ "$verified" = "$JOBS" ] ||
	fail "relay $victim died mid-batch: ${verified:-0} of $JOBS jobs verified: $(grep -m3 -i 'fail' "$nn_dir/batch.out" | tr '\n' ' ')"
ok "relay $victim killed mid-batch: $verified of $JOBS jobs verified, $(sed -n "s/^  rerouted *//p" "$nn_dir/batch.out") rerouted"

# h3 moves: its own record no longer names the dead relay, and h0, which
# learnt it by gossip, reaches h3 through another.
moved() {
	nn_ctl h3 peers --json 2>/dev/null | python3 -c '
import json, sys
me = [p for p in json.load(sys.stdin) if p["self"]][0]
sys.exit(0 if me["relays"] and sys.argv[1] not in json.dumps(me["relays"]) else 1)' "$via" || return 1
	case $(route h0 h3) in "relay:$via") return 1 ;; relay:*) return 0 ;; *) return 1 ;; esac
}
deadline=$(($(date +%s) + 60))
until moved; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "h3 did not move to another relay: h0 reaches it by $(route h0 h3)"
	sleep 1
done
ok "h3 moved to another relay and re-published its record"

for j in $(seq 1 50); do echo "hash data=text:after$j"; done >"$batch"
"$SWARMCTL" submit --batch "$batch" --parallel 2 --deadline 60s --socket "$jobs_sock" -q >"$nn_dir/after.out" 2>&1 ||
	fail "jobs through the relays left lost some: $(grep -m3 failed "$nn_dir/after.out" | tr '\n' ' ')"
nn_wan_alive || fail "the WAN emulator died during the test"
ok "after the move, 50 jobs NATed to NATed through the remaining relays: none lost"
