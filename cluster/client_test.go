package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawOwner is an HTTP/1.1 server on a real socket whose connections do
// what a test tells them: answer is called for the n-th request (from 1)
// on the c-th connection (from 1) and writes the raw answer, or returns
// false to close the connection after reading the request, unanswered.
type rawOwner struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func startRawOwner(t *testing.T, answer func(conn, n int, req *http.Request, w io.Writer) bool) *rawOwner {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOwner{ln: ln}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := int(o.conns.Add(1))
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if !answer(conn, n, req, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); o.wg.Wait() })
	return o
}

func (o *rawOwner) url() string { return "http://" + o.ln.Addr().String() }

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func peerRequest(t *testing.T, ctx context.Context, url string, idempotent bool) *http.Request {
	t.Helper()
	body := "[\"x\"]"
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/echo/000/s/xhr_send", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if idempotent {
		req.Header.Set("Idempotency-Key", "k")
	} else {
		req.GetBody = nil
	}
	return req
}

func roundTripBody(tr http.RoundTripper, req *http.Request) (string, error) {
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestPeerTransportConnections: kept-alive connections carry one request
// after another; one the owner closed while idle is not used; a request
// that went out on a connection the owner closed unanswered is sent again
// on a new one only when it may be sent twice.
func TestPeerTransportConnections(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     func(conn, n int) string // "" closes the connection unanswered
		idempotent bool
		wantErr    bool
		wantConns  int32
	}{
		{"kept alive", func(int, int) string { return okAnswer }, false, false, 1},
		// Idempotent: should the close come after the next request went out,
		// that one is sent again, on the second connection all the same.
		{"closed by the owner after its answer", func(int, int) string { return okAnswer + "close" }, true, false, 2},
		{"closed unanswered, idempotent: sent again", func(conn, n int) string {
			if conn == 1 && n == 2 {
				return ""
			}
			return okAnswer
		}, true, false, 2},
		{"closed unanswered, not idempotent: an error", func(conn, n int) string {
			if conn == 1 && n == 2 {
				return ""
			}
			return okAnswer
		}, false, true, 1},
		{"1xx before the answer", func(int, int) string { return "HTTP/1.1 100 Continue\r\n\r\n" + okAnswer }, false, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owner := startRawOwner(t, func(conn, n int, _ *http.Request, w io.Writer) bool {
				a := tc.answer(conn, n)
				if a == "" {
					return false
				}
				_, _ = io.WriteString(w, strings.TrimSuffix(a, "close"))
				return !strings.HasSuffix(a, "close")
			})
			tr := newPeerTransport()
			defer tr.CloseIdleConnections()
			for i := range 2 {
				got, err := roundTripBody(tr, peerRequest(t, context.Background(), owner.url(), tc.idempotent))
				if i == 1 && tc.wantErr {
					if !errors.Is(err, errNothingAnswered) {
						t.Fatalf("second request: %q, %v; want errNothingAnswered", got, err)
					}
					continue
				}
				if err != nil || got != "ok" {
					t.Fatalf("request %d: %q, %v", i+1, got, err)
				}
			}
			if got := owner.conns.Load(); got != tc.wantConns {
				t.Errorf("connections: %d, want %d", got, tc.wantConns)
			}
		})
	}
}

// TestPeerTransportContextEnds: an owner that never answers holds a
// request only until its context ends; the connection is not kept.
func TestPeerTransportContextEnds(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	owner := startRawOwner(t, func(int, int, *http.Request, io.Writer) bool {
		<-release
		return false
	})
	tr := newPeerTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := roundTripBody(tr, peerRequest(t, ctx, owner.url(), true))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the context's", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request outlived its context")
	}
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d owners with idle connections, want none", idle)
	}
}

// TestPeerTransportDialError: nothing listening is a dial error, as
// ownerGone reads it.
func TestPeerTransportDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	_, err = newPeerTransport().RoundTrip(peerRequest(t, context.Background(), url, true))
	if !ownerGone(err) {
		t.Fatalf("error %v: ownerGone says no", err)
	}
}

// TestAlive: an idle connection is alive while its peer keeps it open and
// quiet; closed, or with bytes nobody asked for, it is not.
func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name string
		peer func(net.Conn) // what the accepted side does
		want bool
	}{
		{"open and quiet", func(net.Conn) {}, true},
		{"closed by the peer", func(c net.Conn) { c.Close() }, false},
		{"unasked bytes", func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tc.peer(s)
			// What the peer did reaches this side within a bounded
			// wait; "open and quiet" must hold all along.
			deadline := time.Now().Add(5 * time.Second)
			got := alive(c)
			for got != tc.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				got = alive(c)
			}
			if got != tc.want {
				t.Fatalf("alive: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPeerTransportSweep: connections idle past idleTimeout are closed
// even when no request goes to their owner again (an owner replaced, at a
// new address), and the owner is forgotten.
func TestPeerTransportSweep(t *testing.T) {
	closed := make(chan struct{})
	owner := startRawOwner(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
		_, _ = io.WriteString(w, okAnswer)
		return true
	})
	tr := newPeerTransport()
	tr.idleTimeout = 50 * time.Millisecond
	defer tr.CloseIdleConnections()
	if got, err := roundTripBody(tr, peerRequest(t, context.Background(), owner.url(), true)); err != nil || got != "ok" {
		t.Fatalf("request: %q, %v", got, err)
	}
	go func() {
		owner.wg.Wait() // the accept loop ends with the listener: close it
		close(closed)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.mu.Lock()
		owners := len(tr.idle)
		tr.mu.Unlock()
		if owners == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was not swept within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The owner's side of the connection sees it closed: its handler
	// goroutine ends (with the listener closed, so does the accept loop).
	owner.ln.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the owner's connection stayed open after the sweep")
	}
}
