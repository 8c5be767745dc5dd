package browser

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// fallbackTimeout is the `timeout` (ms) the fallback scenarios give
// sockjs-client: the least time each transport gets to open before the
// client tries the next. The client's own default, about 2×(300 ms + the
// /info round trip), falls back just as well on an idle machine, but on a
// loaded one under -race it can give up on a healthy transport, so the
// scenarios would land on a transport further down the list than a user
// would.
const fallbackTimeout = 3000

// streaming and polling are sockjs-client's transports by kind (htmlfile
// streams, but the client lists it with the polling ones; it never comes
// before eventsource).
var (
	streaming = []string{"xhr-streaming", "eventsource", "iframe-eventsource"}
	polling   = []string{"xhr-polling", "iframe-xhr-polling", "jsonp-polling"}
)

func testFallback(t *testing.T, b *browser, res *results) {
	msgs := messages(msgCount)

	t.Run("no-websocket-in-page", func(t *testing.T) {
		s := startServer(t, serverConfig{})
		p := b.open(t, s.URL()+harnessPath+"?nows=1")
		if ws := mustEval[string](p, stepTimeout, "typeof window.WebSocket"); ws != "undefined" {
			t.Fatalf("window.WebSocket is %s after removal", ws)
		}
		m := exchange(t, p, s, s.URL(), connectOpts{Timeout: fallbackTimeout}, "", msgs)
		wantOneOf(t, m.transport, streaming)
		res.add("no WebSocket in page", m)
	})

	t.Run("proxy-refuses-websocket", func(t *testing.T) {
		s := startServer(t, serverConfig{})
		px := startProxy(t, s.URL(), noUpgrade)
		p := b.open(t, px.URL+harnessPath)
		m := exchange(t, p, s, px.URL, connectOpts{Timeout: fallbackTimeout}, "", msgs)
		wantOneOf(t, m.transport, streaming)
		if px.upgrades.Load() == 0 {
			t.Error("the client never tried websocket through the proxy")
		}
		res.add("proxy refuses websocket", m)
	})

	t.Run("buffering-proxy", func(t *testing.T) {
		s := startServer(t, serverConfig{})
		px := startProxy(t, s.URL(), buffering)
		p := b.open(t, px.URL+harnessPath)
		m := exchange(t, p, s, px.URL, connectOpts{Timeout: fallbackTimeout}, "", msgs)
		wantOneOf(t, m.transport, polling)
		res.add("buffering proxy", m)
		// How the client got there. sockjs-client 1.6.1 does not clear a
		// transport's timer when the transport fails before it, so each
		// timer fires during a later attempt: the refused websocket's
		// timer ends xhr-streaming, xhr-streaming's ends eventsource a few
		// ms after it starts, and so on down the list. The client lands on
		// xhr-polling when it opens within those few ms, otherwise on
		// iframe-xhr-polling.
		reqs := px.requests()
		t.Logf("first requests through the buffering proxy (connection abandoned by the client: status 200, no body):\n  %s",
			strings.Join(reqs[:min(len(reqs), 16)], "\n  "))
	})

	t.Run("cross-origin", func(t *testing.T) { testCrossOrigin(t, b, res, msgs) })
	t.Run("server-restart", func(t *testing.T) { testRestart(t, b, res) })
}

// corsTransports are the transports a page on another origin uses
// directly (the iframe ones and jsonp carry no trustworthy Origin and are
// off under an allowlist).
var corsTransports = []string{"websocket", "xhr-streaming", "eventsource", "xhr-polling"}

// testCrossOrigin loads the page from one loopback origin and connects to
// the server on another.
func testCrossOrigin(t *testing.T, b *browser, res *results, msgs []string) {
	pages := startServer(t, serverConfig{}) // serves the page only
	p := b.open(t, pages.URL()+harnessPath)

	t.Run("allowed", func(t *testing.T) {
		s := startServer(t, serverConfig{AllowedOrigins: []string{pages.URL()}})
		for _, tr := range append([]string{""}, corsTransports...) {
			name := tr
			if name == "" {
				name = "automatic"
			}
			t.Run(name, func(t *testing.T) {
				p.t = t
				o := connectOpts{Timeout: forcedTimeout}
				if tr != "" {
					o.Transports = []string{tr}
				}
				m := exchange(t, p, s, s.URL(), o, tr, msgs[:20])
				res.add("cross-origin, allowed, "+name, m)
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		s := startServer(t, serverConfig{AllowedOrigins: []string{"http://app.example.com"}})
		for _, tr := range append([]string{""}, corsTransports...) {
			name := tr
			if name == "" {
				name = "automatic"
			}
			t.Run(name, func(t *testing.T) {
				p.t = t
				tag := newTag()
				o := connectOpts{URL: echoURL(s.URL(), tag), Timeout: forcedTimeout}
				if tr != "" {
					o.Transports = []string{tr}
				}
				p.connect(o)
				info, err := p.waitOpen(1, stepTimeout)
				if err != nil {
					t.Fatalf("waiting for the refusal: %v", err)
				}
				if info.Failed == nil {
					t.Fatalf("a page from a refused origin opened a %s session", info.Transport)
				}
				if got := s.sessionTransports(tag); len(got) != 0 {
					t.Errorf("the server opened sessions for a refused origin: %v", got)
				}
				t.Logf("refused: %v", *info.Failed)
			})
		}
	})
}

// testRestart stops the server under a connected page and starts a new one
// on the same port: the page must see the close, reconnect (a new session)
// and carry on.
func testRestart(t *testing.T, b *browser, res *results) {
	cases := []struct {
		name      string
		transport string // "" for automatic
		crash     bool   // drop every connection instead of a graceful shutdown
		wantCode  int    // 0: any
	}{
		{name: "graceful/automatic", wantCode: 1001},
		{name: "crash/automatic", crash: true},
		{name: "graceful/xhr-streaming", transport: "xhr-streaming", wantCode: 1001},
		{name: "crash/xhr-polling", transport: "xhr-polling", crash: true},
	}
	msgs := messages(20)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, serverConfig{})
			p := b.open(t, s.URL()+harnessPath)
			tag := newTag()
			o := connectOpts{URL: echoURL(s.URL(), tag), Timeout: forcedTimeout, Reconnect: true}
			if c.transport != "" {
				o.Transports = []string{c.transport}
			}
			p.connect(o)
			first := mustOpen(t, p, 1)
			checkTransport(t, first, c.transport)
			p.echo(msgs)

			start := time.Now()
			if c.crash {
				s.crash()
			} else {
				s.stop()
			}
			cl := p.waitClose(1, stepTimeout)
			if !cl.Reconnecting {
				t.Errorf("close %v: the wrapper does not reconnect", cl)
			}
			if c.wantCode != 0 && cl.Code != c.wantCode {
				t.Errorf("close after the restart: got %v, want code %d", cl, c.wantCode)
			}
			t.Logf("page saw %v %v after the stop", cl, time.Since(start).Round(time.Millisecond))

			s2 := s.restart()
			second := mustOpen(t, p, 2)
			checkTransport(t, second, c.transport)
			rtts := p.echo(msgs)
			checkServerSaw(t, s2, tag, second.Transport, c.transport != "")
			if cl := p.close(); cl.Code != 1000 {
				t.Errorf("final close: got %v, want 1000", cl)
			}
			res.add("reconnected after restart ("+c.name+")", measurement{
				transport: second.Transport, connectMs: second.ConnectMs, rtts: rtts})
		})
	}
}

func mustOpen(t *testing.T, p *page, n int) openInfo {
	t.Helper()
	info, err := p.waitOpen(n, stepTimeout)
	if err != nil {
		t.Fatalf("waiting for open #%d: %v", n, err)
	}
	if info.Failed != nil {
		t.Fatalf("open #%d: connection closed instead: %v", n, *info.Failed)
	}
	return info
}

func wantOneOf(t *testing.T, got string, want []string) {
	t.Helper()
	if !slices.Contains(want, got) {
		t.Errorf("transport %q, want one of %v", got, want)
	}
}
