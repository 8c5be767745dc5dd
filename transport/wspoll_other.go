//go:build !linux

package transport

import "errors"

// Without epoll, websockets keep their reader goroutine (wspoll.go).

type pollReg struct{}

func pollerWorks() bool { return false }

func (p *wsPoll) register() error { return errors.New("no websocket poller on this system") }

func (p *wsPoll) arm() error { return errors.New("no websocket poller on this system") }

func (p *wsPoll) unregister() {}
