package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// fake is a scripted SockJS server for one xhr session: /info says no
// websocket, receiving requests are answered by recv, xhr_send bodies go
// to sends (and wait for release when it is set).
type fake struct {
	recv     func(w http.ResponseWriter, r *http.Request, first bool)
	sends    chan []string
	release  chan struct{}
	inFlight atomic.Int32
	maxSends atomic.Int32
	mu       sync.Mutex
	opened   bool
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/info"):
		fmt.Fprint(w, `{"websocket":false,"cookie_needed":false,"origins":["*:*"],"entropy":1}`)
	case strings.HasSuffix(r.URL.Path, "/xhr_send"):
		n := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		for m := f.maxSends.Load(); n > m && !f.maxSends.CompareAndSwap(m, n); m = f.maxSends.Load() {
		}
		var msgs []string
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &msgs); err != nil {
			http.Error(w, "broken JSON", http.StatusInternalServerError)
			return
		}
		f.sends <- msgs
		if f.release != nil {
			select {
			case <-f.release:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		f.mu.Lock()
		first := !f.opened
		f.opened = true
		f.mu.Unlock()
		f.recv(w, r, first)
	}
}

func (f *fake) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL + "/svc"
}

// holdPolls answers the first poll with the open frame and holds the
// others until the client goes.
func holdPolls(w http.ResponseWriter, r *http.Request, first bool) {
	if first {
		fmt.Fprint(w, "o\n")
		return
	}
	<-r.Context().Done()
}

// TestSendBatching: one xhr_send in flight at a time, and what is sent
// meanwhile goes out in the next request, in order.
func TestSendBatching(t *testing.T) {
	f := &fake{recv: holdPolls, sends: make(chan []string, 16), release: make(chan struct{})}
	c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRPolling}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	timeout := time.After(30 * time.Second)
	next := func() []string {
		select {
		case m := <-f.sends:
			return m
		case <-timeout:
			t.Fatal("no xhr_send arrived")
			return nil
		}
	}
	if err := c.Send("m0"); err != nil {
		t.Fatal(err)
	}
	if got := next(); strings.Join(got, ",") != "m0" {
		t.Fatalf("first send carried %q", got)
	}
	// The first request is held by the server: these queue behind it.
	var want []string
	for i := 1; i < 10; i++ {
		want = append(want, fmt.Sprint("m", i))
		if err := c.Send(want[len(want)-1]); err != nil {
			t.Fatal(err)
		}
	}
	f.release <- struct{}{}
	if got := next(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("second send carried %q, want %q", got, want)
	}
	f.release <- struct{}{}
	if n := f.maxSends.Load(); n != 1 {
		t.Fatalf("%d xhr_send requests in flight at once, want 1", n)
	}
}

// TestBatchBound: a batch stops growing at MaxBatchBytes.
func TestBatchBound(t *testing.T) {
	f := &fake{recv: holdPolls, sends: make(chan []string, 64), release: make(chan struct{})}
	c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRPolling}, MaxBatchBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.Repeat("x", 40)
	for i := 0; i < 7; i++ { // the first goes alone and is held; 6 queue
		if err := c.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for total < 7 {
		select {
		case m := <-f.sends:
			if len(m) > 3 { // 3×40 bytes is the first size past 100
				t.Fatalf("batch of %d messages over MaxBatchBytes", len(m))
			}
			total += len(m)
			go func() { f.release <- struct{}{} }()
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 7 messages sent", total)
		}
	}
}

// streamThen serves an xhr-streaming session whose first response sends
// the prelude and the open frame, then calls then.
func streamThen(then func(w http.ResponseWriter, fl http.Flusher, r *http.Request)) func(http.ResponseWriter, *http.Request, bool) {
	return func(w http.ResponseWriter, r *http.Request, first bool) {
		fl := w.(http.Flusher)
		fmt.Fprint(w, strings.Repeat("h", 2048)+"\n")
		if first {
			fmt.Fprint(w, "o\n")
		}
		fl.Flush()
		then(w, fl, r)
	}
}

// TestHeartbeatsAndSilence: heartbeats keep a connection alive past
// ReadTimeout; a server that says nothing for ReadTimeout is dropped
// with 1006.
func TestHeartbeatsAndSilence(t *testing.T) {
	const readTimeout = time.Second
	f := &fake{sends: make(chan []string, 16), recv: streamThen(func(w http.ResponseWriter, fl http.Flusher, r *http.Request) {
		tick := time.NewTicker(readTimeout / 10)
		defer tick.Stop()
		for i := 0; i < 40; i++ { // 4× ReadTimeout of heartbeats
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "h\n")
			fl.Flush()
		}
		fmt.Fprint(w, "a[\"after heartbeats\"]\n")
		fl.Flush()
		<-r.Context().Done() // then silence
	})}
	c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRStreaming}, ReadTimeout: readTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if m, err := c.Recv(ctx); err != nil || m != "after heartbeats" {
		t.Fatalf("Recv: %q %v", m, err)
	}
	if _, err := c.Recv(ctx); err != client.ErrClosed {
		t.Fatalf("Recv after silence: %v, want ErrClosed", err)
	}
	if code, reason, _ := c.CloseInfo(); code != 1006 || reason != "Server silent" {
		t.Fatalf("close %d %q", code, reason)
	}
}

// TestSlowReaderIsNotSilence: a full receive queue stops the reader, and
// that is not the server's silence.
func TestSlowReaderIsNotSilence(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	f := &fake{sends: make(chan []string, 16), recv: streamThen(func(w http.ResponseWriter, fl http.Flusher, r *http.Request) {
		fmt.Fprint(w, "a[\"1\",\"2\",\"3\"]\n")
		fl.Flush()
		<-r.Context().Done()
	})}
	c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRStreaming},
		ReadTimeout: readTimeout, RecvQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait 4× ReadTimeout without reading, on a timer: what is tested is
	// that the connection is still open after that long.
	select {
	case <-c.Done():
		t.Fatalf("closed while the application was slow: %v", fmt.Sprint(c.CloseInfo()))
	case <-time.After(4 * readTimeout):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, want := range []string{"1", "2", "3"} {
		if m, err := c.Recv(ctx); err != nil || m != want {
			t.Fatalf("Recv: %q %v, want %q", m, err, want)
		}
	}
}

// TestFrameTooBig: a frame over MaxFrameBytes closes with 1009 instead of
// being buffered.
func TestFrameTooBig(t *testing.T) {
	for _, size := range []int{2 << 10, 64 << 10} { // within and past the read buffer
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			f := &fake{sends: make(chan []string, 16), recv: streamThen(func(w http.ResponseWriter, fl http.Flusher, r *http.Request) {
				fmt.Fprintf(w, "a[%q]\n", strings.Repeat("x", size))
				fl.Flush()
				<-r.Context().Done()
			})}
			c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRStreaming}, MaxFrameBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := c.Recv(ctx); err != client.ErrClosed {
				t.Fatalf("Recv: %v, want ErrClosed", err)
			}
			if code, _, _ := c.CloseInfo(); code != 1009 {
				t.Fatalf("close code %d, want 1009", code)
			}
			_ = c.Close()
		})
	}
}

// TestNoGoroutinesAfterClose: every goroutine the client started has
// ended once Close returns, over every transport, against our server and
// igm's.
func TestNoGoroutinesAfterClose(t *testing.T) {
	servers := []string{ours(t), igmServer(t)}
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, base := range servers {
		for _, name := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
			c, err := client.Dial(ctx, base+"/echo", client.Options{Transports: []string{name}, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Send("x"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Recv(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("Close returned before the connection's goroutines ended")
			}
			if err := c.Send("y"); err != client.ErrClosed {
				t.Fatalf("Send after Close: %v", err)
			}
		}
	}
	// What is left are the servers' ends of the connections and idle
	// keep-alive connections: close those and wait for the count to come
	// back (bounded).
	tr.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond) // polling a count, bounded by the deadline
	}
}

// TestRecvContext: Recv gives up with the caller's context.
func TestRecvContext(t *testing.T) {
	c, err := client.Dial(context.Background(), ours(t)+"/echo", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Transport() != client.WebSocket {
		t.Fatalf("default transport %s, want websocket", c.Transport())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Recv(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Recv: %v", err)
	}
}

// TestLostSession: a second open frame means the server answered a new,
// empty session under the same id (the owner node died, the session
// expired); the client ends with 1006 instead of polling it for ever and
// missing every message of the old one.
func TestLostSession(t *testing.T) {
	for _, tr := range []string{client.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			f := &fake{recv: func(w http.ResponseWriter, r *http.Request, first bool) {
				fmt.Fprint(w, "o\n") // every receiving request opens a "new" session
			}, sends: make(chan []string, 16)}
			c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{tr}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := c.Recv(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("Recv: %v (context %v), want the connection closed", err, ctx.Err())
			}
			if code, reason, _ := c.CloseInfo(); code != 1006 || reason != "Server lost session" {
				t.Fatalf("closed with %d %q, want 1006 \"Server lost session\"", code, reason)
			}
		})
	}
}

// TestReceiveOnClosingConnection: a poll on a kept-alive connection that
// the server closes without an answer ends the session with 1006, and is
// not asked again: the owner may have written messages to a relaying node
// that died before passing them on (TestClusterChaos's node kills found
// unannounced gaps when the client asked again).
func TestReceiveOnClosingConnection(t *testing.T) {
	var polls atomic.Int32
	f := &fake{sends: make(chan []string, 1)}
	f.recv = func(w http.ResponseWriter, r *http.Request, first bool) {
		if first {
			fmt.Fprint(w, "o\n")
			return
		}
		if polls.Add(1) == 1 {
			// Read, then close without a byte of answer.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
			return
		}
		fmt.Fprint(w, "a[\"after a gap\"]\n")
	}
	c, err := client.Dial(context.Background(), f.start(t), client.Options{Transports: []string{client.XHRPolling}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Recv(ctx)
	code, _, closed := c.CloseInfo()
	if err == nil || !closed || code != 1006 {
		t.Fatalf("Recv = %q, %v, close %d %v; want the session ended with 1006", m, err, code, closed)
	}
}
