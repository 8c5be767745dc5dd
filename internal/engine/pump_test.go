package engine

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// connRecorder is a connection receiver (never done before the close
// frame) that records frames and can be told to fail.
type connRecorder struct {
	recorder
	fail   chan struct{} // closed: every write fails
	active sync.Mutex    // held while writing: two writers at once fail the test
}

func newConnRecorder() *connRecorder {
	return &connRecorder{recorder: recorder{gone: make(chan struct{}), wrote: make(chan struct{}, 1<<16)}, fail: make(chan struct{})}
}

func (c *connRecorder) WriteFrame(f *Frame) (bool, error) {
	if !c.active.TryLock() {
		panic("two frames written at once")
	}
	defer c.active.Unlock()
	select {
	case <-c.fail:
		return true, errors.New("broken connection")
	default:
	}
	_, _ = c.recorder.WriteFrame(f)
	return f.Kind == FrameClose, nil
}

// serveConnTest serves a new websocket-like session on a connRecorder; the
// returned channel is closed when onEnd ran.
func serveConnTest(t *testing.T, o Options) (*Session, *connRecorder, chan struct{}) {
	t.Helper()
	reg := testRegistry(o)
	s, err := reg.Create(WebSocket, Request{})
	if err != nil {
		t.Fatal(err)
	}
	c := newConnRecorder()
	ended := make(chan struct{})
	s.ServeConn(c, func() { close(ended) })
	return s, c, ended
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

// messagesOf flattens the recorded message frames.
func messagesOf(frames []string) (msgs []string, other []string) {
	for _, f := range frames {
		if strings.HasPrefix(f, string(FrameMessages)+",") {
			msgs = append(msgs, strings.Split(f, ",")[1:]...)
		} else {
			other = append(other, f)
		}
	}
	return msgs, other
}

// TestServeConnOrderAndExactlyOnce: many goroutines sending while pumps
// come and go; every message arrives once, each sender's in order, and
// never two writes at once (the recorder panics).
func TestServeConnOrderAndExactlyOnce(t *testing.T) {
	s, c, ended := serveConnTest(t, Options{SendQueueMessages: 1 << 20, SendQueueBytes: 1 << 30})
	checkOrderAndExactlyOnce(t, s, c, ended)
}

// checkOrderAndExactlyOnce sends from 8 goroutines at once, closes, and
// checks what c (served by s; ended closed by onEnd) received.
func checkOrderAndExactlyOnce(t *testing.T, s *Session, c *connRecorder, ended chan struct{}) {
	t.Helper()
	const senders, each = 8, 2000
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := s.Send(fmt.Sprintf("%d.%d", g, i)); err != nil {
					t.Error(err)
					return
				}
				if i%100 == 0 {
					runtime.Gosched() // let pumps finish and new ones start
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(3000, "bye"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ended, "onEnd")
	msgs, other := messagesOf(c.all())
	if len(other) != 2 || other[0] != "o" || other[1] != "c,bye" {
		t.Fatalf("frames besides messages: %v, want the open frame first and the close frame last", other)
	}
	if all := c.all(); all[len(all)-1] != "c,bye" {
		t.Fatalf("last frame %q, want the close frame", all[len(all)-1])
	}
	next := make([]int, senders)
	for _, m := range msgs {
		var g, i int
		if _, err := fmt.Sscanf(m, "%d.%d", &g, &i); err != nil {
			t.Fatalf("message %q: %v", m, err)
		}
		if i != next[g] {
			t.Fatalf("sender %d: got %d, want %d (lost, duplicated or reordered)", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != each {
			t.Fatalf("sender %d: %d of %d messages arrived", g, n, each)
		}
	}
	if m, b := s.Buffered(); m != 0 || b != 0 {
		t.Fatalf("Buffered after the end: %d %d", m, b)
	}
}

// TestServeConnHeartbeat: heartbeats come from the timer when nothing
// else was written for HeartbeatDelay, and stop after the close.
func TestServeConnHeartbeat(t *testing.T) {
	s, c, ended := serveConnTest(t, Options{HeartbeatDelay: 20 * time.Millisecond})
	waitWrote(t, &c.recorder) // open
	for i := 0; i < 3; i++ {
		waitWrote(t, &c.recorder)
	}
	if got := c.all(); got[1] != "h" || got[2] != "h" || got[3] != "h" {
		t.Fatalf("frames %v, want heartbeats after the open frame", got)
	}
	if err := s.Close(3000, "bye"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ended, "onEnd")
	if got := c.all(); got[len(got)-1] != "c,bye" {
		t.Fatalf("last frame %q, want the close frame", got[len(got)-1])
	}
	// No timer may write after the close: the heartbeat timer is stopped
	// and the connection let go, which a firing timer checks first.
	s.mu.Lock()
	hb, conn := s.hb, s.conn
	s.mu.Unlock()
	if hb != nil || conn != nil {
		t.Fatalf("after the end: heartbeat timer %v, connection %v; want both gone", hb, conn)
	}
}

// TestServeConnGone: the transport reports a connection that went away
// (connLost); the session closes with 1002, no close frame is written to
// the connection, and onEnd runs. Another receiver's loss changes nothing.
func TestServeConnGone(t *testing.T) {
	s, c, ended := serveConnTest(t, Options{})
	other := newConnRecorder()
	s.ConnLost(other) // not this session's connection: nothing happens
	if _, _, closed := s.CloseInfo(); closed {
		t.Fatal("a receiver that is not attached closed the session")
	}
	close(c.gone)
	s.ConnLost(c)
	waitClosed(t, ended, "onEnd")
	if got := c.all(); len(got) != 1 || got[0] != "o" {
		t.Fatalf("frames %v, want the open frame only", got)
	}
	if code, _, closed := s.CloseInfo(); !closed || code != CodeInterrupted {
		t.Fatalf("close info %d %v", code, closed)
	}
}

// TestServeConnWriteError: a frame that cannot be written closes the
// session with 1002 (never carries on past a lost message) and ends it.
func TestServeConnWriteError(t *testing.T) {
	s, c, ended := serveConnTest(t, Options{})
	close(c.fail)
	if err := s.Send("lost"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ended, "onEnd")
	if code, _, closed := s.CloseInfo(); !closed || code != CodeInterrupted {
		t.Fatalf("close info %d %v, want 1002", code, closed)
	}
	if err := s.Send("after"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after the end: %v", err)
	}
}

// TestServeConnClosedBeforeAttach: a session closed before its connection
// was served gets the open frame, then the close frame, then onEnd.
func TestServeConnClosedBeforeAttach(t *testing.T) {
	reg := testRegistry(Options{})
	s, _ := reg.Create(WebSocket, Request{})
	_ = s.Send("first")
	_ = s.Close(3000, "bye")
	c := newConnRecorder()
	ended := make(chan struct{})
	s.ServeConn(c, func() { close(ended) })
	waitClosed(t, ended, "onEnd")
	if got := c.all(); strings.Join(got, "|") != "o|a,first|c,bye" {
		t.Fatalf("frames %v", got)
	}
}

// TestWritten: the signal taken before a write is closed once the
// batch is written, on a Serve loop and on a pump alike.
func TestWritten(t *testing.T) {
	s, c, _ := serveConnTest(t, Options{})
	waitWrote(t, &c.recorder) // open
	sig := s.Written()
	select {
	case <-sig:
		t.Fatal("closed before anything was written")
	default:
	}
	if err := s.Send("x"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, sig, "the written signal after a pumped batch")

	reg := testRegistry(Options{})
	p, _, _ := reg.GetOrCreate("w", XHRStreaming, func() Request { return Request{} })
	sig = p.Written()
	_ = p.Send("y")
	r := newRecorder(false) // streaming: the open frame, then the batch
	go p.Serve(r)
	waitClosed(t, sig, "the written signal after a served batch")
	close(r.gone)
}
