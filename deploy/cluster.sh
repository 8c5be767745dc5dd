#!/bin/sh
# make cluster: redis-server, three sockjsd nodes and haproxy (round robin,
# no stickiness: deploy/haproxy.cfg) on this machine. Prints the demo URL;
# Ctrl-C stops everything it started. The nodes run $BIN (default
# bin/sockjsd), which `make build` builds with the npm sockjs-client inside:
# run this through `make cluster`, which builds it first.
#   balancer 127.0.0.1:$CLUSTER_PORT (default 8090)
#   nodes    the three ports after it (default 127.0.0.1:8091-8093)
#   redis    127.0.0.1:$REDIS_PORT (default 6399, no persistence)
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/sockjsd}
CLUSTER_PORT=${CLUSTER_PORT:-8090}
REDIS_PORT=${REDIS_PORT:-6399}
SECRET=${SOCKJSD_CLUSTER_SECRET:-$(head -c 18 /dev/urandom | base64)}
[ -x "$BIN" ] || { echo "$BIN is missing: run \`make cluster\` (it runs \`make build\` first)" >&2; exit 1; }
for p in redis-server haproxy curl; do
	command -v $p >/dev/null 2>&1 || { echo "make cluster needs $p (apt-get install $p)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=""
redis=""
stop() {
	rc=$1
	trap - INT TERM EXIT
	# Nodes first: they release their sessions in Redis as they stop.
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	[ -z "$redis" ] || { kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; }
	rm -rf "$tmp"
	echo "cluster stopped"
	exit "$rc"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# A copy, so that a `make build` while the cluster runs changes nothing.
cp "$BIN" "$tmp/server"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis=$!
# deploy/haproxy.cfg as is, unless other ports were asked for.
sed -e "s/127\.0\.0\.1:8090\$/127.0.0.1:$CLUSTER_PORT/" \
	-e "s/127\.0\.0\.1:8091\$/127.0.0.1:$((CLUSTER_PORT + 1))/" \
	-e "s/127\.0\.0\.1:8092\$/127.0.0.1:$((CLUSTER_PORT + 2))/" \
	-e "s/127\.0\.0\.1:8093\$/127.0.0.1:$((CLUSTER_PORT + 3))/" deploy/haproxy.cfg >"$tmp/haproxy.cfg"
nodes=""
for i in 1 2 3; do
	# haproxy connects from 127.0.0.1: its X-Forwarded-For names the client.
	SOCKJSD_CLUSTER_SECRET=$SECRET "$tmp/server" -addr "127.0.0.1:$((CLUSTER_PORT + i))" -redis "redis://127.0.0.1:$REDIS_PORT/0" -trusted-proxies 127.0.0.1/32 &
	pids="$pids $!"
	nodes="$nodes http://127.0.0.1:$((CLUSTER_PORT + i))"
done
haproxy -db -f "$tmp/haproxy.cfg" &
pids="$pids $!"
lb=http://127.0.0.1:$CLUSTER_PORT

# Wait (up to 15s) for the balancer to reach a node.
i=0
until curl -fsS -o /dev/null $lb/readyz 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 150 ] || { echo "the cluster did not come up: see the lines above" >&2; exit 1; }
	sleep 0.1
done
# The demo page through the balancer needs the built-in client: a binary
# built without it (plain `go build`) would send browsers to the CDN.
curl -fsS -o /dev/null $lb/sockjs-client/sockjs.min.js 2>/dev/null ||
	{ echo "$BIN has no built-in sockjs-client: build it with \`make build\`" >&2; exit 1; }
echo
echo "cluster up: demo $lb/ (3 nodes behind haproxy, round robin, no sticky sessions; sockjs-client built in)"
echo "nodes:$nodes (each has /metrics and /readyz); Ctrl-C stops"
wait
