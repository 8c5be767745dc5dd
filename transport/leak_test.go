package transport_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/mux"

	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// TestNoLeaks: after sessions over every transport end, by a clean close
// or by a client that just vanished, the registry is empty and the
// goroutines are back where they started.
func TestNoLeaks(t *testing.T) {
	r := mux.NewRouter()
	r.SkipClean(true)
	h := transport.New("/echo", transport.Options{Session: session.Options{DisconnectDelay: 500 * time.Millisecond}}, services.Echo)
	gorillamux.Mount(r, h)
	srv := httptest.NewServer(r)
	defer srv.Close()
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := 0; round < 2; round++ {
		var conns []*sockjs.Conn
		for _, name := range []string{sockjs.WebSocket, sockjs.XHRStreaming, sockjs.XHRPolling} {
			for i := 0; i < 10; i++ {
				c, err := sockjs.Dial(ctx, srv.URL+"/echo", sockjs.Options{Transports: []string{name}, HTTPClient: hc})
				if err != nil {
					closeAll(conns)
					t.Fatal(err)
				}
				conns = append(conns, c)
				_ = c.Send("x")
				if _, err := c.Recv(ctx); err != nil {
					closeAll(conns)
					t.Fatal(err)
				}
			}
		}
		// Sessions of the previous round may still be expiring.
		if n := h.Sessions(); n < 30 {
			closeAll(conns)
			t.Fatalf("round %d: %d live sessions, want at least 30", round, n)
		}
		closeAll(conns)
	}
	tr.CloseIdleConnections()
	// Sessions expire after the disconnect delay; then every goroutine
	// they had must be gone. Bounded wait for both.
	deadline := time.Now().Add(20 * time.Second)
	for h.Sessions() != 0 || runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("after every session ended: %d sessions, %d goroutines (started with %d)\n%s", h.Sessions(), runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(20 * time.Millisecond) // waiting for expiry timers and connection teardown; bounded
	}
}

func closeAll(conns []*sockjs.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
