package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 62583.4: "62,583", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPerSession(t *testing.T) {
	top := `Showing nodes accounting for 20000B, 100% of 20000B total
      flat  flat%   sum%        cum   cum%
   10000B 50.00% 50.00%     10000B 50.00%  bufio.NewReaderSize (inline)
    5000B 25.00% 75.00%      5000B 25.00%  github.com/sockjsd/sockjsd/session.newSession
       0B     0%   100%      5000B 25.00%  net/http.(*conn).serve
`
	got := perSession(top, 10)
	for _, want := range []string{"1000  bufio.NewReaderSize (inline)", "500  github.com/sockjsd/sockjsd/session.newSession"} {
		if !strings.Contains(got, want) {
			t.Errorf("perSession lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "conn).serve") {
		t.Errorf("perSession kept a site that allocated nothing itself:\n%s", got)
	}
}

func TestWriteDocKeepsTheRest(t *testing.T) {
	path := t.TempDir() + "/bench.md"
	doc := "# B\n\nintro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n<!-- gateway:begin -->\ngw\n<!-- gateway:end -->\n<!-- soak:begin -->\nsoak\n<!-- soak:end -->\n"
	if err := osWrite(path, doc); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, "new table", false); err != nil {
		t.Fatal(err)
	}
	got := osRead(t, path)
	if !strings.Contains(got, "<!-- bench:begin -->\nnew table\n<!-- bench:end -->\nafter\n<!-- gateway:begin -->\ngw\n") || strings.Contains(got, "old") {
		t.Errorf("writeDoc:\n%s", got)
	}
	if err := writeDoc(path, "x", true); err != nil || !strings.Contains(osRead(t, path), "<!-- soak:begin -->\nx\n<!-- soak:end -->") {
		t.Errorf("soak section not replaced: %v", err)
	}
	if err := writeSection(path, "gateway", "y"); err != nil || !strings.Contains(osRead(t, path), "after\n<!-- gateway:begin -->\ny\n<!-- gateway:end -->\n<!-- soak:begin -->\nx\n") {
		t.Errorf("gateway section not replaced: %v", err)
	}
}

func osWrite(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

func osRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestQuantileInterpolates(t *testing.T) {
	before := buckets{0.01: 0, 0.1: 0, 1: 0, inf(): 0}
	after := buckets{0.01: 50, 0.1: 90, 1: 100, inf(): 100}
	if q := quantile(before, after, .5); q != 0.01 {
		t.Errorf("p50 = %v, want 0.01", q)
	}
	if q := quantile(before, after, .95); q < 0.1 || q > 1 {
		t.Errorf("p95 = %v, want within (0.1, 1]", q)
	}
	if q := quantile(after, after, .5); q != 0 {
		t.Errorf("no observations: %v, want 0", q)
	}
}

func inf() float64 { f, _ := strconv.ParseFloat("+Inf", 64); return f }

func TestWebhookLine(t *testing.T) {
	line := "    measure_test.go:33: redis queue: 20000 events (1000 users) delivered in 3.079s: 6496 deliveries/s (enqueue 44992/s)"
	m := webhookLine.FindStringSubmatch(line)
	if m == nil || m[1] != "redis" || m[2] != "20000" || m[3] != "1000" || m[4] != "3.079s" || m[5] != "6496" || m[6] != "44992" {
		t.Fatalf("webhookLine on %q: %q", line, m)
	}
}

func TestRenderGateway(t *testing.T) {
	ws := load{"websocket", 100}
	r := &report{gateway: &gatewayReport{
		runs: []gwRun{
			{load: ws, path: inProcess, msgsPerS: 80000, p50: 1, p99: 3, cpuServer: 1},
			{load: ws, path: viaProxy, msgsPerS: 20000, p50: 4.5, p99: 9, cpuServer: 6, cpuBackend: 2, perBatch: 1},
		},
		pairs:    []gwPair{{load: ws, ratio: 0.3, addP50: 3.25, addP99: 5, rounds: 3}},
		webhooks: []webhookResult{{queue: "memory", events: 20000, users: 1000, seconds: 2, perSec: 10000, enqueuePerS: 200000}},
	}}
	got := r.renderGateway()
	for _, want := range []string{
		"| websocket, 100 sessions | 80,000 | 20,000 | 0.30 | 1.00 / 3.00 | 4.50 / 9.00 | +3.25 / +5.00 | 1.00 / 8.00 (6.00 + 2.00) | 8.00 |",
		"| memory | 20,000 (1,000 users) | 2.00 | 10,000 | 200,000 |",
		"| websocket | 100 | proxy | 20,000 | 4.50 | 9.00 | 6.00 | 2.00 | 1.00 |  |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("renderGateway lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "xhr-polling") {
		t.Errorf("renderGateway has rows for loads it did not run:\n%s", got)
	}
}

func TestPairMedians(t *testing.T) {
	var ps roundRuns[gwPair]
	l := load{"xhr-polling", 100}
	for _, p := range []gwPair{{load: l, ratio: 0.9, addP50: 1, addP99: 30}, {load: l, ratio: 0.2, addP50: 5, addP99: 2}, {load: l, ratio: 0.5, addP50: 3, addP99: 9}} {
		ps.add(fmt.Sprint(l), p)
	}
	got := pairMedians(&ps)
	if len(got) != 1 || got[0] != (gwPair{load: l, ratio: 0.5, addP50: 3, addP99: 9, rounds: 3}) {
		t.Errorf("pairMedians = %+v", got)
	}
}

func TestShowing(t *testing.T) {
	for _, c := range []struct {
		in          string
		kept, total float64
	}{
		{"Type: cpu\nShowing nodes accounting for 640ms, 16.12% of 3970ms total\n", 640, 3970},
		{"Showing nodes accounting for 0ms, 0% of 10ms total", 0, 10},
		{"no header", 0, 0},
	} {
		if k, tot := showing(c.in); k != c.kept || tot != c.total {
			t.Errorf("showing(%q) = %v, %v; want %v, %v", c.in, k, tot, c.kept, c.total)
		}
	}
}
