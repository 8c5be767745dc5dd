package engine

import (
	"strconv"
	"testing"
	"time"
)

// benchRegistryOpts keeps the registry benchmarks' sessions alive for the
// whole run: GetOrCreate arms the expiry clock of a session no receiver is
// attached to, and on a loaded machine a run outlasted the default 5 s
// disconnect delay, so sessions vanished under the benchmark ("missing").
// benchRegistry ends them when the benchmark is done, which stops their
// timers and lets the garbage collector have them.
var benchRegistryOpts = Options{DisconnectDelay: time.Hour}

func benchRegistry(b *testing.B) *Registry {
	reg := NewRegistry(benchRegistryOpts, 200_000)
	b.Cleanup(func() { reg.Range(func(s *Session) { s.End(CauseShutdown) }) })
	return reg
}

// discard is a streaming Receiver that drops frames.
type discard struct{ gone chan struct{} }

func (d discard) WriteFrame(*Frame) (bool, error) { return false, nil }
func (d discard) Gone() <-chan struct{}           { return d.gone }

// BenchmarkSend is the application's side of the send path: queue a
// message and wake the session's writer.
func BenchmarkSend(b *testing.B) {
	reg := NewRegistry(Options{SendQueueMessages: 1 << 30, SendQueueBytes: 1 << 62}, 0)
	s, _ := reg.Create(WebSocket, Request{})
	d := discard{gone: make(chan struct{})}
	done := make(chan struct{})
	go func() { s.Serve(d); close(done) }()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Send("a 64-byte message .............................................."); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(d.gone)
	<-done
}

// BenchmarkDeliverRecv is the receive path: a message read off the
// connection handed to the application.
func BenchmarkDeliverRecv(b *testing.B) {
	reg := NewRegistry(Options{}, 0)
	s, _ := reg.Create(WebSocket, Request{})
	msgs := []string{"m"}
	ctx := s.Context()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := s.Deliver(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegistryGet: the lookup every xhr_send and poll makes, from
// many goroutines at once over 100k sessions.
func BenchmarkRegistryGet(b *testing.B) {
	reg := benchRegistry(b)
	ids := make([]string, 100_000)
	for i := range ids {
		ids[i] = "session-" + strconv.Itoa(i)
		_, _, _ = reg.GetOrCreate(ids[i], XHRPolling, func() Request { return Request{} })
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if reg.Get(ids[i%len(ids)]) == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
}

// BenchmarkRegistryGetOrCreate: the lookup every receiving HTTP request
// makes (the session usually exists), from many goroutines at once over
// 100k sessions. Creation is left out: each new session arms a timer and
// stays for the disconnect delay, so a loop of them measures the heap.
func BenchmarkRegistryGetOrCreate(b *testing.B) {
	reg := benchRegistry(b)
	ids := make([]string, 100_000)
	req := func() Request { return Request{} }
	for i := range ids {
		ids[i] = "session-" + strconv.Itoa(i)
		_, _, _ = reg.GetOrCreate(ids[i], XHRPolling, req)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, created, err := reg.GetOrCreate(ids[i%len(ids)], XHRPolling, req); err != nil || created {
				b.Fatal("session missing", err)
			}
			i++
		}
	})
}

// BenchmarkConnEcho is the websocket echo path in the engine: a message
// delivered on the reader's goroutine to an OnMessage callback that
// sends it back, written on that goroutine when it returns (a pump run
// inline, writer.go). It must not allocate per message.
func BenchmarkConnEcho(b *testing.B) {
	reg := NewRegistry(Options{}, 0)
	s, _ := reg.Create(WebSocket, Request{})
	d := discard{gone: make(chan struct{})}
	s.ServeConn(d, func() {})
	s.OnMessage(func(m string) { _ = s.Send(m) })
	msgs := []string{"a 64-byte message .............................................."}
	ctx := s.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Deliver(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s.End(CauseShutdown)
}
