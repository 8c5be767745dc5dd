#!/bin/sh
# `make bench`: Go micro-benchmarks, then the echo servers built and driven
# by bench/cmd/benchrun (one table, also in bench-results/latest.md).
# Environment: GO (go), BENCH_D (5s per load and server), BENCH_ROUNDS (1),
# BENCH_FLAGS (more benchrun flags, e.g. "-skip-memory" or "-servers sockjsd,igm").
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
# 10,000 idle websocket sessions need as many descriptors in the server
# and in the load generator: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
	echo "bench: ulimit -n is $(ulimit -n); the 10,000-session memory run may fail" >&2
fi
$GO test -run '^$' -bench . -benchmem -benchtime 200ms ./session/ ./transport/
mkdir -p bench-results/bin
$GO build -o bench-results/bin/server ./cmd/server
$GO build -o bench-results/bin/loadgen ./cmd/loadgen
$GO build -o bench-results/bin/igm ./bench/servers/igm
$GO build -o bench-results/bin/rawws ./bench/servers/rawws
$GO build -o bench-results/bin/nethttp ./bench/servers/nethttp
$GO build -o bench-results/bin/benchrun ./bench/cmd/benchrun
# shellcheck disable=SC2086
exec bench-results/bin/benchrun -d "${BENCH_D:-5s}" -rounds "${BENCH_ROUNDS:-1}" ${BENCH_FLAGS:-}
