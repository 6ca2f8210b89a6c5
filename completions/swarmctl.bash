# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for swarmctl(1)

# Skill names: the .so files in $SWARM_SKILL_PATH and the installed skill
# directory (a skill may also be named by its descriptor; those need the
# plugin loaded, which a completion should not do).
__swarmctl_skills() {
        local dir f
        local IFS=:
        for dir in ${SWARM_SKILL_PATH:-} @SKILLDIR@; do
                [ -d "$dir" ] || continue
                for f in "$dir"/*.so "$dir"/*/*.so; do
                        [ -e "$f" ] || continue
                        f=${f##*/}
                        printf '%s\n' "${f%.so}"
                done
        done
}

_swarmctl() {
        local cur prev verb= sub= i
        COMPREPLY=()
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}

        local verbs='skill submit peers balance ledger credits pay status jobs lend policy pause resume'
        local bus_opts='--system --user --json --help'

        # The verb (and skill's sub-verb) are the first words that are not options.
        for ((i = 1; i < COMP_CWORD; i++)); do
                case ${COMP_WORDS[i]} in
                        -*) ;;
                        *) if [ -z "$verb" ]; then verb=${COMP_WORDS[i]}
                           elif [ -z "$sub" ]; then sub=${COMP_WORDS[i]}; fi ;;
                esac
        done

        if [ -z "$verb" ]; then
                COMPREPLY=($(compgen -W "$verbs --help --version" -- "$cur"))
                return
        fi

        # Options that take a value.
        case $prev in
                -b|--batch|-o|--output-dir)
                        COMPREPLY=($(compgen -f -- "$cur")); return ;;
                -s|--socket)
                        COMPREPLY=($(compgen -f -- "$cur")); return ;;
                -k|--skill)
                        COMPREPLY=($(compgen -W "$(__swarmctl_skills)" -- "$cur")); return ;;
                -i|--input|-c|--config|-p|--max-price|-d|--deadline|-j|--parallel|-n|--limit|--repeat|--window)
                        return ;;
        esac

        case $verb in
                skill)
                        if [ -z "$sub" ]; then
                                COMPREPLY=($(compgen -W 'inspect run' -- "$cur"))
                        elif [[ $cur == -* ]]; then
                                if [ "$sub" = run ]; then
                                        COMPREPLY=($(compgen -W '--input --config --deadline --repeat --output-dir --help' -- "$cur"))
                                else
                                        COMPREPLY=($(compgen -W '--config --help' -- "$cur"))
                                fi
                        elif [[ $cur == */* ]]; then
                                COMPREPLY=($(compgen -f -X '!*.so' -- "$cur") $(compgen -d -- "$cur"))
                        else
                                COMPREPLY=($(compgen -W "$(__swarmctl_skills)" -- "$cur"))
                        fi ;;
                submit)
                        COMPREPLY=($(compgen -W '--skill --input --max-price --deadline --hedge --output-dir --batch --parallel --verbose --quiet --socket --help' -- "$cur")) ;;
                peers|balance|credits|pay)
                        COMPREPLY=($(compgen -W '--socket --json --help' -- "$cur")) ;;
                ledger)
                        COMPREPLY=($(compgen -W '--socket --json --limit --help' -- "$cur")) ;;
                lend)
                        if [ -z "$sub" ] && [[ $cur != -* ]]; then
                                COMPREPLY=($(compgen -W 'on off' -- "$cur"))
                        else
                                COMPREPLY=($(compgen -W "$bus_opts" -- "$cur"))
                        fi ;;
                policy)
                        if [ -z "$sub" ] && [[ $cur != -* ]]; then
                                COMPREPLY=($(compgen -W 'always never idle schedule' -- "$cur"))
                        elif [ "$sub" = schedule ]; then
                                COMPREPLY=($(compgen -W "--window $bus_opts" -- "$cur"))
                        else
                                COMPREPLY=($(compgen -W "$bus_opts" -- "$cur"))
                        fi ;;
                status|jobs|pause|resume)
                        COMPREPLY=($(compgen -W "$bus_opts" -- "$cur")) ;;
        esac
}

complete -F _swarmctl swarmctl
