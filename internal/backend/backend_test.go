package backend

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/sign"
)

func TestCallOutcomes(t *testing.T) {
	secret := []byte("k")
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sign.Verify(secret, r.Header.Get(sign.Header), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte(`{"a":1}`))
		case "/empty":
		case "/500":
			w.WriteHeader(500)
		case "/html":
			_, _ = w.Write([]byte("<html>"))
		case "/big":
			_, _ = w.Write([]byte(`"` + strings.Repeat("x", 2000) + `"`))
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/redirect":
			http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
		}
	}))
	defer srv.Close()
	c, err := New(Options{URL: srv.URL, Secret: secret, Timeout: 300 * time.Millisecond, MaxAnswerBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want Outcome
	}{
		{"/ok", OK}, {"/empty", OK}, {"/500", BadStatus}, {"/html", BadAnswer},
		{"/big", TooLarge}, {"/slow", Timeout}, {"/redirect", BadStatus},
	} {
		var ans struct{ A int }
		err := c.Call(context.Background(), tc.path, map[string]string{"x": "y"}, &ans)
		if got := OutcomeOf(err); got != tc.want {
			t.Errorf("%s: outcome %s (%v), want %s", tc.path, got, err, tc.want)
		}
	}
	// Unsigned requests are refused by this backend: the client signs.
	u, _ := New(Options{URL: srv.URL})
	if err := u.Call(context.Background(), "/ok", 1, nil); OutcomeOf(err) != BadStatus {
		t.Fatalf("unsigned: %v", err)
	}
}

func TestUnreachableAndBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := New(Options{URL: "http://user:pw@" + addr, Timeout: time.Second})
	err = c.Call(context.Background(), "/x", 1, nil)
	if OutcomeOf(err) != Unreachable || strings.Contains(err.Error(), "pw") {
		t.Fatalf("refused: %v", err)
	}

	hold := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hold)
	b, _ := New(Options{URL: srv.URL, Timeout: 2 * time.Second, MaxInFlight: 1})
	first := make(chan error, 1)
	go func() { first <- b.Call(context.Background(), "/a", 1, nil) }()
	select { // the first request holds the only slot
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("first request never arrived")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := b.Call(short, "/b", 1, nil); OutcomeOf(err) != Busy {
		t.Fatalf("second: %v, want busy", err)
	}
	if err := <-first; OutcomeOf(err) != Timeout {
		t.Fatalf("first: %v, want timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Call(ctx, "/c", 1, nil); OutcomeOf(err) != Canceled {
		t.Fatalf("canceled: %v", err)
	}
}

// A backend that closes a kept-alive connection just as the next request
// arrives on it (its keep-alive timeout racing the request) is not a
// failed backend: the request goes again on a new connection.
func TestKeepAliveRaceIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	keys := make(chan string, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if n == 1 {
						return // the second request on a connection: closed unanswered
					}
					keys <- req.Header.Get("Idempotency-Key")
					_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
				}
			}()
		}
	}()
	c, _ := New(Options{URL: "http://" + ln.Addr().String(), Timeout: 5 * time.Second})
	for i := range 3 {
		if err := c.Call(context.Background(), "/x", i, nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	seen := map[string]bool{}
	for range 3 {
		k := <-keys
		if len(k) != 32 || seen[k] {
			t.Fatalf("Idempotency-Key %q (seen: %v)", k, seen)
		}
		seen[k] = true
	}
}
