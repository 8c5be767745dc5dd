package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

const messages = 1000

// burstResult is what testdata/burst.js reports.
type burstResult struct {
	Transport string `json:"transport"`
	Sent      int    `json:"sent"`
	Received  int    `json:"received"`
	FirstBad  any    `json:"firstBad"`
	CloseCode int    `json:"closeCode"`
	Error     any    `json:"error"`
}

func (r burstResult) check(t *testing.T, transport string, n int) {
	t.Helper()
	if r.Transport != transport || r.Sent != n || r.Received != n || r.FirstBad != nil || r.CloseCode != 1000 || r.Error != nil {
		t.Fatalf("want %d messages echoed in order over %s, closed 1000; got %+v", n, transport, r)
	}
}

// nodeBurst runs testdata/burst.js under node with the real sockjs-client.
func nodeBurst(t *testing.T, url, transport string, n int) burstResult {
	t.Helper()
	modules := nodeModules(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "node-burst.js", modules, url, transport, fmt.Sprint(n))
	cmd.Dir = "testdata"
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var res burstResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("node output %q: %v (exit: %v)", out, jerr, err)
	}
	return res
}

// nodeModules is e2e/node's node_modules, where the real sockjs-client is
// installed; the test is skipped when it is not.
func nodeModules(t *testing.T) string {
	t.Helper()
	modules := filepath.Join(testenv.RepoRoot(t), "e2e", "node", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "sockjs-client", "package.json")); err != nil {
		t.Skipf("sockjs-client is not installed in e2e/node (run `make deps-node`): %v", err)
	}
	return modules
}

// landing is each node's count of forwarded requests and of session
// requests it served itself.
type landing struct{ forwarded, served []float64 }

func (e *clusterEnv) landing() landing {
	var l landing
	for _, n := range e.nodes {
		l.forwarded = append(l.forwarded, n.metric(e.t, "sockjs_cluster_forwarded_requests_total", `result="ok"`))
		l.served = append(l.served, n.metric(e.t, "sockjs_http_requests_total"))
	}
	return l
}

// checkAllNodes proves that one session's requests landed on all three
// nodes: two forwarded some to the owner, and the owner served more than
// it was forwarded, so some came to it straight from the balancer.
func (e *clusterEnv) checkAllNodes(before landing) {
	e.t.Helper()
	after := e.landing()
	var owner, forwarding int
	var fwdSum float64
	var desc []string
	for i := range e.nodes {
		f, s := after.forwarded[i]-before.forwarded[i], after.served[i]-before.served[i]
		desc = append(desc, fmt.Sprintf("%s forwarded %.0f served %.0f", e.nodes[i].name, f, s))
		fwdSum += f
		if f > 0 {
			forwarding++
		} else {
			owner = i
		}
	}
	direct := after.served[owner] - before.served[owner] - fwdSum
	if forwarding != 2 || direct <= 0 {
		e.t.Fatalf("requests did not land on all three nodes: %s", strings.Join(desc, "; "))
	}
	e.t.Logf("%s; owner served %.0f straight from the balancer", strings.Join(desc, "; "), direct)
}

// checkNoSecret: the cluster secret is in no log and no metric.
func (e *clusterEnv) checkNoSecret() {
	e.t.Helper()
	for _, n := range e.nodes {
		if strings.Contains(n.p.Out.String(), secret) {
			e.t.Errorf("%s logged the cluster secret", n.name)
		}
		if strings.Contains(n.get(e.t, "/metrics"), secret) {
			e.t.Errorf("%s shows the cluster secret in /metrics", n.name)
		}
	}
}

// TestClusterNodeClient: the real sockjs-client under node, through haproxy
// over three nodes, on every HTTP transport it has under node.
func TestClusterNodeClient(t *testing.T) {
	need(t, "node")
	env := startCluster(t)
	for _, tr := range []string{"xhr-polling", "xhr-streaming", "eventsource"} {
		t.Run(tr, func(t *testing.T) {
			env.t = t
			before := env.landing()
			nodeBurst(t, env.lb+"/echo", tr, messages).check(t, tr, messages)
			env.checkAllNodes(before)
		})
	}
	env.t = t
	env.checkNoSecret()
}

// TestClusterNodeDies: kill -9 one node. Its sessions end (a send gets 404,
// a poll opens a new session), the others' go on, and new sessions work
// through the balancer.
func TestClusterNodeDies(t *testing.T) {
	need(t, "node")
	env := startCluster(t, "-disconnect-delay", "60s")
	// Open sessions through the balancer until every node owns two.
	owned := map[string][]string{}
	for i := 0; i < 60 && (len(owned[env.nodes[0].url]) < 2 || len(owned[env.nodes[1].url]) < 2 || len(owned[env.nodes[2].url]) < 2); i++ {
		sid := fmt.Sprintf("s%d", i)
		if code, body := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "o\n" {
			t.Fatalf("open %s: %d %q", sid, code, body)
		}
		owner := env.redis.do("GET", "sockjsd:owner:/echo/"+sid)
		owned[owner] = append(owned[owner], sid)
	}
	dead := env.nodes[2]
	dead.p.Kill()

	for _, n := range env.nodes[:2] {
		for _, sid := range owned[n.url] {
			for range 3 { // every request through the balancer, so on both live nodes
				if code, _ := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr_send", `["still here"]`); code != 204 {
					t.Fatalf("send to %s's session %s: %d", n.name, sid, code)
				}
				if code, body := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "a[\"still here\"]\n" {
					t.Fatalf("poll %s's session %s: %d %q", n.name, sid, code, body)
				}
			}
		}
	}
	for _, sid := range owned[dead.url] {
		if code, _ := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr_send", `["lost"]`); code != 404 {
			t.Fatalf("send to the dead node's session %s: %d, want 404", sid, code)
		}
		if code, body := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "o\n" {
			t.Fatalf("poll of the dead node's session %s: %d %q, want a new session", sid, code, body)
		}
		if owner := env.redis.do("GET", "sockjsd:owner:/echo/"+sid); owner == dead.url {
			t.Fatalf("session %s still owned by the dead node", sid)
		}
	}
	gone := env.nodes[0].metric(t, "sockjs_cluster_forwarded_requests_total", `result="owner_gone"`) +
		env.nodes[1].metric(t, "sockjs_cluster_forwarded_requests_total", `result="owner_gone"`)
	if gone == 0 {
		t.Fatal("no forwarded request found its owner gone")
	}
	nodeBurst(t, env.lb+"/echo", "xhr-polling", 200).check(t, "xhr-polling", 200)
}

// TestClusterRedisRestart: redis-server stops and starts again (empty, no
// persistence). /readyz follows it on every node, the nodes reconnect by
// themselves, restore the owner records of their live sessions, and the
// cluster serves sessions through the balancer again.
func TestClusterRedisRestart(t *testing.T) {
	need(t, "node")
	env := startCluster(t, "-disconnect-delay", "60s")
	var sids []string
	for i := range 6 {
		sid := fmt.Sprintf("r%d", i)
		if code, body := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "o\n" {
			t.Fatalf("open %s: %d %q", sid, code, body)
		}
		sids = append(sids, sid)
	}
	env.redis.Stop()
	for _, n := range env.nodes {
		waitFor(t, 10*time.Second, n.name+"/readyz to say not ready", func() bool { return status(n.url+"/readyz") == 503 })
		if status(n.url+"/healthz") != 200 {
			t.Fatalf("%s/healthz failed while Redis is down: liveness must not depend on it", n.name)
		}
	}
	env.redis.Start()
	for _, n := range env.nodes {
		waitFor(t, 15*time.Second, n.name+"/readyz to say ready again", func() bool { return status(n.url+"/readyz") == 200 })
	}
	// The owners put their records back within a keep interval (1s).
	for _, sid := range sids {
		waitFor(t, 10*time.Second, "the owner record of "+sid, func() bool {
			return strings.HasPrefix(env.redis.do("GET", "sockjsd:owner:/echo/"+sid), "http://")
		})
	}
	for _, sid := range sids {
		for range 3 {
			if code, _ := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr_send", `["back"]`); code != 204 {
				t.Fatalf("send to %s after the restart: %d", sid, code)
			}
			if code, body := rawPost(t, env.lb+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "a[\"back\"]\n" {
				t.Fatalf("poll %s after the restart: %d %q", sid, code, body)
			}
		}
	}
	nodeBurst(t, env.lb+"/echo", "xhr-polling", 200).check(t, "xhr-polling", 200)
}
