package adversarial

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/hub"
)

// The hub's cases of the corpus: browsers speaking the hub protocol over
// raw websockets to /hub of the real server, each attack answered with a
// clear hub error (or bounded in memory where it is allowed), the
// server's RSS bounded, and the probe still echoing.

// hubFlood is how long a flood may run: as many messages as fit, up to
// the count each case names, so that the corpus stays quick on a loaded
// machine and goes the whole way on a quiet one.
const hubFlood = 8 * time.Second

// hubWS is a hub session over a raw SockJS websocket.
type hubWS struct {
	t    *testing.T
	c    *websocket.Conn
	left []string // messages of the last frame not yet taken
}

// HubWS opens a hub session from source address local (127.0.0.x; ""
// for the default) with query (token=..., or "").
func (s *Server) HubWS(t *testing.T, local, query string) *hubWS {
	t.Helper()
	h, err := s.tryHubWS(t, local, query)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (s *Server) tryHubWS(t *testing.T, local, query string) (*hubWS, error) {
	return s.dialHubWS(t, local, query, nil, nil)
}

// dialHubWS is tryHubWS with request headers hdr and pre, when not nil,
// writing to the connection before the handshake (a PROXY header).
func (s *Server) dialHubWS(t *testing.T, local, query string, hdr http.Header, pre func(net.Conn) error) (*hubWS, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	nd := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, addr)
		if err == nil && pre != nil {
			if err = pre(c); err != nil {
				c.Close()
			}
		}
		return c, err
	}
	u := "ws://" + s.Addr + "/hub/000/" + sid() + "/websocket"
	if query != "" {
		u += "?" + query
	}
	c, _, err := d.Dial(u, hdr)
	if err != nil {
		return nil, fmt.Errorf("hub websocket from %q: %w", local, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
		return nil, fmt.Errorf("hub websocket: open frame %q, %v", m, err)
	}
	return &hubWS{t: t, c: c}, nil
}

// send writes msgs as one SockJS frame.
func (h *hubWS) send(msgs ...string) error {
	b, _ := json.Marshal(msgs)
	_ = h.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return h.c.WriteMessage(websocket.TextMessage, b)
}

func (h *hubWS) mustSend(msgs ...string) {
	h.t.Helper()
	if err := h.send(msgs...); err != nil {
		h.t.Fatalf("hub send: %v", err)
	}
}

// nextRaw returns the next hub message as the server encoded it, skipping
// heartbeats and pings, within 30s.
func (h *hubWS) nextRaw() (string, error) {
	for len(h.left) == 0 {
		_ = h.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, m, err := h.c.ReadMessage()
		if err != nil {
			return "", err
		}
		switch {
		case string(m) == "h":
		case m[0] == 'a':
			if err := json.Unmarshal(m[1:], &h.left); err != nil {
				return "", fmt.Errorf("bad frame %q: %w", m, err)
			}
		default:
			return "", fmt.Errorf("frame %q", m)
		}
		// Pings (the hub's, and the server's round-trip pings of
		// -ping-interval) are not answers to the attack.
		kept := h.left[:0]
		for _, s := range h.left {
			if !strings.HasPrefix(s, `{"op":"ping"`) && !strings.HasPrefix(s, "\x00sockjsd-ping:") {
				kept = append(kept, s)
			}
		}
		h.left = kept
	}
	m := h.left[0]
	h.left = h.left[1:]
	return m, nil
}

// next is the next hub message, decoded.
func (h *hubWS) next() map[string]any {
	h.t.Helper()
	m, err := h.nextRaw()
	if err != nil {
		h.t.Fatalf("hub recv: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(m), &v); err != nil {
		h.t.Fatalf("hub sent invalid JSON %q", m)
	}
	return v
}

// expect reads the next message and checks its op and fields (name,
// JSON value, ...).
func (h *hubWS) expect(op string, fields ...string) map[string]any {
	h.t.Helper()
	v := h.next()
	if v["op"] != op {
		h.t.Fatalf("got %v, want op %q", v, op)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if got, _ := json.Marshal(v[fields[i]]); string(got) != fields[i+1] {
			h.t.Fatalf("%v: %s = %s, want %s", v, fields[i], got, fields[i+1])
		}
	}
	return v
}

// flood runs workers hub sessions, each sending batches of batch messages
// made by msg(n) (n counts up across all workers, from 0) and reading one
// answer per message, until total messages were answered or hubFlood
// passed. answer is told every answer. It returns how many messages were
// answered.
func (s *Server) flood(t *testing.T, workers, batch, total int, msg func(n int) []string, answer func(a string)) int {
	t.Helper()
	var next, answered atomic.Int64
	deadline := time.Now().Add(hubFlood)
	errs := make(chan error, workers)
	conns := make([]*hubWS, workers)
	for w := range conns {
		conns[w] = s.HubWS(t, "", "")
	}
	for _, h := range conns {
		go func() {
			for time.Now().Before(deadline) {
				from := int(next.Add(int64(batch))) - batch
				if from >= total {
					break
				}
				var msgs []string
				for n := from; n < min(from+batch, total); n++ {
					msgs = append(msgs, msg(n)...)
				}
				if err := h.send(msgs...); err != nil {
					errs <- err
					return
				}
				for range msgs {
					a, err := h.nextRaw()
					if err != nil {
						errs <- err
						return
					}
					answer(a)
				}
				answered.Add(int64(min(from+batch, total) - from))
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatalf("flood: %v", err)
		}
	}
	return int(answered.Load())
}

// apiHistory reads a channel's position through the API.
func (s *Server) apiHistory(t *testing.T, channel string) (seq float64, messages int) {
	t.Helper()
	r := s.MustDo(t, "GET", "/api/history?channel="+channel, "")
	var v struct {
		Seq      float64           `json:"seq"`
		Messages []json.RawMessage `json:"messages"`
	}
	if r.Code != 200 || json.Unmarshal([]byte(r.Body), &v) != nil {
		t.Fatalf("history of %s: %d %q", channel, r.Code, r.Body)
	}
	return v.Seq, len(v.Messages)
}

// TestHubDistinctChannelPublishes: browsers allowed to publish anywhere
// under chat.* publish to up to 500,000 distinct channel names. Every
// publish is acknowledged, the history all channels keep stays under
// -hub-history-max-bytes (the least recently published channels are
// forgotten), and the server's memory with it.
func TestHubDistinctChannelPublishes(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{
		"SOCKJSD_HUB_BROWSER_PUBLISH_UNSUBSCRIBED": "true",
		"SOCKJSD_HUB_HISTORY_MAX_BYTES":            fmt.Sprint(1 << 20),
	}})
	p := srv.Probe(t)
	base := srv.RSS(t)
	var bad atomic.Int64
	var firstBad atomic.Value
	start := time.Now()
	n := srv.flood(t, 8, 500, 500_000, func(n int) []string {
		return []string{fmt.Sprintf(`{"op":"publish","channel":"chat.%d","data":%d}`, n, n)}
	}, func(a string) {
		if !strings.HasPrefix(a, `{"op":"published","channel":"chat.`) || !strings.HasSuffix(a, `,"seq":1}`) {
			bad.Add(1)
			firstBad.CompareAndSwap(nil, a)
		}
	})
	el := time.Since(start)
	t.Logf("%d browser publishes to distinct channels in %v (%.0f/s)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	if bad.Load() != 0 {
		t.Errorf("%d publishes not acknowledged with seq 1, first %v", bad.Load(), firstBad.Load())
	}
	if n < 50_000 {
		t.Errorf("only %d publishes in %v: the flood did not reach the scale the case is about", n, hubFlood)
	}
	// Unbounded, the broker kept about 280 bytes a name (140 MB for
	// 500,000): the bound is a fraction of that over what the 1 MiB of
	// history and the sessions cost, so that the case fails on a leak at
	// whatever scale the flood reached.
	srv.AssertGrowth(t, base, 12<<20+int64(n)*48)
	// 1 MiB of history at 640 bytes and more a channel: the first channels
	// are forgotten (their seq starts again at 0), the last one is kept.
	if seq, _ := srv.apiHistory(t, "chat.0"); seq != 0 {
		t.Errorf("chat.0 still held after %d more channels were published to: seq %v", n, seq)
	}
	if r := srv.MustDo(t, "POST", "/api/publish", `{"channel":"chat.final","data":1}`, "Content-Type", "application/json"); r.Code != 200 {
		t.Fatalf("publish after the flood: %d %q", r.Code, r.Body)
	}
	if seq, msgs := srv.apiHistory(t, "chat.final"); seq != 1 || msgs != 1 {
		t.Errorf("the latest channel's history: seq %v, %d messages, want 1 and 1", seq, msgs)
	}
	p.Check(t)
}

// TestHubSubscribeChurn: subscribe/unsubscribe pairs on distinct channel
// names (up to 300,000) leave no channel state behind.
func TestHubSubscribeChurn(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{})
	p := srv.Probe(t)
	base := srv.RSS(t)
	var bad atomic.Int64
	var firstBad atomic.Value
	start := time.Now()
	n := srv.flood(t, 8, 250, 300_000, func(n int) []string {
		return []string{
			fmt.Sprintf(`{"op":"subscribe","channel":"churn.%d"}`, n),
			fmt.Sprintf(`{"op":"unsubscribe","channel":"churn.%d"}`, n),
		}
	}, func(a string) {
		if !strings.HasPrefix(a, `{"op":"subscribed","channel":"churn.`) && !strings.HasPrefix(a, `{"op":"unsubscribed","channel":"churn.`) {
			bad.Add(1)
			firstBad.CompareAndSwap(nil, a)
		}
	})
	el := time.Since(start)
	t.Logf("%d subscribe/unsubscribe pairs on distinct channels in %v (%.0f/s)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	if bad.Load() != 0 {
		t.Errorf("%d answers not subscribed/unsubscribed, first %v", bad.Load(), firstBad.Load())
	}
	if n < 30_000 {
		t.Errorf("only %d pairs in %v: the churn did not reach the scale the case is about", n, hubFlood)
	}
	if r := srv.MustDo(t, "GET", "/api/channels", ""); r.Code != 200 || r.Body != "{\"channels\":{}}\n" {
		t.Errorf("channels after the churn: %d %q, want none", r.Code, r.Body)
	}
	// Unbounded, the churn kept about 750 bytes a pair (225 MB for
	// 300,000): the bound is a sixth of that over the sessions' cost.
	srv.AssertGrowth(t, base, 12<<20+int64(n)*128)
	p.Check(t)
}

// TestHubJunkSubscriptionFlood: 1,001 anonymous websockets from one
// address each try to subscribe to 100 junk channels. The address's limit
// (1,000 subscriptions by default) answers the rest with
// too_many_subscriptions, the session limit (100) answers a session's
// 101st, and neither exhausts the node: a subscriber from another address
// subscribes and gets its messages.
func TestHubJunkSubscriptionFlood(t *testing.T) {
	t.Parallel()
	// 1,001 websockets from one address: past -max-connections-per-address.
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": "0"}})
	p := srv.Probe(t)
	base := srv.RSS(t)
	const socks, each = 1001, 100
	start := time.Now()
	subscribed, addrLimited, other, firstOther := subscribeFlood(t, socks, 32, each, "junk", func(int) (*hubWS, error) {
		return srv.tryHubWS(t, "127.0.0.1", "")
	})
	t.Logf("%d websockets tried %d subscribes in %v: %d subscribed, %d refused by the address limit",
		socks, socks*each, time.Since(start).Round(time.Millisecond), subscribed, addrLimited)
	if subscribed != 1000 || addrLimited != socks*each-1000 || other != 0 {
		t.Errorf("want 1,000 subscribed and %d too_many_subscriptions; got %d, %d and %d others (first %v)",
			socks*each-1000, subscribed, addrLimited, other, firstOther)
	}
	if v := srv.Metric(t, "sockjs_hub_refused_total", "reason", "address_limit"); v != socks*each-1000 {
		t.Errorf("address_limit refusals counted: %v, want %d", v, socks*each-1000)
	}

	// One session of another address: its own limit of 100, then a clear
	// error for the 101st.
	greedy := srv.HubWS(t, "127.0.0.3", "")
	var msgs []string
	for j := 0; j <= each; j++ {
		msgs = append(msgs, fmt.Sprintf(`{"op":"subscribe","channel":"greedy.%d"}`, j))
	}
	greedy.mustSend(msgs...)
	for j := 0; j < each; j++ {
		greedy.expect("subscribed")
	}
	greedy.expect("error", "code", `"too_many_subscriptions"`, "message", `"subscription limit of this session reached"`, "channel", `"greedy.100"`)
	if v := srv.Metric(t, "sockjs_hub_refused_total", "reason", "session_limit"); v != 1 {
		t.Errorf("session_limit refusals counted: %v, want 1", v)
	}

	// A real subscriber is not locked out.
	user := srv.HubWS(t, "127.0.0.2", "")
	user.mustSend(`{"op":"subscribe","channel":"news"}`)
	user.expect("subscribed", "channel", `"news"`, "seq", "0")
	if r := srv.MustDo(t, "POST", "/api/publish", `{"channel":"news","data":"still here"}`, "Content-Type", "application/json"); r.Code != 200 {
		t.Fatalf("publish: %d %q", r.Code, r.Body)
	}
	user.expect("message", "channel", `"news"`, "seq", "1", "data", `"still here"`)
	// 1,001 websocket sessions (about 70 KB each with their buffers and
	// goroutines, measured) and 1,000 subscriptions.
	srv.AssertGrowth(t, base, 128<<20)
	p.Check(t)
}

// TestHubTokenProtectedPublish: with -hub-token-secret set (and browsers
// allowed to publish to chat.* without subscribing, so that the token is
// the only barrier), a browser without a valid token for a channel can
// neither publish into it nor read it, however often it tries; a token
// holder's publish goes through and is the channel's first message.
func TestHubTokenProtectedPublish(t *testing.T) {
	t.Parallel()
	secret := []byte("adversarial-hub-secret-of-32-bytes!")
	srv := Start(t, Config{Env: map[string]string{
		"SOCKJSD_HUB_TOKEN_SECRET":                 string(secret),
		"SOCKJSD_HUB_BROWSER_PUBLISH_UNSUBSCRIBED": "true",
	}})
	p := srv.Probe(t)
	sign := func(key []byte, channels []string, ttl time.Duration) string {
		tok, err := hub.SignToken(key, channels, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return "token=" + url.QueryEscape(tok)
	}
	reader := srv.HubWS(t, "", sign(secret, []string{"chat.room"}, time.Hour))
	reader.mustSend(`{"op":"subscribe","channel":"chat.room"}`)
	reader.expect("subscribed", "channel", `"chat.room"`, "seq", "0")

	for _, tc := range []struct {
		name, query, message string
	}{
		{"no token", "", hub.ErrNoToken.Error()},
		{"empty token", "token=", hub.ErrNoToken.Error()},
		{"junk token", "token=not.a.jwt", hub.ErrBadToken.Error()},
		{"wrong secret", sign([]byte("another-secret-of-32-bytes-or-more"), []string{"chat.*"}, time.Hour), hub.ErrBadToken.Error()},
		{"expired", sign(secret, []string{"chat.*"}, -time.Minute), hub.ErrBadToken.Error()},
		{"other channel", sign(secret, []string{"chat.lobby"}, time.Hour), hub.ErrNotAllowed.Error()},
	} {
		h := srv.HubWS(t, "", tc.query)
		h.mustSend(`{"op":"publish","channel":"chat.room","data":"forged"}`, `{"op":"subscribe","channel":"chat.room"}`)
		for _, op := range []string{"publish", "subscribe"} {
			v := h.expect("error", "code", `"forbidden"`, "channel", `"chat.room"`)
			if msg, _ := v["message"].(string); !strings.HasPrefix(msg, tc.message) {
				t.Errorf("%s, %s: message %q, want %q", tc.name, op, msg, tc.message)
			}
		}
	}

	// The same, as a flood: every forged publish refused and counted.
	base := srv.RSS(t)
	var forbidden, other atomic.Int64
	var firstOther atomic.Value
	start := time.Now()
	n := srv.flood(t, 4, 500, 100_000, func(n int) []string {
		return []string{fmt.Sprintf(`{"op":"publish","channel":"chat.room","data":{"forged":%d}}`, n)}
	}, func(a string) {
		if strings.HasPrefix(a, `{"op":"error","code":"forbidden","message":"`+hub.ErrNoToken.Error()) {
			forbidden.Add(1)
		} else {
			other.Add(1)
			firstOther.CompareAndSwap(nil, a)
		}
	})
	t.Logf("%d forged publishes refused in %v", forbidden.Load(), time.Since(start).Round(time.Millisecond))
	if int(forbidden.Load()) != n || other.Load() != 0 || n < 10_000 {
		t.Errorf("forged publishes: %d sent, %d forbidden, %d other answers (first %v)", n, forbidden.Load(), other.Load(), firstOther.Load())
	}
	if v, want := srv.Metric(t, "sockjs_hub_refused_total", "reason", "forbidden"), float64(n+12); v != want {
		t.Errorf("forbidden refusals counted: %v, want %v", v, want)
	}
	srv.AssertGrowth(t, base, 32<<20)

	// Nothing forged reached the channel: a token holder's publish is
	// its first message.
	writer := srv.HubWS(t, "", sign(secret, []string{"chat.*"}, time.Hour))
	writer.mustSend(`{"op":"publish","channel":"chat.room","data":"genuine"}`)
	writer.expect("published", "channel", `"chat.room"`, "seq", "1")
	reader.expect("message", "channel", `"chat.room"`, "seq", "1", "data", `"genuine"`)
	if seq, msgs := srv.apiHistory(t, "chat.room"); seq != 1 || msgs != 1 {
		t.Errorf("chat.room history: seq %v, %d messages, want 1 and 1", seq, msgs)
	}
	p.Check(t)
}

// subscribeFlood opens socks hub sessions with dial, on at most workers
// goroutines, and subscribes each to each channels named tag.I.J,
// counting the answers: subscribed, refused by the address limit, and
// others (the first of them in firstOther).
func subscribeFlood(t *testing.T, socks, workers, each int, tag string, dial func(i int) (*hubWS, error)) (subscribed, addrLimited, other int64, firstOther any) {
	t.Helper()
	var ok, limited, others atomic.Int64
	var first atomic.Value
	errs := make(chan error, socks)
	parallel(socks, workers, func(i int) {
		h, err := dial(i)
		if err != nil {
			errs <- err
			return
		}
		msgs := make([]string, each)
		for j := range msgs {
			msgs[j] = fmt.Sprintf(`{"op":"subscribe","channel":"%s.%d.%d"}`, tag, i, j)
		}
		if err := h.send(msgs...); err != nil {
			errs <- err
			return
		}
		for range msgs {
			a, err := h.nextRaw()
			switch {
			case err != nil:
				errs <- err
				return
			case strings.HasPrefix(a, `{"op":"subscribed","channel":"`+tag+`.`):
				ok.Add(1)
			case strings.HasPrefix(a, `{"op":"error","code":"too_many_subscriptions","message":"subscription limit of this address reached","channel":"`+tag+`.`):
				limited.Add(1)
			default:
				others.Add(1)
				first.CompareAndSwap(nil, a)
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatalf("%s subscriber: %v", tag, err)
	}
	return ok.Load(), limited.Load(), others.Load(), first.Load()
}
