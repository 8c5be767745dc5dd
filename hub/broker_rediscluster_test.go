package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// clusterBroker is a RedisBroker on its own client of a Redis Cluster.
func clusterBroker(t *testing.T, rc *testenv.RedisCluster, hist hub.HistoryOptions) (*hub.RedisBroker, *redis.ClusterClient) {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, MaxRetries: -1, DialTimeout: time.Second})
	b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{History: hist, PresenceTTL: 900 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); rdb.Close() })
	return b, rdb
}

// TestRedisClusterBroker runs the Redis broker's operations on a Redis
// Cluster of three masters, on channels whose keys live on different
// masters: three nodes, delivery across nodes in seq order, history,
// recovery after a gap and after pub/sub connections die, presence and
// the channel listing, and a dead node's presence expiring.
func TestRedisClusterBroker(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	hist := hub.HistoryOptions{Size: 30, TTL: time.Minute}
	b1, _ := clusterBroker(t, rc, hist)
	b2, _ := clusterBroker(t, rc, hist)
	b3, rdb3 := clusterBroker(t, rc, hist)
	nodes := []*node{startNode(t, b1), startNode(t, b2), startNode(t, b3)}
	for _, b := range []*hub.RedisBroker{b1, b2, b3} {
		waitUp(t, b, true) // pub/sub connected and a heartbeat through
	}

	chans := []string{"news", "chat.a", "chat.b", "chat.c", "chat.d", "chat.e"}
	var metaKeys []string
	for _, ch := range chans {
		metaKeys = append(metaKeys, "sockjsd:hub:{"+ch+"}:meta")
	}
	if m := rc.Masters(t, metaKeys...); len(m) < 2 {
		t.Fatalf("channels' keys all on %v: pick names spread over the masters", m)
	}

	subs := map[string][]*hubConn{}
	for _, ch := range chans {
		for i, tr := range []string{client.WebSocket, client.XHRStreaming} {
			c := dialHub(t, nodes[1+i].url+"/hub", tr)
			c.send(`{"op":"subscribe","channel":"` + ch + `"}`)
			c.expect("subscribed", "seq", "0")
			subs[ch] = append(subs[ch], c)
		}
	}
	for _, ch := range chans {
		waitPresence(t, nodes[0], ch, 2)
	}
	_, v := apiCall(t, "GET", nodes[0].url+"/api/channels", "")
	want := map[string]any{}
	for _, ch := range chans {
		want[ch] = 2
	}
	if jsonNum(v["channels"]) != jsonNum(want) {
		t.Fatalf("channels across nodes: %v, want %v", v["channels"], want)
	}

	// Delivery across nodes, in order, on every channel.
	for _, ch := range chans {
		publish(t, nodes[0], ch, 1, 10)
	}
	for _, ch := range chans {
		for _, c := range subs[ch] {
			c.expectSeqs(ch, 1, 10)
		}
	}

	// History through another node's API.
	for _, ch := range chans {
		code, v := apiCall(t, "GET", nodes[2].url+"/api/history?channel="+ch+"&since=5&limit=3", "")
		if code != 200 || jsonNum(v["complete"]) != "true" || jsonNum(v["messages"]) != `[{"data":{"n":6},"seq":6},{"data":{"n":7},"seq":7},{"data":{"n":8},"seq":8}]` {
			t.Fatalf("history of %s: %d %v", ch, code, v)
		}
	}

	// Recovery after a gap: node 2's subscriber leaves, 10 messages go
	// out, it comes back on node 3 with since.
	for _, ch := range chans {
		gone := subs[ch][0]
		epoch := gone.epochs[ch]
		gone.c.Close()
		publish(t, nodes[0], ch, 11, 20)
		back := dialHub(t, nodes[2].url+"/hub", client.WebSocket)
		back.send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":10,"epoch":%q}`, ch, epoch))
		back.expect("subscribed", "recovered", "true", "seq", "20")
		back.expectSeqs(ch, 11, 20)
		subs[ch][0] = back
		subs[ch][1].expectSeqs(ch, 11, 20)
	}

	// Every pub/sub connection on every master dies: each node
	// resubscribes and catches up from the streams, in order, once.
	ctx := context.Background()
	for _, addr := range rc.Addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
		c.Close()
		if err != nil && err.Error() != "ERR No such client" {
			t.Fatalf("CLIENT KILL on %s: %v", addr, err)
		}
	}
	for _, ch := range chans {
		publish(t, nodes[0], ch, 21, 40)
	}
	for _, ch := range chans {
		for _, c := range subs[ch] {
			c.expectSeqs(ch, 21, 40)
		}
	}
	// History holds 30 of 40 now: since 2 is not recoverable.
	old := dialHub(t, nodes[1].url+"/hub", client.XHRPolling)
	old.send(`{"op":"subscribe","channel":"chat.c","since":2}`)
	old.expect("subscribed", "recovered", "false", "seq", "40")

	// The broker's own view matches, on every node.
	for i, b := range []*hub.RedisBroker{b1, b2, b3} {
		for _, ch := range chans {
			p, err := b.Position(ctx, ch)
			if err != nil || p.Seq != 40 || p.Epoch != subs[ch][1].epochs[ch] {
				t.Fatalf("node %d: position of %s: %+v %v", i+1, ch, p, err)
			}
			h, err := b.History(ctx, ch, 35, 100)
			if err != nil || !h.Complete || len(h.Messages) != 5 || h.Messages[0].Seq != 36 {
				t.Fatalf("node %d: history of %s since 35: %+v %v", i+1, ch, h, err)
			}
		}
	}

	// Node 3 (both subscribers of each channel now) dies without a
	// word: its counts expire with its heartbeat, node 2's stays.
	waitPresence(t, nodes[0], "chat.c", 3)
	rdb3.Close()
	waitPresence(t, nodes[0], "chat.c", 1)
	waitPresence(t, nodes[0], "news", 0)
}

// TestRedisClusterBrokerReshard: every slot of the master holding a
// channel's keys moves to another master (redis-cli --cluster reshard)
// while a node publishes on it without pause, on clients with go-redis's
// default retries (as the binary's): every publish succeeds, and node
// 2's subscriber gets every message, in seq order, once.
func TestRedisClusterBrokerReshard(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	var nodes []*node
	for range 2 {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, DialTimeout: time.Second})
		b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{PresenceTTL: 900 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close(); rdb.Close() })
		waitUp(t, b, true)
		nodes = append(nodes, startNode(t, b))
	}
	const ch = "news"
	meta := "sockjsd:hub:{" + ch + "}:meta"
	var from, to string
	for a := range rc.Masters(t, meta) {
		from = a
	}
	for _, a := range rc.Addrs {
		if a != from {
			to = a
			break
		}
	}
	sub := dialHub(t, nodes[1].url+"/hub", client.WebSocket)
	sub.send(`{"op":"subscribe","channel":"` + ch + `"}`)
	sub.expect("subscribed", "seq", "0")

	done := make(chan struct{})
	type result struct {
		ok, failed int
		errs       []string
	}
	res := make(chan result, 1)
	go func() {
		var r result
		for i := 1; ; i++ {
			select {
			case <-done:
				res <- r
				return
			default:
			}
			// Not tryPublish's t.Fatal: this is not the test's goroutine.
			if err := tryPublish(nodes[0], ch, i, i); err == nil {
				r.ok++
			} else {
				r.failed++
				if len(r.errs) < 5 {
					r.errs = append(r.errs, err.Error())
				}
			}
		}
	}()
	start := time.Now()
	rc.Reshard(t, from, to, 0)
	took := time.Since(start)
	close(done)
	r := <-res
	if m := rc.Masters(t, meta); !m[to] || len(m) != 1 {
		t.Fatalf("%s on %v after the reshard, want %s", meta, m, to)
	}
	t.Logf("resharded %s -> %s in %v; publishes meanwhile: %d ok, %d failed %v", from, to, took.Round(time.Millisecond), r.ok, r.failed, r.errs)
	// go-redis follows MOVED and ASK, and retries TRYAGAIN (a script
	// whose keys are half migrated): no publish may fail.
	if r.ok == 0 || r.failed > 0 {
		t.Fatalf("publishes during the reshard: %d ok, %d failed: %v", r.ok, r.failed, r.errs)
	}
	sub.expectSeqs(ch, 1, uint64(r.ok))
	// And after it, as before.
	publish(t, nodes[0], ch, r.ok+r.failed+1, r.ok+r.failed+1)
	sub.expectSeqs(ch, uint64(r.ok+1), uint64(r.ok+1))
}

// TestRedisClusterBrokerHalfMovedChannel: a channel's slot migrates one
// key at a time, so for a while its meta and its stream are on different
// masters. A publish or a history read then either works or fails with
// 503 (Redis answers TRYAGAIN to a script or transaction whose keys are
// split; go-redis retries a few times): never half done. Once the slot
// has moved, the subscriber has every accepted message in seq order, and
// history is whole.
func TestRedisClusterBrokerHalfMovedChannel(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	var nodes []*node
	for range 2 {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, DialTimeout: time.Second})
		b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{History: hub.HistoryOptions{Size: 100, TTL: time.Minute}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close(); rdb.Close() })
		nodes = append(nodes, startNode(t, b))
	}
	const ch = "news"
	meta := "sockjsd:hub:{" + ch + "}:meta"
	sub := dialHub(t, nodes[1].url+"/hub", client.WebSocket)
	sub.send(`{"op":"subscribe","channel":"` + ch + `"}`)
	sub.expect("subscribed", "seq", "0")
	publish(t, nodes[0], ch, 1, 10)
	sub.expectSeqs(ch, 1, 10)
	var to string
	for _, a := range rc.Addrs {
		if !rc.Masters(t, meta)[a] {
			to = a
			break
		}
	}
	ok, failed, batches := 0, 0, 0
	codes := map[string]int{}
	rc.MoveSlot(t, meta, to, 1, func() {
		batches++
		for range 3 {
			code, _ := apiCall(t, "POST", nodes[0].url+"/api/publish", fmt.Sprintf(`{"channel":%q,"data":{"n":%d}}`, ch, 11+ok))
			codes[fmt.Sprintf("publish %d", code)]++
			switch code {
			case 200:
				ok++
			case 503:
				failed++
			default:
				t.Fatalf("publish on a half-moved channel: %d", code)
			}
			code, _ = apiCall(t, "GET", nodes[1].url+"/api/history?channel="+ch+"&since=5", "")
			codes[fmt.Sprintf("history %d", code)]++
			if code != 200 && code != 503 {
				t.Fatalf("history of a half-moved channel: %d", code)
			}
		}
	})
	t.Logf("moved in %d batches; during the move: %v", batches, codes)
	if batches < 2 {
		t.Fatalf("%d batches: the channel's keys moved together", batches)
	}
	publish(t, nodes[0], ch, 11+ok, 11+ok)
	sub.expectSeqs(ch, 11, uint64(11+ok))
	code, v := apiCall(t, "GET", nodes[1].url+"/api/history?channel="+ch+"&since=0&limit=1000", "")
	if msgs, _ := v["messages"].([]any); code != 200 || jsonNum(v["complete"]) != "true" || len(msgs) != 11+ok {
		t.Fatalf("history after the move: %d, %d messages, want %d: %v", code, len(msgs), 11+ok, v)
	}
}
