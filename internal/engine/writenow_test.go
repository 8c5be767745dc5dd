package engine

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// nowRecorder is a connRecorder that also takes frames now (NowWriter).
// Every holdEvery-th WriteFrameNow reports part of its frame held (0:
// none); Flush then waits for gate (nil: it does not wait).
type nowRecorder struct {
	*connRecorder
	holdEvery int
	gate      chan struct{}

	mu       sync.Mutex
	nowCalls int
	flushes  int
	held     bool
}

func (n *nowRecorder) WritesNow() bool { return true }

func (n *nowRecorder) WriteFrameNow(f *Frame) (bool, error) {
	n.mu.Lock()
	if n.held {
		n.mu.Unlock()
		panic("a frame written now while the last one is held")
	}
	n.nowCalls++
	n.held = n.holdEvery > 0 && n.nowCalls%n.holdEvery == 0
	held := n.held
	n.mu.Unlock()
	_, err := n.connRecorder.WriteFrame(f)
	return held, err
}

func (n *nowRecorder) Flush() error {
	if n.gate != nil {
		select {
		case <-n.gate:
		case <-time.After(10 * time.Second):
			return errors.New("flush gate not opened within 10s")
		}
	}
	n.mu.Lock()
	n.flushes++
	n.held = false
	n.mu.Unlock()
	return nil
}

func (n *nowRecorder) counts() (now, flushes int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nowCalls, n.flushes
}

func serveNowTest(t *testing.T, o Options, holdEvery int, gate chan struct{}) (*Session, *nowRecorder, chan struct{}) {
	t.Helper()
	s, err := testRegistry(o).Create(WebSocket, Request{})
	if err != nil {
		t.Fatal(err)
	}
	n := &nowRecorder{connRecorder: newConnRecorder(), holdEvery: holdEvery, gate: gate}
	ended := make(chan struct{})
	s.ServeConn(n, func() { close(ended) })
	waitWrote(t, &n.recorder) // the open frame
	return s, n, ended
}

// TestWriteNowWhenIdle: a message sent to an idle connection is written
// by Send itself, before it returns; the close frame still goes through a
// pump and WriteFrame.
func TestWriteNowWhenIdle(t *testing.T) {
	s, n, ended := serveNowTest(t, Options{}, 0, nil)
	for _, m := range []string{"a", "b"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		if got, _ := messagesOf(n.all()); !slices.Contains(got, m) {
			t.Fatalf("after Send(%q) returned: messages %v", m, got)
		}
		if msgs, bytes := s.Buffered(); msgs != 0 || bytes != 0 {
			t.Fatalf("Buffered %d %d after a write now", msgs, bytes)
		}
	}
	if now, _ := n.counts(); now != 2 {
		t.Fatalf("%d frames written now, want 2", now)
	}
	_ = s.Close(3000, "bye")
	waitClosed(t, ended, "onEnd")
	if all := n.all(); !slices.Equal(all, []string{"o", "a,a", "a,b", "c,bye"}) {
		t.Fatalf("frames %v", all)
	}
}

// TestWriteNowHeldGoesToPump: when the connection holds part of a frame
// written now, a pump flushes it, and meanwhile Send only queues: the
// next messages follow as one batch, in order, and once the pump is done
// an idle connection is written now again.
func TestWriteNowHeldGoesToPump(t *testing.T) {
	gate := make(chan struct{})
	s, n, ended := serveNowTest(t, Options{}, 1, gate)
	for _, m := range []string{"a", "b", "c"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if now, _ := n.counts(); now != 1 {
		t.Fatalf("%d frames written now while the first was held, want 1", now)
	}
	if msgs, bytes := s.Buffered(); msgs != 2 || bytes != 2 {
		t.Fatalf("Buffered %d %d while the connection holds a frame, want 2 2", msgs, bytes)
	}
	close(gate)
	waitWrote(t, &n.recorder) // a
	waitWrote(t, &n.recorder) // b, c
	// The pump ends once nothing is left; then Send writes now again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		pumping := s.pumping
		s.mu.Unlock()
		if !pumping {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pump did not end within 10s")
		}
		time.Sleep(time.Millisecond) // polling a state, bounded
	}
	n.mu.Lock()
	n.holdEvery = 0
	n.mu.Unlock()
	_ = s.Send("d")
	if now, flushes := n.counts(); now != 2 || flushes != 1 {
		t.Fatalf("written now %d, flushed %d; want 2 and 1", now, flushes)
	}
	_ = s.Close(3000, "bye")
	waitClosed(t, ended, "onEnd")
	if all := n.all(); !slices.Equal(all, []string{"o", "a,a", "a,b,c", "a,d", "c,bye"}) {
		t.Fatalf("frames %v", all)
	}
}

// TestWriteNowHeldOverflows: a client that does not read (its connection
// holds the frame written now) fills its send queue, and the session is
// closed with 3009 like any slow client; the sender never waits.
func TestWriteNowHeldOverflows(t *testing.T) {
	gate := make(chan struct{})
	s, n, ended := serveNowTest(t, Options{SendQueueMessages: 2}, 1, gate)
	errs := []error{s.Send("a"), s.Send("b"), s.Send("c"), s.Send("d")}
	if !slices.Equal(errs, []error{nil, nil, nil, ErrQueueFull}) {
		t.Fatalf("Send errors %v, want the third queued message to overflow", errs)
	}
	close(gate)
	waitClosed(t, ended, "onEnd")
	if all := n.all(); !slices.Equal(all, []string{"o", "a,a", "c," + ReasonQueueFull}) {
		t.Fatalf("frames %v, want the held frame flushed, then the close frame", all)
	}
	if code, _, _ := s.CloseInfo(); code != CodeQueueFull {
		t.Fatalf("close code %d", code)
	}
}

// TestWriteNowOrderAndExactlyOnce: senders at once, with frames written
// now, some held and flushed by pumps, and batches by pumps in between.
func TestWriteNowOrderAndExactlyOnce(t *testing.T) {
	s, n, ended := serveNowTest(t, Options{SendQueueMessages: 1 << 20, SendQueueBytes: 1 << 30}, 3, nil)
	checkOrderAndExactlyOnce(t, s, n.connRecorder, ended)
	if now, flushes := n.counts(); now == 0 || flushes == 0 {
		t.Fatalf("written now %d times, flushed %d: the test did not take the paths it is about", now, flushes)
	}
}
