package hub

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestJoinLeaveStress: clients join and leave channels together, half of
// them giving up at once (their session ended), while the node's broker
// subscription is being made (a Redis round trip). No race, and nothing
// is left: no channel state, no address count, no broker subscription.
func TestJoinLeaveStress(t *testing.T) {
	rs := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1, DialTimeout: time.Second})
	b, err := NewRedisBroker(rdb, RedisBrokerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	defer b.Close()
	h := New(Options{Broker: b})
	for round := range 40 {
		ch := "stress." + strconv.Itoa(round)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &client{addr: "10.0.0." + strconv.Itoa(i%3), subs: map[string]*sub{}}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if i%2 == 1 {
					cancel()
				}
				if _, err := h.join(ctx, c, ch); err == nil {
					h.leave(c, ch)
				}
			}()
		}
		wg.Wait()
	}
	h.subscribing.Wait()
	h.mu.Lock()
	channels, addrs := len(h.channels), len(h.perAddr)
	h.mu.Unlock()
	b.mu.RLock()
	subs := len(b.chans)
	b.mu.RUnlock()
	if channels != 0 || addrs != 0 || subs != 0 {
		t.Fatalf("left: %d channel states, %d address counts, %d broker subscriptions", channels, addrs, subs)
	}
}
