#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's second command, and what CI runs: installs what is missing,
# builds with gcc and with clang (warnings are errors in both), runs the
# whole suite twice: in the plain gcc build and under ASan+UBSan, the system
# suite (the Debian packages, booted under systemd) once, and the fuzz
# targets under libFuzzer in the clang build.
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh

# The system suite's Debian root (tests/system/make-root.sh): made once and
# kept in build/, downloading while the compilers run.  The suite waits for
# it, and skips (naming why) when it could not be made.
mkdir -p build
setsid tests/system/make-root.sh build/system-root 2>build/system-root.log &
root_pid=$!
trap 'kill -TERM -- -$root_pid 2>/dev/null || true' EXIT

./tools/build.sh build -Dbuildtype=debugoptimized
CC=clang ./tools/build.sh build-clang -Dbuildtype=debugoptimized -Dfuzzing=true
./tools/build.sh build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

passed=0 failed=0 skipped=0
status=0
for dir in build build-asan; do
	echo "== meson test in $dir =="
	meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
	set -- $(awk -f tools/count-tests.awk "$dir/meson-logs/testlog.txt")
	passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))
	# Criterion does not look at how a test's process exited, so a report
	# that a sanitizer prints at exit (a leak, say) would pass unnoticed.
	if grep -E -q 'ERROR: (Leak|Address)Sanitizer|runtime error:' "$dir/meson-logs/testlog.txt"; then
		echo "== sanitizer reports in $dir (see $dir/meson-logs/testlog.txt) =="
		grep -E -B2 -A12 'ERROR: (Leak|Address)Sanitizer|runtime error:' "$dir/meson-logs/testlog.txt" | head -80
		failed=$((failed + 1))
		status=1
	fi
done

# The Debian packages booted under systemd (tests/system/), once.
echo "== meson test --suite system in build =="
meson test -C build --suite system --print-errorlogs || status=1
set -- $(awk -f tools/count-tests.awk build/meson-logs/testlog.txt)
passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))

# The clang build's fuzz targets under libFuzzer, ASan and UBSan, each for a
# bounded time (under a minute in all).
echo "== meson test --suite fuzz in build-clang (libFuzzer) =="
meson test -C build-clang --suite fuzz --print-errorlogs || status=1
set -- $(awk -f tools/count-tests.awk build-clang/meson-logs/testlog.txt)
passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))

echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
