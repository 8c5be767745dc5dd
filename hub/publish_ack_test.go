package hub_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
)

// TestPublishAnsweredBeforeFanOut: POST /api/publish answers once the
// message has its seq and is in the channel's history, which can be
// before the channel's fan-out goroutine delivered it. That keeps the
// API's promise (an acknowledged message reaches every subscriber
// exactly once, or the subscriber is told): a live subscriber gets it
// when the fan-out runs; one that subscribes after the answer starts
// after it (its subscribed seq includes it, and the fan-out skips it);
// one whose session ended before the fan-out recovers it from history,
// once, like any message published while it was away.
func TestPublishAnsweredBeforeFanOut(t *testing.T) {
	e := newEnv(t, defaultRules, "", session.Options{})
	live := dialHub(t, e.url+"/hub", client.WebSocket)
	live.send(`{"op":"subscribe","channel":"news"}`)
	live.expect("subscribed", "seq", "0")
	gone := dialHub(t, e.url+"/hub", client.XHRStreaming)
	gone.send(`{"op":"subscribe","channel":"news"}`)
	gone.expect("subscribed", "seq", "0")
	pub := func(n int) {
		t.Helper()
		if code, v := apiCall(t, "POST", e.url+"/api/publish", fmt.Sprintf(`{"channel":"news","data":{"n":%d}}`, n)); code != 200 || jsonNum(v["seq"]) != fmt.Sprint(n) {
			t.Fatalf("publish %d: %d %v", n, code, v)
		}
	}
	pub(1)
	live.expectSeqs("news", 1, 1)
	gone.expectSeqs("news", 1, 1)

	release := e.hub.HoldFanOut("news")
	answered := make(chan string, 1)
	go func() { // answered while no delivery can run
		code, v := apiCall(t, "POST", e.url+"/api/publish", `{"channel":"news","data":{"n":2}}`)
		answered <- fmt.Sprint(code, " ", jsonNum(v["seq"]))
	}()
	select {
	case a := <-answered:
		if a != "200 2" {
			release()
			t.Fatalf("publish 2 answered %s", a)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("publish not answered within 10s while the fan-out was held")
	}
	code, v := apiCall(t, "GET", e.url+"/api/history?channel=news&since=1", "")
	if code != 200 || jsonNum(v["messages"]) != `[{"data":{"n":2},"seq":2}]` {
		release()
		t.Fatalf("history after the answer, before the fan-out: %d %v", code, v)
	}
	epoch := live.epochs["news"]
	gone.c.Close() // its session ends before the fan-out reaches it
	late := dialHub(t, e.url+"/hub", client.WebSocket)
	late.send(`{"op":"subscribe","channel":"news"}`) // waits for the channel's lock
	release()

	live.expectSeqs("news", 2, 2)
	late.expect("subscribed", "seq", "2")
	back := dialHub(t, e.url+"/hub", client.XHRPolling)
	back.send(fmt.Sprintf(`{"op":"subscribe","channel":"news","since":1,"epoch":%q}`, epoch))
	back.expect("subscribed", "recovered", "true", "seq", "2")
	back.expectSeqs("news", 2, 2)
	pub(3)
	// Exactly once: the next message of each is 3.
	for _, c := range []*hubConn{live, late, back} {
		c.expectSeqs("news", 3, 3)
	}
}

// TestFanOutQueueBound: publishes to a channel whose fan-out is held up
// queue until the channel's fan-out queue is over MaxFanOutQueueBytes;
// then publishing waits (counted by FanOutObserver) instead of the queue
// growing, and once the fan-out goes on every publish is answered and
// delivered once, in order.
func TestFanOutQueueBound(t *testing.T) {
	e := newEnvWith(t, hub.Options{Rules: defaultRules, MaxFanOutQueueBytes: 1}, "", session.Options{})
	c := dialHub(t, e.url+"/hub", client.WebSocket)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed", "seq", "0")
	waited := func() int {
		e.obs.mu.Lock()
		defer e.obs.mu.Unlock()
		return e.obs.fanWaited
	}

	release := e.hub.HoldFanOut("news")
	const n = 4
	answered := make(chan string, n)
	for i := 1; i <= n; i++ {
		// One at a time into the broker (its channel lock orders them);
		// with a 1-byte bound, at most the fan-out's batch and one
		// queued publish get past it.
		go func() {
			code, v := apiCall(t, "POST", e.url+"/api/publish", fmt.Sprintf(`{"channel":"news","data":{"n":%d}}`, i))
			answered <- fmt.Sprint(code, " ", jsonNum(v["seq"]))
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for waited() == 0 {
		if time.Now().After(deadline) {
			release()
			t.Fatal("no publish waited for room within 10s")
		}
		time.Sleep(time.Millisecond) // polling a counter, bounded
	}
	if got := len(answered); got > n-1 {
		release()
		t.Fatalf("%d publishes answered while one waits for room", got)
	}
	release()
	for range n {
		select {
		case a := <-answered:
			if len(a) < 4 || a[:4] != "200 " {
				t.Fatalf("publish answered %s", a)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("publishes not answered within 10s of the fan-out going on")
		}
	}
	c.expectSeqs("news", 1, n)
}

// TestFanOutBacklogBatches: publishes that queue while a channel's
// fan-out is held up go to each subscriber a few at a time (SendMany:
// one write on an idle websocket), every one once and in order, on each
// transport, and to a subscriber whose subscribe waited behind them.
func TestFanOutBacklogBatches(t *testing.T) {
	const backlog = 21 // the first publish, then batches of 8, 8 and 4
	e := newEnv(t, defaultRules, "", session.Options{})
	var subs []*hubConn
	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
		c := dialHub(t, e.url+"/hub", tr)
		c.send(`{"op":"subscribe","channel":"news"}`)
		c.expect("subscribed", "seq", "0")
		subs = append(subs, c)
	}
	release := e.hub.HoldFanOut("news")
	for n := 1; n <= backlog; n++ {
		if code, v := apiCall(t, "POST", e.url+"/api/publish", fmt.Sprintf(`{"channel":"news","data":{"n":%d}}`, n)); code != 200 || jsonNum(v["seq"]) != fmt.Sprint(n) {
			release()
			t.Fatalf("publish %d: %d %v", n, code, v)
		}
	}
	late := dialHub(t, e.url+"/hub", client.WebSocket)
	late.send(`{"op":"subscribe","channel":"news"}`) // waits for the channel's lock
	release()
	for _, c := range subs {
		c.expectSeqs("news", 1, backlog)
	}
	late.expect("subscribed", "seq", fmt.Sprint(backlog))
	if code, v := apiCall(t, "POST", e.url+"/api/publish", `{"channel":"news","data":{}}`); code != 200 {
		t.Fatalf("publish: %d %v", code, v)
	}
	for _, c := range append(subs, late) {
		c.expectSeqs("news", backlog+1, backlog+1) // exactly once: nothing before it
	}
}
