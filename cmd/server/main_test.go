package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startServer runs the server's wiring in-process on a loopback port,
// with these flags besides -client-dir.
func startServer(t testing.TB, flags ...string) (*server, string) {
	t.Helper()
	return startServerLog(t, io.Discard, flags...)
}

// startServerLog is startServer with the server's log written to log. The
// server listens on loopback whatever -addr says.
func startServerLog(t testing.TB, log io.Writer, flags ...string) (*server, string) {
	t.Helper()
	cfg, err := parseConfig(append([]string{"-client-dir", t.TempDir()}, flags...))
	if err != nil {
		t.Fatal(err)
	}
	return startServerConfig(t, log, cfg)
}

// startServerConfig is startServerLog with a config made by the test.
func startServerConfig(t testing.TB, log io.Writer, cfg Config) (*server, string) {
	t.Helper()
	srv, err := newServer(cfg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.serve(ln) }()
	t.Cleanup(func() {
		_ = srv.http.Close()
		if srv.hub != nil && srv.hub.Close != nil {
			_ = srv.hub.Close()
		}
	})
	return srv, ln.Addr().String()
}

// TestGracefulShutdown: every connected session gets c[1001,"Going away"]
// (raw websockets a close frame 1001) and shutdown returns in bounded time.
func TestGracefulShutdown(t *testing.T) {
	srv, addr := startServer(t)
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}

	ws, _, err := dialer.Dial("ws://"+addr+"/echo/000/shutdown-ws/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("websocket open: %q %v", m, err)
	}
	raw, _, err := dialer.Dial("ws://"+addr+"/echo/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(20 * time.Second))
	// A raw websocket session exists once an echo came back.
	if err := raw.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := raw.ReadMessage(); err != nil || string(m) != "ping" {
		t.Fatalf("raw echo: %q %v", m, err)
	}

	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Post("http://"+addr+"/echo/000/shutdown-xs/xhr_streaming", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{strings.Repeat("h", 2048) + "\n", "o\n"} {
		if line, err := br.ReadString('\n'); err != nil || line != want {
			t.Fatalf("streaming: got %.20q, %v", line, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.shutdown(ctx) }()

	if _, m, err := ws.ReadMessage(); err != nil || string(m) != `c[1001,"Going away"]` {
		t.Fatalf("websocket close frame: %q %v", m, err)
	}
	_, _, err = raw.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1001 {
		t.Fatalf("raw websocket close: %v", err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "c[1001,\"Going away\"]\n" {
		t.Fatalf("streaming close frame: %q %v", line, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("streaming response must end after the close frame, got %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	_, addr := startServer(t)
	res, err := http.Post("http://"+addr+"/echo/000/metrics-test/xhr", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, want := range []string{`sockjs_sessions_opened_total{transport="xhr-polling"} 1`, "sockjs_delivery_delay_seconds_bucket", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
