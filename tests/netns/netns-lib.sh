# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=sh
# The network-namespace harness (issue 21), sourced by tests/netns/test-*.sh
# and bench/bench-netns.sh: real swarmd processes in their own network
# namespaces on one machine.
#
#   nn_require                  skip (TAP "1..0 # SKIP why", exit 0) unless
#                               root, CAP_NET_ADMIN, ip, iptables, nft work
#   nn_init                     the bridge namespace: one bridge, attached
#                               to no host interface
#   nn_add_public NAME SITE H   a namespace on the bridge, 10.200.SITE.H/17
#   nn_add_home NAME SITE H K   a home: a NAT router namespace NAME-gw on
#                               the bridge (10.200.SITE.H/17, masquerade,
#                               no port forwarding, new inbound dropped) and
#                               NAME behind it at 10.200.(128+K).2/24
#   nn_wan DELAY JITTER LOSS    delay ± jitter (ms) and loss (%) between
#                               sites: tc netem where the kernel has it,
#                               else tests/netns/wan-emu (NFQUEUE)
#   nn_exec NAME CMD...         runs CMD in namespace NAME
#   nn_spawn NAME LOG CMD...    the same in the background; pid in $nn_pid,
#                               killed by nn_cleanup
#   nn_cleanup                  kills what nn_spawn started, deletes every
#                               namespace this run made (trap'd by nn_init)
#
# A site is a /24 of 10.200.0.0/17 (10.200.SITE.0/24, SITE < 128); homes
# live at 10.200.128.0/17, which no bridge namespace routes to.  Nothing is
# attached to or routed toward the host's interfaces: the bridge lives in
# its own namespace, no namespace has a default route but the homes' (to
# their router), and the routers forward only between their two veths.
# Namespaces are named "swn<PID>-…", so concurrent runs do not collide and
# nn_cleanup removes only this run's.

nn_prefix="swn$$"
nn_pids=""
nn_namespaces=""
nn_dir=""
nn_wan_mode=""
nn_wan_pid=""
nn_ifindex=0

nn_skip() {
	echo "1..0 # SKIP $*"
	exit 0
}

nn_require() {
	[ "$(id -u)" -eq 0 ] || nn_skip "needs root (network namespaces, veth, NAT)"
	for tool in ip iptables nft python3 timeout; do
		command -v "$tool" >/dev/null 2>&1 ||
			nn_skip "$tool is not installed (tools/install-deps.sh installs iproute2, iptables, nftables)"
	done
	ip netns add "${nn_prefix}-probe" 2>/dev/null ||
		nn_skip "cannot create a network namespace (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	if ! ip -n "${nn_prefix}-probe" link add nnprobe0 type veth peer name nnprobe1 2>/dev/null ||
	    ! ip -n "${nn_prefix}-probe" link add nnbr0 type bridge 2>/dev/null; then
		ip netns del "${nn_prefix}-probe" 2>/dev/null
		nn_skip "the kernel cannot make veth pairs or bridges in a namespace"
	fi
	if ! ip netns exec "${nn_prefix}-probe" nft add table inet nnprobe 2>/dev/null; then
		ip netns del "${nn_prefix}-probe" 2>/dev/null
		nn_skip "nftables does not work here (CONFIG_NF_TABLES)"
	fi
	ip netns del "${nn_prefix}-probe"
}

nn_cleanup() {
	for p in $nn_pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	# Bounded: what ignores TERM for 5 s is killed.
	i=0
	for p in $nn_pids; do
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	nn_pids=""
	for ns in $nn_namespaces; do
		ip netns del "$ns" 2>/dev/null || true
	done
	nn_namespaces=""
	if [ -n "$nn_dir" ] && [ -z "${NN_KEEP:-}" ]; then rm -rf "$nn_dir"; fi
	nn_dir=""
}

nn_ns() {
	ip netns add "$1" || return 1
	nn_namespaces="$1 $nn_namespaces"
	ip -n "$1" link set lo up
}

# nn_init [DIR]: the work folder (made with mktemp unless given) and the
# bridge namespace.  Installs the cleanup trap.
nn_init() {
	trap nn_cleanup EXIT
	trap 'exit 130' INT TERM
	nn_dir=${1:-$(mktemp -d /tmp/swarm-netns-XXXXXX)}
	nn_ns "${nn_prefix}-br"
	ip -n "${nn_prefix}-br" link add br0 type bridge
	ip -n "${nn_prefix}-br" link set br0 up
}

# Joins namespace $1's interface $2 to the bridge with address $3.
nn_attach() {
	nn_ifindex=$((nn_ifindex + 1))
	ip link add "$2" netns "$1" type veth peer name "p$nn_ifindex" netns "${nn_prefix}-br"
	ip -n "${nn_prefix}-br" link set "p$nn_ifindex" master br0
	ip -n "${nn_prefix}-br" link set "p$nn_ifindex" up
	ip -n "$1" addr add "$3/17" dev "$2"
	ip -n "$1" link set "$2" up
}

nn_add_public() {
	ns="${nn_prefix}-$1"
	nn_ns "$ns"
	nn_attach "$ns" eth0 "10.200.$2.$3"
}

nn_add_home() {
	gw="${nn_prefix}-$1-gw"
	ns="${nn_prefix}-$1"
	lan="10.200.$((128 + $4))"
	nn_ns "$gw"
	nn_ns "$ns"
	nn_attach "$gw" wan "10.200.$2.$3"
	ip link add lan netns "$gw" type veth peer name eth0 netns "$ns"
	ip -n "$gw" addr add "$lan.1/24" dev lan
	ip -n "$gw" link set lan up
	ip -n "$ns" addr add "$lan.2/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$lan.1"
	ip netns exec "$gw" sysctl -qw net.ipv4.ip_forward=1
	# A home router: masquerade out of wan; from wan only what answers a
	# connection made from inside (no port forwarding).
	ip netns exec "$gw" nft -f - <<-EOF
	table ip home {
		chain forward {
			type filter hook forward priority 0; policy drop;
			ct state established,related accept
			iifname "lan" oifname "wan" accept
		}
		chain postrouting {
			type nat hook postrouting priority 100;
			oifname "wan" masquerade
		}
	}
	EOF
}

nn_netem_works() {
	ip -n "${nn_prefix}-br" link add nnq0 type dummy 2>/dev/null || return 1
	ok=1
	ip netns exec "${nn_prefix}-br" tc qdisc add dev nnq0 root netem delay 1ms 2>/dev/null && ok=0
	ip -n "${nn_prefix}-br" link del nnq0
	return $ok
}

# nn_wan DELAY_MS JITTER_MS LOSS_PERCENT
nn_wan() {
	if [ "${NN_WAN:-auto}" != nfq ] && nn_netem_works; then
		# netem on every bridge port's egress: each packet crosses one
		# port out, so it is delayed once (within a site too).
		nn_wan_mode=netem
		for port in $(ip -n "${nn_prefix}-br" -o link show master br0 | sed -n 's/^[0-9]*: \(p[0-9]*\)@.*/\1/p'); do
			ip netns exec "${nn_prefix}-br" tc qdisc add dev "$port" root netem \
				delay "$1ms" "$2ms" loss "$3%"
		done
	else
		: "${NN_WAN_EMU:?NN_WAN_EMU names the wan-emu binary}"
		# No sch_netem in this kernel: bridged IPv4 through NFQUEUE to
		# wan-emu, which delays or drops between sites; --queue-bypass
		# lets packets through should it be gone.
		nn_wan_mode="wan-emu (no netem in this kernel)"
		ip netns exec "${nn_prefix}-br" sysctl -qw net.bridge.bridge-nf-call-iptables=1 ||
			nn_skip "br_netfilter is not available, and neither is netem"
		ip netns exec "${nn_prefix}-br" iptables -A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass ||
			nn_skip "iptables cannot queue (NFQUEUE), and netem is not available"
		nn_spawn br "$nn_dir/wan-emu.log" "$NN_WAN_EMU" --queue 0 --delay "$1" --jitter "$2" \
			--loss "$3" --seconds 1800 --stats "$nn_dir/wan-emu.stats"
		nn_wan_pid=$nn_pid
		sleep 0.2
		if ! kill -0 "$nn_pid" 2>/dev/null; then
			rc=0
			wait "$nn_pid" || rc=$?
			# 77: the kernel has no NFQUEUE for it (an environment's
			# limit, like no netem); anything else is a bug.
			[ $rc -ne 77 ] || nn_skip "neither netem nor NFQUEUE: $(head -1 "$nn_dir/wan-emu.log")"
			cat "$nn_dir/wan-emu.log"
			return 1
		fi
	fi
}

# Still emulating?  wan-emu gone would let packets pass undelayed
# (--queue-bypass): a test checks this at its end, so that its figures were
# measured over the WAN it claims.
nn_wan_alive() {
	[ -z "${nn_wan_pid:-}" ] || kill -0 "$nn_wan_pid" 2>/dev/null
}

nn_exec() {
	ns="${nn_prefix}-$1"
	shift
	ip netns exec "$ns" "$@"
}

nn_spawn() {
	ns="${nn_prefix}-$1"
	log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	nn_pid=$!
	nn_pids="$nn_pids $nn_pid"
}

# nn_unspawn PID: kills one process nn_spawn started (SIGKILL: a crash).
nn_unspawn() {
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# ---- swarmd in the namespaces ----

# nn_node_config NAME BIND_ADDR [EXTRA YAML for network:] — writes
# $nn_dir/NAME/swarmd.yaml; seeds come from $nn_seeds.
nn_node_config() {
	mkdir -p "$nn_dir/$1"
	{
		echo "node:"
		echo "  name: $1"
		echo "network:"
		echo "  bind: \"tcp://$2:7946\""
		echo "  beacon: false"
		echo "  probe_interval: ${NN_PROBE_INTERVAL:-500ms}"
		if [ -n "${nn_seeds:-}" ]; then echo "  seeds: [$nn_seeds]"; fi
		if [ -n "${3:-}" ]; then printf '%s\n' "$3"; fi
		echo "dbus:"
		echo "  bus: none"
		echo "lending:"
		echo "  policy: always"
		if [ -n "${nn_issuers:-}" ]; then printf 'credits:\n  issuers: [%s]\n' "$nn_issuers"; fi
		if [ -n "${4:-}" ]; then printf '%s\n' "$4"; fi
	} >"$nn_dir/$1/swarmd.yaml"
}

# nn_make_identity NAME BIND_ADDR: starts swarmd once in NAME's namespace,
# so that it creates its identity, and stops it: an issuer's id must be in
# every node's credits.issuers before they start (no one has credits for
# free: jobs are paid from what an issuer minted).
nn_make_identity() {
	nn_node_config "$1" "$2"
	nn_spawn "$1" "$nn_dir/$1/first-log" "$SWARMD_BINARY" --config "$nn_dir/$1/swarmd.yaml" \
		--state-dir "$nn_dir/$1/state"
	i=0
	until [ -S "$nn_dir/$1/state/control.sock" ]; do
		i=$((i + 1))
		[ $i -le 300 ] || return 1
		sleep 0.1
	done
	kill -TERM "$nn_pid"
	wait "$nn_pid" 2>/dev/null || true
	rm -f "$nn_dir/$1/state/control.sock" "$nn_dir/$1/state/jobs.sock"
}

# nn_mint ISSUER NODE MICROCREDITS: the issuer mints for NODE; waits (30 s
# at most) until NODE has delivered the mint.
nn_mint() {
	to=$(nn_node_id "$2")
	nn_ctl "$1" pay "$to" "$3" >/dev/null || return 1
	i=0
	until nn_ctl "$2" credits --json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)
sys.exit(0 if c["balance"] + c["pending"] >= int(sys.argv[1]) else 1)' "$3"; do
		i=$((i + 1))
		[ $i -le 300 ] || return 1
		sleep 0.1
	done
}

nn_node_id() {
	"$SWARMD_BINARY" --show-identity --state-dir "$nn_dir/$1/state"
}

nn_start_node() {
	nn_spawn "$1" "$nn_dir/$1/log" "$SWARMD_BINARY" --config "$nn_dir/$1/swarmd.yaml" \
		--state-dir "$nn_dir/$1/state"
	eval "nn_pid_$(echo "$1" | tr -c 'a-zA-Z0-9_\n' _)=$nn_pid"
}

nn_ctl() {
	node=$1
	shift
	"$SWARMCTL" "$@" --socket "$nn_dir/$node/state/control.sock"
}

# Number of peers node $1 sees alive (itself included).
nn_alive() {
	nn_ctl "$1" peers --json 2>/dev/null | grep -c '"state": "alive"' || true
}

# nn_rtt_ms FROM ADDR: median TCP handshake time (ms) from namespace FROM
# to ADDR, port 9 (nothing listens: the refusal is the answer), 9 tries.
nn_rtt_ms() {
	nn_exec "$1" python3 -c '
import socket, sys, time
ts = []
for _ in range(9):
    s = socket.socket()
    s.settimeout(2)
    t = time.monotonic()
    try:
        s.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        pass
    except OSError:
        continue
    finally:
        s.close()
    ts.append((time.monotonic() - t) * 1000)
ts.sort()
print(int(ts[len(ts) // 2]) if ts else -1)' "$2"
}
