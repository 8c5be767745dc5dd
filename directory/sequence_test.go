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

const testDelay = 300 * time.Millisecond

// world is one or more directories sharing their state (nodes), and what
// they enqueued.
type world struct {
	dirs []directory.Directory
	ev   *events
	// drain makes every event enqueued so far visible in ev.
	drain func(t *testing.T)
}

type kind struct {
	name  string
	multi bool // more than one node
	// start is called once per test; its result makes worlds.
	start func(t *testing.T) func(t *testing.T, nodes int) world
}

var memoryKind = kind{"memory", false, func(t *testing.T) func(*testing.T, int) world {
	return func(t *testing.T, _ int) world {
		ev := newEvents()
		m := directory.NewMemory(directory.MemoryOptions{Events: memQueue{ev}, OfflineDelay: testDelay, Logger: quiet})
		t.Cleanup(func() { m.Close() })
		return world{dirs: []directory.Directory{m}, ev: ev, drain: func(*testing.T) {}}
	}
}}

var redisKind = kind{"redis", true, func(t *testing.T) func(*testing.T, int) world {
	rs := testenv.StartRedis(t)
	n := 0
	return func(t *testing.T, nodes int) world {
		n++
		prefix := fmt.Sprintf("t%d:", n)
		rec := newRedisRecorder(t, rs.Addr, prefix)
		w := world{ev: rec.events, drain: rec.drain}
		for i := range nodes {
			w.dirs = append(w.dirs, newRedisDir(t, rs.Addr, directory.RedisOptions{
				Prefix: prefix, Node: fmt.Sprintf("node%d", i), OfflineDelay: testDelay,
				ReapInterval: 50 * time.Millisecond, TTL: 3 * time.Second, Events: true,
			}))
		}
		return w
	}
}}

func newRedisDir(t *testing.T, addr string, o directory.RedisOptions) *directory.Redis {
	t.Helper()
	return newRedisDirOn(t, redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second}), o)
}

// newRedisDirOn is a directory on rdb (a Redis Cluster's client, say),
// closing both when the test ends.
func newRedisDirOn(t *testing.T, rdb redis.UniversalClient, o directory.RedisOptions) *directory.Redis {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	d, err := directory.NewRedis(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); rdb.Close() })
	return d
}

type step struct {
	op   string // "add" or "remove"
	node int
	id   string
	user string
}

// short is an event as the cases spell it: "opened s1", "offline".
func short(e webhook.Event) string {
	switch e.Type {
	case webhook.UserOffline:
		return "offline"
	case webhook.UserOnline:
		return "online " + e.Session
	}
	return e.Type[len("session."):] + " " + e.Session
}

// TestSequences: the events of a user (or an anonymous session), in
// order, for each way sessions come and go, on both directories.
func TestSequences(t *testing.T) {
	cases := []struct {
		name  string
		nodes int
		key   string // the order key whose events are checked
		steps []step
		want  []string
	}{
		{"first session: opened then online", 1, "u:u1",
			[]step{{"add", 0, "s1", "u1"}},
			[]string{"opened s1", "online s1"}},
		{"second session: opened only", 1, "u:u1",
			[]step{{"add", 0, "s1", "u1"}, {"add", 0, "s2", "u1"}},
			[]string{"opened s1", "online s1", "opened s2"}},
		{"last closes: closed, then offline after the delay", 1, "u:u1",
			[]step{{"add", 0, "s1", "u1"}, {"add", 0, "s2", "u1"}, {"remove", 0, "s1", ""}, {"remove", 0, "s2", ""}},
			[]string{"opened s1", "online s1", "opened s2", "closed s1", "closed s2", "offline"}},
		{"reconnect inside the delay: no offline, no second online", 1, "u:u1",
			[]step{{"add", 0, "s1", "u1"}, {"remove", 0, "s1", ""}, {"add", 0, "s2", "u1"}},
			[]string{"opened s1", "online s1", "closed s1", "opened s2"}},
		{"reconnect then leave: one offline", 1, "u:u1",
			[]step{{"add", 0, "s1", "u1"}, {"remove", 0, "s1", ""}, {"add", 0, "s2", "u1"}, {"remove", 0, "s2", ""}},
			[]string{"opened s1", "online s1", "closed s1", "opened s2", "closed s2", "offline"}},
		{"anonymous session: ordered by session, no user events", 1, "s:a1",
			[]step{{"add", 0, "a1", ""}, {"remove", 0, "a1", ""}},
			[]string{"opened a1", "closed a1"}},
		{"sessions on two nodes: online once, offline after the last", 2, "u:u1",
			[]step{{"add", 0, "s1", "u1"}, {"add", 1, "s2", "u1"}, {"remove", 0, "s1", ""}, {"add", 0, "s3", "u1"}, {"remove", 1, "s2", ""}, {"remove", 0, "s3", ""}},
			[]string{"opened s1", "online s1", "opened s2", "closed s1", "opened s3", "closed s2", "closed s3", "offline"}},
	}
	for _, k := range []kind{memoryKind, redisKind, redisClusterKind} {
		t.Run(k.name, func(t *testing.T) {
			worlds := k.start(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if c.nodes > 1 && !k.multi {
						t.Skip("one node only")
					}
					w := worlds(t, c.nodes)
					ctx := context.Background()
					for _, s := range c.steps {
						var err error
						if s.op == "add" {
							err = w.dirs[s.node].Add(ctx, directory.Entry{ID: s.id, Service: "/chat", User: s.user, Transport: "websocket", Remote: "10.0.0.1"})
						} else {
							err = w.dirs[s.node].Remove(ctx, s.id, 1000, "Normal closure")
						}
						if err != nil {
							t.Fatalf("%s %s: %v", s.op, s.id, err)
						}
					}
					// A sentinel user leaves after the steps: their offline
					// is due after any the steps scheduled, so once it is
					// seen (and the queues drained) every event the steps
					// caused is recorded.
					sentinel(t, w)
					got := byKey(w.ev.snapshot())[c.key]
					var seq []string
					for _, e := range got {
						seq = append(seq, short(e))
						if e.Type == webhook.SessionClosed && (e.Code != 1000 || e.Reason != "Normal closure") {
							t.Errorf("closed with %d %q", e.Code, e.Reason)
						}
						if e.Type != webhook.UserOffline && (e.Service != "/chat" || e.Transport != "websocket" || e.Remote != "10.0.0.1") {
							t.Errorf("event %+v lacks the entry's fields", e)
						}
					}
					if !slices.Equal(seq, c.want) {
						t.Fatalf("events of %s:\n got %q\nwant %q", c.key, seq, c.want)
					}
					// The offline waited for the delay after the last close.
					if n := len(got); n > 1 && got[n-1].Type == webhook.UserOffline {
						if d := got[n-1].Time.Sub(got[n-2].Time); d < testDelay-time.Millisecond {
							t.Errorf("offline %v after the last close, want at least %v", d, testDelay)
						}
					}
					unique(t, w.ev.snapshot())
				})
			}
		})
	}
}

// sentinel adds and removes a session of a user of its own on the first
// node, waits for that user's offline and drains the queues.
func sentinel(t *testing.T, w world) {
	t.Helper()
	ctx := context.Background()
	if err := w.dirs[0].Add(ctx, directory.Entry{ID: "sentinel", User: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	if err := w.dirs[0].Remove(ctx, "sentinel", 1000, ""); err != nil {
		t.Fatal(err)
	}
	w.ev.waitFor(t, 10*time.Second, "the sentinel's offline", func(l []webhook.Event) bool {
		return count(l, webhook.UserOffline, func(e webhook.Event) bool { return e.User == "sentinel" }) == 1
	})
	w.drain(t)
}
