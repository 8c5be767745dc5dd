package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// deliveryCounter is the server's metrics, counting the messages written
// (DeliveryDelay is observed once per message written to a client).
type deliveryCounter struct {
	*metrics.Metrics
	written atomic.Int64
	want    atomic.Int64
	reached chan struct{}
}

func (o *deliveryCounter) DeliveryDelay(t session.Transport, d time.Duration) {
	o.Metrics.DeliveryDelay(t, d)
	if n := o.written.Add(1); n == o.want.Load() {
		select {
		case o.reached <- struct{}{}:
		default:
		}
	}
}

// The subscribers of BenchmarkHubFanOut run in a child process (this test
// binary, TestHubFanOutSubscribers), so that the benchmark's getrusage
// and CPU profile are the server's alone, and every write wakes a reader
// in another process, as in production.
const (
	subsURLEnv = "SOCKJSD_BENCH_SUBS_URL"
	subsNEnv   = "SOCKJSD_BENCH_SUBS_N"
)

// TestHubFanOutSubscribers is the child process of BenchmarkHubFanOut:
// it opens the asked number of websocket sessions, subscribes each to
// "bench", prints "ready" and then reads and discards until stdin closes.
func TestHubFanOutSubscribers(t *testing.T) {
	url := os.Getenv(subsURLEnv)
	if url == "" {
		t.Skip("the child process of BenchmarkHubFanOut")
	}
	n, _ := strconv.Atoi(os.Getenv(subsNEnv))
	conns := dialSubs(t, url, "bench", n)
	for _, c := range conns {
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent is done
}

// dialSubs opens n SockJS websocket sessions on url's /hub subscribed to
// channel, and returns their connections, to be read raw.
func dialSubs(tb testing.TB, url, channel string, n int) []net.Conn {
	tb.Helper()
	ws := "ws" + strings.TrimPrefix(url, "http") + "/hub/000/"
	conns := make([]net.Conn, n)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial(ws+strconv.Itoa(i)+"/websocket", nil)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		subscribeWS(tb, c, channel)
		// Nothing more is buffered in gorilla's reader: the server
		// sends nothing before the next publish.
		conns[i] = c.NetConn()
	}
	return conns
}

// subscribeWS subscribes a SockJS websocket connection, read with gorilla,
// to channel and reads up to its subscribed.
func subscribeWS(tb testing.TB, c *websocket.Conn, channel string) {
	tb.Helper()
	subMsg, _ := json.Marshal([]string{`{"op":"subscribe","channel":"` + channel + `"}`})
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	if err := c.WriteMessage(websocket.TextMessage, subMsg); err != nil {
		tb.Fatal(err)
	}
	for {
		_, m, err := c.ReadMessage()
		if err != nil {
			tb.Fatal(err)
		}
		if bytes.Contains(m, []byte(`subscribed`)) {
			return
		}
	}
}

// seqOf is a hub message's op and seq.
func seqOf(m string) (op string, seq uint64) {
	var v struct {
		Op  string
		Seq uint64
	}
	_ = json.Unmarshal([]byte(m), &v)
	return v.Op, v.Seq
}

// startSubscribers runs TestHubFanOutSubscribers in a child process and
// waits until its n sessions subscribed.
func startSubscribers(tb testing.TB, url string, n int) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHubFanOutSubscribers$", "-test.count=1")
	cmd.Env = append(os.Environ(), subsURLEnv+"="+url, subsNEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		ready <- fmt.Errorf("the subscriber process ended before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		tb.Fatal("the subscribers were not ready within 2 minutes")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHubFanOut: one channel, 1,000 websocket subscribers over
// loopback (in a child process), publishes through Hub.Publish. A round
// publishes 20 messages and waits until the server wrote all 20,000
// deliveries. Reported per delivery: wall ns (ns/op is per publish), the
// server process's CPU ns (getrusage), allocs.
// Run with -cpu=1 for the pinned server's figure:
//
//	go test -run '^$' -bench HubFanOut -cpu=1 -benchmem ./hub/
func BenchmarkHubFanOut(b *testing.B) {
	const perRound = 1
	subscribers := 1000
	if n, err := strconv.Atoi(os.Getenv(subsNEnv)); err == nil && n > 0 {
		subscribers = n // more, with ulimit -n to match
	}
	obs := &deliveryCounter{Metrics: metrics.New(prometheus.NewRegistry()), reached: make(chan struct{}, 1)}
	h := hub.New(hub.Options{Rules: hub.Rules{Channels: []string{"bench"}}, MaxSubscriptionsPerAddress: 2 * subscribers, Observer: obs})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{Session: session.Options{Observer: obs}}, h.Serve))
	srv := httptest.NewServer(r)
	b.Cleanup(srv.Close)
	startSubscribers(b, srv.URL, subscribers)
	data := json.RawMessage(`{"text":"a hub message of about a hundred bytes, as the bench table's are","n":1}`)
	ctx := context.Background()
	var cpu, wall time.Duration
	var mallocs uint64
	published := 0
	b.ResetTimer()
	for published < b.N {
		n := min(perRound, b.N-published)
		base := obs.written.Load()
		obs.want.Store(base + int64(n*subscribers))
		m0 := mallocCount()
		c0, w0 := cpuTime(), time.Now()
		for range n {
			if _, err := h.Publish(ctx, "bench", data); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-obs.reached:
		case <-time.After(time.Minute):
			b.Fatalf("%d of %d deliveries written after a minute", obs.written.Load()-base, n*subscribers)
		}
		cpu += cpuTime() - c0
		wall += time.Since(w0)
		mallocs += mallocCount() - m0
		published += n
	}
	d := float64(b.N * subscribers)
	b.ReportMetric(float64(wall.Nanoseconds())/d, "wall-ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/d, "cpu-ns/delivery")
	b.ReportMetric(float64(mallocs)/d, "allocs/delivery")
}

func mallocCount() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}
