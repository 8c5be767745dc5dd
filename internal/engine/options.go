package engine

import "time"

// Options is session.Options's mirror, which transport converts field by
// field (engineOptions; TestMirrorTypes keeps the two in step): see there
// for each field's meaning.
//
// Options bound a session's resources and timing. The zero value of every
// field means "use the default" documented next to it.
type Options struct {
	// HeartbeatDelay is how long an attached receiver may stay silent before
	// the session writes an 'h' frame, so proxies do not cut idle
	// connections. Default 25s (the protocol's figure).
	HeartbeatDelay time.Duration

	// DisconnectDelay is how long a session without a receiving connection
	// is kept before it expires, and how long a closed session keeps
	// answering with its close frame. Default 5s.
	DisconnectDelay time.Duration

	// SendQueueMessages and SendQueueBytes bound the messages written with
	// Send that the client has not received yet. A session that would
	// exceed either is closed with CodeQueueOverflow instead of growing
	// memory. Defaults 16384 messages and 4 MiB.
	SendQueueMessages int
	SendQueueBytes    int

	// RecvQueueMessages bounds received messages that the application has
	// not taken with Recv yet. When it is full, the connection that
	// carries more messages waits (TCP backpressure), it is never dropped.
	// Default 256.
	RecvQueueMessages int
	// RecvQueueBytes bounds the same queue in bytes: each message counts
	// its length plus RecvEntryBytes, its queue entry. The connection
	// waits likewise, except that an empty queue always takes one
	// message. Default 1 MiB.
	RecvQueueBytes int

	// ReceiverWait is how long a second receiving request waits for the
	// attached one to leave before it is answered
	// c[2010,"Another connection still open"]. A client that aborts a
	// request and at once sends another (sockjs-client on a timeout, the
	// protocol suite) may be faster than the server's noticing the abort;
	// waiting for that instead of refusing keeps such sessions alive. Only
	// a true second receiver pays the wait. Default 500ms: enough to
	// notice an abort on a loaded machine, well within the 1 s the protocol
	// suite gives a 2010 answer.
	ReceiverWait time.Duration

	// Observer receives session events for metrics. Default: none.
	Observer Observer
}

// Defaults for Options.
const (
	DefaultHeartbeatDelay    = 25 * time.Second
	DefaultDisconnectDelay   = 5 * time.Second
	DefaultSendQueueMessages = 16384
	DefaultSendQueueBytes    = 4 << 20
	DefaultRecvQueueMessages = 256
	DefaultRecvQueueBytes    = 1 << 20
	// RecvEntryBytes is what a queued received message costs beyond its
	// bytes, so that a flood of empty messages is bounded too.
	RecvEntryBytes      = 32
	DefaultReceiverWait = 500 * time.Millisecond
)

// WithDefaults returns o with every zero field replaced by its default.
func (o Options) WithDefaults() Options {
	if o.HeartbeatDelay <= 0 {
		o.HeartbeatDelay = DefaultHeartbeatDelay
	}
	if o.DisconnectDelay <= 0 {
		o.DisconnectDelay = DefaultDisconnectDelay
	}
	if o.SendQueueMessages <= 0 {
		o.SendQueueMessages = DefaultSendQueueMessages
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = DefaultSendQueueBytes
	}
	if o.RecvQueueMessages <= 0 {
		o.RecvQueueMessages = DefaultRecvQueueMessages
	}
	if o.RecvQueueBytes <= 0 {
		o.RecvQueueBytes = DefaultRecvQueueBytes
	}
	if o.ReceiverWait <= 0 {
		o.ReceiverWait = DefaultReceiverWait
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	return o
}
