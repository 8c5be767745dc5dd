package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestProxiedWebSocketsParked: websockets behind a trusted proxy's PROXY
// header (v1 and v2, as haproxy's send-proxy and send-proxy-v2 send it)
// hold no reader goroutine once idle, like direct ones (parked in the
// poller) and still echo (TestTrustedProxyAddress: with the client's
// address). Before, every proxied websocket kept a reader goroutine.
func TestProxiedWebSocketsParked(t *testing.T) {
	_, addr := startServer(t, "-trusted-proxies", "127.0.0.0/8")
	const n = 20
	readers := func() int { return testenv.GoroutinesIn("transport.(*Handler).readWebSocket") }
	base := readers()
	for i := range n {
		pre := proxyV1("192.0.2.1")
		if i%2 == 1 {
			pre = proxyV2("192.0.2.2")
		}
		d := preDialer(nil, pre)
		ws, _, err := d.Dial("ws://"+addr+"/echo/000/"+strings.Repeat("a", i+1)+"/websocket", nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
			t.Fatalf("connection %d: open frame %q %v", i, m, err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`["hi"]`)); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != `a["hi"]` {
			t.Fatalf("connection %d: echo %q %v", i, m, err)
		}
	}
	// Bounded wait for the readers to settle: none of ours remains.
	deadline := time.Now().Add(20 * time.Second)
	for readers() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d reader goroutines for %d idle proxied websockets, want none", readers()-base, n)
		}
		time.Sleep(20 * time.Millisecond) // polling a count; bounded
	}
}
