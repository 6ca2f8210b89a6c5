#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The bash completion of swarmctl, as built: verbs, sub-verbs, each verb's
# options, skill names from SWARM_SKILL_PATH, and files where a path goes.
set -eu

completion=${1:?usage: test-completion.sh BUILT-COMPLETION}
: "${SKILL_BUILD_DIR:?run through meson test}"
export SWARM_SKILL_PATH=$SKILL_BUILD_DIR
# shellcheck source=/dev/null
. "$completion"

n=0
# complete WORD...: the completions of the last word
complete_words() {
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMPREPLY=()
	_swarmctl
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}
check() {
	want=$1
	shift
	got=$(complete_words "$@")
	case " $got" in
		*" $want "*) n=$((n + 1)); echo "ok $n - '$*' offers $want" ;;
		*) echo "not ok - '$*' offers '$got', not $want"; exit 1 ;;
	esac
}
check_not() {
	bad=$1
	shift
	got=$(complete_words "$@")
	case " $got" in
		*" $bad "*) echo "not ok - '$*' offers $bad: '$got'"; exit 1 ;;
		*) n=$((n + 1)); echo "ok $n - '$*' does not offer $bad" ;;
	esac
}

check submit swarmctl su
check status swarmctl st
check inspect swarmctl skill ""
check gemm swarmctl skill inspect ""
check hash swarmctl skill run ha
check --input swarmctl skill run gemm --in
check --batch swarmctl submit --ba
check gemm swarmctl submit --skill ""
check off swarmctl lend ""
check schedule swarmctl policy sch
check --window swarmctl policy schedule --
check --limit swarmctl ledger --
check credits swarmctl cr
check pay swarmctl p
check --socket swarmctl pay --
check_not --limit swarmctl peers --
check --system swarmctl status --
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/jobs.yaml"
check "$tmp/jobs.yaml" swarmctl submit --batch "$tmp/jo"
echo "1..$n"
