#!/usr/bin/env bash
# Runs make targets one after another (make test's phases), saying how long each took and
# ending with a table of the times, so that the next slow phase shows where it is. Stops
# at the first phase that fails, as make would.
set -uo pipefail
make="${MAKE:-make}"
rows=()
status=0
for phase in "$@"; do
	start=$SECONDS
	printf '== phase %s: started at %s\n' "${phase}" "$(date -u +%H:%M:%S)"
	if ! "${make}" --no-print-directory "${phase}"; then
		status=1
		rows+=("$(printf '%-18s %5ds  FAILED' "${phase}" $((SECONDS - start)))")
		break
	fi
	rows+=("$(printf '%-18s %5ds' "${phase}" $((SECONDS - start)))")
	printf '== phase %s: %ds\n' "${phase}" $((SECONDS - start))
done
printf '== phase times:\n'
printf '   %s\n' "${rows[@]}"
exit "${status}"
