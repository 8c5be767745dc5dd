package services

import (
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// Echo sends every message back to its session. It answers on the
// goroutine that received the message (OnMessage): no goroutine per
// session waits for messages, and a websocket echo is written by its
// reader without a hand-off. A client that does not read its echoes is
// closed with 3009 when its send queue is full, as with Recv and Send.
func Echo(s *session.Session) {
	s.OnMessage(func(m string) { _ = s.Send(m) })
}

// Close closes every session as soon as it opens, with c[3000,"Go away!"].
func Close(s *session.Session) {
	_ = s.Close(session.CodeGoAway, session.ReasonGoAway)
}

// Protocol returns the services of the protocol suite, built on base:
// /echo and /close (raw websocket on), /disabled_websocket_echo (websocket
// off, and /info says so) and /cookie_needed_echo (JSESSIONID set).
func Protocol(base transport.Options) []*transport.Handler {
	wsOff := base
	wsOff.DisableWebSocket = true
	cookie := base
	cookie.CookieNeeded = true
	return []*transport.Handler{
		transport.New("/echo", base, Echo),
		transport.New("/close", base, Close),
		transport.New("/disabled_websocket_echo", wsOff, Echo),
		transport.New("/cookie_needed_echo", cookie, Echo),
	}
}

// DemoPrefix is the echo service of the demo page: the same echo as /echo,
// with the service ping on, so that /metrics shows the round trip each
// browser transport gets. /echo stays exactly as the protocol suite and
// other SockJS clients expect: no message they did not send.
const DemoPrefix = "/demo"

// Demo returns the demo page's echo service at DemoPrefix, pinging every
// session at ping (0: off).
func Demo(base transport.Options, ping time.Duration) *transport.Handler {
	base.PingInterval = ping
	return transport.New(DemoPrefix, base, Echo)
}

// Mount mounts handlers on r (gorillamux.Mount).
func Mount(r *mux.Router, hs ...*transport.Handler) { gorillamux.Mount(r, hs...) }
