package directory_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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

// TestRedisClusterDirectoryReshard: the {webhook} slot (the directory's
// records and the event queues) migrates to another master while two
// nodes add and remove sessions, on clients with go-redis's default
// retries (as the binary's); after each batch of keys moved the slot
// stays half migrated for 20ms. The scripts touch keys they do not
// declare: while the slot migrates some are on either node. Every call
// must succeed as a whole (after waiting for the move to end): each session added gets one
// session.opened, each removed one session.closed, and the records match.
func TestRedisClusterDirectoryReshard(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	client := func() *redis.ClusterClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, DialTimeout: time.Second})
	}
	rec := newRedisRecorderOn(t, client(), "m:")
	o := directory.RedisOptions{Prefix: "m:", TTL: 5 * time.Second, OfflineDelay: testDelay, Events: true, ReapInterval: 100 * time.Millisecond}
	dirs := make([]*directory.Redis, 2)
	for i := range dirs {
		o.Node = fmt.Sprintf("n%d", i)
		dirs[i] = newRedisDirOn(t, client(), o)
	}
	ctx := context.Background()
	for i := range 300 { // keys for the migration to move
		if err := dirs[i%2].Add(ctx, directory.Entry{ID: fmt.Sprintf("pre%d", i), User: fmt.Sprintf("u%d", i%20)}); err != nil {
			t.Fatal(err)
		}
	}
	gen := "m:{webhook}:dir:gen"
	var to string
	for _, a := range rc.Addrs {
		if !rc.Masters(t, gen)[a] {
			to = a
			break
		}
	}

	// Per node: one goroutine adds sessions (and removes every other
	// one it added), another removes the node's earlier sessions, whose
	// keys are being moved.
	type result struct {
		mu             sync.Mutex
		added, removed map[string]bool
		errs           []string
	}
	var calls atomic.Int64
	done := make(chan struct{})
	all := make([]*result, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		r := &result{added: map[string]bool{}, removed: map[string]bool{}}
		all[i] = r
		call := func(f func() error, ok func()) {
			err := f()
			calls.Add(1)
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				r.errs = append(r.errs, err.Error())
			} else {
				ok()
			}
		}
		stopped := func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
		wg.Go(func() {
			for j := 0; !stopped(); j++ {
				id := fmt.Sprintf("n%d-s%d", i, j)
				call(func() error {
					return d.Add(ctx, directory.Entry{ID: id, User: fmt.Sprintf("u%d", j%20), Service: "/chat"})
				},
					func() { r.added[id] = true })
				if j%2 == 0 {
					call(func() error { return d.Remove(ctx, id, 1000, "") }, func() { r.removed[id] = true })
				}
			}
		})
		wg.Go(func() {
			for j := i; j < 300 && !stopped(); j += 2 {
				id := fmt.Sprintf("pre%d", j)
				call(func() error { return d.Remove(ctx, id, 1000, "") }, func() { r.removed[id] = true })
			}
		})
	}
	batches := 0
	start := time.Now()
	from := rc.MoveSlot(t, gen, to, 10, func() {
		batches++
		// The slot stays half migrated a while, as with many keys or a
		// slow network: calls meanwhile wait (slotMoving) rather than
		// change half of what they should.
		time.Sleep(20 * time.Millisecond)
	})
	if calls.Load() == 0 {
		t.Fatal("no call during the move")
	}
	took := time.Since(start)
	close(done)
	wg.Wait()
	if m := rc.Masters(t, gen); !m[to] {
		t.Fatalf("%s on %v after the move, want %s", gen, m, to)
	}
	added, removed, failed := 0, 0, 0
	var errs []string
	for _, r := range all {
		added += len(r.added)
		removed += len(r.removed)
		failed += len(r.errs)
		errs = append(errs, r.errs[:min(3, len(r.errs))]...)
	}
	t.Logf("moved the slot %s -> %s in %d batches, %v; meanwhile %d adds, %d removes ok, %d calls failed %q",
		from, to, batches, took.Round(time.Millisecond), added, removed, failed, errs)
	if added == 0 || failed > 0 {
		t.Fatalf("%d adds ok, %d calls failed during the move", added, failed)
	}

	sentinel(t, world{dirs: []directory.Directory{dirs[0]}, ev: rec.events, drain: rec.drain})
	list := rec.snapshot()
	unique(t, list)
	opened, closed := map[string]int{}, map[string]int{}
	for _, e := range list {
		switch e.Type {
		case webhook.SessionOpened:
			opened[e.Session]++
		case webhook.SessionClosed:
			closed[e.Session]++
		}
	}
	for i, r := range all {
		for j := i; j < 300; j += 2 { // the earlier sessions: removed or still there
			id := fmt.Sprintf("pre%d", j)
			if _, ok, err := dirs[0].Lookup(ctx, id); err != nil || ok == r.removed[id] {
				t.Errorf("Lookup(%s) = %v %v; removed %v", id, ok, err, r.removed[id])
			}
		}
		for id := range r.added {
			if opened[id] != 1 {
				t.Errorf("%s added: %d session.opened", id, opened[id])
			}
			_, ok, err := dirs[0].Lookup(ctx, id)
			if err != nil || ok == r.removed[id] {
				t.Errorf("Lookup(%s) = %v %v; removed %v", id, ok, err, r.removed[id])
			}
		}
		for id := range r.removed {
			if closed[id] != 1 {
				t.Errorf("%s removed: %d session.closed", id, closed[id])
			}
		}
	}
	live := 0
	for i := range 20 { // the users' sets agree with the records
		es, err := dirs[1].ByUser(ctx, fmt.Sprintf("u%d", i))
		if err != nil {
			t.Fatal(err)
		}
		live += len(es)
	}
	want := 300
	for _, r := range all {
		want += len(r.added) - len(r.removed)
	}
	if live != want {
		t.Errorf("ByUser lists %d live sessions, want %d", live, want)
	}
}
