# The two commands that matter: `make run` and `make test`. Each installs
# what it needs when it is missing.
GO        ?= go
NPM       ?= npm
ADDR      ?= 127.0.0.1:8081
GOTESTFLAGS ?= -race -count=1 -timeout 40m

.PHONY: run test deps deps-client deps-node deps-system vet bench soak bench-profile build clean

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
# echo loads against sockjsd, igm/sockjs-go, sockjs-node and a bare gorilla
# echo (server on CPU 0, load generator on CPU 1), idle memory at 5,000
# and 50,000 sessions, the hub's fan-out; the table goes to docs/bench.md.
# About 15 minutes (20 on a busy machine). BENCH_D is the time per load and
# server, BENCH_ROUNDS the interleaved rounds (median), BENCH_SOAK a soak to
# add (e.g. 10m), BENCH_MICRO=0 skips the micro-benchmarks, BENCH_FLAGS more
# bench/cmd/benchrun flags.
BENCH_D ?= 5s
BENCH_ROUNDS ?= 3
BENCH_SOAK ?= 0
BENCH_FLAGS ?=
bench: deps-node
	GO=$(GO) BENCH_D=$(BENCH_D) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_SOAK=$(BENCH_SOAK) BENCH_FLAGS="$(BENCH_FLAGS)" ./bench/run.sh

# The soak (not part of `make test`): SOAK_D of sessions opening, echoing
# sequence-checked messages and being abandoned over every transport; fails
# unless nothing was lost or duplicated and goroutines, heap and open
# sessions (from /metrics) returned to their baseline. Figures go to
# docs/bench.md.
SOAK_D ?= 10m
soak:
	GO=$(GO) SOAK_D=$(SOAK_D) BENCH_FLAGS="$(BENCH_FLAGS)" ./bench/run.sh soak

# Where the time goes: sockjsd, igm and the bare echo under the websocket
# x1,000 load with perf counters, uprobes on the runtime's wake-ups and
# pprof, then 5,000 idle sessions by component (bench-results/profile.md,
# profiles in bench-results/profile/). Needs perf and root; ~3 minutes.
bench-profile:
	GO=$(GO) ./bench/run.sh profile

clean:
	rm -rf web/sockjs-client/node_modules e2e/node/node_modules

# The browser tests alone: the real sockjs-client in headless Chromium over
# every transport and through the fallback scenarios; -v prints the
# per-transport table (connect time, round-trip p50/p95/p99).
.PHONY: browser-test
browser-test: deps-client deps-system
	$(GO) test -race -count=1 -timeout 15m -v -run '^TestBrowser$$' ./e2e/browser/
