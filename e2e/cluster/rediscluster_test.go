package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/redisslot"
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

// TestClusterRedisClusterFailover: two nodes of the binary behind haproxy
// on a Redis Cluster of three masters with a replica each. The real
// sockjs-client under node keeps three sessions going (xhr-polling,
// xhr-streaming, eventsource) while the master holding one of their owner
// records is killed and its replica takes over (node timeout 1 s). No
// client notices beyond a delay: every session ends with the client's own
// close (1000), every message echoed once and in order, no second session
// opened, no request refused, and the record names its owner on the new
// master. A hub subscriber on node2 of a channel in the same slot gets
// the publishes through node1 from before and after the failover, each
// once and in order.
func TestClusterRedisClusterFailover(t *testing.T) {
	need(t, "redis-server", "redis-cli", "haproxy", "node")
	serverBinary(t) // build before the clock of any wait starts
	rc := testenv.StartRedisClusterReplicated(t, time.Second)
	env := &clusterEnv{t: t, args: []string{
		"-redis", rc.URL, "-cluster-secret", secret,
		"-client-dir", filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client"),
		"-disconnect-delay", "30s", // the default owner TTL (30 s): records outlive the failover
	}}
	for i := range 2 {
		n := &node{name: fmt.Sprintf("node%d", i+1), url: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		env.nodes = append(env.nodes, n)
		env.startNode(n)
	}
	lb := env.startHAProxy(env.nodes)
	sum := env.sum
	var clients []*steadyClient
	for _, tr := range []string{"xhr-polling", "xhr-streaming", "eventsource"} {
		clients = append(clients, startSteady(t, lb+"/echo", tr))
	}
	waitFor(t, 30*time.Second, "the clients' 20 first echoes", func() bool { return allGoing(clients) })

	// A session's owner record, and the master holding it.
	rdb := rc.Client(t)
	ctx := context.Background()
	var mu sync.Mutex
	var owned []string
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, "sockjsd:owner:/echo/*").Result()
		mu.Lock()
		owned = append(owned, keys...)
		mu.Unlock()
		return err
	}); err != nil || len(owned) != len(clients) {
		t.Fatalf("owner records %v, %v; want one per client", owned, err)
	}
	key := owned[0]
	owner := rdb.Get(ctx, key).Val()
	// A hub channel whose keys live in the same slot, followed on node2
	// and published to through node1.
	ch := ""
	for i := 0; ch == ""; i++ {
		if c := fmt.Sprintf("fo%d", i); redisslot.Slot(c) == redisslot.Slot(key) {
			ch = c
		}
	}
	n1, n2 := env.nodes[0], env.nodes[1]
	sub := mustDialHub(t, n2.url, client.WebSocket)
	if err := sub.send(`{"op":"subscribe","channel":"` + ch + `"}`); err != nil {
		t.Fatal(err)
	}
	sub.expect(t, "subscribed", "channel", jsonOf(ch), "seq", "0")
	for i := 1; i <= 10; i++ {
		mustPublish(t, n1.url, ch, i, i)
	}
	sub.expect(t, "subscribed", "seq", "0", "recovered", "true") // the first publish starts an epoch
	sub.expectNumbered(t, ch, 1, 10, 0)
	dead := rc.KillMasterOf(t, key)
	killed := time.Now()
	rc.WaitFailover(t, key, dead, 30*time.Second)
	t.Logf("master %s of %s killed; its replica took over after %v", dead, key, time.Since(killed).Round(time.Millisecond))
	// A new session whose record lands in the failed-over slot: opened on
	// node1, reached through node2. Each node must find the slot's new
	// master, not wait for its client's next periodic reload of the slot
	// map (go-redis: every 60 s).
	sid := ""
	for i := 0; sid == ""; i++ {
		if c := fmt.Sprintf("fo%d", i); redisslot.Slot("sockjsd:owner:/echo/"+c) == redisslot.Slot(key) {
			sid = c
		}
	}
	if code, body := rawPost(t, n1.url+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open %s on node1 after the failover: %d %q", sid, code, body)
	}
	if code, _ := rawPost(t, n2.url+"/echo/000/"+sid+"/xhr_send", `["after"]`); code != 204 {
		t.Fatalf("send to %s through node2: %d", sid, code)
	}
	if code, body := rawPost(t, n2.url+"/echo/000/"+sid+"/xhr", ""); code != 200 || body != "a[\"after\"]\n" {
		t.Fatalf("poll of %s through node2: %d %q", sid, code, body)
	}
	// Publishes on the failed-over channel: each acknowledged once, and
	// delivered once, in order, after the ten from before.
	for i := 11; i <= 20; i++ {
		r := publishN(n1.url, ch, i)
		if r.err != nil || r.code != 200 || jsonOf(r.body["seq"]) != fmt.Sprint(i) {
			t.Fatalf("publish %d on %s after the failover: %d %v %v", i, ch, r.code, r.body, r.err)
		}
	}
	sub.expectNumbered(t, ch, 11, 20, 0)
	mark := sum("sockjs_messages_received_total")
	waitFor(t, 30*time.Second, "messages flowing after the failover", func() bool {
		return sum("sockjs_messages_received_total") >= mark+120
	})
	// A client of its own: the test's reads the slot map only when told.
	if got, err := rc.Client(t).Get(ctx, key).Result(); err != nil || got != owner {
		t.Errorf("record %s names %q (%v) after the failover, want %q", key, got, err, owner)
	}
	for _, c := range clients {
		res := c.stop(t)
		if res.Transport != c.transport || res.Received != res.Sent || res.FirstBad != nil || res.CloseCode != 1000 || res.Error != nil {
			t.Errorf("%s client: want every message echoed once in order and its own close 1000; got %+v", c.transport, res)
		}
	}
	if got := sum("sockjs_sessions_opened_total"); got != float64(len(clients)+2) {
		t.Errorf("the nodes opened %v sessions for %d clients, %s and the hub subscriber", got, len(clients), sid)
	}
	if got := sum("sockjs_cluster_store_unavailable_total"); got != 0 {
		t.Errorf("%v requests refused for the owner store", got)
	}
}
