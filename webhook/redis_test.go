package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

// A node killed mid-delivery (no lease released) loses its partitions
// after LeaseTTL: another node delivers every event, in order per user.
func TestKilledNodeTakenOver(t *testing.T) {
	rs := testenv.StartRedis(t)
	r := newReceiver(t)
	r.holdAll()
	o := fast(r.url())
	o.Redis, o.Prefix = newRedisClient(t, rs), "test:"
	a, err := webhook.New(o)
	if err != nil {
		t.Fatal(err)
	}
	const users, perUser = 20, 10
	ids := enqueueUsers(t, a, users, perUser)
	r.waitFor(5*time.Second, "no POST in flight", func() bool { return r.inFlight > 0 })
	a.Kill()
	if n := leases(t, rs); n == 0 {
		t.Fatal("the killed node left no lease")
	}
	r.release()
	t0 := time.Now()
	o.Redis = newRedisClient(t, rs)
	start(t, o)
	r.waitAll(20*time.Second, ids)
	checkOrder(t, r.firsts(), users, perUser)
	t.Logf("taken over and delivered in %v (LeaseTTL %v)", time.Since(t0).Round(time.Millisecond), o.LeaseTTL)
}

// leases counts the lease keys in Redis.
func leases(t *testing.T, rs *testenv.Redis) int {
	t.Helper()
	rdb := newRedisClient(t, rs)
	n := 0
	for p := range webhook.Partitions {
		if rdb.Exists(context.Background(), webhook.RedisLeaseKey("test:", p)).Val() == 1 {
			n++
		}
	}
	return n
}

// Events pushed by other code (RPUSH + PUBLISH, as the session directory's
// scripts do) are delivered byte for byte; an entry without an id gets a
// stable one; one that is not an event is dropped, counted, and does not
// block its partition.
func TestForeignPush(t *testing.T) {
	rs := testenv.StartRedis(t)
	r := newReceiver(t)
	c := newCounts()
	o := fast(r.url())
	o.Redis, o.Prefix, o.Observer = newRedisClient(t, rs), "test:", c
	start(t, o)
	rdb := newRedisClient(t, rs)
	ctx := context.Background()
	p := webhook.Partition(webhook.Event{User: "bob"}.OrderKey())
	key := webhook.RedisQueueKey("test:", p)
	for _, entry := range []string{
		`{"id":"a1","type":"user.online","time":"2026-12-04T20:00:00Z","user":"bob","code":0}`,
		`not json`,
		`{"type":"user.offline","time":"2026-12-04T20:00:01Z","user":"bob","code":1}`,
	} {
		if err := rdb.RPush(ctx, key, entry).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Publish(ctx, webhook.RedisWakeChannel("test:"), p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(10*time.Second, "foreign events not delivered", func() bool { return len(r.got) >= 2 })
	got := r.firsts()
	if len(got) != 2 || got[0].ID != "a1" || got[1].Code != 1 || len(got[1].ID) != 32 {
		t.Fatalf("delivered %+v", got)
	}
	if d := c.get(func(c *counts) int { return c.dropped[webhook.DropMalformed] }); d != 1 {
		t.Errorf("malformed dropped = %d, want 1", d)
	}
	// The head is removed just after its 2xx.
	eventually(t, 5*time.Second, "entries left in the list", func() bool { return rdb.LLen(ctx, key).Val() == 0 })
}

// Two nodes share the busy partitions: neither holds them all.
func TestLeasesSpread(t *testing.T) {
	rs := testenv.StartRedis(t)
	r := newReceiver(t)
	r.holdAll()
	defer r.release() // before the Shutdowns in start's cleanups
	o := fast(r.url())
	o.Prefix = "test:"
	for range 2 {
		o.Redis = newRedisClient(t, rs)
		start(t, o)
	}
	// One event per partition, through a third client.
	o.Redis = newRedisClient(t, rs)
	enq, err := webhook.New(webhook.Options{URL: r.url(), Redis: o.Redis, Prefix: "test:", MaxLeases: 1, Poll: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	enq.Kill() // only its Enqueue is used: it delivers nothing
	users := map[int]string{}
	for i := 0; len(users) < webhook.Partitions; i++ {
		u := "u" + time.Duration(i).String()
		users[webhook.Partition(webhook.Event{User: u}.OrderKey())] = u
	}
	for _, u := range users {
		if err := enq.Enqueue(context.Background(), webhook.Event{Type: webhook.UserOnline, User: u}); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(10*time.Second, "not every partition in flight", func() bool { return r.inFlight == webhook.Partitions })
	rdb := newRedisClient(t, rs)
	holders := map[string]int{}
	for p := range webhook.Partitions {
		holders[rdb.Get(context.Background(), webhook.RedisLeaseKey("test:", p)).Val()]++
	}
	if len(holders) != 2 {
		t.Fatalf("lease holders %v, want 2 nodes", holders)
	}
	t.Logf("leases per node: %v", holders)
}

// eventually waits until cond holds, checking it every 10ms, or fails the
// test after d: for state outside the test's reach (Redis), which has no
// change notification to wait on.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		<-tick.C
	}
}

// An event pushed without a wake-up (a lost pub/sub message) is found by
// the poll.
func TestPushWithoutWake(t *testing.T) {
	rs := testenv.StartRedis(t)
	r := newReceiver(t)
	o := fast(r.url())
	o.Redis, o.Prefix = newRedisClient(t, rs), "test:"
	polled := make(chan struct{}, 1)
	o.Observer = pollSignal{newCounts(), polled}
	start(t, o)
	<-polled // the first poll found nothing: the next must find the push
	rdb := newRedisClient(t, rs)
	e := `{"id":"quiet1","type":"session.opened","time":"2026-12-04T20:00:00Z","session":"s9"}`
	key := webhook.RedisQueueKey("test:", webhook.Partition(webhook.Event{Session: "s9"}.OrderKey()))
	if err := rdb.RPush(context.Background(), key, e).Err(); err != nil {
		t.Fatal(err)
	}
	r.waitAll(5*time.Second, []string{"quiet1"})
}

// pollSignal tells each poll (QueueLength) on a channel, without blocking.
type pollSignal struct {
	*counts
	polled chan struct{}
}

func (p pollSignal) QueueLength(n int) {
	select {
	case p.polled <- struct{}{}:
	default:
	}
}
