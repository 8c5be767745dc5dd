package transport

import (
	"context"
	"github.com/sockjsd/sockjsd/internal/engine"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockjsd/sockjsd/session"
)

// The service ping (Options.PingInterval) measures the round trip a browser
// really gets: the server sends a ping message, sockjsd.js answers it with
// a pong message without passing it to the page, and the time between the
// two feeds an RTT histogram labelled by service and transport.
//
// Messages are the only thing a SockJS client can send, so ping and pong
// are messages, shaped so that they cannot be mistaken for application
// ones:
//
//	ping  "\x00sockjsd-ping:<nonce>:<seq>:<last rtt in µs>"
//	pong  "\x00sockjsd-pong:<nonce>:<seq>"
//
// The nonce is 128 crypto-random bits drawn per session. The first ping is
// queued before the application's handler starts, so it is the session's
// first message, and sockjsd.js takes a message for a ping only if it is
// that first message or carries the first one's nonce. The server takes a
// message for a pong only if it carries the session's nonce. An
// application message is taken for either only if it starts with a NUL
// character and repeats a nonce it has never been shown.
const (
	pingPrefix = "\x00sockjsd-ping:"
	pongPrefix = "\x00sockjsd-pong:"
)

// RTTObserver receives the round trip of each answered service ping.
// Options.Session.Observer receives them when it implements it (the
// metrics package's does).
type RTTObserver interface {
	ObserveRTT(service string, t session.Transport, d time.Duration)
}

// pinger pings one session.
type pinger struct {
	nonce   string
	service string
	s       *engine.Session
	obs     RTTObserver
	every   time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool // the session ended: never re-arm the timer
	seq     uint64
	sent    time.Time // of ping seq; zero once answered
	lastRTT time.Duration
}

// startPing queues the session's first ping and arms the next ones, until
// the session ends. It runs before the application's handler.
func (h *Handler) startPing(s *engine.Session) {
	if h.opts.PingInterval <= 0 || s.Transport() == session.RawWebSocket {
		return // raw websocket clients are not sockjsd.js
	}
	obs, _ := h.obs.(RTTObserver)
	p := &pinger{nonce: engine.NewID(), service: strings.TrimPrefix(h.prefix, "/"), s: s, obs: obs, every: h.opts.PingInterval}
	h.pingers.Store(s, p)
	p.mu.Lock()
	p.timer = time.AfterFunc(p.every, p.ping)
	p.mu.Unlock()
	p.ping()
	context.AfterFunc(s.Context(), func() {
		h.pingers.Delete(s)
		p.mu.Lock()
		p.stopped = true
		p.timer.Stop()
		p.mu.Unlock()
	})
}

// ping sends the next ping; an unanswered one is superseded.
func (p *pinger) ping() {
	p.mu.Lock()
	if p.stopped {
		// A timer that fired while the session ended must not re-arm.
		p.mu.Unlock()
		return
	}
	p.seq++
	p.sent = time.Now()
	msg := pingPrefix + p.nonce + ":" + strconv.FormatUint(p.seq, 10) + ":" + strconv.FormatInt(p.lastRTT.Microseconds(), 10)
	if p.timer != nil {
		p.timer.Reset(p.every)
	}
	p.mu.Unlock()
	// Send never blocks; a client too far behind to take a ping is closed
	// with 3009 like for any other message.
	_ = p.s.Send(msg)
}

// pong records the answer to ping seq.
func (p *pinger) pong(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq != p.seq || p.sent.IsZero() {
		return // late: the ping was superseded
	}
	p.lastRTT = time.Since(p.sent)
	p.sent = time.Time{}
	if p.obs != nil {
		p.obs.ObserveRTT(p.service, p.s.Transport(), p.lastRTT)
	}
}

// withoutPongs takes the session's pongs out of msgs, recording them. It
// allocates only when there is one.
func (h *Handler) withoutPongs(s *engine.Session, msgs []string) []string {
	if h.opts.PingInterval <= 0 {
		return msgs
	}
	v, ok := h.pingers.Load(s)
	if !ok {
		return msgs
	}
	p := v.(*pinger)
	var out []string
	for i, m := range msgs {
		rest, isPong := strings.CutPrefix(m, pongPrefix+p.nonce+":")
		if isPong {
			if seq, err := strconv.ParseUint(rest, 10, 64); err == nil {
				p.pong(seq)
			}
			if out == nil {
				out = append(make([]string, 0, len(msgs)-1), msgs[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, m)
		}
	}
	if out == nil {
		return msgs
	}
	return out
}
