package cluster

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestClusterTLS: two nodes with -tls-cert and no -cluster-advertise
// advertise https:// URLs and forward a session's requests to its owner
// over TLS, verifying the owner's certificate with the roots the process
// trusts (here SSL_CERT_FILE, the test's CA).
func TestClusterTLS(t *testing.T) {
	need(t, "redis-server")
	bin := serverBinary(t)
	rs := startRedis(t)
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", caFile) // inherited by the nodes
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	var urls []string
	for i := range 2 {
		certFile, keyFile := filepath.Join(dir, fmt.Sprintf("n%d.crt", i)), filepath.Join(dir, fmt.Sprintf("n%d.key", i))
		ca.Issue(t, int64(i+1)).Write(t, certFile, keyFile)
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := startProc(t, fmt.Sprintf("node%d", i+1), bin, "-addr", addr, "-redis", rs.URL, "-cluster-secret", secret,
			"-client-dir", t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile)
		u := "https://" + addr
		waitFor(t, 20*time.Second, u+" to be ready", func() bool {
			res, err := hc.Get(u + "/readyz")
			if err != nil {
				return false
			}
			_ = res.Body.Close()
			return res.StatusCode == 200
		})
		if !strings.Contains(p.Out.String(), "advertise="+u) {
			t.Fatalf("node %d does not advertise %s:\n%s", i+1, u, tail(p.Out.String(), 2000))
		}
		urls = append(urls, u)
	}
	post := func(url, body string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// The session opens on node 1; node 2 gets its send and its poll.
	if code, body := post(urls[0]+"/echo/000/tls1/xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open on node 1: %d %q", code, body)
	}
	if code, body := post(urls[1]+"/echo/000/tls1/xhr_send", `["over tls"]`); code != 204 {
		t.Fatalf("send through node 2: %d %q", code, body)
	}
	if code, body := post(urls[1]+"/echo/000/tls1/xhr", ""); code != 200 || body != "a[\"over tls\"]\n" {
		t.Fatalf("poll through node 2: %d %q", code, body)
	}
	res, err := hc.Get(urls[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if n, err := procs.Metric(string(m), "sockjs_cluster_forwarded_requests_total", `result="ok"`); err != nil || n < 2 {
		t.Errorf("node 2 forwarded %v requests with result ok (%v), want 2", n, err)
	}
}
