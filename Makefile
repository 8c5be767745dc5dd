# The two commands that matter: `make run` and `make test`. Each installs
# what it needs when it is missing.
GO        ?= go
NPM       ?= npm
ADDR      ?= 127.0.0.1:8081
GOTESTFLAGS ?= -race -count=1 -timeout 40m

.PHONY: run test deps deps-client deps-node deps-system vet bench build clean protocol-suite

run: deps-client
	$(GO) run ./cmd/server -addr $(ADDR)

test: deps vet
	$(GO) test $(GOTESTFLAGS) ./...
	# 2,000 sessions exceed the race detector's goroutine limit: the hub's
	# fan-out test runs again without it.
	$(GO) test -count=1 -timeout 10m -run '^TestFanOut$$' -v ./hub/

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...

deps: deps-client deps-node deps-system

# The browser client, pinned in package-lock.json, served by the server.
deps-client: web/sockjs-client/node_modules/.package-lock.json
web/sockjs-client/node_modules/.package-lock.json: web/sockjs-client/package-lock.json
	cd web/sockjs-client && $(NPM) ci --no-audit --no-fund

# Reference peers for differential tests: sockjs-node and sockjs-client.
deps-node: e2e/node/node_modules/.package-lock.json
e2e/node/node_modules/.package-lock.json: e2e/node/package-lock.json
	cd e2e/node && $(NPM) ci --no-audit --no-fund

# Chromium for browser tests and redis-server for the broker, from Debian.
deps-system:
	@need=""; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v redis-server >/dev/null 2>&1 || need="$$need redis-server"; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi

# Benchmarks (not part of `make test`): Go micro-benchmarks, then the same
# loads against our server, igm/sockjs-go, sockjs-node and the plain
# gorilla / net/http ceilings, one table (also bench-results/latest.md).
# About 6 minutes; BENCH_D is the time per load and server, BENCH_ROUNDS
# the interleaved rounds (median), BENCH_FLAGS more bench/cmd/benchrun flags.
BENCH_D ?= 5s
BENCH_ROUNDS ?= 1
BENCH_FLAGS ?=
bench: deps-node
	GO=$(GO) BENCH_D=$(BENCH_D) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_FLAGS="$(BENCH_FLAGS)" ./bench/run.sh

# The official protocol suite, RUNS times against cmd/server (not part of
# `make test`: bring your own copy of sockjs-protocol.py from
# sockjs/sockjs-protocol, it is not ours to commit; needs python3-websocket).
SUITE ?= sockjs-protocol.py
RUNS ?= 1
protocol-suite:
	GO=$(GO) ./e2e/protocol-suite.sh $(SUITE) $(RUNS)

clean:
	rm -rf web/sockjs-client/node_modules e2e/node/node_modules

# The browser tests alone: the real sockjs-client in headless Chromium over
# every transport and through the fallback scenarios; -v prints the
# per-transport table (connect time, round-trip p50/p95/p99).
.PHONY: browser-test
browser-test: deps-client deps-system
	$(GO) test -race -count=1 -timeout 15m -v -run '^TestBrowser$$' ./e2e/browser/
