package session

import (
	"runtime"
	"strings"
	"testing"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestOverflowReleasesDroppedMessages: the messages a send-queue overflow
// drops are garbage at once, not when the closed session expires.
func TestOverflowReleasesDroppedMessages(t *testing.T) {
	const n, size = 32, 1 << 20
	reg := testRegistry(Options{SendQueueMessages: n, SendQueueBytes: 64 << 20})
	s, _, err := reg.GetOrCreate("a", XHRPolling, func() Request { return Request{} })
	if err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	for i := 0; i < n; i++ {
		if err := s.Send(strings.Repeat(string(rune('a'+i%26)), size)); err != nil {
			t.Fatal(err)
		}
	}
	if full := heapInUse(); full < before+n*size/2 {
		t.Fatalf("the queued messages should be on the heap: %d -> %d", before, full)
	}
	if err := s.Send("one too many"); err != ErrQueueFull {
		t.Fatalf("overflow: %v", err)
	}
	after := heapInUse()
	if after > before+4<<20 {
		t.Fatalf("after the overflow %d MiB are still held (before %d MiB): the dropped messages are still referenced",
			after>>20, before>>20)
	}
	runtime.KeepAlive(s)
}
