package hub_test

import (
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
