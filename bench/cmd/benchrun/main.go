// Command benchrun is the driver of `make bench` (bench/run.sh): it runs
// cmd/loadgen against a fresh process of each server for every run:
// sockjsd (cmd/server as shipped), igm/sockjs-go v3.0.2, sockjs-node
// 0.3.24 and a bare gorilla/websocket echo, with the server pinned to CPU 0
// and the load generator to CPU 1 when the machine has two or more. Echo
// loads run in interleaved rounds (every server in turn for each load, the
// whole sequence -rounds times; each figure is the median), then idle
// memory at two session counts, the hub's fan-out (sockjsd only: the others
// have no hub), the gateway (gateway.go: echo through the session proxy to
// a Go backend against the same echo in-process, and webhook deliveries
// per second) and, with -soak, the soak. It prints the table and
// writes it, with the date, machine and command, into docs/bench.md
// between the "bench:begin" and "bench:end" markers (the gateway's
// section between "gateway:begin" and "gateway:end"). Loopback only; every
// process runs under a deadline and the whole run under -timeout.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// server is one echo server under test.
type server struct {
	name string
	cmd  func(port string) *exec.Cmd
	// serves reports whether the server takes part in a transport.
	serves func(transport string) bool
}

type load struct {
	transport string
	sessions  int
}

type run struct {
	load      load
	server    string
	msgsPerS  float64
	p50, p99  float64
	cpuPer100 float64 // server CPU seconds per 100k messages
	busy2010  int64
	err       string
}

type memRun struct {
	load   load
	asked  int // sessions asked for (the load's count may be capped by the fd limit)
	server string
	perSes float64 // bytes of RSS per idle session
	opened int64
	note   string // some sessions did not open
	err    string
}

var (
	binDir      = flag.String("bin", "bench-results/bin", "where the server and loadgen binaries are")
	nodeScript  = flag.String("node-script", "bench/servers/node/server.js", "the sockjs-node echo server script")
	nodeModules = flag.String("node-modules", "e2e/node/node_modules", "node_modules holding sockjs@0.3.24")
	duration    = flag.Duration("d", 5*time.Second, "measurement time per echo load and server")
	idleHold    = flag.Duration("idle-hold", 3*time.Second, "how long idle sessions are held before RSS is read")
	rounds      = flag.Int("rounds", 3, "interleaved rounds of the echo loads; each figure is the median")
	memCounts   = flag.String("mem-sessions", "5000,50000", "idle session counts for the memory rows (capped by ulimit -n)")
	skipMem     = flag.Bool("skip-memory", false, "skip the idle-memory runs")
	skipHub     = flag.Bool("skip-hub", false, "skip the hub fan-out runs")
	skipEcho    = flag.Bool("skip-echo", false, "skip the echo loads (with -skip-memory: the hub rows alone)")
	hubWS       = flag.Int("hub-websocket", 10000, "hub subscribers on websocket")
	hubHTTP     = flag.Int("hub-http", 3000, "hub subscribers on each HTTP transport")
	hubRates    = flag.String("hub-rates", "10,20,50,100,200,500,1000", "hub publish rates (per second) ramped through; the first is the table's 1 per 100 ms row")
	hubStepD    = flag.Duration("hub-step", 4*time.Second, "time per hub publish rate")
	soak        = flag.Duration("soak", 0, "also run the soak for this long (0: no soak; `make soak` runs it alone)")
	soakOnly    = flag.Bool("soak-only", false, "run only the soak")
	skipGateway = flag.Bool("skip-gateway", false, "skip the gateway runs (echo through -proxy, webhook deliveries)")
	gatewayOnly = flag.Bool("gateway-only", false, "run only the gateway runs (make bench-gateway); docs/bench.md gets only their section")
	skipWebhook = flag.Bool("skip-webhook", false, "in the gateway runs, skip the webhook measurement (go test ./webhook/)")
	profileOnly = flag.Bool("profile", false, "run only the profile (perf and pprof under the websocket x1,000 load, the hub step and the xhr-streaming x100 load; needs perf and root), written to bench-results/profile.md")
	soakWorkers = flag.Int("soak-sessions", 30, "soak sessions at a time per transport")
	onlyServers = flag.String("servers", "", "comma-separated subset of servers (sockjsd, igm, sockjs-node, bare)")
	xhrClient   = flag.String("xhr-client", "raw", "the load generator's -http on the xhr echo rows: raw (prebuilt HTTP/1.1 requests; the Go client over net/http's used more CPU per echo than the servers and capped the rows) or client")
	onlyLoads   = flag.String("loads", "", "comma-separated subset of the echo loads as transport:sessions (websocket:100, websocket:1000, xhr-streaming:100, xhr-polling:100); empty: all")
	pin         = flag.Bool("pin", true, "pin servers to CPU 0 and load generators to CPU 1 (taskset) when there are two or more CPUs")
	timeout     = flag.Duration("timeout", 35*time.Minute, "the whole run's deadline")
	docPath     = flag.String("doc", "docs/bench.md", "where the table is written (between the bench:begin and bench:end markers); empty: nowhere")
	out         = flag.String("out", "bench-results/latest.md", "where the table is written too")
)

func bin(name string) string { return filepath.Join(*binDir, name) }

// sockjsd is our server, whatever -servers says (the hub and the soak).
func sockjsd() server { return allServers()[0] }

func servers() []server {
	list := allServers()
	if *onlyServers != "" {
		keep := strings.Split(*onlyServers, ",")
		list = slices.DeleteFunc(list, func(s server) bool { return !slices.Contains(keep, s.name) })
	}
	return list
}

// connCaps lift sockjsd's connection caps: the load generator opens up to
// ~5,000 connections from each of its few source addresses (localAddrs),
// past -max-connections-per-address's default of 1,000.
var connCaps = []string{"-max-connections", "0", "-max-connections-per-address", "0"}

func allServers() []server {
	all := func(string) bool { return true }
	list := []server{
		{"sockjsd", func(p string) *exec.Cmd {
			return pinned(0, bin("server"), append([]string{"-addr", "127.0.0.1:" + p, "-client-dir", os.TempDir(), "-log-level", "error"}, connCaps...)...)
		}, all},
		{"igm", func(p string) *exec.Cmd { return pinned(0, bin("igm"), "-addr", "127.0.0.1:"+p) }, all},
		{"sockjs-node", func(p string) *exec.Cmd { return pinned(0, "node", *nodeScript, p, *nodeModules) }, all},
		{"bare", func(p string) *exec.Cmd { return pinned(0, bin("rawws"), "-addr", "127.0.0.1:"+p) },
			func(t string) bool { return t == "websocket" }},
	}
	return list
}

func main() {
	flag.Parse()
	if *profileOnly {
		text := profile()
		fmt.Print(text)
		_ = os.WriteFile("bench-results/profile.md", []byte(text), 0o644)
		return
	}
	deadline := time.Now().Add(*timeout)
	rep := &report{started: time.Now(), pinned: pinning(), load0: loadavg()}
	list := servers()
	if !*soakOnly && !*gatewayOnly {
		if !*skipEcho {
			rep.runs = echoRounds(list, deadline)
		}
		if !*skipMem {
			rep.mem = memory(list, deadline)
		}
		if !*skipHub && slices.ContainsFunc(list, func(s server) bool { return s.name == "sockjsd" }) {
			rep.hub = hubRuns(deadline)
		}
	}
	if *gatewayOnly || !*soakOnly && !*skipGateway {
		rep.gateway = &gatewayReport{}
		rep.gateway.runs, rep.gateway.pairs = gatewayRuns(deadline)
		if !*skipWebhook {
			rep.gateway.webhooks, rep.gateway.webhookNote = webhookRuns(deadline)
		}
	}
	if *soak > 0 || *soakOnly {
		d := *soak
		if d == 0 {
			d = 10 * time.Minute
		}
		rep.soak = soakRun(d)
	}
	rep.load1 = loadavg()
	var text string
	if !*gatewayOnly {
		text = rep.render()
	}
	gw := rep.renderGateway()
	all := text
	if gw != "" {
		all = strings.TrimPrefix(text+"\n## Gateway\n\n"+gw, "\n")
	}
	fmt.Print(all)
	if *out != "" {
		_ = os.MkdirAll(filepath.Dir(*out), 0o755)
		_ = os.WriteFile(*out, []byte(all), 0o644)
	}
	if *docPath != "" {
		var err error
		if !*gatewayOnly {
			err = writeDoc(*docPath, text, *soakOnly)
		}
		if err == nil && gw != "" {
			err = writeSection(*docPath, "gateway", gw)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			os.Exit(1)
		}
	}
	if rep.soak != nil && !rep.soak.Pass {
		os.Exit(1)
	}
}

// loadavg is /proc/loadavg's first three figures.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// echoLoads are the table's echo rows.
var echoLoads = []load{{"websocket", 100}, {"websocket", 1000}, {"xhr-streaming", 100}, {"xhr-polling", 100}}

// loads are the echo loads -loads keeps.
func loads() []load {
	if *onlyLoads == "" {
		return echoLoads
	}
	keep := strings.Split(*onlyLoads, ",")
	return slices.DeleteFunc(slices.Clone(echoLoads), func(l load) bool {
		return !slices.Contains(keep, l.transport+":"+strconv.Itoa(l.sessions))
	})
}

// echoRounds runs every echo load against every server, -rounds times,
// and keeps the median of each.
func echoRounds(list []server, deadline time.Time) []run {
	var samples roundRuns[run]
	for round := 0; round < *rounds; round++ {
		for _, l := range loads() {
			for _, s := range list {
				if !s.serves(l.transport) {
					continue
				}
				if time.Now().After(deadline) {
					fmt.Fprintln(os.Stderr, "benchrun: -timeout reached, keeping what was measured")
					return medians(&samples)
				}
				r := echoRun(s, l)
				fmt.Fprintf(os.Stderr, "round %d  %-14s %5d %-12s %9.0f msgs/s p50 %6.2f ms p99 %6.2f ms  cpu/100k %.2fs  2010: %d %s\n",
					round+1, l.transport, l.sessions, s.name, r.msgsPerS, r.p50, r.p99, r.cpuPer100, r.busy2010, r.err)
				samples.add(fmt.Sprint(l, s.name), r)
			}
		}
	}
	return medians(&samples)
}

// medians keeps, per load and server, the round of median throughput,
// with the median CPU per message and the median 2010 count of all
// rounds, and the spread of throughput in err when there were several.
func medians(samples *roundRuns[run]) []run {
	return samples.medians(func(r run) float64 { return r.msgsPerS }, func(m *run, rs []run) {
		m.cpuPer100 = medianOf(rs, func(r run) float64 { return r.cpuPer100 })
		m.busy2010 = int64(medianOf(rs, func(r run) float64 { return float64(r.busy2010) }))
	})
}

// roundRuns are the runs of every round by load (and server or path), the
// keys in the order first measured.
type roundRuns[T any] struct {
	by    map[string][]T
	order []string
}

func (s *roundRuns[T]) add(key string, r T) {
	if s.by == nil {
		s.by = map[string][]T{}
	}
	if _, ok := s.by[key]; !ok {
		s.order = append(s.order, key)
	}
	s.by[key] = append(s.by[key], r)
}

// medians keeps, for each key, the run of median tput, which merge may
// then complete from all the key's runs.
func (s *roundRuns[T]) medians(tput func(T) float64, merge func(m *T, all []T)) []T {
	var out []T
	for _, k := range s.order {
		rs := s.by[k]
		slices.SortFunc(rs, func(a, b T) int { return cmpF(tput(a), tput(b)) })
		m := rs[len(rs)/2]
		merge(&m, rs)
		out = append(out, m)
	}
	return out
}

// medianOf is the median of f over rs.
func medianOf[T any](rs []T, f func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianF(v)
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func medianF(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

type lgResult struct {
	Opened     int64   `json:"opened"`
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error"`
	Busy2010   int64   `json:"busy_2010"`
}

// localAddrs is how many source addresses n sessions need (about 28,000
// ephemeral ports each, and room for TIME_WAIT).
func localAddrs(n int) int { return max(4, n/10000+1) }

func echoRun(s server, l load) run {
	r := run{load: l, server: s.name}
	srv, err := start(s)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer srv.stop()
	var cpu0, cpu float64
	var res lgResult
	err = runLoadgen([]string{"-url", "http://" + srv.addr + "/echo", "-transport", l.transport, "-n", strconv.Itoa(l.sessions),
		"-k", "1", "-s", "64", "-d", duration.String(), "-mode", "echo", "-local-addrs", strconv.Itoa(localAddrs(l.sessions)), "-http", *xhrClient},
		*duration+3*time.Minute, func() { cpu0 = cpuSeconds(srv.pid()) }, func() { cpu = cpuSeconds(srv.pid()) - cpu0 }, &res)
	if err != nil {
		r.err = err.Error()
		return r
	}
	r.msgsPerS, r.p50, r.p99, r.busy2010 = res.MsgsPerSec, res.P50, res.P99, res.Busy2010
	if res.Messages > 0 {
		r.cpuPer100 = cpu / float64(res.Messages) * 100000
	}
	if res.Errors > 0 {
		r.err = fmt.Sprintf("%d errors: %s", res.Errors, res.FirstError)
	}
	return r
}

// memory holds idle websocket and xhr-streaming sessions at each of
// -mem-sessions against every server, capped by the open-file limit
// (every session is a descriptor in the server and one in the load
// generator).
func memory(list []server, deadline time.Time) []memRun {
	var out []memRun
	limit := fdLimit() - 500
	for _, tr := range []string{"websocket", "xhr-streaming"} {
		for _, f := range strings.Split(*memCounts, ",") {
			asked, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || asked <= 0 {
				continue
			}
			n := min(asked, limit)
			for _, s := range list {
				if !s.serves(tr) || time.Now().After(deadline) {
					continue
				}
				m := idleRun(s, load{tr, n})
				m.asked = asked
				fmt.Fprintf(os.Stderr, "idle %-14s %5d %-12s %8.0f B/session %s\n", tr, n, s.name, m.perSes, m.err)
				out = append(out, m)
			}
		}
	}
	return out
}

// idleRun holds l.sessions idle sessions and reports the server's RSS
// growth per session: RSS once all are open and at the end of the hold
// (the larger), less RSS before the first.
func idleRun(s server, l load) memRun {
	m := memRun{load: l, server: s.name}
	srv, err := start(s)
	if err != nil {
		m.err = err.Error()
		return m
	}
	defer srv.stop()
	base := rssBytes(srv.pid())
	var held int64
	sample := func() { held = max(held, rssBytes(srv.pid())) }
	var res lgResult
	err = runLoadgen([]string{"-url", "http://" + srv.addr + "/echo", "-transport", l.transport, "-n", strconv.Itoa(l.sessions),
		"-d", idleHold.String(), "-mode", "idle", "-local-addrs", strconv.Itoa(localAddrs(l.sessions)), "-connect-timeout", "3m"},
		*idleHold+5*time.Minute, sample, sample, &res)
	if err != nil {
		m.err = err.Error()
		return m
	}
	m.opened = res.Opened
	if res.Opened > 0 {
		m.perSes = float64(held-base) / float64(res.Opened)
	}
	// A loaded machine may time a few of many thousand openings out: the
	// figure is per session opened, and stands while 99 % opened.
	if res.Opened < int64(l.sessions) {
		m.note = fmt.Sprintf("%d of %d opened: %s", res.Opened, l.sessions, res.FirstError)
		if res.Opened < int64(l.sessions)*99/100 {
			m.err = m.note
		}
	}
	return m
}
