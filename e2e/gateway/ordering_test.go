package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// orderChecker is a backend's view of the ordering workload: each
// session's messages must come as "<client>:<n>" with n counting up from
// 0, one client per session, one request in flight per session.
type orderChecker struct {
	mu       sync.Mutex
	sessions map[string]*orderState
	bad      []string // the first violations
	overlaps int
}

type orderState struct {
	client   int
	next     int
	inFlight bool
}

func newOrderChecker() *orderChecker { return &orderChecker{sessions: map[string]*orderState{}} }

func (o *orderChecker) violation(format string, args ...any) {
	if len(o.bad) < 10 {
		o.bad = append(o.bad, fmt.Sprintf(format, args...))
	}
}

// message checks one batch, then holds it 0-5ms, as a backend with
// work to do would.
func (o *orderChecker) message(w wire) {
	o.mu.Lock()
	st := o.sessions[w.Session]
	if st == nil {
		st = &orderState{client: -1}
		o.sessions[w.Session] = st
	}
	if st.inFlight {
		o.overlaps++
	}
	st.inFlight = true
	for _, m := range w.Messages {
		c, n, ok := strings.Cut(m, ":")
		ci, err1 := strconv.Atoi(c)
		ni, err2 := strconv.Atoi(n)
		switch {
		case !ok || err1 != nil || err2 != nil:
			o.violation("session %s: message %q", w.Session, m)
		case st.client == -1 && ni == 0:
			st.client, st.next = ci, 1
		case ci != st.client || ni != st.next:
			o.violation("session %s (client %d): got %q, want %d:%d", w.Session, st.client, m, st.client, st.next)
		default:
			st.next++
		}
	}
	o.mu.Unlock()
	time.Sleep(rand.N(5*time.Millisecond + 1)) // the backend's work, not a wait for anything
	o.mu.Lock()
	st.inFlight = false
	o.mu.Unlock()
}

// runOrdering opens sessions sessions (round robin over urls, mostly
// websocket, some xhr-streaming and xhr-polling), each sends perSession
// numbered messages and reads their echoes in order; the first problem a
// client saw fails the test.
func runOrdering(t *testing.T, urls []string, sessions, perSession int) {
	t.Helper()
	// Idle connections close before haproxy's (timeout http-keep-alive
	// 10s): a POST on a connection haproxy is closing fails with EOF,
	// which net/http does not send again (browsers do).
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * sessions, IdleConnTimeout: 5 * time.Second}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	errs := make(chan error, sessions)
	dialSlots := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- orderingSession(ctx, hc, dialSlots, urls[i%len(urls)], i, perSession)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func orderingSession(ctx context.Context, hc *http.Client, dialSlots chan struct{}, url string, i, perSession int) error {
	tp := client.WebSocket
	switch i % 8 {
	case 0:
		tp = client.XHRPolling
	case 1:
		tp = client.XHRStreaming
	}
	dialSlots <- struct{}{}
	c, err := client.Dial(ctx, url, client.Options{Transports: []string{tp}, HTTPClient: hc})
	<-dialSlots
	if err != nil {
		return fmt.Errorf("client %d: dial over %s: %w", i, tp, err)
	}
	defer c.Close()
	// Odd clients keep at most 4 messages unanswered, so that the
	// backend gets many small batches; even ones send all at once.
	window := make(chan struct{}, perSession)
	if i%2 == 1 {
		window = make(chan struct{}, 4)
	}
	sent := make(chan error, 1)
	go func() {
		for n := range perSession {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				sent <- ctx.Err()
				return
			}
			if err := c.Send(fmt.Sprintf("%d:%d", i, n)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for n := range perSession {
		m, err := c.Recv(ctx)
		if err != nil {
			code, reason, _ := c.CloseInfo()
			return fmt.Errorf("client %d over %s: echo %d: %v (closed %d %q)", i, tp, n, err, code, reason)
		}
		if want := fmt.Sprintf("%d:%d", i, n); m != want {
			return fmt.Errorf("client %d over %s: echo %q, want %q", i, tp, m, want)
		}
		<-window
	}
	return <-sent
}

// check: the backend saw every session's messages in order, each once,
// never two requests of one session at once.
func (o *orderChecker) check(t *testing.T, sessions, perSession int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.bad) > 0 {
		t.Fatalf("the backend saw messages out of order or twice:\n%s", strings.Join(o.bad, "\n"))
	}
	if o.overlaps > 0 {
		t.Fatalf("%d message requests came while another of the same session was in flight", o.overlaps)
	}
	if len(o.sessions) != sessions {
		t.Fatalf("the backend saw messages of %d sessions, want %d", len(o.sessions), sessions)
	}
	clients := map[int]bool{}
	for sid, st := range o.sessions {
		if st.next != perSession {
			t.Fatalf("session %s (client %d): the backend got %d messages, want %d", sid, st.client, st.next, perSession)
		}
		clients[st.client] = true
	}
	if len(clients) != sessions {
		t.Fatalf("%d clients behind %d sessions", len(clients), sessions)
	}
}

const (
	orderSessions   = 200
	orderPerSession = 500
)

// TestOrdering: 200 sessions × 500 messages through one sockjsd while the
// backend answers each batch after 0-5ms: the backend sees each session's
// messages in order, each exactly once, one request in flight per
// session, and every client gets its echoes in order.
func TestOrdering(t *testing.T) {
	need(t)
	b := newBackend(t)
	oc := newOrderChecker()
	b.onMessage = oc.message
	s := startSockjsd(t, "sockjsd", "-proxy", "/app="+b.base())
	start := time.Now()
	runOrdering(t, []string{s.url + "/app"}, orderSessions, orderPerSession)
	took := time.Since(start)
	oc.check(t, orderSessions, orderPerSession)
	reqs := s.metric(t, "sockjs_proxy_requests_total", `hook="message"`, `outcome="ok"`)
	t.Logf("%d sessions × %d messages in order, each once, in %v (%.0f messages/s each way); %.0f message requests (%.1f messages a batch)",
		orderSessions, orderPerSession, took.Round(time.Millisecond), float64(orderSessions*orderPerSession)/took.Seconds(), reqs, float64(orderSessions*orderPerSession)/reqs)
}

// TestOrderingCluster: the same through haproxy (round robin, no
// stickiness) over three nodes sharing redis-server: the HTTP
// transports' requests land on every node and are forwarded to the
// session's owner, and still each session's messages reach the backend in
// order, once, and the echoes the client in order.
func TestOrderingCluster(t *testing.T) {
	need(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		testenv.Missing(t, "haproxy on PATH (Debian: apt-get install haproxy)")
	}
	redis := testenv.StartRedis(t)
	b := newBackend(t)
	oc := newOrderChecker()
	b.onMessage = oc.message
	var urls []string
	var nodes []*sockjsd
	for i := range 3 {
		n := startSockjsd(t, fmt.Sprintf("node%d", i+1), "-redis", redis.URL, "-cluster-secret", clusterSecret, "-proxy", "/app="+b.base())
		nodes = append(nodes, n)
		urls = append(urls, n.url)
	}
	lb := procs.HAProxy(t, urls)
	start := time.Now()
	runOrdering(t, []string{lb + "/app"}, orderSessions, orderPerSession)
	took := time.Since(start)
	oc.check(t, orderSessions, orderPerSession)
	var forwarded []string
	for _, n := range nodes {
		forwarded = append(forwarded, fmt.Sprintf("%s %.0f", n.name, n.metric(t, "sockjs_cluster_forwarded_requests_total", `result="ok"`)))
	}
	t.Logf("%d sessions × %d messages through haproxy and 3 nodes in order, each once, in %v (%.0f messages/s each way); requests forwarded to the owner: %s",
		orderSessions, orderPerSession, took.Round(time.Millisecond), float64(orderSessions*orderPerSession)/took.Seconds(), strings.Join(forwarded, ", "))
}
