#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The long fuzzing run, weekly or before a release: every fuzz target of a
# -Dfuzzing=true build (one per tests/fuzz/corpus/ folder) for RUNS
# executions each from a random seed, JOBS targets at a time, through
# tests/fuzz/run-fuzzer.sh as the suite's short runs go.
#
# Usage: [JOBS=N] tools/fuzz-long.sh [BUILD_DIR [RUNS]]
#        (defaults: build-clang, 2,000,000 runs, JOBS = the CPUs)
#
# Each target's log is BUILD_DIR/fuzz-long/TARGET.log; a crash leaves its
# input in BUILD_DIR/fuzz-artifacts/, to replay with
# "BUILD_DIR/tests/fuzz/fuzz-TARGET FILE".  Exits 1 if any target failed.
set -eu
cd "$(dirname "$0")/.."

# One target (the loop below runs this script once per target).
if [ "${1:-}" = "--one" ]; then
	t=$2
	log="$FUZZ_LONG_BUILD/fuzz-long/$t.log"
	if SWARM_FUZZ_SEED=0 tests/fuzz/run-fuzzer.sh "$FUZZ_LONG_BUILD/tests/fuzz/fuzz-$t" "tests/fuzz/corpus/$t" \
		"$FUZZ_LONG_SECONDS" "$FUZZ_LONG_BUILD/fuzz-artifacts" "$FUZZ_LONG_RUNS" >"$log" 2>&1; then
		echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
		exit 0
	fi
	echo "$t: FAILED, see $log" >&2
	exit 1
fi

build=${1:-build-clang}
runs=${2:-2000000}
jobs=${JOBS:-$(nproc)}

if ! grep -q '"name": "fuzzing", "value": true' "$build/meson-info/intro-buildoptions.json" 2>/dev/null; then
	echo "$build is not a -Dfuzzing=true build: CC=clang tools/build.sh $build -Dfuzzing=true" >&2
	exit 2
fi
mkdir -p "$build/fuzz-long"

# run-fuzzer.sh caps a run at 4 × SECONDS: well past what RUNS takes at
# the slowest target's rate (a thousand or two runs a second).
export FUZZ_LONG_BUILD="$build" FUZZ_LONG_RUNS="$runs" FUZZ_LONG_SECONDS=$((runs / 250 + 60))
ls tests/fuzz/corpus | xargs -P "$jobs" -n 1 "$0" --one || exit 1
