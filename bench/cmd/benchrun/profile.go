package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The profile (-profile, `make bench-profile`): sockjsd (the same /echo
// as cmd/server, built with pprof: bench/servers/sockjsd-prof), igm and
// the bare echo under the websocket x1,000 load, each in a fresh process
// pinned like the bench. Per message: syscalls, OS context switches and
// server CPU (perf stat), heap allocations (runtime.MemStats through
// /debug/vars), goroutine wake-ups by another goroutine (runtime.ready),
// goroutines started (runtime.newproc1) and network wake-ups
// (runtime.netpollready), counted with perf uprobes in a second window
// (uprobes slow the process; ratios per message stay valid). Then per
// idle websocket session (5,000 held): RSS, goroutine stacks, heap, and
// a heap profile by allocation site; and sockjsd's hub fan-out
// (profilehub.go). Profiles go to bench-results/profile.

type profServer struct {
	name, binary string
	args         []string
}

type memstats struct {
	Mallocs, TotalAlloc, HeapInuse, StackInuse, HeapObjects, Sys, MSpanInuse uint64
}

type debugVars struct {
	Memstats   memstats `json:"memstats"`
	Goroutines int      `json:"goroutines"`
}

func readVars(addr string) (debugVars, error) {
	var v debugVars
	res, err := http.Get("http://" + addr + "/debug/vars")
	if err != nil {
		return v, err
	}
	defer res.Body.Close()
	return v, json.NewDecoder(res.Body).Decode(&v)
}

// perfStat counts events on pid until stopped; stop returns the counts.
func perfStat(pid int, events ...string) (stop func() map[string]float64, err error) {
	f, err := os.CreateTemp("", "perfstat")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("perf", "stat", "-x", ",", "-o", f.Name(), "-e", strings.Join(events, ","), "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() map[string]float64 {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		b, _ := os.ReadFile(f.Name())
		os.Remove(f.Name())
		out := map[string]float64{}
		for _, line := range strings.Split(string(b), "\n") {
			c := strings.Split(line, ",")
			if len(c) < 3 || strings.HasPrefix(line, "#") {
				continue
			}
			v, err := strconv.ParseFloat(c[0], 64)
			if err != nil {
				continue
			}
			out[c[2]] = v
		}
		return out
	}, nil
}

type profResult struct {
	name                                     string
	msgs                                     float64 // messages in the counters window
	msgsPerS                                 float64
	syscalls, cswitch, cpuUs                 float64 // per message
	mallocs, allocBytes                      float64 // per message
	ready, newproc, netready                 float64 // per message (uprobe window)
	idleRSS, idleStack, idleHeap, idleGorout float64 // per idle session
	idleTop                                  string
	shares                                   map[string]float64 // CPU profile split
	err                                      string
}

func profile() string {
	dir := "bench-results/profile"
	_ = os.MkdirAll(dir, 0o755)
	list := []profServer{
		{"sockjsd", bin("sockjsd-prof"), nil},
		{"igm", bin("igm"), nil},
		{"bare", bin("rawws"), nil},
	}
	var results []profResult
	for _, s := range list {
		r := profileOne(s, dir)
		fmt.Fprintf(os.Stderr, "profile %s: %+v\n", s.name, r)
		results = append(results, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Profile run %s, %s. Command: `make bench-profile`. Load average %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(pinning()), loadavg())
	b.WriteString("Websocket echo, 1,000 sessions, one 64-byte message in flight each; per echoed message (one frame in, one frame out):\n\n")
	b.WriteString("| per message | sockjsd | igm/sockjs-go 3.0.2 | bare gorilla echo |\n| --- | ---: | ---: | ---: |\n")
	line := func(title string, f func(profResult) float64, format string) {
		cells := []string{}
		for _, r := range results {
			cells = append(cells, fmt.Sprintf(format, f(r)))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", title, strings.Join(cells, " | "))
	}
	line("msgs/s in the counted window (perf attached)", func(r profResult) float64 { return r.msgsPerS }, "%.0f")
	line("server CPU, µs", func(r profResult) float64 { return r.cpuUs }, "%.1f")
	line("syscalls", func(r profResult) float64 { return r.syscalls }, "%.2f")
	line("OS context switches", func(r profResult) float64 { return r.cswitch }, "%.2f")
	line("goroutine wake-ups by another goroutine (runtime.ready)", func(r profResult) float64 { return r.ready }, "%.2f")
	line("network wake-ups (runtime.netpollready)", func(r profResult) float64 { return r.netready }, "%.2f")
	line("goroutines started (runtime.newproc1)", func(r profResult) float64 { return r.newproc }, "%.3f")
	line("heap allocations", func(r profResult) float64 { return r.mallocs }, "%.2f")
	line("heap bytes allocated", func(r profResult) float64 { return r.allocBytes }, "%.0f")
	share := func(k string) func(profResult) float64 {
		return func(r profResult) float64 { return 100 * r.shares[k] }
	}
	line("CPU profile: in syscalls (flat), %", share("syscalls"), "%.1f")
	line("CPU profile: scheduler and channels (flat), %", share("scheduler"), "%.1f")
	line("CPU profile: GC marking and assists, %", share("gc"), "%.1f")
	line("CPU profile: allocation (mallocgc), %", share("malloc"), "%.1f")
	b.WriteString("\nIdle websocket sessions (5,000 held), per session:\n\n")
	b.WriteString("| per idle session | sockjsd | igm/sockjs-go 3.0.2 | bare gorilla echo |\n| --- | ---: | ---: | ---: |\n")
	line("RSS growth, bytes", func(r profResult) float64 { return r.idleRSS }, "%.0f")
	line("goroutines", func(r profResult) float64 { return r.idleGorout }, "%.2f")
	line("goroutine stacks (StackInuse), bytes", func(r profResult) float64 { return r.idleStack }, "%.0f")
	line("heap in use after a GC (HeapInuse), bytes", func(r profResult) float64 { return r.idleHeap }, "%.0f")
	for _, r := range results {
		if r.err != "" {
			fmt.Fprintf(&b, "\n%s: %s\n", r.name, r.err)
		}
	}
	b.WriteString(hubSection(profileHub(dir)))
	b.WriteString(xhrSection(profileXHR(dir)))
	for _, r := range results {
		if r.idleTop != "" {
			fmt.Fprintf(&b, "\n%s, heap in use per idle websocket session (5,000 held) by allocation site, every allocation profiled (`go tool pprof -sample_index=inuse_space -top`, divided by the sessions):\n\n```\n%s```\n", r.name, r.idleTop)
		}
	}
	return b.String()
}

func profileOne(s profServer, dir string) profResult {
	r := profResult{name: s.name}
	srv, debug, err := startDebug(s, false)
	if err != nil {
		r.err = err.Error()
		return r
	}
	lg := func(d time.Duration, atStart, atEnd func()) (lgResult, error) {
		var res lgResult
		err := runLoadgen([]string{"-url", "http://" + srv.addr + "/echo", "-transport", "websocket", "-n", "1000",
			"-k", "1", "-s", "64", "-d", d.String(), "-mode", "echo", "-local-addrs", "4"}, d+3*time.Minute, atStart, atEnd, &res)
		return res, err
	}
	// Window 1: perf counters, memstats, CPU and allocation profiles.
	var stop func() map[string]float64
	var v0, v1 debugVars
	var cpuProf, allocProf []byte
	profDone := make(chan struct{}, 2)
	get := func(path string, out *[]byte) {
		res, err := http.Get("http://" + debug + path)
		if err == nil {
			*out, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}
	}
	d := 8 * time.Second
	res, err := lg(d, func() {
		v0, _ = readVars(debug)
		stop, _ = perfStat(srv.pid(), "raw_syscalls:sys_enter", "context-switches", "task-clock")
		go func() { get("/debug/pprof/profile?seconds=6", &cpuProf); profDone <- struct{}{} }()
		go func() { get("/debug/pprof/allocs?seconds=6", &allocProf); profDone <- struct{}{} }()
	}, func() {
		v1, _ = readVars(debug)
	})
	var counts map[string]float64
	if stop != nil { // the window began: both profiles were asked for
		counts = stop()
		<-profDone
		<-profDone
	}
	_ = os.WriteFile(filepath.Join(dir, s.name+".cpu.pprof"), cpuProf, 0o644)
	r.shares = cpuShares(filepath.Join(dir, s.name+".cpu.pprof"))
	_ = os.WriteFile(filepath.Join(dir, s.name+".allocs.pprof"), allocProf, 0o644)
	if err != nil || res.Messages == 0 {
		srv.stop()
		r.err = fmt.Sprintf("load: %v", err)
		return r
	}
	n := float64(res.Messages)
	r.msgs, r.msgsPerS = n, res.MsgsPerSec
	r.syscalls = counts["raw_syscalls:sys_enter"] / n
	r.cswitch = counts["context-switches"] / n
	r.cpuUs = counts["task-clock"] * 1000 / n // task-clock is in ms
	r.mallocs = float64(v1.Memstats.Mallocs-v0.Memstats.Mallocs) / n
	r.allocBytes = float64(v1.Memstats.TotalAlloc-v0.Memstats.TotalAlloc) / n

	// Window 2: uprobes on the runtime's wake-up paths.
	probes, cleanup := addProbes(s)
	if len(probes) > 0 {
		var pstop func() map[string]float64
		res2, err := lg(4*time.Second, func() { pstop, _ = perfStat(srv.pid(), probes...) }, func() {})
		if pstop != nil && err == nil && res2.Messages > 0 {
			c := pstop()
			n2 := float64(res2.Messages)
			r.ready = c[probes[0]] / n2
			r.newproc = c[probes[1]] / n2
			r.netready = c[probes[2]] / n2
		}
	}
	cleanup()
	srv.stop()

	// Idle: 5,000 websocket sessions on a fresh process that records
	// every allocation (exact heap profile by site).
	srv, debug, err = startDebug(s, true)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer srv.stop()
	time.Sleep(500 * time.Millisecond) // let the fresh process settle before the baseline; nothing to wait on
	rss0 := rssBytes(srv.pid())
	var discard []byte
	get("/debug/pprof/heap?gc=1", &discard) // the same GC before the baseline
	i0, _ := readVars(debug)
	var i1 debugVars
	var rss1 int64
	var heap []byte
	var idle lgResult
	err = runLoadgen([]string{"-url", "http://" + srv.addr + "/echo", "-transport", "websocket", "-n", "5000",
		"-d", "3s", "-mode", "idle", "-local-addrs", "4"}, 5*time.Minute, func() {
		rss1 = rssBytes(srv.pid())
		// gc=1: a GC first, so that the profile holds every session and
		// HeapInuse (read after it) no garbage from the opening phase.
		get("/debug/pprof/heap?gc=1", &heap)
		i1, _ = readVars(debug)
	}, func() {}, &idle)
	if err != nil || idle.Opened == 0 {
		r.err = fmt.Sprintf("idle: %v", err)
		return r
	}
	o := float64(idle.Opened)
	r.idleRSS = float64(rss1-rss0) / o
	r.idleStack = float64(i1.Memstats.StackInuse-i0.Memstats.StackInuse) / o
	r.idleHeap = float64(i1.Memstats.HeapInuse-i0.Memstats.HeapInuse) / o
	r.idleGorout = float64(i1.Goroutines-i0.Goroutines) / o
	hp := filepath.Join(dir, s.name+".idle-heap.pprof")
	_ = os.WriteFile(hp, heap, 0o644)
	top, _ := exec.Command("go", "tool", "pprof", "-sample_index=inuse_space", "-top", "-nodecount=14", "-unit=B", hp).Output()
	r.idleTop = perSession(string(top), o)
	return r
}

// perSession turns pprof -top's table (bytes, -unit=B) into bytes per
// session by allocation site (flat: allocated by that function itself).
func perSession(s string, sessions float64) string {
	var b strings.Builder
	keep := false
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "flat%") {
			keep = true
			b.WriteString("bytes/session  allocated in\n")
			continue
		}
		f := strings.Fields(l)
		if !keep || len(f) < 6 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "B"), 64)
		if err != nil || v == 0 {
			continue
		}
		fmt.Fprintf(&b, "%13.0f  %s\n", v/sessions, strings.Join(f[5:], " "))
	}
	return b.String()
}

// startDebug starts s pinned to CPU 0 with its debug listener; every
// allocation is profiled when exact.
func startDebug(s profServer, exact bool) (*running, string, error) {
	dport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	debug := "127.0.0.1:" + dport
	srv, err := start(server{name: s.name, cmd: func(p string) *exec.Cmd {
		args := []string{"-addr", "127.0.0.1:" + p, "-debug-addr", debug}
		if exact {
			args = append(args, "-mem-profile-rate", "1")
		}
		return pinned(0, s.binary, append(args, s.args...)...)
	}})
	return srv, debug, err
}

// addProbes puts perf uprobes on the runtime's wake-up functions in s's
// binary; cleanup removes them.
func addProbes(s profServer) ([]string, func()) {
	group := "bench" + strings.ReplaceAll(s.name, "-", "")
	var names []string
	for _, f := range []string{"ready=runtime.ready", "newproc=runtime.newproc1", "netready=runtime.netpollready"} {
		name, fn, _ := strings.Cut(f, "=")
		ev := group + ":" + name
		if out, err := exec.Command("perf", "probe", "-x", s.binary, "-a", ev+"="+fn).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "profile: perf probe %s: %v: %s\n", ev, err, out)
			continue
		}
		names = append(names, ev)
	}
	cleanup := func() { _ = exec.Command("perf", "probe", "-d", group+":*").Run() }
	if len(names) < 3 {
		cleanup()
		return nil, func() {}
	}
	return names, cleanup
}
