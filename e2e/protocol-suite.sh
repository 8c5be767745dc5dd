#!/usr/bin/env bash
# Runs the official SockJS protocol suite (sockjs-protocol.py from
# sockjs/sockjs-protocol) N times against our server and counts passes.
#
#   e2e/protocol-suite.sh /path/to/sockjs-protocol.py [N]
#
# It fetches nothing: bring your own copy of the suite (it is not ours to
# commit). The suite is Python 2; e2e/protocol-suite/port.py ports it to
# Python 3 with lib2to3's standard fixers, e2e/protocol-suite/utils.py is our
# Python 3 implementation of the suite's helper module, and the websocket
# client is Debian's python3-websocket (PyPI is not needed):
#
#   apt-get install -y python3-websocket python3-lib2to3
#
# The server is the binary `make build` ships (sockjs-client built in, so
# each service's iframe page loads <prefix>/sockjs.min.js and is the
# protocol's page byte for byte), with the suite's settings (streaming
# responses end after 4096 bytes), on a free port unless SOCKJS_URL names a
# server that is already running. A binary whose iframe page carries an
# integrity hash (built without the client, so it loads the CDN copy) fails
# the suite's three IframePage body tests by design: the script refuses to
# measure it. Environment:
#   SOCKJSD       the binary to test (default: built here with `make build`)
#   PYTHON        interpreter that runs the suite, with the websocket module
#                 (default /usr/bin/python3)
#   PORT_PYTHON   interpreter that ports it, with lib2to3: Python 3.12 or
#                 older, 3.13 removed it (default $PYTHON)
#   SOCKJS_URL    test an already running server instead of starting one
#   SERVER_FLAGS  more flags for the server
#   RUN_TIMEOUT   seconds one run may take (default 300)
#   KEEP          directory to keep each run's log in (default: a temp dir,
#                 kept only when a run fails)
#
# Output: one line per run with its pass count and the tests that failed,
# then "passed 68/68 in R of N runs". Exit status 0 only if every run passed
# every test.
set -euo pipefail

suite=${1:?usage: $0 /path/to/sockjs-protocol.py [runs]}
runs=${2:-1}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
python=${PYTHON:-/usr/bin/python3}
port_python=${PORT_PYTHON:-$python}
run_timeout=${RUN_TIMEOUT:-300}

[ -f "$suite" ] || { echo "no suite at $suite" >&2; exit 2; }
if ! "$python" -c 'import websocket' 2>/dev/null; then
	echo "$python lacks the websocket module: apt-get install -y python3-websocket" >&2
	exit 2
fi
if ! "$port_python" -W ignore -c 'import lib2to3' 2>/dev/null; then
	echo "$port_python lacks lib2to3: apt-get install -y python3-lib2to3 (Python 3.12 or older;" \
		"3.13 removed it: set PORT_PYTHON to a 3.12-or-older python3)" >&2
	exit 2
fi

work=$(mktemp -d)
logs=${KEEP:-$work/logs}
mkdir -p "$logs"
server_pid=""
keep_logs=""
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work/bin" "$work/suite"
	# The logs of a failed measurement stay where the summary says they are.
	[ -n "${KEEP:-}" ] || [ -n "$keep_logs" ] || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/suite"
"$port_python" "$here/protocol-suite/port.py" "$suite" "$work/suite/sockjs-protocol.py"
cp "$here/protocol-suite/utils.py" "$here/protocol-suite/unittest2.py" "$work/suite/"

started=""
if [ -z "${SOCKJS_URL:-}" ]; then
	if [ -n "${SOCKJSD:-}" ]; then
		server=$(cd "$root" && realpath "$SOCKJSD")
	else
		# The binary as shipped, not `go build ./cmd/server`: without the
		# sockjsd_embed tag and the npm client the iframe page loads the
		# CDN copy with an integrity hash.
		server="$work/bin/sockjsd"
		${MAKE:-make} -s -C "$root" build BIN="$server" GO="${GO:-go}" >&2
	fi
	[ -x "$server" ] || { echo "no server binary at $server" >&2; exit 2; }
	port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	# shellcheck disable=SC2086
	"$server" -addr "127.0.0.1:$port" -response-limit 4096 -log-level error ${SERVER_FLAGS:-} \
		>"$logs/server.log" 2>&1 &
	server_pid=$!
	SOCKJS_URL="http://localhost:$port"
	ok=""
	for _ in $(seq 100); do # up to 10 s for the server to listen
		if "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), timeout=0.2)" 2>/dev/null; then
			ok=1
			break
		fi
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "server did not start:" >&2; cat "$logs/server.log" >&2; exit 1; }
	started=1
fi
export SOCKJS_URL

# The suite wants the protocol's iframe page byte for byte. A page with an
# integrity hash is a server that loads a cross-origin client copy (a binary
# built without the client): three failures known in advance, not a
# measurement of the binary we ship.
page=$("$python" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/echo/iframe.html", timeout=10).read().decode())' "$SOCKJS_URL") ||
	{ echo "GET $SOCKJS_URL/echo/iframe.html failed" >&2; exit 1; }
if grep -q 'integrity=' <<<"$page"; then
	msg="the iframe page at $SOCKJS_URL/echo/iframe.html carries an integrity hash (a cross-origin client copy): the suite's IframePage tests fail by design"
	if [ -n "$started" ]; then
		echo "$msg; test the binary \`make build\` ships (sockjs-client built in), e.g. \`make protocol-suite\`" >&2
		exit 2
	fi
	echo "note: $msg" >&2
fi

total=""
full=0
for i in $(seq "$runs"); do
	log="$logs/run-$i.log"
	(cd "$work/suite" && timeout "$run_timeout" "$python" -W ignore::ResourceWarning sockjs-protocol.py -v) >"$log" 2>&1 || true
	ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$log" | tail -1)
	# The summary line: "OK" or "FAILED (failures=F, errors=E)".
	bad=0
	for n in $(sed -n 's/^FAILED (\(.*\))$/\1/p' "$log" | tr ',' '\n' | sed -n 's/.*=\([0-9]*\)/\1/p'); do
		bad=$((bad + n))
	done
	if [ -z "$ran" ]; then
		echo "run $i: did not finish (see $log)"
		continue
	fi
	total=$ran
	pass=$((ran - bad))
	[ "$pass" -eq "$ran" ] && full=$((full + 1))
	# "FAIL: test_x (__main__.Class.test_x)" (Python 3.11+) or
	# "FAIL: test_x (__main__.Class)": print Class.test_x:FAIL.
	failed=$(sed -n -E 's/^(FAIL|ERROR): ([a-zA-Z_0-9]+) \(__main__\.([a-zA-Z_0-9]+).*/\3.\2:\1/p' "$log" | tr '\n' ' ')
	echo "run $i: $pass/$ran ${failed}"
done
[ "$full" -eq "$runs" ] || keep_logs=1
where=""
if [ -n "${KEEP:-}" ] || [ -n "$keep_logs" ]; then where=" (logs: $logs)"; fi
echo "passed ${total:-?}/${total:-?} in $full of $runs runs$where"
[ "$full" -eq "$runs" ]
