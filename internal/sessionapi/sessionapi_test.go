package sessionapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/sessionapi"
	"github.com/sockjsd/sockjsd/session"
)

// recorder is a streaming Receiver that keeps the kinds of the frames
// written to it.
type recorder struct {
	mu    sync.Mutex
	kinds []session.FrameKind
	wrote chan struct{}
	gone  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{wrote: make(chan struct{}, 16), gone: make(chan struct{})}
}

func (r *recorder) WriteFrame(f *session.Frame) (bool, error) {
	r.mu.Lock()
	r.kinds = append(r.kinds, f.Kind)
	r.mu.Unlock()
	r.wrote <- struct{}{}
	return false, nil
}

func (r *recorder) Gone() <-chan struct{} { return r.gone }

// waitFrame waits (bounded) for the next frame written to r.
func (r *recorder) waitFrame(t *testing.T) {
	t.Helper()
	select {
	case <-r.wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("no frame written within 5s")
	}
}

// TestPlumbing drives a session through every sessionapi function, so a
// hook that package session failed to set, or set to the wrong method,
// fails here rather than in a transport.
func TestPlumbing(t *testing.T) {
	reg := session.NewRegistry(session.Options{}, 0)
	s, err := reg.Create(session.WebSocket, session.Request{})
	if err != nil {
		t.Fatal(err)
	}

	// Deliver → Recv.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sessionapi.Deliver(s, ctx, []string{"a", "b"}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	for _, want := range []string{"a", "b"} {
		if got, err := s.Recv(ctx); got != want || err != nil {
			t.Fatalf("Recv = %q, %v; want %q", got, err, want)
		}
	}

	// Send slots are bounded.
	if !sessionapi.AcquireSendSlot(s, 1) {
		t.Fatal("first send slot refused")
	}
	if sessionapi.AcquireSendSlot(s, 1) {
		t.Fatal("second send slot of 1 granted")
	}
	sessionapi.ReleaseSendSlot(s)
	if !sessionapi.AcquireSendSlot(s, 1) {
		t.Fatal("send slot not freed by ReleaseSendSlot")
	}
	sessionapi.ReleaseSendSlot(s)

	// Serve writes the open frame and stays attached.
	r := newRecorder()
	served := make(chan struct{})
	go func() { sessionapi.Serve(s, r); close(served) }()
	r.waitFrame(t)
	if !sessionapi.Attached(s) {
		t.Fatal("not attached while Serve runs")
	}
	if sessionapi.Closed(s) {
		t.Fatal("closed before CloseFor")
	}

	// CloseFor closes with the given code; Serve writes the close frame.
	sessionapi.CloseFor(s, session.CodeQueueFull, session.ReasonQueueFull, session.CauseLimit)
	r.waitFrame(t)
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the close frame")
	}
	if !sessionapi.Closed(s) {
		t.Fatal("not closed after CloseFor")
	}
	if code, reason, closed := s.CloseInfo(); code != session.CodeQueueFull || reason != session.ReasonQueueFull || !closed {
		t.Fatalf("CloseInfo = %d %q %v", code, reason, closed)
	}
	r.mu.Lock()
	kinds := r.kinds
	r.mu.Unlock()
	if len(kinds) != 2 || kinds[0] != session.FrameOpen || kinds[1] != session.FrameClose {
		t.Fatalf("frames %q, want open then close", kinds)
	}

	// End takes it out of the registry at once.
	if reg.Len() != 1 {
		t.Fatalf("registry holds %d sessions before End, want 1", reg.Len())
	}
	sessionapi.End(s, session.CauseClient)
	if reg.Len() != 0 {
		t.Fatalf("registry holds %d sessions after End, want 0", reg.Len())
	}
}

// TestEndOpenSession: End on an open session closes it with 1002.
func TestEndOpenSession(t *testing.T) {
	reg := session.NewRegistry(session.Options{}, 0)
	s, err := reg.Create(session.WebSocket, session.Request{})
	if err != nil {
		t.Fatal(err)
	}
	sessionapi.End(s, session.CauseClient)
	if code, _, closed := s.CloseInfo(); code != session.CodeInterrupted || !closed {
		t.Fatalf("CloseInfo after End = %d %v, want 1002 closed", code, closed)
	}
	if s.Context().Err() == nil {
		t.Fatal("context not cancelled by End")
	}
}

// BenchmarkDeliverRecv is the receive path as a transport drives it:
// through sessionapi, then the application's Recv. Compare with
// session.BenchmarkDeliverRecv, which calls the method directly, for the
// cost of the indirection.
func BenchmarkDeliverRecv(b *testing.B) {
	reg := session.NewRegistry(session.Options{}, 0)
	s, err := reg.Create(session.WebSocket, session.Request{})
	if err != nil {
		b.Fatal(err)
	}
	msgs := []string{"m"}
	ctx := s.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := sessionapi.Deliver(s, ctx, msgs); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
