package transport

import (
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/session"
)

// Websocket round trips come from websocket ping and pong control frames:
// every RFC 6455 client answers a ping by itself (browsers with no script
// at all), so a websocket session's round trip is measured whatever
// client speaks on it, with nothing added to its messages.
//
// The writer (whoever writes the session's frames: the open frame's
// caller, then the pumps, one at a time) sends a ping right after the
// open frame, then after any frame once HeartbeatDelay has passed since
// the last ping: an idle session is pinged with each heartbeat (on raw
// websockets the heartbeat is that ping), a busy one at most once per
// heartbeat delay, with no timer and no goroutine of its own. The ping's
// 8-byte payload is a stamp of when it was sent; the reader goroutine,
// which handles control frames in gorilla/websocket, takes a pong as the
// answer only if it repeats the stamp of the latest ping, once. A later
// ping supersedes an unanswered one; unsolicited pongs (RFC 6455 allows
// them as heartbeats) and forged stamps are ignored.
//
// The round trip includes the time the reader took to get to the pong:
// while the application's receive queue is full the reader stops reading,
// and the client's pong waits behind its messages.

// WebSocketRTTObserver receives the round trip of each answered websocket
// ping, with the service (its prefix without the slash) and the transport
// (WebSocket or RawWebSocket): both bounded sets, fit for metric labels.
// Options.Session.Observer receives them when it implements it (the
// metrics package's does); websocket sessions are pinged only then.
type WebSocketRTTObserver interface {
	ObserveWebSocketRTT(service string, t session.Transport, d time.Duration)
}

// pingEpoch is the monotonic origin of ping stamps.
var pingEpoch = time.Now()

// pingStamp is now as a ping stamp: never 0, which means "no ping".
func pingStamp() int64 { return int64(time.Since(pingEpoch)) + 1 }

// wsRTT is a websocket connection's ping state. The writer's fields are
// used by one writer at a time; out is shared with the reader.
type wsRTT struct {
	obs     WebSocketRTTObserver // nil: no pings
	every   time.Duration
	last    int64 // writer: stamp of the last ping sent, 0 before the first
	service string
	payload [8]byte
}

// pingDue says whether the writer should ping now.
func (wr *wsReceiver) pingDue(now int64) bool {
	return wr.rtt.obs != nil && (wr.rtt.last == 0 || time.Duration(now-wr.rtt.last) >= wr.rtt.every)
}

// writePing writes a stamped ping and makes it the one whose pong counts.
func (wr *wsReceiver) writePing(now int64, deadline time.Time) error {
	p := &wr.rtt.payload
	for i := range p {
		p[i] = byte(uint64(now) >> (56 - 8*i))
	}
	wr.rtt.last = now
	// Stored before the write: the pong cannot come before the ping.
	wr.pingOut.Store(now)
	return wr.conn.WriteControl(websocket.PingMessage, p[:], deadline)
}

// afterFrame pings when one is due, after a frame was written. Without
// an observer it costs no clock read.
func (wr *wsReceiver) afterFrame(deadline time.Time) error {
	if wr.rtt.obs == nil {
		return nil
	}
	if now := pingStamp(); wr.pingDue(now) {
		return wr.writePing(now, deadline)
	}
	return nil
}

// pong is the connection's pong handler, on the reader goroutine. It
// never fails: a pong that is not the answer to the latest ping is
// dropped, not a reason to end the connection.
func (wr *wsReceiver) pong(data string) error {
	if len(data) != 8 {
		return nil
	}
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(data[i])
	}
	if sent := int64(v); sent != 0 && wr.pingOut.CompareAndSwap(sent, 0) {
		wr.rtt.obs.ObserveWebSocketRTT(wr.rtt.service, wr.t, time.Duration(pingStamp()-sent))
	}
	return nil
}
