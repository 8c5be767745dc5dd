//go:build linux

package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
	// treeKillWait bounds the wait for a session's processes to die after
	// SIGKILL (only uninterruptible sleep delays it).
	treeKillWait = 5 * time.Second
)

// run is one session's program.
type run struct {
	b       *Bridge
	s       *session.Session
	p       *proc
	tree    tree // every process of the session, wherever it moved
	started time.Time
	exited  chan struct{} // the leader exited (not reaped yet)
	outDone chan struct{} // stdout is at EOF or closed, or output is being discarded
	errDone chan struct{} // stderr is at EOF or closed
}

// Serve runs the program for s until it exits or s closes; it is the
// application handler given to transport.New.
func (b *Bridge) Serve(s *session.Session) {
	log := b.opts.Logger
	addr := clientHost(s)
	why, ok := b.opts.Procs.admit(addr)
	if !ok {
		b.opts.Observer.ProcessRefused(b.opts.Name, why)
		if why == RefusedPerAddress {
			log.Warn("exec: session refused, too many programs for this address", "service", b.opts.Name, "session", s.ID(), "addr", addr)
			_ = s.CloseFor(session.CauseLimit, CodePerAddress, ReasonPerAddress)
			return
		}
		log.Warn("exec: session refused, too many programs running", "service", b.opts.Name, "session", s.ID())
		_ = s.CloseFor(session.CauseLimit, CodeTooManyProcs, ReasonTooManyProcs)
		return
	}

	r := &run{b: b, s: s, exited: make(chan struct{}), outDone: make(chan struct{}), errDone: make(chan struct{})}
	// fork and exec run outside the lock, so that sessions start their
	// programs in parallel; starting counts them for Shutdown meanwhile.
	b.mu.Lock()
	select {
	case <-b.stop:
		b.mu.Unlock()
		b.opts.Procs.started(nil)
		b.opts.Procs.release(nil, addr)
		_ = s.CloseFor(session.CauseShutdown, session.CodeGoingAway, session.ReasonGoingAway)
		return
	default:
	}
	b.starting++
	b.mu.Unlock()
	env := b.environ(s)
	r.started = time.Now()
	r.tree = newTree(s.ID())
	beginStart()
	p, err := startProc(b.path, b.opts.Argv, env, b.opts.Dir, r.tree)
	if _, cg := r.tree.(*cgroupTree); err != nil && cg {
		// clone3 into a cgroup refused (an old kernel, a cgroup that
		// cannot take processes): walk /proc for this one.
		if mode.failed.CompareAndSwap(false, true) {
			log.Warn("exec: starting a program in its cgroup failed; sessions are tracked by walking /proc from now on", "service", b.opts.Name, "err", err)
		}
		r.tree.close()
		r.tree = newProcTree(s.ID())
		p, err = startProc(b.path, b.opts.Argv, env, b.opts.Dir, r.tree)
	}
	if err == nil {
		r.tree.started(p.pid)
		endStart(p.pid)
	} else {
		endStart(0)
		r.tree.close()
	}
	b.mu.Lock()
	b.starting--
	if err == nil {
		r.p = p
		b.runs[r] = struct{}{}
	}
	b.mu.Unlock()
	if err != nil {
		b.opts.Procs.started(nil)
		b.opts.Procs.release(nil, addr)
		b.signalChanged()
		b.opts.Observer.ProcessRefused(b.opts.Name, RefusedStartFailed)
		log.Error("exec: program failed to start", "service", b.opts.Name, "session", s.ID(), "err", err)
		_ = s.CloseFor(session.CauseError, CodeStartFailed, ReasonStartFailed)
		return
	}
	b.opts.Procs.started(r)
	b.opts.Observer.ProcessStarted(b.opts.Name, time.Since(r.started))
	log.Debug("exec: program started", "service", b.opts.Name, "session", s.ID(), "pid", p.pid)

	defer func() {
		b.opts.Procs.release(r, addr)
		b.mu.Lock()
		delete(b.runs, r)
		b.mu.Unlock()
		b.signalChanged()
	}()
	r.supervise()
}

// clientHost is the host of the session's remote address: the key of the
// per-address bound.
func clientHost(s *session.Session) string {
	ra := s.Request().RemoteAddr
	if h, _, err := net.SplitHostPort(ra); err == nil {
		return h
	}
	return ra
}

// supervise runs until the program and everything it started are gone.
func (r *run) supervise() {
	b, s, p := r.b, r.s, r.p
	go func() {
		if err := p.waitExited(); err != nil {
			b.opts.Logger.Error("exec: waiting for the program", "service", b.opts.Name, "session", s.ID(), "err", err)
		}
		close(r.exited)
	}()
	go r.pumpOut()
	go r.pumpErr()
	go r.pumpIn()

	var (
		exited       = r.exited
		outDone      = r.outDone
		ctxDone      = s.Context().Done()
		stop         = b.stop
		grace        <-chan time.Time
		timer        *time.Timer
		sessionGone  bool // the session closed first: nobody takes output any more
		shutdown     bool
		killed       bool
		stdoutClosed bool
	)
	term := func() {
		if timer != nil {
			return
		}
		// EOF on stdin first, the gentlest hint; then SIGTERM to the
		// group and the whole tree, which also reaches leftovers of a
		// program that exited and processes that left the group.
		_ = p.stdin.Close()
		_ = p.signalGroup(sigTerm)
		r.tree.signal(sigTerm)
		timer = time.NewTimer(b.opts.KillGrace)
		grace = timer.C
	}
	for exited != nil || outDone != nil {
		select {
		case <-exited:
			exited = nil
			term()
		case <-outDone:
			outDone = nil
		case <-ctxDone:
			ctxDone, sessionGone = nil, true
			term()
		case <-stop:
			stop, shutdown = nil, true
			term()
		case <-grace:
			grace, killed = nil, true
			_ = p.signalGroup(sigKill)
			r.tree.signal(sigKill)
			if exited != nil {
				// Counted only when the program itself outlived the
				// grace period: after its own exit the timer may run
				// out merely because a slow client is still taking
				// its last lines.
				b.opts.Observer.ProcessKilled(b.opts.Name)
				b.opts.Logger.Info("exec: program outlived the grace period, killed", "service", b.opts.Name, "session", s.ID(), "pid", p.pid, "grace", b.opts.KillGrace)
			}
		}
		if killed && (sessionGone || shutdown) && !stdoutClosed {
			// Output has nowhere to go and every process of the tree
			// got SIGKILL: one in uninterruptible sleep must not keep
			// the session's goroutines alive by holding stdout.
			stdoutClosed = true
			_ = p.stdout.Close()
		}
	}
	if timer != nil {
		timer.Stop()
	}
	// Whatever is left of the group and of the tree (a child that
	// redirected its output, one that called setsid) goes now, while the
	// unreaped leader still holds the group's id; the session holds its
	// unit of the Limit until the tree is empty.
	_ = p.signalGroup(sigKill)
	if err := r.tree.kill(treeKillWait); err != nil {
		b.opts.Logger.Error("exec: processes of the session survive SIGKILL", "service", b.opts.Name, "session", s.ID(), "err", err)
	}
	ws, ok := p.reapGroup()
	leaderReaped(p.pid)
	reapTree(r.tree)
	r.tree.close()
	_ = p.stdin.Close()
	if !stdoutClosed {
		_ = p.stdout.Close()
	}
	// Every writer of stderr is dead; a process that escaped the group
	// must not hold it open either.
	_ = p.stderr.Close()
	<-r.errDone
	lifetime := time.Since(r.started)

	class, reason := exitInfo(ws, ok)
	b.opts.Observer.ProcessExited(b.opts.Name, class, lifetime)
	b.opts.Logger.Debug("exec: program ended", "service", b.opts.Name, "session", s.ID(), "pid", p.pid, "status", reason, "lifetime", lifetime)
	switch {
	case sessionGone:
	case shutdown:
		_ = s.CloseFor(session.CauseShutdown, session.CodeGoingAway, session.ReasonGoingAway)
	default:
		_ = s.Close(CodeExited, reason)
	}
}

// exitInfo classifies a leader's wait status and words the close reason:
// "Program exited" for status 0, else with the status or signal.
func exitInfo(ws syscall.WaitStatus, ok bool) (ExitClass, string) {
	switch {
	case !ok:
		return ExitSignal, ReasonExited + " (status unknown)"
	case ws.Signaled():
		return ExitSignal, fmt.Sprintf("%s: killed by signal %d (%s)", ReasonExited, int(ws.Signal()), ws.Signal())
	case ws.ExitStatus() != 0:
		return ExitError, fmt.Sprintf("%s with status %d", ReasonExited, ws.ExitStatus())
	}
	return ExitOK, ReasonExited
}

// pumpOut sends each line of stdout to the session, never more than
// MaxQueuedMessages/Bytes ahead of the client. Once the session is gone it
// keeps reading and discards, so that the program is never stuck writing
// while it is asked to exit.
func (r *run) pumpOut() {
	o := r.b.opts
	lr := newLineReader(r.p.stdout, o.MaxLineBytes)
	for {
		line, err := lr.next()
		if errors.Is(err, errLineTooLong) {
			o.Logger.Warn("exec: program wrote a line over the limit, session closed", "service", o.Name, "session", r.s.ID(), "limit", o.MaxLineBytes)
			_ = r.s.CloseFor(session.CauseLimit, CodeLineTooLong, ReasonLineTooLong)
			break
		}
		if err != nil {
			break // EOF, or closed by supervise
		}
		if !r.waitRoom(len(line)) {
			break
		}
		if r.s.Send(string(line)) != nil {
			break
		}
	}
	close(r.outDone)
	_, _ = io.Copy(io.Discard, r.p.stdout)
}

// waitRoom waits until one more line of n bytes fits in the bounds of
// queued output, or the session is gone: it re-checks each time the
// session has written a batch to the client (Session.Written), so a
// program is held back exactly as long as its client is behind.
func (r *run) waitRoom(n int) bool {
	o := r.b.opts
	for {
		// The signal first: a batch written between reading Buffered
		// and waiting would otherwise go unnoticed.
		written := r.s.Written()
		msgs, bytes := r.s.Buffered()
		if msgs == 0 || (msgs < o.MaxQueuedMessages && bytes+n <= o.MaxQueuedBytes) {
			return true
		}
		select {
		case <-written:
		case <-r.s.Context().Done():
			return false
		}
	}
}

// pumpIn writes each message from the client to stdin as one line. A
// message containing a newline would become two lines, so it closes the
// session with 3003 instead. If the program closed its stdin, messages
// stay queued: the client is slowed down exactly as by a program that
// does not read, and nothing is dropped.
func (r *run) pumpIn() {
	o := r.b.opts
	var buf []byte
	for {
		msg, err := r.s.Recv(context.Background())
		if err != nil {
			return
		}
		if strings.IndexByte(msg, '\n') >= 0 {
			o.Logger.Info("exec: message with a newline refused, session closed", "service", o.Name, "session", r.s.ID())
			_ = r.s.CloseFor(session.CauseError, CodeBadMessage, ReasonNewline)
			return
		}
		buf = append(append(buf[:0], msg...), '\n')
		if _, err := r.p.stdin.Write(buf); err != nil {
			if errors.Is(err, syscall.EPIPE) {
				o.Logger.Info("exec: program closed its stdin; further messages wait until the session ends", "service", o.Name, "session", r.s.ID())
			}
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// stderrRate bounds the stderr lines logged per program: a burst, then
// about one a second; the rest are counted and the count logged at exit.
const (
	stderrBurst     = 100
	stderrLineBytes = 4 << 10
)

// pumpErr logs each stderr line with the session's id.
func (r *run) pumpErr() {
	defer close(r.errDone)
	o := r.b.opts
	br := bufio.NewReaderSize(r.p.stderr, stderrLineBytes)
	tokens, last := stderrBurst, time.Now()
	dropped := 0
	skipping := false // the rest of a line longer than the buffer
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 && !skipping {
			if now := time.Now(); now.Sub(last) >= time.Second {
				tokens, last = min(stderrBurst, tokens+int(now.Sub(last)/time.Second)), now
			}
			if tokens > 0 {
				tokens--
				line := strings.TrimRight(string(frag), "\r\n")
				o.Logger.Info("exec: stderr", "service", o.Name, "session", r.s.ID(), "line", line, "truncated", errors.Is(err, bufio.ErrBufferFull))
			} else {
				dropped++
			}
		}
		skipping = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !skipping {
			break
		}
	}
	if dropped > 0 {
		o.Logger.Warn("exec: stderr lines not logged (rate limit)", "service", o.Name, "session", r.s.ID(), "lines", dropped)
	}
}
