package directory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/webhook"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// events is what a recorder saw, in arrival order (per partition, the
// enqueue order), with a signal for waiters.
type events struct {
	mu     sync.Mutex
	list   []webhook.Event
	errs   []string
	notify chan struct{}
}

func newEvents() *events { return &events{notify: make(chan struct{})} }

func (s *events) add(e webhook.Event) {
	s.mu.Lock()
	s.list = append(s.list, e)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func (s *events) fail(msg string) {
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
}

func (s *events) snapshot() []webhook.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]webhook.Event(nil), s.list...)
}

// waitFor waits until ok holds for the events seen, failing the test
// after within.
func (s *events) waitFor(t *testing.T, within time.Duration, what string, ok func([]webhook.Event) bool) []webhook.Event {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		list, ch := append([]webhook.Event(nil), s.list...), s.notify
		s.mu.Unlock()
		if ok(list) {
			return list
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; events:\n%s", within, what, dump(list))
		}
	}
}

func (s *events) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.errs {
		t.Error(e)
	}
}

func dump(list []webhook.Event) string {
	var b strings.Builder
	for _, e := range list {
		fmt.Fprintf(&b, "  %s %s user=%s code=%d %q node=%s\n", e.Type, e.Session, e.User, e.Code, e.Reason, e.Node)
	}
	return b.String()
}

// count is how many events of typ ok accepts.
func count(list []webhook.Event, typ string, ok func(webhook.Event) bool) int {
	n := 0
	for _, e := range list {
		if e.Type == typ && (ok == nil || ok(e)) {
			n++
		}
	}
	return n
}

// memQueue is a webhook.Queue recording into events.
type memQueue struct{ *events }

func (q memQueue) Enqueue(_ context.Context, e webhook.Event) error {
	q.add(e)
	return nil
}

// redisRecorder pops every partition's queue under prefix, as the webhook
// delivery would, checking each event's JSON and partition.
type redisRecorder struct {
	*events
	rdb    redis.UniversalClient
	prefix string
	keys   []string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex // one popper at a time: drain and the loop
}

func newRedisRecorder(t *testing.T, addr, prefix string) *redisRecorder {
	t.Helper()
	return newRedisRecorderOn(t, redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second}), prefix)
}

// newRedisRecorderOn records from rdb (a Redis Cluster's client, say),
// closing it when the test ends.
func newRedisRecorderOn(t *testing.T, rdb redis.UniversalClient, prefix string) *redisRecorder {
	t.Helper()
	r := &redisRecorder{
		events: newEvents(), rdb: rdb,
		prefix: prefix, stop: make(chan struct{}), done: make(chan struct{}),
	}
	for p := range webhook.Partitions {
		r.keys = append(r.keys, webhook.RedisQueueKey(prefix, p))
	}
	go r.loop()
	t.Cleanup(func() {
		close(r.stop)
		<-r.done
		r.rdb.Close()
		r.check(t)
	})
	return r
}

func (r *redisRecorder) loop() {
	defer close(r.done)
	ps := r.rdb.Subscribe(context.Background(), webhook.RedisWakeChannel(r.prefix))
	defer ps.Close()
	wake := ps.Channel()
	// The wake channel names the partition to pop; a full scan now and
	// then is the fallback a real consumer has too (and covers Redis
	// restarts, which lose the subscription for a while).
	scan := time.NewTicker(200 * time.Millisecond)
	defer scan.Stop()
	for {
		select {
		case <-r.stop:
			return
		case m := <-wake:
			if p, err := strconv.Atoi(m.Payload); err == nil && p >= 0 && p < webhook.Partitions {
				r.pop(r.keys[p])
			} else {
				r.fail("wake message " + m.Payload)
			}
		case <-scan.C:
			for _, k := range r.keys {
				r.pop(k)
			}
		}
	}
}

// pop records what key holds (LPOP: an event is never lost to a
// timed-out blocking pop); errors (Redis down) leave it for later.
func (r *redisRecorder) pop(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		v, err := r.rdb.LPop(ctx, key).Result()
		if err != nil {
			return
		}
		r.got(key, v)
	}
}

// drain pops whatever the queues still hold: after it, every event
// enqueued before the call is recorded.
func (r *redisRecorder) drain(t *testing.T) {
	t.Helper()
	for _, k := range r.keys {
		r.pop(k)
	}
}

// got checks one raw event: it decodes into webhook.Event with no unknown
// field, encodes back to the same fields (so the Lua JSON omits what Go's
// omitempty omits, and nothing else), and sits in its order key's
// partition.
func (r *redisRecorder) got(key, raw string) {
	var e webhook.Event
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		r.fail(fmt.Sprintf("event %s: %v", raw, err))
		return
	}
	var in, back map[string]any
	_ = json.Unmarshal([]byte(raw), &in)
	b, _ := json.Marshal(e)
	_ = json.Unmarshal(b, &back)
	delete(in, "time")
	delete(back, "time")
	if !reflect.DeepEqual(in, back) {
		r.fail(fmt.Sprintf("event %s does not round-trip: Go encodes %s", raw, b))
	}
	if len(e.ID) != 32 {
		r.fail(fmt.Sprintf("event id %q is not 16 bytes of hex", e.ID))
	}
	if d := time.Since(e.Time); d < -time.Minute || d > time.Minute {
		r.fail(fmt.Sprintf("event time %v is off by %v", e.Time, d))
	}
	if want := webhook.RedisQueueKey(r.prefix, webhook.Partition(e.OrderKey())); key != want {
		r.fail(fmt.Sprintf("event %s in %s, want %s", raw, key, want))
	}
	r.add(e)
}

// byKey groups events by order key, keeping their order.
func byKey(list []webhook.Event) map[string][]webhook.Event {
	out := map[string][]webhook.Event{}
	for _, e := range list {
		out[e.OrderKey()] = append(out[e.OrderKey()], e)
	}
	return out
}

// unique fails when an event id repeats.
func unique(t *testing.T, list []webhook.Event) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range list {
		if seen[e.ID] {
			t.Errorf("event id %s twice", e.ID)
		}
		seen[e.ID] = true
	}
}
