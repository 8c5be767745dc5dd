package browser

import (
	"io"
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
	// hub-client.js answered the hub's {"op":"ping"}: the panel shows the
	// round trip the next ping carried, so the server had recorded it in
	// /metrics before. The websocket page's browser also answered the
	// websocket ping sent after the open frame, before any hub pong (its
	// frames leave in order).
	for _, p := range pages {
		waitFor[bool](t, p, `/ ms$/.test(document.getElementById("hub-rtt").textContent)`)
	}
	_, body := httpGet(t, s.URL()+"/metrics")
	for _, series := range []string{
		`sockjs_ping_rtt_seconds_count{service="hub",transport="websocket"}`,
		`sockjs_ping_rtt_seconds_count{service="hub",transport="xhr-polling"}`,
		`sockjs_websocket_ping_rtt_seconds_count{service="hub",transport="websocket"}`,
	} {
		n := seriesValue(body, series)
		if n < 1 {
			t.Errorf("%s = %v, want at least 1", series, n)
			continue
		}
		sum := seriesValue(body, strings.Replace(series, "_count{", "_sum{", 1))
		t.Logf("%s: %.0f samples, mean %.2f ms", strings.TrimSuffix(series, "}"), n, sum/n*1000)
	}
	t.Run("plain-sockjs-client", func(t *testing.T) { testHubPlainClient(t, b, s) })
}

// plainHubJS: the bare sockjs-client (no sockjsd.js, no hub-client.js)
// speaks the hub's protocol as docs/hub.md has it, answers two pings, and
// resolves with every message it got, or rejects on one that is not a
// JSON object with an op.
const plainHubJS = `new Promise(function (resolve, reject) {
	var got = [], pings = 0;
	var timer = setTimeout(function () { reject(new Error("timeout: got " + JSON.stringify(got))); }, 30000);
	var sock = new SockJS("/hub", null, {transports: [%s], timeout: 10000});
	sock.onopen = function () { sock.send(JSON.stringify({op: "subscribe", channel: "news"})); };
	sock.onmessage = function (e) {
		got.push(e.data);
		var m;
		try { m = JSON.parse(e.data); } catch (err) { m = null; }
		if (!m || typeof m.op !== "string") {
			clearTimeout(timer); sock.close(); reject(new Error("not a hub message: " + JSON.stringify(e.data))); return;
		}
		if (m.op === "ping" && ++pings <= 2) { sock.send(JSON.stringify({op: "pong", id: m.id})); }
		if (pings === 2) { clearTimeout(timer); sock.close(); resolve(got); }
	};
	sock.onclose = function (e) { clearTimeout(timer); reject(new Error("closed " + e.code + " " + e.reason)); };
})`

// testHubPlainClient: a page with only sockjs-client on /hub gets JSON
// only, on a streaming and a polling transport and on websocket (whose
// pings the browser answers below the script).
func testHubPlainClient(t *testing.T, b *browser, s *server) {
	p := b.open(t, s.URL()+harnessPath)
	for _, tr := range []string{"websocket", "xhr-streaming", "xhr-polling"} {
		t.Run(tr, func(t *testing.T) {
			p.t = t
			got := mustEval[[]string](p, stepTimeout, sprintf(plainHubJS, jsArg(tr)))
			t.Logf("%s: %d messages, first %q", tr, len(got), got[0])
		})
	}
}

// httpGet fetches url's body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// seriesValue is one series' value in a /metrics body (0 when absent).
func seriesValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
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
	hubHandler.Range(func(ss *session.Session) { _ = ss.Close(3000, "test: go away") })
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
