package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestOnMessageOrder: messages received before OnMessage reach the
// callback first, then later ones, each once and in order, whichever
// goroutines deliver them.
func TestOnMessageOrder(t *testing.T) {
	reg := testRegistry(Options{})
	s, _ := reg.Create(XHRStreaming, Request{})
	ctx := context.Background()
	if err := s.Deliver(ctx, []string{"0", "1"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	s.OnMessage(func(m string) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	for i := 2; i < 1000; i++ {
		if err := s.Deliver(ctx, []string{fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1000 {
		t.Fatalf("%d messages, want 1000", len(got))
	}
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m)
		}
	}
}

// TestOnMessageWaitingDeliverGoesToCallback: a Deliver waiting for room in
// a full receive queue is let through to the callback once it is set.
func TestOnMessageWaitingDeliverGoesToCallback(t *testing.T) {
	reg := testRegistry(Options{RecvQueueMessages: 1})
	s, _ := reg.Create(XHRStreaming, Request{})
	ctx := context.Background()
	if err := s.Deliver(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, []string{"b", "c"}) }()
	got := make(chan string, 3)
	s.OnMessage(func(m string) { got <- m })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if all := <-got + <-got + <-got; all != "abc" {
		t.Fatalf("callback got %q, want abc", all)
	}
}

// TestOnMessageAnswersInline: on a connection receiver, what the callback
// sends is written before Deliver returns, by the delivering goroutine.
func TestOnMessageAnswersInline(t *testing.T) {
	s, c, ended := serveConnTest(t, Options{})
	s.OnMessage(func(m string) { _ = s.Send("echo " + m) })
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if err := s.Deliver(ctx, []string{fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		got := c.all()
		if want := fmt.Sprintf("a,echo %d", i); got[len(got)-1] != want {
			t.Fatalf("after Deliver returned the last frame is %q, want %q", got[len(got)-1], want)
		}
	}
	// A close from the callback: the close frame and onEnd follow.
	s.replaceOnMessage(t)
	if err := s.Deliver(ctx, []string{"bye"}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ended, "onEnd")
	if got := c.all(); strings.Join(got[len(got)-2:], "|") != "a,echo bye|c,bye" {
		t.Fatalf("last frames %v", got[len(got)-2:])
	}
}

// replaceOnMessage replaces the callback of TestOnMessageAnswersInline
// by one that answers and closes (OnMessage may be called only once).
func (s *Session) replaceOnMessage(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.onMsg = func(m string) {
		_ = s.Send("echo " + m)
		_ = s.Close(3000, "bye")
	}
	s.mu.Unlock()
}

// TestOnMessagePanic: a panicking callback closes the session with 3000
// and Deliver reports the panic for the transport to log.
func TestOnMessagePanic(t *testing.T) {
	reg := testRegistry(Options{})
	s, _ := reg.Create(XHRStreaming, Request{})
	s.OnMessage(func(string) { panic("boom") })
	err := s.Deliver(context.Background(), []string{"x", "y"})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
		t.Fatalf("deliver: %v, want a PanicError", err)
	}
	if code, _, closed := s.CloseInfo(); !closed || code != CodeGoAway {
		t.Fatalf("close info %d %v, want 3000", code, closed)
	}
}
