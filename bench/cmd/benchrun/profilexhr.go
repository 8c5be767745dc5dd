package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The xhr-streaming row of the profile: sockjsd against igm/sockjs-go
// (the row's target is a ratio to igm: docs/bench.md) under the bench's
// xhr-streaming ×100 echo, the load generator's raw HTTP/1.1 sessions, each
// server a fresh process pinned like the bench. Per echoed message (one
// xhr_send request in, one frame out on the stream): server CPU, system
// calls, OS context switches (perf stat), heap allocations (memstats), the
// CPU profile's shares, how much of it is under net/http's connection
// serving outside the handler (the part neither server's own code can
// change), and its top functions.

type xhrProf struct {
	name                     string
	msgsPerS                 float64
	cpuUs, syscalls, cswitch float64 // per message
	mallocs, allocBytes      float64 // per message
	shares                   map[string]float64
	httpShare                float64 // net/http's own serving, outside the handler
	top                      string
	err                      string
}

func profileXHR(dir string) []xhrProf {
	var out []xhrProf
	for _, s := range []profServer{{"sockjsd", bin("sockjsd-prof"), nil}, {"igm", bin("igm"), nil}} {
		p := profileXHROne(s, dir)
		fmt.Fprintf(os.Stderr, "profile xhr-streaming %s: %+v\n", s.name, p)
		out = append(out, p)
	}
	return out
}

func profileXHROne(s profServer, dir string) xhrProf {
	p := xhrProf{name: s.name}
	srv, debug, err := startDebug(s, false)
	if err != nil {
		p.err = err.Error()
		return p
	}
	defer srv.stop()
	var stop func() map[string]float64
	var v0, v1 debugVars
	var cpuProf []byte
	profDone := make(chan struct{}, 1)
	var res lgResult
	d := 8 * time.Second
	err = runLoadgen([]string{"-url", "http://" + srv.addr + "/echo", "-transport", "xhr-streaming", "-n", "100",
		"-k", "1", "-s", "64", "-d", d.String(), "-mode", "echo", "-local-addrs", "4", "-http", "raw"},
		d+3*time.Minute, func() {
			v0, _ = readVars(debug)
			stop, _ = perfStat(srv.pid(), "raw_syscalls:sys_enter", "context-switches", "task-clock")
			go cpuProfile(debug, 6, &cpuProf, profDone)
		}, func() {
			v1, _ = readVars(debug)
		}, &res)
	var counts map[string]float64
	if stop != nil { // the window began: the profile was asked for
		counts = stop()
		<-profDone
	}
	if err != nil || res.Messages == 0 {
		p.err = fmt.Sprintf("load: %v", err)
		return p
	}
	n := float64(res.Messages)
	p.msgsPerS = res.MsgsPerSec
	p.cpuUs = counts["task-clock"] * 1000 / n // task-clock is in ms
	p.syscalls = counts["raw_syscalls:sys_enter"] / n
	p.cswitch = counts["context-switches"] / n
	p.mallocs = float64(v1.Memstats.Mallocs-v0.Memstats.Mallocs) / n
	p.allocBytes = float64(v1.Memstats.TotalAlloc-v0.Memstats.TotalAlloc) / n
	path := filepath.Join(dir, s.name+".xhr-streaming.cpu.pprof")
	_ = os.WriteFile(path, cpuProf, 0o644)
	p.shares = cpuShares(path)
	p.httpShare = httpServingShare(path)
	top, _ := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=25", path).Output()
	p.top = topTable(string(top))
	return p
}

// httpServingShare is the share of the profile's samples under net/http's
// connection serving (conn.serve) but not under the handler
// (serverHandler.ServeHTTP): reading and parsing requests, writing
// answers' heads and finishing them, with their system calls.
func httpServingShare(path string) float64 {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=100000", "-unit=ms",
		`-focus=net/http\.\(\*conn\)\.serve`, `-ignore=net/http\.serverHandler\.ServeHTTP`, path).Output()
	if err != nil {
		return 0
	}
	kept, total := showing(string(out))
	if total == 0 {
		return 0
	}
	return kept / total
}

// showing reads pprof -top's "Showing nodes accounting for Xms, P% of Tms
// total": with every node shown, X is what its focus and ignore filters
// kept, T the whole profile.
func showing(s string) (kept, total float64) {
	for _, l := range strings.Split(s, "\n") {
		var pct float64
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "Showing nodes accounting for %fms, %f%% of %fms total", &kept, &pct, &total); err == nil {
			return kept, total
		}
	}
	return 0, 0
}

// xhrSection is the profile's xhr-streaming part in markdown.
func xhrSection(ps []xhrProf) string {
	var b strings.Builder
	b.WriteString("\nxhr-streaming echo, 100 sessions, one 64-byte message in flight each, the load generator's raw HTTP/1.1 sessions; per echoed message (one `xhr_send` in, one frame out on the stream):\n\n")
	b.WriteString("| per message | " + strings.Join(names(ps), " | ") + " |\n| --- |" + strings.Repeat(" ---: |", len(ps)) + "\n")
	line := func(title string, f func(xhrProf) string) {
		cells := []string{}
		for _, p := range ps {
			if p.err != "" {
				cells = append(cells, "–")
				continue
			}
			cells = append(cells, f(p))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", title, strings.Join(cells, " | "))
	}
	line("msgs/s in the counted window (perf attached)", func(p xhrProf) string { return fmt.Sprintf("%.0f", p.msgsPerS) })
	line("server CPU, µs", func(p xhrProf) string { return fmt.Sprintf("%.1f", p.cpuUs) })
	line("syscalls", func(p xhrProf) string { return fmt.Sprintf("%.2f", p.syscalls) })
	line("OS context switches", func(p xhrProf) string { return fmt.Sprintf("%.2f", p.cswitch) })
	line("heap allocations", func(p xhrProf) string { return fmt.Sprintf("%.1f", p.mallocs) })
	line("heap bytes allocated", func(p xhrProf) string { return fmt.Sprintf("%.0f", p.allocBytes) })
	for _, k := range []string{"syscalls", "scheduler", "gc", "malloc"} {
		line("CPU profile: "+k+", %", func(p xhrProf) string { return fmt.Sprintf("%.1f", 100*p.shares[k]) })
	}
	line("CPU profile: net/http's serving outside the handler, %", func(p xhrProf) string { return fmt.Sprintf("%.1f", 100*p.httpShare) })
	for _, p := range ps {
		if p.err != "" {
			fmt.Fprintf(&b, "\n%s: %s\n", p.name, p.err)
			continue
		}
		fmt.Fprintf(&b, "\n%s under the xhr-streaming echo, CPU profile by cumulative time (`go tool pprof -top -cum`, bench-results/profile/%s.xhr-streaming.cpu.pprof):\n\n```\n%s```\n", p.name, p.name, p.top)
	}
	return b.String()
}

func names(ps []xhrProf) []string {
	var n []string
	for _, p := range ps {
		n = append(n, p.name)
	}
	return n
}
