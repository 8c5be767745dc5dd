package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
)

// TestParallelFanOut: a channel fanned out by several goroutines at once
// (the threshold lowered to 8 subscribers) still gives every subscriber
// every message once, in order; subscribers that leave half-way are
// dropped from the fan-out and from presence.
func TestParallelFanOut(t *testing.T) {
	hub.SetParallelMin(t, 8)
	url, h := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour}, session.Options{})
	const subscribers, leaving, publishes = 24, 6, 300
	conns := make([]*hubConn, subscribers)
	for i := range conns {
		conns[i] = dialHub(t, url+"/hub", client.WebSocket)
		conns[i].send(`{"op":"subscribe","channel":"news"}`)
		conns[i].expect("subscribed")
	}
	results := make(chan error, subscribers)
	for i, c := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for want := uint64(1); want <= publishes; want++ {
				if i < leaving && want == publishes/2 {
					c.c.Close() // leaves half-way
					results <- nil
					return
				}
				m, err := c.c.Recv(ctx)
				if err != nil {
					results <- fmt.Errorf("subscriber %d after seq %d: %w", i, want-1, err)
					return
				}
				if op, seq := seqOf(m); op != "message" || seq != want {
					results <- fmt.Errorf("subscriber %d: %s seq %d, want message %d", i, op, seq, want)
					return
				}
			}
			results <- nil
		}()
	}
	for range publishes {
		if _, err := h.Publish(context.Background(), "news", []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range subscribers {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// The ones that left are gone from presence, whether a publish
	// found them closed or their session's end released them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := h.Broker().Presence(context.Background(), "news")
		if n == subscribers-leaving {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence %d, want %d", n, subscribers-leaving)
		}
		if _, err := h.Publish(context.Background(), "news", []byte(`{"n":2}`)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // sessions ending, bounded
	}
}
