package engine

// Limit names a limit that refused something a client sent or asked for,
// for Observer.LimitHit. A small integer with a fixed set of names, so
// metrics labels stay bounded.
type Limit uint8

// The limits the session and transport packages enforce.
const (
	LimitIDLength           Limit = iota // a server or session id in the URL too long (404)
	LimitRequestInfo                     // headers and query a new session would keep over the cap (431)
	LimitSessions                        // the service's session limit (503 / close 1013)
	LimitBodySize                        // a send body over the message limit (413)
	LimitMessageSize                     // a websocket message over the message limit (close 1009)
	LimitConcurrentSends                 // too many send requests in flight for one session (429)
	LimitBodyBudget                      // the service's budget of body bytes being read was exhausted (503)
	LimitBodyReadTimeout                 // a send body not read in time (408)
	LimitSendQueue                       // the send queue overflowed (close 3009)
	LimitMessageBudget                   // the budget of websocket message bytes being read stayed exhausted (close 1013)
	LimitMessageReadTimeout              // a websocket message not received in time once begun (close 1008)
	LimitHandOff                         // a session's hand-off record over its byte limit (closed with 1001 at the drain)
	NumLimits
)

var limitNames = [NumLimits]string{
	"id-length", "request-info", "sessions", "body-size", "message-size",
	"concurrent-sends", "body-budget", "body-read-timeout", "send-queue",
	"message-budget", "message-read-timeout", "handoff",
}

func (l Limit) String() string {
	if l < NumLimits {
		return limitNames[l]
	}
	return "unknown"
}

// AcquireSendSlot reserves one of max concurrent send requests (xhr_send,
// jsonp_send) for this session and reports whether one was free; each
// successful call must be paired with releaseSendSlot. A waiting send
// request holds its body, so their number is what bounds that memory.
func (s *Session) AcquireSendSlot(max int) bool {
	if s.sendSlots.Add(1) > int32(max) {
		s.sendSlots.Add(-1)
		return false
	}
	return true
}

// ReleaseSendSlot frees a slot taken by acquireSendSlot.
func (s *Session) ReleaseSendSlot() { s.sendSlots.Add(-1) }

// Buffered returns the messages and bytes queued by Send and not yet
// written to the client, counting a batch while it is being written: the
// server side of a WebSocket's bufferedAmount, for applications that want
// to slow down before the send queue limit closes the session.
func (s *Session) Buffered() (messages, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.out) + s.writing, s.outBytes + s.writingB
}
