package hub_test

import (
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestFirstSubscriberLeavingDoesNotFailOthers: the node's broker
// subscription to a new channel is shared; the client that started it
// leaving while Redis is slow must not fail the client waiting with it.
func TestFirstSubscriberLeavingDoesNotFailOthers(t *testing.T) {
	rs := testenv.StartRedis(t)
	px := startProxy(t, rs.Addr)
	b := newRedisBrokerAt(t, px.Addr, hub.RedisBrokerOptions{PresenceTTL: 900 * time.Millisecond, SubscribeTimeout: 30 * time.Second, Logger: quiet})
	nd := startNode(t, b)
	waitUp(t, b, true)
	// Over xhr-streaming: its session ends when its streaming response
	// is gone, even while its subscribe (run on its send request) waits.
	first := dialHub(t, nd.url+"/hub", client.XHRStreaming)
	second := dialHub(t, nd.url+"/hub", client.WebSocket)

	px.hold() // Redis answers nothing until release
	first.send(`{"op":"subscribe","channel":"news"}`)
	waitRefs(t, nd.hub, "news", func(n int) bool { return n == 1 })
	second.send(`{"op":"subscribe","channel":"news"}`)
	waitRefs(t, nd.hub, "news", func(n int) bool { return n == 2 })
	first.c.Close() // its session, and its subscribe's context, end
	waitRefs(t, nd.hub, "news", func(n int) bool { return n < 2 })
	px.release()

	second.expect("subscribed", "seq", "0")
	publish(t, nd, "news", 1, 3)
	// The channel's first publish starts its epoch: the subscriber is
	// told, then gets the messages.
	second.expect("subscribed", "seq", "0", "recovered", "true")
	second.expectSeqs("news", 1, 3)
}

// waitRefs waits until the hub's count of clients joined or joining ch
// satisfies ok.
func waitRefs(t *testing.T, h *hub.Hub, ch string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for n := h.ChannelRefs(ch); !ok(n); n = h.ChannelRefs(ch) {
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: %d clients joined or joining", ch, n)
		}
		time.Sleep(5 * time.Millisecond) // polling the hub's own state, bounded by the deadline
	}
}
