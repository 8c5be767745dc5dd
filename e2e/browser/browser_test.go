// Package browser drives the real sockjs-client (the pinned npm copy the
// server serves) in a real headless Chromium against the server in
// process: every transport the browser can run, and the situations that
// make clients fall back. Run it alone with `make browser-test`.
package browser

import (
	"testing"
)

// forcedTimeout is the `timeout` (ms) given to sockjs-client when one
// transport is forced. By default the client allows a transport about
// 2×(300 ms + the /info round trip) to open; on a loaded machine under
// -race that can pass before a healthy transport opens, which would fail
// the test for the wrong reason.
const forcedTimeout = 10000

// msgCount is how many messages each connection echoes.
const msgCount = 60

// TestBrowser runs every browser scenario in one Chromium, one subtest
// after another, then prints the measurements as a table.
func TestBrowser(t *testing.T) {
	b := startBrowser(t)
	res := &results{}
	t.Run("transport", func(t *testing.T) { testTransports(t, b, res) })
	t.Run("fallback", func(t *testing.T) { testFallback(t, b, res) })
	t.Run("demo", func(t *testing.T) { testDemo(t, b) })
	t.Run("demo-layout", func(t *testing.T) { testLayout(t, b) })
	t.Run("service-ping", func(t *testing.T) { testServicePing(t, b) })
	t.Run("hub", func(t *testing.T) { testHub(t, b) })
	t.Run("hub-resume", func(t *testing.T) { testHubResume(t, b) })
	t.Log("per-transport measurements (round trips are one message echoed at a time):\n" + res.String())
}

// clientTransports are sockjs-client 1.6.1's transports, in its order of
// preference, and why Chromium cannot run a transport that is skipped.
var clientTransports = []struct {
	name string
	skip string
}{
	{name: "websocket"},
	{name: "xhr-streaming"},
	{name: "xdr-streaming", skip: "needs XDomainRequest, which only IE 8-9 have: sockjs-client disables xdr-* in every other browser"},
	{name: "eventsource"},
	{name: "iframe-eventsource"},
	{name: "htmlfile"},
	{name: "iframe-htmlfile"},
	{name: "xhr-polling"},
	{name: "xdr-polling", skip: "needs XDomainRequest, which only IE 8-9 have: sockjs-client disables xdr-* in every other browser"},
	{name: "iframe-xhr-polling"},
	{name: "jsonp-polling"},
}

// testTransports forces each transport alone, same-origin, and echoes
// messages over it.
func testTransports(t *testing.T, b *browser, res *results) {
	s := startServer(t, serverConfig{})
	p := b.open(t, s.URL()+harnessPath)
	msgs := messages(msgCount)
	for _, tr := range clientTransports {
		t.Run(tr.name, func(t *testing.T) {
			if tr.skip != "" {
				t.Skip(tr.skip)
			}
			p.t = t
			m := exchange(t, p, s, s.URL(), connectOpts{Transports: []string{tr.name}, Timeout: forcedTimeout}, tr.name, msgs)
			res.add("forced "+tr.name, m)
		})
	}
}
