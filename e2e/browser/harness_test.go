package browser

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// harnessPath is the test page (testdata/harness.html): sockjs-client, our
// wrapper and window.H, which the helpers below drive.
const harnessPath = "/e2e/harness.html"

// connectOpts are the options of H.connect (SockJSD.connect underneath).
type connectOpts struct {
	URL        string   `json:"url"`
	Transports []string `json:"transports,omitempty"`
	// Timeout is the least time, in ms, each transport gets to open
	// before the client tries the next (sockjs-client's `timeout`).
	Timeout   int  `json:"timeout,omitempty"`
	Reconnect bool `json:"reconnect,omitempty"`
}

type openInfo struct {
	Transport     string     `json:"transport"`
	SockTransport string     `json:"sockTransport"` // sock.transport of sockjs-client itself
	ConnectMs     float64    `json:"connectMs"`
	Attempt       int        `json:"attempt"`
	Failed        *closeInfo `json:"failed"` // the close that came instead of the open
}

type closeInfo struct {
	Code         int    `json:"code"`
	Reason       string `json:"reason"`
	WasClean     bool   `json:"wasClean"`
	Reconnecting bool   `json:"reconnecting"`
}

func (c closeInfo) String() string {
	return fmt.Sprintf("close %d %q (clean=%v)", c.Code, c.Reason, c.WasClean)
}

var tags atomic.Int64

// newTag makes a query value that identifies one connection on the server.
func newTag() string { return fmt.Sprintf("t%d", tags.Add(1)) }

// echoURL is base's /echo with ?tag=tag, which sockjs-client keeps on
// every request of the session (and the server in session.Request).
func echoURL(base, tag string) string {
	return base + "/echo?tag=" + url.QueryEscape(tag)
}

func (p *page) connect(o connectOpts) {
	p.t.Helper()
	mustEval[chromedp.Void](p, stepTimeout, "H.connect("+jsArg(o)+")")
}

// waitOpen waits for the n-th open of the connection (1-based); a close
// instead (without reconnect) is returned in Failed.
func (p *page) waitOpen(n int, d time.Duration) (openInfo, error) {
	return eval[openInfo](p, d+5*time.Second, fmt.Sprintf("H.waitOpen(%d, %d)", n, d.Milliseconds()))
}

func (p *page) waitClose(n int, d time.Duration) closeInfo {
	p.t.Helper()
	return mustEval[closeInfo](p, d+5*time.Second, fmt.Sprintf("H.waitClose(%d, %d)", n, d.Milliseconds()))
}

// echo sends msgs one at a time, each after the previous one came back,
// checks that they all came back in order, and returns the round trips
// in ms.
func (p *page) echo(msgs []string) []float64 {
	p.t.Helper()
	type result struct {
		Got  []string  `json:"got"`
		Rtts []float64 `json:"rtts"`
	}
	const perMessage = 20 * time.Second
	r := mustEval[result](p, 3*time.Minute, fmt.Sprintf("H.echo(%s, %d)", jsArg(msgs), perMessage.Milliseconds()))
	if !slices.Equal(r.Got, msgs) {
		for i := range msgs {
			if i >= len(r.Got) || r.Got[i] != msgs[i] {
				got := "(nothing)"
				if i < len(r.Got) {
					got = abbrev(r.Got[i])
				}
				p.t.Fatalf("echo #%d: got %q, sent %q (%d of %d came back)", i, got, abbrev(msgs[i]), len(r.Got), len(msgs))
			}
		}
		p.t.Fatalf("echo: %d messages came back, sent %d", len(r.Got), len(msgs))
	}
	return r.Rtts
}

// close closes the connection from the page and returns the close event.
func (p *page) close() closeInfo {
	p.t.Helper()
	return mustEval[closeInfo](p, stepTimeout, fmt.Sprintf("H.close(%d)", (30*time.Second).Milliseconds()))
}

// messages returns n test messages: ASCII, unicode (with characters that
// JSON, JavaScript and HTML treat specially) and 16 KiB ones. Each starts
// with its index so that a reordering shows.
func messages(n int) []string {
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB
	out := make([]string, n)
	for i := range out {
		switch {
		case i%10 == 9:
			out[i] = fmt.Sprintf("%03d ", i) + big[4:]
		case i%3 == 0:
			out[i] = fmt.Sprintf("%03d ascii: the quick brown fox jumps over the lazy dog", i)
		case i%3 == 1:
			out[i] = fmt.Sprintf("%03d unicode: żółć ✓ 日本語 🚀 \u2028\u2029 é \u200c\ufeff", i)
		default:
			out[i] = fmt.Sprintf("%03d specials: \"quoted\" \\ </script><b>&amp; \t\n\r \x01 \x7f", i)
		}
	}
	return out
}

// exchange opens a connection with o on a page already loaded, echoes
// msgs, checks the transports on both ends, closes it cleanly and
// returns the measurements. wantClient is the sockjs-client transport
// expected ("" for any); the server must have seen the matching one.
func exchange(t *testing.T, p *page, s *server, base string, o connectOpts, wantClient string, msgs []string) measurement {
	t.Helper()
	tag := newTag()
	o.URL = echoURL(base, tag)
	p.connect(o)
	info, err := p.waitOpen(1, stepTimeout)
	if err != nil {
		t.Fatalf("waiting for open: %v", err)
	}
	if info.Failed != nil {
		t.Fatalf("connection did not open: %v", *info.Failed)
	}
	checkTransport(t, info, wantClient)
	rtts := p.echo(msgs)
	if s != nil {
		checkServerSaw(t, s, tag, info.Transport, wantClient != "")
	}
	if c := p.close(); c.Code != 1000 || !c.WasClean {
		t.Errorf("close from the page: got %v, want 1000 clean", c)
	}
	return measurement{transport: info.Transport, connectMs: info.ConnectMs, rtts: rtts}
}

// checkServerSaw checks that the server has a session for tag over the
// server transport that matches the client's; when the transport was
// forced, that must be the only one.
func checkServerSaw(t *testing.T, s *server, tag, client string, forced bool) {
	t.Helper()
	got := s.sessionTransports(tag)
	want := serverTransport(client)
	switch {
	case !slices.Contains(got, want):
		t.Errorf("server sessions tagged %s are over %v, want one over %q (client transport %q)", tag, got, want, client)
	case forced && len(got) != 1:
		t.Errorf("server has %d sessions tagged %s (%v) for one forced %q connection", len(got), tag, got, client)
	case len(got) > 1:
		t.Logf("server sessions of this client, abandoned attempts included: %v", got)
	}
}

func checkTransport(t *testing.T, info openInfo, want string) {
	t.Helper()
	if info.SockTransport != info.Transport {
		t.Errorf("wrapper says transport %q, sock.transport says %q", info.Transport, info.SockTransport)
	}
	if want != "" && info.Transport != want {
		t.Errorf("transport: got %q, want %q", info.Transport, want)
	}
}

// serverTransport is the server transport a sockjs-client transport uses:
// the iframe-* transports run eventsource, htmlfile or xhr-polling inside
// the iframe page.
func serverTransport(client string) string {
	switch client {
	case "iframe-eventsource":
		return "eventsource"
	case "iframe-htmlfile":
		return "htmlfile"
	case "iframe-xhr-polling":
		return "xhr-polling"
	}
	return client
}
