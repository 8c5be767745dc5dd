#!/bin/bash
# `make bench-count`: each server's own instructions per echoed message,
# counted by valgrind (cachegrind, no cache simulation) while
# bench-results/bin/loadgen drives it. An instruction count does not depend
# on what else the machine runs, so this settles differences of a few per
# cent that msgs/s and CPU time cannot on a shared machine (whose echo
# rounds swing 2-3x). It counts user space only: system calls, which are
# most of an echo's CPU, are the same per message for sockjsd and the bare
# echo (docs/bench.md, "Where the time goes").
#
# Per server and load: two runs, COUNT_SHORT and COUNT_LONG of load after
# start-up (100 sessions, 64-byte messages, one in flight each); the
# difference of the instructions over the difference of the messages is
# the cost per message, start-up and connection set-up cancelling out.
# The servers run with GOMAXPROCS=1, CGO off (valgrind does not follow
# cgo's thread start), the TSC read without rdtscp and no asynchronous
# preemption (valgrind 3.19 knows neither); what they run is the same code.
# Environment: GO (go), COUNT_SHORT (4s), COUNT_LONG (12s), COUNT_LOADS
# ("sockjsd:websocket bare:websocket igm:websocket sockjsd:xhr-streaming
# igm:xhr-streaming"). About 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SHORT=${COUNT_SHORT:-4s}
LONG=${COUNT_LONG:-12s}
LOADS=${COUNT_LOADS:-sockjsd:websocket bare:websocket igm:websocket sockjsd:xhr-streaming igm:xhr-streaming}
command -v valgrind >/dev/null || { echo "bench-count: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
out=bench-results/count
mkdir -p "$out" bench-results/bin
CGO_ENABLED=0 $GO build -o "$out/server" ./cmd/server
CGO_ENABLED=0 $GO build -o "$out/rawws" ./bench/servers/rawws
CGO_ENABLED=0 $GO build -o "$out/igm" ./bench/servers/igm
$GO build -o bench-results/bin/loadgen ./cmd/loadgen

vpid=
trap '[ -n "$vpid" ] && kill -KILL "$vpid" 2>/dev/null; true' EXIT

# one NAME TRANSPORT DURATION: prints "instructions messages".
one() {
	local name=$1 tr=$2 d=$3 port=18391 cmd
	case $name in
	sockjsd) cmd=("$out/server" -addr 127.0.0.1:$port -log-level error -client-dir /tmp) ;;
	bare) cmd=("$out/rawws" -addr 127.0.0.1:$port) ;;
	igm) cmd=("$out/igm" -addr 127.0.0.1:$port) ;;
	*) echo "bench-count: unknown server $name" >&2; exit 1 ;;
	esac
	GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file=/dev/null "${cmd[@]}" >"$out/$name.log" 2>&1 &
	vpid=$!
	local i
	for i in $(seq 1 120); do # up to 60 s: valgrind starts Go binaries slowly
		curl -sf -o /dev/null "http://127.0.0.1:$port/echo/info" && break
		sleep 0.5
	done
	bench-results/bin/loadgen -url "http://127.0.0.1:$port/echo" -transport "$tr" -n 100 -d "$d" -quiet -json >"$out/$name.json"
	kill -TERM "$vpid"
	for i in $(seq 1 60); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.5; done
	kill -KILL "$vpid" 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	vpid=
	local ir msgs
	ir=$(grep 'I *refs' "$out/$name.log" | tr -d , | awk '{print $NF}')
	msgs=$(grep -o '"messages":[0-9]*' "$out/$name.json" | cut -d: -f2)
	[ -n "$ir" ] && [ -n "$msgs" ] || { echo "bench-count: $name $tr: no count (see $out/$name.log)" >&2; exit 1; }
	echo "$ir $msgs"
}

echo "| server | load | instructions per message (user space) | messages counted |"
echo "| --- | --- | ---: | ---: |"
for l in $LOADS; do
	name=${l%%:*} tr=${l#*:}
	read -r ir1 m1 < <(one "$name" "$tr" "$SHORT")
	read -r ir2 m2 < <(one "$name" "$tr" "$LONG")
	awk -v n="$name" -v t="$tr" -v a="$ir1" -v b="$ir2" -v x="$m1" -v y="$m2" \
		'BEGIN { printf "| %s | %s x100 | %.0f | %d |\n", n, t, (b - a) / (y - x), y - x }'
done
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(valgrind --version)"
