package cluster

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// steadyClient is testdata/node-steady.js running: the real sockjs-client
// under node exchanging messages one at a time until stop.
type steadyClient struct {
	transport string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	out, err  testenv.Buffer
	done      chan error
}

func startSteady(t *testing.T, url, transport string) *steadyClient {
	t.Helper()
	modules := nodeModules(t)
	c := &steadyClient{transport: transport, done: make(chan error, 1)}
	c.cmd = exec.Command("node", "node-steady.js", modules, url, transport)
	c.cmd.Dir = "testdata"
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = &c.err
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
	})
	return c
}

// going reports whether 20 of the client's messages came back.
func (c *steadyClient) going() bool { return strings.Contains(c.err.String(), "going") }

// allGoing reports whether every client had 20 of its messages back.
func allGoing(clients []*steadyClient) bool {
	for _, c := range clients {
		if !c.going() {
			return false
		}
	}
	return true
}

// sum is a metric summed over the nodes.
func (e *clusterEnv) sum(name string) float64 {
	v := 0.0
	for _, n := range e.nodes {
		v += n.metric(e.t, name)
	}
	return v
}

// stop tells the client to finish (its last echo, then a close with 1000)
// and returns what it saw, within 30 s.
func (c *steadyClient) stop(t *testing.T) burstResult {
	t.Helper()
	c.stdin.Close()
	select {
	case err := <-c.done:
		var res burstResult
		if jerr := json.Unmarshal([]byte(c.out.String()), &res); jerr != nil {
			t.Fatalf("%s client's output %q: %v (exit: %v; stderr %q)", c.transport, c.out.String(), jerr, err, c.err.String())
		}
		return res
	case <-time.After(30 * time.Second):
		t.Fatalf("%s client still running 30s after it was told to stop", c.transport)
		return burstResult{}
	}
}

// TestClusterRedisOutageUnnoticed: the real sockjs-client under node,
// through haproxy over three nodes, on each HTTP transport node has, keeps
// exchanging messages while Redis goes down and comes back empty; more
// clients open their sessions while it is down. No client notices beyond
// a delay: every session ends with the client's own close (1000), with
// every message echoed once and in order; each node opened only the
// sessions the clients asked for (no copy), and no request was refused.
// During the outage requests wait for Redis
// (sockjs_cluster_store_waiting_requests) instead of being served alone.
func TestClusterRedisOutageUnnoticed(t *testing.T) {
	need(t, "node")
	env := startCluster(t, "-disconnect-delay", "30s")
	transports := []string{"xhr-polling", "xhr-streaming", "eventsource"}
	received := func() float64 { return env.sum("sockjs_messages_received_total") }
	sumMetric := env.sum
	var clients []*steadyClient
	for _, tr := range transports {
		clients = append(clients, startSteady(t, env.lb+"/echo", tr))
	}
	waitFor(t, 30*time.Second, "the first clients' 20 first echoes", func() bool { return allGoing(clients) })

	env.redis.Stop()
	down := time.Now()
	for _, tr := range transports {
		clients = append(clients, startSteady(t, env.lb+"/echo", tr))
	}
	// The new sessions' first requests cannot be placed without Redis:
	// they wait for it.
	waitFor(t, 30*time.Second, "requests waiting for Redis", func() bool {
		return sumMetric("sockjs_cluster_store_waiting_requests") >= float64(len(transports))
	})
	env.redis.Start()
	t.Logf("Redis down for %v", time.Since(down).Round(time.Millisecond))
	mark := received()
	waitFor(t, 30*time.Second, "messages flowing again, and every client's 20 first echoes", func() bool {
		return allGoing(clients) && received() >= mark+120
	})

	opened := len(clients)
	for _, c := range clients {
		res := c.stop(t)
		if res.Transport != c.transport || res.Sent == 0 || res.Received != res.Sent || res.FirstBad != nil || res.CloseCode != 1000 || res.Error != nil {
			t.Errorf("%s client: want every message echoed once in order and its own close 1000; got %+v", c.transport, res)
		}
	}
	if got := sumMetric("sockjs_sessions_opened_total"); got != float64(opened) {
		t.Errorf("the nodes opened %v sessions for %d clients (a copy served alone?)", got, opened)
	}
	if got := sumMetric("sockjs_cluster_store_unavailable_total"); got != 0 {
		t.Errorf("%v requests refused for Redis, which was back within the store wait", got)
	}
	if got := sumMetric("sockjs_cluster_store_waiting_requests"); got != 0 {
		t.Errorf("%v requests still waiting for Redis at the end", got)
	}
	for _, n := range env.nodes {
		if log := n.p.Out.String(); strings.Contains(log, "closing this copy") {
			t.Errorf("%s closed a copy of a session:\n%s", n.name, tail(log, 20))
		}
	}
}
