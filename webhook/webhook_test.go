package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for range 1000 {
		id := webhook.NewID()
		if !hex32.MatchString(id) || seen[id] {
			t.Fatalf("NewID() = %q: want 32 new hex digits", id)
		}
		seen[id] = true
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://"} {
		if _, err := webhook.New(webhook.Options{URL: u, Logger: quiet}); err == nil {
			t.Errorf("New(URL %q): no error", u)
		}
	}
}

// Every event arrives, signed, and in order per user, though the receiver
// fails a third of the POSTs at random: a receiver deduplicating by id
// sees each event once, in the order it was enqueued for its user.
func TestOrderedUnderFailures(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newReceiver(t)
			r.status = flaky()
			c := newCounts()
			o := fast(r.url())
			o.Observer = c
			n := start(t, k.opts(t, o))
			const users, perUser = 40, 25
			ids := enqueueUsers(t, n, users, perUser)
			r.waitAll(30*time.Second, ids)
			checkOrder(t, r.firsts(), users, perUser)
			if got := c.get(func(c *counts) int { return c.retried }); got == 0 {
				t.Error("no retry counted")
			}
			if got := c.get(func(c *counts) int { return c.outcomes["status"] }); got == 0 {
				t.Error("no failed POST counted")
			}
		})
	}
}

// The receiver is down (connections refused) for 2s: every event is
// retried until it is back, then arrives in order.
func TestReceiverDown(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newReceiver(t)
			r.down()
			c := newCounts()
			o := fast(r.url())
			o.Observer = c
			n := start(t, k.opts(t, o))
			const users, perUser = 10, 10
			ids := enqueueUsers(t, n, users, perUser)
			upAt := time.Now().Add(2 * time.Second)
			deadline := time.NewTimer(2 * time.Second) // the outage itself, not a synchronisation
			<-deadline.C
			if got := c.get(func(c *counts) int { return c.outcomes["unreachable"] }); got == 0 {
				t.Error("no refused POST counted while down")
			}
			r.up()
			r.waitAll(10*time.Second, ids)
			checkOrder(t, r.firsts(), users, perUser)
			t.Logf("all delivered %v after the receiver came back", time.Since(upAt).Round(time.Millisecond))
		})
	}
}

// An event not delivered within RetryFor is dropped and counted, and the
// next one of its user goes.
func TestDroppedAfterRetryFor(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newReceiver(t)
			r.status = func(e webhook.Event) int {
				if e.Code == 0 {
					return http.StatusInternalServerError
				}
				return 0
			}
			c := newCounts()
			var logs testenv.Buffer
			o := fast(r.url())
			o.Observer, o.RetryFor = c, 200*time.Millisecond
			o.Logger = slogTo(&logs)
			n := start(t, k.opts(t, o))
			ids := enqueueUsers(t, n, 1, 3)
			r.waitAll(10*time.Second, ids[1:])
			if got := r.firsts(); len(got) != 2 || got[0].Code != 1 || got[1].Code != 2 {
				t.Fatalf("delivered %+v, want events 1 and 2", got)
			}
			if got := c.get(func(c *counts) int { return c.dropped[webhook.DropExpired] }); got != 1 {
				t.Errorf("dropped expired = %d, want 1", got)
			}
			if got := strings.Count(logs.String(), "event dropped"); got != 1 {
				t.Errorf("%d drop log lines, want 1:\n%s", got, logs.String())
			}
		})
	}
}

// A full queue refuses with ErrQueueFull, counts each refusal, logs once
// per episode, and takes events again once it drained.
func TestQueueFull(t *testing.T) {
	for _, tc := range []struct {
		kind kind
		set  func(*webhook.Options)
	}{
		// Each event is ~130 bytes of JSON: room for 3.
		{memoryKind, func(o *webhook.Options) { o.MaxQueueBytes = 400 }},
		{redisKind, func(o *webhook.Options) { o.MaxQueueLen = 3 }},
	} {
		t.Run(tc.kind.name, func(t *testing.T) {
			r := newReceiver(t)
			r.holdAll()
			c := newCounts()
			var logs testenv.Buffer
			o := fast(r.url())
			o.Observer, o.Logger = c, slogTo(&logs)
			tc.set(&o)
			n := start(t, tc.kind.opts(t, o))
			ctx := context.Background()
			var ids []string
			for i := range 3 {
				e := webhook.Event{ID: webhook.NewID(), Type: webhook.UserOnline, User: "alice", Code: i}
				if err := n.Enqueue(ctx, e); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				ids = append(ids, e.ID)
			}
			for range 2 {
				if err := n.Enqueue(ctx, webhook.Event{Type: webhook.UserOnline, User: "alice"}); !errors.Is(err, webhook.ErrQueueFull) {
					t.Fatalf("Enqueue on a full queue: %v, want ErrQueueFull", err)
				}
			}
			if got := c.get(func(c *counts) int { return c.full }); got != 2 {
				t.Errorf("queue full counted %d times, want 2", got)
			}
			if got := strings.Count(logs.String(), "queue"+" partition full") + strings.Count(logs.String(), "memory queue full"); got != 1 {
				t.Errorf("%d queue full log lines, want 1:\n%s", got, logs.String())
			}
			r.release()
			r.waitAll(10*time.Second, ids)
			e := webhook.Event{ID: webhook.NewID(), Type: webhook.UserOffline, User: "alice", Code: 3}
			if err := n.Enqueue(ctx, e); err != nil {
				t.Fatalf("after draining: %v", err)
			}
			r.waitAll(10*time.Second, []string{e.ID})
			checkOrder(t, r.firsts(), 1, 4)
		})
	}
}

// Shutdown returns when its context ends though a POST hangs; in memory
// the events left are logged as lost; in Redis they stay queued and the
// leases are released at once, so that another node delivers them
// without waiting for LeaseTTL.
func TestShutdownBounded(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newReceiver(t)
			r.holdAll()
			var logs testenv.Buffer
			o := fast(r.url())
			o.Logger = slogTo(&logs)
			o.LeaseTTL = time.Minute // a takeover within the test proves the release
			o = k.opts(t, o)
			n, err := webhook.New(o)
			if err != nil {
				t.Fatal(err)
			}
			ids := enqueueUsers(t, n, 5, 2)
			r.waitFor(5*time.Second, "no POST in flight", func() bool { return r.inFlight > 0 })
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			t0 := time.Now()
			if err := n.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("Shutdown took %v", d)
			}
			if o.Redis == nil {
				if err := n.Enqueue(context.Background(), webhook.Event{Type: webhook.UserOnline}); err == nil {
					t.Error("memory Enqueue after Shutdown: no error")
				}
				if !strings.Contains(logs.String(), "count=10") {
					t.Errorf("no count of lost events logged:\n%s", logs.String())
				}
				return
			}
			r.release()
			start(t, o) // a second node
			r.waitAll(10*time.Second, ids)
			checkOrder(t, r.firsts(), 5, 2)
		})
	}
}

// A 2xx answer that is not JSON is a delivery, and a signed POST carries
// exactly the event, with its id in the header (the receiver checks).
func TestAnswerBodyIgnored(t *testing.T) {
	r := newReceiver(t)
	r.status = func(webhook.Event) int { return textOK }
	c := newCounts()
	o := fast(r.url())
	o.Observer = c
	n := start(t, o)
	e := webhook.Event{Type: webhook.SessionClosed, Session: "abc", Code: 3000, Reason: "Go away!", Transport: "websocket"}
	if err := n.Enqueue(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	r.waitFor(5*time.Second, "no delivery", func() bool { return len(r.got) == 1 })
	got := r.firsts()[0]
	if got.ID == "" || got.Time.IsZero() || got.Reason != "Go away!" || got.Code != 3000 {
		t.Errorf("delivered %+v", got)
	}
	if c.get(func(c *counts) int { return c.retried }) != 0 {
		t.Error("a non-JSON 2xx was retried")
	}
}

// usersPerPartition returns, for each partition, n users that fall in it.
func usersPerPartition(n int) [webhook.Partitions][]string {
	var out [webhook.Partitions][]string
	for i, filled := 0, 0; filled < webhook.Partitions; i++ {
		u := "user" + strconv.Itoa(i)
		p := webhook.Partition(webhook.Event{User: u}.OrderKey())
		if len(out[p]) < n {
			out[p] = append(out[p], u)
			if len(out[p]) == n {
				filled++
			}
		}
	}
	return out
}

// All partitions are in flight at once, but never two events of one
// partition, though two users share each.
func TestOnePOSTPerPartition(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newReceiver(t)
			r.holdAll()
			n := start(t, k.opts(t, fast(r.url())))
			var ids []string
			for _, us := range usersPerPartition(2) {
				for _, u := range us {
					for i := range 2 {
						e := webhook.Event{ID: webhook.NewID(), Type: webhook.UserOnline, User: u, Code: i}
						if err := n.Enqueue(context.Background(), e); err != nil {
							t.Fatal(err)
						}
						ids = append(ids, e.ID)
					}
				}
			}
			r.waitFor(10*time.Second, "not every partition in flight", func() bool { return r.inFlight == webhook.Partitions })
			r.release()
			r.waitAll(20*time.Second, ids)
			r.mu.Lock()
			maxIn := r.maxIn
			r.mu.Unlock()
			if maxIn != webhook.Partitions {
				t.Errorf("at most %d POSTs in flight, want %d (one per partition)", maxIn, webhook.Partitions)
			}
			checkOrder(t, r.firsts(), 2*webhook.Partitions, 2)
		})
	}
}

func TestQueueKind(t *testing.T) {
	for _, tc := range []struct {
		kind kind
		want string
	}{
		{memoryKind, "*webhook.MemoryQueue"},
		{redisKind, "*webhook.RedisQueue"},
	} {
		t.Run(tc.kind.name, func(t *testing.T) {
			r := newReceiver(t)
			r.holdAll()
			defer r.release() // before the Shutdown in start's cleanup
			n := start(t, tc.kind.opts(t, fast(r.url())))
			if got := fmt.Sprintf("%T", n.Queue()); got != tc.want {
				t.Errorf("Queue() is a %s, want %s", got, tc.want)
			}
			if err := n.Enqueue(context.Background(), webhook.Event{Type: webhook.UserOnline, User: "a"}); err != nil {
				t.Fatal(err)
			}
			r.waitFor(5*time.Second, "no POST", func() bool { return r.inFlight == 1 })
			if tc.kind.name == "memory" && n.Len() != 1 {
				t.Errorf("Len() = %d with the head in flight, want 1", n.Len())
			}
		})
	}
}
