package directory_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

// clusterClient is a client of rc for one directory or recorder, which
// closes it.
func clusterClient(rc *testenv.RedisCluster) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, MaxRetries: -1, DialTimeout: time.Second})
}

// redisClusterKind runs the sequences on a Redis Cluster of three
// masters, each directory and the recorder on a cluster client of its own.
var redisClusterKind = kind{"rediscluster", true, func(t *testing.T) func(*testing.T, int) world {
	rc := testenv.StartRedisCluster(t)
	n := 0
	return func(t *testing.T, nodes int) world {
		n++
		prefix := fmt.Sprintf("t%d:", n)
		rec := newRedisRecorderOn(t, clusterClient(rc), prefix)
		w := world{ev: rec.events, drain: rec.drain}
		for i := range nodes {
			w.dirs = append(w.dirs, newRedisDirOn(t, clusterClient(rc), directory.RedisOptions{
				Prefix: prefix, Node: fmt.Sprintf("node%d", i), OfflineDelay: testDelay,
				ReapInterval: 50 * time.Millisecond, TTL: 3 * time.Second, Events: true,
			}))
		}
		return w
	}
}}

// TestRedisClusterDirectory runs the directory's scripts on a Redis
// Cluster: records and lookups across nodes, the put-back (EvalSha in
// pipelines) after the cluster lost its data, and the reaping of a dead
// node's sessions with their events pushed to the webhook queues by the
// scripts themselves. Every key is under the {webhook} hash tag: one
// slot, so one script may touch any of them.
func TestRedisClusterDirectory(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	const ttl = 900 * time.Millisecond
	rec := newRedisRecorderOn(t, clusterClient(rc), "c:")
	o := directory.RedisOptions{Prefix: "c:", TTL: ttl, OfflineDelay: testDelay, Events: true, ReapInterval: 100 * time.Millisecond}
	o.Node = "a"
	a := newRedisDirOn(t, clusterClient(rc), o)
	o.Node = "b"
	b := newRedisDirOn(t, clusterClient(rc), o)
	keys := []string{"c:{webhook}:dir:gen", "c:{webhook}:dir:s:a1", "c:{webhook}:dir:u:u1"}
	for p := range webhook.Partitions {
		keys = append(keys, webhook.RedisQueueKey("c:", p), webhook.RedisLeaseKey("c:", p))
	}
	if m := rc.Masters(t, keys...); len(m) != 1 {
		t.Fatalf("directory and queue keys on masters %v, want one (one hash tag)", m)
	}

	ctx := context.Background()
	for i := range 200 {
		if err := a.Add(ctx, directory.Entry{ID: fmt.Sprintf("a%d", i), User: fmt.Sprintf("u%d", i%50), Service: "/chat", Transport: "websocket"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(ctx, directory.Entry{ID: "b0", User: "u0"}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 10*time.Second, "201 opened and 50 online", func(l []webhook.Event) bool {
		return count(l, webhook.SessionOpened, nil) == 201 && count(l, webhook.UserOnline, nil) == 50
	})
	checkLookups := func(when string) {
		t.Helper()
		e, ok, err := b.Lookup(ctx, "a5")
		if err != nil || !ok || e.Node != "a" || e.User != "u5" || e.Service != "/chat" {
			t.Fatalf("%s: b.Lookup(a5) = %+v %v %v", when, e, ok, err)
		}
		if es, err := a.ByUser(ctx, "u0"); err != nil || !slices.Equal(ids(es), []string{"a0", "a100", "a150", "a50", "b0"}) {
			t.Fatalf("%s: a.ByUser(u0) = %v %v", when, ids(es), err)
		}
	}
	checkLookups("after Add")

	// The cluster loses its data (every master flushed): both nodes put
	// their records back, quietly.
	before := len(rec.snapshot())
	for _, addr := range rc.Addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := c.FlushAll(ctx).Err()
		c.Close()
		if err != nil {
			t.Fatalf("FLUSHALL on %s: %v", addr, err)
		}
	}
	eventually(t, 10*time.Second, "records put back", func() bool {
		_, okA, _ := b.Lookup(ctx, "a199")
		_, okB, _ := a.Lookup(ctx, "b0")
		return okA && okB
	})
	checkLookups("after the put-back")

	// Node a stops without removing anything: b reaps its 200 sessions
	// (session.closed, Node lost) and 49 users go offline (u0 keeps b0).
	a.Close()
	rec.waitFor(t, ttl+testDelay+10*time.Second, "200 closed as lost and 49 offline", func(l []webhook.Event) bool {
		l = l[before:]
		return count(l, webhook.SessionClosed, isClosed(directory.CodeNodeLost, directory.ReasonNodeLost)) == 200 &&
			count(l, webhook.UserOffline, nil) == 49
	})
	sentinel(t, world{dirs: []directory.Directory{b}, ev: rec.events, drain: rec.drain})
	for _, e := range rec.snapshot()[before:] {
		if e.Type == webhook.SessionOpened || e.Type == webhook.UserOnline {
			if e.User != "sentinel" {
				t.Errorf("event after the put-back: %+v (the put-back is quiet)", e)
			}
		}
	}
	if es, err := b.ByUser(ctx, "u0"); err != nil || !slices.Equal(ids(es), []string{"b0"}) {
		t.Errorf("b.ByUser(u0) = %v %v", ids(es), err)
	}
	unique(t, rec.snapshot())
}
