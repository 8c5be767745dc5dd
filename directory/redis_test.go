package directory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

func ids(es []directory.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}

func isClosed(code int, reason string) func(webhook.Event) bool {
	return func(e webhook.Event) bool { return e.Code == code && e.Reason == reason }
}

// eventually polls cond until it holds, failing after within: for state
// with no event to wait on (a record put back in Redis).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		select {
		case <-time.After(10 * time.Millisecond): // poll interval, bounded by the deadline
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// TestRedisNodeDeath: a node holding 300 sessions of 100 users stops
// without removing them (as after kill -9); the live node closes each as
// lost and sends each offline, once, within TTL + delay + a few seconds.
// A user with a session on the live node does not go offline.
func TestRedisNodeDeath(t *testing.T) {
	rs := testenv.StartRedis(t)
	const ttl = 900 * time.Millisecond
	rec := newRedisRecorder(t, rs.Addr, "d:")
	o := directory.RedisOptions{Prefix: "d:", TTL: ttl, OfflineDelay: testDelay, Events: true} // ReapInterval: the default 1s
	o.Node = "a"
	a := newRedisDir(t, rs.Addr, o)
	o.Node = "b"
	b := newRedisDir(t, rs.Addr, o)
	ctx := context.Background()
	for i := range 300 {
		if err := a.Add(ctx, directory.Entry{ID: fmt.Sprintf("a%d", i), User: fmt.Sprintf("u%d", i%100), Service: "/chat", Transport: "websocket"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(ctx, directory.Entry{ID: "b0", User: "u0"}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 10*time.Second, "301 opened and 100 online", func(l []webhook.Event) bool {
		return count(l, webhook.SessionOpened, nil) == 301 && count(l, webhook.UserOnline, nil) == 100
	})

	// Lookups across nodes.
	e, ok, err := b.Lookup(ctx, "a5")
	if err != nil || !ok || e.Node != "a" || e.User != "u5" || e.Service != "/chat" || e.Transport != "websocket" || e.Opened.IsZero() {
		t.Fatalf("b.Lookup(a5) = %+v %v %v", e, ok, err)
	}
	if es, err := b.ByUser(ctx, "u7"); err != nil || !slices.Equal(ids(es), []string{"a107", "a207", "a7"}) {
		t.Fatalf("b.ByUser(u7) = %v %v", ids(es), err)
	}
	if es, err := a.ByUser(ctx, "u0"); err != nil || !slices.Equal(ids(es), []string{"a0", "a100", "a200", "b0"}) {
		t.Fatalf("a.ByUser(u0) = %v %v", ids(es), err)
	}

	start := time.Now()
	a.Close() // stops refreshing and reaping, removes nothing
	rec.waitFor(t, ttl+testDelay+5*time.Second, "300 closed as lost and 99 offline", func(l []webhook.Event) bool {
		return count(l, webhook.SessionClosed, nil) == 300 && count(l, webhook.UserOffline, nil) == 99
	})
	t.Logf("all 300 closed and 99 offline %v after the node stopped (TTL %v, delay %v, reaping every 1s)", time.Since(start).Round(time.Millisecond), ttl, testDelay)

	sentinel(t, world{dirs: []directory.Directory{b}, ev: rec.events, drain: rec.drain})
	list := rec.snapshot()
	closed, offline := map[string]int{}, map[string]int{}
	for _, e := range list {
		switch e.Type {
		case webhook.SessionClosed:
			if e.Session != "sentinel" {
				closed[e.Session]++
				if e.Code != directory.CodeNodeLost || e.Reason != directory.ReasonNodeLost || e.Node != "a" || e.Service != "/chat" {
					t.Errorf("closed event %+v", e)
				}
			}
		case webhook.UserOffline:
			offline[e.User]++
		}
	}
	for i := range 300 {
		if n := closed[fmt.Sprintf("a%d", i)]; n != 1 {
			t.Errorf("a%d closed %d times", i, n)
		}
	}
	for i := 1; i < 100; i++ {
		if n := offline[fmt.Sprintf("u%d", i)]; n != 1 {
			t.Errorf("u%d offline %d times", i, n)
		}
	}
	if offline["u0"] != 0 {
		t.Error("u0 went offline with a session on the live node")
	}
	// Per user: the closes come before the offline.
	for key, evs := range byKey(list) {
		for i, e := range evs {
			if e.Type == webhook.UserOffline && i != len(evs)-1 {
				t.Errorf("%s: offline before %s", key, evs[i+1].Type)
			}
		}
	}
	unique(t, list)
	if _, ok, _ := b.Lookup(ctx, "a5"); ok {
		t.Error("a5 still found")
	}
	if es, err := b.ByUser(ctx, "u0"); err != nil || !slices.Equal(ids(es), []string{"b0"}) {
		t.Errorf("b.ByUser(u0) = %v %v", ids(es), err)
	}
}

// TestRedisConcurrentReapers: three live nodes reap a dead one's 600
// sessions at once, in small batches, and every event is emitted once.
func TestRedisConcurrentReapers(t *testing.T) {
	rs := testenv.StartRedis(t)
	rec := newRedisRecorder(t, rs.Addr, "c:")
	o := directory.RedisOptions{Prefix: "c:", TTL: 600 * time.Millisecond, OfflineDelay: 100 * time.Millisecond,
		Events: true, ReapInterval: 20 * time.Millisecond, ReapBatch: 7}
	o.Node = "dead"
	dead := newRedisDir(t, rs.Addr, o)
	var live []directory.Directory
	for i := range 3 {
		o.Node = fmt.Sprintf("live%d", i)
		live = append(live, newRedisDir(t, rs.Addr, o))
	}
	ctx := context.Background()
	for i := range 600 {
		if err := dead.Add(ctx, directory.Entry{ID: fmt.Sprintf("s%d", i), User: fmt.Sprintf("u%d", i%200)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 10*time.Second, "the opens", func(l []webhook.Event) bool { return count(l, webhook.UserOnline, nil) == 200 })
	start := time.Now()
	dead.Close()
	rec.waitFor(t, 10*time.Second, "600 closed and 200 offline", func(l []webhook.Event) bool {
		return count(l, webhook.SessionClosed, nil) == 600 && count(l, webhook.UserOffline, nil) == 200
	})
	t.Logf("reaped by 3 nodes in %v", time.Since(start).Round(time.Millisecond))
	sentinel(t, world{dirs: live, ev: rec.events, drain: rec.drain})
	list := rec.snapshot()
	if n := count(list, webhook.SessionClosed, isClosed(directory.CodeNodeLost, directory.ReasonNodeLost)); n != 600 {
		t.Errorf("%d closed as lost, want 600", n)
	}
	if n := count(list, webhook.UserOffline, nil); n != 201 { // and the sentinel's
		t.Errorf("%d offline, want 201", n)
	}
	seen := map[string]bool{}
	for _, e := range list {
		k := e.Type + " " + e.Session + " " + e.User
		if e.Type != webhook.SessionOpened && seen[k] {
			t.Errorf("twice: %s", k)
		}
		seen[k] = true
	}
	unique(t, list)
}

// TestRedisRestart: while Redis is down, Add and Remove fail with the
// error; once it is back, empty, the node's live sessions are put back
// without events, the failed removal goes through (with its own code) and
// the failed Add leaves nothing.
func TestRedisRestart(t *testing.T) {
	rs := testenv.StartRedis(t)
	rec := newRedisRecorder(t, rs.Addr, "r:")
	const ttl = 900 * time.Millisecond
	a := newRedisDir(t, rs.Addr, directory.RedisOptions{Prefix: "r:", Node: "a", TTL: ttl, OfflineDelay: testDelay,
		Events: true, ReapInterval: 50 * time.Millisecond})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := a.Add(ctx, directory.Entry{ID: fmt.Sprintf("s%d", i), User: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 5*time.Second, "3 online", func(l []webhook.Event) bool { return count(l, webhook.UserOnline, nil) == 3 })
	before := len(rec.snapshot())

	rs.Stop()
	err := a.Add(ctx, directory.Entry{ID: "s4", User: "u4"})
	if err == nil || !strings.Contains(err.Error(), "directory: add s4") {
		t.Fatalf("Add with Redis down: %v", err)
	}
	err = a.Remove(ctx, "s2", 4000, "bye")
	if err == nil || !strings.Contains(err.Error(), "directory: remove s2") {
		t.Fatalf("Remove with Redis down: %v", err)
	}
	if _, _, err := a.Lookup(ctx, "s1"); err == nil {
		t.Fatal("Lookup with Redis down: no error")
	}
	rs.Start()
	start := time.Now()
	eventually(t, 5*time.Second, "s1 put back", func() bool {
		_, ok, _ := a.Lookup(ctx, "s1")
		return ok
	})
	t.Logf("records put back %v after Redis came back (refresh every %v)", time.Since(start).Round(time.Millisecond), ttl/3)
	rec.waitFor(t, 5*time.Second, "s2's close and u2's offline", func(l []webhook.Event) bool {
		return count(l, webhook.SessionClosed, isClosed(4000, "bye")) == 1 && count(l, webhook.UserOffline, nil) == 1
	})
	sentinel(t, world{dirs: []directory.Directory{a}, ev: rec.events, drain: rec.drain})
	var after []string
	for _, e := range rec.snapshot()[before:] {
		if e.User != "sentinel" {
			after = append(after, short(e)+" "+e.User)
		}
	}
	if want := []string{"closed s2 u2", "offline u2"}; !slices.Equal(after, want) {
		t.Fatalf("events after the restart %q, want %q", after, want)
	}
	for id, want := range map[string]bool{"s1": true, "s2": false, "s3": true, "s4": false} {
		if _, ok, err := a.Lookup(ctx, id); ok != want || err != nil {
			t.Errorf("Lookup(%s) = %v %v, want %v", id, ok, err, want)
		}
	}
	// The users' sets came back too: s1's close takes u1 offline.
	if err := a.Remove(ctx, "s1", 1000, ""); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 5*time.Second, "u1 offline", func(l []webhook.Event) bool {
		return count(l, webhook.UserOffline, func(e webhook.Event) bool { return e.User == "u1" }) == 1
	})
}

// TestRedisQueueFull: events beyond MaxQueue are dropped and counted; the
// state changes all the same.
func TestRedisQueueFull(t *testing.T) {
	rs := testenv.StartRedis(t)
	a := newRedisDir(t, rs.Addr, directory.RedisOptions{Prefix: "f:", Node: "a", Events: true, MaxQueue: 2})
	ctx := context.Background()
	for i := range 5 { // one user: one partition; 6 events
		if err := a.Add(ctx, directory.Entry{ID: fmt.Sprintf("s%d", i), User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Dropped(); n != 4 {
		t.Errorf("Dropped() = %d, want 4", n)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	if n, err := rdb.LLen(ctx, webhook.RedisQueueKey("f:", webhook.Partition("u:u"))).Result(); err != nil || n != 2 {
		t.Errorf("queue length %d %v, want 2", n, err)
	}
	if es, err := a.ByUser(ctx, "u"); err != nil || len(es) != 5 {
		t.Errorf("ByUser = %d entries %v", len(es), err)
	}
}

// TestRedisAddRules: an id another node holds is ErrExists; adding it
// again on its node is a no-op; ByUser is bounded; an unknown Remove is
// no error; keys stay under the webhook hash tag.
func TestRedisAddRules(t *testing.T) {
	rs := testenv.StartRedis(t)
	rec := newRedisRecorder(t, rs.Addr, "a:")
	o := directory.RedisOptions{Prefix: "a:", Events: true, MaxByUser: 3}
	o.Node = "a"
	a := newRedisDir(t, rs.Addr, o)
	o.Node = "b"
	b := newRedisDir(t, rs.Addr, o)
	ctx := context.Background()
	e := directory.Entry{ID: "x", User: "u"}
	if err := a.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, e); err != nil {
		t.Fatalf("Add again on its node: %v", err)
	}
	if err := b.Add(ctx, e); !errors.Is(err, directory.ErrExists) {
		t.Fatalf("Add on another node: %v", err)
	}
	if err := b.Remove(ctx, "x", 1000, ""); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Lookup(ctx, "x"); !ok {
		t.Fatal("another node's Remove removed x")
	}
	for i := range 5 {
		if err := b.Add(ctx, directory.Entry{ID: fmt.Sprintf("y%d", i), User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := a.ByUser(ctx, "u"); err != nil || len(es) != 3 {
		t.Fatalf("ByUser = %d entries %v, want 3", len(es), err)
	}
	if err := a.Add(ctx, directory.Entry{}); !errors.Is(err, directory.ErrNoID) {
		t.Fatalf("Add without id: %v", err)
	}
	rec.waitFor(t, 5*time.Second, "6 opened", func(l []webhook.Event) bool { return count(l, webhook.SessionOpened, nil) == 6 })
	rec.drain(t)
	if n := count(rec.snapshot(), webhook.UserOnline, nil); n != 1 {
		t.Errorf("%d online, want 1", n)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "a:{webhook}:") {
			t.Errorf("key %s outside the webhook slot", k)
		}
	}
	a.Close()
	if err := a.Add(ctx, directory.Entry{ID: "z"}); !errors.Is(err, directory.ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

// TestRedisReapedAlive: a node taken for dead (a pause or a partition past
// the TTL, made here by moving its deadline to the past) has its sessions
// closed as lost; when it refreshes again it adds them back, with
// session.opened, and the user who never really left gets no second
// online and no offline.
func TestRedisReapedAlive(t *testing.T) {
	rs := testenv.StartRedis(t)
	rec := newRedisRecorder(t, rs.Addr, "p:")
	o := directory.RedisOptions{Prefix: "p:", TTL: 1500 * time.Millisecond, OfflineDelay: 3 * time.Second,
		Events: true, ReapInterval: 20 * time.Millisecond}
	o.Node = "a"
	a := newRedisDir(t, rs.Addr, o)
	o.Node = "b"
	b := newRedisDir(t, rs.Addr, o)
	ctx := context.Background()
	if err := a.Add(ctx, directory.Entry{ID: "s1", User: "u1"}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	// Until a reaper got there before a's next refresh.
	eventually(t, 10*time.Second, "s1 closed as lost", func() bool {
		rdb.ZAdd(ctx, "p:{webhook}:dir:nodes", redis.Z{Score: 0, Member: a.Instance()})
		rec.drain(t)
		return count(rec.snapshot(), webhook.SessionClosed, nil) == 1
	})
	rec.waitFor(t, 5*time.Second, "s1 opened again", func(l []webhook.Event) bool {
		return count(l, webhook.SessionOpened, nil) == 2
	})
	if _, ok, err := b.Lookup(ctx, "s1"); !ok || err != nil {
		t.Fatalf("s1 not found again: %v", err)
	}
	sentinel(t, world{dirs: []directory.Directory{b}, ev: rec.events, drain: rec.drain})
	var seq []string
	for _, e := range byKey(rec.snapshot())["u:u1"] {
		seq = append(seq, short(e))
	}
	if want := []string{"opened s1", "online s1", "closed s1", "opened s1"}; !slices.Equal(seq, want) {
		t.Fatalf("events of u1 %q, want %q", seq, want)
	}
}

// TestRedisEventJSON: fields with quotes, slashes and non-ASCII text come
// out of the Lua JSON as Go reads them, in the partition Go computes (the
// recorder checks every event of every test so).
func TestRedisEventJSON(t *testing.T) {
	rs := testenv.StartRedis(t)
	rec := newRedisRecorder(t, rs.Addr, "j:")
	a := newRedisDir(t, rs.Addr, directory.RedisOptions{Prefix: "j:", Node: "nœud/1", Events: true, OfflineDelay: -1})
	ctx := context.Background()
	e := directory.Entry{ID: `s "1"/\`, Service: "/chät", User: "Zoë 😀 \"q\"", Transport: "xhr_streaming", Remote: "[::1]:5000"}
	if err := a.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(ctx, e.ID, 3000, "Forbidden: ünicode \"reason\""); err != nil {
		t.Fatal(err)
	}
	list := rec.waitFor(t, 5*time.Second, "4 events", func(l []webhook.Event) bool { return len(l) == 4 })
	want := []webhook.Event{
		{Type: webhook.SessionOpened, Session: e.ID, Service: e.Service, User: e.User, Transport: e.Transport, Node: "nœud/1", Remote: e.Remote},
		{Type: webhook.UserOnline, Session: e.ID, Service: e.Service, User: e.User, Transport: e.Transport, Node: "nœud/1", Remote: e.Remote},
		{Type: webhook.SessionClosed, Session: e.ID, Service: e.Service, User: e.User, Transport: e.Transport, Node: "nœud/1", Remote: e.Remote, Code: 3000, Reason: "Forbidden: ünicode \"reason\""},
		{Type: webhook.UserOffline, User: e.User},
	}
	for i, got := range list {
		got.ID, got.Time = "", time.Time{}
		if got != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	if got, ok, err := a.Lookup(ctx, e.ID); ok || err != nil {
		t.Errorf("Lookup after Remove = %+v %v %v", got, ok, err)
	}
}

// A refresh answers how many sessions the node holds; that is not a
// count of events the queue refused (it was, and every refresh of a node
// holding N sessions counted N drops and logged a full queue).
func TestRedisRefreshDropsNothing(t *testing.T) {
	rs := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	d := newRedisDir(t, rs.Addr, directory.RedisOptions{Prefix: "r:", Node: "a", TTL: 300 * time.Millisecond, Events: true})
	ctx := context.Background()
	for i := range 5 {
		if err := d.Add(ctx, directory.Entry{ID: fmt.Sprint(i), User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for two refreshes: the node's deadline moves at each.
	nodes := "r:{webhook}:dir:nodes"
	last, moves := 0.0, 0
	deadline := time.Now().Add(10 * time.Second)
	for moves < 3 {
		zs, err := rdb.ZRangeWithScores(ctx, nodes, 0, -1).Result()
		if err == nil && len(zs) == 1 && zs[0].Score != last {
			last, moves = zs[0].Score, moves+1
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's deadline moved %d times in 10 s", moves)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := d.Dropped(); n != 0 {
		t.Fatalf("Dropped() = %d after refreshes, want 0", n)
	}
}

// TestRedisAdopt: a session moves from node a to node b (a hand-off): a
// forgets it, b adopts its record. No event tells of the move; the record
// names b, outlives a (stopped without removing anything, past its TTL
// and a reap) and b's Remove closes it, once. Adopting an id with no
// record is an Add, events included.
func TestRedisAdopt(t *testing.T) {
	rs := testenv.StartRedis(t)
	const ttl = 900 * time.Millisecond
	rec := newRedisRecorder(t, rs.Addr, "d:")
	o := directory.RedisOptions{Prefix: "d:", TTL: ttl, OfflineDelay: testDelay, Events: true}
	o.Node = "a"
	a := newRedisDir(t, rs.Addr, o)
	o.Node = "b"
	b := newRedisDir(t, rs.Addr, o)
	ctx := context.Background()
	if err := a.Add(ctx, directory.Entry{ID: "s1", User: "u1", Service: "/chat", Transport: "xhr-streaming"}); err != nil {
		t.Fatal(err)
	}
	before, _, err := a.Lookup(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	a.Forget("s1")
	if err := b.Adopt(ctx, directory.Entry{ID: "s1", User: "u1", Service: "/chat", Transport: "xhr-streaming", Node: "b"}); err != nil {
		t.Fatal(err)
	}
	// a2 stays a's: its close as lost tells that b reaped a's sessions.
	if err := a.Add(ctx, directory.Entry{ID: "a2", Service: "/chat"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	rec.waitFor(t, ttl+10*time.Second, "a2 closed as lost", func(l []webhook.Event) bool {
		return count(l, webhook.SessionClosed, isClosed(directory.CodeNodeLost, directory.ReasonNodeLost)) == 1
	})
	e, ok, err := b.Lookup(ctx, "s1")
	if err != nil || !ok || e.Node != "b" || e.User != "u1" || !e.Opened.Equal(before.Opened) {
		t.Fatalf("b.Lookup(s1) = %+v %v %v, opened before %v", e, ok, err, before.Opened)
	}
	if err := b.Adopt(ctx, directory.Entry{ID: "s2", User: "u2", Service: "/chat", Transport: "xhr"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, "s1", 4000, "bye"); err != nil {
		t.Fatal(err)
	}
	sentinel(t, world{dirs: []directory.Directory{b}, ev: rec.events, drain: rec.drain})
	list := rec.snapshot()
	type key struct{ typ, who string }
	got := map[key]int{}
	for _, ev := range list {
		if ev.Session == "sentinel" || ev.User == "sentinel" {
			continue
		}
		got[key{ev.Type, ev.Session + "/" + ev.User}]++
		if ev.Type == webhook.SessionClosed && ev.Session == "s1" && (ev.Node != "b" || ev.Code != 4000) {
			t.Errorf("closed event %+v", ev)
		}
	}
	want := map[key]int{
		{webhook.SessionOpened, "s1/u1"}: 1, {webhook.UserOnline, "s1/u1"}: 1,
		{webhook.SessionOpened, "s2/u2"}: 1, {webhook.UserOnline, "s2/u2"}: 1,
		{webhook.SessionClosed, "s1/u1"}: 1, {webhook.UserOffline, "/u1"}: 1,
		{webhook.SessionOpened, "a2/"}: 1, {webhook.SessionClosed, "a2/"}: 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
	unique(t, list)
}
