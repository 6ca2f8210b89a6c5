#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# swarm-api against a real swarm on loopback: a requester and a textgen
# provider (a tiny random-weight model in real GGUF), curl for every
# endpoint and error, a client that goes away mid-stream, API keys, and
# the official openai npm package (tests/openai/, pinned by its lock file,
# installed into the build tree) doing what a developer's code does.
set -eu

: "${SWARMD_BINARY:?run through meson test}" "${SWARM_API:?}" "${SWARMCTL:?}" "${GGUF_TINY:?}" \
  "${SKILL_BUILD_DIR:?}" "${SOURCE_ROOT:?}" "${BUILD_ROOT:?}"
for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "1..0 # SKIP $tool is not installed"; exit 0; }
done

tmp=$(mktemp -d /tmp/swarm-api-test-XXXXXX)
pids=""
cleanup() {
	[ -n "${worker:-}" ] && kill -CONT "$worker" 2>/dev/null
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() {
	echo "not ok - $*"
	for f in "$tmp"/*.log "$tmp"/*/log; do [ -f "$f" ] && { echo "# $f:"; tail -20 "$f" | sed 's/^/#   /'; }; done
	exit 1
}
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# JSON field by a dotted path, from stdin.
field() {
	python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v.get(k)
print("" if v is None else v)' "$1"
}
wait_for() {
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -le 300 ] || fail "timed out waiting for: $*"
		sleep 0.1
	done
}

"$GGUF_TINY" --tokenizer bpe --preset tiny "$tmp/tiny.gguf" >/dev/null
# A node's key before its real start, so that every config can name the
# provider as the swarm's issuer: nobody gets credits for free, the
# requester's come from the provider's mint.
make_identity() {
	mkdir -p "$1"
	printf 'network:\n  bind: "tcp://127.0.0.1:0"\n  beacon: false\ndbus:\n  bus: none\nlending:\n  policy: never\n' \
		>"$1/first.yaml"
	"$SWARMD_BINARY" --config "$1/first.yaml" --state-dir "$1/state" 2>"$1/first.log" &
	first=$!
	wait_for test -S "$1/state/control.sock"
	kill "$first"
	wait "$first" 2>/dev/null || true
	"$SWARMD_BINARY" --show-identity --state-dir "$1/state"
}
prov_id=$(make_identity "$tmp/prov")
req_id=$(make_identity "$tmp/req")
seed_port=$(free_port)
for node in req prov; do
	mkdir -p "$tmp/$node"
	{
		echo "node:"
		echo "  name: $node"
		echo "network:"
		echo "  beacon: false"
		echo "  probe_interval: 100ms"
		if [ $node = req ]; then
			echo "  bind: \"tcp://127.0.0.1:$seed_port\""
		else
			echo "  bind: \"tcp://127.0.0.1:0\""
			echo "  seeds: [\"$seed_id@tcp://127.0.0.1:$seed_port\"]"
		fi
		echo "skills:"
		echo "  directory: \"$SKILL_BUILD_DIR\""
		echo "  options: [\"textgen.model=$tmp/tiny.gguf\", \"textgen.threads=1\"]"
		[ $node = prov ] && echo "  enabled: [textgen]"
		echo "lending:"
		[ $node = req ] && echo "  policy: never" || echo "  policy: always"
		echo "dbus:"
		echo "  bus: none"
		echo "credits:"
		echo "  issuers: [\"$prov_id\"]"
	} >"$tmp/$node/swarmd.yaml"
	"$SWARMD_BINARY" --config "$tmp/$node/swarmd.yaml" --state-dir "$tmp/$node/state" 2>"$tmp/$node/log" &
	pids="$pids $!"
	prov_pid=$!
	if [ $node = req ]; then
		wait_for test -S "$tmp/req/state/control.sock"
		seed_id=$("$SWARMD_BINARY" --show-identity --state-dir "$tmp/req/state")
	fi
done
provider_seen() {
	"$SWARMCTL" peers --socket "$tmp/req/state/control.sock" | grep -q '^  textgen '
}
wait_for provider_seen
# The provider, the issuer, mints a million credits to the requester.
"$SWARMCTL" pay --socket "$tmp/prov/state/control.sock" "$req_id" 1000000000000 >/dev/null ||
	fail "the provider cannot mint to the requester"
requester_funded() {
	[ "$("$SWARMCTL" credits --socket "$tmp/req/state/control.sock" --json | field pending)" = 1000000000000 ]
}
wait_for requester_funded

api_port=$(free_port)
api="http://127.0.0.1:$api_port"
"$SWARM_API" --listen "127.0.0.1:$api_port" --jobs-socket "$tmp/req/state/jobs.sock" --max-body 65536 \
	--max-streams 4 2>"$tmp/api.log" &
api_pid=$!
pids="$pids $api_pid"
wait_for curl -sf "$api/v1/models"

# curl -s: status in $tmp/status, body in $tmp/body.
http() {
	curl -s -o "$tmp/body" -w '%{http_code}' "$@" >"$tmp/status" || true
}
expect_status() {
	[ "$(cat "$tmp/status")" = "$1" ] || fail "HTTP $(cat "$tmp/status"), expected $1: $(cat "$tmp/body")"
}

http "$api/v1/models"
expect_status 200
model=$(field data.0.id <"$tmp/body")
[ -n "$model" ] || fail "no model in $(cat "$tmp/body")"
[ "$(field data.0.swarm.providers <"$tmp/body")" = 1 ] || fail "provider count: $(cat "$tmp/body")"
ok "GET /v1/models lists the swarm's model ($model) with its providers"

http "$api/v1/chat/completions" -H 'Content-Type: application/json' \
	-d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 6, \"seed\": 2}"
expect_status 200
[ "$(field object <"$tmp/body")" = chat.completion ] || fail "$(cat "$tmp/body")"
[ "$(field choices.0.message.role <"$tmp/body")" = assistant ] || fail "$(cat "$tmp/body")"
[ "$(field usage.completion_tokens <"$tmp/body")" -ge 1 ] || fail "$(cat "$tmp/body")"
[ "$(field swarm.verified <"$tmp/body")" = True ] || fail "$(cat "$tmp/body")"
ok "POST /v1/chat/completions: routed, verified, paid, with usage and cost"

curl -sN -D "$tmp/headers" "$api/v1/completions" -H 'Content-Type: application/json' \
	-d "{\"model\": \"$model\", \"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"stream\": true}" \
	>"$tmp/stream" || fail "streamed request failed"
grep -qi '^content-type: text/event-stream' "$tmp/headers" || fail "not an event stream: $(cat "$tmp/headers")"
[ "$(tail -n 2 "$tmp/stream" | head -n 1)" = "data: [DONE]" ] || fail "stream does not end with [DONE]: $(tail -3 "$tmp/stream")"
grep -q '"finish_reason":"\(length\|stop\)"' "$tmp/stream" || fail "no final chunk: $(cat "$tmp/stream")"
[ "$(grep -c '^data: {' "$tmp/stream")" -ge 2 ] || fail "no text chunks before the end: $(cat "$tmp/stream")"
ok "POST /v1/completions with stream: Server-Sent Events, text as it comes, then finish and [DONE]"

http "$api/v1/chat/completions" -d '{"model": "x", "messages": [}'
expect_status 400
grep -q 'not valid JSON' "$tmp/body" || fail "$(cat "$tmp/body")"
http "$api/v1/chat/completions" -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": \"5\"}"
expect_status 400
[ "$(field error.param <"$tmp/body")" = max_tokens ] || fail "$(cat "$tmp/body")"
[ "$(field error.type <"$tmp/body")" = invalid_request_error ] || fail "$(cat "$tmp/body")"
ok "malformed JSON and a wrong type are 400 with an error object naming the field"

http "$api/v1/chat/completions" -d '{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}'
expect_status 404
[ "$(field error.code <"$tmp/body")" = model_not_found ] || fail "$(cat "$tmp/body")"
http "$api/v1/nothing"
expect_status 404
http "$api/v1/chat/completions"
expect_status 405
head -c 100000 /dev/zero | tr '\0' 'a' >"$tmp/big"
http "$api/v1/completions" --data-binary "@$tmp/big"
expect_status 413
ok "unknown model 404, unknown path 404, wrong method 405, huge body 413"

# A client that goes away mid-job: its job is cancelled, not paid for, and
# the gateway and swarmd serve on.  The provider's worker is stopped
# meanwhile (swarmd itself answers on, so the swarm still trusts it), so
# that the job is still running when the client leaves.
worker=$(pgrep -P "$prov_pid" -f swarm-worker | head -1)
[ -n "$worker" ] || fail "no textgen worker under the provider"
kill -STOP "$worker"
curl -sN --max-time 1 "$api/v1/completions" -d "{\"model\": \"$model\", \"prompt\": \"Go on\", \"stream\": true}" \
	>"$tmp/gone.out" 2>&1 || true
curl -s --max-time 1 "$api/v1/completions" -d "{\"model\": \"$model\", \"prompt\": \"Go on\"}" >>"$tmp/gone.out" 2>&1 || true
i=0
until [ "$(grep -c 'went away before its job finished; cancelling it' "$tmp/api.log")" -ge 2 ]; do
	i=$((i + 1))
	[ $i -le 30 ] || fail "the gateway did not cancel the jobs of clients that went away: $(cat "$tmp/gone.out")"
	sleep 0.1
done
kill -CONT "$worker"
kill -0 "$api_pid" || fail "swarm-api died"
http "$api/v1/models"
expect_status 200
ok "a client leaving (streamed or not) cancels its job at once; swarm-api serves on"

# API keys: hashed at rest; a request without the key is 401.
key=$("$SWARM_API" --hash-key s3cret)
echo "$key" >"$tmp/keys"
key_port=$(free_port)
"$SWARM_API" --listen "127.0.0.1:$key_port" --jobs-socket "$tmp/req/state/jobs.sock" --api-keys "$tmp/keys" \
	2>"$tmp/api-keys.log" &
pids="$pids $!"
wait_for curl -s "http://127.0.0.1:$key_port/v1/models"
http "http://127.0.0.1:$key_port/v1/models"
expect_status 401
http "http://127.0.0.1:$key_port/v1/models" -H 'Authorization: Bearer s3cret'
expect_status 200
grep -q s3cret "$tmp/keys" && fail "the key file holds the key itself"
set +e
"$SWARM_API" --listen "0.0.0.0:$(free_port)" --jobs-socket "$tmp/req/state/jobs.sock" 2>"$tmp/open.log"
status=$?
set -e
[ $status -eq 78 ] && grep -q 'without --api-keys' "$tmp/open.log" || fail "listening beyond loopback without keys: exit $status"
ok "API keys: 401 without, 200 with; beyond loopback without keys is refused (exit 78)"

# The official openai package, as a developer's code uses it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	ok "# SKIP node or npm is not installed"
else
	client=$BUILD_ROOT/openai-client
	if ! cmp -s "$SOURCE_ROOT/tests/openai/package-lock.json" "$client/package-lock.json" 2>/dev/null ||
	   [ ! -d "$client/node_modules/openai" ]; then
		rm -rf "$client"
		mkdir -p "$client"
		cp "$SOURCE_ROOT/tests/openai/package.json" "$SOURCE_ROOT/tests/openai/package-lock.json" \
			"$SOURCE_ROOT/tests/openai/test.mjs" "$client/"
		timeout 300 npm ci --prefix "$client" --no-audit --no-fund >"$tmp/npm.log" 2>&1 || true
	fi
	cp "$SOURCE_ROOT/tests/openai/test.mjs" "$client/"
	if [ ! -d "$client/node_modules/openai" ]; then
		ok "# SKIP the openai package could not be installed from the npm registry: $(tail -1 "$tmp/npm.log")"
	else
		BASE_URL="$api/v1" MODEL="$model" timeout 120 node "$client/test.mjs" >"$tmp/node.log" 2>&1 \
			|| { cat "$tmp/node.log"; fail "the openai package's checks failed"; }
		sed 's/^/# openai: /' "$tmp/node.log"
		ok "the official openai package: models.list, chat (plain and streamed), completions, a 404"
	fi
fi

kill "$api_pid"
wait "$api_pid" 2>/dev/null || true
echo "1..$n"
