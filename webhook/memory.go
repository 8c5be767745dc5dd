package webhook

import (
	"context"
	"sync"
)

// MemoryQueue keeps one node's events in memory: Partitions FIFO queues,
// each delivered by its own worker, one event at a time. It is bounded by
// Options.MaxQueueBytes, the sum of the queued events' JSON sizes; what is
// queued when the process ends is lost (Shutdown logs how many).
type MemoryQueue struct {
	n     *Notifier
	mu    sync.Mutex
	parts [Partitions]memPart
	bytes int64
	count int
	full  bool // in a full episode: logged once, at its start
}

type memPart struct {
	q    []queued // q[0] is the head, in flight or next
	wake chan struct{}
}

func newMemoryQueue(n *Notifier) *MemoryQueue {
	q := &MemoryQueue{n: n}
	for i := range q.parts {
		q.parts[i].wake = make(chan struct{}, 1)
	}
	return q
}

// Enqueue implements Queue.
func (q *MemoryQueue) Enqueue(_ context.Context, e Event) error {
	if q.n.stopping() {
		return errStopped
	}
	raw, err := fill(&e)
	if err != nil {
		return err
	}
	p := Partition(e.OrderKey())
	q.mu.Lock()
	if q.bytes+int64(len(raw)) > q.n.opts.MaxQueueBytes {
		first := !q.full
		q.full = true
		q.mu.Unlock()
		q.n.obs.QueueFull()
		if first {
			q.n.log.Error("webhook: memory queue full, refusing events until it drains", "max_queue_bytes", q.n.opts.MaxQueueBytes)
		}
		return ErrQueueFull
	}
	q.full = false
	q.parts[p].q = append(q.parts[p].q, queued{raw: raw, id: e.ID, typ: typeLabel(e.Type)})
	q.bytes += int64(len(raw))
	q.count++
	// Under the lock, so that the gauge's last value is the last count.
	q.n.obs.QueueLength(q.count)
	q.mu.Unlock()
	select {
	case q.parts[p].wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return nil
}

// Len is the number of events queued, the heads in flight included.
func (q *MemoryQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

func (q *MemoryQueue) left() int { return q.Len() }

func (q *MemoryQueue) head(p int) (queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.parts[p].q) == 0 {
		return queued{}, false
	}
	return q.parts[p].q[0], true
}

func (q *MemoryQueue) pop(p int) {
	q.mu.Lock()
	part := &q.parts[p]
	q.bytes -= int64(len(part.q[0].raw))
	q.count--
	q.n.obs.QueueLength(q.count)
	part.q[0] = queued{} // let the JSON be collected
	part.q = part.q[1:]
	if len(part.q) == 0 {
		part.q = nil // drop the drained backing array
	}
	q.mu.Unlock()
}

// run runs one worker per partition: 64 goroutines idle on a channel cost
// less than starting and ending one per burst, and keep each partition's
// events strictly sequential.
func (q *MemoryQueue) run(n *Notifier) {
	var wg sync.WaitGroup
	for p := range Partitions {
		wg.Go(func() { q.work(n, p) })
	}
	wg.Wait()
}

func (q *MemoryQueue) work(n *Notifier, p int) {
	for {
		ev, ok := q.head(p)
		if !ok {
			select {
			case <-q.parts[p].wake:
				continue
			case <-n.stop:
				return
			}
		}
		if n.stopping() || !n.deliver(n.hard, ev) {
			return
		}
		q.pop(p)
	}
}
