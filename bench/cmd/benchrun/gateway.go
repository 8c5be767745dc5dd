package main

// The gateway rows (docs/proxy.md): echo through the session proxy against the
// same echo in-process, and webhook deliveries per second.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// gatewayLoads are the gateway's echo rows. At 100 and 1,000 sessions CPU 0
// is saturated on the proxy path and latency is mostly queueing (sessions
// ÷ msgs/s); one websocket session, one message at a time, is the hop's
// own latency.
var gatewayLoads = []load{{"websocket", 1}, {"websocket", 100}, {"websocket", 1000}, {"xhr-polling", 100}, {"xhr-polling", 1000}}

// The two paths of one gateway load: the same sockjsd process (started
// with -proxy) answers /echo itself and /pecho through the backend.
const (
	inProcess = "in-process"
	viaProxy  = "proxy"
)

// proxySecret signs sockjsd's requests to the bench backend.
const proxySecret = "bench-secret"

// gwRun is one gateway echo run.
type gwRun struct {
	load     load
	path     string // inProcess or viaProxy
	msgsPerS float64
	p50, p99 float64
	// Server and backend CPU seconds per 100k messages (backend: 0 in
	// process; it idles).
	cpuServer, cpuBackend float64
	// perBatch is messages per POST /message (viaProxy only).
	perBatch float64
	err      string
}

// gwPair is one load's in-process and proxy runs of one round, back to
// back, compared; after the rounds, the median of each figure.
type gwPair struct {
	load           load
	ratio          float64 // proxy msgs/s ÷ in-process msgs/s
	addP50, addP99 float64 // proxy − in-process, ms
	rounds         int
}

// webhookResult is one queue's figure from the webhook package's
// measurement.
type webhookResult struct {
	queue       string
	events      int
	users       int
	seconds     float64
	perSec      float64
	enqueuePerS float64
}

// gatewayReport is what the gateway part measured.
type gatewayReport struct {
	runs     []gwRun
	pairs    []gwPair
	webhooks []webhookResult
	// webhookNote says why a queue has no figure (redis-server missing,
	// the test failed).
	webhookNote string
}

// gatewayRuns runs every gateway load over both paths, -rounds times
// interleaved (in-process, then proxy, for each load in turn), and keeps
// the median round of each, and the median of each round's comparison of
// the two (back to back, so the machine's load swings between rounds
// cancel).
func gatewayRuns(deadline time.Time) ([]gwRun, []gwPair) {
	var samples roundRuns[gwRun]
	var pairs roundRuns[gwPair]
	medians := func() ([]gwRun, []gwPair) { return gwMedians(&samples), pairMedians(&pairs) }
	for round := 0; round < *rounds; round++ {
		for _, l := range gatewayLoads {
			var both [2]gwRun
			for i, p := range []string{inProcess, viaProxy} {
				if time.Now().After(deadline) {
					fmt.Fprintln(os.Stderr, "benchrun: -timeout reached, keeping what was measured")
					return medians()
				}
				r := gatewayRun(l, p)
				fmt.Fprintf(os.Stderr, "gateway round %d  %-12s %5d %-10s %9.0f msgs/s p50 %6.2f ms p99 %6.2f ms  cpu/100k %.2fs + backend %.2fs  %.2f msgs/batch %s\n",
					round+1, l.transport, l.sessions, p, r.msgsPerS, r.p50, r.p99, r.cpuServer, r.cpuBackend, r.perBatch, r.err)
				samples.add(fmt.Sprint(l, p), r)
				both[i] = r
			}
			if in, px := both[0], both[1]; in.msgsPerS > 0 && px.msgsPerS > 0 {
				pairs.add(fmt.Sprint(l), gwPair{load: l, ratio: px.msgsPerS / in.msgsPerS, addP50: px.p50 - in.p50, addP99: px.p99 - in.p99})
			}
		}
	}
	return medians()
}

// pairMedians is, per load, the median of each figure over the rounds.
func pairMedians(pairs *roundRuns[gwPair]) []gwPair {
	var out []gwPair
	for _, k := range pairs.order {
		ps := pairs.by[k]
		out = append(out, gwPair{load: ps[0].load, rounds: len(ps),
			ratio:  medianOf(ps, func(p gwPair) float64 { return p.ratio }),
			addP50: medianOf(ps, func(p gwPair) float64 { return p.addP50 }),
			addP99: medianOf(ps, func(p gwPair) float64 { return p.addP99 })})
	}
	return out
}

// gwMedians keeps, per load and path, the round of median throughput with
// the median CPU figures of all rounds.
func gwMedians(samples *roundRuns[gwRun]) []gwRun {
	return samples.medians(func(r gwRun) float64 { return r.msgsPerS }, func(m *gwRun, rs []gwRun) {
		m.cpuServer = medianOf(rs, func(r gwRun) float64 { return r.cpuServer })
		m.cpuBackend = medianOf(rs, func(r gwRun) float64 { return r.cpuBackend })
	})
}

// startBackend runs bench/servers/proxyecho on CPU 0 (beside sockjsd: the
// backend is on the same machine, and the load generator keeps CPU 1 to
// itself) and waits (bounded) until it answers.
func startBackend() (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + port
	cmd := pinned(0, bin("proxyecho"), "-addr", addr, "-secret", proxySecret)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := backendStats(addr); err == nil {
			return &running{cmd, addr, stop}, nil
		} else if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("proxyecho did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for a process to listen; bounded
	}
}

// beStats is the part of proxyecho's GET /stats the bench reads.
type beStats struct {
	Batches  int64 `json:"batches"`
	Messages int64 `json:"messages"`
	BadSigs  int64 `json:"bad_signatures"`
}

func backendStats(addr string) (beStats, error) {
	var s beStats
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := hc.Get("http://" + addr + "/stats")
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	err = json.NewDecoder(res.Body).Decode(&s)
	return s, err
}

// gatewayRun is one echo load over one path, against a fresh backend and
// a fresh sockjsd (cmd/server with -proxy /pecho=<backend>).
func gatewayRun(l load, path string) gwRun {
	r := gwRun{load: l, path: path}
	be, err := startBackend()
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer be.stop()
	s := server{name: "sockjsd -proxy", cmd: func(p string) *exec.Cmd {
		return pinned(0, bin("server"), append([]string{"-addr", "127.0.0.1:" + p, "-client-dir", os.TempDir(), "-log-level", "error",
			"-proxy", "/pecho=http://" + be.addr + "/base", "-proxy-secret", proxySecret}, connCaps...)...)
	}}
	srv, err := start(s)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer srv.stop()
	prefix := "/echo"
	if path == viaProxy {
		prefix = "/pecho"
	}
	var srv0, be0, srvCPU, beCPU float64
	var st0, st1 beStats
	var res lgResult
	err = runLoadgen([]string{"-url", "http://" + srv.addr + prefix, "-transport", l.transport, "-n", strconv.Itoa(l.sessions),
		"-k", "1", "-s", "64", "-d", duration.String(), "-mode", "echo", "-local-addrs", strconv.Itoa(localAddrs(l.sessions))},
		*duration+3*time.Minute,
		func() {
			srv0, be0 = cpuSeconds(srv.pid()), cpuSeconds(be.pid())
			st0, _ = backendStats(be.addr)
		},
		func() {
			srvCPU, beCPU = cpuSeconds(srv.pid())-srv0, cpuSeconds(be.pid())-be0
			st1, _ = backendStats(be.addr)
		}, &res)
	if err != nil {
		r.err = err.Error()
		return r
	}
	r.msgsPerS, r.p50, r.p99 = res.MsgsPerSec, res.P50, res.P99
	if res.Messages > 0 {
		r.cpuServer = srvCPU / float64(res.Messages) * 100000
		r.cpuBackend = beCPU / float64(res.Messages) * 100000
	}
	if b := st1.Batches - st0.Batches; b > 0 {
		r.perBatch = float64(st1.Messages-st0.Messages) / float64(b)
	}
	var notes []string
	if res.Errors > 0 {
		notes = append(notes, fmt.Sprintf("%d errors: %s", res.Errors, res.FirstError))
	}
	if st1.BadSigs > 0 {
		notes = append(notes, fmt.Sprintf("%d requests failed the signature check", st1.BadSigs))
	}
	r.err = strings.Join(notes, "; ")
	return r
}

// webhookLine is TestMeasureWebhook's log line for one queue.
var webhookLine = regexp.MustCompile(`(\w+) queue: (\d+) events \((\d+) users\) delivered in ([^:]+): (\d+) deliveries/s \(enqueue (\d+)/s\)`)

// webhookRuns runs the webhook package's measurement (SOCKJSD_MEASURE=1
// go test -run '^TestMeasureWebhook$' ./webhook/): deliveries per second
// to a signature-checking receiver on loopback, memory queue, then the
// Redis queue when redis-server is on PATH (the test skips it otherwise).
// Not pinned: the notifier, the receiver and redis-server share both CPUs.
func webhookRuns(deadline time.Time) ([]webhookResult, string) {
	limit := min(10*time.Minute, max(time.Until(deadline), time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "test", "-count=1", "-timeout", limit.String(), "-run", "^TestMeasureWebhook$", "-v", "./webhook/")
	cmd.Env = append(os.Environ(), "SOCKJSD_MEASURE=1")
	outb, err := cmd.CombinedOutput()
	var out []webhookResult
	var notes []string
	sc := bufio.NewScanner(strings.NewReader(string(outb)))
	for sc.Scan() {
		line := sc.Text()
		if m := webhookLine.FindStringSubmatch(line); m != nil {
			w := webhookResult{queue: m[1]}
			w.events, _ = strconv.Atoi(m[2])
			w.users, _ = strconv.Atoi(m[3])
			if d, err := time.ParseDuration(m[4]); err == nil {
				w.seconds = d.Seconds()
			}
			w.perSec, _ = strconv.ParseFloat(m[5], 64)
			w.enqueuePerS, _ = strconv.ParseFloat(m[6], 64)
			out = append(out, w)
			fmt.Fprintf(os.Stderr, "webhook %-6s %6d events %8.0f deliveries/s\n", w.queue, w.events, w.perSec)
		} else if strings.Contains(line, "redis-server") && !slices.ContainsFunc(out, func(w webhookResult) bool { return w.queue == "redis" }) {
			notes = append(notes, "Redis queue not measured: "+strings.TrimSpace(line))
		}
	}
	if err != nil {
		notes = append(notes, fmt.Sprintf("go test ./webhook/: %v", err))
		fmt.Fprintf(os.Stderr, "benchrun: webhook measurement: %v\n%s", err, outb)
	}
	return out, strings.Join(notes, "; ")
}

// renderGateway is the gateway section: its own header line (it may run
// alone), the echo table, the webhook figures and the per-run details.
func (r *report) renderGateway() string {
	g := r.gateway
	if g == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(r.header())
	find := func(l load, path string) *gwRun {
		for i := range g.runs {
			if g.runs[i].load == l && g.runs[i].path == path {
				return &g.runs[i]
			}
		}
		return nil
	}
	if len(g.runs) > 0 {
		fmt.Fprintf(&b, "64-byte echoes, one message in flight per session, %v measured per run after every session opened, %d interleaved round(s). Every run starts a fresh backend (`bench/servers/proxyecho`: checks each request's signature, echoes each batch's messages) and a fresh sockjsd (`cmd/server -proxy /pecho=http://<backend>/base -proxy-secret …`); *in-process* is that sockjsd's own `/echo`, *proxy* its `/pecho`, each message going to the backend as `POST /base/message` and back in the answer. sockjsd and the backend share CPU 0, the load generator has CPU 1. msgs/s and latency (the round trip seen by the load generator) are the median round's; *proxy ÷ in-process* and *added* (proxy − in-process) are the medians over the rounds of each round's two runs, made back to back; CPU is sockjsd's and the backend's over the measured window, median of the rounds.\n\n", *duration, *rounds)
		b.WriteString("| load | in-process msgs/s | proxy msgs/s | proxy ÷ in-process | in-process p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms | CPU-s per 100k msgs: in-process / proxy (sockjsd + backend) | CPU per msg, proxy ÷ in-process |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, l := range gatewayLoads {
			in, px := find(l, inProcess), find(l, viaProxy)
			if in == nil && px == nil {
				continue
			}
			cell := func(x *gwRun, f func(*gwRun) string) string {
				if x == nil || x.msgsPerS == 0 {
					return "–"
				}
				return f(x)
			}
			lat := func(x *gwRun) string { return fmt.Sprintf("%.2f / %.2f", x.p50, x.p99) }
			added, rat, cpu, cpuRat := "–", "–", "–", "–"
			for _, p := range g.pairs {
				if p.load == l {
					added = fmt.Sprintf("%+.2f / %+.2f", p.addP50, p.addP99)
					rat = fmt.Sprintf("%.2f", p.ratio)
				}
			}
			if in != nil && px != nil && in.msgsPerS > 0 && px.msgsPerS > 0 {
				cpu = fmt.Sprintf("%.2f / %.2f (%.2f + %.2f)", in.cpuServer, px.cpuServer+px.cpuBackend, px.cpuServer, px.cpuBackend)
				cpuRat = ratio(px.cpuServer+px.cpuBackend, in.cpuServer)
			}
			sessions := num(float64(l.sessions)) + " sessions"
			if l.sessions == 1 {
				sessions = "1 session"
			}
			fmt.Fprintf(&b, "| %s, %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l.transport, sessions,
				cell(in, func(x *gwRun) string { return num(x.msgsPerS) }), cell(px, func(x *gwRun) string { return num(x.msgsPerS) }),
				rat, cell(in, lat), cell(px, lat), added, cpu, cpuRat)
		}
	}
	if len(g.webhooks) > 0 || g.webhookNote != "" {
		b.WriteString("\nWebhook deliveries (`SOCKJSD_MEASURE=1 go test -run '^TestMeasureWebhook$' -v ./webhook/`: one notifier, events spread over 1,000 users, delivered to a receiver on 127.0.0.1 that checks every signature; not pinned, notifier, receiver and redis-server share both CPUs):\n\n")
		b.WriteString("| webhook queue | events | delivered in s | deliveries/s | enqueued/s |\n| --- | ---: | ---: | ---: | ---: |\n")
		for _, w := range g.webhooks {
			fmt.Fprintf(&b, "| %s | %s (%s users) | %.2f | %s | %s |\n", w.queue, num(float64(w.events)), num(float64(w.users)), w.seconds, num(w.perSec), num(w.enqueuePerS))
		}
		if g.webhookNote != "" {
			fmt.Fprintf(&b, "\n%s\n", strings.ReplaceAll(g.webhookNote, "|", "/"))
		}
	}
	if len(g.runs) > 0 {
		b.WriteString("\nGateway echo details (the median round; CPU is the median of all rounds):\n\n")
		b.WriteString("| transport | sessions | path | msgs/s | p50 ms | p99 ms | sockjsd CPU-s / 100k | backend CPU-s / 100k | msgs per backend request | note |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, x := range g.runs {
			batch := ""
			if x.path == viaProxy {
				batch = fmt.Sprintf("%.2f", x.perBatch)
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %s | %s |\n", x.load.transport, x.load.sessions, x.path,
				num(x.msgsPerS), x.p50, x.p99, x.cpuServer, x.cpuBackend, batch, strings.ReplaceAll(x.err, "|", "/"))
		}
	}
	return b.String()
}
