#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command: installs what is missing, builds, and starts
# swarmd in the foreground with the shipped configuration and a state
# directory inside the build tree.  Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh
./tools/build.sh build -Dbuildtype=debugoptimized

state=build/demo-state
echo
echo "== Starting swarmd (configuration etc/swarmd.yaml, state $state); Ctrl-C stops it. =="
echo
exec build/daemon/swarmd --config etc/swarmd.yaml --state-dir "$state" "$@"
