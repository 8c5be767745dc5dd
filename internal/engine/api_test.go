package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
)

// recorder is a streaming Receiver that keeps the kinds of the frames
// written to it.
type recorder struct {
	mu    sync.Mutex
	kinds []engine.FrameKind
	wrote chan struct{}
	gone  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{wrote: make(chan struct{}, 16), gone: make(chan struct{})}
}

func (r *recorder) WriteFrame(f *engine.Frame) (bool, error) {
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

// TestPlumbing drives a session from outside the package through every
// method a transport calls, as package transport does.
func TestPlumbing(t *testing.T) {
	reg := engine.NewRegistry(engine.Options{}, 0)
	s, err := reg.Create(engine.WebSocket, engine.Request{})
	if err != nil {
		t.Fatal(err)
	}

	// Deliver → Recv.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deliver(ctx, []string{"a", "b"}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	for _, want := range []string{"a", "b"} {
		if got, err := s.Recv(ctx); got != want || err != nil {
			t.Fatalf("Recv = %q, %v; want %q", got, err, want)
		}
	}

	// Send slots are bounded.
	if !s.AcquireSendSlot(1) {
		t.Fatal("first send slot refused")
	}
	if s.AcquireSendSlot(1) {
		t.Fatal("second send slot of 1 granted")
	}
	s.ReleaseSendSlot()
	if !s.AcquireSendSlot(1) {
		t.Fatal("send slot not freed by ReleaseSendSlot")
	}
	s.ReleaseSendSlot()

	// Serve writes the open frame and stays attached.
	r := newRecorder()
	served := make(chan struct{})
	go func() { s.Serve(r); close(served) }()
	r.waitFrame(t)
	if !s.Attached() {
		t.Fatal("not attached while Serve runs")
	}
	if s.Closed() {
		t.Fatal("closed before CloseFor")
	}

	// CloseFor closes with the given code; Serve writes the close frame.
	s.CloseWith(engine.CodeQueueFull, engine.ReasonQueueFull, engine.CauseLimit)
	r.waitFrame(t)
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the close frame")
	}
	if !s.Closed() {
		t.Fatal("not closed after CloseFor")
	}
	if code, reason, closed := s.CloseInfo(); code != engine.CodeQueueFull || reason != engine.ReasonQueueFull || !closed {
		t.Fatalf("CloseInfo = %d %q %v", code, reason, closed)
	}
	r.mu.Lock()
	kinds := r.kinds
	r.mu.Unlock()
	if len(kinds) != 2 || kinds[0] != engine.FrameOpen || kinds[1] != engine.FrameClose {
		t.Fatalf("frames %q, want open then close", kinds)
	}

	// End takes it out of the registry at once.
	if reg.Len() != 1 {
		t.Fatalf("registry holds %d sessions before End, want 1", reg.Len())
	}
	s.End(engine.CauseClient)
	if reg.Len() != 0 {
		t.Fatalf("registry holds %d sessions after End, want 0", reg.Len())
	}
}

// TestEndOpenSession: End on an open session closes it with 1002.
func TestEndOpenSession(t *testing.T) {
	reg := engine.NewRegistry(engine.Options{}, 0)
	s, err := reg.Create(engine.WebSocket, engine.Request{})
	if err != nil {
		t.Fatal(err)
	}
	s.End(engine.CauseClient)
	if code, _, closed := s.CloseInfo(); code != engine.CodeInterrupted || !closed {
		t.Fatalf("CloseInfo after End = %d %v, want 1002 closed", code, closed)
	}
	if s.Context().Err() == nil {
		t.Fatal("context not cancelled by End")
	}
}
