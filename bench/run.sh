#!/bin/sh
# `make bench` and `make soak`: build the servers and the load generator,
# then bench/cmd/benchrun drives them (the table goes to stdout,
# bench-results/latest.md and docs/bench.md).
# Environment: GO (go); BENCH_D (5s per echo load and server), BENCH_ROUNDS
# (3), BENCH_SOAK (0: no soak; e.g. 10m), BENCH_FLAGS (more benchrun flags,
# e.g. "-skip-memory -skip-hub", "-servers sockjsd -skip-echo -skip-memory
# -skip-gateway" for the hub rows alone, or "-servers sockjsd,igm"), BENCH_MICRO (1:
# Go micro-benchmarks first; 0: skip). `bench/run.sh soak` runs the soak
# alone for SOAK_D (10m); `bench/run.sh profile` the profile
# (bench-results/profile.md); `bench/run.sh gateway` the gateway section
# alone (echo through -proxy, webhook deliveries; docs/bench.md's
# "Gateway" section), with BENCH_D, BENCH_ROUNDS and BENCH_FLAGS.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
# 50,000 idle sessions need as many descriptors in the server and in the
# load generator: raise the soft limit to the hard one (benchrun caps the
# session counts at what the limit allows and says so in the table).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p bench-results/bin
$GO build -o bench-results/bin/server ./cmd/server
$GO build -o bench-results/bin/loadgen ./cmd/loadgen
$GO build -o bench-results/bin/igm ./bench/servers/igm
$GO build -o bench-results/bin/rawws ./bench/servers/rawws
$GO build -o bench-results/bin/barefan ./bench/servers/barefan
$GO build -o bench-results/bin/proxyecho ./bench/servers/proxyecho
$GO build -o bench-results/bin/benchrun ./bench/cmd/benchrun
# benchrun runs `$GO test` for the webhook measurement.
export GO
if [ "${1:-}" = profile ]; then
	$GO build -o bench-results/bin/sockjsd-prof ./bench/servers/sockjsd-prof
	exec bench-results/bin/benchrun -profile
fi
if [ "${1:-}" = soak ]; then
	BENCH_COMMAND="make soak SOAK_D=${SOAK_D:-10m}" \
		exec bench-results/bin/benchrun -soak-only -soak "${SOAK_D:-10m}" ${BENCH_FLAGS:-}
fi
if [ "${1:-}" = gateway ]; then
	# shellcheck disable=SC2086
	BENCH_COMMAND="make bench-gateway BENCH_D=${BENCH_D:-5s} BENCH_ROUNDS=${BENCH_ROUNDS:-3} BENCH_FLAGS=\"${BENCH_FLAGS:-}\"" \
		exec bench-results/bin/benchrun -gateway-only -d "${BENCH_D:-5s}" -rounds "${BENCH_ROUNDS:-3}" ${BENCH_FLAGS:-}
fi
if [ "${BENCH_MICRO:-1}" = 1 ]; then
	# Informative only: a failing micro-benchmark must not stop the table.
	$GO test -run '^$' -bench . -benchmem -benchtime 200ms ./internal/engine/ ./transport/ ||
		echo "bench: a micro-benchmark failed (above); going on with the table" >&2
	# The hub's fan-out as a pinned server runs it: server CPU per delivery.
	$GO test -run '^$' -bench HubFanOut -cpu 1 -benchmem -benchtime 500x ./hub/ ||
		echo "bench: the hub's fan-out benchmark failed (above); going on with the table" >&2
fi
# shellcheck disable=SC2086
BENCH_COMMAND="make bench BENCH_D=${BENCH_D:-5s} BENCH_ROUNDS=${BENCH_ROUNDS:-3} BENCH_SOAK=${BENCH_SOAK:-0} BENCH_FLAGS=\"${BENCH_FLAGS:-}\"" \
	exec bench-results/bin/benchrun -d "${BENCH_D:-5s}" -rounds "${BENCH_ROUNDS:-3}" -soak "${BENCH_SOAK:-0}" ${BENCH_FLAGS:-}
