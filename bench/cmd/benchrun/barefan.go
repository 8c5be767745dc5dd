package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The hub rows' floor: bench/servers/barefan writes the same websocket
// frame with one raw non-blocking send(2) to every one of n loopback
// connections, one goroutine on the server's pinned CPU, at the first hub
// step's rate; its readers are pinned where the load generator is. The
// hub's CPU per delivery divided by its CPU per write is what the hub,
// the session and the transport add to the system call.

// bareFan is barefan's writer and reader output together.
type bareFan struct {
	Writes     int64   `json:"writes"`
	Partial    int64   `json:"partial"`
	CPUSeconds float64 `json:"cpu_seconds"`
	UsPerWrite float64 `json:"us_per_write"`
	LoopMsMax  float64 `json:"loop_ms_max"`
	LoopMsMean float64 `json:"loop_ms_mean"`
	reader     struct {
		Deliveries int64   `json:"deliveries"`
		P50ms      float64 `json:"p50_ms"`
		P99ms      float64 `json:"p99_ms"`
		MaxMs      float64 `json:"max_ms"`
		CPUSeconds float64 `json:"cpu_seconds"`
		Errors     int64   `json:"errors"`
	}
	err string
}

// bareFanOut runs barefan with n connections at rate publishes per second
// for d.
func bareFanOut(n int, rate float64, d time.Duration) bareFan {
	var bf bareFan
	port, err := freePort()
	if err != nil {
		bf.err = err.Error()
		return bf
	}
	addr := "127.0.0.1:" + port
	ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Minute)
	defer cancel()
	n0, a0 := pinArgs(0, bin("barefan"), "-addr", addr, "-n", strconv.Itoa(n), "-rate", fmt.Sprint(rate), "-d", d.String())
	w := exec.CommandContext(ctx, n0, a0...)
	var wout strings.Builder
	w.Stdout = &wout
	ready, err := w.StderrPipe()
	if err != nil {
		bf.err = err.Error()
		return bf
	}
	if err := w.Start(); err != nil {
		bf.err = err.Error()
		return bf
	}
	waited := false
	defer func() {
		if !waited {
			cancel() // kills the writer
			_ = w.Wait()
		}
	}()
	// The writer says "listening" once it accepts (bounded by ctx).
	line, err := bufio.NewReader(ready).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening") {
		bf.err = fmt.Sprintf("barefan writer did not start: %q %v", line, err)
		return bf
	}
	n1, a1 := pinArgs(1, bin("barefan"), "-read", addr, "-n", strconv.Itoa(n), "-local-addrs", strconv.Itoa(localAddrs(n)))
	rout, err := exec.CommandContext(ctx, n1, a1...).Output()
	if err != nil {
		bf.err = "barefan reader: " + err.Error()
		return bf
	}
	waited = true
	if err := w.Wait(); err != nil {
		bf.err = "barefan writer: " + err.Error()
		return bf
	}
	if err := json.Unmarshal([]byte(wout.String()), &bf); err != nil {
		bf.err = "barefan writer output: " + err.Error()
		return bf
	}
	if err := json.Unmarshal(rout, &bf.reader); err != nil {
		bf.err = "barefan reader output: " + err.Error()
	}
	return bf
}

// note is the floor in one line, for the table's notes and the profile.
func (bf bareFan) note() string {
	if bf.err != "" {
		return "bare fan-out: " + bf.err
	}
	return fmt.Sprintf("bare fan-out (raw send(2) of the same frame to the same number of loopback connections, one goroutine on the pinned core): %.2f µs of writer CPU per write, publish loop mean %.1f ms, max %.1f ms; delivery p50 %.1f ms, p99 %.1f ms; readers' CPU %.2f s for %d deliveries",
		bf.UsPerWrite, bf.LoopMsMean, bf.LoopMsMax, bf.reader.P50ms, bf.reader.P99ms, bf.reader.CPUSeconds, bf.reader.Deliveries)
}
