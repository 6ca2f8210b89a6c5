#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The layering rules of daemon/README.md, checked on the sources (the build
enforces most of them through include paths; this names what broke):

  1. a file includes only headers of its own layer or of the layers below;
  2. daemon/core is pure: no sd-event/sd-bus, ZeroMQ, SQLite, YAML, logging
     or memfds;
  3. no two modules depend on each other, directly or around a loop;
  4. swarmctl does not link SQLite or ZeroMQ.

Usage: test-layers.py SOURCE_ROOT [SWARMCTL]   (TAP on stdout)"""

import os
import re
import subprocess
import sys

# What each folder may include from, itself included.
LAYERS = {
    'daemon/basic': ['basic'],
    'daemon/core': ['basic', 'core'],
    'daemon/util': ['basic', 'util'],
    'daemon/host': ['basic', 'util', 'host'],
    'daemon/net': ['basic', 'core', 'util', 'host', 'net'],
    'daemon/market': ['basic', 'core', 'util', 'host', 'net', 'market'],
    'daemon/lending': ['basic', 'core', 'util', 'host', 'net', 'lending'],
    'daemon/jobs': ['basic', 'core', 'util', 'host', 'net', 'market', 'lending', 'jobs'],
    'client': ['basic', 'util', 'host', 'client'],
    'daemon/api': ['basic', 'core', 'util', 'host', 'net', 'market', 'lending', 'jobs', 'client', 'api'],
    'daemon': ['basic', 'core', 'util', 'host', 'net', 'market', 'lending', 'jobs', 'client', 'api', 'daemon'],
    'tools/swarmctl': ['basic', 'core', 'util', 'host', 'client', 'swarmctl'],
    # The OpenAI gateway: a client of swarmd, as swarmctl.
    'gateway': ['basic', 'util', 'host', 'client', 'gateway'],
}
FOLDER_OF = {'daemon': 'daemon', 'client': 'client', 'swarmctl': 'tools/swarmctl', 'gateway': 'gateway'}
# Headers from outside the layers: generated protocol code, the SDK, the
# build configuration.
OUTSIDE = re.compile(r'^(swarm\.pb-c|control\.pb-c|swarm-host|swarm/skill|build-config)\.h$')
CORE_FORBIDDEN = re.compile(r'^(systemd/.*|zmq\.h|sqlite3\.h|yaml\.h|log\.h|shm\.h|sys/mman\.h)$')
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)

root = sys.argv[1]
swarmctl = sys.argv[2] if len(sys.argv) > 2 else None
results = []


def check(name, problems):
    results.append((name, problems))


def folder_of_layer(layer):
    return FOLDER_OF.get(layer, 'daemon/' + layer)


def sources(folder):
    d = os.path.join(root, folder)
    return sorted(f for f in os.listdir(d) if f.endswith(('.c', '.h')))


# Which layer owns each header name.
owner = {}
for folder in LAYERS:
    layer = folder.split('/')[-1]
    for f in sources(folder):
        if f.endswith('.h'):
            owner[f] = layer

includes = {}   # (folder, file) -> [(kind, header)]
for folder in LAYERS:
    for f in sources(folder):
        with open(os.path.join(root, folder, f), encoding='utf-8') as fh:
            includes[(folder, f)] = INCLUDE.findall(fh.read())

# 1. Only downward.
problems = []
for (folder, f), incs in includes.items():
    for kind, h in incs:
        if kind != '"' or OUTSIDE.match(h):
            continue
        layer = owner.get(h)
        if layer is None:
            problems.append(f'{folder}/{f}: includes "{h}", which no layer has')
        elif layer not in LAYERS[folder]:
            problems.append(f'{folder}/{f}: includes "{h}" of {folder_of_layer(layer)}, above or beside it')
check('every include points to the same layer or one below', problems)

# 2. A pure core.
problems = [f'daemon/core/{f}: includes {h}'
            for (folder, f), incs in includes.items() if folder == 'daemon/core'
            for _, h in incs if CORE_FORBIDDEN.match(h)]
check('daemon/core includes no sd-*, zmq, sqlite, yaml, log.h or memfd header', problems)

# 3. No loops between modules: a module is a .c and its .h in one folder,
# and it depends on the modules whose headers its files include.
module_of = {}
for (folder, f) in includes:
    module_of.setdefault(f[:-2], folder)
edges = {}
for (folder, f), incs in includes.items():
    m = f[:-2]
    for kind, h in incs:
        t = h[:-2]
        if kind == '"' and h.endswith('.h') and t != m and t in module_of:
            edges.setdefault(m, set()).add(t)

problems = []
state = {}


def visit(m, stack):
    state[m] = 'open'
    stack.append(m)
    for t in sorted(edges.get(m, ())):
        if state.get(t) == 'open':
            problems.append(' -> '.join(stack[stack.index(t):] + [t]))
        elif t not in state:
            visit(t, stack)
    stack.pop()
    state[m] = 'done'


for m in sorted(module_of):
    if m not in state:
        visit(m, [])
check('no module depends on itself around a loop', problems)

# 4. swarmctl's libraries.
if swarmctl:
    out = subprocess.run(['readelf', '-d', swarmctl], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r'\(NEEDED\).*\[(.*)\]', out)
    bad = [n for n in needed if n.startswith(('libsqlite3', 'libzmq'))]
    check('swarmctl links neither SQLite nor ZeroMQ', [f'swarmctl needs {n}' for n in bad])

print(f'1..{len(results)}')
for i, (name, problems) in enumerate(results, 1):
    print(f'{"not ok" if problems else "ok"} {i} - {name}')
    for p in problems:
        print(f'# {p}')
sys.exit(1 if any(p for _, p in results) else 0)
