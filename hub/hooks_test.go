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

	"github.com/golang-jwt/jwt/v5"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/backend"
	"github.com/sockjsd/sockjsd/internal/sign"
	"github.com/sockjsd/sockjsd/session"
)

// hookCall is one request the test backend got.
type hookCall struct {
	path   string
	body   map[string]any
	signed bool
}

// fakeBackend answers the hub's hooks with answer(path, body): a status
// and a body; status 0 holds the request until the client gives up.
type fakeBackend struct {
	url   string
	mu    sync.Mutex
	calls []hookCall
	// outcomes the hooks observed, "hook outcome" → count.
	outcomes map[string]int
}

var hookSecret = []byte("hook-secret")

func startBackend(t *testing.T, answer func(path string, body map[string]any) (int, string)) *fakeBackend {
	t.Helper()
	b := &fakeBackend{outcomes: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("hook body not JSON: %q", raw)
		}
		signErr := sign.Verify(hookSecret, r.Header.Get(sign.Header), raw, time.Now(), time.Minute)
		b.mu.Lock()
		b.calls = append(b.calls, hookCall{r.URL.Path, body, signErr == nil})
		b.mu.Unlock()
		status, out := answer(r.URL.Path, body)
		if status == 0 {
			<-r.Context().Done() // the client's timeout ends it
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, out)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

func (b *fakeBackend) last(t *testing.T) hookCall {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) == 0 {
		t.Fatal("the backend got no call")
	}
	return b.calls[len(b.calls)-1]
}

func (b *fakeBackend) outcome(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.outcomes[key]
}

// hooksFor returns HTTPHooks calling b, with a short timeout.
func hooksFor(t *testing.T, b *fakeBackend) *hub.HTTPHooks {
	t.Helper()
	c, err := backend.New(backend.Options{URL: b.url, Secret: hookSecret, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return hub.NewHTTPHooks(c, hub.HTTPHooksOptions{Observe: func(hook string, err error, d time.Duration) {
		b.mu.Lock()
		b.outcomes[hook+" "+string(backend.OutcomeOf(err))]++
		b.mu.Unlock()
	}})
}

// userToken is a hub token for channels with sub user, valid for ttl.
func userToken(t *testing.T, user string, channels []string, ttl time.Duration) string {
	t.Helper()
	return tokenUntil(t, user, channels, time.Now().Add(ttl))
}

// tokenUntil is a hub token for channels with sub user and exp (JWT: whole
// seconds, rounded down).
func tokenUntil(t *testing.T, user string, channels []string, exp time.Time) string {
	t.Helper()
	c := hub.Claims{Channels: channels, RegisteredClaims: jwt.RegisteredClaims{
		Subject: user, ExpiresAt: jwt.NewNumericDate(exp)}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answers is a backend answer by test case name.
type answer struct {
	status int
	body   string
}

func TestSubscribeHook(t *testing.T) {
	cases := []struct {
		name    string
		answer  answer
		data    string // the subscribe op's data, if any
		want    string // op
		code    string
		message string
		outcome string
	}{
		{"allow", answer{200, `{}`}, ``, "subscribed", "", "", "ok"},
		{"allow empty body", answer{200, ``}, `{"invite":"x1"}`, "subscribed", "", "", "ok"},
		{"allow unknown fields", answer{200, `{"later":1}`}, ``, "subscribed", "", "", "ok"},
		{"deny", answer{200, `{"deny":{"reason":"not in this room"}}`}, `7`, "error", "forbidden", "not in this room", "ok"},
		{"deny without reason", answer{200, `{"deny":{}}`}, ``, "error", "forbidden", "denied by the backend", "ok"},
		{"status 500", answer{500, `{}`}, ``, "error", "unavailable", "unavailable", "status"},
		{"redirect", answer{302, ``}, ``, "error", "unavailable", "unavailable", "status"},
		{"not JSON", answer{200, `<html>`}, ``, "error", "unavailable", "unavailable", "bad_answer"},
		{"not an object", answer{200, `[]`}, ``, "error", "unavailable", "unavailable", "bad_answer"},
		{"null", answer{200, `null`}, ``, "error", "unavailable", "unavailable", "bad_answer"},
		{"wrong shape", answer{200, `{"deny":"no"}`}, ``, "error", "unavailable", "unavailable", "bad_answer"},
		{"timeout", answer{0, ``}, ``, "error", "unavailable", "unavailable", "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, func(string, map[string]any) (int, string) { return tc.answer.status, tc.answer.body })
			rules := defaultRules
			rules.TokenSecret = secret
			url, _ := startHub(t, hub.Options{Rules: rules, PingInterval: time.Hour, Hooks: hooksFor(t, b)}, session.Options{})
			c := dialHub(t, url+"/hub?token="+userToken(t, "u-42", []string{"chat.*"}, time.Hour), client.WebSocket)
			msg := `{"op":"subscribe","channel":"chat.room1"}`
			if tc.data != "" {
				msg = `{"op":"subscribe","channel":"chat.room1","data":` + tc.data + `}`
			}
			c.send(msg)
			v := c.expect(tc.want, "channel", `"chat.room1"`)
			if tc.code != "" && (v["code"] != tc.code || v["message"] != tc.message) {
				t.Fatalf("got %v, want code %s message %q", v, tc.code, tc.message)
			}
			call := b.last(t)
			if call.path != "/subscribe" || !call.signed || call.body["channel"] != "chat.room1" ||
				call.body["remote"] != "127.0.0.1" || call.body["user"] != "u-42" {
				t.Fatalf("hook request %+v", call)
			}
			if id, _ := call.body["session"].(string); len(id) < 16 {
				t.Fatalf("session id %q", id)
			}
			if tc.data != "" && jsonNum(call.body["data"]) != tc.data {
				t.Fatalf("data %v, want %s", call.body["data"], tc.data)
			}
			if _, has := call.body["data"]; tc.data == "" && has {
				t.Fatalf("data sent though the op had none: %v", call.body)
			}
			if n := b.outcome("subscribe " + tc.outcome); n != 1 {
				t.Fatalf("outcome %s counted %d times: %v", tc.outcome, n, b.outcomes)
			}
			// The session goes on: its next message is handled.
			c.send(`{"op":"unsubscribe","channel":"chat.none"}`)
			c.expect("error", "code", `"not_subscribed"`)
		})
	}
}

// TestSubscribeHookAfterRules: the backend is asked only once the hub's
// own rules allowed the subscribe.
func TestSubscribeHookAfterRules(t *testing.T) {
	b := startBackend(t, func(string, map[string]any) (int, string) { return 200, `{}` })
	url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, MaxSubscriptions: 1, Hooks: hooksFor(t, b)}, session.Options{})
	c := dialHub(t, url+"/hub", client.XHRStreaming)
	c.send(`{"op":"subscribe","channel":"nope"}`)
	c.expect("error", "code", `"unknown_channel"`)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed")
	c.send(`{"op":"subscribe","channel":"chat.x"}`)
	c.expect("error", "code", `"too_many_subscriptions"`)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) != 1 || b.calls[0].body["user"] != "" {
		t.Fatalf("calls %+v, want the one for news, user \"\"", b.calls)
	}
}

func TestPublishHook(t *testing.T) {
	cases := []struct {
		name   string
		answer answer
		want   string // the message's data, or the error code
	}{
		{"as is", answer{200, `{}`}, `{"text":"hi"}`},
		{"replaced", answer{200, `{"data":{"text":"hi","by":"u-42"}}`}, `{"by":"u-42","text":"hi"}`},
		{"replaced by null", answer{200, `{"data":null}`}, `null`},
		{"denied", answer{200, `{"deny":{"reason":"muted"}}`}, "forbidden"},
		{"replacement too large", answer{200, `{"data":"` + strings.Repeat("x", 2000) + `"}`}, "too_large"},
		{"status 503", answer{503, ``}, "unavailable"},
		{"timeout", answer{0, ``}, "unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, func(path string, _ map[string]any) (int, string) {
				if path == "/subscribe" {
					return 200, `{}`
				}
				return tc.answer.status, tc.answer.body
			})
			url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, MaxDataBytes: 1024, Hooks: hooksFor(t, b)}, session.Options{})
			c := dialHub(t, url+"/hub", client.XHRPolling)
			c.send(`{"op":"subscribe","channel":"chat.r"}`)
			c.expect("subscribed")
			c.send(`{"op":"publish","channel":"chat.r","data":{"text":"hi"}}`)
			if strings.HasPrefix(tc.want, "{") || tc.want == "null" {
				got := map[string]bool{}
				for range 2 {
					v := c.next()
					got[v["op"].(string)] = true
					if v["op"] == "message" && jsonNum(v["data"]) != tc.want {
						t.Fatalf("published %s, want %s", jsonNum(v["data"]), tc.want)
					}
				}
				if !got["message"] || !got["published"] {
					t.Fatalf("got %v", got)
				}
			} else {
				c.expect("error", "code", `"`+tc.want+`"`, "channel", `"chat.r"`)
			}
			call := b.last(t)
			if call.path != "/publish" || call.body["channel"] != "chat.r" || jsonNum(call.body["data"]) != `{"text":"hi"}` {
				t.Fatalf("hook request %+v", call)
			}
		})
	}
}

func TestRPC(t *testing.T) {
	cases := []struct {
		name   string
		answer answer
		send   string
		want   string // the whole answer
	}{
		{"data", answer{200, `{"data":{"sum":3}}`}, `{"op":"rpc","id":1,"method":"add","data":[1,2]}`,
			`{"op":"rpc_result","id":1,"data":{"sum":3}}`},
		{"string id, no data", answer{200, `{}`}, `{"op":"rpc","id":"a-1","method":"noop"}`,
			`{"op":"rpc_result","id":"a-1","data":null}`},
		{"no id", answer{200, `{"data":1}`}, `{"op":"rpc","method":"m"}`,
			`{"op":"rpc_result","id":null,"data":1}`},
		{"error", answer{200, `{"error":{"code":"not_found","message":"no such item"}}`}, `{"op":"rpc","id":{"k":[2]},"method":"get"}`,
			`{"op":"rpc_result","id":{"k":[2]},"error":{"code":"not_found","message":"no such item"}}`},
		{"status 500", answer{500, ``}, `{"op":"rpc","id":3,"method":"m"}`,
			`{"op":"rpc_result","id":3,"error":{"code":"unavailable","message":"unavailable"}}`},
		{"garbage", answer{200, `{"data":`}, `{"op":"rpc","id":4,"method":"m"}`,
			`{"op":"rpc_result","id":4,"error":{"code":"unavailable","message":"unavailable"}}`},
		{"timeout", answer{0, ``}, `{"op":"rpc","id":5,"method":"m"}`,
			`{"op":"rpc_result","id":5,"error":{"code":"unavailable","message":"unavailable"}}`},
		{"no method", answer{200, `{}`}, `{"op":"rpc","id":6}`,
			`{"op":"rpc_result","id":6,"error":{"code":"bad_request","message":"method must be 1 to 128 bytes"}}`},
		{"data too large", answer{200, `{}`}, `{"op":"rpc","id":7,"method":"m","data":"` + strings.Repeat("x", 2000) + `"}`,
			`{"op":"rpc_result","id":7,"error":{"code":"too_large","message":"data over the size limit"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, func(string, map[string]any) (int, string) { return tc.answer.status, tc.answer.body })
			url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, MaxDataBytes: 1024, Hooks: hooksFor(t, b)}, session.Options{})
			c := dialHub(t, url+"/hub", client.WebSocket)
			c.send(tc.send)
			if got := c.raw(); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			b.mu.Lock()
			calls := b.calls
			b.mu.Unlock()
			if strings.Contains(tc.want, "bad_request") || strings.Contains(tc.want, "too_large") {
				if len(calls) != 0 {
					t.Fatalf("the backend was asked: %+v", calls)
				}
				return
			}
			var sent map[string]any
			_ = json.Unmarshal([]byte(tc.send), &sent)
			if call := b.last(t); call.path != "/rpc" || call.body["method"] != sent["method"] || jsonNum(call.body["data"]) != jsonNum(sent["data"]) {
				t.Fatalf("hook request %+v for %s", call, tc.send)
			}
		})
	}
}

// TestRPCWithoutHooks: a hub with no backend answers rpc as an unknown
// op, as a hub that predates it did.
func TestRPCWithoutHooks(t *testing.T) {
	url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour}, session.Options{})
	c := dialHub(t, url+"/hub", client.XHRStreaming)
	c.send(`{"op":"rpc","id":1,"method":"m"}`)
	if got, want := c.raw(), `{"op":"error","code":"unknown_op","message":"rpc is not enabled on this server"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestHookSessionID: one id for every hook call of a session, another for
// another session, never the SockJS URL's session id.
func TestHookSessionID(t *testing.T) {
	b := startBackend(t, func(string, map[string]any) (int, string) { return 200, `{}` })
	url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, Hooks: hooksFor(t, b)}, session.Options{})
	ids := map[string]int{}
	for range 2 {
		c := dialHub(t, url+"/hub", client.XHRPolling)
		c.send(`{"op":"subscribe","channel":"chat.a"}`)
		c.expect("subscribed")
		c.send(`{"op":"publish","channel":"chat.a","data":1}`)
		c.next()
		c.next()
		c.send(`{"op":"rpc","id":1,"method":"m"}`)
		c.expect("rpc_result")
		b.mu.Lock()
		calls := b.calls[len(b.calls)-3:]
		b.mu.Unlock()
		id := calls[0].body["session"].(string)
		for _, call := range calls {
			if call.body["session"] != id {
				t.Fatalf("session ids differ within one session: %+v", calls)
			}
		}
		ids[id]++
	}
	if len(ids) != 2 {
		t.Fatalf("two sessions, ids %v", ids)
	}
}

// raw is the next message as sent, within a bounded wait (these hubs
// send no pings).
func (h *hubConn) raw() string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := h.c.Recv(ctx)
	if err != nil {
		h.t.Fatalf("recv: %v", err)
	}
	return m
}

// TestSlowHookDelaysOnlyItsSession: while one session's hook waits for
// the backend, that session's later messages wait behind it, in order,
// and other sessions are served.
func TestSlowHookDelaysOnlyItsSession(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	held := make(chan struct{}, 1)
	b := startBackend(t, func(_ string, body map[string]any) (int, string) {
		if body["channel"] == "chat.slow" {
			held <- struct{}{}
			<-release
		}
		return 200, `{}`
	})
	c, err := backend.New(backend.Options{URL: b.url, Secret: hookSecret, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	url, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, Hooks: hub.NewHTTPHooks(c, hub.HTTPHooksOptions{})}, session.Options{})
	t.Cleanup(unblock) // before the servers' Close, which waits for their handlers
	slow := dialHub(t, url+"/hub", client.WebSocket)
	fast := dialHub(t, url+"/hub", client.WebSocket)
	slow.send(`{"op":"subscribe","channel":"chat.slow"}`)
	slow.send(`{"op":"unsubscribe","channel":"chat.none"}`)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the hook was not called")
	}
	fast.send(`{"op":"subscribe","channel":"chat.fast"}`)
	fast.expect("subscribed", "channel", `"chat.fast"`)
	unblock()
	slow.expect("subscribed", "channel", `"chat.slow"`)
	slow.expect("error", "code", `"not_subscribed"`)
}
