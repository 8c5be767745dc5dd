package hub_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

type rttObserver struct {
	mu        sync.Mutex
	rtts      map[session.Transport]int
	dropped   int
	fanWaited int
}

func (o *rttObserver) FanOutWaited() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fanWaited++
}

func (o *rttObserver) ObservePingRTT(t session.Transport, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rtts[t]++
}

func (o *rttObserver) SubscriberDropped(session.Transport) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dropped++
}

type env struct {
	url string
	hub *hub.Hub
	obs *rttObserver
}

var secret = []byte("test-secret-of-32-bytes-at-least!")

func newEnv(t *testing.T, rules hub.Rules, apiKey string, sopts session.Options) *env {
	t.Helper()
	return newEnvWith(t, hub.Options{Rules: rules}, apiKey, sopts)
}

// newEnvWith is newEnv with more of the hub's options (ho's Rules and
// MaxFanOutQueueBytes; the rest are newEnv's).
func newEnvWith(t *testing.T, ho hub.Options, apiKey string, sopts session.Options) *env {
	t.Helper()
	obs := &rttObserver{rtts: map[session.Transport]int{}}
	// Every test client comes from 127.0.0.1: the fan-out test's 2,000
	// sessions are 2,000 users as far as this limit is concerned.
	h := hub.New(hub.Options{Rules: ho.Rules, PingInterval: 100 * time.Millisecond, MaxSubscriptions: 3, MaxSubscriptionsPerAddress: 10_000, MaxDataBytes: 1024, MaxFanOutQueueBytes: ho.MaxFanOutQueueBytes, Observer: obs})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{Session: sopts}, h.Serve))
	hub.NewAPI(h, hub.APIOptions{Key: apiKey, MaxBodyBytes: 4096}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &env{srv.URL, h, obs}
}

var sessionTransport = map[string]session.Transport{
	client.WebSocket: session.WebSocket, client.XHRStreaming: session.XHRStreaming, client.XHRPolling: session.XHRPolling,
}

var defaultRules = hub.Rules{Channels: []string{"news", "chat.*", "big"}, BrowserPublish: []string{"chat.*"}}

// hubConn is a hub session with helpers that skip pings (answering them).
type hubConn struct {
	t *testing.T
	c *client.Conn
	// epochs: each channel's epoch as the last subscribed said.
	epochs map[string]string
}

func dialHub(t *testing.T, url, tr string) *hubConn {
	t.Helper()
	c, err := client.Dial(context.Background(), url, client.Options{Transports: []string{tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &hubConn{t: t, c: c}
}

func (h *hubConn) send(v string) {
	h.t.Helper()
	if err := h.c.Send(v); err != nil {
		h.t.Fatal(err)
	}
}

// next returns the next non-ping message, answering pings on the way.
func (h *hubConn) next() map[string]any {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		m, err := h.c.Recv(ctx)
		if err != nil {
			h.t.Fatalf("recv: %v", err)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(m), &v); err != nil {
			h.t.Fatalf("server sent invalid JSON %q", m)
		}
		if v["op"] == "ping" {
			h.send(`{"op":"pong","id":` + jsonNum(v["id"]) + `}`)
			continue
		}
		return v
	}
}

func jsonNum(v any) string { b, _ := json.Marshal(v); return string(b) }

func (h *hubConn) expect(op string, fields ...string) map[string]any {
	h.t.Helper()
	v := h.next()
	if v["op"] != op {
		h.t.Fatalf("got %v, want op %q", v, op)
	}
	if ch, ok := v["channel"].(string); ok && op == "subscribed" {
		if h.epochs == nil {
			h.epochs = map[string]string{}
		}
		h.epochs[ch], _ = v["epoch"].(string)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if got := jsonNum(v[fields[i]]); got != fields[i+1] {
			h.t.Fatalf("%v: %s = %s, want %s", v, fields[i], got, fields[i+1])
		}
	}
	return v
}

func apiCall(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i]) // "": without the header
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: not JSON: %q", method, url, b)
	}
	return res.StatusCode, v
}

func TestProtocolOverEachTransport(t *testing.T) {
	for _, tr := range []string{client.WebSocket, client.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, defaultRules, "", session.Options{})
			c := dialHub(t, e.url+"/hub", tr)
			c.send(`{"op":"subscribe","channel":"news"}`)
			c.expect("subscribed", "channel", `"news"`, "seq", "0")
			if code, v := apiCall(t, "POST", e.url+"/api/publish", `{"channel":"news","data":{"title":"hi","n":[1,2]}}`); code != 200 || jsonNum(v["seq"]) != "1" {
				t.Fatalf("publish: %d %v", code, v)
			}
			m := c.expect("message", "channel", `"news"`, "seq", "1")
			if jsonNum(m["data"]) != `{"n":[1,2],"title":"hi"}` {
				t.Fatalf("data %v", m["data"])
			}
			// Errors.
			c.send(`{"op":"subscribe","channel":"nope"}`)
			c.expect("error", "code", `"unknown_channel"`, "channel", `"nope"`)
			c.send(`{"op":"subscribe","channel":"bad name!"}`)
			c.expect("error", "code", `"unknown_channel"`)
			c.send(`{"op":"publish","channel":"news","data":1}`)
			c.expect("error", "code", `"forbidden"`)
			c.send(`not json`)
			c.expect("error", "code", `"bad_request"`)
			c.send(`{"op":"dance"}`)
			c.expect("error", "code", `"unknown_op"`)
			// A browser publishes only to a channel it reads.
			c.send(`{"op":"publish","channel":"chat.x","data":1}`)
			c.expect("error", "code", `"forbidden"`, "channel", `"chat.x"`)
			c.send(`{"op":"subscribe","channel":"chat.room"}`)
			c.expect("subscribed", "channel", `"chat.room"`)
			c.send(`{"op":"publish","channel":"chat.room","data":"` + strings.Repeat("x", 2000) + `"}`)
			c.expect("error", "code", `"too_large"`)
			c.send(`{"op":"publish","channel":"chat.room"}`)
			c.expect("error", "code", `"bad_request"`)
			// Browser publish where allowed reaches subscribers, itself
			// included.
			c.send(`{"op":"publish","channel":"chat.room","data":"hello"}`)
			got := map[string]bool{}
			for i := 0; i < 2; i++ {
				v := c.next()
				got[v["op"].(string)] = true
				if v["op"] == "message" && (jsonNum(v["data"]) != `"hello"` || jsonNum(v["seq"]) != "1") {
					t.Fatalf("chat message %v", v)
				}
			}
			if !got["published"] || !got["message"] {
				t.Fatalf("want published and message, got %v", got)
			}
			// Subscription limit (3).
			c.send(`{"op":"subscribe","channel":"chat.a"}`)
			c.expect("subscribed")
			c.send(`{"op":"subscribe","channel":"chat.b"}`)
			c.expect("error", "code", `"too_many_subscriptions"`)
			// Unsubscribe.
			c.send(`{"op":"unsubscribe","channel":"news"}`)
			c.expect("unsubscribed", "channel", `"news"`)
			c.send(`{"op":"unsubscribe","channel":"news"}`)
			c.expect("error", "code", `"not_subscribed"`)
			apiCall(t, "POST", e.url+"/api/publish", `{"channel":"news","data":2}`)
			apiCall(t, "POST", e.url+"/api/publish", `{"channel":"chat.a","data":3}`)
			c.expect("message", "channel", `"chat.a"`, "data", "3") // and nothing from news
			// Pings were answered along the way: round trips recorded.
			deadline := time.Now().Add(10 * time.Second)
			for {
				e.obs.mu.Lock()
				n := e.obs.rtts[sessionTransport[tr]]
				e.obs.mu.Unlock()
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no ping round trip recorded")
				}
				c.send(`{"op":"subscribe","channel":"chat.a"}`) // keeps the exchange going; answers pings in next()
				c.expect("subscribed")
			}
		})
	}
}
