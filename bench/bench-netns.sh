#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Figures for issue 21, with real swarmd in network namespaces
# (tests/netns/netns-lib.sh), 20 ms ± 5 ms and 1 % loss between sites:
#   1. membership convergence of 16 and 32 daemons (start of the last one
#      to every node seeing every other alive);
#   2. job round trip, direct (public requester → public provider) against
#      through a relay (the same requester → a NATed provider), same run;
#   3. the relay's cost per relayed job: CPU (its process' utime + stime)
#      and bytes on its interface, each less the same span idle; and jobs/s
#      through the one relay.
# Run by hand as root from the source tree, after building:
#   bench/bench-netns.sh [BUILD_DIR] [JOBS]
# Prints a table; never fails on a figure (only when it cannot run).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
JOBS=${2:-400}
export SWARMD_BINARY="$build/daemon/swarmd" SWARMCTL="$build/tools/swarmctl" SWARM_WORKER="$build/daemon/swarm-worker"
export NN_WAN_EMU="$build/tests/netns/wan-emu" SKILL_BUILD_DIR="$build/plugins"
. "$src/tests/netns/netns-lib.sh"
nn_require

# ---- 1. Convergence ----

converge() {
	nodes=$1
	nn_init
	for i in $(seq 0 $((nodes - 1))); do
		nn_add_public "n$i" $((i % 4)) $((10 + i))
	done
	nn_wan 20 5 1
	addr() { echo "10.200.$(($1 % 4)).$((10 + $1))"; }
	nn_seeds=""
	nn_node_config n0 "$(addr 0)"
	nn_start_node n0
	until [ -S "$nn_dir/n0/state/control.sock" ]; do sleep 0.1; done
	nn_seeds="\"$(nn_node_id n0)@tcp://$(addr 0):7946\""
	for i in $(seq 1 $((nodes - 1))); do
		nn_node_config "n$i" "$(addr "$i")"
		nn_start_node "n$i"
	done
	t0=$(date +%s.%N)
	deadline=$(($(date +%s) + 240))
	while :; do
		full=1
		for i in $(seq 0 $((nodes - 1))); do
			[ "$(nn_alive "n$i")" -eq "$nodes" ] || { full=0; break; }
		done
		[ $full -eq 1 ] && break
		[ "$(date +%s)" -lt "$deadline" ] || { echo "n/a (not converged in 240 s)"; nn_cleanup; return; }
		sleep 0.5
	done
	t1=$(date +%s.%N)
	nn_wan_alive || { echo "n/a (the WAN emulator died)"; nn_cleanup; return; }
	echo "$t1 $t0" | awk '{ printf "%.1f s\n", $1 - $2 }'
	nn_cleanup
}

echo "== membership convergence, 20 ms ± 5 ms, 1 % loss between 4 sites, probe_interval ${NN_PROBE_INTERVAL:-500ms} =="
c16=$(converge 16)
echo "   16 daemons: $c16"
c32=$(converge 32)
echo "   32 daemons: $c32"

# ---- 2 and 3. Direct against relayed jobs ----

nn_init
nn_add_public seed 0 10   # seed, requester
nn_add_public relay 1 11  # the one relay
nn_add_public prov 2 12   # a public provider
nn_add_home home 2 100 0  # a provider behind NAT
nn_wan 20 5 1
nn_seeds=""
# The requester is the swarm's issuer too: what it pays providers is minted.
nn_make_identity seed 10.200.0.10 || { echo "the seed did not start"; exit 1; }
nn_issuers="\"$(nn_node_id seed)\""
nn_node_config seed 10.200.0.10 "" "skills:
  directory: \"$SKILL_BUILD_DIR\""
nn_start_node seed
until [ -S "$nn_dir/seed/state/control.sock" ]; do sleep 0.1; done
nn_seeds="\"$(nn_node_id seed)@tcp://10.200.0.10:7946\""
nn_node_config relay 10.200.1.11 "" "relay:
  enabled: true"
nn_start_node relay
relay_pid=$nn_pid
nn_node_config prov 10.200.2.12 "" "skills:
  directory: \"$SKILL_BUILD_DIR\"
  enabled: [hash]"
nn_start_node prov
prov_pid=$nn_pid

route_of() {
	nn_ctl seed peers --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p["name"] == sys.argv[1] and p["state"] == "alive":
        print(p["route"])' "$1"
}
wait_route() {
	deadline=$(($(date +%s) + 120))
	until [ "$(route_of "$1")" = "$2" ]; do
		[ "$(date +%s)" -lt "$deadline" ] || { echo "$1 never became reachable ($2)"; exit 1; }
		sleep 1
	done
	sleep 2         # its skills' adverts
}
batch() {
	for j in $(seq 1 "$1"); do echo "hash data=text:bench$j"; done >"$nn_dir/batch"
	"$SWARMCTL" submit --batch "$nn_dir/batch" --parallel "$2" --socket "$nn_dir/seed/state/jobs.sock" -q \
		>"$nn_dir/batch.out" 2>&1 || true
}
mean_ms() { sed -n 's/^  mean latency *\([0-9.]*\) ms/\1/p' "$nn_dir/batch.out"; }
verified() { sed -n 's/^  done (verified) *//p' "$nn_dir/batch.out"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$relay_pid/stat"; }
relay_bytes() {
	nn_exec relay sh -c 'echo $(( $(cat /sys/class/net/eth0/statistics/rx_bytes) + $(cat /sys/class/net/eth0/statistics/tx_bytes) ))'
}
hz=$(getconf CLK_TCK)

echo
echo "== job round trip (hash of a few bytes), requester on site 0, providers on site 2 =="
# Direct: the public provider alone.
wait_route prov direct
batch 50 1
direct_rtt=$(mean_ms)
t0=$(date +%s.%N); batch "$JOBS" 16; t1=$(date +%s.%N)
direct_jps=$(echo "$t0 $t1 $(verified)" | awk '{ printf "%.0f", $3 / ($2 - $1) }')
direct_done=$(verified)

# Through the relay: the public provider gone, one behind NAT instead.
nn_unspawn "$prov_pid"
nn_node_config home 10.200.128.2 "  relays: 1" "skills:
  directory: \"$SKILL_BUILD_DIR\"
  enabled: [hash]"
nn_start_node home
wait_route home relay

# The relay's idle background (membership, keep-alives) over 5 s.
b0=$(relay_bytes); c0=$(cpu_ticks); t0=$(date +%s.%N)
sleep 5
b1=$(relay_bytes); c1=$(cpu_ticks); t1=$(date +%s.%N)
idle_bps=$(echo "$b0 $b1 $t0 $t1" | awk '{ print ($2 - $1) / ($4 - $3) }')
idle_cps=$(echo "$c0 $c1 $t0 $t1" | awk '{ print ($2 - $1) / ($4 - $3) }')

batch 50 1
relay_rtt=$(mean_ms)
b0=$(relay_bytes); c0=$(cpu_ticks); t0=$(date +%s.%N)
batch "$JOBS" 16
b1=$(relay_bytes); c1=$(cpu_ticks); t1=$(date +%s.%N)
relay_done=$(verified)
relay_jps=$(echo "$t0 $t1 $relay_done" | awk '{ printf "%.0f", $3 / ($2 - $1) }')
bytes_per_job=$(echo "$b0 $b1 $t0 $t1 $idle_bps $relay_done" | awk '{ printf "%.0f", (($2 - $1) - $5 * ($4 - $3)) / $6 }')
cpu_per_job=$(echo "$c0 $c1 $t0 $t1 $idle_cps $relay_done $hz" | awk '{ printf "%.3f", (($2 - $1) - $5 * ($4 - $3)) / $7 * 1000 / $6 }')

printf '   %-34s %10s %14s %s\n' "" "mean RTT" "jobs/s @16" "verified"
printf '   %-34s %7s ms %14s %s\n' "direct (public provider)" "$direct_rtt" "$direct_jps" "$direct_done/$JOBS"
printf '   %-34s %7s ms %14s %s\n' "through a relay (NATed provider)" "$relay_rtt" "$relay_jps" "$relay_done/$JOBS"
echo
echo "== the relay's cost per relayed job (its idle background subtracted) =="
echo "   bytes on the relay's interface:  $bytes_per_job per job (in + out)"
echo "   relay CPU:                       $cpu_per_job ms per job (from clock ticks of $((1000 / hz)) ms)"
nn_wan_alive && echo "   WAN by $nn_wan_mode" || echo "   THE WAN EMULATOR DIED: these figures are not over the WAN"
