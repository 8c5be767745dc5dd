package transport_test

// Our own rules beyond the protocol suite: limits, expiry, heartbeats,
// origins, what the application sees.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

func serveOne(t testing.TB, opts transport.Options, app func(*session.Session)) string {
	t.Helper()
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/s", opts, app))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL + "/s"
}

func TestBodyOverLimitIs413(t *testing.T) {
	base := serveOne(t, transport.Options{MaxMessageBytes: 1024}, services.Echo)
	url := base + "/000/" + newSID()
	do(t, "POST", url+"/xhr", "")
	if r := do(t, "POST", url+"/xhr_send", `["`+strings.Repeat("x", 2000)+`"]`); r.code != 413 {
		t.Fatalf("xhr_send over limit: %d %q", r.code, r.body)
	}
	if r := do(t, "POST", url+"/jsonp_send", "d="+strings.Repeat("x", 2000), "Content-Type", "application/x-www-form-urlencoded"); r.code != 413 {
		t.Fatalf("jsonp_send over limit: %d", r.code)
	}
	// The session is undisturbed.
	do(t, "POST", url+"/xhr_send", `["ok"]`)
	if r := do(t, "POST", url+"/xhr", ""); r.body != "a[\"ok\"]\n" {
		t.Fatalf("after refused bodies: %q", r.body)
	}
}

func TestWebSocketMessageOverLimitCloses1009(t *testing.T) {
	base := serveOne(t, transport.Options{MaxMessageBytes: 1024}, services.Echo)
	c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	wsRead(t, c)
	wsWrite(t, c, `["`+strings.Repeat("x", 2000)+`"]`)
	for i := 0; i < 3; i++ {
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			if ce.Code != 1009 {
				t.Fatalf("close code %d, want 1009", ce.Code)
			}
			return
		}
		if err != nil {
			t.Fatalf("want a 1009 close frame, got %v", err)
		}
	}
	t.Fatal("no close frame")
}

func TestSendQueueOverflowCloses3009(t *testing.T) {
	sent := make(chan error, 1)
	base := serveOne(t, transport.Options{Session: session.Options{SendQueueMessages: 10}}, func(s *session.Session) {
		var err error
		for i := 0; i < 11 && err == nil; i++ {
			err = s.Send("m")
		}
		sent <- err
		<-s.Context().Done()
	})
	url := base + "/000/" + newSID()
	do(t, "POST", url+"/xhr", "") // open; nobody polls while the app sends
	if err := <-sent; err != session.ErrQueueFull {
		t.Fatalf("Send past the limit: %v", err)
	}
	if r := do(t, "POST", url+"/xhr", ""); r.body != "c[3009,\"Send queue overflow\"]\n" {
		t.Fatalf("after overflow: %q", r.body)
	}
}

func TestSessionExpiresWithoutReceiver(t *testing.T) {
	closed := make(chan struct{})
	base := serveOne(t, transport.Options{Session: session.Options{DisconnectDelay: 100 * time.Millisecond}}, func(s *session.Session) {
		<-s.Context().Done()
		close(closed)
	})
	url := base + "/000/" + newSID()
	do(t, "POST", url+"/xhr", "")
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("session did not expire")
	}
	// An expired session has left the registry before its context ends.
	if r := do(t, "POST", url+"/xhr_send", `["x"]`); r.code != 404 {
		t.Fatalf("send to an expired session: %d", r.code)
	}
}

func TestHeartbeatOnIdleStream(t *testing.T) {
	base := serveOne(t, transport.Options{Session: session.Options{HeartbeatDelay: 50 * time.Millisecond}}, services.Echo)
	_, br := asyncPost(t, base+"/000/"+newSID()+"/xhr_streaming")
	readLine(t, br)
	if got := readLine(t, br); got != "o\n" {
		t.Fatalf("open %q", got)
	}
	if got := readLine(t, br); got != "h\n" {
		t.Fatalf("want a heartbeat, got %q", got)
	}
}

func TestOriginAllowlist(t *testing.T) {
	base := serveOne(t, transport.Options{AllowedOrigins: []string{"https://good.example", "https://*.trusted.example"}}, services.Echo)
	url := base + "/000/" + newSID()
	if r := do(t, "POST", url+"/xhr", "", "Origin", "https://evil.example"); r.code != 403 {
		t.Fatalf("foreign origin: %d", r.code)
	}
	if r := do(t, "POST", url+"/xhr", "", "Origin", "https://good.example"); r.code != 200 || r.get("Access-Control-Allow-Origin") != "https://good.example" {
		t.Fatalf("allowed origin: %d %q", r.code, r.get("Access-Control-Allow-Origin"))
	}
	if r := do(t, "GET", base+"/info", "", "Origin", "https://a.trusted.example"); r.code != 200 {
		t.Fatalf("wildcard origin: %d", r.code)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	_, res, err := d.Dial(wsURL(base)+"/000/"+newSID()+"/websocket", http.Header{"Origin": {"https://evil.example"}})
	if err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("websocket from a foreign origin must be refused: %v", err)
	}
	for _, p := range []string{"/iframe.html", "/000/" + newSID() + "/jsonp?c=x", "/000/" + newSID() + "/htmlfile?c=x"} {
		if r := do(t, "GET", base+p, ""); r.code != 404 {
			t.Fatalf("%s under an allowlist: %d, want 404", p, r.code)
		}
	}
	base2 := serveOne(t, transport.Options{AllowedOrigins: []string{"https://good.example"}, AllowIframeTransports: true}, services.Echo)
	if r := do(t, "GET", base2+"/iframe.html", ""); r.code != 200 {
		t.Fatalf("iframe with AllowIframeTransports: %d", r.code)
	}
}

func TestApplicationSeesOpaqueIDAndNoCookie(t *testing.T) {
	got := make(chan *session.Session, 1)
	base := serveOne(t, transport.Options{KeepHeaders: append(transport.DefaultKeepHeaders(), "X-Auth")}, func(s *session.Session) { got <- s; <-s.Context().Done() })
	sid := newSID()
	do(t, "POST", base+"/000/"+sid+"/xhr?token=abc", "", "Cookie", "secret=1", "X-Auth", "t")
	s := <-got
	if s.ID() == sid || strings.Contains(s.ID(), sid) || len(s.ID()) < 20 {
		t.Fatalf("ID %q must be opaque and not the URL session id", s.ID())
	}
	req := s.Request()
	if req.Header.Get("Cookie") != "" || req.Header.Get("X-Auth") != "t" || req.Query.Get("token") != "abc" || req.RemoteAddr == "" {
		t.Fatalf("request info: %+v", req)
	}
	if s.Transport() != session.XHRPolling || s.Transport().String() != "xhr-polling" {
		t.Fatalf("transport %v", s.Transport())
	}
}

func TestMaxSessions(t *testing.T) {
	base := serveOne(t, transport.Options{MaxSessions: 2}, services.Echo)
	for i := 0; i < 2; i++ {
		if r := do(t, "POST", base+"/000/"+newSID()+"/xhr", ""); r.code != 200 {
			t.Fatalf("session %d: %d", i, r.code)
		}
	}
	if r := do(t, "POST", base+"/000/"+newSID()+"/xhr", ""); r.code != 503 {
		t.Fatalf("past the limit: %d", r.code)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(wsURL(base)+"/000/"+newSID()+"/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseTryAgainLater {
		t.Fatalf("websocket past the limit: %v", err)
	}
}

func TestHandlerPanicClosesOnlyItsSession(t *testing.T) {
	base := serveOne(t, transport.Options{}, func(s *session.Session) {
		m, _ := s.Recv(context.Background())
		if m == "boom" {
			panic("application bug")
		}
		_ = s.Send(m)
		<-s.Context().Done()
	})
	bad, good := base+"/000/"+newSID(), base+"/000/"+newSID()
	do(t, "POST", bad+"/xhr", "")
	do(t, "POST", good+"/xhr", "")
	do(t, "POST", bad+"/xhr_send", `["boom"]`)
	if r := do(t, "POST", bad+"/xhr", ""); r.body != "c[3000,\"Go away!\"]\n" {
		t.Fatalf("panicking session: %q", r.body)
	}
	do(t, "POST", good+"/xhr_send", `["fine"]`)
	if r := do(t, "POST", good+"/xhr", ""); r.body != "a[\"fine\"]\n" {
		t.Fatalf("other session: %q", r.body)
	}
}
