package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/internal/sign"
)

// TestHubHooks: with -hub-proxy, the hub asks the backend, signed with
// -hub-proxy-secret, and each call counts in /metrics by hook and
// outcome; a backend failing is a refusal with unavailable.
func TestHubHooks(t *testing.T) {
	secret := []byte("hook secret")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sign.Verify(secret, r.Header.Get(sign.Header), body, time.Now(), time.Minute); err != nil {
			t.Errorf("%s: signature: %v", r.URL.Path, err)
		}
		var req struct{ Channel, Method string }
		_ = json.Unmarshal(body, &req)
		switch {
		case r.URL.Path == "/subscribe" && req.Channel == "chat.staff":
			io.WriteString(w, `{"deny":{"reason":"staff only"}}`)
		case r.URL.Path == "/subscribe" && req.Channel == "chat.broken":
			w.WriteHeader(http.StatusInternalServerError)
		case r.URL.Path == "/rpc":
			io.WriteString(w, `{"data":"pong"}`)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	t.Cleanup(backend.Close)
	_, addr := startServer(t, "-hub-proxy", backend.URL, "-hub-proxy-secret", string(secret), "-hub-proxy-timeout", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "http://"+addr+"/hub", client.Options{Transports: []string{client.WebSocket}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := func(op string) string {
		t.Helper()
		for {
			m, err := c.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(m, `{"op":"`+op+`"`) {
				return m
			}
		}
	}
	for _, tc := range []struct{ send, op, want string }{
		{`{"op":"subscribe","channel":"chat.staff"}`, "error", `"code":"forbidden","message":"staff only"`},
		{`{"op":"subscribe","channel":"chat.broken"}`, "error", `"code":"unavailable"`},
		{`{"op":"subscribe","channel":"chat.lobby"}`, "subscribed", `"channel":"chat.lobby"`},
		{`{"op":"rpc","id":"r1","method":"ping"}`, "rpc_result", `{"op":"rpc_result","id":"r1","data":"pong"}`},
	} {
		if err := c.Send(tc.send); err != nil {
			t.Fatal(err)
		}
		if got := next(tc.op); !strings.Contains(got, tc.want) {
			t.Fatalf("%s: got %s, want %s", tc.send, got, tc.want)
		}
	}
	_, m := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`sockjs_hub_hook_requests_total{hook="subscribe",outcome="ok"} 2`,
		`sockjs_hub_hook_requests_total{hook="subscribe",outcome="status"} 1`,
		`sockjs_hub_hook_requests_total{hook="rpc",outcome="ok"} 1`,
		`sockjs_hub_hook_requests_total{hook="publish",outcome="timeout"} 0`,
		`sockjs_hub_hook_duration_seconds_count{hook="subscribe"} 3`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestHubHooksBadURL: a -hub-proxy that is not an http(s) URL stops the
// server, without echoing the URL, which may hold a password.
func TestHubHooksBadURL(t *testing.T) {
	cfg, err := parseConfig([]string{"-client-dir", t.TempDir(), "-hub-proxy", "ftp://user:pw@x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = newServer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("newServer with a bad -hub-proxy: %v", err)
	}
}
