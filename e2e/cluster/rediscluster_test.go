package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestClusterOnRedisCluster: two nodes of the binary with -redis naming a
// Redis Cluster of three masters (redis+cluster://h1,h2,h3). Sessions
// opened on node1, whose owner keys live on different masters, are
// reached through node2 (sends and polls forwarded by owner); a publish
// through node1's API reaches node2's subscribers on channels whose keys
// live on different masters, in order, and presence counts them on both
// nodes.
func TestClusterOnRedisCluster(t *testing.T) {
	need(t, "redis-server", "redis-cli")
	serverBinary(t) // build before the clock of any wait starts
	rc := testenv.StartRedisCluster(t)
	env := &clusterEnv{t: t, args: []string{
		"-redis", rc.URL, "-cluster-secret", secret,
		"-client-dir", filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client"),
		"-cluster-owner-ttl", "3s",
	}}
	for i := range 2 {
		n := &node{name: fmt.Sprintf("node%d", i+1), url: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		env.nodes = append(env.nodes, n)
		env.startNode(n) // waits for /readyz: the owner store and the hub's broker reach the cluster
	}
	n1, n2 := env.nodes[0], env.nodes[1]
	if log := n1.p.Out.String(); !strings.Contains(log, "cluster "+strings.Join(rc.Addrs, ",")) {
		t.Fatalf("node1's log does not name the Redis Cluster:\n%s", tail(log, 20))
	}
	rdb := rc.Client(t)
	ctx := context.Background()

	// Sessions: owner keys on every master, each reached through node2.
	var sids, keys []string
	for i := range 6 {
		sid := fmt.Sprintf("rc%d", i)
		sids = append(sids, sid)
		keys = append(keys, "sockjsd:owner:/echo/"+sid)
	}
	if m := rc.Masters(t, keys...); len(m) < 2 {
		t.Fatalf("owner keys on masters %v: pick ids spread over them", m)
	}
	for _, sid := range sids {
		openOn(t, n1, sid)
		if owner, err := rdb.Get(ctx, "sockjsd:owner:/echo/"+sid).Result(); err != nil || owner != n1.url {
			t.Fatalf("owner of %s in the cluster: %q %v, want %s", sid, owner, err, n1.url)
		}
		if code, _ := rawPost(t, n2.url+"/echo/000/"+sid+"/xhr_send", `["via node2 `+sid+`"]`); code != 204 {
			t.Fatalf("send to %s through node2: %d", sid, code)
		}
		if code, body := rawPost(t, n2.url+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != `a["via node2 `+sid+`"]`+"\n" {
			t.Fatalf("poll of %s through node2: %d %q", sid, code, body)
		}
	}
	if v := n2.metric(t, "sockjs_sessions_opened_total"); v != 0 {
		t.Fatalf("node2 opened %v sessions; node1 holds them all", v)
	}

	// Hub: channels on several masters, subscribers on node2, publishes
	// through node1.
	chans := []string{"news", "feed.a", "feed.b", "feed.c"}
	var metaKeys []string
	for _, ch := range chans {
		metaKeys = append(metaKeys, "sockjsd:hub:{"+ch+"}:meta")
	}
	if m := rc.Masters(t, metaKeys...); len(m) < 2 {
		t.Fatalf("channel keys on masters %v: pick names spread over them", m)
	}
	var subs []*hubConn
	for _, ch := range chans {
		h := mustDialHub(t, n2.url, client.WebSocket)
		if err := h.send(`{"op":"subscribe","channel":"` + ch + `"}`); err != nil {
			t.Fatal(err)
		}
		h.expect(t, "subscribed", "channel", jsonOf(ch), "seq", "0")
		subs = append(subs, h)
	}
	for _, n := range env.nodes {
		waitFor(t, 15*time.Second, n.name+" to count node2's subscriber of feed.c", func() bool { return n.presence("feed.c") == "1" })
	}
	for i := 1; i <= 20; i++ {
		for _, ch := range chans {
			mustPublish(t, n1.url, ch, i, i)
		}
	}
	for i, h := range subs {
		h.expect(t, "subscribed", "seq", "0", "recovered", "true") // the first publish starts an epoch
		h.expectNumbered(t, chans[i], 1, 20, 0)
	}
	for _, n := range env.nodes {
		if code := status(n.url + "/readyz"); code != 200 {
			t.Fatalf("%s /readyz: %d", n.name, code)
		}
	}
}
