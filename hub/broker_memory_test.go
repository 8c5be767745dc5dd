package hub

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// fakeClock is a settable clock for history expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestMemoryBrokerBoundedByNames: 500,000 publishes to distinct names and
// 300,000 subscribe/unsubscribe pairs leave the heap bounded: the channels
// nobody reads are forgotten, and history is held within its byte budget.
func TestMemoryBrokerBoundedByNames(t *testing.T) {
	ctx := context.Background()
	data := json.RawMessage(`{"text":"junk"}`)
	const budget = 8 << 20
	for _, tc := range []struct {
		name string
		hist HistoryOptions
	}{
		{"no history", HistoryOptions{Size: -1}},
		{"history", HistoryOptions{}}, // default size and TTL: only the byte budget bounds it
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewMemoryBroker(MemoryBrokerOptions{History: tc.hist, MaxHistoryBytes: budget})
			defer b.Close()
			before := testenv.HeapAfterGC()
			for i := 0; i < 500_000; i++ {
				if _, err := b.Publish(ctx, "chat."+strconv.Itoa(i), data); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 300_000; i++ {
				ch := "sub." + strconv.Itoa(i)
				cancel, err := b.Subscribe(ctx, ch, func(Message) {})
				if err != nil {
					t.Fatal(err)
				}
				b.AddPresence(ch, 1)
				b.AddPresence(ch, -1)
				cancel()
			}
			after := testenv.HeapAfterGC()
			n, bytes := b.stats()
			grown := int64(after) - int64(before)
			t.Logf("%d channel states kept, %d history bytes accounted, heap grew %.1f MB", n, bytes, float64(grown)/1e6)
			if bytes > budget {
				t.Fatalf("history bytes %d over the budget %d", bytes, budget)
			}
			if tc.hist.Size < 0 && n != 0 {
				t.Fatalf("%d channel states kept with no history and no subscriber", n)
			}
			// The budget plus the maps' own slack; today's code kept 365 MB.
			if limit := int64(3*budget + 16<<20); grown > limit {
				t.Fatalf("heap grew %d bytes, over %d", grown, limit)
			}
			if p, _ := b.Channels(ctx); len(p) != 0 {
				t.Fatalf("presence kept %d channels", len(p))
			}
		})
	}
}

// TestMemoryBrokerHistoryExpires: a channel without subscribers keeps its
// history until the TTL, then is forgotten; one with subscribers keeps its
// sequence (and epoch) but not the expired messages.
func TestMemoryBrokerHistoryExpires(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	b := NewMemoryBroker(MemoryBrokerOptions{History: HistoryOptions{Size: 3, TTL: time.Minute}, Now: clk.Now})
	defer b.Close()
	for i := 0; i < 5; i++ {
		_, _ = b.Publish(ctx, "idle", json.RawMessage(strconv.Itoa(i)))
		_, _ = b.Publish(ctx, "busy", json.RawMessage(strconv.Itoa(i)))
	}
	cancel, _ := b.Subscribe(ctx, "busy", func(Message) {})
	defer cancel()
	h, _ := b.History(ctx, "idle", 1, 10)
	if h.Complete || h.Seq != 5 {
		t.Fatalf("since 1 with 3 kept of 5: %+v", h)
	}
	h, _ = b.History(ctx, "idle", 2, 10)
	if !h.Complete || len(h.Messages) != 3 || h.Messages[0].Seq != 3 || string(h.Messages[2].Data) != "4" {
		t.Fatalf("since 2: %+v", h)
	}
	if h, _ = b.History(ctx, "idle", 3, 1); len(h.Messages) != 1 || h.Messages[0].Seq != 4 {
		t.Fatalf("limit 1: %+v", h)
	}
	if h, _ = b.History(ctx, "idle", 6, 10); h.Complete {
		t.Fatalf("since past the last seq must not be complete: %+v", h)
	}
	busy, _ := b.Position(ctx, "busy")
	clk.Add(time.Minute + time.Second)
	b.expire()
	if n, bytes := b.stats(); n != 1 || bytes != 0 {
		t.Fatalf("after the TTL: %d channels, %d bytes; want only the subscribed one, no history", n, bytes)
	}
	if p, _ := b.Position(ctx, "busy"); p != busy {
		t.Fatalf("a subscribed channel's position changed: %+v, was %+v", p, busy)
	}
	if h, _ = b.History(ctx, "busy", 4, 10); h.Complete {
		t.Fatalf("expired history cannot recover: %+v", h)
	}
	if h, _ = b.History(ctx, "busy", 5, 10); !h.Complete || len(h.Messages) != 0 {
		t.Fatalf("up to date: %+v", h)
	}
	// The idle channel starts a new epoch.
	_, _ = b.Publish(ctx, "idle", json.RawMessage(`"again"`))
	h, _ = b.History(ctx, "idle", 0, 10)
	if h.Seq != 1 || h.Epoch == "" || !h.Complete {
		t.Fatalf("a forgotten channel restarts: %+v", h)
	}
}
