package hub_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
)

// pingMsg is a hub ping as a client decodes it.
type pingMsg struct {
	Op  string   `json:"op"`
	ID  int64    `json:"id"`
	RTT *float64 `json:"rtt"`
}

// nextPing reads raw messages until a ping, within ctx.
func nextPing(ctx context.Context, t *testing.T, c *client.Conn) pingMsg {
	t.Helper()
	for {
		raw, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for a ping: %v", err)
		}
		var m pingMsg
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("not JSON: %q", raw)
		}
		if m.Op == "ping" {
			return m
		}
	}
}

// TestPingOp: the hub's ping, as docs/hub.md describes it. A client that
// ignores pings is never closed for it and keeps being pinged, with no rtt
// since nothing was measured; a pong for a superseded ping is not a round
// trip; a pong for the latest one is recorded once, and the next ping
// carries that round trip as "rtt" in ms.
func TestPingOp(t *testing.T) {
	obs := &rttObserver{rtts: map[session.Transport]int{}}
	url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: 20 * time.Millisecond, Observer: obs}, session.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url+"/hub", client.Options{Transports: []string{client.WebSocket}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(m string) {
		t.Helper()
		if err := c.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	// Ignored pings: still open, ids go up, no rtt.
	var first pingMsg
	for i := 0; i < 5; i++ {
		p := nextPing(ctx, t, c)
		if i == 0 {
			first = p
		} else if p.ID != first.ID+int64(i) {
			t.Fatalf("ping %d has id %d, want %d", i, p.ID, first.ID+int64(i))
		}
		if p.RTT != nil {
			t.Fatalf("unanswered pings carry rtt %v", *p.RTT)
		}
	}
	// A pong for the first ping, long superseded: no round trip. The
	// subscribe after it is answered once the pong was handled (the hub
	// takes a session's messages in order).
	send(`{"op":"pong","id":` + strconv.FormatInt(first.ID, 10) + `}`)
	send(`{"op":"unsubscribe","channel":"news"}`)
	waitOp(ctx, t, c, "error")
	obs.mu.Lock()
	n := obs.rtts[session.WebSocket]
	obs.mu.Unlock()
	if n != 0 {
		t.Fatalf("a superseded pong was recorded as %d round trips", n)
	}
	// Answer the next ping, twice: one round trip; the ping after it says
	// so.
	p := nextPing(ctx, t, c)
	pong := `{"op":"pong","id":` + strconv.FormatInt(p.ID, 10) + `}`
	send(pong)
	send(pong)
	send(`{"op":"unsubscribe","channel":"news"}`)
	waitOp(ctx, t, c, "error")
	obs.mu.Lock()
	n = obs.rtts[session.WebSocket]
	obs.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d round trips recorded, want 1", n)
	}
	if q := nextPing(ctx, t, c); q.RTT == nil || *q.RTT <= 0 {
		t.Fatalf("the ping after an answered one: %+v", q)
	}
}

// waitOp reads raw messages until one with op, within ctx.
func waitOp(ctx context.Context, t *testing.T, c *client.Conn, op string) {
	t.Helper()
	for {
		raw, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", op, err)
		}
		var m struct{ Op string }
		if json.Unmarshal([]byte(raw), &m) == nil && m.Op == op {
			return
		}
	}
}
