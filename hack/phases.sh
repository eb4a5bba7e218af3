#!/usr/bin/env bash
# Runs make targets as the timed phases of make test: one after another, saying when each
# started and how long it took, and ending with a table of the times, so that the next
# slow phase shows where it is. A phase written background:name runs in the background
# from there on, at the lowest CPU priority (nice 19), so that it takes only what the other
# phases leave idle; its output is kept and shown when it ends, and "wait" waits for it. The
# first phase that fails stops the run, as make would.
set -uo pipefail
make="${MAKE:-make}"
rows=()
background=() # "pid phase start log"
status=0

# finished records a phase's time, or its failure.
finished() {
	local phase=$1 start=$2 ok=$3
	if [ "${ok}" = 0 ]; then
		rows+=("$(printf '%-18s %5ds' "${phase}" $((SECONDS - start)))")
		printf '== phase %s: %ds\n' "${phase}" $((SECONDS - start))
	else
		rows+=("$(printf '%-18s %5ds  FAILED' "${phase}" $((SECONDS - start)))")
		status=1
	fi
}

# wait_background waits for the phases running in the background, showing their output.
wait_background() {
	local entry pid phase start log ok
	for entry in "${background[@]}"; do
		read -r pid phase start log <<<"${entry}"
		wait "${pid}"
		ok=$?
		printf '== phase %s (in the background) ended; its output:\n' "${phase}"
		cat "${log}"
		rm -f "${log}"
		finished "${phase}" "${start}" "${ok}"
	done
	background=()
}

for phase in "$@"; do
	[ "${status}" = 0 ] || break
	case "${phase}" in
	wait)
		wait_background
		;;
	background:*)
		phase="${phase#background:}"
		log="$(mktemp)"
		printf '== phase %s: started in the background at %s\n' "${phase}" "$(date -u +%H:%M:%S)"
		nice -n 19 "${make}" --no-print-directory "${phase}" >"${log}" 2>&1 &
		background+=("$! ${phase} ${SECONDS} ${log}")
		;;
	*)
		start=$SECONDS
		printf '== phase %s: started at %s\n' "${phase}" "$(date -u +%H:%M:%S)"
		"${make}" --no-print-directory "${phase}"
		finished "${phase}" "${start}" $?
		;;
	esac
done
wait_background
printf '== phase times:\n'
printf '   %s\n' "${rows[@]}"
exit "${status}"
