#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# swarmctl skill inspect|run against the built skills and the misbehaving
# test skill: what a skill author sees, including every error path.
set -eu

: "${SWARMCTL:?run through meson test}" "${SKILL_BUILD_DIR:?}" "${TEST_PLUGIN_DIR:?}"
export SWARM_SKILL_PATH="$SKILL_BUILD_DIR:$TEST_PLUGIN_DIR"

tmp=$(mktemp -d /tmp/swarmctl-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0
fail() {
	echo "not ok - $*"
	echo "# output was:"
	sed 's/^/# /' "$tmp/out"
	exit 1
}
ok() {
	n=$((n + 1))
	echo "ok $n - $*"
}
# run EXPECTED_STATUS ARGS...: output in $tmp/out
run() {
	want=$1
	shift
	set +e
	"$SWARMCTL" "$@" >"$tmp/out" 2>&1
	got=$?
	set -e
	[ "$got" -eq "$want" ] || fail "swarmctl $* exited $got, expected $want"
}
expect() {
	grep -q -- "$1" "$tmp/out" || fail "no '$1' in the output of the last command"
}

run 0 skill inspect hash
expect "Skill:        hash"
expect "Callbacks:    init,fini,advertise,price,execute,verify"
expect "ABI:          1.2"
expect "throughput"
ok "inspect hash by name shows descriptor and advert"

run 0 skill inspect "$TEST_PLUGIN_DIR/testskill.so"
expect "Callbacks:    init,advertise,price,execute,verify"
ok "inspect by path"

run 0 skill inspect gemm
expect "^Inputs:"
expect "  a  *f32 tensor 2-D \[m×k\]  *required"
expect "  precision  *string  *optional"
expect "^Outputs:"
expect "  c  *f32 tensor 2-D \[m×n\]"
ok "inspect shows the inputs and outputs a skill declares"

run 0 skill inspect "$TEST_PLUGIN_DIR/testskill.so"
expect "^Inputs: *(not declared"
ok "inspect says when a skill declares nothing"

# The host checks a job against the declaration before price() sees it.
run 1 skill run gemm --input a=random:f32:3x4
expect 'REFUSED: missing input "b": an f32 tensor of 2 dimensions (k×n)'
ok "a missing input is named with its form"
run 1 skill run gemm --input a=random:f32:3x4 --input b=random:f32:4x2 --input x=int:1
expect 'input "x" is not one this skill takes (it takes: a, b, precision)'
ok "an input the skill does not take is named, with those it takes"
printf 'rawbytes' >"$tmp/raw"
run 1 skill run gemm --input "a=@$tmp/raw" --input b=random:f32:4x2
expect 'input "a" is a byte string, but must be an f32 tensor'
ok "bytes where a tensor belongs"
run 1 skill run gemm --input a=random:f32:3x4 --input b=random:f32:5x6
expect 'a is 3x4 but b is 5x6: inner dimensions differ'
ok "the skill's own check of shapes reaches the user from price()"

run 1 skill inspect "$TEST_PLUGIN_DIR/badabi.so"
expect "skill ABI 2.0, but this host runs ABI 1.x"
ok "inspect refuses another ABI major with the reason"

printf 'not an elf' >"$tmp/junk.so"
run 1 skill inspect "$tmp/junk.so"
expect "junk.so"
ok "inspect of a non-plugin names the file"

run 0 skill inspect test.renamed
expect "Skill:        test.renamed"
expect "renamed.so"
ok "inspect finds a skill by its own name when the file is named otherwise"

run 1 skill inspect no-such-skill
expect "No skill named no-such-skill"
ok "unknown skill name"

run 0 skill run hash --input data=text:abc
expect "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
expect "verify      passed"
ok "run hash: BLAKE2b-256 of abc, verified"

head -c 100000 /dev/zero >"$tmp/zeros"
run 0 skill run hash --input "data=@$tmp/zeros" --input digest-size=int:64 --repeat 20
expect "20 runs"
expect "64 bytes"
ok "run hash on a file, repeated, 64-byte digest"

run 2 skill run hash --input "data=@$tmp/missing-file"
expect "missing-file"
ok "missing input file is named"

run 1 skill run hash --input digest-size=int:3 --input data=text:x
expect 'price       REFUSED: input "digest-size" is 3, must be between 16 and 64'
ok "price() refusal is explained"

run 2 skill run hash --input nonsense
expect "expected NAME=SPEC"
ok "malformed --input"

run 0 skill run testskill --input mode=str:echo --input x=random:f32:64x8 --output-dir "$tmp/out1"
expect "verify      passed"
[ -s "$tmp/out1/y.npy" ] || fail "y.npy not written"
ok "tensor output written as .npy"

# The .npy we wrote reads back as an input.
run 0 skill run testskill --input mode=str:echo --input "x=@$tmp/out1/y.npy"
expect "f32\[64x8\]"
ok ".npy input round trip"

run 1 skill run testskill --input mode=str:wrong --input x=random:f32:16
expect "verify      FAILED: y\[0\] is wrong"
ok "a wrong result fails verification and exits 1"

run 1 skill run testskill --input mode=str:crash --input x=random:f32:16
expect "crashed (killed by signal SIGSEGV)"
expect "worker of skill testskill crashed"
ok "a crashing plugin is reported, by its own name"

run 1 skill run testskill --input mode=str:sleep --input x=random:f32:16 --deadline 200ms
expect "deadline"
ok "deadline enforced"

run 1 skill run testskill --config fail-init=1 --input x=random:f32:4
expect "init() of skill testskill failed"
ok "failed init is explained"

run 0 skill run testskill --input mode=str:stream --input x=random:f32:4
expect "^stream      one two three\[progress: 3 bytes\]$"
ok "what a skill emits while it runs is printed as it comes"

# textgen on a random-weight Llama written in real GGUF by gguf-tiny.
"$GGUF_TINY" --tokenizer bpe --type q8_0 "$tmp/tiny.gguf"
run 0 skill inspect textgen --config model="$tmp/tiny.gguf"
expect 'architecture   "llama"'
expect 'quantization   "q8_0"'
expect 'chat-template  "llama3"'
expect 'model-id       "[0-9a-f]\{64\}"'
ok "inspect textgen shows the model's metadata and identity"

run 0 skill run textgen --config model="$tmp/tiny.gguf" --input prompt=str:"Once upon a time" \
	--input max_tokens=int:12 --output-dir "$tmp/tg"
expect "^stream      "
expect "verify      passed"
expect "generated_tokens_count 12"
[ -s "$tmp/tg/tokens.npy" ] || fail "no tokens.npy"
ok "skill run textgen streams the text, verifies it and writes tokens.npy"

run 0 skill run textgen --config model="$tmp/tiny.gguf" --input "prompt_tokens=@$tmp/tg/tokens.npy" \
	--input max_tokens=int:4
expect "prompt_tokens_count 12"
ok "prompt_tokens from a .npy are used as given"

run 1 skill run textgen --config model="$tmp/missing.gguf" --input prompt=str:x
expect "missing.gguf"
ok "a missing model file is named"

run 1 skill run textgen --config model="$tmp/tiny.gguf" --input prompt=str:x --input temperature=str:hot
expect '"temperature"'
ok "a bad sampling input is named"

# The ledger verbs without a swarmd: arguments first, then exit 3.
run 2 ledger --limit 0
expect "from 1 to 10000"
run 2 ledger one two
expect 'unexpected argument "two"'
run 2 ledger "x y"
expect "is not a node id"
run 2 balance extra
expect 'unexpected argument "extra"'
ok "ledger and balance refuse bad arguments with exit 2"

run 3 balance --socket "$tmp/no-swarmd.sock"
expect "swarmd is not running"
export SWARM_CONTROL_SOCKET="$tmp/no-swarmd.sock"
run 3 ledger --json
unset SWARM_CONTROL_SOCKET
ok "balance and ledger without swarmd exit 3"

# A batch file's format is decided once: a YAML error is reported as YAML,
# at libyaml's line and column, not as a bad line of the other format.
printf -- '- skill: hash\n  inputs: {data: "text:x"\n- skill: hash\n' >"$tmp/bad1.yaml"
run 2 submit --batch "$tmp/bad1.yaml" --socket "$tmp/no-swarmd.sock"
expect "bad1.yaml:3:1: YAML syntax error: did not find expected ',' or '}' while parsing a flow mapping begun at 2:11"
cp "$tmp/bad1.yaml" "$tmp/bad1.txt"
run 2 submit --batch "$tmp/bad1.txt" --socket "$tmp/no-swarmd.sock"
expect "bad1.txt:3:1: YAML syntax error"
ok "a YAML syntax error in a batch names libyaml's line and column, whatever the extension"
printf '# one per line\nhash data=text:x\nhash data\n' >"$tmp/lines"
run 2 submit --batch "$tmp/lines" --socket "$tmp/no-swarmd.sock"
expect "lines:3: data: expected NAME=SPEC"
ok "the one-job-per-line format reports its own errors"

echo "1..$n"
