package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	sockjs "github.com/sockjsd/sockjsd/client"
)

// metricValue is the value of one series in /metrics (0 when absent).
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestHubSpeaksJSONOnly: a plain SockJS client of /hub, written to the
// hub's protocol alone, gets nothing but JSON objects with an op, however
// short the demo's -ping-interval: the server's in-band round-trip pings
// ("\u0000sockjsd-ping:…", for sockjsd.js pages) are not sent on /hub. It
// answers the hub's own {"op":"ping"} and the round trip reaches /metrics
// under service="hub"; on websocket, the websocket ping/pong that the
// client's websocket library answers by itself is measured too.
func TestHubSpeaksJSONOnly(t *testing.T) {
	_, addr := startServer(t, "-ping-interval", "20ms", "-hub-ping-interval", "20ms")
	base := "http://" + addr
	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRStreaming, sockjs.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := sockjs.Dial(ctx, base+"/hub", sockjs.Options{Transports: []string{tr}})
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
			send(`{"op":"subscribe","channel":"news"}`)
			// Read until two pings were answered (the second carries
			// the first one's round trip), then until the answer to
			// a message sent after the last pong: the hub handles a
			// session's messages in order, so the pong was recorded.
			var pings, lastRTT int
			marker := false
			for {
				raw, err := c.Recv(ctx)
				if err != nil {
					t.Fatalf("after %d pings: %v", pings, err)
				}
				var m struct {
					Op   string   `json:"op"`
					ID   *int64   `json:"id"`
					Code string   `json:"code"`
					RTT  *float64 `json:"rtt"`
				}
				if err := json.Unmarshal([]byte(raw), &m); err != nil || m.Op == "" {
					t.Fatalf("not a hub message (a JSON object with an op): %q", raw)
				}
				switch {
				case m.Op == "ping" && pings < 2:
					if m.ID == nil {
						t.Fatalf("ping without an id: %s", raw)
					}
					pings++
					if m.RTT != nil {
						lastRTT = pings
						if *m.RTT <= 0 {
							t.Errorf("ping's rtt %v ms", *m.RTT)
						}
					}
					send(`{"op":"pong","id":` + strconv.FormatInt(*m.ID, 10) + `}`)
					if pings == 2 {
						send(`{"op":"unsubscribe","channel":"marker"}`)
						marker = true
					}
				case m.Op == "error" && m.Code == "not_subscribed" && marker:
					if lastRTT != 2 {
						t.Errorf("the second ping carried no rtt of the first")
					}
					series := `sockjs_ping_rtt_seconds_count{service="hub",transport="` + tr + `"}`
					if n := metricValue(t, base, series); n < 1 {
						t.Errorf("%s = %v, want at least 1", series, n)
					}
					if tr == sockjs.WebSocket {
						// The server pinged right after the open frame;
						// the client's pong came before its first message.
						ws := `sockjs_websocket_ping_rtt_seconds_count{service="hub",transport="websocket"}`
						if n := metricValue(t, base, ws); n < 1 {
							t.Errorf("%s = %v, want at least 1", ws, n)
						}
					}
					return
				}
			}
		})
	}
}
