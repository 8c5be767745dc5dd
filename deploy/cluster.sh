#!/bin/sh
# make cluster: redis-server, three sockjsd nodes and haproxy (round robin,
# no stickiness: deploy/haproxy.cfg) on this machine. Prints the demo URL;
# Ctrl-C stops everything it started.
#   nodes  127.0.0.1:8091-8093   balancer 127.0.0.1:8090
#   redis  127.0.0.1:$REDIS_PORT (default 6399, no persistence)
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
REDIS_PORT=${REDIS_PORT:-6399}
SECRET=${SOCKJSD_CLUSTER_SECRET:-$(head -c 18 /dev/urandom | base64)}
for p in redis-server haproxy; do
	command -v $p >/dev/null 2>&1 || { echo "make cluster needs $p (apt-get install $p)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=""
redis=""
stop() {
	trap - INT TERM EXIT
	# Nodes first: they release their sessions in Redis as they stop.
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	[ -z "$redis" ] || { kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; }
	rm -rf "$tmp"
	echo "cluster stopped"
	exit 0
}
trap stop INT TERM EXIT

$GO build -o "$tmp/server" ./cmd/server
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis=$!
for i in 1 2 3; do
	SOCKJSD_CLUSTER_SECRET=$SECRET "$tmp/server" -addr "127.0.0.1:809$i" -redis "redis://127.0.0.1:$REDIS_PORT/0" &
	pids="$pids $!"
done
haproxy -db -f deploy/haproxy.cfg &
pids="$pids $!"

# Wait (up to 15s) for the balancer to reach a node.
i=0
until curl -fsS -o /dev/null http://127.0.0.1:8090/readyz 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 150 ] || { echo "the cluster did not come up: see the lines above" >&2; exit 1; }
	sleep 0.1
done
echo
echo "cluster up: demo http://127.0.0.1:8090/ (3 nodes behind haproxy, round robin, no sticky sessions)"
echo "nodes: http://127.0.0.1:8091 http://127.0.0.1:8092 http://127.0.0.1:8093 (each has /metrics and /readyz); Ctrl-C stops"
wait
