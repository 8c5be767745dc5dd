package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openOn opens session sid on n directly (not through the balancer), so
// the test knows its owner.
func openOn(t *testing.T, n *node, sid string) {
	t.Helper()
	if code, body := rawPost(t, n.url+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open %s on %s: %d %q", sid, n.name, code, body)
	}
}

// ownerOf is the owner record of an /echo session in Redis.
func (e *clusterEnv) ownerOf(sid string) string {
	return e.redis.do("GET", "sockjsd:owner:/echo/"+sid)
}

// TestClusterRedisRestartOneOwner: Redis restarts empty while node1 holds
// a session. A poll through node2 right after Redis answers again must not
// take the empty key and open a second session: it waits out the recovery
// grace, node1 puts its record back within a check interval, and the poll
// reaches node1's session with what was queued before the restart.
func TestClusterRedisRestartOneOwner(t *testing.T) {
	env := startCluster(t, "-disconnect-delay", "60s")
	n1, n2, n3 := env.nodes[0], env.nodes[1], env.nodes[2]
	openOn(t, n1, "rr1")
	if code, _ := rawPost(t, n1.url+"/echo/000/rr1/xhr_send", `["before"]`); code != 204 {
		t.Fatalf("send on node1: %d", code)
	}
	env.redis.Stop()
	env.redis.Start() // empty: no persistence
	start := time.Now()
	code, body := rawPost(t, n2.url+"/echo/000/rr1/xhr", "")
	took := time.Since(start)
	if code != 200 || body != "a[\"before\"]\n" {
		t.Fatalf("poll through node2 right after the restart: %d %q, want node1's session (a second session opened: split brain)", code, body)
	}
	t.Logf("the first poll after the restart reached the owner in %v", took.Round(time.Millisecond))
	if got := env.ownerOf("rr1"); got != n1.url {
		t.Fatalf("owner record after the restart: %q, want %s", got, n1.url)
	}
	// A send through the third node also reaches node1, not a 404.
	if code, _ := rawPost(t, n3.url+"/echo/000/rr1/xhr_send", `["after"]`); code != 204 {
		t.Fatalf("send through node3 after the restart: %d", code)
	}
	if code, body := rawPost(t, n2.url+"/echo/000/rr1/xhr", ""); code != 200 || body != "a[\"after\"]\n" {
		t.Fatalf("poll through node2: %d %q", code, body)
	}
	for _, n := range env.nodes[1:] {
		if v := n.metric(t, "sockjs_sessions_opened_total"); v != 0 {
			t.Fatalf("%s opened %v sessions; only node1 may hold rr1", n.name, v)
		}
	}
}

// TestClusterRedisOutageNoCopy: while Redis is down node2 cannot tell
// where node1's session lives, so it serves no copy of it. A poll through
// node2 waits for Redis (sockjs_cluster_store_waiting_requests), and when
// Redis comes back (empty, as after a restart) it reaches node1's
// session. A poll that Redis does not answer within -cluster-store-wait
// gets 503 (sockjs_cluster_store_unavailable_total), and still no copy.
// node1's own session carries on through the outage.
func TestClusterRedisOutageNoCopy(t *testing.T) {
	const storeWait = 5 * time.Second
	env := startCluster(t, "-disconnect-delay", "60s", "-heartbeat", "1s", "-cluster-store-wait", storeWait.String())
	n1, n2 := env.nodes[0], env.nodes[1]
	openOn(t, n1, "ro1")
	env.redis.Stop()
	waitFor(t, 10*time.Second, "node2 to see Redis down", func() bool { return status(n2.url+"/readyz") == 503 })

	start := time.Now()
	if code, body := rawPost(t, n2.url+"/echo/000/ro1/xhr", ""); code != 503 || body != "Session owner store unavailable" {
		t.Fatalf("poll through node2 while Redis stays down: %d %q, want 503", code, body)
	}
	if took := time.Since(start); took < storeWait {
		t.Fatalf("503 after %v, before -cluster-store-wait (%v)", took, storeWait)
	}
	if v := n2.metric(t, "sockjs_cluster_store_unavailable_total", "endpoint", "xhr"); v != 1 {
		t.Fatalf("node2's store_unavailable_total{xhr} = %v, want 1", v)
	}
	// node1 serves its own session without Redis.
	if code, _ := rawPost(t, n1.url+"/echo/000/ro1/xhr_send", `["alive"]`); code != 204 {
		t.Fatalf("send to node1's session during the outage: %d", code)
	}

	type answer struct {
		code int
		body string
		err  error
	}
	polled := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", n2.url+"/echo/000/ro1/xhr", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		polled <- answer{resp.StatusCode, string(b), err}
	}()
	waitFor(t, 10*time.Second, "node2's poll to wait for Redis", func() bool {
		return n2.metric(t, "sockjs_cluster_store_waiting_requests") == 1
	})
	env.redis.Start()
	select {
	case a := <-polled:
		if a.err != nil || a.code != 200 || a.body != "a[\"alive\"]\n" {
			t.Fatalf("poll through node2 across Redis's return: %d %q %v, want node1's message", a.code, a.body, a.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("poll through node2 unanswered 30s after Redis came back")
	}
	if v := n2.metric(t, "sockjs_sessions_opened_total"); v != 0 {
		t.Fatalf("node2 opened %v sessions; only node1 may hold ro1", v)
	}
	if v := n2.metric(t, "sockjs_cluster_store_waiting_requests"); v != 0 {
		t.Fatalf("node2's store_waiting_requests = %v after the wait", v)
	}
	if got := env.ownerOf("ro1"); got != n1.url {
		t.Fatalf("owner record %q, want node1 %s", got, n1.url)
	}
}

// TestClusterFrozenOwner: node1 is stopped (SIGSTOP) while it owns a
// session: the kernel still accepts connections to it, nothing answers. A
// send through node2 is answered 504 within -cluster-forward-timeout (not
// left hanging), counted as result="timeout", and does not take the
// session over: after SIGCONT node1 serves it again.
func TestClusterFrozenOwner(t *testing.T) {
	const timeout = time.Second
	env := startCluster(t, "-disconnect-delay", "60s", "-cluster-forward-timeout", timeout.String())
	n1, n2 := env.nodes[0], env.nodes[1]
	openOn(t, n1, "fz1")
	if err := n1.p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = n1.p.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	// kill(2) returns when the signal is queued, not when every thread
	// has stopped: a thread running on the other core may still answer
	// (a 204 1.2 ms after the signal, seen twice under load).
	waitFor(t, 5*time.Second, "node1's threads to stop", func() bool { return allStopped(n1.p.Cmd.Process.Pid) })
	start := time.Now()
	code, body := rawPost(t, n2.url+"/echo/000/fz1/xhr_send", `["while frozen"]`)
	took := time.Since(start)
	if code != 504 {
		t.Fatalf("send through node2 to a frozen owner: %d %q after %v, want 504", code, body, took)
	}
	if took > timeout+time.Second {
		t.Fatalf("504 after %v, want within the forward timeout (%v) + 1s", took, timeout)
	}
	if v := n2.metric(t, "sockjs_cluster_forwarded_requests_total", `endpoint="xhr_send"`, `result="timeout"`); v != 1 {
		t.Fatalf("timeouts counted on node2: %v, want 1", v)
	}
	_ = n1.p.Cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	if got := env.ownerOf("fz1"); got != n1.url {
		t.Fatalf("owner after the freeze: %q, want node1", got)
	}
	if code, _ := rawPost(t, n2.url+"/echo/000/fz1/xhr_send", `["thawed"]`); code != 204 {
		t.Fatalf("send through node2 after SIGCONT: %d", code)
	}
	code, body = rawPost(t, n2.url+"/echo/000/fz1/xhr", "")
	if code != 200 || !strings.Contains(body, `"thawed"`) {
		t.Fatalf("poll through node2 after SIGCONT: %d %q", code, body)
	}
	if v := n2.metric(t, "sockjs_sessions_opened_total"); v != 0 {
		t.Fatalf("node2 opened %v sessions for a frozen owner's id", v)
	}
}

// allStopped reports whether every thread of pid is stopped (state T in
// /proc/pid/task/*/stat).
func allStopped(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}
