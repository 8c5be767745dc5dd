package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
	return serveNowOn(t, s, holdEvery, gate)
}

// serveNowOn attaches a nowRecorder to s and waits for the open frame.
func serveNowOn(t *testing.T, s *Session, holdEvery int, gate chan struct{}) (*Session, *nowRecorder, chan struct{}) {
	t.Helper()
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
	// Every third frame written now was held and must have been flushed;
	// how many were written now depends on the scheduler (on a loaded
	// machine pumps may write nearly all), but the first Send is.
	if now, flushes := n.counts(); now == 0 || flushes != now/3 {
		t.Fatalf("written now %d times, flushed %d, want %d: the test did not take the paths it is about", now, flushes, now/3)
	}
}

// TestFreezeWaitsForHeldFrame: a frame written now that the connection
// did not take whole is in flight until a pump flushed it: Freeze waits
// for that, and a Send while frozen only queues (no frame written now).
func TestFreezeWaitsForHeldFrame(t *testing.T) {
	gate := make(chan struct{})
	s, n, _ := serveNowHandOff(t, 1, gate)
	if err := s.Send("a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := s.Freeze(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("freeze with a held frame: %v, want to wait for its flush", err)
	}
	froze := make(chan error, 1)
	go func() { froze <- s.Freeze(context.Background()) }()
	close(gate)
	select {
	case err := <-froze:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("freeze did not end after the held frame was flushed")
	}
	if _, flushes := n.counts(); flushes != 1 {
		t.Fatalf("%d flushes before the freeze ended, want 1", flushes)
	}
	if err := s.Send("b"); err != nil {
		t.Fatal(err)
	}
	if now, _ := n.counts(); now != 1 {
		t.Fatalf("%d frames written now, want 1: a frozen session only queues", now)
	}
	if sn := s.Snapshot(); !slices.Equal(sn.Out, []string{"b"}) {
		t.Fatalf("snapshot %v, want [b]", sn.Out)
	}
	s.Thaw()
}

// TestHandOffDuringWriteNow: senders at once (a fan-out) while the
// session is frozen, exported, snapshotted and handed off: every acknowledged
// message is either written before the freeze ended or in the snapshot,
// never both, each sender's in order; nothing is written after the
// freeze but the hand-off's last heartbeat.
func TestHandOffDuringWriteNow(t *testing.T) {
	wroteNow := 0
	for run := range 20 {
		s, n, ended := serveNowHandOff(t, 3, nil)
		const senders, each = 4, 500
		acked := make([]int, senders) // messages 0..acked-1 were acknowledged
		at := run * 23 % each         // the freeze comes once sender 0 had this one acknowledged
		reached := make(chan struct{})
		start := make(chan struct{})
		// The senders stop at the application's Export (the hub ends the
		// session's subscriptions under the channel's lock), which comes
		// after the freeze and before the snapshot.
		var export sync.RWMutex
		exported := false
		var wg sync.WaitGroup
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					export.RLock()
					if exported {
						export.RUnlock()
						return
					}
					if err := s.Send(fmt.Sprintf("%d.%d", g, i)); err != nil {
						export.RUnlock()
						t.Error(err)
						return
					}
					export.RUnlock()
					acked[g] = i + 1
					if g == 0 && i == at {
						close(reached)
					}
					if i%50 == 0 {
						runtime.Gosched()
					}
				}
			}()
		}
		close(start)
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: sender 0 did not send %d messages within 10s", run, at+1)
		}
		if err := s.Freeze(context.Background()); err != nil {
			t.Fatal(err)
		}
		atFreeze := len(n.all())
		export.Lock()
		exported = true
		export.Unlock()
		sn := s.Snapshot()
		s.Done()
		wg.Wait()
		waitClosed(t, ended, "onEnd") // after the last heartbeat
		frames := n.all()
		if tail := frames[atFreeze:]; !slices.Equal(tail, []string{"h"}) {
			t.Fatalf("run %d: frames after the freeze %v, want the last heartbeat only", run, tail)
		}
		written, other := messagesOf(frames)
		if len(other) != 2 || other[0] != "o" {
			t.Fatalf("run %d: frames besides messages %v", run, other)
		}
		next := make([]int, senders)
		for _, m := range append(written, sn.Out...) {
			var g, i int
			if _, err := fmt.Sscanf(m, "%d.%d", &g, &i); err != nil {
				t.Fatalf("message %q: %v", m, err)
			}
			if i != next[g] {
				t.Fatalf("run %d: sender %d: got %d, want %d (lost, duplicated or reordered across the hand-off)", run, g, i, next[g])
			}
			next[g]++
		}
		if !slices.Equal(next, acked) {
			t.Fatalf("run %d: written or handed off %v, acknowledged %v", run, next, acked)
		}
		now, _ := n.counts()
		wroteNow += now
	}
	if wroteNow == 0 {
		t.Fatal("nothing written now: the test did not take the path it is about")
	}
}

// serveNowHandOff is serveNowTest for a session that can be handed off
// (one with a URL session id).
func serveNowHandOff(t *testing.T, holdEvery int, gate chan struct{}) (*Session, *nowRecorder, chan struct{}) {
	t.Helper()
	o := Options{SendQueueMessages: 1 << 20, SendQueueBytes: 1 << 30}
	s, _, err := testRegistry(o).GetOrCreate("sid", WebSocket, func() Request { return Request{} })
	if err != nil {
		t.Fatal(err)
	}
	return serveNowOn(t, s, holdEvery, gate)
}

// TestSendMany: messages sent together go to an idle connection as one
// frame written now, in order; when they do not all fit in the send
// queue none is queued and the session closes with 3009, as with Send.
func TestSendMany(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      Options
		send      [][]string
		errs      []error
		frames    []string
		closeCode int
	}{
		{"one write", Options{}, [][]string{{"a", "b", "c"}, {"d"}, {}}, []error{nil, nil, nil},
			[]string{"o", "a,a,b,c", "a,d", "c,bye"}, 3000},
		{"over the messages limit", Options{SendQueueMessages: 2}, [][]string{{"a", "b"}, {"c", "d", "e"}}, []error{nil, ErrQueueFull},
			[]string{"o", "a,a,b", "c," + ReasonQueueFull}, CodeQueueFull},
		{"over the bytes limit", Options{SendQueueBytes: 4}, [][]string{{"ab", "cd"}, {"abc", "de"}}, []error{nil, ErrQueueFull},
			[]string{"o", "a,ab,cd", "c," + ReasonQueueFull}, CodeQueueFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, n, ended := serveNowTest(t, tc.opts, 0, nil)
			for i, msgs := range tc.send {
				if err := s.SendMany(msgs); err != tc.errs[i] {
					t.Fatalf("SendMany(%q): %v, want %v", msgs, err, tc.errs[i])
				}
			}
			_ = s.Close(3000, "bye")
			waitClosed(t, ended, "onEnd")
			if all := n.all(); !slices.Equal(all, tc.frames) {
				t.Fatalf("frames %v, want %v", all, tc.frames)
			}
			if code, _, _ := s.CloseInfo(); code != tc.closeCode {
				t.Fatalf("close code %d, want %d", code, tc.closeCode)
			}
		})
	}
}
