package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// closeBound is how long RedisBroker.Close may take whatever Redis does:
// it waits at most 1 s for its receive loop and heartbeat, then at most
// 1 s for the presence cleanup (docs/hub.md, "Shutdown"); the third
// second is slack for a loaded machine.
const closeBound = 3 * time.Second

// clientQueries are the -redis URL settings the Close tests run with:
// go-redis's defaults (a 5 s read timeout), and no read deadline at all
// (read_timeout=-1, which an operator may put in the URL), with which a
// command sent to a Redis that never answers waits for ever.
var clientQueries = []struct{ name, query string }{
	{"default timeouts", ""},
	{"read_timeout=-1", "?read_timeout=-1"},
}

// closeTestBroker is a broker on the Redis at addr with a client built as
// cmd/server builds it from a redis:// URL (go-redis's defaults, the
// URL's query on top), with subscribers on 20 channels and presence
// counts, once it is up.
func closeTestBroker(t *testing.T, addr, query string) (*hub.RedisBroker, *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL("redis://" + addr + "/0" + query)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	b, err := hub.NewRedisBroker(rdb, hub.RedisBrokerOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waitUp(t, b, true)
	for i := range 20 {
		ch := fmt.Sprint("ch", i)
		if _, err := b.Subscribe(context.Background(), ch, func(hub.Message) {}); err != nil {
			t.Fatal(err)
		}
		b.AddPresence(ch, 1)
	}
	return b, rdb
}

// closeWithin closes b and fails the test unless Close returns within
// closeBound. Either way it then closes the client, as cmd/server does
// after Close, and checks that no goroutine of the broker outlives it.
func closeWithin(t *testing.T, b *hub.RedisBroker, rdb *redis.Client) time.Duration {
	t.Helper()
	closed := false
	closeClient := func() {
		if !closed {
			closed = true
			_ = rdb.Close()
		}
	}
	took := testenv.ReturnsWithin(t, "Close", closeBound, func() { b.Close() }, closeClient, brokerStacks)
	closeClient()
	waitBrokerGone(t)
	return took
}

// brokerStacks are the stacks of the goroutines running a RedisBroker
// method.
func brokerStacks() string { return testenv.Stacks("hub.(*RedisBroker)") }

// waitBrokerGone waits (10 s at most) until no goroutine runs a
// RedisBroker method: the loops, and any Redis call Close stopped
// waiting for, have ended.
func waitBrokerGone(t *testing.T) {
	t.Helper()
	testenv.WaitStacksGone(t, "the broker's goroutines", "hub.(*RedisBroker)")
}

// TestRedisBrokerCloseWithRedisDown: with Redis gone (connections
// refused), Close returns within closeBound.
func TestRedisBrokerCloseWithRedisDown(t *testing.T) {
	rs := testenv.StartRedis(t)
	b, rdb := closeTestBroker(t, rs.Addr, "")
	rs.Stop()
	waitUp(t, b, false)
	closeWithin(t, b, rdb)
}

// TestRedisBrokerCloseWithRedisFrozen: with Redis stopped by SIGSTOP (the
// kernel accepts connections and takes commands, nothing answers) while
// a command of the broker waits for it, Close returns within closeBound.
func TestRedisBrokerCloseWithRedisFrozen(t *testing.T) {
	for _, q := range clientQueries {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			b, rdb := closeTestBroker(t, rs.Addr, q.query)
			// The heartbeat writes every PresenceTTL/3 (5s/3), the receive
			// loop pings after as long without a message: within that,
			// one of them has sent Redis a command it will not read.
			rs.FreezeQueued()
			closeWithin(t, b, rdb)
		})
	}
}

// TestRedisBrokerCloseMidSubscribe: a Subscribe waiting for Redis to
// confirm a new channel (Redis frozen: it takes the command and never
// answers) returns ErrBrokerClosed when Close is called, within
// closeBound, not after its own SubscribeTimeout (5 s).
func TestRedisBrokerCloseMidSubscribe(t *testing.T) {
	rs := testenv.StartRedis(t)
	b, rdb := closeTestBroker(t, rs.Addr, "")
	rs.FreezeQueued()
	type result struct {
		err  error
		took time.Duration
	}
	subscribed := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := b.Subscribe(context.Background(), "new-channel", func(hub.Message) {})
		subscribed <- result{err, time.Since(start)}
	}()
	// No event says the call is waiting for Redis: its goroutine's stack
	// does (bounded wait).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(testenv.Stacks("hub.(*RedisBroker).Subscribe"), "hub.(*RedisBroker).Subscribe") {
		select {
		case r := <-subscribed:
			t.Fatalf("Subscribe returned before Close, with Redis frozen: %v", r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Subscribe not running after 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling the stacks, bounded by the deadline
	}
	closeStarted := time.Now()
	closeWithin(t, b, rdb)
	select {
	case r := <-subscribed:
		if !errors.Is(r.err, hub.ErrBrokerClosed) {
			t.Fatalf("Subscribe in progress at Close: %v, want ErrBrokerClosed", r.err)
		}
		t.Logf("Subscribe returned %v after it began, Close %v after it began", r.took.Round(time.Millisecond), time.Since(closeStarted).Round(time.Millisecond))
	case <-time.After(closeBound):
		t.Fatalf("Subscribe still waiting %v after Close returned", closeBound)
	}
}

// TestRedisBrokerCloseMidCatchUp: Close returns within closeBound while
// the receive loop waits for a catch-up's History from a Redis that
// takes the command and never answers (a proxy holds it), and the
// catch-up answered after Close delivers nothing.
func TestRedisBrokerCloseMidCatchUp(t *testing.T) {
	for _, q := range clientQueries {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			px := startProxy(t, rs.Addr)
			b, rdb := closeTestBroker(t, px.Addr, q.query)
			got := make(chan hub.Message, 16)
			var closed atomic.Bool
			var late atomic.Int32
			if _, err := b.Subscribe(context.Background(), "news", func(m hub.Message) {
				if closed.Load() {
					late.Add(1)
				}
				got <- m
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Publish(context.Background(), "news", json.RawMessage(`1`)); err != nil {
				t.Fatal(err)
			}
			var first hub.Message
			select {
			case first = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the first publish was not delivered within 10s")
			}

			// Redis stops answering the broker; a message with a gap
			// before it (seq 5 after 1), published by another client,
			// still reaches the broker's pub/sub connection, and the
			// receive loop asks the stream for seqs 2-4.
			held := px.watchHeld()
			px.hold()
			direct := redis.NewClient(&redis.Options{Addr: rs.Addr})
			defer direct.Close()
			if err := direct.Publish(context.Background(), "sockjsd:hub:{news}", first.Epoch+" 5 5").Err(); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(10 * time.Second)
			for caught := false; !caught; {
				select {
				case c := <-held:
					caught = bytes.Contains(bytes.ToLower(c), []byte("xrange"))
				case <-deadline:
					t.Fatal("no catch-up (XRANGE) sent to Redis within 10s")
				}
			}

			start := time.Now()
			done := make(chan struct{})
			go func() {
				b.Close()
				closed.Store(true)
				close(done)
			}()
			select {
			case <-done:
				t.Logf("Close took %v", time.Since(start).Round(time.Millisecond))
			case <-time.After(closeBound):
				t.Errorf("Close did not return within %v; the broker's goroutines:\n%s", closeBound, brokerStacks())
				_ = rdb.Close() // ends the held read, so that Close returns
				<-done
				t.Logf("Close returned %v after it was called, once the client was closed", time.Since(start).Round(time.Millisecond))
			}
			// Redis answers again: the catch-up Close did not wait for
			// ends, and delivers nothing.
			px.release()
			waitBrokerGone(t)
			if n := late.Load(); n > 0 {
				t.Errorf("%d messages delivered after Close returned", n)
			}
		})
	}
}
