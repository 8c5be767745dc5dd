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
		// Publishes that queued while the last ones were fanned out
		// go to each subscriber together (SendMany: one write on an
		// idle websocket, not one per publish), a few at a time.
		for i := 0; i < len(batch); {
			k := fanBatch(batch[i:])
			h.deliverNow(l, batch[i:i+k])
			clear(batch[i : i+k]) // let the data go
			i += k
		}
	}
}

// maxFanBatch and maxFanBatchBytes bound the publishes one subscriber is
// given at once by a fan-out that fell behind: a batch is one write to an
// idle websocket, and the session's send queue takes it whole or closes
// (3009), so it stays far below the queue's limits (engine's defaults:
// 1,024 messages, 1 MiB) and within the shared frames' cache
// (transport's wsprepared.go).
const (
	maxFanBatch      = 8
	maxFanBatchBytes = 64 << 10
)

// fanBatch is how many of the queued publishes (at least one) go out
// together.
func fanBatch(queue []Message) int {
	n, size := 1, len(queue[0].Data)
	for n < len(queue) && n < maxFanBatch && size+len(queue[n].Data) <= maxFanBatchBytes {
		size += len(queue[n].Data)
		n++
	}
	return n
}
