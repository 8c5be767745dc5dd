package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// certFiles writes leaf to cert.pem and key.pem in a new directory.
func certFiles(t *testing.T, leaf testenv.Leaf) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	leaf.Write(t, certFile, keyFile)
	return certFile, keyFile
}

// TestLoadKeyPair: a pair that loads, and every way one does not, each
// error naming the flag and the file at fault.
func TestLoadKeyPair(t *testing.T) {
	ca := testenv.NewCA(t)
	a, b := ca.Issue(t, 10), ca.Issue(t, 11)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certA, keyA, keyB := write("a.crt", a.CertPEM), write("a.key", a.KeyPEM), write("b.key", b.KeyPEM)
	garbage := write("garbage", []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"))
	text := write("text", []byte("hello\n"))
	badDER := write("bad.crt", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	huge := write("huge", bytes.Repeat([]byte("x"), maxCertFileBytes+1))
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name, cert, key string
		want            []string // in the error; none: it loads
	}{
		{"good", certA, keyA, nil},
		{"mismatched key", certA, keyB, []string{"-tls-key", keyB, certA, "does not match"}},
		{"missing cert", missing, keyA, []string{"-tls-cert", missing}},
		{"missing key", certA, missing, []string{"-tls-key", missing}},
		{"cert not PEM", text, keyA, []string{"-tls-cert", text, "no PEM CERTIFICATE"}},
		{"cert PEM garbage", garbage, keyA, []string{"-tls-cert", garbage}},
		{"cert not DER", badDER, keyA, []string{"-tls-cert", badDER}},
		{"key not PEM", certA, text, []string{"-tls-key", text}},
		{"key is the cert", certA, certA, []string{"-tls-key", certA}},
		{"huge cert", huge, keyA, []string{"-tls-cert", huge, "larger than"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cert, _, err := loadKeyPair(c.cert, c.key)
			if c.want == nil {
				if err != nil || cert.Leaf.SerialNumber.Int64() != 10 {
					t.Fatalf("got %v, want serial 10 loaded", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestTLSFlags: -tls-cert and -tls-key go together; a bad file stops the
// start naming it.
func TestTLSFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", "c.pem"}, "-tls-cert needs -tls-key"},
		{[]string{"-tls-key", "k.pem"}, "-tls-key needs -tls-cert"},
		{[]string{"-tls-cert", "c", "-tls-key", "k", "-tls-reload-interval", "-1s"}, "-tls-reload-interval"},
		{[]string{"-http2-max-streams", "0"}, "-http2-max-streams"},
	} {
		_, err := parseConfig(append([]string{"-client-dir", t.TempDir()}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	cfg, err := parseConfig([]string{"-client-dir", t.TempDir(), "-tls-cert", missing, "-tls-key", missing})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newServer(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("start with a missing certificate: %v, want an error naming %s", err, missing)
	}
}

// TestCertReloader: a renewed pair is served at the next check; a bad
// change keeps the old certificate and is reported once (when a second
// check still finds it, so that a check between the writes of the two
// files reports nothing); unchanged files do nothing.
func TestCertReloader(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := certFiles(t, ca.Issue(t, 1))
	lg := &syncBuffer{}
	r, err := newCertReloader(certFile, keyFile, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(lg, nil)))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		c, _ := r.GetCertificate(nil)
		return c.Leaf.SerialNumber.Int64()
	}
	counts := func() (ok, bad float64) {
		return testutil.ToFloat64(r.reloads.WithLabelValues(reloadOK)), testutil.ToFloat64(r.reloads.WithLabelValues(reloadError))
	}
	type want struct {
		serial  int64
		ok, bad float64
		logged  int // "not reloaded" lines so far
	}
	leaf2, leaf3 := ca.Issue(t, 2), ca.Issue(t, 3)
	steps := []struct {
		name   string
		change func()
		want   want
	}{
		{"unchanged", func() {}, want{1, 0, 0, 0}},
		{"renewed", func() { leaf2.Write(t, certFile, keyFile) }, want{2, 1, 0, 0}},
		// The cert is written, the key not yet: nothing said at once.
		{"half written", func() { testenv.WriteFileAtomic(t, certFile, leaf3.CertPEM) }, want{2, 1, 0, 0}},
		{"half written, next check", func() {}, want{2, 1, 1, 1}},
		{"still bad: said once", func() {}, want{2, 1, 1, 1}},
		{"key written", func() { testenv.WriteFileAtomic(t, keyFile, leaf3.KeyPEM) }, want{3, 2, 1, 1}},
		{"garbage", func() { testenv.WriteFileAtomic(t, keyFile, []byte("junk")) }, want{3, 2, 1, 1}},
		{"garbage, next check", func() {}, want{3, 2, 2, 2}},
		{"file removed", func() { _ = os.Remove(keyFile) }, want{3, 2, 2, 2}},
		{"file removed, next check", func() {}, want{3, 2, 3, 3}},
		{"restored", func() { leaf2.Write(t, certFile, keyFile) }, want{2, 3, 3, 3}},
	}
	for _, s := range steps {
		s.change()
		r.reload()
		ok, bad := counts()
		got := want{serial(), ok, bad, strings.Count(lg.String(), "TLS certificate not reloaded")}
		if got != s.want {
			t.Fatalf("%s: got %+v, want %+v\nlog:\n%s", s.name, got, s.want, lg.String())
		}
	}

	// A file missing at the first check after the start waits for the
	// second check too.
	r, err = newCertReloader(certFile, keyFile, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(lg, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(certFile)
	before := strings.Count(lg.String(), "TLS certificate not reloaded")
	r.reload()
	if n := strings.Count(lg.String(), "TLS certificate not reloaded") - before; n != 0 {
		t.Fatalf("a file missing at one check: %d lines, want none yet", n)
	}
	r.reload()
	if _, bad := counts(); strings.Count(lg.String(), "TLS certificate not reloaded")-before != 1 || bad != 1 {
		t.Fatalf("a file still missing at the next check: want one line and one error, got\n%s", lg.String())
	}
}

// tlsClient is an HTTP client trusting only ca, speaking HTTP/2 when the
// server offers it.
func tlsClient(ca *testenv.CA) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool},
		ForceAttemptHTTP2: true,
	}}
}

// servedSerial is the serial of the certificate a new handshake gets.
func servedSerial(t *testing.T, ca *testenv.CA, addr string) int64 {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestHTTPS: the binary's wiring with -tls-cert serves HTTP/2 by ALPN
// (HTTP/1.1 with -http2=false); a renewed certificate goes to new
// handshakes while an open connection keeps serving; plain HTTP gets a
// 400; a client that never completes its handshake is dropped within
// -read-header-timeout; both count as handshake errors, and completed
// handshakes count by protocol (h2 for the HTTP client, none for tls.Dial).
func TestHTTPS(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := certFiles(t, ca.Issue(t, 1))
	srv, addr := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-read-header-timeout", "1s")
	hc := tlsClient(ca)
	var reused []bool
	get := func(path string) *http.Response {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res
	}
	if res := get("/healthz"); res.Proto != "HTTP/2.0" || res.StatusCode != 200 {
		t.Fatalf("GET /healthz: %s %d, want HTTP/2.0 200", res.Proto, res.StatusCode)
	}
	if got := servedSerial(t, ca, addr); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	ca.Issue(t, 2).Write(t, certFile, keyFile)
	srv.tls.reload()
	if got := servedSerial(t, ca, addr); got != 2 {
		t.Errorf("after the renewal a new handshake got serial %d, want 2", got)
	}
	if res := get("/healthz"); res.StatusCode != 200 || !reused[len(reused)-1] {
		t.Errorf("the open HTTP/2 connection after the renewal: %d, reused %v", res.StatusCode, reused)
	}

	// Plain HTTP on the TLS port: net/http's 400.
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 400 {
		t.Errorf("plain HTTP on the TLS port: %v %v, want 400", res, err)
	}

	// Slowloris on the handshake: a connection that sends nothing is
	// closed by the server (the read ends before its own deadline).
	idle, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = idle.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("a connection without a handshake was held for 30s (-read-header-timeout 1s)")
	}
	mres, err := hc.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(mres.Body)
	_ = mres.Body.Close()
	for _, line := range []string{"sockjs_tls_handshake_errors_total 2", `sockjs_tls_reloads_total{result="ok"} 1`, "sockjs_tls_certificate_expiry_timestamp_seconds ", `sockjs_tls_handshakes_total{protocol="h2"} 1`, `sockjs_tls_handshakes_total{protocol="none"} 2`} {
		if !strings.Contains(string(m), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// TestHTTP1Only: -http2=false serves HTTP/1.1 over TLS.
func TestHTTP1Only(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := certFiles(t, ca.Issue(t, 1))
	_, addr := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-http2=false")
	res, err := tlsClient(ca).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.Proto != "HTTP/1.1" {
		t.Errorf("-http2=false: %s, want HTTP/1.1", res.Proto)
	}
}

// TestUnreadBodyHTTP2: over HTTP/2 an answer given without reading the
// body comes at once though the body never ends, and so does the 408 of
// a send whose body stops coming (-body-read-timeout); after each the
// connection stays up for the next request: the stream alone is reset.
// A "Connection: close" would have made the server send GOAWAY, ending
// every session multiplexed on the connection.
func TestUnreadBodyHTTP2(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := certFiles(t, ca.Issue(t, 1))
	_, addr := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-body-read-timeout", "1s")
	hc := tlsClient(ca)
	var reused []bool
	trace := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
	})
	// do sends a request; a body is declared n bytes and sends 1.
	do := func(method, path string, n int64) (int, string) {
		t.Helper()
		var body io.Reader
		if n > 0 {
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() { _, _ = pw.Write([]byte("[")) }() // then nothing
			body = pr
		}
		req, _ := http.NewRequestWithContext(trace, method, "https://"+addr+path, body)
		req.ContentLength = n
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.Proto != "HTTP/2.0" {
			t.Fatalf("%s %s over %s, want HTTP/2.0", method, path, res.Proto)
		}
		return res.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path string
		n            int64
		want         int
	}{
		{"GET", "/healthz", 0, 200},
		{"POST", "/echo/info", 100_000, 405},            // answered without reading
		{"POST", "/echo/000/h2body/xhr", 0, 200},        // opens the session
		{"POST", "/echo/000/h2body/xhr_send", 100, 408}, // the body stops coming
		{"GET", "/healthz", 0, 200},
	} {
		if code, body := do(c.method, c.path, c.n); code != c.want {
			t.Fatalf("%s %s: %d %q, want %d", c.method, c.path, code, body, c.want)
		}
	}
	for i, r := range reused {
		if i > 0 && !r {
			t.Errorf("connections reused: %v, want the first connection for every request", reused)
			break
		}
	}
}

// TestProxyProtocolThenTLS: from a trusted proxy the PROXY header comes
// before the TLS handshake, and the session (over WSS) has the client's
// address.
func TestProxyProtocolThenTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := certFiles(t, ca.Issue(t, 1))
	_, addr := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile, "-exec", printRemote, "-trusted-proxies", "127.0.0.0/8")
	tc := &tls.Config{RootCAs: ca.Pool}
	for _, c := range []struct {
		name string
		pre  func(net.Conn) error
		want string
	}{
		{"no PROXY header", nil, "127.0.0.1"},
		{"PROXY v1", proxyV1("192.0.2.1"), "192.0.2.1"},
		{"PROXY v2", proxyV2("192.0.2.2"), "192.0.2.2"},
	} {
		m, err := execFirstOver(t, "wss", tc, addr, nil, c.pre)
		if err != nil || !strings.Contains(m, c.want) {
			t.Errorf("%s: first frame %q %v, want REMOTE_ADDR %s", c.name, m, err, c.want)
		}
	}
}

// tlsMetrics registers on reg the metrics a server with -tls-cert has.
func tlsMetrics(t *testing.T, reg prometheus.Registerer) {
	t.Helper()
	certFile, keyFile := certFiles(t, testenv.NewCA(t).Issue(t, 1))
	c := TLSConfig{Cert: certFile, Key: keyFile, HTTP2: true, MaxStreams: DefaultHTTP2MaxStreams}
	log := slog.New(slog.DiscardHandler)
	certs, err := c.loadCerts(reg, log)
	if err != nil {
		t.Fatal(err)
	}
	c.apply(&http.Server{}, certs, reg, log)
}

// TestExtendedConnectWarning: GODEBUG=http2xconnect=1 would have browsers
// open websockets as HTTP/2 streams, which the websocket handler refuses:
// the server says so at start.
func TestExtendedConnectWarning(t *testing.T) {
	certFile, keyFile := certFiles(t, testenv.NewCA(t).Issue(t, 1))
	for _, c := range []struct {
		godebug string
		args    []string
		warn    bool
	}{
		{"http2xconnect=1", nil, true},
		{"http2xconnect=1", []string{"-http2=false"}, false},
		{"", nil, false},
	} {
		t.Setenv("GODEBUG", c.godebug)
		lg := &syncBuffer{}
		startServerLog(t, lg, append([]string{"-tls-cert", certFile, "-tls-key", keyFile}, c.args...)...)
		if got := strings.Contains(lg.String(), "http2xconnect=1 offers websockets over HTTP/2"); got != c.warn {
			t.Errorf("GODEBUG=%q %v: warned %v, want %v\n%s", c.godebug, c.args, got, c.warn, lg.String())
		}
	}
}

// TestHandshakeErrorLog: net/http's per-connection handshake error lines
// are counted and go to debug; its other lines still reach the server's
// error log.
func TestHandshakeErrorLog(t *testing.T) {
	var warn, all syncBuffer
	next := slog.NewLogLogger(slog.NewTextHandler(&warn, nil), slog.LevelWarn)
	reg := prometheus.NewRegistry()
	l := handshakeErrors(next, reg, slog.New(slog.NewTextHandler(&all, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, c := range []struct {
		line      string
		toWarn    bool
		wantCount float64
	}{
		{"http: TLS handshake error from 127.0.0.1:5555: EOF", false, 1},
		{"http: TLS handshake error from 127.0.0.1:5556: client sent an HTTP request to an HTTPS server", false, 2},
		{"http: superfluous response.WriteHeader call", true, 2},
	} {
		l.Print(c.line)
		if got := strings.Contains(warn.String(), c.line); got != c.toWarn {
			t.Errorf("%q in the warn log: %v, want %v", c.line, got, c.toWarn)
		}
		if !c.toWarn && !strings.Contains(all.String(), "level=DEBUG") {
			t.Errorf("%q not logged at debug:\n%s", c.line, all.String())
		}
		if n, err := testutil.GatherAndCount(reg, "sockjs_tls_handshake_errors_total"); err != nil || n != 1 {
			t.Fatalf("metric: %d series, %v", n, err)
		}
		mfs, _ := reg.Gather()
		if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); got != c.wantCount {
			t.Errorf("after %q: %v handshake errors counted, want %v", c.line, got, c.wantCount)
		}
	}
}
