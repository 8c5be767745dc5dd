package transport

import (
	"io"
	"sync/atomic"
	"syscall"
)

// parker is a connection parked in the poller (wspoll_linux.go) while its
// client sends nothing: its socket, its place in the poller, and the
// exclusion of its bursts, the goroutines that read it once the kernel
// says bytes arrived (or it is woken otherwise) and end once the socket
// is empty again. Parked websockets (wspoll.go) and the watch of
// taken-over streaming answers (streampoll.go) are parkers.
type parker struct {
	rc     syscall.RawConn // the TCP socket's
	parked atomic.Bool     // registered in the poller: bursts read the socket
	reg    pollReg         // its place in the poller

	// state: pollParked (no burst runs), pollRunning (a burst
	// reads), pollAgain (and it must read again before it parks: it was
	// woken meanwhile), pollEnded.
	state atomic.Int32
}

const (
	pollParked int32 = iota
	pollRunning
	pollAgain
	pollEnded
)

// burster reads a parked connection: burst reads until the socket is
// empty (then park) or the connection ends.
type burster interface{ burst() }

// wake makes sure a burst of b runs: one starts, or the running one
// reads again before it parks.
func (pk *parker) wake(b burster) {
	for {
		switch pk.state.Load() {
		case pollParked:
			if pk.state.CompareAndSwap(pollParked, pollRunning) {
				go b.burst()
				return
			}
		case pollRunning:
			if pk.state.CompareAndSwap(pollRunning, pollAgain) {
				return
			}
		default:
			return
		}
	}
}

// park lets the burst end once the socket is empty: false when it must
// read again (it was woken meanwhile: bytes arrived, or the connection
// was closed or its message cut).
func (pk *parker) park() bool {
	if pk.state.CompareAndSwap(pollAgain, pollRunning) {
		return false
	}
	if pk.state.CompareAndSwap(pollRunning, pollParked) {
		return true
	}
	pk.state.Store(pollRunning)
	return false
}

// sockRead is a read of a socket through its RawConn: the buffer, the
// read's results, and the function RawConn.Read calls, made once per
// sockRead (they are pooled, pollBufs) rather than a closure and its
// captured results allocated for every read.
type sockRead struct {
	b    []byte
	n    int
	err  error
	wait bool
	fn   func(fd uintptr) bool
}

func newSockRead(size int) *sockRead {
	r := &sockRead{b: make([]byte, size)}
	r.fn = r.read
	return r
}

// read is the function handed to RawConn.Read: false (with wait) has
// the runtime wait for the socket to be readable and call it again.
func (r *sockRead) read(fd uintptr) bool {
	for {
		r.n, r.err = sysRead(fd, r.b)
		if r.err != syscall.EINTR {
			return !r.wait || r.err != syscall.EAGAIN
		}
	}
}

// read reads what the socket has into r.b, without waiting:
// errWouldBlock when it has nothing, io.EOF when the client closed its
// side.
func (pk *parker) read(r *sockRead) (int, error) { return pk.readSocket(r, false) }

// readWait reads as a goroutine's Read does: while the socket has
// nothing, it waits in the runtime's poller, until bytes come or the
// connection's read deadline passes (os.ErrDeadlineExceeded).
func (pk *parker) readWait(r *sockRead) (int, error) { return pk.readSocket(r, true) }

func (pk *parker) readSocket(r *sockRead, wait bool) (int, error) {
	r.wait = wait
	if err := pk.rc.Read(r.fn); err != nil {
		return 0, err
	}
	n, err := r.n, r.err
	switch {
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
