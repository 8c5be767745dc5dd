package engine

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// TestOverflowReleasesDroppedMessages: the messages a send-queue overflow
// drops are garbage at once, not when the closed session expires.
func TestOverflowReleasesDroppedMessages(t *testing.T) {
	const n, size = 32, 1 << 20
	reg := testRegistry(Options{SendQueueMessages: n, SendQueueBytes: 64 << 20})
	s, _, err := reg.GetOrCreate("a", XHRPolling, func() Request { return Request{} })
	if err != nil {
		t.Fatal(err)
	}
	before := testenv.HeapAfterGC()
	for i := 0; i < n; i++ {
		if err := s.Send(strings.Repeat(string(rune('a'+i%26)), size)); err != nil {
			t.Fatal(err)
		}
	}
	if full := testenv.HeapAfterGC(); full < before+n*size/2 {
		t.Fatalf("the queued messages should be on the heap: %d -> %d", before, full)
	}
	if err := s.Send("one too many"); err != ErrQueueFull {
		t.Fatalf("overflow: %v", err)
	}
	after := testenv.HeapAfterGC()
	if after > before+4<<20 {
		t.Fatalf("after the overflow %d MiB are still held (before %d MiB): the dropped messages are still referenced",
			after>>20, before>>20)
	}
	runtime.KeepAlive(s)
}

// TestRecvQueueBoundedInBytes: Deliver admits messages while they fit in
// RecvQueueBytes (and always one into an empty queue), then waits.
func TestRecvQueueBoundedInBytes(t *testing.T) {
	reg := testRegistry(Options{RecvQueueBytes: 1000})
	s, _, _ := reg.GetOrCreate("a", XHRPolling, func() Request { return Request{} })
	msg := strings.Repeat("m", 300)
	msgs := []string{msg, msg, msg, msg, msg, msg}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Deliver(ctx, msgs); err != context.DeadlineExceeded {
		t.Fatalf("Deliver past the byte limit must wait: %v", err)
	}
	s.mu.Lock()
	n, b := len(s.inQ)-s.inHead, s.inBytes
	s.mu.Unlock()
	if n < 1 || b > 1000 {
		t.Fatalf("queue holds %d messages, %d bytes; want at least one and at most 1000 bytes", n, b)
	}
	for i := 0; i < n; i++ {
		if m, err := s.Recv(context.Background()); err != nil || m != msg {
			t.Fatal(m, err)
		}
	}
	s.mu.Lock()
	b = s.inBytes
	s.mu.Unlock()
	if b != 0 {
		t.Fatalf("empty queue counts %d bytes", b)
	}
	// A message over the byte limit still goes through an empty queue.
	big := strings.Repeat("b", 5000)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := s.Deliver(ctx2, []string{big}); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Recv(ctx2); m != big {
		t.Fatal("big message lost")
	}
}

func TestSendSlots(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, _ := reg.GetOrCreate("a", XHRPolling, func() Request { return Request{} })
	for i := range 2 {
		if !s.AcquireSendSlot(2) {
			t.Fatalf("slot %d of two refused", i+1)
		}
	}
	if s.AcquireSendSlot(2) {
		t.Fatal("third slot of two")
	}
	s.ReleaseSendSlot()
	if !s.AcquireSendSlot(2) {
		t.Fatal("slot not released")
	}
}

// blockingReceiver holds its first messages frame until release is closed.
type blockingReceiver struct {
	writing, release chan struct{}
	gone             chan struct{}
}

func (b *blockingReceiver) WriteFrame(f *Frame) (bool, error) {
	if f.Kind == FrameMessages {
		close(b.writing)
		<-b.release
		return true, nil
	}
	return false, nil
}

func (b *blockingReceiver) Gone() <-chan struct{} { return b.gone }

// TestBuffered: messages and bytes sent and not yet written, including a
// batch being written.
func TestBuffered(t *testing.T) {
	reg := testRegistry(Options{})
	s, _, _ := reg.GetOrCreate("a", XHRStreaming, func() Request { return Request{} })
	if m, b := s.Buffered(); m != 0 || b != 0 {
		t.Fatalf("new session: %d %d", m, b)
	}
	for _, m := range []string{"a", "bb", "ccc"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if m, b := s.Buffered(); m != 3 || b != 6 {
		t.Fatalf("after three sends: %d messages %d bytes, want 3 and 6", m, b)
	}
	r := &blockingReceiver{writing: make(chan struct{}), release: make(chan struct{}), gone: make(chan struct{})}
	served := make(chan struct{})
	go func() { s.Serve(r); close(served) }()
	<-r.writing
	if err := s.Send("dddd"); err != nil {
		t.Fatal(err)
	}
	if m, b := s.Buffered(); m != 4 || b != 10 {
		t.Fatalf("while a batch is written: %d messages %d bytes, want 4 and 10", m, b)
	}
	close(r.release)
	<-served
	if m, b := s.Buffered(); m != 1 || b != 4 {
		t.Fatalf("after the write: %d messages %d bytes, want 1 and 4", m, b)
	}
}
