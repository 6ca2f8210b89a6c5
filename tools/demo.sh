#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command: installs what is missing, builds, runs one
# gemm job through a real worker with swarmctl, then starts swarmd in the
# foreground with the shipped configuration (plus a drop-in that hosts the
# skills built here) and a state directory inside the build tree.  Stop it
# with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."

./tools/install-deps.sh
./tools/build.sh build -Dbuildtype=debugoptimized

# The shipped configuration plus one drop-in, the way a site adds its own
# settings without editing the packaged file.
demo=build/demo
state=$demo/state
mkdir -p "$demo/swarmd.yaml.d"
cp etc/swarmd.yaml "$demo/swarmd.yaml"
{
	echo "skills:"
	echo "  enabled: [hash, gemm]"
	echo "  directory: $(pwd)/build/plugins"
	echo "  workers: 2"
} >"$demo/swarmd.yaml.d/50-demo.yaml"

echo
echo "== One gemm job through a real worker: price, execute, Freivalds verify =="
SWARM_SKILL_PATH=build/plugins build/tools/swarmctl skill run gemm \
	--input a=random:f32:256x512 --input b=random:f32:512x128
echo
echo "== Starting swarmd ($demo/swarmd.yaml and its drop-in, state $state); Ctrl-C stops it. =="
echo
exec build/daemon/swarmd --config "$demo/swarmd.yaml" --state-dir "$state" "$@"
