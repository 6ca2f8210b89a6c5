#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Configures (or reconfigures) and builds one build directory.
# Usage: tools/build.sh DIR [MESON SETUP OPTIONS...]
set -eu
cd "$(dirname "$0")/.."

dir=$1
shift
if [ -f "$dir/build.ninja" ]; then
	meson setup --reconfigure "$dir" "$@" >/dev/null
else
	meson setup "$dir" "$@" >/dev/null
fi
meson compile -C "$dir"
