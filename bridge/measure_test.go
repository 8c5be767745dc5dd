//go:build linux

package bridge_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/bridge"
	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// TestMeasure prints the figures docs/exec.md quotes: process start
// latency and messages/s through cat, against the in-process echo service
// in the same run. Run it without -race for meaningful numbers:
//
//	go test -run TestMeasure -v ./bridge/
func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement: skipped under -short")
	}
	s := startServer(t, bridge.Options{Argv: []string{"cat"}}, transport.Options{})
	ready := startServer(t, bridge.Options{Argv: sh("echo ready; exec cat")}, transport.Options{})

	// Start latency: fork+exec as the bridge sees it, and from Dial to the
	// program's first line as a client sees it.
	const sessions = 50
	var firstLine []time.Duration
	for range sessions {
		start := time.Now()
		c, ht := dialWith(t, ready.URL, sockjs.WebSocket)
		if m := recv(t, c); m != "ready" {
			t.Fatalf("got %q", m)
		}
		firstLine = append(firstLine, time.Since(start))
		_ = c.Close()
		ht.CloseIdleConnections()
	}
	ready.obs.mu.Lock()
	forkExec := slices.Clone(ready.obs.latencies)
	ready.obs.mu.Unlock()
	t.Logf("start latency over %d sessions: fork+exec p50 %v p99 %v; Dial (info, websocket, open) to the program's first line p50 %v p99 %v",
		sessions, pct(forkExec, 50), pct(forkExec, 99), pct(firstLine, 50), pct(firstLine, 99))

	// Throughput: one session, 200 messages of 64 bytes in flight.
	r := mux.NewRouter()
	r.SkipClean(true)
	echo := transport.New("/echo", transport.Options{Logger: quiet()}, services.Echo)
	gorillamux.Mount(r, echo)
	es := httptest.NewServer(r)
	defer es.Close()
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRPolling} {
		catRate := throughput(t, s.URL, tr)
		echoRate := throughput(t, es.URL+"/echo", tr)
		t.Logf("%s: %.0f msgs/s through cat, %.0f msgs/s through the in-process echo service (ratio %.2f)", tr, catRate, echoRate, catRate/echoRate)
	}
}

// throughput echoes 20,000 messages of 64 bytes with 200 in flight and
// returns messages per second.
func throughput(t *testing.T, url, tr string) float64 {
	t.Helper()
	const n, window = 20000, 200
	c, ht := dialWith(t, url, tr)
	defer ht.CloseIdleConnections()
	defer c.Close()
	msg := strings.Repeat("x", 60)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	sent := 0
	for ; sent < window; sent++ {
		_ = c.Send(fmt.Sprintf("%s%04d", msg[:60], sent%10000))
	}
	for got := 0; got < n; got++ {
		if _, err := c.Recv(ctx); err != nil {
			code, reason, _ := c.CloseInfo()
			t.Fatalf("%s %s: after %d: %v (close %d %q)", url, tr, got, err, code, reason)
		}
		if sent < n {
			_ = c.Send(fmt.Sprintf("%s%04d", msg[:60], sent%10000))
			sent++
		}
	}
	return n / time.Since(start).Seconds()
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}
