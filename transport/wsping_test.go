package transport_test

import (
	"github.com/sockjsd/sockjsd/internal/testenv"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// wsRTTRecorder is a session.Observer that takes websocket round trips.
type wsRTTRecorder struct {
	session.NopObserver
	mu   sync.Mutex
	got  []string // service/transport
	seen chan string
}

func (r *wsRTTRecorder) ObserveWebSocketRTT(service string, t session.Transport, d time.Duration) {
	key := service + "/" + t.String()
	r.mu.Lock()
	r.got = append(r.got, key)
	r.mu.Unlock()
	if d <= 0 {
		key += " non-positive"
	}
	select {
	case r.seen <- key:
	default:
	}
}

func (r *wsRTTRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// wait waits (bounded) for the next round trip.
func (r *wsRTTRecorder) wait(t *testing.T) string {
	t.Helper()
	select {
	case k := <-r.seen:
		return k
	case <-time.After(10 * time.Second):
		t.Fatal("no websocket round trip recorded within 10s")
		return ""
	}
}

func wsEchoServer(t *testing.T, obs session.Observer, hb time.Duration) string {
	t.Helper()
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/echo", transport.Options{Session: session.Options{Observer: obs, HeartbeatDelay: hb}}, services.Echo))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// wsDial opens a websocket whose pings are counted; answer says whether
// they are answered (gorilla's default) or ignored.
func wsDial(t *testing.T, url string, answer bool) (*websocket.Conn, *int) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	pings := new(int) // the reader's, like the handler
	c.SetPingHandler(func(data string) error {
		*pings++
		if !answer {
			return nil
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	return c, pings
}

func wsEcho(t *testing.T, c *websocket.Conn, send, want string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(send)); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != want {
		t.Fatalf("echo of %s: %q %v", send, m, err)
	}
}

// TestWebSocketPingRTT: the server pings a websocket session right after
// it opens, and the client's pong, answered by its websocket library with
// no application code, is recorded under the service and transport, on
// the SockJS websocket endpoint and the raw one; a busy session is pinged
// once per heartbeat delay, not per frame.
func TestWebSocketPingRTT(t *testing.T) {
	rec := &wsRTTRecorder{seen: make(chan string, 1)}
	ws := wsEchoServer(t, rec, time.Hour)

	t.Run("sockjs", func(t *testing.T) {
		c, pings := wsDial(t, ws+"/echo/000/"+testenv.NewID()+"/websocket", true)
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
			t.Fatalf("open: %q %v", m, err)
		}
		// The ping came after the open frame: reading the echo answers it.
		wsEcho(t, c, `["a"]`, `a["a"]`)
		if k := rec.wait(t); k != "echo/websocket" {
			t.Fatalf("recorded %q", k)
		}
		for i := 0; i < 50; i++ {
			wsEcho(t, c, `["b"]`, `a["b"]`)
		}
		if *pings != 1 {
			t.Fatalf("%d pings in 51 echoes with a 1h heartbeat delay, want 1", *pings)
		}
	})
	t.Run("raw", func(t *testing.T) {
		c, _ := wsDial(t, ws+"/echo/websocket", true)
		wsEcho(t, c, "a", "a")
		if k := rec.wait(t); k != "echo/websocket-raw" {
			t.Fatalf("recorded %q", k)
		}
	})
}

// TestWebSocketPingUnanswered: a client that ignores pings is not closed
// for it and gives no round trip; pongs that do not repeat the latest
// ping's stamp (unsolicited, forged, superseded, repeated) are not round
// trips; and the heartbeat goes on pinging an idle session.
func TestWebSocketPingUnanswered(t *testing.T) {
	rec := &wsRTTRecorder{seen: make(chan string, 1)}
	ws := wsEchoServer(t, rec, 30*time.Millisecond)
	c, pings := wsDial(t, ws+"/echo/000/"+testenv.NewID()+"/websocket", false)
	var stamps []string
	c.SetPingHandler(func(data string) error {
		*pings++
		stamps = append(stamps, data)
		return nil
	})
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("open: %q %v", m, err)
	}
	// Idle: heartbeats, each followed by a ping. Three of them, then an
	// echo: the session is alive.
	for hb := 0; hb < 3; {
		_, m, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(m) == "h" {
			hb++
		}
	}
	pong := func(data string) {
		t.Helper()
		if err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	pong("")                                 // unsolicited: RFC 6455 allows it as a heartbeat
	pong("\x00\x00\x00\x00\x00\x00\x00\x07") // forged
	pong(stamps[0])                          // superseded by the later pings
	wsEcho(t, c, `["alive"]`, `a["alive"]`)
	if *pings < 3 {
		t.Fatalf("%d pings over 3 heartbeats", *pings)
	}
	if n := rec.count(); n != 0 {
		t.Fatalf("%d round trips recorded from pongs that answer no live ping", n)
	}
	// Answering the latest ping, twice, is one round trip. Pings keep
	// coming with the heartbeats: answer the first one read from now on.
	c.SetPingHandler(func(data string) error {
		pong(data)
		pong(data)
		c.SetPingHandler(func(string) error { return nil })
		return nil
	})
	for rec.count() == 0 {
		// Heartbeats make ReadMessage return, and it runs the ping
		// handler; the read deadline bounds the wait.
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	wsEcho(t, c, `["again"]`, `a["again"]`)
	if n := rec.count(); n != 1 {
		t.Fatalf("%d round trips recorded for one answered ping (pong sent twice)", n)
	}
}

// TestWebSocketNoPingWithoutObserver: a service whose observer does not
// take websocket round trips sends no ping frames (raw websocket
// heartbeats aside).
func TestWebSocketNoPingWithoutObserver(t *testing.T) {
	ws := wsEchoServer(t, session.NopObserver{}, time.Hour)
	c, pings := wsDial(t, ws+"/echo/000/"+testenv.NewID()+"/websocket", true)
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("open: %q %v", m, err)
	}
	wsEcho(t, c, `["a"]`, `a["a"]`)
	if *pings != 0 {
		t.Fatalf("%d pings", *pings)
	}
}
