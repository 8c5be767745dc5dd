package directory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/webhook"
)

// fullQueue refuses every event.
type fullQueue struct{ n int }

func (q *fullQueue) Enqueue(context.Context, webhook.Event) error {
	q.n++
	return webhook.ErrQueueFull
}

func TestMemoryRules(t *testing.T) {
	ev := newEvents()
	m := directory.NewMemory(directory.MemoryOptions{Events: memQueue{ev}, OfflineDelay: time.Hour, MaxByUser: 2, MaxSessions: 4, Logger: quiet})
	ctx := context.Background()
	e := directory.Entry{ID: "x", User: "u", Node: "a"}
	if err := m.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, e); err != nil {
		t.Fatalf("Add again: %v", err)
	}
	e.Node = "b"
	if err := m.Add(ctx, e); !errors.Is(err, directory.ErrExists) {
		t.Fatalf("Add from another node: %v", err)
	}
	if err := m.Add(ctx, directory.Entry{}); !errors.Is(err, directory.ErrNoID) {
		t.Fatalf("Add without id: %v", err)
	}
	for _, id := range []string{"y", "z", "w"} {
		if err := m.Add(ctx, directory.Entry{ID: id, User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Add(ctx, directory.Entry{ID: "v"}); !errors.Is(err, directory.ErrFull) {
		t.Fatalf("Add past MaxSessions: %v", err)
	}
	if es, err := m.ByUser(ctx, "u"); err != nil || len(es) != 2 {
		t.Fatalf("ByUser = %d entries %v, want 2", len(es), err)
	}
	if got, ok, err := m.Lookup(ctx, "x"); err != nil || !ok || got.Node != "a" || got.Opened.IsZero() {
		t.Fatalf("Lookup = %+v %v %v", got, ok, err)
	}
	if err := m.Remove(ctx, "nope", 1000, ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x", "y", "z", "w"} {
		if err := m.Remove(ctx, id, 1000, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The offline is an hour away; Close sends it at once.
	if n := count(ev.snapshot(), webhook.UserOffline, nil); n != 0 {
		t.Fatalf("%d offline before the delay", n)
	}
	m.Close()
	if n := count(ev.snapshot(), webhook.UserOffline, nil); n != 1 {
		t.Fatalf("%d offline after Close, want 1", n)
	}
	if err := m.Add(ctx, directory.Entry{ID: "x"}); !errors.Is(err, directory.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	unique(t, ev.snapshot())
}

// A full queue costs events, not state changes.
func TestMemoryQueueFull(t *testing.T) {
	q := &fullQueue{}
	m := directory.NewMemory(directory.MemoryOptions{Events: q, Logger: quiet})
	defer m.Close()
	ctx := context.Background()
	if err := m.Add(ctx, directory.Entry{ID: "x", User: "u"}); err != nil {
		t.Fatal(err)
	}
	if q.n != 2 || m.Dropped() != 2 {
		t.Fatalf("%d enqueues, %d dropped; want 2, 2", q.n, m.Dropped())
	}
	if _, ok, _ := m.Lookup(ctx, "x"); !ok {
		t.Fatal("x not found")
	}
}

// Without a queue the directory works for lookups.
func TestMemoryNoEvents(t *testing.T) {
	m := directory.NewMemory(directory.MemoryOptions{})
	defer m.Close()
	ctx := context.Background()
	if err := m.Add(ctx, directory.Entry{ID: "x", User: "u"}); err != nil {
		t.Fatal(err)
	}
	if es, _ := m.ByUser(ctx, "u"); len(es) != 1 {
		t.Fatal(es)
	}
	if err := m.Remove(ctx, "x", 1000, ""); err != nil {
		t.Fatal(err)
	}
}
