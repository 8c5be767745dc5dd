package transport

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// The poller: one epoll set for the parked connections of the process,
// each registered edge-triggered, its event carrying the connection's id
// rather than its descriptor, which the kernel may give to another
// connection once this one is closed. Edge-triggered, a burst reads until
// the socket is empty (EAGAIN) and nothing re-arms it: bytes arriving
// during the burst or after it raise a new event, which makes the
// running burst read again or starts the next (parker.wake), so a busy
// connection costs no epoll_ctl per message. The epoll descriptor itself waits in the Go
// runtime's poller (an epoll set is readable while it has events), so
// no thread is blocked in epoll_wait; the set exists only while
// connections are parked, so an idle process keeps no goroutine for it.

// pollReg is a connection's registration: its id and its epoll set.
type pollReg struct {
	id   uint64
	epfd int
}

type poller struct {
	mu    sync.Mutex
	file  *os.File // the epoll set, nil while no connection is parked
	epfd  int
	next  uint64
	conns map[uint64]waker
}

// waker is a parked connection as the poller wakes it.
type waker interface{ wake() }

var wsPoller = poller{conns: map[uint64]waker{}}

func pollerWorks() bool { return true }

// pollEvents: readable, peer closed, edge-triggered (syscall.EPOLLET
// is a negative int).
const pollEvents = uint32(syscall.EPOLLIN|syscall.EPOLLRDHUP) | 1<<31

// register adds p's socket to the epoll set, armed; the poller wakes w
// when it is readable.
func (p *parker) register(w waker) error {
	pl := &wsPoller
	pl.mu.Lock()
	if pl.file == nil {
		if err := pl.start(); err != nil {
			pl.mu.Unlock()
			return err
		}
	}
	pl.next++
	p.reg = pollReg{id: pl.next, epfd: pl.epfd}
	if err := p.rearm(); err != nil {
		var f *os.File
		if len(pl.conns) == 0 {
			f = pl.stop()
		}
		pl.mu.Unlock()
		closeSet(f)
		return fmt.Errorf("adding a connection to the epoll set: %w", err)
	}
	pl.conns[p.reg.id] = w
	pl.mu.Unlock()
	return nil
}

// disarm takes p's socket out of the epoll set while a goroutine reads
// it waiting in the runtime's poller (wsPoll.active): the set then raises
// no event per message. p keeps its id, and the set stays open.
func (p *parker) disarm() error { return p.epollCtl(syscall.EPOLL_CTL_DEL) }

// rearm puts p's socket back in the epoll set, with its id, before its
// goroutine ends: the kernel reports bytes that came meanwhile at once.
func (p *parker) rearm() error { return p.epollCtl(syscall.EPOLL_CTL_ADD) }

func (p *parker) epollCtl(op int) error {
	ev := p.reg.event()
	var err error
	if cerr := p.rc.Control(func(fd uintptr) {
		err = syscall.EpollCtl(p.reg.epfd, op, int(fd), &ev)
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl %d: %w", op, err)
	}
	return nil
}

func (r pollReg) event() syscall.EpollEvent {
	return syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(r.id)), Pad: int32(uint32(r.id >> 32))}
}

// unregister forgets p; the kernel drops its socket from the set when
// it is closed, and an event already queued finds no one. The
// set is closed with the last connection.
func (p *parker) unregister() {
	pl := &wsPoller
	pl.mu.Lock()
	if _, ok := pl.conns[p.reg.id]; !ok {
		pl.mu.Unlock()
		return
	}
	delete(pl.conns, p.reg.id)
	var f *os.File
	if len(pl.conns) == 0 {
		f = pl.stop()
	}
	pl.mu.Unlock()
	closeSet(f)
}

// start opens the epoll set and its goroutine; pl.mu held.
func (pl *poller) start() error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return fmt.Errorf("epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "websocket-poller")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("epoll set: %w", err)
	}
	pl.file, pl.epfd = f, epfd
	go pl.run(rc, epfd)
	return nil
}

// stop takes the epoll set out of the poller, for closeSet; pl.mu held.
func (pl *poller) stop() *os.File {
	f := pl.file
	pl.file = nil
	return f
}

// closeSet closes an epoll set stop took out, which ends its goroutine.
// Not under pl.mu: the close waits for the goroutine's read of the set to
// return, and the goroutine takes pl.mu to wake what it read.
func closeSet(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// run waits in the runtime's poller for the epoll set to have events and
// wakes their connections, until the set is closed.
func (pl *poller) run(rc syscall.RawConn, epfd int) {
	events := make([]syscall.EpollEvent, 128)
	woken := make([]waker, 0, len(events))
	_ = rc.Read(func(uintptr) bool {
		for {
			n, err := syscall.EpollWait(epfd, events, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return false // wait for the set to be readable again
			}
			woken = woken[:0]
			pl.mu.Lock()
			for _, ev := range events[:n] {
				if w := pl.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; w != nil {
					woken = append(woken, w)
				}
			}
			pl.mu.Unlock()
			for _, p := range woken {
				p.wake()
			}
			if n < len(events) {
				return false
			}
		}
	})
}
