#!/usr/bin/env bash
# The proxy example: sockjsd's session proxy in front of the chat backend
# (Python; BACKEND=node for the Node one). Prints the page's URL; Ctrl-C
# stops both. Arguments are added to sockjsd's flags:
#
#   examples/proxy/run.sh                       # bin/sockjsd, built when missing
#   BACKEND=node examples/proxy/run.sh -log-level debug
#
# Variables: SOCKJSD (binary), SOCKJSD_ADDR, BACKEND_ADDR, BACKEND,
# PROXY_SECRET and API_KEY (fresh random ones by default).
set -euo pipefail
cd "$(dirname "$0")/../.." # the repository root

SOCKJSD=${SOCKJSD:-bin/sockjsd}
SOCKJSD_ADDR=${SOCKJSD_ADDR:-127.0.0.1:8081}
BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:8000}
BACKEND=${BACKEND:-python}
random() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
PROXY_SECRET=${PROXY_SECRET:-$(random)}
API_KEY=${API_KEY:-$(random)}

# sockjsd's flags, all in one place: the proxy and webhook flags are new
# (issue 16); when they change, change them here.
sockjsd_flags=(
	-addr "$SOCKJSD_ADDR"
	-proxy "/chat=http://$BACKEND_ADDR/sockjs"
	-proxy-secret "$PROXY_SECRET"
	-webhook "http://$BACKEND_ADDR/webhook"
	-hub-api-key "$API_KEY"
	-allowed-origins "http://$BACKEND_ADDR,http://localhost:${BACKEND_ADDR##*:}"
)

case "$BACKEND" in
python) backend_cmd=(python3 examples/proxy/python/backend.py) ;;
node) backend_cmd=(node examples/proxy/node/backend.js) ;;
*) echo "run.sh: BACKEND=$BACKEND: want python or node" >&2; exit 2 ;;
esac

[ -x "$SOCKJSD" ] || make build BIN="$SOCKJSD"

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port HOST:PORT PID NAME: polls the port (10 s at most) while PID lives.
wait_port() {
	local host=${1%:*} port=${1##*:} deadline=$((SECONDS + 10))
	until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
		kill -0 "$2" 2>/dev/null || { echo "run.sh: $3 exited" >&2; exit 1; }
		[ "$SECONDS" -lt "$deadline" ] || { echo "run.sh: $3 is not listening on $1 after 10s" >&2; exit 1; }
		sleep 0.1
	done
}

# The secrets go to the backend in its environment, not on its command line.
PROXY_SECRET="$PROXY_SECRET" SOCKJSD_API_KEY="$API_KEY" \
	"${backend_cmd[@]}" --listen "$BACKEND_ADDR" --sockjsd "http://$SOCKJSD_ADDR" -v &
pids+=($!)
wait_port "$BACKEND_ADDR" "${pids[-1]}" "the $BACKEND backend"

"$SOCKJSD" "${sockjsd_flags[@]}" "$@" &
pids+=($!)
wait_port "$SOCKJSD_ADDR" "${pids[-1]}" "sockjsd"

cat <<EOF

  Chat page:  http://$BACKEND_ADDR/
  Log in as alice/wonderland, bob/builder, carol/singer, or any other name with "secret".
  One transport only: http://$BACKEND_ADDR/?transports=xhr-polling
  Straight in:        http://$BACKEND_ADDR/?user=dora&password=secret
  Publish from a shell:
    curl -s -H 'Authorization: Bearer $API_KEY' -H 'Content-Type: application/json' http://$SOCKJSD_ADDR/api/publish \\
      -d '{"channel":"room.lobby","data":{"type":"say","room":"lobby","from":"curl","text":"hello"}}'
  Ctrl-C stops both.

EOF

# Until either ends (or Ctrl-C); cleanup stops the other.
wait -n "${pids[@]}"
