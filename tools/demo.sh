#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command: installs what is missing, builds, then starts
# a small swarm on this machine — one requester and four providers, real
# swarmd processes talking CurveZMQ over 127.0.0.1 — and runs a batch of
# GEMM jobs through it with swarmctl submit.  Mid-batch one provider is
# killed (its jobs are rerouted) and one provider cheats on purpose
# (testing.corrupt_results: its wrong results are caught by Freivalds
# verification and never accepted, nor paid), and one advertises ten
# times the speed it has (testing.throughput_factor: the requester's
# hardware challenge measures it).  Nobody gets credits for free: a sixth
# daemon, "bank", holds the swarm's issuer key and mints the requester's
# credits first; verified results are paid with signed transfers that every
# node delivers through a Byzantine reliable broadcast; at the end the
# requester's balance, ledger and book of transfers are shown.  Last,
# two providers also host textgen with a small Llama-shaped model (random
# weights, written as a real GGUF file by gguf-tiny, since nothing is
# downloaded here) and a prompt goes through the swarm: generated on a
# provider, streamed, verified on the requester by teacher forcing, paid.
# Everything lives in build/demo/; the daemons are stopped on exit and on
# Ctrl-C.
#
# Environment: DEMO_JOBS (default 600), DEMO_SIZE (matrix side, default 384).
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh
./tools/build.sh build -Dbuildtype=debugoptimized

demo=build/demo
swarmd=build/daemon/swarmd
swarmctl=build/tools/swarmctl
plugins=$(pwd)/build/plugins
jobs=${DEMO_JOBS:-600}
size=${DEMO_SIZE:-384}
port=$((20000 + $$ % 20000))
names="requester alpha bravo charlie delta bank"
pids=""

say() {
	printf '\n== %s ==\n' "$*"
}

cleanup() {
	trap - EXIT INT TERM
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "Interrupted: stopping the swarm."; exit 130' INT TERM

rm -rf "$demo"
mkdir -p "$demo"
model=$(pwd)/$demo/tiny-llama.gguf
build/tools/gguf-tiny/gguf-tiny --tokenizer bpe --type q8_0 --vocab 2048 --embd 256 --layers 4 --heads 8 \
	--kv-heads 4 --ff 704 --ctx 512 "$model"
# One BLAS thread per worker: five daemons share this machine.
export OPENBLAS_NUM_THREADS=1

# Node 0 requests and lends nothing; it needs the gemm plugin only to verify
# results.  The others host gemm; charlie lies.
write_config() {
	name=$1
	dir=$demo/$name
	mkdir -p "$dir"
	{
		echo "node:"
		echo "  name: $name"
		echo "network:"
		echo "  beacon: false"
		echo "  probe_interval: 100ms"
		if [ "$name" = requester ]; then
			echo "  bind: \"tcp://127.0.0.1:$port\""
		else
			echo "  bind: \"tcp://127.0.0.1:0\""
			echo "  seeds: [\"$seed_id@tcp://127.0.0.1:$port\"]"
		fi
		echo "skills:"
		echo "  directory: \"$plugins\""
		# Every node knows the model: providers to run it, the requester
		# to verify what they return.
		echo "  options: [\"textgen.model=$model\", \"textgen.threads=1\"]"
		if [ "$name" = requester ]; then
			echo "lending:"
			echo "  policy: never"
			echo "reputation:"
			echo "  gossip_interval: 1s"
			echo "  challenge_interval: 30s"
		elif [ "$name" = bank ]; then
			: # hosts nothing: it only mints
		elif [ "$name" = alpha ] || [ "$name" = delta ]; then
			echo "  enabled: [gemm, textgen]"
			echo "  workers: 1"
		else
			echo "  enabled: [gemm]"
			echo "  workers: 1"
		fi
		[ -n "${DEMO_DEBUG:-}" ] && printf "log:\n  level: debug\n"
		echo "dbus:"
		echo "  bus: none"
		echo "credits:"
		echo "  issuers: [\"$bank_id\"]"
		if [ "$name" = bank ]; then
			echo "lending:"
			echo "  policy: never"
		fi
		if [ "$name" = charlie ]; then
			echo "testing:"
			echo "  corrupt_results: true"
		fi
		if [ "$name" = delta ]; then
			echo "testing:"
			echo "  throughput_factor: 10"
		fi
	} >"$dir/swarmd.yaml"
}

start_node() {
	name=$1
	"$swarmd" --config "$demo/$name/swarmd.yaml" --state-dir "$demo/$name/state" 2>"$demo/$name/log" &
	pids="$pids $!"
	eval "pid_$name=$!"
}

wait_for() {
	# wait_for SECONDS DESCRIPTION COMMAND...
	limit=$1 what=$2
	shift 2
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt $((limit * 10)) ]; then
			echo "Gave up waiting for $what; logs are in $demo/*/log." >&2
			exit 1
		fi
		sleep 0.1
	done
}

providers_up() {
	[ "$("$swarmctl" peers --socket "$demo/requester/state/control.sock" | grep -c '^  gemm ')" -ge 4 ]
}

say "The swarm's issuer, bank: a key that mints credits (nobody gets any for free)"
# Its key comes from a first start, so that every node's credits.issuers
# can name it.
mkdir -p "$demo/bank"
printf 'network:\n  bind: "tcp://127.0.0.1:0"\n  beacon: false\ndbus:\n  bus: none\nlending:\n  policy: never\n' \
	>"$demo/bank/first.yaml"
"$swarmd" --config "$demo/bank/first.yaml" --state-dir "$demo/bank/state" 2>"$demo/bank/log" &
bank_first=$!
wait_for 30 "the bank's first start" test -S "$demo/bank/state/control.sock"
kill "$bank_first"
wait "$bank_first" 2>/dev/null || true
bank_id=$("$swarmd" --show-identity --state-dir "$demo/bank/state")
echo "bank is node $bank_id; every node accepts its mints (credits.issuers)"

say "Starting the requester (it creates its identity on first start)"
seed_id=
write_config requester
start_node requester
wait_for 30 "the requester's control socket" test -S "$demo/requester/state/control.sock"
seed_id=$("$swarmd" --show-identity --state-dir "$demo/requester/state")
echo "requester is node $seed_id, listening on tcp://127.0.0.1:$port"

say "Starting four providers of gemm; charlie is configured to cheat, delta to overstate its speed 10x"
for n in alpha bravo charlie delta; do
	write_config "$n"
	start_node "$n"
done
wait_for 60 "the providers to join" providers_up
"$swarmctl" peers --socket "$demo/requester/state/control.sock"

say "bank mints 1000 credits to the requester: what it will pay the providers with"
write_config bank
start_node bank
requester_id=$("$swarmd" --show-identity --state-dir "$demo/requester/state")
bank_up() {
	"$swarmctl" pay --socket "$demo/bank/state/control.sock" "$requester_id" 1000000000
}
wait_for 30 "bank to mint" bank_up
requester_funded() {
	"$swarmctl" credits --socket "$demo/requester/state/control.sock" --json | grep -q '"pending": 1000000000,'
}
wait_for 30 "the mint to reach the requester" requester_funded
"$swarmctl" credits --socket "$demo/requester/state/control.sock"

challenged() {
	[ "$(grep -c 'GEMM challenge' "$demo/requester/log")" -ge 4 ]
}
say "The requester times a GEMM on each new provider (the hardware challenge)"
wait_for 30 "the hardware challenges" challenged
grep 'GEMM challenge' "$demo/requester/log" | sed 's/^swarmd: //'

export SWARM_JOBS_SOCKET="$demo/requester/state/jobs.sock"

say "One job: the requester's swarmd picks a provider, verifies the result, pays"
"$swarmctl" submit --skill gemm --input a=random:f32:${size}x${size}:1 --input b=random:f32:${size}x${size}:2 \
	--deadline 30s -o "$demo/single"

say "A batch of $jobs GEMM jobs (${size}x${size}), 16 in flight"
{
	i=0
	while [ $i -lt "$jobs" ]; do
		echo "- skill: gemm"
		echo "  inputs: {a: \"random:f32:${size}x${size}:$i\", b: \"random:f32:${size}x${size}:$((i + 100000))\"}"
		echo "  deadline: 60s"
		i=$((i + 1))
	done
} >"$demo/jobs.yaml"
echo "Batch file: $demo/jobs.yaml; verified results go to $demo/out/INDEX/c.npy"
"$swarmctl" submit --batch "$demo/jobs.yaml" --parallel 16 -o "$demo/out" >"$demo/summary.txt" &
submit_pid=$!

# Let the batch get going, then pull the plug on bravo.
sleep 1
if kill -0 $submit_pid 2>/dev/null; then
	echo
	echo ">> Killing provider bravo (SIGKILL) mid-batch: its jobs must be rerouted. <<"
	eval "kill -KILL \$pid_bravo"
else
	echo "(The batch finished before bravo could be killed; try DEMO_JOBS=1000.)"
fi

status=0
wait $submit_pid || status=$?
cat "$demo/summary.txt"

say "The requester's books: balance, what it paid each provider, its transfers"
"$swarmctl" balance --socket "$demo/requester/state/control.sock"
echo
"$swarmctl" credits --socket "$demo/requester/state/control.sock"
echo
"$swarmctl" ledger --socket "$demo/requester/state/control.sock" --limit 5
echo
"$swarmctl" peers --socket "$demo/requester/state/control.sock"

say "Text generation: a prompt through the swarm to a textgen provider"
echo "Model: $model ($(du -h "$model" | cut -f1), random weights: expect gibberish;"
echo "give textgen.model a real Llama/Qwen GGUF file for real text)."
textgen_status=0
"$swarmctl" submit --skill textgen --input prompt=str:"Once upon a time" --input max_tokens=int:48 \
	--input temperature=str:0.8 --input seed=int:7 --deadline 60s -o "$demo/textgen" || textgen_status=$?

say "What happened"
rejected=$(sed -n 's/^  rejected results *\([0-9]*\).*/\1/p' "$demo/summary.txt")
rerouted=$(sed -n 's/^  rerouted *\([0-9]*\) jobs.*/\1/p' "$demo/summary.txt")
echo "* Every result was verified on the requester with gemm's Freivalds check before"
echo "  it was accepted, paid for and written to $demo/out/."
echo "* charlie lies (testing.corrupt_results): ${rejected:-0} wrong results were caught by"
echo "  verification and never accepted; those jobs went to another provider, and"
echo "  charlie's reputation fell, so the router chooses it less and less; it was"
echo "  never paid for a wrong result (see the ledger above)."
echo "* delta advertises 10x the GFLOP/s it has; the requester's GEMM challenge timed it"
echo "  (above): caught under half its claim, it got failures on its record, and the"
echo "  router now divides its advertised speed by what it measured."
echo "* bravo was killed mid-batch: ${rerouted:-0} jobs were rerouted in all, none lost, none"
echo "  done twice (one result per job in $demo/out/)."
echo "* The textgen job ran on alpha or delta; the requester checked every generated"
echo "  token by teacher forcing (one batched pass of its own copy of the model over"
echo "  prompt + output) before paying. Its tokens are in $demo/textgen/tokens.npy."
echo "Daemon logs: $demo/*/log.  swarmctl exit status: $status (0: every job verified);"
echo "textgen: $textgen_status."
