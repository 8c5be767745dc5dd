//go:build !linux

package transport

import "errors"

// Without epoll, websockets keep their reader goroutine (wspoll.go).

type pollReg struct{}

func pollerWorks() bool { return false }

// waker is a parked connection as the poller wakes it.
type waker interface{ wake() }

func (p *parker) register(waker) error { return errors.New("no poller on this system") }

func (p *parker) unregister() {}

func (p *parker) disarm() error { return errors.New("no poller on this system") }

func (p *parker) rearm() error { return errors.New("no poller on this system") }
