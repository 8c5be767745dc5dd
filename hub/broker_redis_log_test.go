package hub_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestRedisBrokerFirstHeartbeatFailureLogged: a broker whose heartbeats
// never get through (here Redis refuses connections; on Redis Cluster it
// was a CROSSSLOT transaction) says so, although Up() was never true.
func TestRedisBrokerFirstHeartbeatFailureLogged(t *testing.T) {
	var out testenv.Buffer
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{PresenceTTL: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "hub: redis heartbeat failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat failure logged within 10s; log:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the broker's log, bounded by the deadline
	}
	if b.Up() {
		t.Fatal("Up() with Redis refusing connections")
	}
}

// TestRedisBrokerPingHeartbeat: a Redis that answers PING but refuses
// writes (here out of memory under maxmemory; a replica after a failover
// answers READONLY the same way) fails the heartbeat, and Ping, which
// /readyz calls, says so until a heartbeat gets through again.
func TestRedisBrokerPingHeartbeat(t *testing.T) {
	rs := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{PresenceTTL: 300 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitUp(t, b, true)
	b.AddPresence("news", 1)
	ctx := context.Background()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping with Redis up: %v", err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	pingUntil := func(what string, ok func(error) bool) error {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := b.Ping(ctx)
			if ok(err) {
				return err
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s within 10s: Ping says %v", what, err)
			}
			time.Sleep(20 * time.Millisecond) // polling the heartbeat's outcome, bounded by the deadline
		}
	}
	err = pingUntil("Ping failing on the heartbeat", func(err error) bool { return err != nil })
	if !strings.Contains(err.Error(), "heartbeat failing") {
		t.Fatalf("Ping with writes refused: %v, want the heartbeat's error", err)
	}
	if rdb.Ping(ctx).Err() != nil {
		t.Fatal("PING itself failed: the test no longer tells the heartbeat from the round trip")
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	pingUntil("Ping ready again", func(err error) bool { return err == nil })
}
