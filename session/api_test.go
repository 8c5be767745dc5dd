package session

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSessionMethodSet pins the exported method set of *Session to the
// application API, so that transport plumbing cannot grow back into it by
// accident: the transport side belongs in internal/sessionapi.
func TestSessionMethodSet(t *testing.T) {
	want := []string{
		"Buffered", "Close", "CloseFor", "CloseInfo", "Context", "ID", "OnMessage", "Recv", "Request", "Send",
		"Transport", "Written",
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[*Session](), reflect.TypeFor[Session]()} {
		var got []string
		for m := range typ.Methods() {
			got = append(got, m.Name)
		}
		if typ.Kind() != reflect.Pointer {
			want = nil // every method has a pointer receiver
		}
		if !slices.Equal(got, want) {
			t.Errorf("exported methods of %v = %v, want %v", typ, got, want)
		}
	}
}

// closeCounter is an Observer that records the reasons sessions closed for.
type closeCounter struct {
	NopObserver
	mu      sync.Mutex
	reasons []CloseReason
}

func (c *closeCounter) SessionClosed(_ Transport, r CloseReason, _ time.Duration) {
	c.mu.Lock()
	c.reasons = append(c.reasons, r)
	c.mu.Unlock()
}

func (c *closeCounter) got() []CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reasons)
}

// TestCloseFor: the client gets what Close would give it (the queued
// messages, then the close frame); only the count differs. A second close
// is ErrClosed and not counted again, and a reason out of range counts as
// ReasonServer, so that no close goes uncounted.
func TestCloseFor(t *testing.T) {
	obs := &closeCounter{}
	reg := testRegistry(Options{Observer: obs})
	s, _, _ := reg.GetOrCreate("cf", XHRPolling, func() Request { return Request{} })
	_ = s.Send("queued")
	if err := s.CloseFor(ReasonLimit, 4001, "Too slow"); err != nil {
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
	if err := s.CloseFor(ReasonError, 4002, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second CloseFor: %v", err)
	}
	if err := s.Close(3000, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after CloseFor: %v", err)
	}
	r := newRecorder(true)
	for range 3 {
		s.serve(r)
	}
	if got, want := r.all(), []string{"o", "a,queued", "c,Too slow"}; !slices.Equal(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}

	o, _, _ := reg.GetOrCreate("odd", XHRPolling, func() Request { return Request{} })
	if err := o.CloseFor(NumReasons+3, 4003, "odd"); err != nil {
		t.Fatal(err)
	}
	if got, want := obs.got(), []CloseReason{ReasonLimit, ReasonServer}; !slices.Equal(got, want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}
