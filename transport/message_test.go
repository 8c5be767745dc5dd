package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testMsgReader reads messages of at most limit bytes within a budget of
// its own (1 MiB), without a payload deadline.
func testMsgReader(limit int) msgReader {
	return msgReader{budget: NewBodyBudget(1 << 20), limit: limit}
}

// TestMsgReaderBudget: a message's first 4 KiB cost no budget; past them
// the buffer's whole capacity is reserved as it grows (never more than
// twice what arrived), and done gives all of it back. A message as large
// as the whole budget fits.
func TestMsgReaderBudget(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        int
		maxReserved int
	}{
		{"small", 100, 0},
		{"exactlySmall", msgSmall, 0},
		{"justOver", msgSmall + 1, 2 * msgSmall},
		{"100KiB", 100 << 10, 128 << 10},
		{"atLimit", 1 << 20, 1 << 20}, // the budget's size
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMsgReader(1 << 20)
			m.begin(time.Now().Add(time.Minute))
			payload := bytes.Repeat([]byte("x"), tc.size)
			most := 0
			for p := payload; len(p) > 0; {
				n := min(len(p), 1000) // the pieces a socket gives
				if err := m.add(context.Background(), p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
				most = max(most, m.budget.InUse())
			}
			if !bytes.Equal(m.bytes(), payload) {
				t.Fatalf("read %d bytes, want the %d sent", len(m.bytes()), tc.size)
			}
			if got := m.budget.InUse(); got != tc.maxReserved || most != tc.maxReserved {
				t.Fatalf("reserved %d (most %d), want %d", got, most, tc.maxReserved)
			}
			m.done()
			if n := m.budget.InUse(); n != 0 {
				t.Fatalf("%d bytes still reserved after done", n)
			}
			if err := m.add(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMsgReaderBudgetWait: a message that cannot grow waits for the
// budget until its deadline (errMsgBudget), or until another message
// releases what it needs, or until the session ends.
func TestMsgReaderBudgetWait(t *testing.T) {
	const size = 64 << 10
	big := bytes.Repeat([]byte("x"), size)
	t.Run("deadline", func(t *testing.T) {
		m := testMsgReader(1 << 20)
		held, _ := m.budget.tryAcquire(1 << 20)
		defer m.budget.release(held)
		start := time.Now()
		m.begin(start.Add(200 * time.Millisecond))
		err := m.add(context.Background(), big)
		if !errors.Is(err, errMsgBudget) {
			t.Fatalf("got %v, want errMsgBudget", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 10*time.Second {
			t.Fatalf("gave up after %v, want the deadline (200ms)", d)
		}
		m.done()
		if n := m.budget.InUse(); n != 1<<20 {
			t.Fatalf("%d bytes reserved, want only the 1 MiB held by the test", n)
		}
	})
	t.Run("released", func(t *testing.T) {
		m := testMsgReader(1 << 20)
		held, _ := m.budget.tryAcquire(1 << 20)
		m.begin(time.Now().Add(time.Minute))
		errc := make(chan error, 1)
		go func() { errc <- m.add(context.Background(), big) }()
		waitFor(t, func() bool { return m.budget.waitersForTest() == 1 })
		m.budget.release(held)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		m.done()
	})
	t.Run("sessionEnds", func(t *testing.T) {
		m := testMsgReader(1 << 20)
		held, _ := m.budget.tryAcquire(1 << 20)
		defer m.budget.release(held)
		ctx, cancel := context.WithCancel(context.Background())
		m.begin(time.Now().Add(time.Minute))
		errc := make(chan error, 1)
		go func() { errc <- m.add(ctx, big) }()
		waitFor(t, func() bool { return m.budget.waitersForTest() == 1 })
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, errMsgBudget) {
				t.Fatalf("got %v, want errMsgBudget", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the wait did not end with the session")
		}
		m.done()
	})
}

// waitFor polls cond (a state another goroutine reaches with no event to
// wait on) for at most 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHixieFrameDeadline: over a real socket, a Hixie frame that does not
// end within the timeout fails with errMsgTimeout and releases its
// buffer; a frame that arrives whole sets no deadline; a connection idle
// between frames is not affected.
func TestHixieFrameDeadline(t *testing.T) {
	client, server := loopbackPair(t)
	rec := &deadlineRecorder{Conn: server}
	br := bufio.NewReader(rec)
	m := testMsgReader(1 << 20)
	m.w = newMsgWatcher(300 * time.Millisecond).watch(rec)
	defer m.close()
	read := func() ([]byte, error) {
		type result struct {
			b   []byte
			err error
		}
		c := make(chan result, 1)
		go func() { b, err := m.readHixieFrame(context.Background(), br); c <- result{bytes.Clone(b), err} }()
		select {
		case r := <-c:
			m.done()
			return r.b, r.err
		case <-time.After(20 * time.Second):
			t.Fatal("the frame reader did not return in 20s")
			return nil, nil
		}
	}

	// Whole in one write: no deadline.
	if _, err := client.Write([]byte("\x00whole\xff")); err != nil {
		t.Fatal(err)
	}
	if b, err := read(); err != nil || string(b) != "whole" || rec.set != 0 {
		t.Fatalf("whole frame: %q %v, %d deadlines set", b, err, rec.set)
	}
	// Idle for longer than the timeout, then a frame in two writes: the
	// reader waits as long as it takes for the frame to begin.
	go func() {
		time.Sleep(600 * time.Millisecond) // an idle client, not synchronisation
		_, _ = client.Write([]byte("\x00sp"))
		_, _ = client.Write([]byte("lit\xff"))
	}()
	if b, err := read(); err != nil || string(b) != "split" {
		t.Fatalf("split frame after idling: %q %v", b, err)
	}
	// Half of a large frame, then silence: errMsgTimeout, nothing held.
	if _, err := client.Write(append([]byte{0x00}, strings.Repeat("x", 50<<10)...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := read(); !errors.Is(err, errMsgTimeout) {
		t.Fatalf("got %v, want errMsgTimeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cut after %v, want about 300ms", d)
	}
	if n := m.budget.InUse(); n != 0 {
		t.Fatalf("%d bytes still reserved", n)
	}
}

// deadlineRecorder counts the read deadlines set on a connection.
type deadlineRecorder struct {
	net.Conn
	set int
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		d.set++
	}
	return d.Conn.SetReadDeadline(t)
}

// fakeDeadline records the read deadlines set on it.
type fakeDeadline struct {
	mu  sync.Mutex
	set []time.Time
}

func (f *fakeDeadline) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = append(f.set, t)
	return nil
}

func (f *fakeDeadline) deadlines() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.set...)
}

// TestMsgWatcher: a message that ends in time costs its connection no
// deadline; one that does not is cut (a past read deadline) no sooner
// than the timeout and no later than two ticks after it, and end then
// reports it; stop clears the deadline; the tick loop ends once no
// connection is watched.
func TestMsgWatcher(t *testing.T) {
	const timeout = 200 * time.Millisecond
	mw := newMsgWatcher(timeout)
	quick, slow := &fakeDeadline{}, &fakeDeadline{}
	wq, ws := mw.watch(quick), mw.watch(slow)

	s := wq.begin()
	if !wq.end(s) {
		t.Fatal("a message that ended at once was cut")
	}
	start := time.Now()
	s = ws.begin()
	waitFor(t, func() bool { return len(slow.deadlines()) == 1 })
	took := time.Since(start)
	if took < timeout || took > timeout+10*time.Second {
		t.Fatalf("cut after %v, want the timeout (%v) and a little more", took, timeout)
	}
	if d := slow.deadlines()[0]; d.After(time.Now()) {
		t.Fatalf("cut with a future deadline %v", d)
	}
	if ws.end(s) {
		t.Fatal("end reported a cut message as in time")
	}
	ws.stop()
	if d := slow.deadlines(); len(d) != 2 || !d[1].IsZero() {
		t.Fatalf("after stop: deadlines %v, want the past one cleared", d)
	}
	if d := quick.deadlines(); len(d) != 0 {
		t.Fatalf("the quick connection got deadlines %v", d)
	}
	mw.unwatch(wq)
	mw.unwatch(ws)
	waitFor(t, func() bool { mw.mu.Lock(); defer mw.mu.Unlock(); return !mw.running })
}

// TestMsgReaderWatchesFromItsFirstMessage: a connection's message reader
// takes no place in the watcher (and starts no tick loop) until its
// first message, and gives it back at close.
func TestMsgReaderWatchesFromItsFirstMessage(t *testing.T) {
	h := &Handler{msgs: newMsgWatcher(2 * time.Second)} // ticks every 200 ms
	h.opts.MaxMessageBytes = 1 << 10
	watched := func() (int, bool) {
		h.msgs.mu.Lock()
		defer h.msgs.mu.Unlock()
		return len(h.msgs.watched), h.msgs.running
	}
	m := h.newMsgReader(&fakeDeadline{})
	if n, running := watched(); n != 0 || running {
		t.Fatalf("before a message: %d watched, tick loop %v", n, running)
	}
	m.arm()
	if err := m.disarm(); err != nil {
		t.Fatal(err)
	}
	if n, running := watched(); n != 1 || !running {
		t.Fatalf("after a message: %d watched, tick loop %v", n, running)
	}
	m.close()
	waitFor(t, func() bool { n, running := watched(); return n == 0 && !running })
}

// loopbackPair is both ends of a TCP connection on 127.0.0.1, closed at
// cleanup.
func loopbackPair(tb testing.TB) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { server.Close() })
	return client, server
}

// TestMsgReaderGrowsToLastSize: a message that outgrows its first buffer
// grows at once to the pooled size that held the connection's last
// message, not by doubling from 1 KiB again.
func TestMsgReaderGrowsToLastSize(t *testing.T) {
	m := testMsgReader(1 << 20)
	for _, tc := range []struct{ size, reserved int }{
		{3000, 4 << 10},         // 1 KiB, 2 KiB, 4 KiB
		{msgSmall + 1, 4 << 10}, // at once the last message's 4 KiB
		{100, 0},                // within the first buffer: nothing
		{msgSmall + 1, 2 << 10}, // the last was small: doubling again
	} {
		m.begin(time.Now().Add(time.Minute))
		if err := m.add(context.Background(), bytes.Repeat([]byte("x"), tc.size)); err != nil {
			t.Fatal(err)
		}
		if got := m.budget.InUse(); got != tc.reserved {
			t.Fatalf("a message of %d bytes after one of %d: %d reserved, want %d", tc.size, m.last, got, tc.reserved)
		}
		m.done()
	}
}

// TestLazyGone: a websocket receiver makes its gone channel only for a
// waiter, and the channel is closed whether it was made before or after
// the connection went away; GoneNow asks without making it.
func TestLazyGone(t *testing.T) {
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	var before wsReceiver
	c := before.Gone()
	if closed(c) || before.GoneNow() {
		t.Fatal("gone before markGone")
	}
	before.markGone()
	before.markGone() // twice: no double close
	if !closed(c) || !before.GoneNow() || before.Gone() != c {
		t.Fatal("a channel made before markGone: not closed after it")
	}
	var after wsReceiver
	after.markGone()
	if after.gone.ch != nil {
		t.Fatal("markGone made a channel no one waited for")
	}
	if !closed(after.Gone()) || !after.GoneNow() {
		t.Fatal("a channel made after markGone: not closed")
	}
}
