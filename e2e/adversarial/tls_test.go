package adversarial

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestTLSHandshakeFlood: slowloris on the TLS handshake. 150 connections
// from 127.0.0.1 send the first 3 bytes of a ClientHello and nothing
// more. -max-connections-per-address (100) refuses 50 at accept, before
// any TLS work; the 100 held are cut by the server at
// -read-header-timeout (2s), each counted in
// sockjs_tls_handshake_errors_total and none logged above debug.
// Meanwhile a client from 127.0.0.2 is served over HTTPS.
func TestTLSHandshakeFlood(t *testing.T) {
	t.Parallel()
	const perAddr, n = 100, 150
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Issue(t, 1).Write(t, certFile, keyFile)
	srv := Start(t, Config{
		Env: map[string]string{
			"SOCKJSD_TLS_CERT":                    certFile,
			"SOCKJSD_TLS_KEY":                     keyFile,
			"SOCKJSD_READ_HEADER_TIMEOUT":         "2s",
			"SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": "100",
		},
		TLS: &tls.Config{RootCAs: ca.Pool},
	})
	other := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:     fromDialer("127.0.0.2").DialContext,
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool},
	}}
	get := func(path string) string {
		t.Helper()
		res, err := other.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s from 127.0.0.2 during the flood: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s from 127.0.0.2: %d", path, res.StatusCode)
		}
		return string(b)
	}
	get("/healthz")

	var refused, cut, other2 atomic.Int32
	var mu sync.Mutex
	var odd []string
	var longest time.Duration
	start := time.Now()
	var opened sync.WaitGroup
	opened.Add(n)
	done := make(chan struct{})
	go func() {
		parallel(n, n, func(int) { // all at once: each is held until cut
			c, err := fromDialer("127.0.0.1").Dial("tcp", srv.Addr)
			opened.Done()
			if err != nil {
				other2.Add(1)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // a handshake record's first bytes
			b, err := io.ReadAll(c)
			var ne net.Error
			switch {
			case bytes.HasPrefix(b, []byte("HTTP/1.1 503")):
				refused.Add(1)
			case errors.As(err, &ne) && ne.Timeout():
				mu.Lock()
				odd = append(odd, "held for 30s")
				mu.Unlock()
			default: // closed by the server (EOF or reset), maybe after a TLS alert
				cut.Add(1)
				mu.Lock()
				longest = max(longest, time.Since(start))
				mu.Unlock()
			}
		})
		close(done)
	}()
	opened.Wait()
	get("/healthz") // served while the flood holds its 100
	<-done
	if len(odd) > 0 || other2.Load() > 0 {
		t.Errorf("%d connections held past 30s, %d failed to connect", len(odd), other2.Load())
	}
	if refused.Load() < n-perAddr || cut.Load()+refused.Load() != n {
		t.Errorf("refused at accept %d (want at least %d), cut by the server %d, of %d", refused.Load(), n-perAddr, cut.Load(), n)
	}
	t.Logf("%d refused at accept, %d cut by the server within %v of the flood's start (-read-header-timeout 2s)", refused.Load(), cut.Load(), longest.Round(100*time.Millisecond))
	m := get("/metrics")
	if v := parseMetric(t, m, "sockjs_tls_handshake_errors_total"); v < float64(cut.Load()) {
		t.Errorf("sockjs_tls_handshake_errors_total %v, want at least %d", v, cut.Load())
	}
	if v := parseMetric(t, m, "sockjs_connections_refused_total", "reason", "per_address"); v < float64(n-perAddr) {
		t.Errorf("sockjs_connections_refused_total{reason=per_address} %v, want at least %d", v, n-perAddr)
	}
	if c := strings.Count(srv.Stderr(), "TLS handshake error"); c != 0 {
		t.Errorf("%d handshake errors logged at -log-level info, want none (debug only)", c)
	}
}
