# SPDX-License-Identifier: LGPL-2.1-or-later
# fish completion for swarmctl(1)

function __swarmctl_skills
        for dir in (string split : -- "$SWARM_SKILL_PATH") @SKILLDIR@
                test -d "$dir"; or continue
                for f in $dir/*.so $dir/*/*.so
                        string replace -r '.*/(.*)\.so$' '$1' -- $f
                end
        end
end

set -l verbs skill submit peers balance ledger credits pay status jobs lend policy pause resume
complete -c swarmctl -f
complete -c swarmctl -n "not __fish_seen_subcommand_from $verbs" -a "$verbs"
complete -c swarmctl -n "not __fish_seen_subcommand_from $verbs" -l version -d 'print the version'
complete -c swarmctl -l help -s h -d 'show help'

complete -c swarmctl -n '__fish_seen_subcommand_from skill; and not __fish_seen_subcommand_from inspect run' -a 'inspect run'
complete -c swarmctl -n '__fish_seen_subcommand_from inspect run' -a '(__swarmctl_skills)' -d skill
complete -c swarmctl -n '__fish_seen_subcommand_from inspect run' -l config -s c -r -d 'KEY=VALUE for init()'
complete -c swarmctl -n '__fish_seen_subcommand_from run' -l input -s i -r -d 'NAME=SPEC'
complete -c swarmctl -n '__fish_seen_subcommand_from run' -l deadline -s d -r
complete -c swarmctl -n '__fish_seen_subcommand_from run' -l repeat -s n -r
complete -c swarmctl -n '__fish_seen_subcommand_from run submit' -l output-dir -s o -r -F

complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l skill -s k -r -a '(__swarmctl_skills)'
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l input -s i -r -d 'NAME=SPEC'
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l max-price -s p -r
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l deadline -s d -r
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l hedge
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l batch -s b -r -F
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l parallel -s j -r
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l verbose -s v
complete -c swarmctl -n '__fish_seen_subcommand_from submit' -l quiet -s q

complete -c swarmctl -n '__fish_seen_subcommand_from submit peers balance ledger credits pay' -l socket -s s -r -F
complete -c swarmctl -n '__fish_seen_subcommand_from peers balance ledger credits pay status jobs' -l json
complete -c swarmctl -n '__fish_seen_subcommand_from ledger' -l limit -s n -r

complete -c swarmctl -n '__fish_seen_subcommand_from lend; and not __fish_seen_subcommand_from on off' -a 'on off'
complete -c swarmctl -n '__fish_seen_subcommand_from policy; and not __fish_seen_subcommand_from always never idle schedule' -a 'always never idle schedule'
complete -c swarmctl -n '__fish_seen_subcommand_from schedule' -l window -r -d '"[DAYS ]HH:MM-HH:MM"'
complete -c swarmctl -n '__fish_seen_subcommand_from status jobs lend policy pause resume' -l system -d 'the system bus'
complete -c swarmctl -n '__fish_seen_subcommand_from status jobs lend policy pause resume' -l user -d 'the session bus'
