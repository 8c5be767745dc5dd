package hub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
)

func TestAPI(t *testing.T) {
	e := newEnv(t, defaultRules, "k3y", session.Options{})
	auth := []string{"Authorization", "Bearer k3y"}
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		errCode                  string
	}{
		{"no key", "POST", "/api/publish", `{"channel":"news","data":1}`, nil, 401, "unauthorized"},
		{"wrong key", "POST", "/api/publish", `{"channel":"news","data":1}`, []string{"X-API-Key", "nope"}, 403, "forbidden"},
		{"bad JSON", "POST", "/api/publish", `{"channel":`, auth, 400, "bad_json"},
		{"no channel", "POST", "/api/publish", `{"data":1}`, auth, 400, "bad_request"},
		{"no data", "POST", "/api/publish", `{"channel":"news"}`, auth, 400, "bad_request"},
		{"unknown channel", "POST", "/api/publish", `{"channel":"weather","data":1}`, auth, 404, "unknown_channel"},
		{"oversize body", "POST", "/api/publish", `{"channel":"news","data":"` + strings.Repeat("x", 5000) + `"}`, auth, 413, "too_large"},
		{"oversize data", "POST", "/api/publish", `{"channel":"news","data":"` + strings.Repeat("x", 2000) + `"}`, auth, 413, "too_large"},
		{"wrong method", "GET", "/api/publish", ``, auth, 405, "method_not_allowed"},
		{"ok with Bearer", "POST", "/api/publish", `{"channel":"news","data":{"a":1}}`, auth, 200, ""},
		{"ok with X-API-Key", "POST", "/api/publish", `{"channel":"news","data":[1]}`, []string{"X-API-Key", "k3y"}, 200, ""},
		{"broadcast", "POST", "/api/broadcast", `{"channels":["news","chat.x"],"data":"all"}`, auth, 200, ""},
		{"broadcast unknown", "POST", "/api/broadcast", `{"channels":["news","weather"],"data":"all"}`, auth, 404, "unknown_channel"},
		{"broadcast empty", "POST", "/api/broadcast", `{"channels":[],"data":"all"}`, auth, 400, "bad_request"},
		{"presence without channel", "GET", "/api/presence", ``, auth, 400, "bad_request"},
		{"presence unknown", "GET", "/api/presence?channel=weather", ``, auth, 404, "unknown_channel"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, v := apiCall(t, tc.method, e.url+tc.path, tc.body, tc.hdr...)
			if code != tc.status || (tc.errCode != "" && v["error"] != tc.errCode) {
				t.Fatalf("%d %v, want %d %q", code, v, tc.status, tc.errCode)
			}
		})
	}
	// Sequence numbers continue per channel; counts and presence.
	code, v := apiCall(t, "POST", e.url+"/api/publish", `{"channel":"news","data":1}`, auth...)
	if code != 200 || jsonNum(v["seq"]) != "4" {
		t.Fatalf("fourth publish on news: %d %v", code, v)
	}
	c1 := dialHub(t, e.url+"/hub", client.WebSocket)
	c2 := dialHub(t, e.url+"/hub", client.XHRStreaming)
	for _, c := range []*hubConn{c1, c2} {
		c.send(`{"op":"subscribe","channel":"news"}`)
		c.expect("subscribed", "seq", "4")
	}
	if code, v := apiCall(t, "GET", e.url+"/api/presence?channel=news", "", auth...); code != 200 || jsonNum(v["subscribers"]) != "2" {
		t.Fatalf("presence: %d %v", code, v)
	}
	if code, v := apiCall(t, "GET", e.url+"/api/channels", "", auth...); code != 200 || jsonNum(v["channels"]) != `{"news":2}` {
		t.Fatalf("channels: %d %v", code, v)
	}
	c1.c.Close()
	// The count follows the session's end (bounded wait on the server's cleanup).
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, v := apiCall(t, "GET", e.url+"/api/presence?channel=news", "", auth...)
		if jsonNum(v["subscribers"]) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence after a close: %v", v)
		}
		c2.send(`{"op":"subscribe","channel":"news"}`) // a round trip on the other session
		c2.expect("subscribed")
	}
}

func TestSubscribeTokens(t *testing.T) {
	rules := defaultRules
	rules.TokenSecret = secret
	e := newEnv(t, rules, "", session.Options{})
	valid, _ := hub.SignToken(secret, []string{"chat.*"}, time.Minute)
	expired, _ := hub.SignToken(secret, []string{"chat.*"}, -time.Minute)
	forged, _ := hub.SignToken([]byte("another secret, not the server's"), []string{"*"}, time.Minute)
	cases := []struct {
		name, token, channel, op string
	}{
		{"valid", valid, "chat.room", "subscribed"},
		{"wrong channel", valid, "news", "error"},
		{"expired", expired, "chat.room", "error"},
		{"bad signature", forged, "chat.room", "error"},
		{"missing", "", "chat.room", "error"},
		{"garbage", "not.a.jwt", "chat.room", "error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialHub(t, e.url+"/hub?token="+tc.token, client.WebSocket)
			c.send(`{"op":"subscribe","channel":"` + tc.channel + `"}`)
			v := c.expect(tc.op)
			if tc.op == "error" && v["code"] != "forbidden" {
				t.Fatalf("error code %v", v)
			}
		})
	}
}
