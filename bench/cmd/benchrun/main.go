// Command benchrun is `make bench`: it runs the same loads (cmd/loadgen)
// against our server, igm/sockjs-go v3.0.2, sockjs-node 0.3.24 and two
// ceilings (a plain gorilla websocket echo, a plain net/http polling echo),
// one server after another for each load, and prints one table with the
// ratios against igm and the ceiling measured in the same run. Loopback
// only; every run is bounded in time.
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
	"strconv"
	"strings"
	"time"
)

// server is one echo server under test.
type server struct {
	name string
	cmd  func(addr string) *exec.Cmd
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
	binDir   = flag.String("bin", "bench-results/bin", "where the server and loadgen binaries are")
	nodeDir  = flag.String("node", "e2e/node", "directory with node_modules/sockjs and reference-server.js")
	duration = flag.Duration("d", 5*time.Second, "measurement time per load and server")
	out      = flag.String("out", "bench-results/latest.md", "where to write the table too")
	skipMem  = flag.Bool("skip-memory", false, "skip the idle-memory runs")
	portBase = 18700
)

func main() {
	flag.Parse()
	bin := func(name string) string { return filepath.Join(*binDir, name) }
	all := func(string) bool { return true }
	servers := []server{
		{"sockjsd", func(a string) *exec.Cmd {
			return exec.Command(bin("server"), "-addr", a, "-client-dir", os.TempDir(), "-log-level", "error")
		}, all},
		{"igm", func(a string) *exec.Cmd { return exec.Command(bin("igm"), "-addr", a) }, all},
		{"sockjs-node", func(a string) *exec.Cmd {
			_, port, _ := net.SplitHostPort(a)
			c := exec.Command("node", "reference-server.js", port)
			c.Dir = *nodeDir
			c.Env = append(os.Environ(), "RESPONSE_LIMIT=131072")
			return c
		}, all},
		{"ceiling", func(a string) *exec.Cmd { return exec.Command(bin("rawws"), "-addr", a) }, func(t string) bool { return t == "websocket" }},
		{"ceiling", func(a string) *exec.Cmd { return exec.Command(bin("nethttp"), "-addr", a) }, func(t string) bool { return t == "xhr-polling" }},
	}
	var rows []row
	for _, sessions := range []int{100, 1000} {
		for _, tr := range []string{"websocket", "xhr-streaming", "xhr-polling"} {
			l := load{tr, sessions}
			for _, s := range servers {
				if !s.serves(tr) {
					continue
				}
				r := runLoad(s, l, bin("loadgen"))
				fmt.Fprintf(os.Stderr, "%-14s %5d %-12s %9.0f msgs/s p50 %6.2f ms p99 %6.2f ms  cpu/100k %.2fs %s\n",
					tr, sessions, s.name, r.msgsPerS, r.p50, r.p99, r.cpuPer100, r.err)
				rows = append(rows, r)
			}
		}
	}
	var mem []memRow
	if !*skipMem {
		for _, l := range []load{{"websocket", 10000}, {"xhr-streaming", 2000}} {
			for _, s := range servers {
				if !s.serves(l.transport) || (s.name == "ceiling" && l.transport != "websocket") {
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

// start runs a server on a fresh loopback port and waits until it answers.
func start(s server) (*exec.Cmd, string, func(), error) {
	portBase++
	addr := "127.0.0.1:" + strconv.Itoa(portBase)
	cmd := s.cmd(addr)
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
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/echo/info")
		if err == nil {
			res.Body.Close()
			return cmd, addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", nil, fmt.Errorf("%s did not start: %v", s.name, err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for a process to listen; bounded
	}
}

// cpuSeconds is the process's user+system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
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

func loadgen(ctx context.Context, lg, url, mode string, l load, d time.Duration) (*lgResult, error) {
	cmd := exec.CommandContext(ctx, lg, "-url", url, "-transport", l.transport, "-n", strconv.Itoa(l.sessions),
		"-k", "1", "-s", "64", "-d", d.String(), "-mode", mode, "-json", "-quiet")
	cmd.Stderr = io.Discard
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %v", err)
	}
	var r lgResult
	if err := json.Unmarshal(b, &r); err != nil {
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
	ctx, cancel := context.WithTimeout(context.Background(), *duration+2*time.Minute)
	defer cancel()
	cpu0 := cpuSeconds(cmd.Process.Pid)
	res, err := loadgen(ctx, lg, "http://"+addr+"/echo", "echo", l, *duration)
	cpu := cpuSeconds(cmd.Process.Pid) - cpu0
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

func runIdle(s server, l load, lg string) memRow {
	m := memRow{load: l, server: s.name}
	cmd, addr, stop, err := start(s)
	if err != nil {
		m.err = err.Error()
		return m
	}
	defer stop()
	base := rssBytes(cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan struct{})
	peak := base
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if r := rssBytes(cmd.Process.Pid); r > peak {
					peak = r
				}
			}
		}
	}()
	res, err := loadgen(ctx, lg, "http://"+addr+"/echo", "idle", l, 3*time.Second)
	close(done)
	if err != nil {
		m.err = err.Error()
		return m
	}
	m.opened = res.Opened
	if res.Opened > 0 {
		m.perSes = float64(peak-base) / float64(res.Opened)
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
	return fmt.Sprintf("%.2f×", a/b)
}

func render(rows []row, mem []memRow) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "\nEcho, one 64-byte message in flight per session, %v per run, loadgen on the same machine (%s, %d cores).\n\n", *duration, host, numCPU())
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
		igm, ceil := find(r.load, "igm"), find(r.load, "ceiling")
		vsIgm, vsCeil := "–", "–"
		if igm != nil && r.server != "igm" {
			vsIgm = ratio(r.msgsPerS, igm.msgsPerS)
		}
		if ceil != nil && r.server != "ceiling" {
			vsCeil = ratio(r.msgsPerS, ceil.msgsPerS)
		}
		note := ""
		if r.err != "" {
			note = " (" + strings.ReplaceAll(r.err, "|", "/") + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %s%s | %.0f | %.2f | %.2f | %.2f | %s | %s |\n",
			r.load.transport, r.load.sessions, r.server, note, r.msgsPerS, r.p50, r.p99, r.cpuPer100, vsIgm, vsCeil)
	}
	if len(mem) > 0 {
		b.WriteString("\nServer memory per idle session (RSS growth / sessions):\n\n")
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
				note = " (" + m.err + ")"
			}
			fmt.Fprintf(&b, "| %s | %d | %s%s | %.0f | %s | %s |\n", m.load.transport, m.load.sessions, m.server, note, m.perSes, vsIgm, vsCeil)
		}
	}
	return b.String()
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
