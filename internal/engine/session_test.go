package engine

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a Receiver that records frames; polling receivers are done
// after one frame.
type recorder struct {
	mu      sync.Mutex
	frames  []string
	polling bool
	gone    chan struct{}
	wrote   chan struct{}
}

func newRecorder(polling bool) *recorder {
	return &recorder{polling: polling, gone: make(chan struct{}), wrote: make(chan struct{}, 100)}
}

func (r *recorder) WriteFrame(f *Frame) (bool, error) {
	s := string(f.Kind)
	switch f.Kind {
	case FrameMessages:
		for _, m := range f.Messages {
			s += "," + m
		}
	case FrameClose:
		s += "," + f.Reason
	}
	r.mu.Lock()
	r.frames = append(r.frames, s)
	r.mu.Unlock()
	r.wrote <- struct{}{}
	return r.polling || f.Kind == FrameClose, nil
}

func (r *recorder) Gone() <-chan struct{} { return r.gone }

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.frames...)
}

func testRegistry(o Options) *Registry { return NewRegistry(o, 0) }

func TestPollingDeliversInOrderAcrossPolls(t *testing.T) {
	reg := testRegistry(Options{})
	s, created, err := reg.GetOrCreate("a", XHRPolling, func() Request { return Request{} })
	if err != nil || !created {
		t.Fatal(created, err)
	}
	r := newRecorder(true)
	s.Serve(r) // open frame
	for _, m := range []string{"1", "2", "3"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	s.Serve(r)
	_ = s.Send("4")
	s.Serve(r)
	want := []string{"o", "a,1,2,3", "a,4"}
	if got := r.all(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("frames %v, want %v", got, want)
	}
}

func TestCloseFlushesThenCloseFrameForEveryLaterReceiver(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, _ := reg.GetOrCreate("b", XHRPolling, func() Request { return Request{} })
	_ = s.Send("last words")
	if err := s.Close(3000, "Go away!"); err != nil {
		t.Fatal(err)
	}
	if err := s.Send("too late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := s.Close(3000, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	r := newRecorder(true)
	for i := 0; i < 4; i++ {
		s.Serve(r)
	}
	got := r.all()
	want := []string{"o", "a,last words", "c,Go away!", "c,Go away!"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frames %v, want %v", got, want)
		}
	}
	if _, err := s.Recv(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after close: %v", err)
	}
}

func TestSecondReceiverRefused(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, _ := reg.GetOrCreate("c", XHRStreaming, func() Request { return Request{} })
	first := newRecorder(false)
	done := make(chan struct{})
	go func() { s.Serve(first); close(done) }()
	<-first.wrote // open frame: attached
	second := newRecorder(true)
	s.Serve(second)
	if got := second.all(); len(got) != 1 || got[0] != "c,"+ReasonAnother {
		t.Fatalf("second receiver got %v", got)
	}
	_ = s.Send("x")
	<-first.wrote
	close(first.gone) // the client goes away: the session is interrupted
	<-done
	if code, _, closed := s.CloseInfo(); !closed || code != CodeInterrupted {
		t.Fatalf("after the receiver went away: %d %v", code, closed)
	}
}

func TestExpiryRemovesSession(t *testing.T) {
	reg := testRegistry(Options{DisconnectDelay: 20 * time.Millisecond})
	s, _, _ := reg.GetOrCreate("d", XHRPolling, func() Request { return Request{} })
	s.Serve(newRecorder(true))
	select {
	case <-s.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not expired")
	}
	if reg.Get("d") != nil || reg.Len() != 0 {
		t.Fatal("expired session still registered when its context ended")
	}
}

func TestQueueLimits(t *testing.T) {
	reg := testRegistry(Options{SendQueueBytes: 10})
	s, _, _ := reg.GetOrCreate("e", WebSocket, func() Request { return Request{} })
	if err := s.Send("12345"); err != nil {
		t.Fatal(err)
	}
	if err := s.Send("123456"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("over the byte limit: %v", err)
	}
	if code, reason, closed := s.CloseInfo(); !closed || code != CodeQueueFull || reason != ReasonQueueFull {
		t.Fatalf("close info %d %q %v", code, reason, closed)
	}
}

func TestDeliverWaitsForRoomThenRecvInOrder(t *testing.T) {
	reg := testRegistry(Options{RecvQueueMessages: 2})
	s, _, _ := reg.GetOrCreate("f", XHRPolling, func() Request { return Request{} })
	delivered := make(chan error, 1)
	go func() { delivered <- s.Deliver(context.Background(), []string{"1", "2", "3", "4", "5"}) }()
	for i := 1; i <= 5; i++ {
		m, err := s.Recv(context.Background())
		if err != nil || m != string(rune('0'+i)) {
			t.Fatalf("Recv %d: %q %v", i, m, err)
		}
	}
	if err := <-delivered; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv on an empty queue: %v", err)
	}
}

func TestEndLeavesRegistryAtOnce(t *testing.T) {
	reg := testRegistry(Options{})
	s, err := reg.Create(WebSocket, Request{})
	if err != nil || reg.Len() != 1 {
		t.Fatal(err, reg.Len())
	}
	s.End(CauseClient)
	if reg.Len() != 0 || !s.Closed() {
		t.Fatalf("after End: len %d closed %v", reg.Len(), s.Closed())
	}
}

func TestRegistryLimitAndConcurrency(t *testing.T) {
	reg := NewRegistry(Options{}, 1000)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, _, _ = reg.GetOrCreate(string(rune('a'+g))+string(rune(i)), XHRPolling, func() Request { return Request{} })
			}
		}(g)
	}
	wg.Wait()
	if reg.Len() != 1000 {
		t.Fatalf("len %d, want the limit 1000", reg.Len())
	}
	if _, _, err := reg.GetOrCreate("one more", XHRPolling, func() Request { return Request{} }); !errors.Is(err, ErrTooMany) {
		t.Fatalf("past the limit: %v", err)
	}
	n := 0
	reg.Range(func(*Session) { n++ })
	if n != 1000 {
		t.Fatalf("Range saw %d", n)
	}
}

// closeCounter is an Observer that records the reasons sessions closed for.
type closeCounter struct {
	NopObserver
	mu      sync.Mutex
	reasons []CloseCause
}

func (c *closeCounter) SessionClosed(_ Transport, r CloseCause, _ time.Duration) {
	c.mu.Lock()
	c.reasons = append(c.reasons, r)
	c.mu.Unlock()
}

func (c *closeCounter) got() []CloseCause {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reasons)
}

// TestCloseFor: the client gets what Close would give it (the queued
// messages, then the close frame); only the count differs. A second close
// is ErrClosed and not counted again, and a reason out of range counts as
// CauseServer, so that no close goes uncounted.
func TestCloseFor(t *testing.T) {
	obs := &closeCounter{}
	reg := testRegistry(Options{Observer: obs})
	s, _, _ := reg.GetOrCreate("cf", XHRPolling, func() Request { return Request{} })
	_ = s.Send("queued")
	if err := s.CloseFor(CauseLimit, 4001, "Too slow"); err != nil {
		t.Fatal(err)
	}
	if err := s.Send("too late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after CloseFor: %v", err)
	}
	if s.Context().Err() == nil {
		t.Fatal("context not done after CloseFor")
	}
	if code, reason, closed := s.CloseInfo(); code != 4001 || reason != "Too slow" || !closed {
		t.Fatalf("CloseInfo %d %q %v", code, reason, closed)
	}
	if err := s.CloseFor(CauseError, 4002, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second CloseFor: %v", err)
	}
	if err := s.Close(3000, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after CloseFor: %v", err)
	}
	r := newRecorder(true)
	for range 3 {
		s.Serve(r)
	}
	if got, want := r.all(), []string{"o", "a,queued", "c,Too slow"}; !slices.Equal(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}

	o, _, _ := reg.GetOrCreate("odd", XHRPolling, func() Request { return Request{} })
	if err := o.CloseFor(NumCauses+3, 4003, "odd"); err != nil {
		t.Fatal(err)
	}
	if got, want := obs.got(), []CloseCause{CauseLimit, CauseServer}; !slices.Equal(got, want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}

// TestRequestMapsNeverNil: a session keeps no header or query map when
// the request had none (transport's requestInfo), and Request still
// gives maps an application may read and Set on.
func TestRequestMapsNeverNil(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, err := reg.GetOrCreate("sid", XHRPolling, func() Request { return Request{Host: "h"} })
	if err != nil {
		t.Fatal(err)
	}
	r := s.Request()
	if r.Header == nil || r.Query == nil || r.Host != "h" {
		t.Fatalf("Request() = %+v, want empty non-nil maps", r)
	}
	r.Header.Set("X-App", "1") // must not panic
	r.Query.Set("k", "v")
	if s.req.header != nil || s.req.query != nil {
		t.Fatal("the session allocated maps it had no entries for")
	}
}

// TestRequestKeepsHeaders: the kept headers, held as pairs, come back as
// the request had them (several names, several values of one name in
// order), in a new map at each call.
func TestRequestKeepsHeaders(t *testing.T) {
	reg := testRegistry(Options{})
	in := http.Header{"User-Agent": {"ua"}, "X-Forwarded-For": {"1.2.3.4", "5.6.7.8"}, "Origin": {"http://o"}}
	s, _, err := reg.GetOrCreate("sid", WebSocket, func() Request { return Request{Header: in.Clone(), Path: "/p"} })
	if err != nil {
		t.Fatal(err)
	}
	r := s.Request()
	if !reflect.DeepEqual(r.Header, in) || r.Path != "/p" {
		t.Fatalf("Request() = %+v, want headers %v", r, in)
	}
	r.Header.Set("Origin", "changed")
	if got := s.Request().Header.Get("Origin"); got != "http://o" {
		t.Fatalf("after the application changed its copy: Origin %q", got)
	}
	if sn := s.Snapshot(); !reflect.DeepEqual(sn.Request.Header, in) {
		t.Fatalf("snapshot headers %v, want %v", sn.Request.Header, in)
	}
}
