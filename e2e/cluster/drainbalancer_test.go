package cluster

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// drainOutcome is what one new session through a balancer came to.
type drainOutcome int

const (
	drainOK     drainOutcome = iota // opened, echoed
	drainLost                       // ended by its node's shutdown: 1001, or unknown on the node that took over
	drainFailed                     // an error status or a transport error: what the drain must prevent
)

// drainFailure is one failed session: when its failing request ended,
// from the test's start, and what it got.
type drainFailure struct {
	at     time.Duration
	detail string
}

// drainCounts counts the outcomes of the sessions through one balancer.
type drainCounts struct {
	mu       sync.Mutex
	n        [3]int
	failures []drainFailure // the first 1,000
}

func (c *drainCounts) add(o drainOutcome, f drainFailure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[o]++
	if o == drainFailed && len(c.failures) < 1000 {
		c.failures = append(c.failures, f)
	}
}

// newSessionEcho opens an xhr-polling session through lb, sends one
// message and polls it back; each request may land on any node.
func newSessionEcho(client *http.Client, lb, id string) (drainOutcome, string) {
	steps := []struct{ endpoint, body, want string }{
		{"xhr", "", "o\n"},
		{"xhr_send", `["m"]`, ""},
		{"xhr", "", "a[\"m\"]\n"},
	}
	for _, s := range steps {
		res, err := client.Post(lb+"/echo/000/"+id+"/"+s.endpoint, "text/plain", strings.NewReader(s.body))
		if err != nil {
			return drainFailed, fmt.Sprintf("%s %s: %v", id, s.endpoint, err)
		}
		b, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		body := string(b)
		switch {
		case err != nil:
			return drainFailed, fmt.Sprintf("%s %s: reading: %v", id, s.endpoint, err)
		case res.StatusCode/100 == 2 && body == s.want:
			continue
		case strings.HasPrefix(body, `c[1001,`),
			s.endpoint == "xhr_send" && res.StatusCode == http.StatusNotFound,
			s.endpoint == "xhr" && s.want != "o\n" && body == "o\n":
			return drainLost, ""
		}
		return drainFailed, fmt.Sprintf("%s %s: %d %q", id, s.endpoint, res.StatusCode, body)
	}
	return drainOK, ""
}

// TestRollingRestartBehindBalancers restarts the three nodes one at a time
// (SIGTERM, -drain-delay 2s, wait for the exit, start it again, wait for
// /readyz) while clients open new xhr-polling sessions without pause
// through haproxy (deploy/haproxy.cfg) and nginx (deploy/nginx.conf) at
// once. No request may fail: during the drain the node serves what the
// balancers still send it, and once its listener is closed their retries
// on a refused connection take the request to another node. Sessions in
// progress on the stopping node end (1001, or unknown where their next
// request lands): they are counted, not failed, as the sessions a rolling
// restart ends.
func TestRollingRestartBehindBalancers(t *testing.T) {
	const drainDelay = 2 * time.Second
	env := startCluster(t, "-drain-delay", drainDelay.String(), "-shutdown-timeout", "10s")
	balancers := map[string]string{"haproxy": env.lb, "nginx": env.startNginx(env.nodes)}

	const clientsPerBalancer = 3
	stop := make(chan struct{})
	var wg sync.WaitGroup
	counts := map[string]*drainCounts{}
	var seq atomic.Int64
	t0 := time.Now()
	for name, lb := range balancers {
		counts[name] = &drainCounts{}
		for range clientsPerBalancer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A transport per client: its one connection is always in
				// use, so no idle connection to the balancer outlives the
				// balancer's keep-alive timeout (a client-side race that
				// has nothing to do with the nodes).
				client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
				for {
					select {
					case <-stop:
						return
					default:
					}
					o, detail := newSessionEcho(client, lb, fmt.Sprintf("roll-%s-%d", name, seq.Add(1)))
					counts[name].add(o, drainFailure{time.Since(t0), detail})
				}
			}()
		}
	}
	// Sessions flow through both balancers before the first node stops.
	waitFor(t, 20*time.Second, "sessions through both balancers", func() bool {
		for _, c := range counts {
			c.mu.Lock()
			n := c.n[drainOK]
			c.mu.Unlock()
			if n < 20 {
				return false
			}
		}
		return true
	})

	// When each node's shutdown ran (after its drain delay, to its exit),
	// from the test's start, with 100ms either side for the timers.
	type window struct{ from, to time.Duration }
	var shutdowns []window
	start := time.Now()
	for _, n := range env.nodes {
		sigAt := time.Now()
		if err := n.p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-n.p.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not exit within 30s of SIGTERM", n.name)
		}
		exitAt := time.Now()
		t.Logf("%s: SIGTERM at %v, exited %v after it", n.name, sigAt.Sub(t0).Round(time.Millisecond), exitAt.Sub(sigAt).Round(time.Millisecond))
		shutdowns = append(shutdowns, window{sigAt.Sub(t0) + drainDelay - 100*time.Millisecond, exitAt.Sub(t0) + 100*time.Millisecond})
		env.startNode(n) // waits for /readyz 200
	}
	rolled := time.Since(start)
	close(stop)
	wg.Wait()

	for name, c := range counts {
		var atShutdown, other []string
		for _, f := range c.failures {
			line := fmt.Sprintf("at %v: %s", f.at.Round(time.Millisecond), f.detail)
			if slices.ContainsFunc(shutdowns, func(w window) bool { return f.at >= w.from && f.at <= w.to }) {
				atShutdown = append(atShutdown, line)
			} else {
				other = append(other, line)
			}
		}
		t.Logf("%s, rolling restart of 3 nodes in %v: %d new sessions echoed, %d ended by a shutdown, %d failed in the moment a shutdown began, %d failed otherwise",
			name, rolled.Round(time.Millisecond), c.n[drainOK], c.n[drainLost], len(atShutdown), c.n[drainFailed]-len(atShutdown))
		if len(atShutdown) > 0 {
			t.Logf("%s: failed as a node's shutdown began (a request accepted just before its listener closed, or forwarded to it):\n%s", name, strings.Join(atShutdown, "\n"))
		}
		if c.n[drainFailed] > len(atShutdown) {
			t.Errorf("%s: %d requests failed outside the nodes' shutdowns (during a drain, a restart or steady state):\n%s", name, c.n[drainFailed]-len(atShutdown), strings.Join(other, "\n"))
		}
	}
}
