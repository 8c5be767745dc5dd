package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// startChromium runs headless Chromium with a fresh profile (the flags of
// e2e/browser) and returns a tab's context.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	chromiumPath := testenv.Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The browser lives as long as the context of its first Run: no
	// timeout on that context, a timer cancels it instead.
	timer := time.AfterFunc(60*time.Second, cancel)
	err := chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	timer.Stop()
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestClusterBrowser: the real sockjs-client in Chromium, through haproxy
// over three nodes, forced onto each HTTP transport, including the two
// node cannot run (htmlfile and jsonp-polling need a document).
func TestClusterBrowser(t *testing.T) {
	need(t)
	env := startCluster(t)
	ctx := startChromium(t)
	dist := filepath.Join("..", "..", "web", "sockjs-client", "node_modules", "sockjs-client", "dist", "sockjs.min.js")
	if _, err := os.Stat(dist); err != nil {
		t.Skipf("sockjs-client is not installed in web/sockjs-client (run `make deps-client`): %v", err)
	}
	burstJS, err := os.ReadFile(filepath.Join("testdata", "burst.js"))
	if err != nil {
		t.Fatal(err)
	}
	// A page of the balancer's origin (htmlfile needs the same origin),
	// with the client the nodes serve and burst().
	load := fmt.Sprintf(`new Promise(function (resolve, reject) {
		var s = document.createElement('script');
		s.src = '/sockjs-client/sockjs.min.js';
		s.onload = function () { (0, eval)(%q); resolve(typeof SockJS + ' ' + typeof burst); };
		s.onerror = reject;
		document.head.appendChild(s);
	})`, string(burstJS))
	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = chromedp.Do(step, chromedp.Navigate(env.lb+"/healthz"))
	var loaded string
	if err == nil {
		loaded, err = chromedp.Run(step, chromedp.Evaluate[string](load, chromedp.EvalAwaitPromise))
	}
	cancel()
	if err != nil || loaded != "function function" {
		t.Fatalf("load the client through the balancer: %q, %v", loaded, err)
	}
	for _, tr := range []string{"xhr-polling", "xhr-streaming", "eventsource", "htmlfile", "jsonp-polling"} {
		t.Run(tr, func(t *testing.T) {
			env.t = t
			before := env.landing()
			step, cancel := context.WithTimeout(ctx, 150*time.Second)
			defer cancel()
			js := fmt.Sprintf(`burst(SockJS, %q, %q, %d, 120000)`, env.lb+"/echo", tr, messages)
			res, err := chromedp.Run(step, chromedp.Evaluate[burstResult](js, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("burst: %v", err)
			}
			res.check(t, tr, messages)
			env.checkAllNodes(before)
		})
	}
	env.t = t
	env.checkNoSecret()
}
