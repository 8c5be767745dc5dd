package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/web"
)

// Deadlines for the browser. They are generous: the machine is shared and
// the server runs under -race.
const (
	startTimeout = 60 * time.Second // browser start, opening a tab, loading a page
	stepTimeout  = 60 * time.Second // one evaluated step (connect, an echo batch, close)
)

// browser is one headless Chromium shared by the subtests; each page is a
// tab of it.
type browser struct {
	ctx context.Context
}

// startBrowser starts Chromium with a fresh profile, or fails the test with
// what to install when it or the npm client is missing; extra adds flags.
func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	chromiumPath := testenv.Chromium(t)
	testenv.NPMPackage(t, filepath.Join(repoRoot(t), web.DefaultDir), "sockjs-client", "deps-client")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		// The flags the project runs Chromium with on a closed network.
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Background tabs must keep their timers: sockjs-client's
		// polling and our round-trip clocks run on them.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("mute-audio", true),
	}
	opts = append(opts, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	// The first Run starts the browser, which lives as long as the context
	// of that call, so it gets no timeout of its own: a watchdog cancels it
	// instead.
	if err := watchdog(bcancel, startTimeout, func() error {
		return chromedp.Do(bctx, chromedp.Navigate("about:blank"))
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{ctx: bctx}
}

// watchdog runs f and cancels (the context f runs on) if it takes longer
// than d.
func watchdog(cancel context.CancelFunc, d time.Duration, f func() error) error {
	fired := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		close(fired)
		cancel()
	})
	err := f()
	if !timer.Stop() {
		<-fired
		return fmt.Errorf("gave up after %v: %w", d, err)
	}
	return err
}

// page is one browser tab.
type page struct {
	t   *testing.T
	ctx context.Context
}

// open loads url in a new tab, closed when the test ends.
func (b *browser) open(t *testing.T, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	if err := watchdog(cancel, startTimeout, func() error {
		return chromedp.Do(ctx, chromedp.Navigate(url))
	}); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return &page{t: t, ctx: ctx}
}

// eval runs a JavaScript expression (awaiting a promise it returns) with a
// deadline and decodes its JSON value into T.
func eval[T any](p *page, d time.Duration, js string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// mustEval is eval that fails the test on error.
func mustEval[T any](p *page, d time.Duration, js string) T {
	p.t.Helper()
	v, err := eval[T](p, d, js)
	if err != nil {
		p.t.Fatalf("%s: %v", abbrev(js), err)
	}
	return v
}

// jsArg encodes v as a JavaScript literal.
func jsArg(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func abbrev(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
