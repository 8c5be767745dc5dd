package hub

import "sync"

// The broker hands each message to deliver while it holds its channel's
// lock (the memory broker) or on its one receiving goroutine for every
// channel (the Redis broker). Since Send writes to an idle websocket
// itself, the fan-out is real work (a write system call per subscriber):
// done there, it would hold up the publisher's API request for the whole
// fan-out, and on Redis serialise every channel's fan-out on one
// goroutine (and let Redis's pub/sub output buffer grow). So deliver only
// queues the message, and a goroutine per channel, started when its
// queue was idle and ending when it is empty again, fans the messages
// out in order: one goroutine start per burst of publishes, not per
// delivery, and the channels' fan-outs run on every core.

// DefaultMaxFanOutQueueBytes is Options.MaxFanOutQueueBytes's default:
// past it, the broker's delivery waits (back-pressure on the publishers)
// rather than the queue growing. A data size plus fanEntryBytes per
// message counts.
const DefaultMaxFanOutQueueBytes = 16 << 20

const fanEntryBytes = 128

// fanQueue is a channel's fan-out queue.
type fanQueue struct {
	mu      sync.Mutex
	room    sync.Cond // signalled when the fan-out took the queue
	queue   []Message
	bytes   int
	running bool // a fan-out goroutine runs (or is started)
}

// deliver is the broker's delivery function for l: it queues m for the
// channel's fan-out goroutine, starting it if none runs.
func (h *Hub) deliver(l *local, m Message) {
	q := &l.fan
	q.mu.Lock()
	if q.room.L == nil {
		q.room.L = &q.mu
	}
	if q.bytes > h.opts.MaxFanOutQueueBytes {
		h.fanWaited()
		for q.bytes > h.opts.MaxFanOutQueueBytes {
			q.room.Wait()
		}
	}
	q.queue = append(q.queue, m)
	q.bytes += len(m.Data) + fanEntryBytes
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go h.fanOut(l)
	}
}

// fanOut delivers l's queued messages, in order, until the queue is
// empty.
func (h *Hub) fanOut(l *local) {
	q := &l.fan
	var batch []Message
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch, q.queue = q.queue, batch[:0]
		q.bytes = 0
		if q.room.L != nil {
			q.room.Broadcast()
		}
		q.mu.Unlock()
		for i := range batch {
			h.deliverNow(l, batch[i])
			batch[i] = Message{} // let the data go
		}
	}
}
