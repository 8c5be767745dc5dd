package browser

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// testHub: two pages of the demo's hub panel on different transports chat
// through a channel, and a backend publish reaches both.
func testHub(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	pages := map[string]*page{}
	for _, tr := range []string{"websocket", "xhr-polling"} {
		p := b.open(t, s.URL()+"/") // the demo page's hub panel
		p.t = t
		do(t, p,
			chromedp.SetValue(chromedp.ID("hub-transport"), tr),
			chromedp.SetValue(chromedp.ID("hub-channel"), "chat.e2e"),
			chromedp.SetValue(chromedp.ID("hub-name"), tr),
			chromedp.Click(chromedp.ID("hub-connect")))
		waitFor[bool](t, p, `document.getElementById("hub-transport-used").textContent === `+jsArg(tr)+
			` && document.getElementById("hub-log").textContent.indexOf("joined chat.e2e") >= 0`)
		pages[tr] = p
	}
	hasLine := func(text string) string {
		return `document.getElementById("hub-log").textContent.indexOf(` + jsArg(text) + `) >= 0`
	}
	// Each page says something; both see both lines.
	for tr, p := range pages {
		do(t, p, chromedp.SetValue(chromedp.ID("hub-text"), "hello from "+tr), chromedp.Click(chromedp.ID("hub-send")))
	}
	for _, p := range pages {
		waitFor[bool](t, p, hasLine("websocket: hello from websocket")+" && "+hasLine("xhr-polling: hello from xhr-polling"))
	}
	// A backend publishes through the API.
	res, err := http.Post(s.URL()+"/api/publish", "application/json", strings.NewReader(`{"channel":"chat.e2e","data":{"name":"backend","text":"deploy finished"}}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("publish: %d", res.StatusCode)
	}
	for _, p := range pages {
		waitFor[bool](t, p, hasLine("#3 backend: deploy finished"))
	}
}

// testHubResume: hub-client.js resumes its subscription with since after
// every reconnect: messages published while it was away arrive once, in
// order; after a server restart (history gone, a new epoch) the page is
// told through onreset.
func testHubResume(t *testing.T, b *browser) {
	s := startServer(t, serverConfig{})
	p := b.open(t, s.URL()+"/")
	p.t = t
	mustEval[bool](p, stepTimeout, `(function () {
		// Each callback touches the DOM: waitFor polls on mutations.
		var n = 0, poke = function () { document.body.setAttribute('data-hub-events', String(++n)); };
		window.got = []; window.resets = []; window.opens = 0;
		window.h = SockJSHub.connect({url: '/hub', transports: ['xhr-streaming'], reconnect: true,
			onopen: function () { window.opens++; poke(); },
			onmessage: function (m) { window.got.push(m.seq); poke(); },
			onevent: poke,
			onreset: function (r) { window.resets.push(r.channel + '@' + r.seq); poke(); }});
		window.h.subscribe('news');
		return true;
	}())`)
	waitFor[bool](t, p, `window.opens === 1 && window.h.channels.news.seq === 0`)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			res, err := http.Post(s.URL()+"/api/publish", "application/json", strings.NewReader(`{"channel":"news","data":`+strconv.Itoa(i)+`}`))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("publish: %d", res.StatusCode)
			}
		}
	}
	seqs := func(n int) string { // "[1,2,...,n]"
		var b strings.Builder
		for i := 1; i <= n; i++ {
			if i > 1 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(i))
		}
		return "[" + b.String() + "]"
	}
	publish(1, 3)
	waitFor[bool](t, p, `JSON.stringify(window.got) === `+jsArg(seqs(3)))
	// The server ends the page's session; what is published before the
	// client is back comes from history.
	var hubHandler *transport.Handler
	for _, h := range s.handlers {
		if h.Prefix() == "/hub" {
			hubHandler = h
		}
	}
	if hubHandler == nil {
		t.Fatal("no /hub service")
	}
	hubHandler.Registry().Range(func(ss *session.Session) { _ = ss.Close(3000, "test: go away") })
	publish(4, 10)
	waitFor[bool](t, p, `window.opens === 2 && JSON.stringify(window.got) === `+jsArg(seqs(10)))
	publish(11, 12)
	waitFor[bool](t, p, `JSON.stringify(window.got) === `+jsArg(seqs(12))+` && window.resets.length === 0`)
	// A restarted server remembers nothing: the page is told.
	s.crash()
	s = s.restart()
	waitFor[bool](t, p, `window.opens === 3 && window.resets.length === 1 && window.resets[0] === "news@0"`)
	publish(1, 1)
	waitFor[bool](t, p, `window.got.length === 13 && window.got[12] === 1`)
}
