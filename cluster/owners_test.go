package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockjsd/sockjsd/transport"
)

var _ transport.Owners = (*Owners)(nil)
var _ transport.ForwardObserver = (*Metrics)(nil)

func TestOwners(t *testing.T) {
	rdb := startRedis(t)
	ctx := context.Background()
	o := NewOwners(rdb, Options{TTL: 5 * time.Second})
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
	o := NewOwners(rdb, Options{TTL: time.Minute})
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
	if err := o.Keep(ctx, keys, "http://a"); err != nil {
		t.Fatal(err)
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
	if n := rdb.DBSize(ctx).Val(); n != 1 {
		t.Fatalf("%d keys left after Release, want b's only", n)
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
