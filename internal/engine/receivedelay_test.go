package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// delayRecorder keeps every receive delay observed.
type delayRecorder struct {
	NopObserver
	mu sync.Mutex
	d  []time.Duration
}

func (o *delayRecorder) ReceiveDelay(_ Transport, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.d = append(o.d, d)
}

func (o *delayRecorder) got() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.d)
}

// TestReceiveDelay: a lone message handed straight to a free callback
// waited for nothing (0, no clock read); a message behind another one's
// callback, or behind the callback lock, is observed with the time it
// waited; and messages queued before OnMessage with the time since they
// arrived.
func TestReceiveDelay(t *testing.T) {
	const wait = 2 * time.Millisecond
	// spin makes a callback last at least wait: a duration to measure,
	// not a synchronisation.
	spin := func() {
		for start := time.Now(); time.Since(start) < wait; {
		}
	}
	ctx := context.Background()

	t.Run("lone", func(t *testing.T) {
		obs := &delayRecorder{}
		s, _, _ := testRegistry(Options{Observer: obs}).GetOrCreate("lone", WebSocket, func() Request { return Request{} })
		s.OnMessage(func(string) {})
		for range 3 {
			if err := s.Deliver(ctx, []string{"m"}); err != nil {
				t.Fatal(err)
			}
		}
		if got := obs.got(); !slices.Equal(got, []time.Duration{0, 0, 0}) {
			t.Fatalf("delays %v, want three 0s", got)
		}
	})

	t.Run("behindAnother", func(t *testing.T) {
		obs := &delayRecorder{}
		s, _, _ := testRegistry(Options{Observer: obs}).GetOrCreate("two", WebSocket, func() Request { return Request{} })
		s.OnMessage(func(m string) {
			if m == "slow" {
				spin()
			}
		})
		if err := s.Deliver(ctx, []string{"slow", "next"}); err != nil {
			t.Fatal(err)
		}
		got := obs.got()
		if len(got) != 2 || got[1] < wait {
			t.Fatalf("delays %v, want the second at least %v", got, wait)
		}
	})

	t.Run("behindTheLock", func(t *testing.T) {
		obs := &delayRecorder{}
		s, _, _ := testRegistry(Options{Observer: obs}).GetOrCreate("lock", WebSocket, func() Request { return Request{} })
		started, release := make(chan struct{}), make(chan struct{})
		s.OnMessage(func(m string) {
			if m == "first" {
				close(started)
				<-release
			}
		})
		first := make(chan error, 1)
		go func() { first <- s.Deliver(ctx, []string{"first"}) }()
		<-started
		second := make(chan error, 1)
		go func() { second <- s.Deliver(ctx, []string{"second"}) }()
		// The second Deliver may not have reached the lock yet when the
		// first lets go: then it waited less, and rightly says so. It
		// reaches it within the spin almost always; the bound below
		// holds either way.
		spin()
		close(release)
		for _, c := range []chan error{first, second} {
			select {
			case err := <-c:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Deliver did not return")
			}
		}
		got := obs.got()
		if len(got) != 2 || got[0] != 0 {
			t.Fatalf("delays %v, want 0 for the first and one for the second", got)
		}
		t.Logf("second message's delay behind the lock: %v (spun %v)", got[1], wait)
	})

	t.Run("queuedBeforeOnMessage", func(t *testing.T) {
		obs := &delayRecorder{}
		s, _, _ := testRegistry(Options{Observer: obs}).GetOrCreate("queued", WebSocket, func() Request { return Request{} })
		if err := s.Deliver(ctx, []string{"early"}); err != nil {
			t.Fatal(err)
		}
		spin()
		s.OnMessage(func(string) {})
		if got := obs.got(); len(got) != 1 || got[0] < wait {
			t.Fatalf("delays %v, want one of at least %v", got, wait)
		}
	})
}
