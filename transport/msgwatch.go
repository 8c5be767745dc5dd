package transport

import (
	"sync"
	"sync/atomic"
	"time"
)

// The payload deadline (MessageReadTimeout) is kept by one watcher per
// Handler rather than by a read deadline per message: setting and clearing
// a socket's deadline costs 300-500 ns a message (two timer updates in the
// runtime's poller), as much as reading a small message. A message being
// read instead stamps its connection's msgWatch with the monotonic clock
// (an atomic store, and a compare-and-swap at its end), and the watcher,
// ticking every tenth of the timeout while connections are watched, sets
// a past read deadline on the connections whose message is older than
// the timeout: their reader's Read then fails, and the message is
// refused. A message is so cut between the timeout and a tick more after
// its first byte (later only if the ticker is late), never before.

// msgWatcher watches the messages being read on a Handler's connections.
type msgWatcher struct {
	timeout time.Duration
	tick    time.Duration

	mu      sync.Mutex
	watched map[*msgWatch]struct{}
	running bool // the tick loop runs
}

// msgWatch is one watched connection.
type msgWatch struct {
	w     *msgWatcher
	conn  readDeadliner
	start atomic.Int64 // monoNow at the start of the message being read; 0: none; msgLate: cut
	mu    sync.Mutex   // orders the watcher's past deadline before the reader's clearing
}

const msgLate = -1

// msgEpoch and monoNow: a monotonic clock in nanoseconds, positive.
var msgEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(msgEpoch)) + 1 }

func newMsgWatcher(timeout time.Duration) *msgWatcher {
	return &msgWatcher{timeout: timeout, tick: max(timeout/10, time.Millisecond), watched: map[*msgWatch]struct{}{}}
}

// watch starts watching conn, and the tick loop if it was not running.
func (mw *msgWatcher) watch(conn readDeadliner) *msgWatch {
	w := &msgWatch{w: mw, conn: conn}
	mw.mu.Lock()
	mw.watched[w] = struct{}{}
	if !mw.running {
		mw.running = true
		go mw.run()
	}
	mw.mu.Unlock()
	return w
}

// unwatch stops watching w's connection (its reader ended).
func (mw *msgWatcher) unwatch(w *msgWatch) {
	mw.mu.Lock()
	delete(mw.watched, w)
	mw.mu.Unlock()
}

// run ticks while connections are watched, so that an idle server keeps
// no goroutine for it.
func (mw *msgWatcher) run() {
	t := time.NewTicker(mw.tick)
	defer t.Stop()
	var late []*msgWatch
	for range t.C {
		oldest := monoNow() - int64(mw.timeout)
		late = late[:0]
		mw.mu.Lock()
		if len(mw.watched) == 0 {
			mw.running = false
			mw.mu.Unlock()
			return
		}
		for w := range mw.watched {
			if s := w.start.Load(); s > 0 && s <= oldest {
				late = append(late, w)
			}
		}
		mw.mu.Unlock()
		for _, w := range late {
			w.cut(oldest)
		}
	}
}

// cut ends the read of w's message if it is still the late one.
func (w *msgWatch) cut(oldest int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.start.Load(); s > 0 && s <= oldest && w.start.CompareAndSwap(s, msgLate) {
		_ = w.conn.SetReadDeadline(time.Now())
	}
}

// begin stamps the start of a message and returns the stamp, for end.
func (w *msgWatch) begin() int64 {
	s := monoNow()
	w.start.Store(s)
	return s
}

// end reports whether the message stamped s ended before it was cut.
func (w *msgWatch) end(s int64) bool { return w.start.CompareAndSwap(s, 0) }

// deadline is when a message stamped s is due: its timeout after its
// first byte.
func (w *msgWatch) deadline(s int64) time.Time {
	return msgEpoch.Add(time.Duration(s-1) + w.w.timeout)
}

// stop stops watching the message and clears a past deadline the watcher
// set, so that the connection can be read (drained) after a refusal.
func (w *msgWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.start.Swap(0) == msgLate {
		_ = w.conn.SetReadDeadline(time.Time{})
	}
}
