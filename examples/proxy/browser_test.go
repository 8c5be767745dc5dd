package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// Deadlines: generous, as the machine is shared and make test runs -race.
const (
	browserStart = 60 * time.Second // the browser, a tab, a page
	browserStep  = 30 * time.Second // one step (the page waits up to 20s itself)
)

// TestBrowser drives the chat page in Chromium with each backend and each
// of four transports forced through the page's ?transports=, against the
// real sockjsd (built from cmd/server, run with run.sh's flags): log in,
// presence (from sockjsd's webhooks), say in the lobby (the hub), whisper
// (/api/send), 100 echoes in order, /join a room (and no longer get the
// lobby), quit (4000 "bye"), and a bad password (4001 "bad password").
// e2e/cluster/gateway_test.go runs the same page through three nodes.
func TestBrowser(t *testing.T) {
	chromium := testenv.Chromium(t)
	sockjsdBinary(t) // built before any clock starts
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The browser lives as long as the context of its first call: a timer,
	// not a context deadline, bounds its start.
	started := time.AfterFunc(browserStart, bcancel)
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	started.Stop()

	for _, lang := range []string{"python", "node"} {
		for _, tr := range []string{"websocket", "xhr-streaming", "eventsource", "xhr-polling"} {
			t.Run(lang+"/"+tr, func(t *testing.T) {
				addr := freeAddr(t)
				base := startBackend(t, lang, "http://"+addr)
				// user.offline comes a disconnect delay after the last
				// session ends: 2s rather than 5s keeps the test short.
				startSockjsd(t, addr, base, "-disconnect-delay", "2s")
				chatFlow(t, bctx, base, tr)
			})
		}
	}
}

// tab is one page of the chat.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func openTab(t *testing.T, bctx context.Context, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	timer := time.AfterFunc(browserStart, cancel)
	defer timer.Stop()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return &tab{t: t, ctx: ctx}
}

func (p *tab) eval(js string) any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// wait resolves when the JavaScript condition holds, polled in the page
// (20 ms) for up to 20 s; past that it fails with the page's lines.
func (p *tab) wait(cond string) {
	p.t.Helper()
	p.eval(`new Promise((resolve, reject) => {
		const t0 = Date.now();
		(function poll() {
			try { if (` + cond + `) return resolve(true); } catch (e) {}
			if (Date.now() - t0 > 20000) return reject(new Error('waited 20s: state ' + chat.state + ', lines ' + JSON.stringify(chat.lines)));
			setTimeout(poll, 20);
		})();
	})`)
}

func (p *tab) saw(text string) string {
	return fmt.Sprintf("chat.lines.some(l => l.text.includes(%q))", text)
}

func chatFlow(t *testing.T, bctx context.Context, base, tr string) {
	alice := openTab(t, bctx, base+"/?user=alice&password=wonderland&transports="+tr)
	alice.wait("chat.state === 'open' && chat.user === 'alice'")
	if got := alice.eval("chat.transport"); got != tr {
		t.Fatalf("alice's transport: %v, want %s (forced by ?transports=)", got, tr)
	}
	dora := openTab(t, bctx, base+"/?user=dora&password=secret&transports="+tr)
	dora.wait("chat.state === 'open' && chat.online.includes('alice')")
	alice.wait("chat.online.includes('dora')") // the presence channel

	alice.eval("chat.send({type: 'say', text: 'hello from alice'})")
	dora.wait(dora.saw("[lobby] alice: hello from alice"))
	alice.wait(alice.saw("[lobby] alice: hello from alice"))

	dora.eval("chat.send({type: 'whisper', to: 'alice', text: 'psst'})")
	alice.wait("chat.lines.some(l => l.kind === 'whisper' && l.text.includes('dora → (whisper): psst'))")
	dora.wait("chat.lines.some(l => l.kind === 'whisper' && l.text.includes('→ alice (whisper): psst'))")

	// Numbered messages, sent at once: back in order, each once, and the
	// backend saw them so (seen = n + 1).
	alice.eval("for (let i = 0; i < 100; i++) chat.send({type: 'echo', n: i}); true")
	alice.wait("chat.echoes.length >= 100")
	if bad := alice.eval("chat.echoes.length === 100 && chat.echoes.every((e, i) => e[0] === i && e[1] === i + 1) ? '' : JSON.stringify(chat.echoes)"); bad != "" {
		t.Fatalf("echoes: %v", bad)
	}

	// Through the form, as a person types it.
	alice.eval("document.getElementById('line').value = '/join kitchen'; document.getElementById('send').click(); true")
	alice.wait("chat.room === 'kitchen'")
	dora.eval("chat.send({type: 'say', text: 'lobby only'})")
	dora.wait(dora.saw("lobby only"))
	alice.eval("chat.send({type: 'say', text: 'in the kitchen'})")
	alice.wait(alice.saw("[kitchen] alice: in the kitchen"))
	if alice.eval(alice.saw("lobby only")) == true {
		t.Error("alice got a lobby line after joining the kitchen")
	}

	dora.eval("chat.send({type: 'quit'})")
	dora.wait("chat.state === 'closed' && chat.closeEvent.code === 4000 && chat.closeEvent.reason === 'bye'")
	alice.wait("!chat.online.includes('dora')")

	bad := openTab(t, bctx, base+"/?user=alice&password=nope&transports="+tr)
	bad.wait("chat.state === 'closed' && chat.closeEvent.code === 4001 && chat.closeEvent.reason === 'bad password'")
}
