# scripts/lib.sh: what .ci/run and the scripts beside this one share. Source it.

# wait_for WHAT COMMAND...: run COMMAND every half second until it succeeds,
# for up to $WAIT_SECONDS (60) seconds.
wait_for() {
	local what=$1 seconds=${WAIT_SECONDS:-60}
	shift
	for _ in $(seq 1 $((seconds * 2))); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	echo "$what did not happen within $seconds s" >&2
	return 1
}
