#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's second command, and what CI runs: installs what is missing,
# builds with gcc and with clang (warnings are errors in both), and runs the
# whole suite twice: in the plain gcc build and under ASan+UBSan.
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh

./tools/build.sh build -Dbuildtype=debugoptimized
CC=clang ./tools/build.sh build-clang -Dbuildtype=debugoptimized
./tools/build.sh build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

passed=0 failed=0 skipped=0
status=0
for dir in build build-asan; do
	echo "== meson test in $dir =="
	meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
	set -- $(awk -f tools/count-tests.awk "$dir/meson-logs/testlog.txt")
	passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))
done

echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
