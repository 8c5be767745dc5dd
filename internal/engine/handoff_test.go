package engine

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestHandOff: a frozen session writes nothing new; its snapshot has the
// queued messages; Done gives the attached receiver a heartbeat that ends
// its answer, and every later receiver the same; Send and Close refuse;
// Restore makes the session again with the same ids and queue, without
// an open frame.
func TestHandOff(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, err := reg.GetOrCreate("sid", XHRStreaming, func() Request { return Request{Host: "h"} })
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder(false) // a stream: takes frames until done
	served := make(chan struct{})
	go func() { s.Serve(r); close(served) }()
	waitWrote(t, r) // o
	if err := s.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"1", "2"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	sn := s.Snapshot()
	if sn.Key != "sid" || sn.ID != s.ID() || !sn.Opened || sn.Transport != XHRStreaming || !slices.Equal(sn.Out, []string{"1", "2"}) || sn.Request.Host != "h" {
		t.Fatalf("snapshot %+v", sn)
	}
	s.Done()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the attached receiver was not let go")
	}
	if got := r.all(); !slices.Equal(got, []string{"o", "h"}) {
		t.Fatalf("frames %v, want the open frame and the last heartbeat only", got)
	}
	later := newRecorder(true)
	s.Serve(later)
	if got := later.all(); !slices.Equal(got, []string{"h"}) {
		t.Fatalf("a later receiver got %v, want a heartbeat", got)
	}
	if err := s.Send("3"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Done: %v", err)
	}
	if reg.Get("sid") != s {
		t.Fatal("the stub left the registry")
	}

	other := testRegistry(Options{})
	rs, created, err := other.Restore(sn)
	if err != nil || !created || rs.ID() != s.ID() {
		t.Fatalf("restore: %v %v", created, err)
	}
	p := newRecorder(true)
	rs.Serve(p)
	if got := p.all(); !slices.Equal(got, []string{"a,1,2"}) {
		t.Fatalf("first receiver of the restored session got %v, want the queue without an open frame", got)
	}
}

// TestFreezeWaitsForFinish: a polling answer that carries a batch must be
// sent (finished) before the session can be frozen: the batch is on the
// wire only then.
func TestFreezeWaitsForFinish(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, _ := reg.GetOrCreate("sid", XHRPolling, func() Request { return Request{} })
	s.Serve(newRecorder(true)) // o
	_ = s.Send("1")
	f := newFinisher()
	go s.Serve(f)
	<-f.finishing // the batch is written, its answer not sent
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := s.Freeze(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("freeze with an answer being finished: %v, want to wait", err)
	}
	froze := make(chan error, 1)
	go func() { froze <- s.Freeze(context.Background()) }()
	f.result <- nil
	select {
	case err := <-froze:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("freeze did not end after the answer was sent")
	}
	if sn := s.Snapshot(); len(sn.Out) != 0 {
		t.Fatalf("snapshot %+v: the sent batch must not be in it", sn)
	}
	s.Thaw()
	if s.HandingOff() {
		t.Fatal("thawed session still frozen")
	}
}

// TestRelease: Release ends the attached receiver's answer with a
// heartbeat after what was queued, on a served receiver (net/http's
// goroutine) and on a connection receiver (pumps, a hijacked stream);
// the session goes on, and the next receiver gets what came since.
// Without a receiver attached it does nothing.
func TestRelease(t *testing.T) {
	for _, pumped := range []bool{false, true} {
		t.Run(map[bool]string{false: "served", true: "pumped"}[pumped], func(t *testing.T) {
			reg := testRegistry(Options{})
			s, _, err := reg.GetOrCreate("sid", XHRStreaming, func() Request { return Request{} })
			if err != nil {
				t.Fatal(err)
			}
			if s.Release() {
				t.Fatal("Release with no receiver attached reported one")
			}
			var rec *recorder
			ended := make(chan struct{})
			if pumped {
				c := newConnRecorder()
				rec = &c.recorder
				s.ServeConn(c, func() { close(ended) })
			} else {
				rec = newRecorder(false)
				go func() { s.Serve(rec); close(ended) }()
			}
			waitWrote(t, rec) // o
			if err := s.Send("1"); err != nil {
				t.Fatal(err)
			}
			waitWrote(t, rec)
			if !s.Release() {
				t.Fatal("Release found no receiver")
			}
			waitClosed(t, ended, "the released receiver's end")
			if got := rec.all(); !slices.Equal(got, []string{"o", "a,1", "h"}) {
				t.Fatalf("frames %v, want the open frame, the message and the heartbeat that ends the answer", got)
			}
			if err := s.Send("2"); err != nil {
				t.Fatalf("Send after Release: %v (the session must go on)", err)
			}
			next := newRecorder(true)
			s.Serve(next)
			if got := next.all(); !slices.Equal(got, []string{"a,2"}) {
				t.Fatalf("the next receiver got %v", got)
			}
		})
	}
}
