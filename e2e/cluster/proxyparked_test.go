package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestProxiedWebSocketsParkedBehindHAProxy: haproxy in mode tcp with
// send-proxy (PROXY v1) and send-proxy-v2, as in front of TLS
// passthrough, before one node with -trusted-proxies. Idle websockets
// through it cost the node no goroutine each (parked in its poller, as
// direct ones are: go_goroutines grows by well under one per session)
// and still echo. Before, every proxied websocket kept a reader
// goroutine.
func TestProxiedWebSocketsParkedBehindHAProxy(t *testing.T) {
	testenv.SkipIfShort(t, "haproxy and a node")
	need(t, "haproxy")
	nodeURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startProc(t, "node", serverBinary(t), "-addr", nodeURL[len("http://"):], "-trusted-proxies", "127.0.0.1/32",
		"-client-dir", filepath.Join(testenv.RepoRoot(t), "web", "sockjs-client"))
	waitFor(t, 20*time.Second, "the node to be ready", func() bool { return status(nodeURL+"/readyz") == 200 })
	goroutines := func() float64 {
		v, err := procs.Metric(procs.Get(t, nodeURL+"/metrics"), "go_goroutines")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, send := range []string{"send-proxy", "send-proxy-v2"} {
		t.Run(send, func(t *testing.T) {
			lbPort := freePort(t)
			cfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server node %s %s
`, lbPort, nodeURL[len("http://"):], send)
			f := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			startProc(t, "haproxy", "haproxy", "-db", "-f", f)
			lb := fmt.Sprintf("127.0.0.1:%d", lbPort)
			waitFor(t, 10*time.Second, "haproxy to pass /healthz", func() bool { return status("http://"+lb+"/healthz") == 200 })
			const n = 100
			before := goroutines()
			conns := make([]*websocket.Conn, n)
			for i := range conns {
				c, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/echo/000/%s-%d/websocket", lb, send, i), nil)
				if err != nil {
					t.Fatalf("websocket %d through haproxy: %v", i, err)
				}
				t.Cleanup(func() { _ = c.Close() })
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
					t.Fatalf("websocket %d: open frame %q %v", i, m, err)
				}
				conns[i] = c
			}
			echo := func(i int) {
				t.Helper()
				if err := conns[i].WriteMessage(websocket.TextMessage, []byte(`["hi"]`)); err != nil {
					t.Fatal(err)
				}
				if _, m, err := conns[i].ReadMessage(); err != nil || string(m) != `a["hi"]` {
					t.Fatalf("websocket %d: echo %q %v", i, m, err)
				}
			}
			for i := range conns {
				echo(i)
			}
			// Bounded wait: net/http's goroutines end after the
			// upgrades, the readers a second or two after the echoes.
			var per float64
			waitFor(t, 30*time.Second, "idle proxied websockets to hold no goroutine", func() bool {
				per = (goroutines() - before) / n
				return per < 0.5 // one each (the reader) before
			})
			t.Logf("%s: %.2f goroutines per idle proxied websocket", send, per)
			echo(0) // parked, it still echoes
		})
	}
}
