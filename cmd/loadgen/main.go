// Command loadgen puts load on a SockJS service through the Go client (or,
// for echoes over the xhr transports with -http raw, through its own
// lighter HTTP/1.1 sessions: rawxhr.go), in one of four modes:
//
//   - echo: N sessions over one transport echoing K messages of S bytes in
//     flight each, for D; reports messages/s, round-trip p50/p95/p99, errors
//     and the 2010 ("Another connection still open") answers it got;
//   - idle: holds N sessions open for D (memory per idle session);
//   - hub: N subscribers of one hub channel while the backend API publishes
//     at each of -rates in turn; reports publish-to-delivery p50/p99,
//     deliveries/s and lost or duplicated deliveries per rate (hub.go);
//   - soak: sessions opening, echoing sequence-checked messages and being
//     abandoned over every transport for D, then waits for the server's
//     goroutines, heap and open sessions (read from /metrics) to return to
//     their baseline (soak.go).
//
// Targets are loopback addresses only.
//
//	go run ./cmd/loadgen -url http://127.0.0.1:8081/echo -transport websocket -n 100 -k 1 -s 64 -d 10s
//	go run ./cmd/loadgen -mode hub -url http://127.0.0.1:8081/hub -transport websocket -n 10000 -rates 10,20,50
//	go run ./cmd/loadgen -mode soak -url http://127.0.0.1:8081/echo -n 50 -d 10m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

type config struct {
	url         string
	transport   string
	n, k, s     int
	d           time.Duration
	mode        string
	jsonOut     bool
	connectRate int
	connectMax  time.Duration
	localAddrs  int
	http        string // echo mode on xhr transports: "client" (the Go client) or "raw" (rawxhr.go)
	quiet       bool
	marks       bool
	hub         hubConfig
	soak        soakConfig
}

// Result is what a run measured (the -json output).
type Result struct {
	Transport  string  `json:"transport"`
	Mode       string  `json:"mode"`
	Sessions   int     `json:"sessions"`
	Opened     int64   `json:"opened"`
	Messages   int64   `json:"messages"`
	Seconds    float64 `json:"seconds"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// Busy2010 counts c[2010,"Another connection still open"] answers
	// (the client retried them; a browser would have lost the session).
	Busy2010 int64 `json:"busy_2010"`
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8081/echo", "SockJS service URL (loopback only)")
	flag.StringVar(&c.transport, "transport", "websocket", "websocket, xhr-streaming or xhr-polling")
	flag.IntVar(&c.n, "n", 100, "sessions")
	flag.IntVar(&c.k, "k", 1, "messages in flight per session (echo mode)")
	flag.IntVar(&c.s, "s", 64, "message size in bytes (echo mode)")
	flag.DurationVar(&c.d, "d", 10*time.Second, "how long to measure, after every session opened")
	flag.StringVar(&c.mode, "mode", "echo", "echo, idle, hub or soak")
	flag.BoolVar(&c.jsonOut, "json", false, "print the result as JSON on stdout")
	flag.IntVar(&c.connectRate, "connect-parallel", 200, "sessions opening at once")
	flag.DurationVar(&c.connectMax, "connect-timeout", 2*time.Minute, "longest the whole opening phase may take")
	flag.IntVar(&c.localAddrs, "local-addrs", 1, "spread sessions over source addresses 127.0.0.1..127.0.0.N (more ephemeral ports)")
	flag.StringVar(&c.http, "http", "client", "echo mode on xhr-polling and xhr-streaming: client (the Go client over net/http's) or raw (prebuilt HTTP/1.1 requests, answers read in place: a lighter load generator)")
	flag.BoolVar(&c.quiet, "quiet", false, "no progress lines")
	flag.BoolVar(&c.marks, "marks", false, "print \"measure start\" and \"measure end\" lines on stderr (for bench drivers sampling the server)")
	c.hub.register()
	c.soak.register()
	flag.Parse()
	if c.n <= 0 || c.k <= 0 || c.s < 0 || c.d <= 0 || c.connectRate <= 0 || c.localAddrs < 1 || c.localAddrs > 250 ||
		(c.mode != "echo" && c.mode != "idle" && c.mode != "hub" && c.mode != "soak") || (c.http != "client" && c.http != "raw") {
		fmt.Fprintln(os.Stderr, "loadgen: bad flags: need -n, -k, -d, -connect-parallel > 0, -s >= 0, 1 <= -local-addrs <= 250, -mode echo|idle|hub|soak, -http client|raw")
		os.Exit(2)
	}
	if err := checkLoopback(c.url); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	var out any
	var err error
	switch c.mode {
	case "hub":
		out, err = runHub(c)
	case "soak":
		out, err = runSoak(c)
	default:
		out, err = run(c)
	}
	if out != nil && (c.jsonOut || c.mode == "hub" || c.mode == "soak") {
		_ = json.NewEncoder(os.Stdout).Encode(out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if c.jsonOut || c.mode == "hub" || c.mode == "soak" {
		return
	}
	res := out.(*Result)
	fmt.Printf("%s %s: %d sessions, %.0f msgs/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, %d errors, %d 2010 answers\n",
		res.Transport, res.Mode, res.Opened, res.MsgsPerSec, res.P50ms, res.P95ms, res.P99ms, res.Errors, res.Busy2010)
}

// checkLoopback refuses targets that are not on this machine: a load
// generator must never be pointed at someone else's server by mistake.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address", u.Hostname())
		}
	}
	return nil
}

type stats struct {
	messages atomic.Int64
	errors   atomic.Int64
	opened   atomic.Int64
	busy     atomic.Int64 // 2010 answers
	mu       sync.Mutex
	samples  []time.Duration
	firstErr string
}

func (s *stats) fail(err error) {
	s.errors.Add(1)
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
	s.mu.Unlock()
}

// maxSamples bounds the latency samples kept (every message is counted).
const maxSamples = 1 << 20

// clientOptions are the client options for the i-th of the local
// addresses: its own HTTP client and dialer bound to 127.0.0.(i+1), so
// that each source address has its own range of ephemeral ports. 2010
// answers are counted in busy.
func clientOptions(c config, i int, busy *atomic.Int64) client.Options {
	d := dialer(c, i)
	per := c.n/c.localAddrs + 1
	tr := &http.Transport{DialContext: d.DialContext,
		MaxIdleConnsPerHost: 2*per + 16, MaxIdleConns: 2*per + 16, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: busyCounter{next: tr, n: busy}}
	return client.Options{Transports: []string{c.transport}, HTTPClient: hc, ConnectTimeout: 30 * time.Second,
		NetDialContext: d.DialContext}
}

// dialer is the dialer of the i-th of the local addresses.
func dialer(c config, i int) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if c.localAddrs > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}
	}
	return d
}

// echoConn is a session as echo uses it: a *client.Conn, or a *rawXHR.
type echoConn interface {
	Send(string) error
	Recv(context.Context) (string, error)
	Close() error
}

// rawXHRFor reports whether the echo runs over rawxhr.go's sessions.
func rawXHRFor(c config) bool {
	return c.http == "raw" && c.mode == "echo" && (c.transport == "xhr-polling" || c.transport == "xhr-streaming")
}

// closeIdle closes the idle keep-alive connections of every option's HTTP
// client, so that the server's side of them ends too.
func closeIdle(opts []client.Options) {
	for _, o := range opts {
		if bc, ok := o.HTTPClient.Transport.(busyCounter); ok {
			bc.next.(*http.Transport).CloseIdleConnections()
		}
	}
}

// dialAll opens c.n sessions at c.url (c.connectRate at a time, within
// c.connectMax); a session that fails to open is counted in st and left
// nil.
func dialAll(c config, target string, opts []client.Options, st *stats) []echoConn {
	u, err := url.Parse(target)
	if err != nil {
		st.fail(err)
		return make([]echoConn, c.n)
	}
	return dialEach(c, st, func(ctx context.Context, i int) (echoConn, error) {
		if rawXHRFor(c) {
			return dialRawXHR(ctx, u, c.transport == "xhr-streaming", func(ctx context.Context) (net.Conn, error) {
				return dialer(c, i%c.localAddrs).DialContext(ctx, "tcp", u.Host)
			}, &st.busy)
		}
		return client.Dial(ctx, target, opts[i%len(opts)])
	})
}

// dialClients is dialAll with the Go client only.
func dialClients(c config, target string, opts []client.Options, st *stats) []*client.Conn {
	return dialEach(c, st, func(ctx context.Context, i int) (*client.Conn, error) {
		return client.Dial(ctx, target, opts[i%len(opts)])
	})
}

// dialEach opens c.n connections with dial (c.connectRate at a time,
// within c.connectMax); one that fails is counted in st and left the
// zero value.
func dialEach[T any](c config, st *stats, dial func(ctx context.Context, i int) (T, error)) []T {
	conns := make([]T, c.n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.connectRate)
	dialCtx, dialCancel := context.WithTimeout(context.Background(), c.connectMax)
	defer dialCancel()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-dialCtx.Done():
				st.fail(fmt.Errorf("opening phase over -connect-timeout %v", c.connectMax))
				return
			}
			defer func() { <-sem }()
			conn, err := dial(dialCtx, i)
			if err != nil {
				st.fail(err)
				return
			}
			conns[i] = conn
			st.opened.Add(1)
		}()
	}
	wg.Wait()
	return conns
}

func run(c config) (*Result, error) {
	st := &stats{}
	optsByAddr := make([]client.Options, c.localAddrs)
	for i := range optsByAddr {
		optsByAddr[i] = clientOptions(c, i, &st.busy)
	}
	conns := dialAll(c, c.url, optsByAddr, st)
	var wg sync.WaitGroup
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	if st.opened.Load() == 0 {
		return nil, fmt.Errorf("no session opened: %s", st.firstErr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.d)
	defer cancel()
	stopProgress := progress(c, st)
	if c.marks {
		fmt.Fprintln(os.Stderr, "measure start")
	}
	start := time.Now()
	if c.mode == "echo" {
		payload := strings.Repeat("x", c.s)
		for _, conn := range conns {
			if conn == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				echo(ctx, conn, payload, c.k, st)
			}()
		}
	}
	<-ctx.Done()
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if c.marks {
		fmt.Fprintln(os.Stderr, "measure end")
	}

	res := &Result{Transport: c.transport, Mode: c.mode, Sessions: c.n, Opened: st.opened.Load(),
		Messages: st.messages.Load(), Seconds: elapsed.Seconds(), Errors: st.errors.Load(), FirstError: st.firstErr,
		Busy2010: st.busy.Load()}
	res.MsgsPerSec = float64(res.Messages) / elapsed.Seconds()
	if len(st.samples) > 0 {
		sort.Slice(st.samples, func(i, j int) bool { return st.samples[i] < st.samples[j] })
		pct := func(p float64) float64 {
			return float64(st.samples[int(p*float64(len(st.samples)-1))]) / float64(time.Millisecond)
		}
		res.P50ms, res.P95ms, res.P99ms = pct(.50), pct(.95), pct(.99)
	}
	return res, nil
}

// echo keeps k messages in flight on conn until ctx ends; the service
// echoes in order, so the oldest send time is the one an echo answers.
func echo(ctx context.Context, conn echoConn, payload string, k int, st *stats) {
	sent := make([]time.Time, 0, k)
	for i := 0; i < k; i++ {
		sent = append(sent, time.Now())
		if err := conn.Send(payload); err != nil {
			st.fail(err)
			return
		}
	}
	local := make([]time.Duration, 0, 1024)
	defer func() {
		st.mu.Lock()
		if room := maxSamples - len(st.samples); room > 0 {
			st.samples = append(st.samples, local[:min(room, len(local))]...)
		}
		st.mu.Unlock()
	}()
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				st.fail(err)
			}
			return
		}
		if len(m) != len(payload) {
			st.fail(fmt.Errorf("echo of %d bytes, sent %d", len(m), len(payload)))
			return
		}
		if len(local) < cap(local) || len(local) < maxSamples/64 {
			local = append(local, time.Since(sent[0]))
		}
		st.messages.Add(1)
		sent = append(sent[:0], sent[1:]...)
		sent = append(sent, time.Now())
		if err := conn.Send(payload); err != nil {
			st.fail(err)
			return
		}
	}
}

// progress prints a line a second to stderr until stopped.
func progress(c config, st *stats) func() {
	if c.quiet {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start, last := time.Now(), int64(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := st.messages.Load()
				fmt.Fprintf(os.Stderr, "\r%5.0fs  %s  sessions %d  %8d msgs/s  errors %d   ",
					time.Since(start).Seconds(), c.transport, st.opened.Load(), n-last, st.errors.Load())
				last = n
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		fmt.Fprintln(os.Stderr)
	}
}
