package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

var secret = []byte("webhook-test-secret")

var quiet = slog.New(slog.DiscardHandler)

// textOK, as a receiver's status, answers 200 with a body that is not
// JSON: still a delivery.
const textOK = -1

// receiver is a webhook endpoint on 127.0.0.1: it checks every POST's
// signature and event id header, and records what it answered 2xx to.
type receiver struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	srv      *http.Server
	got      []webhook.Event // 2xx answers, in order, repeats included
	seen     map[string]bool
	problems []string
	inFlight int
	maxIn    int           // the most inFlight was
	changed  chan struct{} // closed and replaced on every change
	// status answers a request (0: 200 with a JSON body); set before
	// events flow or under mu.
	status func(e webhook.Event) int
	hold   chan struct{} // non-nil: requests wait until it is closed
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	// Below the ephemeral range (testenv.FreePort): while the receiver
	// is down (TestReceiverDown) the nodes' retries dial its port many
	// times a second, and one of those dials, or any other outgoing
	// connection, could take an ephemeral port (a dial to a closed
	// loopback port can even connect to itself), so that it could not
	// listen again: seen as "bind: address already in use".
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: ln.Addr().String(), seen: map[string]bool{}, changed: make(chan struct{})}
	r.serve(ln)
	t.Cleanup(func() {
		r.mu.Lock()
		if r.hold != nil {
			close(r.hold)
			r.hold = nil
		}
		r.mu.Unlock()
		r.down()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Error(p)
		}
	})
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle)}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and the connections: POSTs are refused.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens again on the same address.
func (r *receiver) up() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(ln)
}

// holdAll makes requests wait until release (or their context ends).
func (r *receiver) holdAll() {
	r.mu.Lock()
	r.hold = make(chan struct{})
	r.mu.Unlock()
}

func (r *receiver) release() {
	r.mu.Lock()
	if r.hold != nil {
		close(r.hold)
		r.hold = nil
	}
	r.mu.Unlock()
}

func (r *receiver) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *receiver) problem(s string) {
	r.mu.Lock()
	r.problems = append(r.problems, s)
	r.mu.Unlock()
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if err := sign.Verify(secret, req.Header.Get(sign.Header), body, time.Now(), 0); err != nil {
		r.problem("signature: " + err.Error())
	}
	var e webhook.Event
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || dec.More() {
		r.problem("body is not one Event: " + string(body))
	}
	if got := req.Header.Get(webhook.EventIDHeader); got != e.ID || e.ID == "" {
		r.problem("event id header " + got + " for body id " + e.ID)
	}
	if req.URL.Path != "/hook" {
		r.problem("posted to " + req.URL.Path)
	}
	r.mu.Lock()
	hold, status := r.hold, r.status
	r.inFlight++
	r.maxIn = max(r.maxIn, r.inFlight)
	r.notify()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.notify()
		r.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-req.Context().Done():
			return
		}
	}
	code := 0
	if status != nil {
		code = status(e)
	}
	switch {
	case code == 0:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	case code == textOK:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "thanks")
	default:
		w.WriteHeader(code)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, e)
	r.seen[e.ID] = true
	r.notify()
	r.mu.Unlock()
}

// waitFor waits until cond (called under the receiver's lock) holds, or
// fails the test after d.
func (r *receiver) waitFor(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			r.t.Fatalf("after %v: %s", d, what)
		}
	}
}

// waitAll waits until every id was answered 2xx.
func (r *receiver) waitAll(d time.Duration, ids []string) {
	r.t.Helper()
	r.waitFor(d, "not every event delivered", func() bool {
		for _, id := range ids {
			if !r.seen[id] {
				return false
			}
		}
		return true
	})
}

// firsts is the deliveries with repeats dropped, as a receiver that
// deduplicates by id sees them.
func (r *receiver) firsts() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []webhook.Event
	for _, e := range r.got {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

// checkOrder fails unless, per user, the first deliveries carry Code 0,
// 1, 2, ... (the order of Enqueue).
func checkOrder(t *testing.T, evs []webhook.Event, users, perUser int) {
	t.Helper()
	next := map[string]int{}
	for _, e := range evs {
		if e.Code != next[e.User] {
			t.Fatalf("user %s: got event %d, want %d", e.User, e.Code, next[e.User])
		}
		next[e.User]++
	}
	if len(next) != users {
		t.Fatalf("%d users delivered, want %d", len(next), users)
	}
	for u, n := range next {
		if n != perUser {
			t.Fatalf("user %s: %d events, want %d", u, n, perUser)
		}
	}
}

// enqueueUsers enqueues perUser events for each of users users, one
// goroutine per user, and returns the ids.
func enqueueUsers(t *testing.T, q webhook.Queue, users, perUser int) []string {
	t.Helper()
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	errs := make(chan error, users)
	types := []string{webhook.SessionOpened, webhook.UserOnline, webhook.SessionClosed, webhook.UserOffline}
	for u := range users {
		wg.Go(func() {
			for i := range perUser {
				e := webhook.Event{ID: webhook.NewID(), Type: types[i%len(types)], User: "user" + strconv.Itoa(u), Session: "s" + strconv.Itoa(u), Code: i}
				if err := q.Enqueue(context.Background(), e); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids = append(ids, e.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// kind is a queue to run a test against: memory, or Redis.
type kind struct {
	name string
	// opts completes o for this kind; Redis kinds share rs.
	opts func(t *testing.T, o webhook.Options) webhook.Options
}

var memoryKind = kind{"memory", func(_ *testing.T, o webhook.Options) webhook.Options { return o }}

var redisKind = kind{"redis", func(t *testing.T, o webhook.Options) webhook.Options {
	rs := testenv.StartRedis(t)
	o.Redis = newRedisClient(t, rs)
	o.Prefix = "test:"
	return o
}}

var kinds = []kind{memoryKind, redisKind, redisClusterKind}

func newRedisClient(t *testing.T, rs *testenv.Redis) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// fast are options for tests: quick retries and lease takeovers.
func fast(url string) webhook.Options {
	return webhook.Options{
		URL: url, Secret: secret, Timeout: 5 * time.Second,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		LeaseTTL: 600 * time.Millisecond, Poll: 100 * time.Millisecond,
		Logger: quiet,
	}
}

// start starts a Notifier and shuts it down when the test ends.
func start(t *testing.T, o webhook.Options) *webhook.Notifier {
	t.Helper()
	n, err := webhook.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Error(err)
		}
	})
	return n
}

// counts is an Observer for tests.
type counts struct {
	mu       sync.Mutex
	outcomes map[string]int
	retried  int
	dropped  map[string]int
	full     int
	lastLen  int
}

func newCounts() *counts {
	return &counts{outcomes: map[string]int{}, dropped: map[string]int{}}
}

func (c *counts) Delivered(_, outcome string, _ time.Duration) {
	c.mu.Lock()
	c.outcomes[outcome]++
	c.mu.Unlock()
}
func (c *counts) Retried(string) { c.mu.Lock(); c.retried++; c.mu.Unlock() }
func (c *counts) Dropped(_, reason string) {
	c.mu.Lock()
	c.dropped[reason]++
	c.mu.Unlock()
}
func (c *counts) QueueFull()        { c.mu.Lock(); c.full++; c.mu.Unlock() }
func (c *counts) QueueLength(n int) { c.mu.Lock(); c.lastLen = n; c.mu.Unlock() }

func (c *counts) get(f func(c *counts) int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(c)
}

// flaky answers 503 to about a third of the POSTs, and a 2xx that is not
// JSON to a tenth.
func flaky() func(webhook.Event) int {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	return func(webhook.Event) int {
		mu.Lock()
		defer mu.Unlock()
		switch x := rng.IntN(10); {
		case x < 3:
			return http.StatusServiceUnavailable
		case x < 4:
			return textOK
		}
		return 0
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
