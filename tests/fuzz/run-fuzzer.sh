#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one libFuzzer target for a bounded time, as a test.
# Usage: run-fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR [RUNS]
#
# RUNS (default SECONDS × 60,000, what the decoders do in SECONDS) bounds
# the run; 4 × SECONDS only caps it on a slow or busy machine.
#
# libFuzzer writes the inputs it finds into its first corpus directory, so
# that is a fresh temporary one and the committed seeds (read-only as far as
# we are concerned) come second.  A crashing input is kept in ARTIFACT_DIR,
# to reproduce with "FUZZER FILE".  Failures exit 1 (libFuzzer's own 77
# would read as "skipped" to meson).
set -eu

fuzzer=$1
seeds=$2
seconds=$3
artifacts=$4
runs=${5:-$((seconds * 60000))}

work=$(mktemp -d "${TMPDIR:-/tmp}/swarm-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$artifacts"

status=0
# A fixed seed and a fixed number of runs: the suite's fuzzing is the same
# on every machine (a red CI run can be replayed); explore with other
# seeds by hand, e.g. SWARM_FUZZ_SEED=0 (random) and a longer time.
"$fuzzer" \
	-seed="${SWARM_FUZZ_SEED:-1}" \
	-runs="$runs" \
	-max_total_time=$((seconds * 4)) \
	-rss_limit_mb=1024 \
	-timeout=10 \
	-error_exitcode=1 \
	-print_final_stats=1 \
	-artifact_prefix="$artifacts/$(basename "$fuzzer")-" \
	"$work" "$seeds" || status=$?
exit $status
