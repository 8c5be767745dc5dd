package transport_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

func newEchoServer(t *testing.T) *httptest.Server {
	t.Helper()
	r := mux.NewRouter()
	r.SkipClean(true)
	services.Mount(r, services.Protocol(transport.Options{ResponseLimit: 4096})...)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestSmokeXHRPollingEcho(t *testing.T) {
	srv := newEchoServer(t)
	u := srv.URL + "/echo/000/smoke"
	if code, body := post(t, u+"/xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	if code, body := post(t, u+"/xhr_send", `["hello"]`); code != 204 || body != "" {
		t.Fatalf("send: %d %q", code, body)
	}
	if code, body := post(t, u+"/xhr", ""); code != 200 || body != "a[\"hello\"]\n" {
		t.Fatalf("poll: %d %q", code, body)
	}
}

func TestSmokeWebSocketEcho(t *testing.T) {
	srv := newEchoServer(t)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo/000/ws/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	read := func() string {
		_, m, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(m)
	}
	if m := read(); m != "o" {
		t.Fatalf("open: %q", m)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`["a"]`)); err != nil {
		t.Fatal(err)
	}
	if m := read(); m != `a["a"]` {
		t.Fatalf("echo: %q", m)
	}
}
