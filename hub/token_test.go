package hub_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
)

func tokenHub(t *testing.T) string {
	t.Helper()
	rules := defaultRules
	rules.TokenSecret = secret
	url, _ := startHub(t, hub.Options{Rules: rules, PingInterval: 100 * time.Millisecond}, session.Options{})
	return url
}

// expIn is an exp ttl from now, in whole seconds as a token holds it.
func expIn(ttl time.Duration) time.Time { return time.Unix(time.Now().Add(ttl).Unix(), 0) }

// waitClosed reads c until its session ends, within a bounded wait, and
// returns the close code and reason.
func waitClosed(t *testing.T, c *hubConn, within time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		m, err := c.c.Recv(ctx)
		if err != nil {
			code, reason, closed := c.c.CloseInfo()
			if !closed {
				t.Fatalf("not closed within %s: %v", within, err)
			}
			return code, reason
		}
		if len(m) > 12 && m[:12] == `{"op":"ping"` {
			continue // unanswered: the server does not mind
		}
	}
}

// TestTokenExpiryClosesSession: a session whose token expires is closed
// with 3014 at its exp, on every transport.
func TestTokenExpiryClosesSession(t *testing.T) {
	url := tokenHub(t)
	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			exp := expIn(1500 * time.Millisecond)
			c := dialHub(t, url+"/hub?token="+tokenUntil(t, "u", []string{"chat.*"}, exp), tr)
			c.send(`{"op":"subscribe","channel":"chat.a"}`)
			c.expect("subscribed")
			code, reason := waitClosed(t, c, 10*time.Second)
			if code != hub.CodeTokenExpired || reason != hub.ReasonTokenExpired {
				t.Fatalf("closed with %d %q, want %d %q", code, reason, hub.CodeTokenExpired, hub.ReasonTokenExpired)
			}
			if now := time.Now(); now.Before(exp) {
				t.Fatalf("closed at %s, before the token's exp %s", now, exp)
			}
		})
	}
}

// TestRefresh: a refresh moves the session's end to the new token's exp
// and ends the subscriptions the new token does not allow.
func TestRefresh(t *testing.T) {
	url := tokenHub(t)
	oldExp := expIn(1500 * time.Millisecond)
	c := dialHub(t, url+"/hub?token="+tokenUntil(t, "u", []string{"chat.*", "news"}, oldExp), client.WebSocket)
	c.send(`{"op":"subscribe","channel":"chat.a"}`)
	c.expect("subscribed")
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed")
	newExp := expIn(time.Hour)
	c.send(`{"op":"refresh","token":"` + tokenUntil(t, "u", []string{"chat.*"}, newExp) + `"}`)
	c.expect("unsubscribed", "channel", `"news"`)
	c.expect("refreshed", "exp", strconv.FormatInt(newExp.Unix(), 10))
	// Past the old token's exp (and its leeway), the session is open.
	ctx, cancel := context.WithDeadline(context.Background(), oldExp.Add(time.Second))
	defer cancel()
	for {
		m, err := c.c.Recv(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("closed after a refresh: %v", err)
		}
		if len(m) > 12 && m[:12] == `{"op":"ping"` {
			continue
		}
		t.Fatalf("unexpected %s", m)
	}
	c.send(`{"op":"publish","channel":"chat.a","data":1}`)
	got := map[string]bool{}
	for range 2 {
		got[c.next()["op"].(string)] = true
	}
	if !got["published"] || !got["message"] {
		t.Fatalf("publish after refresh: %v", got)
	}
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("error", "code", `"forbidden"`)
}

// TestRefreshRefused: a refresh with a token that is not valid now
// changes nothing; a session that came without a valid token can get one.
func TestRefreshRefused(t *testing.T) {
	url := tokenHub(t)
	forged, _ := hub.SignToken([]byte("another secret, not the server's"), []string{"*"}, time.Hour)
	cases := []struct {
		name, token, message string
	}{
		{"missing", ``, "a token is required for this channel"},
		{"garbage", `x.y.z`, ""},
		{"forged", forged, ""},
		{"expired", userToken(t, "u", []string{"*"}, -time.Minute), ""},
		{"within the leeway", userToken(t, "u", []string{"*"}, -time.Second), "invalid token"},
	}
	c := dialHub(t, url+"/hub?token="+userToken(t, "u", []string{"news"}, -time.Minute), client.XHRStreaming)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("error", "code", `"forbidden"`)
	for _, tc := range cases {
		c.send(`{"op":"refresh","token":"` + tc.token + `"}`)
		v := c.expect("error", "code", `"forbidden"`)
		if tc.message != "" && v["message"] != tc.message {
			t.Errorf("%s: %v", tc.name, v)
		}
	}
	c.send(`{"op":"refresh","token":"` + userToken(t, "u", []string{"news"}, time.Hour) + `"}`)
	c.expect("refreshed")
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed")

	// A hub without tokens has nothing to refresh.
	plain, _ := startHub(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour}, session.Options{})
	p := dialHub(t, plain+"/hub", client.WebSocket)
	p.send(`{"op":"refresh","token":"x"}`)
	p.expect("error", "code", `"bad_request"`)
}
