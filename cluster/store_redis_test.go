package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockjsd/sockjsd/transport"
)

var (
	_ Store                   = (*RedisStore)(nil)
	_ Observer                = (*Metrics)(nil)
	_ transport.Cluster       = (*Node)(nil)
	_ transport.ClusterMember = (*member)(nil)
)

func TestOwners(t *testing.T) {
	rdb := startRedis(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: 5 * time.Second})
	const a, b, c = "http://a", "http://b", "http://c"

	steps := []struct {
		name       string
		run        func() (string, error)
		want       string
		wantOwner  string
		wantTTLMin time.Duration
	}{
		{"no owner", func() (string, error) { return o.Owner(ctx, "/echo/s1") }, "", "", 0},
		{"a claims", func() (string, error) { return o.Claim(ctx, "/echo/s1", a, "") }, a, a, 4 * time.Second},
		{"a claims again", func() (string, error) { return o.Claim(ctx, "/echo/s1", a, "") }, a, a, 4 * time.Second},
		{"b cannot claim", func() (string, error) { return o.Claim(ctx, "/echo/s1", b, "") }, a, a, 0},
		{"b cannot take over from c", func() (string, error) { return o.Claim(ctx, "/echo/s1", b, c) }, a, a, 0},
		{"b takes over from a", func() (string, error) { return o.Claim(ctx, "/echo/s1", b, a) }, b, b, 4 * time.Second},
		{"a does not release b's", func() (string, error) { return "", o.Release(ctx, []string{"/echo/s1"}, a) }, "", b, 0},
		{"b releases", func() (string, error) { return "", o.Release(ctx, []string{"/echo/s1"}, b) }, "", "", 0},
	}
	for _, s := range steps {
		got, err := s.run()
		if err != nil || got != s.want {
			t.Fatalf("%s: %q, %v; want %q", s.name, got, err, s.want)
		}
		owner, err := o.Owner(ctx, "/echo/s1")
		if err != nil || owner != s.wantOwner {
			t.Fatalf("%s: owner %q, %v; want %q", s.name, owner, err, s.wantOwner)
		}
		if s.wantTTLMin > 0 {
			if ttl := rdb.PTTL(ctx, DefaultKeyPrefix+"/echo/s1").Val(); ttl < s.wantTTLMin || ttl > 5*time.Second {
				t.Fatalf("%s: TTL %s", s.name, ttl)
			}
		}
	}
}

func TestOwnersKeepManyKeys(t *testing.T) {
	rdb := startRedis(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: time.Minute})
	var keys []string
	for i := range 1200 { // more than two pipelines
		keys = append(keys, fmt.Sprintf("/echo/k%d", i))
	}
	// k0 is b's, k1 expired (Redis lost it), the rest are a's with a short
	// TTL left (or already expired on a slow machine: Keep restores them).
	rdb.Set(ctx, DefaultKeyPrefix+keys[0], "http://b", time.Hour)
	for _, k := range keys[2:] {
		rdb.Set(ctx, DefaultKeyPrefix+k, "http://a", time.Second)
	}
	lost, err := o.Keep(ctx, keys, "http://a")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lost) != fmt.Sprint(keys[:1]) {
		t.Fatalf("Keep reported %v lost, want %v (b's)", lost, keys[:1])
	}
	if v := rdb.Get(ctx, DefaultKeyPrefix+keys[0]).Val(); v != "http://b" {
		t.Fatalf("another node's key: %q", v)
	}
	if ttl := rdb.PTTL(ctx, DefaultKeyPrefix+keys[0]).Val(); ttl < 30*time.Minute {
		t.Fatalf("another node's key was refreshed: %s", ttl)
	}
	for _, k := range keys[1:] {
		if v := rdb.Get(ctx, DefaultKeyPrefix+k).Val(); v != "http://a" {
			t.Fatalf("%s: %q after Keep", k, v)
		}
		if ttl := rdb.PTTL(ctx, DefaultKeyPrefix+k).Val(); ttl < 30*time.Second {
			t.Fatalf("%s: TTL %s after Keep", k, ttl)
		}
	}
	if err := o.Release(ctx, keys, "http://a"); err != nil {
		t.Fatal(err)
	}
	if v := rdb.Keys(ctx, DefaultKeyPrefix+"/*").Val(); len(v) != 1 {
		t.Fatalf("keys left after Release: %v, want b's only", v)
	}
}

// TestOwnersRecovery: when Redis loses its records (FLUSHALL stands in for
// a restart without persistence), a missing key is not free during the
// recovery grace: Owner and Claim say so, with the time left, while Keep
// puts the owners' records back. After the grace a missing key is free
// again, and the generation stays the same until the next loss.
func TestOwnersRecovery(t *testing.T) {
	rdb := startRedis(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: time.Minute, RecoveryGrace: 300 * time.Millisecond})
	g1, err := o.Generation(ctx)
	if err != nil || g1 == "" {
		t.Fatalf("generation: %q, %v", g1, err)
	}
	// The cluster's first generation comes with no grace: there was
	// nothing to lose.
	if _, err := o.Owner(ctx, "/echo/s0"); err != nil {
		t.Fatalf("Owner on a new cluster: %v", err)
	}
	if _, err := o.Claim(ctx, "/echo/s1", "http://a", ""); err != nil {
		t.Fatal(err)
	}
	if g, _ := o.Generation(ctx); g != g1 {
		t.Fatalf("generation changed without a loss: %q -> %q", g1, g)
	}

	rdb.FlushAll(ctx)
	g2, err := o.Generation(ctx)
	if err != nil || g2 == g1 || g2 == "" {
		t.Fatalf("generation after the loss: %q (was %q), %v", g2, g1, err)
	}
	var re *RecoveringError
	if _, err := o.Owner(ctx, "/echo/s1"); !errors.As(err, &re) || re.Left <= 0 || re.Left > 300*time.Millisecond {
		t.Fatalf("Owner during the grace: %v, want a RecoveringError with the time left", err)
	}
	if _, err := o.Claim(ctx, "/echo/s1", "http://b", ""); !errors.Is(err, ErrRecovering) {
		t.Fatalf("Claim during the grace: %v, want ErrOwnersRecovering", err)
	}
	// The owner puts its record back within the grace; b then sees it.
	if lost, err := o.Keep(ctx, []string{"/echo/s1"}, "http://a"); err != nil || len(lost) != 0 {
		t.Fatalf("Keep during the grace: lost %v, %v", lost, err)
	}
	if owner, err := o.Owner(ctx, "/echo/s1"); err != nil || owner != "http://a" {
		t.Fatalf("Owner after Keep: %q, %v", owner, err)
	}
	waitGrace(t, o)
	if owner, err := o.Claim(ctx, "/echo/s2", "http://b", ""); err != nil || owner != "http://b" {
		t.Fatalf("Claim of a free key after the grace: %q, %v", owner, err)
	}
}

// waitGrace waits (bounded) for o's recovery grace to end.
func waitGrace(t *testing.T, o *RedisStore) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, left, err := o.generation(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if left <= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grace still on after 5s (%s left)", left)
		}
		time.Sleep(left)
	}
}

func TestPing(t *testing.T) {
	rdb := startRedis(t)
	check := Ping(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := check(ctx); err != nil {
		t.Fatal(err)
	}
	rdb.ShutdownNoSave(ctx)
	if err := check(ctx); err == nil {
		t.Fatal("Ping passed with redis-server stopped")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Forwarded("xhr_send", "ok", 3*time.Millisecond)
	m.Forwarded("xhr_send", "owner_gone", time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("xhr_send", "ok")); got != 1 {
		t.Fatalf("ok count %v", got)
	}
	if n := testutil.CollectAndCount(m.latency); n != 1 {
		t.Fatalf("latency series %d, want 1 (owner_gone is not timed)", n)
	}
}

var (
	_ HandOffStore             = (*RedisStore)(nil)
	_ transport.ClusterHandOff = (*member)(nil)
)

// TestRedisHandOff: the hand-off record replaces its node's ownership only,
// reads as HandOffOwner, survives Claim and Keep by others, and is taken
// once, by one node, with its state (binary-safe).
func TestRedisHandOff(t *testing.T) {
	rdb := startRedis(t)
	ctx := context.Background()
	o := NewRedisStore(rdb, RedisStoreOptions{TTL: 5 * time.Second})
	const a, b, c, key = "http://a", "http://b", "http://c", "/hub/s1"
	state := []byte("{\"x\":1}\x00\n\xff")
	if _, err := o.Claim(ctx, key, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := o.HandOff(ctx, key, b, state, time.Second); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("b hands off a's session: %v, want ErrNotOwner", err)
	}
	if err := o.HandOff(ctx, key, a, state, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, DefaultKeyPrefix+key).Val(); ttl <= time.Second || ttl > 2*time.Second {
		t.Fatalf("record TTL %s, want the hand-off's 2s", ttl)
	}
	for _, step := range []struct {
		name string
		run  func() (string, error)
	}{
		{"owner", func() (string, error) { return o.Owner(ctx, key) }},
		{"claim by c", func() (string, error) { return o.Claim(ctx, key, c, "") }},
		{"claim by c over a", func() (string, error) { return o.Claim(ctx, key, c, a) }},
	} {
		if got, err := step.run(); err != nil || got != HandOffOwner {
			t.Fatalf("%s: %q, %v; want %q", step.name, got, err, HandOffOwner)
		}
	}
	if lost, err := o.Keep(ctx, []string{key}, a); err != nil || len(lost) != 1 {
		t.Fatalf("a keeps its handed-off key: lost %v, %v", lost, err)
	}
	if err := o.Release(ctx, []string{key}, a); err != nil {
		t.Fatal(err)
	}
	got, owner, err := o.Take(ctx, key, b)
	if err != nil || owner != b || string(got) != string(state) {
		t.Fatalf("b takes: %q %q %v", got, owner, err)
	}
	if got, owner, err := o.Take(ctx, key, c); err != nil || owner != b || got != nil {
		t.Fatalf("c takes after b: %q %q %v; want b's", got, owner, err)
	}
	if owner, _ := o.Owner(ctx, key); owner != b {
		t.Fatalf("owner after the take: %q", owner)
	}
	if ttl := rdb.PTTL(ctx, DefaultKeyPrefix+key).Val(); ttl < 4*time.Second {
		t.Fatalf("owner TTL after the take %s, want the store's", ttl)
	}
}
