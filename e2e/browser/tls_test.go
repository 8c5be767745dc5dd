package browser

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	procs.Cleanup()
	os.Exit(code)
}

// tlsBinary is sockjsd, built from cmd/server, serving HTTPS with the
// certificate files certFile and keyFile.
type tlsBinary struct {
	base              string // https://127.0.0.1:port
	addr              string
	certFile, keyFile string
	ca                *testenv.CA
	proc              *procs.Proc
	hc                *http.Client
}

// pushCmd is the -exec service /push: each session gets "pushed" at once,
// with no message from the client, then stays open.
const pushCmd = `/push=sh -c 'echo pushed; exec cat'`

// startTLSBinary runs sockjsd with -tls-cert on leaf (the CA's) and args,
// and returns once it answers /healthz over HTTPS.
func startTLSBinary(t *testing.T, ca *testenv.CA, leaf testenv.Leaf, args ...string) *tlsBinary {
	t.Helper()
	dir := t.TempDir()
	b := &tlsBinary{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), ca: ca}
	leaf.Write(t, b.certFile, b.keyFile)
	b.addr = fmt.Sprintf("127.0.0.1:%d", procs.FreePort(t))
	b.base = "https://" + b.addr
	b.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}}
	argv := append([]string{procs.Server(t), "-addr", b.addr, "-client-dir", filepath.Join(repoRoot(t), "web", "sockjs-client"),
		"-tls-cert", b.certFile, "-tls-key", b.keyFile, "-tls-reload-interval", "200ms",
		"-exec", pushCmd, "-exec-max-per-address", "0"}, args...)
	b.proc = procs.Start(t, "sockjsd", argv...)
	procs.WaitFor(t, 60*time.Second, "sockjsd to answer /healthz over HTTPS", func() bool {
		res, err := b.hc.Get(b.base + "/healthz")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == 200
	})
	return b
}

// metric is the sum of a metric's samples with labels on /metrics.
func (b *tlsBinary) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	res, err := b.hc.Get(b.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	v, err := procs.Metric(string(body), name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// serial is the serial of the certificate a new TLS connection gets.
func (b *tlsBinary) serial(t *testing.T) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", b.addr, &tls.Config{RootCAs: b.ca.Pool})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// waitSerial waits for new handshakes to get the certificate with serial.
func (b *tlsBinary) waitSerial(t *testing.T, serial int64) {
	t.Helper()
	procs.WaitFor(t, 30*time.Second, fmt.Sprintf("a new handshake to get serial %d", serial), func() bool { return b.serial(t) == serial })
}

// openHarness opens a tab on base's /healthz (a page of the server's
// origin) and loads into it what testdata/harness.html loads: the
// server's sockjs-client and sockjsd.js, and window.H.
func (b *browser) openHarness(t *testing.T, base string) *page {
	t.Helper()
	p := b.open(t, base+"/healthz")
	harness, err := os.ReadFile(filepath.Join("testdata", "harness.js"))
	if err != nil {
		t.Fatal(err)
	}
	js := fmt.Sprintf(`new Promise(function (resolve, reject) {
  function load(src, next) {
    var s = document.createElement('script');
    s.src = src;
    s.onload = next;
    s.onerror = function () { reject(new Error('could not load ' + src)); };
    document.head.appendChild(s);
  }
  load('/sockjs-client/sockjs.min.js', function () {
    load('/sockjsd.js', function () { (0, eval)(%s); resolve(typeof SockJS + ' ' + typeof H); });
  });
})`, jsArg(string(harness)))
	if got := mustEval[string](p, startTimeout, js); got != "function object" {
		t.Fatalf("harness loaded as %q", got)
	}
	return p
}

// protocols are the HTTP versions (nextHopProtocol) of the page's
// requests whose URL contains path.
func (p *page) protocols(path string) []string {
	p.t.Helper()
	return mustEval[[]string](p, stepTimeout, fmt.Sprintf(`performance.getEntriesByType('resource')
  .filter(function (e) { return e.name.indexOf(%s) >= 0; })
  .map(function (e) { return e.nextHopProtocol; })`, jsArg(path)))
}

// TestTLSBrowser: the binary with -tls-cert and Chromium trusting the
// test's CA (by its key's hash: --ignore-certificate-errors-spki-list
// accepts a chain with that key in it, so no CA is installed anywhere).
func TestTLSBrowser(t *testing.T) {
	testenv.SkipIfShort(t, "Chromium and a build of cmd/server")
	ca := testenv.NewCA(t)
	br := startBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", ca.SPKIHash()))
	h2 := startTLSBinary(t, ca, ca.Issue(t, 1))
	t.Run("transports", func(t *testing.T) { testTLSTransports(t, br, h2) })
	t.Run("rotate", func(t *testing.T) { testTLSRotate(t, br, h2) })
	t.Run("http2-tabs", func(t *testing.T) { testTabs(t, br, h2, 10, 10) })
	h1 := startTLSBinary(t, ca, ca.Issue(t, 1), "-http2=false")
	t.Run("http1-stall", func(t *testing.T) { testTabs(t, br, h1, 7, 6) })
}

// testTLSTransports runs every transport Chromium can run over HTTPS and
// WSS: the HTTP ones over HTTP/2, websocket over HTTP/1.1 on its own
// connection. The server counts a session of the transport each time.
func testTLSTransports(t *testing.T, br *browser, s *tlsBinary) {
	p := br.openHarness(t, s.base)
	msgs := messages(20)
	res := &results{}
	for _, tr := range clientTransports {
		t.Run(tr.name, func(t *testing.T) {
			if tr.skip != "" {
				t.Skip(tr.skip)
			}
			p.t = t
			label := fmt.Sprintf(`transport="%s"`, serverTransport(tr.name))
			before := s.metric(t, "sockjs_sessions_opened_total", label)
			res.add("https "+tr.name, exchange(t, p, nil, s.base, connectOpts{Transports: []string{tr.name}, Timeout: forcedTimeout}, tr.name, msgs))
			if after := s.metric(t, "sockjs_sessions_opened_total", label); after <= before {
				t.Errorf("the server opened no %s session (%v before, %v after)", serverTransport(tr.name), before, after)
			}
		})
	}
	p.t = t
	checkH2(t, p.protocols("/echo/"))
	t.Log("over HTTPS (HTTP/2; websocket over HTTP/1.1), round trips of one message echoed at a time:\n" + res.String())
}

// checkH2 checks that requests went over HTTP/2: every protocol is h2,
// or empty (a request the page aborted, such as a stream closed with its
// session, has no protocol in resource timing).
func checkH2(t *testing.T, protos []string) {
	t.Helper()
	h2 := 0
	for _, pr := range protos {
		switch pr {
		case "h2":
			h2++
		case "":
		default:
			t.Errorf("requests went over %v, want h2 for all", protos)
			return
		}
	}
	if h2 == 0 {
		t.Fatalf("no request over h2 in the page's resource timing: %v", protos)
	}
	t.Logf("%d of %d requests in resource timing over h2 (the rest aborted)", h2, len(protos))
}

// testTLSRotate renews the certificate under two open sessions (websocket
// and xhr-streaming): they keep echoing, a new handshake gets the new
// certificate, and a new websocket (a new TLS connection from Chromium)
// opens with it. Then a bad pair: the old certificate stays, said once in
// the log and the metric; a good pair after it is loaded.
func testTLSRotate(t *testing.T, br *browser, s *tlsBinary) {
	pages := map[string]*page{}
	for _, tr := range []string{"websocket", "xhr-streaming"} {
		p := br.openHarness(t, s.base)
		p.t = t
		p.connect(connectOpts{URL: echoURL(s.base, newTag()), Transports: []string{tr}, Timeout: forcedTimeout})
		info, err := p.waitOpen(1, stepTimeout)
		if err != nil || info.Failed != nil {
			t.Fatalf("%s: open: %v %+v", tr, err, info)
		}
		checkTransport(t, info, tr)
		p.echo(messages(5))
		pages[tr] = p
	}
	s.ca.Issue(t, 2).Write(t, s.certFile, s.keyFile)
	s.waitSerial(t, 2)
	for tr, p := range pages {
		p.echo(messages(5)) // fails the test if the session had closed (no reconnect)
		st := mustEval[struct {
			Opens  []openInfo  `json:"opens"`
			Closes []closeInfo `json:"closes"`
		}](p, stepTimeout, "H.state()")
		if len(st.Opens) != 1 || len(st.Closes) != 0 {
			t.Errorf("%s across the renewal: opens %v closes %v, want the one session open", tr, st.Opens, st.Closes)
		}
	}
	fresh := br.openHarness(t, s.base)
	exchange(t, fresh, nil, s.base, connectOpts{Transports: []string{"websocket"}, Timeout: forcedTimeout}, "websocket", messages(5))
	if got := s.metric(t, "sockjs_tls_reloads_total", `result="ok"`); got != 1 {
		t.Errorf("sockjs_tls_reloads_total{result=\"ok\"} = %v, want 1", got)
	}

	// A key that is not the certificate's.
	bad, other := s.ca.Issue(t, 3), s.ca.Issue(t, 4)
	testenv.WriteFileAtomic(t, s.certFile, bad.CertPEM)
	testenv.WriteFileAtomic(t, s.keyFile, other.KeyPEM)
	procs.WaitFor(t, 30*time.Second, "the refused reload to be counted", func() bool {
		return s.metric(t, "sockjs_tls_reloads_total", `result="error"`) == 1
	})
	if got := s.serial(t); got != 2 {
		t.Errorf("after a bad pair a new handshake got serial %d, want 2 (the old certificate)", got)
	}
	out := s.proc.Out.String()
	if n := strings.Count(out, "TLS certificate not reloaded"); n != 1 || !strings.Contains(out, s.keyFile) {
		t.Errorf("log: %d lines saying the reload failed (want 1, naming %s):\n%s", n, s.keyFile, procs.Tail(out, 2000))
	}
	pages["websocket"].echo(messages(3))
	bad.Write(t, s.certFile, s.keyFile)
	s.waitSerial(t, 3)
}

// tabsJS opens a SockJS connection on xhr-streaming in this tab and keeps
// what it receives in window.T.
const tabsJS = `(function (url) {
  window.T = {opened: false, got: null, closed: null};
  var s = new SockJS(url, null, {transports: ['xhr-streaming'], timeout: 60000});
  window.T.sock = s;
  s.onopen = function () { T.opened = true; };
  s.onmessage = function (e) { if (T.got === null) { T.got = e.data; } };
  s.onclose = function (e) { T.closed = e.code + ' ' + e.reason; };
  return true;
})(%s)`

// tabState waits up to ms for this tab's connection to receive, and
// returns what it has.
const tabStateJS = `new Promise(function (resolve) {
  var end = Date.now() + %d;
  (function check() {
    if (T.got !== null || T.closed !== null || Date.now() >= end) {
      resolve({opened: T.opened, got: T.got || '', closed: T.closed || ''});
      return;
    }
    setTimeout(check, 20);
  })();
})`

type tabState struct {
	Opened bool   `json:"opened"`
	Got    string `json:"got"`
	Closed string `json:"closed"`
}

func (p *page) tab(ms time.Duration) tabState {
	p.t.Helper()
	return mustEval[tabState](p, ms+stepTimeout, fmt.Sprintf(tabStateJS, ms.Milliseconds()))
}

// testTabs opens n tabs of one browser on xhr-streaming to /push, one
// after another, and checks that the first want receive and the rest do
// not (HTTP/1.1: the browser's six connections per host are all held by
// streams, so the seventh tab's requests wait in its queue and the server
// never sees them); then closes the first tab's connection, and the
// first waiting tab opens and receives.
func testTabs(t *testing.T, br *browser, s *tlsBinary, n, want int) {
	label := `transport="xhr-streaming"`
	base := s.metric(t, "sockjs_sessions_opened_total", label)
	// Every tab loads sockjs-client first: once six streams hold the
	// six HTTP/1.1 connections, a script would not load either.
	var tabs []*page
	for range n {
		p := br.open(t, s.base+"/healthz")
		mustEval[bool](p, startTimeout, `new Promise(function (resolve, reject) {
  var s = document.createElement('script');
  s.src = '/sockjs-client/sockjs.min.js';
  s.onload = function () { resolve(true); };
  s.onerror = reject;
  document.head.appendChild(s);
})`)
		tabs = append(tabs, p)
	}
	for i, p := range tabs {
		mustEval[bool](p, stepTimeout, fmt.Sprintf(tabsJS, jsArg(s.base+"/push")))
		if i < want {
			st := p.tab(stepTimeout)
			if st.Got != "pushed" {
				t.Fatalf("tab %d of %d: %+v, want it to receive \"pushed\"", i+1, n, st)
			}
		}
	}
	if want == n {
		checkH2(t, tabs[n-1].protocols("/push/"))
		if got := s.metric(t, "sockjs_sessions_opened_total", label) - base; got != float64(n) {
			t.Errorf("server opened %v xhr-streaming sessions, want %d", got, n)
		}
		// One connection carries them: the server holds fewer TCP
		// connections than there are streaming tabs (the count includes
		// this test's own client).
		conns := s.metric(t, "sockjs_connections_open")
		if conns >= float64(n) {
			t.Errorf("%v connections open for %d streaming tabs over HTTP/2, want fewer than %d", conns, n, n)
		}
		t.Logf("%d tabs on xhr-streaming over HTTP/2 all received; the server holds %v connections", n, conns)
		return
	}
	// The tabs past the sixth: nothing within 3 s, and the server saw
	// nothing of them. (sockjs-client gives up on /info after 8 s, so
	// the stall is shown for less than that.)
	const stall = 3 * time.Second
	for i := want; i < n; i++ {
		if st := tabs[i].tab(stall); st.Opened || st.Got != "" || st.Closed != "" {
			t.Fatalf("tab %d of %d over HTTP/1.1: %+v, want it stalled (the browser's 6 connections per host are held)", i+1, n, st)
		}
	}
	if got := s.metric(t, "sockjs_sessions_opened_total", label) - base; got != float64(want) {
		t.Errorf("server opened %v xhr-streaming sessions while tabs stalled, want %d", got, want)
	}
	conns := s.metric(t, "sockjs_connections_open")
	// One tab leaves: its connection is closed, the next tab goes.
	mustEval[bool](tabs[0], stepTimeout, `(T.sock.close(), true)`)
	if st := tabs[want].tab(stepTimeout); st.Got != "pushed" {
		t.Fatalf("tab %d after tab 1 closed: %+v, want it to receive \"pushed\"", want+1, st)
	}
	t.Logf("HTTP/1.1: %d tabs received (the server holding %v connections), tab %d stalled %v until tab 1 closed, then received", want, conns, want+1, stall)
}

// TestTLSBadStart: the binary refuses to start on bad certificate files,
// exiting non-zero with a message naming the file.
func TestTLSBadStart(t *testing.T) {
	testenv.SkipIfShort(t, "a build of cmd/server")
	bin := procs.Server(t)
	ca := testenv.NewCA(t)
	a, b := ca.Issue(t, 1), ca.Issue(t, 2)
	dir := t.TempDir()
	certFile, keyFile, garbage := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "other.key"), filepath.Join(dir, "garbage.crt")
	for name, data := range map[string][]byte{certFile: a.CertPEM, keyFile: b.KeyPEM, garbage: []byte("not a certificate\n")} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, c := range []struct {
		name       string
		args       []string
		names      string // in the output
		wantStatus int
	}{
		{"mismatched key", []string{"-tls-cert", certFile, "-tls-key", keyFile}, keyFile, 1},
		{"missing cert", []string{"-tls-cert", missing, "-tls-key", keyFile}, missing, 1},
		{"garbage cert", []string{"-tls-cert", garbage, "-tls-key", keyFile}, garbage, 1},
		{"cert without key", []string{"-tls-cert", certFile}, "-tls-key", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-client-dir", t.TempDir()}, c.args...)...)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running after 60s:\n%s", out)
			}
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			}
			if status != c.wantStatus || !strings.Contains(string(out), c.names) {
				t.Errorf("exit status %d (want %s), output (want it to name %s):\n%s", status, strconv.Itoa(c.wantStatus), c.names, out)
			}
		})
	}
}
