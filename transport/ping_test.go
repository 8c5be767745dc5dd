package transport_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	sockjs "github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// rttRecorder is a session.Observer that also takes service pings' round
// trips.
type rttRecorder struct {
	session.NopObserver
	mu   sync.Mutex
	got  []string // service/transport
	seen chan struct{}
}

func (r *rttRecorder) ObserveRTT(service string, t session.Transport, d time.Duration) {
	r.mu.Lock()
	r.got = append(r.got, service+"/"+t.String())
	r.mu.Unlock()
	select {
	case r.seen <- struct{}{}:
	default:
	}
}

// TestServicePing: on an echo service with PingInterval, a session's first
// message is a ping; its pong is recorded with the service and transport
// and never reaches the application (the echo would send it back); a
// look-alike with another nonce is an application message like any other;
// raw websockets are not pinged.
func TestServicePing(t *testing.T) {
	rec := &rttRecorder{seen: make(chan struct{}, 1)}
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/echo", transport.Options{PingInterval: time.Hour, Session: session.Options{Observer: rec}}, services.Echo))
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, tr := range []string{sockjs.WebSocket, sockjs.XHRStreaming, sockjs.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := sockjs.Dial(ctx, srv.URL+"/echo", sockjs.Options{Transports: []string{tr}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ping, err := c.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(strings.TrimPrefix(ping, "\x00sockjsd-ping:"), ":")
			if !strings.HasPrefix(ping, "\x00sockjsd-ping:") || len(parts) != 3 || len(parts[0]) < 22 || parts[1] != "1" || parts[2] != "0" {
				t.Fatalf("first message %q is not the first ping", ping)
			}
			nonce := parts[0]
			fake := "\x00sockjsd-pong:" + strings.Repeat("A", len(nonce)) + ":1"
			for _, m := range []string{"\x00sockjsd-pong:" + nonce + ":1", fake, "after"} {
				if err := c.Send(m); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-rec.seen:
			case <-ctx.Done():
				t.Fatal("the pong was not recorded")
			}
			// The echo returns the look-alike and "after", not the pong.
			for _, want := range []string{fake, "after"} {
				got, err := c.Recv(ctx)
				if err != nil || got != want {
					t.Fatalf("echo: %q %v, want %q", got, err, want)
				}
			}
			rec.mu.Lock()
			last := rec.got[len(rec.got)-1]
			rec.mu.Unlock()
			if last != "echo/"+tr {
				t.Errorf("recorded %q, want echo/%s", last, tr)
			}
		})
	}

	t.Run("raw websocket", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_ = ws.WriteMessage(websocket.TextMessage, []byte("x"))
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "x" {
			t.Errorf("raw websocket: first message %q %v, want the echo", m, err)
		}
	})
}

// TestServicePingInterval: pings repeat at the interval and carry the
// previous round trip.
func TestServicePingInterval(t *testing.T) {
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/echo", transport.Options{PingInterval: 30 * time.Millisecond}, services.Echo))
	srv := httptest.NewServer(r)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sockjs.Dial(ctx, srv.URL+"/echo", sockjs.Options{Transports: []string{sockjs.WebSocket}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= 3; i++ {
		ping, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := strings.Split(strings.TrimPrefix(ping, "\x00sockjsd-ping:"), ":")
		if len(p) != 3 {
			t.Fatalf("ping %q", ping)
		}
		if i > 1 && p[2] == "0" {
			t.Errorf("ping %d carries no round trip: %q", i, ping)
		}
		if err := c.Send("\x00sockjsd-pong:" + p[0] + ":" + p[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServicePingStops: once a session ends its pinger is gone and its
// timer never fires again, even at a 1 ms interval.
func TestServicePingStops(t *testing.T) {
	h := transport.New("/echo", transport.Options{PingInterval: time.Millisecond}, services.Echo)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, h)
	srv := httptest.NewServer(r)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		c, err := sockjs.Dial(ctx, srv.URL+"/echo", sockjs.Options{Transports: []string{sockjs.WebSocket}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	// Sessions end when their websockets close; then nothing is pinged.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for h.Sessions() > 0 || transport.PingersForTest(h) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d sessions and %d pingers left after every client closed", h.Sessions(), transport.PingersForTest(h))
		case <-tick.C:
		}
	}
}
