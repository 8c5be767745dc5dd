package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	started      time.Time
	pinned       bool
	load0, load1 string
	runs         []run
	mem          []memRun
	hub          []hubResult
	soak         *soakResult
	gateway      *gatewayReport
}

// columns of the table, in the order.
var columns = []struct{ name, title string }{
	{"sockjsd", "sockjsd"}, {"igm", "igm/sockjs-go 3.0.2"}, {"sockjs-node", "sockjs-node 0.3.24"}, {"bare", "bare gorilla echo"},
}

// num formats n with thousands separators.
func num(f float64) string {
	neg := f < 0
	s := fmt.Sprintf("%.0f", max(f, -f))
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (r *report) find(l load, server string) *run {
	for i := range r.runs {
		if r.runs[i].load == l && r.runs[i].server == server {
			return &r.runs[i]
		}
	}
	return nil
}

func (r *report) render() string {
	var b strings.Builder
	b.WriteString(r.header())
	if len(r.runs)+len(r.mem)+len(r.hub) == 0 {
		r.details(&b) // the soak alone
		return b.String()
	}
	if len(r.runs) > 0 {
		fmt.Fprintf(&b, "64-byte echoes, one message in flight per session, %v measured per run after every session opened, median of %d interleaved round(s), a fresh server process per run, library defaults.\n\n", *duration, *rounds)
	}
	b.WriteString("| load | sockjsd | igm/sockjs-go 3.0.2 | sockjs-node 0.3.24 | bare gorilla echo | sockjsd ÷ igm | sockjsd ÷ bare |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	row := func(title string, val func(server string) (float64, bool), format func(float64) string) {
		cells := make([]string, len(columns))
		vals := map[string]float64{}
		for i, c := range columns {
			v, ok := val(c.name)
			cells[i] = "–"
			if ok {
				cells[i] = format(v)
				vals[c.name] = v
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", title, strings.Join(cells, " | "),
			ratio(vals["sockjsd"], vals["igm"]), ratio(vals["sockjsd"], vals["bare"]))
	}
	echo := func(l load, f func(*run) float64) func(string) (float64, bool) {
		return func(s string) (float64, bool) {
			x := r.find(l, s)
			if x == nil || x.err != "" && x.msgsPerS == 0 {
				return 0, false
			}
			return f(x), true
		}
	}
	two := func(f float64) string { return fmt.Sprintf("%.2f", f) }
	msgs := func(x *run) float64 { return x.msgsPerS }
	cpu := func(x *run) float64 { return x.cpuPer100 }
	for _, l := range echoLoads {
		if len(r.runs) == 0 {
			break // -rounds 0: no echo rows
		}
		name := l.transport
		if l.transport == "websocket" {
			row(fmt.Sprintf("%s, %s sessions, msgs/s", name, num(float64(l.sessions))), echo(l, msgs), num)
		} else {
			row(fmt.Sprintf("%s, %s, msgs/s", name, num(float64(l.sessions))), echo(l, msgs), num)
		}
		row(fmt.Sprintf("%s, %s: server CPU-s per 100k msgs", name, num(float64(l.sessions))), echo(l, cpu), two)
		if l.transport == "xhr-polling" {
			row(fmt.Sprintf("%s, %s: 2010 answers in %v", name, num(float64(l.sessions)), *duration),
				echo(l, func(x *run) float64 { return float64(x.busy2010) }), num)
		}
	}
	for _, tr := range []string{"websocket", "xhr-streaming"} {
		seen := map[int]bool{}
		for _, m := range r.mem {
			if m.load.transport != tr || seen[m.asked] {
				continue
			}
			seen[m.asked] = true
			title := fmt.Sprintf("idle %s session, bytes, %s sessions", tr, num(float64(m.load.sessions)))
			if m.load.sessions != m.asked {
				title = fmt.Sprintf("idle %s session, bytes, %s sessions (%s asked: ulimit -n)", tr, num(float64(m.load.sessions)), num(float64(m.asked)))
			}
			row(title, func(s string) (float64, bool) {
				for _, o := range r.mem {
					if o.load == m.load && o.asked == m.asked && o.server == s && o.perSes > 0 && o.err == "" {
						return o.perSes, true
					}
				}
				return 0, false
			}, num)
		}
	}
	for _, h := range r.hub {
		if len(h.Steps) == 0 {
			continue
		}
		s := h.Steps[0]
		only := func(v float64) func(string) (float64, bool) {
			return func(srv string) (float64, bool) { return v, srv == "sockjsd" }
		}
		period := fmt.Sprintf("%.0f ms", 1000/s.Rate)
		// The bare column of a websocket row is the bare fan-out
		// (barefan.go): the floor under the same step.
		bare := func(sockjsd, floor float64) func(string) (float64, bool) {
			return func(srv string) (float64, bool) {
				switch {
				case srv == "sockjsd":
					return sockjsd, sockjsd > 0
				case srv == "bare" && h.bare != nil && h.bare.err == "":
					return floor, floor > 0
				}
				return 0, false
			}
		}
		var floorPerS, floorP99 float64
		if h.bare != nil && h.bare.UsPerWrite > 0 {
			floorPerS, floorP99 = 1e6/h.bare.UsPerWrite, h.bare.reader.P99ms
		}
		if h.cpuPer100k > 0 {
			row(fmt.Sprintf("hub, 1 publish / %s to %s %s subscribers: deliveries per server CPU-s", period, num(float64(h.Subscribed)), h.Transport), bare(1e5/h.cpuPer100k, floorPerS), num)
		}
		row(fmt.Sprintf("hub, 1 publish / %s to %s %s subscribers: delivery p50 ms", period, num(float64(h.Subscribed)), h.Transport), only(s.P50ms), func(f float64) string { return fmt.Sprintf("%.1f", f) })
		row(fmt.Sprintf("hub, 1 publish / %s to %s %s subscribers: delivery p99 ms", period, num(float64(h.Subscribed)), h.Transport), bare(s.P99ms, floorP99), func(f float64) string { return fmt.Sprintf("%.1f", f) })
		row(fmt.Sprintf("hub, same %s %s: server-side p99 ms, Send to written (/metrics)", num(float64(h.Subscribed)), h.Transport), only(h.srvP99), func(f float64) string { return fmt.Sprintf("%.1f", f) })
		row(fmt.Sprintf("hub, %s %s subscribers: largest deliveries/s with p99 ≤ 100 ms", num(float64(h.Subscribed)), h.Transport), only(h.MaxDelivPS),
			func(f float64) string {
				if f == 0 {
					return "none (first step over)"
				}
				return num(f)
			})
	}
	b.WriteString("\nsockjsd ÷ igm and ÷ bare: for msgs/s higher is better, for CPU and bytes lower is better. igm, sockjs-node and the bare echo have no hub; in the websocket hub rows the bare column is the bare fan-out instead: the same frame written with one raw send(2) to as many loopback connections by one goroutine on the pinned core, at the same rate (bench/servers/barefan).\n")
	r.details(&b)
	return b.String()
}

// header is the run's date, machine, command and load average.
func (r *report) header() string {
	return fmt.Sprintf("Run %s, %s. Command: `%s`.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"), machine(r.pinned), command()) +
		fmt.Sprintf("Load average before / after: %s / %s (the machine is shared: other processes' load distorts absolute figures; compare the ratios, which come from the same run).\n\n", r.load0, r.load1)
}

// details are the per-run figures behind the table.
func (r *report) details(b *strings.Builder) {
	if len(r.runs) > 0 {
		b.WriteString("\nEcho details (the median round; p50/p99 are round trips seen by the load generator):\n\n")
		b.WriteString("| transport | sessions | server | msgs/s | p50 ms | p99 ms | CPU-s / 100k | 2010 | note |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, x := range r.runs {
			fmt.Fprintf(b, "| %s | %d | %s | %s | %.2f | %.2f | %.2f | %d | %s |\n", x.load.transport, x.load.sessions, x.server,
				num(x.msgsPerS), x.p50, x.p99, x.cpuPer100, x.busy2010, strings.ReplaceAll(x.err, "|", "/"))
		}
	}
	var memErr []string
	for _, m := range r.mem {
		if m.note != "" {
			memErr = append(memErr, fmt.Sprintf("%s %s x%d: %s", m.server, m.load.transport, m.load.sessions, m.note))
		}
	}
	if len(memErr) > 0 {
		b.WriteString("\nIdle-memory runs where not every session opened (no figure under 99 %): " + strings.ReplaceAll(strings.Join(memErr, "; "), "|", "/") + "\n")
	}
	if len(r.hub) > 0 {
		b.WriteString("\nHub fan-out steps (sockjsd; one channel, every session subscribed; the backend API publishes {\"s\":step,\"t\":<ns>} at each rate; delay = delivery time − publish time, seen by the load generator):\n\n")
		b.WriteString("| transport | subscribers | publishes/s | deliveries/s | p50 ms | p99 ms | max ms | lost | dups | note |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, h := range r.hub {
			for _, s := range h.Steps {
				fmt.Fprintf(b, "| %s | %s | %.0f (%.0f done) | %s | %.1f | %.1f | %.1f | %d | %d | |\n", h.Transport, num(float64(h.Subscribed)),
					s.Rate, float64(s.Published)/max(s.Seconds, 1e-9), num(s.DeliveriesPS), s.P50ms, s.P99ms, s.MaxMs, s.Lost, s.Dups)
			}
			if h.err != "" || len(h.Steps) == 0 {
				fmt.Fprintf(b, "| %s | %s | | | | | | | | %s |\n", h.Transport, num(float64(h.Sessions)), strings.ReplaceAll(h.err, "|", "/"))
			}
			if h.cpuPer100k > 0 || h.srvP99 > 0 {
				fmt.Fprintf(b, "| %s | | first step, server side: CPU-s per 100k deliveries %.2f (load generator's: %.2f%s); sockjs_delivery_delay_seconds (Send to written) p50 %.1f ms, p99 %.1f ms | | | | | | | |\n",
					h.Transport, h.cpuPer100k, h.lgPer100k, map[bool]string{true: ", subscribers read raw"}[h.Raw], h.srvP50, h.srvP99)
			}
			if h.bare != nil {
				fmt.Fprintf(b, "| %s | | %s | | | | | | | |\n", h.Transport, strings.ReplaceAll(h.bare.note(), "|", "/"))
			}
		}
	}
	if r.soak != nil {
		r.renderSoak(b)
	}
}

func (r *report) renderSoak(b *strings.Builder) {
	s := r.soak
	b.WriteString(soakSection(s))
}

func soakSection(s *soakResult) string {
	var b strings.Builder
	verdict := "PASS"
	if !s.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\nSoak (%s): %.0f s of sessions opening, echoing sequence-checked messages (1–%d each, 1–4 in flight, up to 200 bytes with JSON escapes and non-ASCII) and being closed or abandoned, %d at a time on each transport, against one sockjsd process; then up to 3 min for it to settle.\n\n",
		verdict, s.Seconds, 40, s.Workers)
	if s.err != "" {
		fmt.Fprintf(&b, "Error: %s\n\n", strings.ReplaceAll(s.err, "|", "/"))
	}
	b.WriteString("| transport | sessions | closed | abandoned | echoes | lost | duplicated | closed by server | failed to open |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var names []string
	for k := range s.Transports {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t := s.Transports[k]
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %d | %d | %d |\n", k, num(float64(t.Sessions)), num(float64(t.Closed)),
			num(float64(t.Abandoned)), num(float64(t.Messages)), t.Lost, t.Dups, t.ServerClosed, t.DialFailures)
	}
	b.WriteString("\n| server (from /metrics) | baseline | peak | after | \n| --- | ---: | ---: | ---: |\n")
	fmt.Fprintf(&b, "| goroutines | %.0f | %.0f | %.0f |\n", s.Baseline.Goroutines, s.Peak.Goroutines, s.Final.Goroutines)
	fmt.Fprintf(&b, "| heap in use, MB | %.1f | %.1f | %.1f |\n", s.Baseline.HeapInuse/1e6, s.Peak.HeapInuse/1e6, s.Final.HeapInuse/1e6)
	fmt.Fprintf(&b, "| RSS, MB | %.1f | %.1f | %.1f |\n", s.Baseline.RSS/1e6, s.Peak.RSS/1e6, s.Final.RSS/1e6)
	fmt.Fprintf(&b, "| open sessions | %.0f | %.0f | %.0f |\n", s.Baseline.Sessions, s.Peak.Sessions, s.Final.Sessions)
	fmt.Fprintf(&b, "\nBack to baseline: %v, %.0f s after the last session (goroutines exactly, sessions zero, heap within 4 MB, after a GC). Server CPU over the soak: %.0f s.\n",
		s.BackToBase, s.SettleSeconds, s.cpu)
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(p, "|", "/"))
	}
	return b.String()
}

// machine describes where the run happened.
func machine(pinned bool) string {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown CPU"
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	nodeV, _ := exec.Command("node", "--version").Output()
	p := "not pinned (one CPU, -pin=false or no taskset)"
	if pinned {
		p = "server pinned to CPU 0, load generator to CPU 1 (taskset)"
	}
	return fmt.Sprintf("%d CPUs, %s, %s, node %s, ulimit -n %d; %s", runtime.NumCPU(), model, runtime.Version(),
		strings.TrimSpace(string(nodeV)), fdLimit(), p)
}

// command is how this run was started.
func command() string {
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		return c
	}
	return strings.Join(os.Args, " ")
}

// writeDoc replaces what is between the markers in path with text (the
// soak's markers when soakOnly).
func writeDoc(path, text string, soakOnly bool) error {
	if soakOnly {
		return writeSection(path, "soak", text)
	}
	return writeSection(path, "bench", text)
}

// writeSection replaces what is between path's "<name>:begin" and
// "<name>:end" markers with text.
func writeSection(path, name, text string) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s markers", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n" + text + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
