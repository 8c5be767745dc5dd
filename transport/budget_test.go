package transport

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// waitQueued waits (5 s at most) until b has n waiters.
func waitQueued(t *testing.T, b *BodyBudget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		k := b.waitersForTest()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters after 5s, want %d", k, n)
		}
		time.Sleep(time.Millisecond) // polling the queue, bounded by the deadline
	}
}

// TestBodyBudgetGrantsWhatFits: bytes given back go to the waiters they
// are enough for, in arrival order, and only those return; a waiter too
// large to fit does not hold up a smaller one behind it.
func TestBodyBudgetGrantsWhatFits(t *testing.T) {
	b := NewBodyBudget(100)
	held, ok := b.tryAcquire(100)
	if !ok || held != 100 {
		t.Fatalf("tryAcquire(100) of an empty budget: %d %v", held, ok)
	}
	granted := make(chan int, 10)
	start := func(id int, n int64) {
		go func() {
			if got, ok := b.acquire(context.Background(), n); ok && got == n {
				granted <- id
			}
		}()
	}
	// Three of 60 in a row, then one of 30.
	for id := range 3 {
		start(id, 60)
		waitQueued(t, b, id+1)
	}
	start(3, 30)
	waitQueued(t, b, 4)
	// expect: exactly these waiters (granted by one release, so in any
	// order) return, and no other.
	expect := func(ids ...int) {
		t.Helper()
		want := map[int]bool{}
		for _, id := range ids {
			want[id] = true
		}
		for range ids {
			select {
			case id := <-granted:
				if !want[id] {
					t.Fatalf("waiter %d got its bytes, want %v", id, ids)
				}
				delete(want, id)
			case <-time.After(5 * time.Second):
				t.Fatalf("waiters %v not granted within 5s", want)
			}
		}
		select {
		case id := <-granted:
			t.Fatalf("waiter %d granted too, with %d bytes in use", id, b.InUse())
		default:
		}
	}
	// 100 free: the first 60, then 40 left, which the second 60 does not
	// fit and the 30 behind it does.
	b.release(100)
	expect(0, 3)
	if got := b.InUse(); got != 90 {
		t.Fatalf("in use %d, want 90", got)
	}
	waitQueued(t, b, 2)
	b.release(30) // 40 free: not enough for a 60
	waitQueued(t, b, 2)
	b.release(60) // 100 free: the next 60 in order
	expect(1)
	b.release(60)
	expect(2)
	b.release(60)
	if got := b.InUse(); got != 0 {
		t.Fatalf("in use %d at the end, want 0", got)
	}
}

// TestBodyBudgetWaitEnds: a waiter whose context ends leaves the queue
// with nothing reserved, and bytes given back later go to the next one.
func TestBodyBudgetWaitEnds(t *testing.T) {
	b := NewBodyBudget(100)
	if _, ok := b.tryAcquire(100); !ok {
		t.Fatal("tryAcquire of an empty budget failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got, ok := b.acquire(ctx, 50); ok || got != 0 {
		t.Fatalf("acquire past its deadline: %d %v, want 0 false", got, ok)
	}
	waitQueued(t, b, 0)
	done := make(chan bool, 1)
	go func() {
		_, ok := b.acquire(context.Background(), 50)
		done <- ok
	}()
	waitQueued(t, b, 1)
	b.release(100)
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("second waiter refused")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second waiter not granted within 5s")
	}
	if got := b.InUse(); got != 50 {
		t.Fatalf("in use %d, want 50", got)
	}
}

// TestBodyBudgetConcurrent: many goroutines acquiring and releasing sizes
// up to the whole budget, some giving up on a deadline: the bytes in use
// never pass the budget, and end at 0 with nobody left waiting.
func TestBodyBudgetConcurrent(t *testing.T) {
	const max = 1000
	b := NewBodyBudget(max)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				n := int64(1 + r.IntN(max+200)) // some above the budget: capped to it
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(3))*time.Millisecond)
				got, ok := b.acquire(ctx, n)
				cancel()
				if u := b.InUse(); u > max {
					t.Errorf("in use %d, above the budget %d", u, max)
				}
				if ok {
					if got != min(n, max) {
						t.Errorf("acquire(%d) reserved %d", n, got)
					}
					b.release(got)
				}
			}
		}()
	}
	wg.Wait()
	if got := b.InUse(); got != 0 {
		t.Fatalf("in use %d at the end, want 0", got)
	}
	waitQueued(t, b, 0)
}

// BenchmarkBodyBudgetContended: 1,000 goroutines sharing a budget that
// fits 10 of them at once, each acquiring and releasing in a loop (a
// flood of large messages, every reader back for more at once): the cost
// of an acquire and release while many wait, and the longest any one
// acquire waited (max-wait-ms: how unfair the budget is to a waiter).
func BenchmarkBodyBudgetContended(b *testing.B) {
	budget := NewBodyBudget(10 << 10)
	const goroutines = 1000
	per := b.N/goroutines + 1
	var mu sync.Mutex
	var longest time.Duration
	b.ResetTimer()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine time.Duration
			for range per {
				start := time.Now()
				got, ok := budget.acquire(context.Background(), 1<<10)
				mine = max(mine, time.Since(start))
				if ok {
					budget.release(got)
				}
			}
			mu.Lock()
			longest = max(longest, mine)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(longest.Microseconds())/1000, "max-wait-ms")
}
