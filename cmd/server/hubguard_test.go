package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sockjs "github.com/sockjsd/sockjsd/client"
)

// syncBuffer is a log sink tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged is startServer with the server's log kept.
func startLogged(t *testing.T, flags ...string) (addr string, log *syncBuffer) {
	t.Helper()
	log = &syncBuffer{}
	_, addr = startServerLog(t, log, flags...)
	return addr, log
}

// browserPublishes subscribes an anonymous browser session to chat.room
// and publishes there: the answer's op and code ("published", or "error"
// with "forbidden").
func browserPublishes(t *testing.T, addr string) (op, code string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sockjs.Dial(ctx, "http://"+addr+"/hub", sockjs.Options{Transports: []string{sockjs.WebSocket}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{`{"op":"subscribe","channel":"chat.room"}`, `{"op":"publish","channel":"chat.room","data":"hi"}`} {
		if err := c.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	for {
		raw, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ Op, Code string }
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("not JSON: %q", raw)
		}
		if m.Op == "published" || m.Op == "error" {
			return m.Op, m.Code
		}
	}
}

// TestHubBrowserPublishBeyondLoopback: a server listening beyond loopback
// without -hub-token-secret lets anonymous browsers publish only when
// -hub-browser-publish is given, and says which at start; on loopback the
// demo's chat works as before. Before, every server let any browser
// publish to chat.* anonymously.
func TestHubBrowserPublishBeyondLoopback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   []string
		env     string // SOCKJSD_HUB_BROWSER_PUBLISH
		op, log string
	}{
		{"loopback", nil, "", "published", ""},
		{"wildcard, default", []string{"-addr", ":8081"}, "", "error", "browsers may not publish"},
		{"LAN address, default", []string{"-addr", "192.0.2.10:8081"}, "", "error", "browsers may not publish"},
		{"wildcard, given", []string{"-addr", "0.0.0.0:8081", "-hub-browser-publish", "chat.*"}, "", "published", "anonymous browsers may publish"},
		{"wildcard, given by the environment", []string{"-addr", "0.0.0.0:8081"}, "chat.*", "published", "anonymous browsers may publish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("SOCKJSD_HUB_BROWSER_PUBLISH", tc.env)
			}
			addr, log := startLogged(t, tc.flags...)
			op, code := browserPublishes(t, addr)
			if op != tc.op || (op == "error" && code != "forbidden") {
				t.Fatalf("browser publish: %s %s, want %s", op, code, tc.op)
			}
			lines := 0
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, "hub: browsers may not publish") || strings.Contains(l, "hub: anonymous browsers may publish") {
					lines++
					if !strings.Contains(l, tc.log) || tc.log == "" {
						t.Errorf("start line %q, want %q", l, tc.log)
					}
				}
			}
			if want := map[bool]int{true: 0, false: 1}[tc.log == ""]; lines != want {
				t.Errorf("%d lines about browser publishing, want %d:\n%s", lines, want, log)
			}
		})
	}
	// With a token secret the default stands beyond loopback: tokens
	// decide who publishes.
	c, err := parseConfig([]string{"-addr", ":8081", "-hub-token-secret", strings.Repeat("k", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if got := browserPublish(c, slog.New(slog.DiscardHandler)); len(got) != 1 || got[0] != "chat.*" {
		t.Fatalf("with a token secret: %v, want the default chat.*", got)
	}
}

// TestAPICrossSiteCounted: through the server, a cross-site write to /api
// (Origin: https://evil.example, text/plain) is refused, counted in
// sockjs_api_refused_total, and its message is not in history; an origin
// in -allowed-origins may call it with JSON.
func TestAPICrossSiteCounted(t *testing.T) {
	addr, _ := startLogged(t, "-allowed-origins", "https://app.example")
	base := "http://" + addr
	post := func(ct, origin, body string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/api/publish", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	forged := `{"channel":"news","data":{"forged":true}}`
	if code := post("text/plain", "https://evil.example", forged); code != 403 {
		t.Fatalf("cross-site text/plain: %d, want 403", code)
	}
	if code := post("text/plain", "", forged); code != 415 {
		t.Fatalf("text/plain without Origin: %d, want 415", code)
	}
	if code := post("", "", forged); code != 415 {
		t.Fatalf("no Content-Type: %d, want 415", code)
	}
	if _, h := get(t, base+"/api/history?channel=news"); !strings.Contains(h, `"messages":[]`) {
		t.Fatalf("history after refused writes: %s", h)
	}
	if code := post("application/json", "https://app.example", `{"channel":"news","data":"ok"}`); code != 200 {
		t.Fatalf("allowed origin: %d", code)
	}
	_, m := get(t, base+"/metrics")
	for _, want := range []string{`sockjs_api_refused_total{reason="origin"} 1`, `sockjs_api_refused_total{reason="content_type"} 2`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}
