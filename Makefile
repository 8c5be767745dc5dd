# The two commands that matter: `make run` and `make test`. Each installs
# what it needs when it is missing.
GO        ?= go
NPM       ?= npm
ADDR      ?= 127.0.0.1:8081
GOTESTFLAGS ?= -race -count=1 -timeout 40m
BIN       ?= bin/sockjsd
# Pinned, run with `go run` so it never enters go.mod.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# apt waits this long for a lock another apt holds, then fails.
APT_LOCK_TIMEOUT ?= 300

.PHONY: run test deps deps-client deps-node deps-system vet tidy staticcheck bench bench-gateway soak bench-profile bench-count build clean protocol-suite

run: build
	./$(BIN) -addr $(ADDR)

# SOCKJSD_TEST_ALL: a test that would skip for a missing tool fails
# instead. `go test -short ./...` needs only Go and skips what needs more.
test: deps vet tidy staticcheck
	SOCKJSD_TEST_ALL=1 $(GO) test $(GOTESTFLAGS) ./...
	# 2,000 sessions exceed the race detector's goroutine limit: the hub's
	# fan-out test runs again without it.
	$(GO) test -count=1 -timeout 10m -run '^TestFanOut$$' -v ./hub/

# One self-contained binary: the demo page, our scripts and the pinned
# npm sockjs-client inside (copied to the gitignored web/clientdist/ and
# embedded by the sockjsd_embed build tag). Runs from any directory.
build: deps-client
	mkdir -p web/clientdist
	cp web/sockjs-client/node_modules/sockjs-client/dist/sockjs.min.js web/clientdist/sockjs.min.js
	$(GO) build -tags sockjsd_embed -o $(BIN) ./cmd/server

# The module is vetted for macOS too (developers build and test there;
# only -exec needs Linux, see docs/exec.md), and the library and the
# binary build for Windows (the tests need Unix processes and signals).
vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) build ./...

# Fails, printing the difference, when `go mod tidy` would change go.mod
# or go.sum.
tidy:
	$(GO) mod tidy -diff

staticcheck:
	$(GO) run $(STATICCHECK) ./...

deps: deps-client deps-node deps-system

# The browser client, pinned in package-lock.json, served by the server.
deps-client: web/sockjs-client/node_modules/.package-lock.json
web/sockjs-client/node_modules/.package-lock.json: web/sockjs-client/package-lock.json
	cd web/sockjs-client && $(NPM) ci --no-audit --no-fund

# Reference peers for differential tests: sockjs-node and sockjs-client.
deps-node: e2e/node/node_modules/.package-lock.json
e2e/node/node_modules/.package-lock.json: e2e/node/package-lock.json
	cd e2e/node && $(NPM) ci --no-audit --no-fund

# Chromium for the browser tests, from Debian, unless one is on PATH or
# $$CHROME names one; redis-server, haproxy and nginx for the hub's Redis
# broker and cluster tests (e2e/cluster runs deploy/nginx.conf in the
# foreground: the Debian service is not needed). apt waits (bounded) for a
# lock another apt holds.
deps-system:
	@need=""; \
	{ [ -n "$$CHROME" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; } || need="$$need chromium"; \
	command -v redis-server >/dev/null 2>&1 || need="$$need redis-server"; \
	command -v haproxy >/dev/null 2>&1 || need="$$need haproxy"; \
	command -v nginx >/dev/null 2>&1 || need="$$need nginx"; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_TIMEOUT) update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_TIMEOUT) install -y -qq $$need; \
	fi

# Fuzzing (not part of `make test`, which runs each target's seed corpus
# as a test): each parser for FUZZTIME, one after another (8 targets: 8
# minutes with the default). A failing input is written under the
# package's testdata/fuzz/ and fails every later `go test` until fixed.
FUZZTIME ?= 1m
.PHONY: fuzz
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzReadWebSocketMessage$$' -fuzztime=$(FUZZTIME) ./transport/
	$(GO) test -run='^$$' -fuzz='^FuzzReadHixieFrame$$' -fuzztime=$(FUZZTIME) ./transport/
	$(GO) test -run='^$$' -fuzz='^FuzzWalkPayloadAgreesWithDecodeMessages$$' -fuzztime=$(FUZZTIME) ./transport/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeSimpleAgreesWithJSON$$' -fuzztime=$(FUZZTIME) ./transport/
	$(GO) test -run='^$$' -fuzz='^FuzzClientMessage$$' -fuzztime=$(FUZZTIME) ./hub/
	$(GO) test -run='^$$' -fuzz='^FuzzVerifySignature$$' -fuzztime=$(FUZZTIME) ./cluster/
	$(GO) test -run='^$$' -fuzz='^FuzzVerifiedBody$$' -fuzztime=$(FUZZTIME) ./cluster/
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./internal/sign/

# Benchmarks (not part of `make test`): Go micro-benchmarks, then the same
# echo loads against sockjsd, igm/sockjs-go, sockjs-node and a bare gorilla
# echo (server on CPU 0, load generator on CPU 1), idle memory at 5,000
# and 50,000 sessions, the hub's fan-out, the gateway (echo through -proxy
# to a Go backend against in-process, webhook deliveries/s); the tables go
# to docs/bench.md. About 20 minutes (25 on a busy machine). BENCH_D is
# the time per load and server, BENCH_ROUNDS the interleaved rounds
# (median), BENCH_SOAK a soak to add (e.g. 10m), BENCH_MICRO=0 skips the
# micro-benchmarks, BENCH_FLAGS more bench/cmd/benchrun flags
# (-skip-gateway: no gateway runs; `make bench-gateway` runs them alone).
BENCH_D ?= 5s
BENCH_ROUNDS ?= 3
BENCH_SOAK ?= 0
BENCH_FLAGS ?=
bench: deps-node
	GO=$(GO) BENCH_D=$(BENCH_D) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_SOAK=$(BENCH_SOAK) BENCH_FLAGS="$(BENCH_FLAGS)" ./bench/run.sh
	# Many nodes: a forwarded request through haproxy over three nodes
	# against one node directly, and the hub over Redis against memory.
	$(MAKE) cluster-bench
	$(GO) test -count=1 -run '^TestMeasureCluster$$' -v ./hub/

# The gateway section of `make bench` alone (docs/proxy.md): websocket and
# xhr-polling echo, 100 and 1,000 sessions (and one websocket session),
# through `-proxy` to bench/servers/proxyecho (sockjsd and the backend on
# CPU 0, the load generator on CPU 1) against sockjsd's own /echo, then
# webhook deliveries/s (memory queue; Redis queue when redis-server is on
# PATH). Writes docs/bench.md's "Gateway" section. About 5 minutes with
# the defaults; same BENCH_D, BENCH_ROUNDS and BENCH_FLAGS (-skip-webhook).
bench-gateway:
	GO=$(GO) BENCH_D=$(BENCH_D) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_FLAGS="$(BENCH_FLAGS)" ./bench/run.sh gateway

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
# pprof, then 5,000 idle sessions by component, the hub's first step
# against the bare fan-out, and sockjsd and igm under the xhr-streaming
# x100 load (bench-results/profile.md, profiles in bench-results/profile/).
# Needs perf and root; about 5 minutes.
bench-profile:
	GO=$(GO) ./bench/run.sh profile

# Instructions per echoed message (user space, valgrind): sockjsd, the bare
# echo and igm under the websocket x100 load, sockjsd and igm under
# xhr-streaming x100. Counts do not move with the machine's load, so they
# settle what msgs/s on a shared machine cannot (docs/bench.md). Needs
# valgrind; about 4 minutes.
bench-count:
	GO=$(GO) ./bench/count.sh

# The official protocol suite, RUNS times against the binary `make build`
# ships ($(BIN), sockjs-client built in, so the iframe page is the
# protocol's byte for byte). Not part of `make test`: bring your own copy of
# sockjs-protocol.py from sockjs/sockjs-protocol, it is not ours to commit;
# needs python3-websocket and python3-lib2to3. SOCKJS_URL tests a running
# server instead, SERVER_FLAGS adds flags (e2e/protocol-suite.sh).
SUITE ?= sockjs-protocol.py
RUNS ?= 1
protocol-suite: build
	GO=$(GO) SOCKJSD=$(BIN) ./e2e/protocol-suite.sh $(SUITE) $(RUNS)

clean:
	rm -rf web/sockjs-client/node_modules e2e/node/node_modules web/clientdist bin

# The browser tests alone: the real sockjs-client in headless Chromium over
# every transport and through the fallback scenarios; -v prints the
# per-transport table (connect time, round-trip p50/p95/p99). TestBrowserExec
# runs the exec bridge's programs and example pages (docs/exec.md).
.PHONY: browser-test
browser-test: deps-client deps-system
	$(GO) test -race -count=1 -timeout 15m -v -run '^(TestBrowser(Exec)?|TestTLSBrowser|TestTLSBadStart)$$' ./e2e/browser/

# Cluster mode on one machine: redis-server, three nodes (127.0.0.1:8091-8093)
# and haproxy (deploy/haproxy.cfg: round robin, no sticky sessions) at
# 127.0.0.1:8090; prints the demo URL, Ctrl-C stops everything. The nodes
# run what `make build` built ($(BIN), the npm sockjs-client inside), so the
# demo page works without the CDN.
.PHONY: cluster cluster-test cluster-bench
cluster: build
	BIN=$(BIN) ./deploy/cluster.sh

# The cluster tests alone (real redis-server, haproxy, nginx, node, Chromium).
cluster-test: deps-client deps-node deps-system
	$(GO) test -race -count=1 -timeout 15m -v ./e2e/cluster/

# What cluster mode costs: xhr-polling echo through haproxy over 3 nodes
# against one node directly, and the time a forward adds to a request.
cluster-bench: deps-node
	SOCKJSD_CLUSTER_MEASURE=1 $(GO) test -count=1 -timeout 10m -v -run '^TestMeasureCluster$$' ./e2e/cluster/

# The proxy example (examples/proxy): sockjsd's session proxy in front of
# the Python chat backend (BACKEND=node for the Node one), on
# 127.0.0.1:8081 and 127.0.0.1:8000; prints the chat page's URL, Ctrl-C
# stops both. sockjsd is what `make build` built ($(BIN)).
.PHONY: example-proxy
example-proxy: build
	SOCKJSD=$(BIN) examples/proxy/run.sh
