package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/proxy"
)

// usage is what sockjsd's /metrics says of its goroutines and heap.
type usage struct {
	goroutines float64
	heap       float64 // go_memstats_heap_inuse_bytes
}

func (u usage) String() string {
	return fmt.Sprintf("%.0f goroutines, heap in use %.1f MiB", u.goroutines, u.heap/(1<<20))
}

func (s *sockjsd) usage(t *testing.T) usage {
	return usage{s.metric(t, "go_goroutines"), s.metric(t, "go_memstats_heap_inuse_bytes")}
}

// baseline is the least of s's goroutines and heap read every 100ms for
// d: the scrapes themselves make garbage enough for a GC or two.
func (s *sockjsd) baseline(t *testing.T, d time.Duration) usage {
	b := s.usage(t)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		u := s.usage(t)
		b.goroutines, b.heap = min(b.goroutines, u.goroutines), min(b.heap, u.heap)
	}
	return b
}

// Tolerances over the baseline: a few goroutines (a connection of the
// scrape, the runtime's own), and heap the GC has not yet given back.
const (
	goroutineSlack = 2
	heapSlack      = 4 << 20
)

// backAtBaseline waits (bounded) until s's goroutines and heap are back
// within the tolerance of base, and returns what it read last.
func (s *sockjsd) backAtBaseline(t *testing.T, base usage, what string) usage {
	t.Helper()
	var u usage
	start := time.Now()
	for {
		u = s.usage(t)
		if u.goroutines <= base.goroutines+goroutineSlack && u.heap <= base.heap+heapSlack {
			break
		}
		if testing.Verbose() && time.Since(start) > time.Second {
			t.Logf("%s: %v", time.Since(start).Round(time.Millisecond), u)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s: sockjsd did not return to its baseline within 15s: %v, baseline %v", what, u, base)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: back to %v (baseline %v) in %v", what, u, base, time.Since(start).Round(10*time.Millisecond))
	return u
}

// failure is one way the /bad backend breaks.
type failure struct {
	name  string
	code  int
	kill  bool                                              // the backend's listener and connections are closed
	serve func(w http.ResponseWriter, r *http.Request) bool // else every request is answered by serve
}

var failures = []failure{
	{name: "killed", code: proxy.CodeBackendFailed, kill: true},
	{name: "sleeps past the timeout", code: proxy.CodeBackendTimeout, serve: func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done(): // sockjsd gave up
		case <-time.After(30 * time.Second):
		}
		return true
	}},
	{name: "status 500", code: proxy.CodeBackendFailed, serve: func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return true
	}},
	{name: "not JSON", code: proxy.CodeBackendFailed, serve: func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><body>Bad gateway</body></html>")
		return true
	}},
	{name: "50 MB answer", code: proxy.CodeBackendFailed, serve: func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"messages":["`)
		chunk := strings.Repeat("x", 64<<10)
		for range (50 << 20) / len(chunk) {
			if _, err := io.WriteString(w, chunk); err != nil {
				return true // sockjsd stopped reading
			}
		}
		_, _ = io.WriteString(w, `"]}`)
		return true
	}},
}

// TestBackendFailures: one sockjsd with two proxied services, /bad and
// /good. Each way /bad's backend fails closes /bad's sessions (open ones
// sending a message, and new ones at their connect), over websocket,
// xhr-streaming and xhr-polling, with the documented code within
// -proxy-timeout + 1s; /good keeps echoing; and once the sessions are
// gone, sockjsd's goroutines and heap are back at their baseline.
func TestBackendFailures(t *testing.T) {
	need(t)
	const timeout = time.Second
	bad, good := newBackend(t), newBackend(t)
	s := startSockjsd(t, "sockjsd", "-proxy", "/bad="+bad.base(), "-proxy", "/good="+good.base(),
		"-proxy-timeout", timeout.String(), "-disconnect-delay", "1s")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	transports := []string{client.WebSocket, client.WebSocket, client.XHRStreaming, client.XHRStreaming, client.XHRPolling, client.XHRPolling}

	// A first round through both services, so that what is set up once
	// (pools, buffers) is in the baseline.
	var warm []*client.Conn
	for _, svc := range []string{"/bad", "/good"} {
		for _, tp := range transports {
			c := dial(t, hc, s.url+svc, tp)
			_ = c.Send("warm")
			if m := recvWithin(t, c, 5*time.Second); m != "warm" {
				t.Fatalf("warm-up echo %q", m)
			}
			warm = append(warm, c)
		}
	}
	for _, c := range warm {
		_ = c.Close()
	}
	accepted := len(warm)
	quiet := func() { // sockjsd sends nothing more: drop idle connections
		procs.WaitFor(t, 5*time.Second, "the close requests", func() bool {
			return s.metric(t, "sockjs_proxy_requests_total", `hook="close"`) == float64(accepted)
		})
		bad.srv.dropIdle()
		good.srv.dropIdle()
		tr.CloseIdleConnections()
	}
	quiet()
	base := s.baseline(t, 2*time.Second)
	t.Logf("baseline: %v", base)

	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			var conns []*client.Conn
			closeAll := func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}
			defer closeAll()
			// Sessions of /bad, accepted: an echo came back.
			var victims []*client.Conn
			for i, tp := range transports {
				c := dial(t, hc, s.url+"/bad", tp)
				conns = append(conns, c)
				_ = c.Send(fmt.Sprint("hello ", i))
				if m := recvWithin(t, c, 5*time.Second); m != fmt.Sprint("hello ", i) {
					t.Fatalf("echo before the failure: %q", m)
				}
				victims = append(victims, c)
			}
			var goods []*client.Conn
			for _, tp := range []string{client.WebSocket, client.XHRPolling} {
				c := dial(t, hc, s.url+"/good", tp)
				conns = append(conns, c)
				goods = append(goods, c)
			}

			if f.kill {
				bad.srv.stop()
				defer bad.srv.start()
			} else {
				bad.failWith(f.serve)
				defer bad.failWith(nil)
			}
			starts := map[*client.Conn]time.Time{}
			for _, c := range victims {
				starts[c] = time.Now()
				if err := c.Send("after"); err != nil {
					t.Fatal(err)
				}
			}
			// New sessions: their connect fails.
			for _, tp := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
				start := time.Now()
				c := dial(t, hc, s.url+"/bad", tp)
				conns = append(conns, c)
				victims = append(victims, c)
				starts[c] = start
			}
			var slowest time.Duration
			for _, c := range victims {
				code, reason, err := waitClosed(c, timeout+time.Second-time.Since(starts[c]))
				took := time.Since(starts[c])
				if err != nil {
					t.Fatalf("a %s session of /bad still open %v after the failure began, want closed with %d within %v", c.Transport(), took.Round(time.Millisecond), f.code, timeout+time.Second)
				}
				if code != f.code {
					t.Fatalf("a %s session of /bad closed with %d %q, want %d", c.Transport(), code, reason, f.code)
				}
				slowest = max(slowest, took)
			}
			// The other service is untouched.
			for _, c := range goods {
				_ = c.Send("still here")
				if m := recvWithin(t, c, 2*time.Second); m != "still here" {
					t.Fatalf("/good over %s echoed %q", c.Transport(), m)
				}
			}
			t.Logf("%d sessions of /bad closed with %d, the slowest %v after its message or dial (bound %v); /good echoed",
				len(victims), f.code, slowest.Round(time.Millisecond), timeout+time.Second)
			closeAll()
			accepted += len(transports) + len(goods)
			quiet()
			s.backAtBaseline(t, base, f.name)
		})
	}
	if n := s.metric(t, "sockjs_proxy_requests_total", `service="/good"`, `outcome="ok"`); n == 0 {
		t.Fatal("no request to /good counted ok")
	}
}
