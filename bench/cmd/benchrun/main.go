// Command benchrun is the driver of `make bench`: it runs the same loads
// (cmd/loadgen, echo and idle modes) against our server, igm/sockjs-go
// v3.0.2, sockjs-node 0.3.24 and the ceilings (a plain gorilla websocket
// echo; plain net/http polling and streaming echoes), every server in turn
// for each load (interleaved, so a slow minute of the machine hits them
// all alike), and prints one table with the ratios against igm and against
// the ceiling measured in the same run. Loopback only; every server and
// load generator runs under a deadline, and the whole run under -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

type row struct {
	load      load
	server    string
	msgsPerS  float64
	p50, p99  float64
	cpuPer100 float64 // server CPU seconds per 100k messages
	errors    int64
	err       string
}

type memRow struct {
	load   load
	server string
	perSes float64 // bytes of RSS per idle session
	opened int64
	err    string
}

var (
	binDir      = flag.String("bin", "bench-results/bin", "where the server and loadgen binaries are")
	nodeScript  = flag.String("node-script", "bench/servers/node/server.js", "the sockjs-node echo server script")
	nodeModules = flag.String("node-modules", "e2e/node/node_modules", "node_modules holding sockjs@0.3.24")
	duration    = flag.Duration("d", 5*time.Second, "measurement time per load and server")
	idleHold    = flag.Duration("idle-hold", 3*time.Second, "how long idle sessions are held before RSS is read")
	rounds      = flag.Int("rounds", 1, "interleaved rounds; each figure is the median over them")
	sessionsF   = flag.String("sessions", "100,1000", "session counts of the echo loads")
	memWS       = flag.Int("mem-websocket", 10000, "idle websocket sessions for the memory figure")
	memStream   = flag.Int("mem-streaming", 2000, "idle xhr-streaming sessions for the memory figure")
	skipMem     = flag.Bool("skip-memory", false, "skip the idle-memory runs")
	onlyServers = flag.String("servers", "", "comma-separated subset of servers (sockjsd, igm, sockjs-node, ceiling)")
	timeout     = flag.Duration("timeout", 20*time.Minute, "the whole run's deadline")
	localAddrs  = flag.Int("local-addrs", 4, "source addresses 127.0.0.1..N the load generator spreads sessions over")
	out         = flag.String("out", "bench-results/latest.md", "where to write the table too")
)

func main() {
	flag.Parse()
	deadline := time.Now().Add(*timeout)
	bin := func(name string) string { return filepath.Join(*binDir, name) }
	all := func(string) bool { return true }
	servers := []server{
		{"sockjsd", func(p string) *exec.Cmd {
			return exec.Command(bin("server"), "-addr", "127.0.0.1:"+p, "-client-dir", os.TempDir(), "-log-level", "error")
		}, all},
		{"igm", func(p string) *exec.Cmd { return exec.Command(bin("igm"), "-addr", "127.0.0.1:"+p) }, all},
		{"sockjs-node", func(p string) *exec.Cmd {
			return exec.Command("node", *nodeScript, p, *nodeModules)
		}, all},
		{"ceiling", func(p string) *exec.Cmd { return exec.Command(bin("rawws"), "-addr", "127.0.0.1:"+p) },
			func(t string) bool { return t == "websocket" }},
		{"ceiling", func(p string) *exec.Cmd { return exec.Command(bin("nethttp"), "-addr", "127.0.0.1:"+p) },
			func(t string) bool { return t != "websocket" }},
	}
	if *onlyServers != "" {
		keep := strings.Split(*onlyServers, ",")
		servers = slices.DeleteFunc(servers, func(s server) bool { return !slices.Contains(keep, s.name) })
	}
	var sessions []int
	for _, f := range strings.Split(*sessionsF, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "benchrun: bad -sessions:", *sessionsF)
			os.Exit(2)
		}
		sessions = append(sessions, n)
	}

	samples := map[string][]row{} // load+server -> one row per round
	var order []string
	for round := 0; round < *rounds; round++ {
		for _, n := range sessions {
			for _, tr := range []string{"websocket", "xhr-streaming", "xhr-polling"} {
				l := load{tr, n}
				for _, s := range servers {
					if !s.serves(tr) {
						continue
					}
					if time.Now().After(deadline) {
						fmt.Fprintln(os.Stderr, "benchrun: -timeout reached, printing what was measured")
						goto table
					}
					r := runLoad(s, l, bin("loadgen"))
					fmt.Fprintf(os.Stderr, "round %d  %-14s %5d %-12s %9.0f msgs/s p50 %6.2f ms p99 %6.2f ms  cpu/100k %.2fs %s\n",
						round+1, tr, n, s.name, r.msgsPerS, r.p50, r.p99, r.cpuPer100, r.err)
					key := fmt.Sprint(l, s.name)
					if _, ok := samples[key]; !ok {
						order = append(order, key)
					}
					samples[key] = append(samples[key], r)
				}
			}
		}
	}
table:
	var rows []row
	for _, k := range order {
		rows = append(rows, median(samples[k]))
	}
	var mem []memRow
	if !*skipMem {
		for _, l := range []load{{"websocket", *memWS}, {"xhr-streaming", *memStream}} {
			for _, s := range servers {
				if !s.serves(l.transport) || time.Now().After(deadline) {
					continue
				}
				m := runIdle(s, l, bin("loadgen"))
				fmt.Fprintf(os.Stderr, "idle %-14s %5d %-12s %8.0f B/session %s\n", l.transport, l.sessions, s.name, m.perSes, m.err)
				mem = append(mem, m)
			}
		}
	}
	table := render(rows, mem)
	fmt.Print(table)
	if *out != "" {
		_ = os.MkdirAll(filepath.Dir(*out), 0o755)
		_ = os.WriteFile(*out, []byte(table), 0o644)
	}
}

// median is the round whose throughput is the median.
func median(rs []row) row {
	slices.SortFunc(rs, func(a, b row) int {
		switch {
		case a.msgsPerS < b.msgsPerS:
			return -1
		case a.msgsPerS > b.msgsPerS:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// freePort is a loopback port nobody listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, err := net.SplitHostPort(l.Addr().String())
	return p, err
}

// start runs a server on a free loopback port and waits (bounded) until
// its /echo/info answers.
func start(s server) (*exec.Cmd, string, func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, "", nil, err
	}
	addr := "127.0.0.1:" + port
	cmd := s.cmd(port)
	stdin, _ := cmd.StdinPipe() // sockjs-node exits when its stdin closes
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, "", nil, err
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := hc.Get("http://" + addr + "/echo/info")
		if err == nil {
			res.Body.Close()
			hc.CloseIdleConnections()
			return cmd, addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", nil, fmt.Errorf("%s did not start: %v", s.name, err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for a process to listen; bounded
	}
}

// cpuSeconds is the process's user+system CPU time from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
	st, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
	return (ut + st) / 100                 // USER_HZ
}

func rssBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

type lgResult struct {
	Opened     int64   `json:"opened"`
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error"`
}

// loadgen runs cmd/loadgen and calls atStart and atEnd when it begins and
// ends measuring (after every session opened), so that the server is
// sampled over exactly the measured window.
func loadgen(lg, url, mode string, l load, d time.Duration, atStart, atEnd func()) (*lgResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lg, "-url", url, "-transport", l.transport, "-n", strconv.Itoa(l.sessions),
		"-k", "1", "-s", "64", "-d", d.String(), "-mode", mode, "-json", "-quiet", "-marks",
		"-local-addrs", strconv.Itoa(*localAddrs))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var tail []string // the load generator's last complaints, for the error
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		switch sc.Text() {
		case "measure start":
			atStart()
		case "measure end":
			atEnd()
		default:
			tail = append(tail[max(0, len(tail)-2):], sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("loadgen: %v: %s", err, strings.Join(tail, "; "))
	}
	var r lgResult
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func runLoad(s server, l load, lg string) row {
	r := row{load: l, server: s.name}
	cmd, addr, stop, err := start(s)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer stop()
	pid := cmd.Process.Pid
	var cpu0, cpu float64
	res, err := loadgen(lg, "http://"+addr+"/echo", "echo", l, *duration,
		func() { cpu0 = cpuSeconds(pid) }, func() { cpu = cpuSeconds(pid) - cpu0 })
	if err != nil {
		r.err = err.Error()
		return r
	}
	r.msgsPerS, r.p50, r.p99, r.errors = res.MsgsPerSec, res.P50, res.P99, res.Errors
	if res.Messages > 0 {
		r.cpuPer100 = cpu / float64(res.Messages) * 100000
	}
	if res.Errors > 0 {
		r.err = fmt.Sprintf("%d errors: %s", res.Errors, res.FirstError)
	}
	return r
}

// runIdle holds l.sessions idle sessions and reports the server's RSS
// growth per session: RSS once all are open and at the end of the hold
// (the larger), less RSS before the first.
func runIdle(s server, l load, lg string) memRow {
	m := memRow{load: l, server: s.name}
	cmd, addr, stop, err := start(s)
	if err != nil {
		m.err = err.Error()
		return m
	}
	defer stop()
	pid := cmd.Process.Pid
	base := rssBytes(pid)
	var held int64
	sample := func() { held = max(held, rssBytes(pid)) }
	res, err := loadgen(lg, "http://"+addr+"/echo", "idle", l, *idleHold, sample, sample)
	if err != nil {
		m.err = err.Error()
		return m
	}
	m.opened = res.Opened
	if res.Opened > 0 {
		m.perSes = float64(held-base) / float64(res.Opened)
	}
	if res.Opened < int64(l.sessions) {
		m.err = fmt.Sprintf("only %d of %d opened: %s", res.Opened, l.sessions, res.FirstError)
	}
	return m
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// ratios is "throughput / p99 / CPU" of r against o.
func ratios(r row, o *row) string {
	if o == nil || o.server == r.server {
		return "–"
	}
	return ratio(r.msgsPerS, o.msgsPerS) + " / " + ratio(r.p99, o.p99) + " / " + ratio(r.cpuPer100, o.cpuPer100)
}

func render(rows []row, mem []memRow) string {
	var b strings.Builder
	b.WriteString(machine())
	fmt.Fprintf(&b, "Echo: one 64-byte message in flight per session, %v measured per run (after every session opened), %d round(s) interleaved (median), load generator on the same machine. Ratios are throughput / p99 / CPU per message against igm/sockjs-go and against the ceiling of the same run (throughput: higher is better; p99 and CPU: lower is better).\n\n", *duration, *rounds)
	b.WriteString("| transport | sessions | server | msgs/s | p50 ms | p99 ms | CPU s / 100k msgs | vs igm | vs ceiling |\n")
	b.WriteString("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	find := func(l load, name string) *row {
		for i := range rows {
			if rows[i].load == l && rows[i].server == name {
				return &rows[i]
			}
		}
		return nil
	}
	for _, r := range rows {
		note := ""
		if r.err != "" {
			note = " (" + strings.ReplaceAll(r.err, "|", "/") + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %s%s | %.0f | %.2f | %.2f | %.2f | %s | %s |\n",
			r.load.transport, r.load.sessions, r.server, note, r.msgsPerS, r.p50, r.p99, r.cpuPer100,
			ratios(r, find(r.load, "igm")), ratios(r, find(r.load, "ceiling")))
	}
	if len(mem) > 0 {
		b.WriteString("\nServer memory per idle session (RSS growth while the sessions are held / sessions):\n\n")
		b.WriteString("| transport | sessions | server | bytes/session | vs igm | vs ceiling |\n| --- | ---: | --- | ---: | ---: | ---: |\n")
		for _, m := range mem {
			var igm, ceil float64
			for _, o := range mem {
				if o.load == m.load && o.server == "igm" {
					igm = o.perSes
				}
				if o.load == m.load && o.server == "ceiling" {
					ceil = o.perSes
				}
			}
			vsIgm, vsCeil := ratio(m.perSes, igm), ratio(m.perSes, ceil)
			if m.server == "igm" {
				vsIgm = "–"
			}
			if m.server == "ceiling" {
				vsCeil = "–"
			}
			note := ""
			if m.err != "" {
				note = " (" + strings.ReplaceAll(m.err, "|", "/") + ")"
			}
			fmt.Fprintf(&b, "| %s | %d | %s%s | %.0f | %s | %s |\n", m.load.transport, m.load.sessions, m.server, note, m.perSes, vsIgm, vsCeil)
		}
	}
	return b.String()
}

// machine describes where the run happened.
func machine() string {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown CPU"
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	nodeV, _ := exec.Command("node", "--version").Output()
	return fmt.Sprintf("\nMachine: %d cores (nproc), %s, %s, node %s, %s.\n\n",
		runtime.NumCPU(), model, runtime.Version(), strings.TrimSpace(string(nodeV)), time.Now().UTC().Format("2006-01-02 15:04 MST"))
}
