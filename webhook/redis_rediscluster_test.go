package webhook_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

// redisClusterKind runs the kind-based tests on a Redis Cluster of three
// masters.
var redisClusterKind = kind{"rediscluster", func(t *testing.T, o webhook.Options) webhook.Options {
	rc := testenv.StartRedisCluster(t)
	o.Redis = rc.Client(t)
	o.Prefix = "test:"
	return o
}}

// TestRedisClusterQueue runs the Redis queue on a Redis Cluster: two
// nodes on clients of their own share the partitions (leases by SET NX,
// renewals by script in pipelines, wake-ups by pub/sub through the
// cluster client), one is killed mid-delivery and the other takes its
// partitions over, every event arrives in order per user; an event
// pushed by other code (RPUSH + PUBLISH, as the directory's scripts do)
// is delivered too.
func TestRedisClusterQueue(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	keys := []string{webhook.RedisWakeChannel("test:")}
	for p := range webhook.Partitions {
		keys = append(keys, webhook.RedisQueueKey("test:", p), webhook.RedisLeaseKey("test:", p))
	}
	if m := rc.Masters(t, keys...); len(m) != 1 {
		t.Fatalf("queue keys on masters %v, want one (the {webhook} tag)", m)
	}
	r := newReceiver(t)
	r.holdAll()
	o := fast(r.url())
	o.Redis, o.Prefix = rc.Client(t), "test:"
	a, err := webhook.New(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Redis = rc.Client(t)
	start(t, o)
	const users, perUser = 30, 10
	ids := enqueueUsers(t, a, users, perUser)
	r.waitFor(10*time.Second, "no POST in flight", func() bool { return r.inFlight > 0 })
	rdb := rc.Client(t)
	ctx := context.Background()
	holders := map[string]int{}
	for p := range webhook.Partitions {
		if v, err := rdb.Get(ctx, webhook.RedisLeaseKey("test:", p)).Result(); err == nil {
			holders[v]++
		} else if err != redis.Nil {
			t.Fatal(err)
		}
	}
	if len(holders) == 0 {
		t.Fatal("no lease held")
	}
	t.Logf("leases per node while held: %v", holders)
	a.Kill()
	r.release()
	t0 := time.Now()
	r.waitAll(30*time.Second, ids)
	checkOrder(t, r.firsts(), users, perUser)
	t.Logf("all %d delivered %v after node a was killed (LeaseTTL %v)", len(ids), time.Since(t0).Round(time.Millisecond), o.LeaseTTL)

	// A foreign push, through yet another cluster client.
	p := webhook.Partition(webhook.Event{User: "bob"}.OrderKey())
	if err := rdb.RPush(ctx, webhook.RedisQueueKey("test:", p), `{"id":"f1","type":"user.online","time":"2026-12-04T20:00:00Z","user":"bob"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, webhook.RedisWakeChannel("test:"), p).Err(); err != nil {
		t.Fatal(err)
	}
	r.waitAll(10*time.Second, []string{"f1"})
	eventually(t, 5*time.Second, "the foreign event left in its list", func() bool {
		return rdb.LLen(ctx, webhook.RedisQueueKey("test:", p)).Val() == 0
	})
}

// TestRedisClusterQueueSlotMove: the {webhook} slot (queues, leases, the
// wake channel's tag) migrates to another master while events are
// enqueued and delivered, on clients with go-redis's default retries (as
// the binary's): every event enqueued without error is delivered, in
// order per user.
func TestRedisClusterQueueSlotMove(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	client := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, DialTimeout: time.Second})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	r := newReceiver(t)
	o := fast(r.url())
	o.Prefix = "test:"
	for range 2 {
		o.Redis = client()
		start(t, o)
	}
	o.Redis = client()
	enq, err := webhook.New(webhook.Options{URL: r.url(), Redis: o.Redis, Prefix: "test:", Poll: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	enq.Kill() // only its Enqueue is used
	key := webhook.RedisQueueKey("test:", 0)
	var to string
	for _, a := range rc.Addrs {
		if !rc.Masters(t, key)[a] {
			to = a
			break
		}
	}
	// Events wait in the queues while the slot moves: the receiver holds
	// the POSTs until half the slot has moved.
	r.holdAll()
	const users, perUser = 20, 30
	ids := enqueueUsers(t, enq, users, perUser/2)
	var mid []string
	batches := 0
	rc.MoveSlot(t, key, to, 10, func() {
		batches++
		switch batches {
		case 1: // half moved: some queue keys on each master
			mid = enqueueUsers(t, enq, users, perUser/2)
		case 2:
			r.release()
		}
	})
	more := enqueueUsers(t, enq, users, perUser/2)
	rounds := [][]string{ids, mid, more}
	r.waitAll(30*time.Second, slices.Concat(rounds...))
	t.Logf("the slot moved in %d batches; %d events delivered", batches, len(ids)+len(mid)+len(more))
	// Per user, in enqueue order, within each round (each numbers its
	// events from 0).
	round := map[string]int{}
	for i, ids := range rounds {
		for _, id := range ids {
			round[id] = i
		}
	}
	split := make([][]webhook.Event, len(rounds))
	for _, e := range r.firsts() {
		split[round[e.ID]] = append(split[round[e.ID]], e)
	}
	for _, evs := range split {
		checkOrder(t, evs, users, perUser/2)
	}
}
