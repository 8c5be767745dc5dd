package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// The gateway's secrets in these tests.
const (
	gwSecret = "gateway-proxy-secret-8d1e"
	gwAPIKey = "gateway-api-key-27c4"
)

// echoes is how many numbered messages a page sends and gets back.
const echoes = 1000

// gatewayEnv is the gateway in cluster mode: three nodes with /chat
// proxied to the Python chat backend of examples/proxy, behind haproxy.
type gatewayEnv struct {
	*clusterEnv
	backend string // the backend's base URL: it serves the chat page
}

// startGateway runs redis-server, the Python example backend and three
// nodes proxying /chat to it (with run.sh's flags: webhooks to the
// backend, the page's origin allowed) behind haproxy without stickiness.
// The backend calls sockjsd's API through the balancer, so /api/send
// lands on any node.
func startGateway(t *testing.T) *gatewayEnv {
	t.Helper()
	need(t, "redis-server", "haproxy", "python3")
	backendAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + backendAddr
	env := startCluster(t,
		"-proxy", "/chat="+base+"/sockjs", "-proxy-secret", gwSecret,
		"-webhook", base+"/webhook", "-hub-api-key", gwAPIKey,
		// The page's origin, and the nodes' own (the balancer's): the
		// iframe transports' requests come from sockjsd's iframe page.
		"-allowed-origins", base+","+lbPlaceholder, "-allow-iframe-transports",
	)
	script := filepath.Join(testenv.RepoRoot(t), "examples", "proxy", "python", "backend.py")
	// The secrets in the environment, as run.sh passes them.
	startProc(t, "backend", "env", "PROXY_SECRET="+gwSecret, "SOCKJSD_API_KEY="+gwAPIKey, "PYTHONDONTWRITEBYTECODE=1",
		"python3", script, "-v", "--listen", backendAddr, "--sockjsd", env.lb)
	waitFor(t, 10*time.Second, "the backend to serve the page", func() bool { return status(base+"/") == 200 })
	return &gatewayEnv{clusterEnv: env, backend: base}
}

// userSessions is GET /api/sessions?user= through the balancer.
func (e *gatewayEnv) userSessions(t *testing.T, user string) []struct{ Session, Node, Transport string } {
	t.Helper()
	req, _ := http.NewRequest("GET", e.lb+"/api/sessions?user="+user, nil)
	req.Header.Set("Authorization", "Bearer "+gwAPIKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/sessions: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		Sessions []struct{ Session, Node, Transport string }
	}
	if err := json.Unmarshal(body, &v); resp.StatusCode != 200 || err != nil {
		t.Fatalf("GET /api/sessions?user=%s: %d %s", user, resp.StatusCode, body)
	}
	return v.Sessions
}

// page is one tab of the chat page (examples/proxy/web/index.html), whose
// window.chat the test reads.
type page struct {
	t     *testing.T
	ctx   context.Context
	close func() // closes the tab
}

func openPage(t *testing.T, browser context.Context, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	timer := time.AfterFunc(60*time.Second, cancel) // a context deadline would end the tab
	defer timer.Stop()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return &page{t: t, ctx: ctx, close: cancel}
}

// eval runs js in the page, awaiting the promise it may return, for up to
// 30 s plus extra.
func (p *page) eval(js string, extra ...time.Duration) any {
	p.t.Helper()
	d := 30 * time.Second
	for _, e := range extra {
		d += e
	}
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%.200s: %v", js, err)
	}
	return v
}

// wait resolves when the JavaScript condition holds, polled in the page
// every 20 ms for up to d; past that it fails with the page's state.
func (p *page) wait(d time.Duration, cond string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`new Promise((resolve, reject) => {
		const t0 = Date.now();
		(function poll() {
			try { if (%s) return resolve(true); } catch (e) {}
			if (Date.now() - t0 > %d) return reject(new Error('waited %s for %s: state ' + chat.state +
				', close ' + JSON.stringify(chat.closeEvent) + ', echoes ' + chat.echoes.length + ', last lines ' + JSON.stringify(chat.lines.slice(-5))));
			setTimeout(poll, 20);
		})();
	})`, cond, d.Milliseconds(), d, strings.ReplaceAll(cond, "'", `\'`)), d)
}

// TestClusterGateway: the proxy example's chat page in Chromium, the real
// sockjs-client forced onto each transport, through haproxy over three
// nodes proxying /chat to the Python example backend. On each transport:
// a wrong password ends in the backend's close 4001; 1,000 numbered
// messages sent at once come back in order, each once, and the backend saw
// them in order, each once; a whisper (the backend's POST /api/send to a
// user, through the balancer) reaches that user's pages on two different
// nodes, as /api/sessions shows them.
func TestClusterGateway(t *testing.T) {
	env := startGateway(t)
	browser := startChromium(t)
	// The transport each forced client transport is on sockjsd's side.
	for _, tr := range []struct{ client, server string }{
		{"websocket", "websocket"},
		{"xhr-streaming", "xhr-streaming"},
		{"eventsource", "eventsource"},
		{"iframe-htmlfile", "htmlfile"},
		{"xhr-polling", "xhr-polling"},
		{"jsonp-polling", "jsonp-polling"},
	} {
		t.Run(tr.client, func(t *testing.T) {
			env.t = t
			start, before := time.Now(), env.landing()
			user := "u-" + tr.client
			url := func(user, password string) string {
				return env.backend + "/?user=" + user + "&password=" + password + "&transports=" + tr.client
			}

			bad := openPage(t, browser, url(user, "nope"))
			bad.wait(30*time.Second, "chat.state === 'closed' && chat.closeEvent !== null")
			if got := bad.eval("chat.closeEvent.code + ' ' + chat.closeEvent.reason"); got != "4001 bad password" {
				t.Fatalf("a wrong password: the page saw close %v, want 4001 bad password", got)
			}

			first := openPage(t, browser, url(user, "secret"))
			first.wait(30*time.Second, "chat.state === 'open' && chat.user !== null")
			if got := first.eval("chat.transport"); got != tr.client {
				t.Fatalf("transport %v, want %s (forced by ?transports=)", got, tr.client)
			}
			// Each page's session is the one /api/sessions lists anew.
			known := map[string]bool{}
			newSession := func() (node string) {
				t.Helper()
				var fresh []string
				for _, s := range env.userSessions(t, user) {
					if s.Transport != tr.server {
						t.Fatalf("/api/sessions: transport %q, want %q", s.Transport, tr.server)
					}
					if !known[s.Session] {
						known[s.Session] = true
						fresh = append(fresh, s.Session)
						node = s.Node
					}
				}
				if len(fresh) != 1 || node == "" {
					t.Fatalf("/api/sessions?user=%s: new sessions %v (node %q), want one with its node", user, fresh, node)
				}
				return node
			}
			firstNode := newSession()

			echoStart := time.Now()
			first.eval(fmt.Sprintf("for (let i = 0; i < %d; i++) chat.send({type: 'echo', n: i}); true", echoes))
			first.wait(30*time.Second, fmt.Sprintf("chat.echoes.length >= %d", echoes))
			echoTime := time.Since(echoStart)
			checkEchoes(t, first)

			// A second page of the same user on another node: round robin
			// puts most new sessions elsewhere; a page that landed on the
			// first's node is closed (a browser opens at most 6
			// connections to one host, and each streaming page holds one).
			pages, nodes := []*page{first}, []string{firstNode}
			for tries := 0; len(pages) < 2; tries++ {
				if tries == 8 {
					t.Fatalf("8 more pages of %s, all on %s", user, firstNode)
				}
				p := openPage(t, browser, url(user, "secret"))
				p.wait(30*time.Second, "chat.state === 'open' && chat.user !== null")
				if node := newSession(); node != firstNode {
					pages, nodes = append(pages, p), append(nodes, node)
				} else {
					p.close()
				}
			}

			sender := openPage(t, browser, url(user+"-w", "secret"))
			sender.wait(30*time.Second, "chat.state === 'open' && chat.user !== null")
			text := "psst over " + tr.client
			sender.eval(fmt.Sprintf("chat.send({type: 'whisper', to: %q, text: %q})", user, text))
			line := fmt.Sprintf("%s → (whisper): %s", user+"-w", text)
			sender.wait(30*time.Second, fmt.Sprintf("chat.lines.some(l => l.kind === 'whisper' && l.text.endsWith(%q))", "→ "+user+" (whisper): "+text))
			for i, p := range pages {
				p.wait(30*time.Second, fmt.Sprintf("chat.lines.some(l => l.kind === 'whisper' && l.text.endsWith(%q))", line))
				if n := p.eval(fmt.Sprintf("chat.lines.filter(l => l.text.endsWith(%q)).length", line)); n != 1.0 {
					t.Fatalf("page %d got the whisper %v times", i+1, n)
				}
			}
			// Nothing came twice meanwhile.
			checkEchoes(t, first)
			var forwarded float64
			for i, f := range env.landing().forwarded {
				forwarded += f - before.forwarded[i]
			}
			t.Logf("%s: %d echoes in %s; the whisper reached %d pages on nodes %v; %.0f requests forwarded between nodes; %s in all",
				tr.client, echoes, echoTime.Round(time.Millisecond), len(pages), nodes, forwarded, time.Since(start).Round(time.Millisecond))
		})
	}
	env.t = t
	env.checkNoSecret()
	for _, n := range env.nodes {
		for _, s := range []string{gwSecret, gwAPIKey} {
			if strings.Contains(n.p.Out.String(), s) {
				t.Errorf("%s logged a gateway secret", n.name)
			}
		}
	}
}

// checkEchoes: the page got exactly the echoes 0..echoes-1, in order, and
// each says the backend had seen n+1 of them: none lost, doubled or
// reordered either way.
func checkEchoes(t *testing.T, p *page) {
	t.Helper()
	bad := p.eval(fmt.Sprintf(`(() => {
		const e = chat.echoes;
		if (e.length !== %d) return 'got ' + e.length + ' echoes';
		const i = e.findIndex((x, i) => x[0] !== i || x[1] !== i + 1);
		return i < 0 ? '' : 'echo ' + i + ' is ' + JSON.stringify(e.slice(i, i + 3)) + ', want [n, seen] = [' + i + ', ' + (i + 1) + ']';
	})()`, echoes))
	if bad != "" {
		t.Fatal(bad)
	}
}
