package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
)

func rawDial(u *url.URL) func(context.Context) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", u.Host) }
}

// TestRawXHREcho: messages come back in order over both transports,
// across streaming answers ended by a small response limit (each a new
// connection).
func TestRawXHREcho(t *testing.T) {
	h := transport.New("/echo", transport.Options{ResponseLimit: 512}, services.Echo)
	srv := httptest.NewServer(h)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/echo")
	for _, streaming := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var busy atomic.Int64
		x, err := dialRawXHR(ctx, u, streaming, rawDial(u), &busy)
		if err != nil {
			t.Fatalf("streaming %v: %v", streaming, err)
		}
		for i := range 50 {
			want := "m" + strconv.Itoa(i) + ` "quoted" ☃`
			if err := x.Send(want); err != nil {
				t.Fatalf("streaming %v: send %d: %v", streaming, i, err)
			}
			got, err := x.Recv(ctx)
			if err != nil || got != want {
				t.Fatalf("streaming %v: echo %d: %q, %v; want %q", streaming, i, got, err, want)
			}
		}
		if busy.Load() != 0 {
			t.Errorf("streaming %v: %d 2010 answers from sockjsd", streaming, busy.Load())
		}
		_ = x.Close()
		cancel()
	}
}

// TestRawXHRCounts2010: a 2010 answer is counted and polled again, and a
// session closed by the server is an error.
func TestRawXHRCounts2010(t *testing.T) {
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch polls.Add(1) {
		case 1:
			_, _ = w.Write([]byte("o\n"))
		case 2:
			_, _ = w.Write([]byte("c[2010,\"Another connection still open\"]\n"))
		case 3:
			_, _ = w.Write([]byte("a[\"x\"]\n"))
		default:
			_, _ = w.Write([]byte("c[3000,\"Go away!\"]\n"))
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy atomic.Int64
	x, err := dialRawXHR(ctx, u, false, rawDial(u), &busy)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if m, err := x.Recv(ctx); err != nil || m != "x" {
		t.Fatalf("Recv: %q, %v", m, err)
	}
	if busy.Load() != 1 {
		t.Errorf("2010 answers counted: %d, want 1", busy.Load())
	}
	if _, err := x.Recv(ctx); err == nil {
		t.Error("Recv after c[3000]: no error")
	}
}
