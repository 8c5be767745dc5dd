package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The hub's row of the profile: sockjsd's fan-out (the hub row misses its
// target: docs/bench.md) under the bench's first hub step, 10,000
// websocket subscribers read raw by the load generator and one publish
// every 100 ms through the backend API, on a fresh sockjsd-prof pinned
// like the bench. Per delivery: server CPU, system calls and OS context
// switches (perf stat over the step), and where the CPU goes (a CPU
// profile of the step: the profile's shares and its top functions).

type hubProf struct {
	deliveries, p99ms        float64
	cpuUs, syscalls, cswitch float64 // per delivery
	shares                   map[string]float64
	top                      string
	bare                     bareFan // the floor under the same step (barefan.go)
	err                      string
}

func profileHub(dir string) hubProf {
	var hp hubProf
	const subscribers = 10000
	srv, debug, err := startDebug(profServer{"sockjsd", bin("sockjsd-prof"), nil}, false)
	if err != nil {
		hp.err = err.Error()
		return hp
	}
	defer srv.stop()
	var stop func() map[string]float64
	var cpuProf []byte
	profDone := make(chan struct{}, 1)
	var res hubResult
	err = runLoadgen([]string{"-mode", "hub", "-url", "http://" + srv.addr + "/hub", "-transport", "websocket",
		"-n", fmt.Sprint(subscribers), "-rates", "10", "-d", "6s", "-p99-limit", "100ms",
		"-local-addrs", fmt.Sprint(localAddrs(subscribers)), "-connect-timeout", "3m"},
		10*time.Minute, func() {
			stop, _ = perfStat(srv.pid(), "raw_syscalls:sys_enter", "context-switches", "task-clock")
			go cpuProfile(debug, 5, &cpuProf, profDone)
		}, func() {}, &res)
	var counts map[string]float64
	if stop != nil {
		counts = stop()
		<-profDone
	}
	if err != nil || len(res.Steps) == 0 || res.Steps[0].Deliveries == 0 {
		hp.err = fmt.Sprintf("hub load: %v", err)
		return hp
	}
	st := res.Steps[0]
	n := float64(st.Deliveries)
	hp.deliveries, hp.p99ms = n, st.P99ms
	hp.cpuUs = counts["task-clock"] * 1000 / n
	hp.syscalls = counts["raw_syscalls:sys_enter"] / n
	hp.cswitch = counts["context-switches"] / n
	path := filepath.Join(dir, "sockjsd.hub.cpu.pprof")
	_ = os.WriteFile(path, cpuProf, 0o644)
	hp.shares = cpuShares(path)
	top, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", path).Output()
	hp.top = topTable(string(top))
	hp.bare = bareFanOut(subscribers, 10, 6*time.Second)
	return hp
}

// cpuProfile fetches a CPU profile of seconds from a debug listener into
// out and then signals done.
func cpuProfile(debug string, seconds int, out *[]byte, done chan<- struct{}) {
	if r, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debug, seconds)); err == nil {
		*out, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	done <- struct{}{}
}

// topTable keeps pprof -top's table (its header line and rows).
func topTable(s string) string {
	if i := strings.Index(s, "      flat"); i >= 0 {
		return s[i:]
	}
	return s
}

// hubSection is the profile's hub part in markdown.
func hubSection(hp hubProf) string {
	var b strings.Builder
	b.WriteString("\nHub fan-out, 10,000 websocket subscribers (read raw), one publish every 100 ms through the backend API, the bench's first hub step on sockjsd-prof; per delivery:\n\n")
	if hp.err != "" {
		fmt.Fprintf(&b, "hub: %s\n", hp.err)
		return b.String()
	}
	b.WriteString("| per delivery | sockjsd |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| deliveries in the step (p99 ms) | %.0f (%.1f) |\n", hp.deliveries, hp.p99ms)
	fmt.Fprintf(&b, "| server CPU, µs | %.2f |\n", hp.cpuUs)
	if hp.bare.err == "" && hp.bare.UsPerWrite > 0 {
		fmt.Fprintf(&b, "| server CPU ÷ the bare fan-out's per write (%.2f µs) | %.2f |\n", hp.bare.UsPerWrite, hp.cpuUs/hp.bare.UsPerWrite)
	}
	fmt.Fprintf(&b, "| syscalls | %.2f |\n", hp.syscalls)
	fmt.Fprintf(&b, "| OS context switches | %.3f |\n", hp.cswitch)
	for _, k := range []string{"syscalls", "scheduler", "gc", "malloc"} {
		fmt.Fprintf(&b, "| CPU profile: %s, %% | %.1f |\n", k, 100*hp.shares[k])
	}
	fmt.Fprintf(&b, "\n%s.\n", hp.bare.note())
	fmt.Fprintf(&b, "\nsockjsd under the hub step, CPU profile (`go tool pprof -top`, bench-results/profile/sockjsd.hub.cpu.pprof):\n\n```\n%s```\n", hp.top)
	return b.String()
}
