package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/session"
)

// recorder collects what a broker subscription delivers.
type recorder struct {
	mu   sync.Mutex
	msgs []hub.Message
	more chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) add(m hub.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// waitSeq waits for a message with seq >= seq and returns all so far.
func (r *recorder) waitSeq(t *testing.T, seq uint64) []hub.Message {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if n := len(r.msgs); n > 0 && r.msgs[n-1].Seq >= seq {
			out := append([]hub.Message(nil), r.msgs...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			last := uint64(0)
			if n := len(r.msgs); n > 0 {
				last = r.msgs[n-1].Seq
			}
			t.Fatalf("waited for seq %d: got %d messages, the last seq %d", seq, len(r.msgs), last)
		}
	}
}

func brokerPublish(t *testing.T, b hub.Broker, channel string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		seq, err := b.Publish(context.Background(), channel, json.RawMessage(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("publish %d got seq %d", i, seq)
		}
	}
}

// TestRedisCatchUpAfterHistoryWrapped: once a channel published more
// than its history size (seq 1 left the stream), a node whose pub/sub
// connection was down while 30 messages were published gets exactly
// those 30 from the stream when it is back, once each, in order.
func TestRedisCatchUpAfterHistoryWrapped(t *testing.T) {
	rs := testenv.StartRedis(t)
	px := startProxy(t, rs.Addr)
	opts := hub.RedisBrokerOptions{History: hub.HistoryOptions{Size: 100, TTL: time.Minute}, PresenceTTL: 900 * time.Millisecond, Logger: quiet}
	sub := newRedisBrokerAt(t, px.Addr, opts)
	pub := newRedisBroker(t, rs, opts)
	rec := newRecorder()
	cancel, err := sub.Subscribe(context.Background(), "news", rec.add)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	brokerPublish(t, pub, "news", 1, 250)
	rec.waitSeq(t, 250)

	// The node loses Redis (pub/sub included) while 30 are published:
	// the stream now holds 181..280.
	px.cut()
	waitUp(t, sub, false)
	brokerPublish(t, pub, "news", 251, 280)
	px.restore()
	waitUp(t, sub, true)
	brokerPublish(t, pub, "news", 281, 281)
	got := rec.waitSeq(t, 281)
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: every seq 1..281 once, in order, expected (last before: %d)", i, m.Seq, got[max(i-1, 0)].Seq)
		}
	}
	if len(got) != 281 {
		t.Fatalf("got %d messages, want 281", len(got))
	}
}

type resetObserver struct {
	mu     sync.Mutex
	resets map[string]int
}

func (o *resetObserver) ObservePingRTT(session.Transport, time.Duration) {}
func (o *resetObserver) SubscriberDropped(session.Transport)             {}
func (o *resetObserver) SubscriberReset(_ session.Transport, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.resets[reason]++
}

func (o *resetObserver) count(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.resets[reason]
}

// TestRedisLostWindowAnnounced: when more was published while a node's
// connection was down than history holds, its subscribers get an explicit
// subscribed with recovered:false and the position before the oldest
// message still held, then every message from there once, in order.
func TestRedisLostWindowAnnounced(t *testing.T) {
	rs := testenv.StartRedis(t)
	px := startProxy(t, rs.Addr)
	opts := hub.RedisBrokerOptions{History: hub.HistoryOptions{Size: 100, TTL: time.Minute}, PresenceTTL: 900 * time.Millisecond, Logger: quiet}
	b := newRedisBrokerAt(t, px.Addr, opts)
	pub := newRedisBroker(t, rs, opts)
	obs := &resetObserver{resets: map[string]int{}}
	nd := startNodeObserved(t, b, obs)
	c := dialHub(t, nd.url+"/hub", client.WebSocket)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed", "seq", "0")
	brokerPublish(t, pub, "news", 1, 250)
	c.expectSeqs("news", 1, 250)

	px.cut()
	waitUp(t, b, false)
	brokerPublish(t, pub, "news", 251, 400) // 150 while away; history keeps 301..400
	px.restore()
	waitUp(t, b, true)
	brokerPublish(t, pub, "news", 401, 401)
	p, err := pub.Position(context.Background(), "news")
	if err != nil {
		t.Fatal(err)
	}
	// The catch-up reads history when Redis confirms the resubscription,
	// which may come before or after publish 401: history (100) then
	// starts at 301 or 302.
	v := c.expect("subscribed", "recovered", "false", "epoch", strconv.Quote(p.Epoch))
	from := uint64(v["seq"].(float64)) + 1
	if from != 301 && from != 302 {
		t.Fatalf("announced position %v, want the one before the oldest message history held (300 or 301)", v["seq"])
	}
	c.expectSeqs("news", from, 401)
	brokerPublish(t, pub, "news", 402, 402)
	c.expectSeqs("news", 402, 402) // nothing (no duplicate) in between
	if n := obs.count(hub.ResetGap); n != 1 {
		t.Fatalf("%d gap resets counted, want 1", n)
	}
}

// TestRedisPubSubKillsAfterHistoryWrapped: Redis kills the node's
// pub/sub connection again and again while a publisher publishes
// continuously, after seq 1 left the stream: the subscriber gets every
// seq once, in order, or an explicit recovered:false right before a jump.
func TestRedisPubSubKillsAfterHistoryWrapped(t *testing.T) {
	rs := testenv.StartRedis(t)
	opts := hub.RedisBrokerOptions{History: hub.HistoryOptions{Size: 100, TTL: time.Minute}, PresenceTTL: 900 * time.Millisecond, Logger: quiet}
	b := newRedisBroker(t, rs, opts)
	pub := newRedisBroker(t, rs, opts)
	nd := startNode(t, b)
	c := dialHub(t, nd.url+"/hub", client.WebSocket)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed", "seq", "0")
	brokerPublish(t, pub, "news", 1, 150)
	c.expectSeqs("news", 1, 150)

	const last, window = 900, 50
	var seen atomic.Uint64
	seen.Store(150)
	progress := make(chan struct{}, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pubErr := make(chan error, 1)
	go func() {
		// At most window messages ahead of the subscriber, so that its
		// session queue never overflows, and a reconnect's window stays
		// within history.
		for n := uint64(151); n <= last; n++ {
			for seen.Load()+window < n {
				select {
				case <-progress:
				case <-ctx.Done():
					pubErr <- ctx.Err()
					return
				}
			}
			if _, err := pub.Publish(ctx, "news", json.RawMessage(strconv.FormatUint(n, 10))); err != nil {
				pubErr <- err
				return
			}
		}
		pubErr <- nil
	}()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	pos, kills, resets := uint64(150), 0, 0
	for pos < last {
		v := c.next()
		switch {
		case v["op"] == "subscribed" && v["recovered"] == false:
			seq, _ := strconv.ParseUint(jsonNum(v["seq"]), 10, 64)
			if seq < pos {
				t.Fatalf("reset back to %d after %d", seq, pos)
			}
			pos = seq
			resets++
			continue
		case v["op"] != "message":
			t.Fatalf("unexpected %v", v)
		}
		seq, _ := strconv.ParseUint(jsonNum(v["seq"]), 10, 64)
		if seq != pos+1 {
			t.Fatalf("seq %d after %d: a duplicate or a silent gap", seq, pos)
		}
		if got := jsonNum(v["data"]); got != strconv.FormatUint(seq, 10) {
			t.Fatalf("seq %d carries %s", seq, got)
		}
		pos = seq
		seen.Store(seq)
		select {
		case progress <- struct{}{}:
		default:
		}
		if seq%100 == 0 && seq < last {
			if err := rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
			kills++
		}
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pub/sub connections killed, %d messages, %d recovered:false", kills, last, resets)
}

// TestHistoryAfterWrap, on both brokers: once seq 1 left history, a read
// since 0 is incomplete yet holds the newest messages; a read since a seq
// still held is complete; /api/history answers no messages when
// incomplete (a backend must not take the rest for everything).
func TestHistoryAfterWrap(t *testing.T) {
	for _, k := range []brokerKind{memoryKind, redisKind} {
		t.Run(k.name, func(t *testing.T) {
			nodes, _ := startNodes(t, k, 1, hub.HistoryOptions{Size: 100, TTL: time.Minute})
			b := nodes[0].broker
			brokerPublish(t, b, "news", 1, 250)
			ctx := context.Background()
			for _, tc := range []struct {
				since         uint64
				complete      bool
				first, n, seq uint64
			}{{0, false, 151, 100, 250}, {149, false, 151, 100, 250}, {150, true, 151, 100, 250}, {200, true, 201, 50, 250}, {250, true, 0, 0, 250}} {
				h, err := b.History(ctx, "news", tc.since, 100)
				if err != nil {
					t.Fatal(err)
				}
				first := uint64(0)
				if len(h.Messages) > 0 {
					first = h.Messages[0].Seq
				}
				if h.Complete != tc.complete || first != tc.first || uint64(len(h.Messages)) != tc.n || h.Seq != tc.seq {
					t.Fatalf("since %d: complete %v, %d messages from %d, seq %d; want %v, %d from %d, seq %d",
						tc.since, h.Complete, len(h.Messages), first, h.Seq, tc.complete, tc.n, tc.first, tc.seq)
				}
			}
			code, v := apiCall(t, "GET", nodes[0].url+"/api/history?channel=news&since=0", "")
			if code != 200 || jsonNum(v["complete"]) != "false" || jsonNum(v["messages"]) != "[]" || jsonNum(v["seq"]) != "250" {
				t.Fatalf("history since 0: %d %v", code, v)
			}
		})
	}
}

// TestRedisEpochAnnouncedToEarlySubscriber: a client that subscribed
// before its channel had an epoch (nothing published yet on Redis) is told
// the epoch the first publish starts, so that it can resume with it. A
// resume with that epoch after Redis lost the channel (a new epoch) is
// then answered recovered:false, where one with no epoch would have been
// taken for the new epoch's continuation.
func TestRedisEpochAnnouncedToEarlySubscriber(t *testing.T) {
	rs := testenv.StartRedis(t)
	opts := hub.RedisBrokerOptions{History: hub.HistoryOptions{Size: 100, TTL: time.Minute}, Logger: quiet}
	nd := startNode(t, newRedisBroker(t, rs, opts))
	pub := newRedisBroker(t, rs, opts)
	c := dialHub(t, nd.url+"/hub", client.XHRStreaming)
	c.send(`{"op":"subscribe","channel":"news"}`)
	if v := c.expect("subscribed", "seq", "0"); v["epoch"] != nil {
		t.Fatalf("a channel nothing was published to has an epoch on Redis: %v", v)
	}
	brokerPublish(t, pub, "news", 1, 3)
	c.expectSeqs("news", 1, 3) // asserts the announcement before message 1
	first := c.epochs["news"]

	back := dialHub(t, nd.url+"/hub", client.WebSocket)
	back.send(fmt.Sprintf(`{"op":"subscribe","channel":"news","since":2,"epoch":%q}`, first))
	back.expect("subscribed", "seq", "3", "recovered", "true")
	back.expect("message", "seq", "3")

	// Redis forgets the channel; it lives again under a new epoch.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	brokerPublish(t, pub, "news", 1, 5)
	late := dialHub(t, nd.url+"/hub", client.XHRPolling)
	late.send(fmt.Sprintf(`{"op":"subscribe","channel":"news","since":3,"epoch":%q}`, first))
	if v := late.expect("subscribed", "seq", "5", "recovered", "false"); v["epoch"] == first {
		t.Fatalf("the new life of the channel kept the old epoch: %v", v)
	}
}
