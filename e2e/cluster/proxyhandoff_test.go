package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// countingBackend is a proxied service's backend in the test process: it
// accepts every session as the user its query names, echoes each message
// as "echo:"+m, and records, per session, the connects, messages and
// closes it got, and every webhook event.
type countingBackend struct {
	url string

	mu       sync.Mutex
	user     map[string]string   // session → user, from the connect
	connects map[string]int      // by user
	msgs     map[string][]string // by session, in the order requests came
	closes   map[string]int      // by session
	events   []struct{ Type, Session, User string }
}

func startCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	b := &countingBackend{user: map[string]string{}, connects: map[string]int{}, msgs: map[string][]string{}, closes: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	b.url = "http://" + ln.Addr().String()
	return b
}

func (b *countingBackend) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type     string            `json:"type"`
		Session  string            `json:"session"`
		User     string            `json:"user"`
		Query    map[string]string `json:"query"`
		Messages []string          `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r.URL.Path {
	case "/b/connect":
		u := req.Query["user"]
		b.user[req.Session] = u
		b.connects[u]++
		_ = json.NewEncoder(w).Encode(map[string]any{"user": u})
	case "/b/message":
		b.msgs[req.Session] = append(b.msgs[req.Session], req.Messages...)
		echo := make([]string, len(req.Messages))
		for i, m := range req.Messages {
			echo[i] = "echo:" + m
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": echo})
	case "/b/close":
		b.closes[req.Session]++
	case "/webhook":
		b.events = append(b.events, struct{ Type, Session, User string }{req.Type, req.Session, req.User})
	default:
		http.NotFound(w, r)
	}
}

// proxyClient is one page of the proxied service: it sends numbered
// messages one at a time and checks each echo is the next one.
type proxyClient struct {
	tr, user string
	c        *client.Conn
	watch    *sessionWatch
	sent     int
	err      error
}

// roundTrip sends msg and reads the next message, which must be want.
func (p *proxyClient) roundTrip(ctx context.Context, msg, want string) error {
	if err := p.c.Send(msg); err != nil {
		return fmt.Errorf("send %s: %w", msg, err)
	}
	got, err := p.c.Recv(ctx)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", want, err)
	}
	if got != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// TestClusterRollingHandOffProxy: 40 sessions of a proxied service
// (xhr-polling and xhr-streaming, the Go client through the shipped
// balancer) exchange numbered messages with a backend in this process,
// one round trip at a time, while the three nodes are restarted one at a
// time. No session sees a close or a second open frame; every message
// reaches the backend once, in order, and every echo the page once, in
// order; the backend gets one connect per session and no close; the
// webhooks tell of no session.closed or user.offline; and after the
// deploy /api/send through the balancer reaches every moved session.
func TestClusterRollingHandOffProxy(t *testing.T) {
	const perTransport = 20
	be := startCountingBackend(t)
	env := startCluster(t, "-proxy", "/px="+be.url+"/b", "-proxy-secret", gwSecret,
		"-webhook", be.url+"/webhook", "-hub-api-key", gwAPIKey, "-drain-delay", "3s")
	// env.lb: deploy/haproxy.cfg as shipped (its check, /readyz?local,
	// takes a draining node out within the drain delay).
	gw := &gatewayEnv{clusterEnv: env}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var clients []*proxyClient
	for i := range 2 * perTransport {
		tr := []string{client.XHRPolling, client.XHRStreaming}[i%2]
		p := &proxyClient{tr: tr, user: "u" + strconv.Itoa(i), watch: newSessionWatch()}
		c, err := client.Dial(ctx, env.lb+"/px?user="+p.user, client.Options{
			Transports: []string{tr}, HTTPClient: &http.Client{Transport: p.watch}, ConnectTimeout: 15 * time.Second,
		})
		if err != nil {
			t.Fatalf("dial %s: %v", tr, err)
		}
		p.c = c
		t.Cleanup(func() { c.Close(); p.watch.cancel() })
		clients = append(clients, p)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := strconv.Itoa(p.sent)
				if p.err = p.roundTrip(ctx, m, "echo:"+m); p.err != nil {
					code, reason, _ := p.c.CloseInfo()
					p.watch.mu.Lock()
					fails := p.watch.fails
					p.watch.mu.Unlock()
					p.err = fmt.Errorf("%s %s: %w (closed %d %q; failed requests %q)", p.tr, p.user, p.err, code, reason, fails)
					return
				}
				p.sent++
			}
		}()
	}
	handedOff := env.rollingRestart()
	close(stop)
	wg.Wait()

	// The server API through the balancer reaches each session where it
	// lives now.
	be.mu.Lock()
	byUser := map[string]string{}
	for s, u := range be.user {
		byUser[u] = s
	}
	be.mu.Unlock()
	for _, p := range clients {
		if p.err != nil {
			t.Error(p.err)
			continue
		}
		if ss := gw.userSessions(t, p.user); len(ss) != 1 || ss[0].Session != byUser[p.user] {
			t.Errorf("%s: /api/sessions lists %+v, want its one session %s", p.user, ss, byUser[p.user])
		}
		body, _ := json.Marshal(map[string]string{"session": byUser[p.user], "data": "pushed"})
		req, _ := http.NewRequest("POST", env.lb+"/api/send", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+gwAPIKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct{ Sessions int }
		_ = json.NewDecoder(res.Body).Decode(&ans)
		res.Body.Close()
		if res.StatusCode != 200 || ans.Sessions != 1 {
			t.Errorf("%s: /api/send: %d, reached %d sessions", p.user, res.StatusCode, ans.Sessions)
			continue
		}
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		got, err := p.c.Recv(rctx)
		rcancel()
		if err != nil || got != "pushed" {
			t.Errorf("%s: after /api/send got %q %v", p.user, got, err)
		}
		if err := p.roundTrip(ctx, "last", "echo:last"); err != nil {
			t.Errorf("%s: %v", p.user, err)
		}
	}

	total := 0
	be.mu.Lock()
	for _, p := range clients {
		sid := byUser[p.user]
		want := []string{}
		for k := range p.sent {
			want = append(want, strconv.Itoa(k))
		}
		want = append(want, "last")
		if got := be.msgs[sid]; p.err == nil && !slices.Equal(got, want) {
			t.Errorf("%s %s: the backend got %d messages, want %d in order once (first difference at %d)", p.tr, p.user, len(got), len(want), firstDiff(got, want))
		}
		if be.connects[p.user] != 1 || be.closes[sid] != 0 {
			t.Errorf("%s %s: %d connects, %d closes", p.tr, p.user, be.connects[p.user], be.closes[sid])
		}
		total += p.sent
	}
	var ends []string
	for _, e := range be.events {
		if e.Type == "session.closed" || e.Type == "user.offline" {
			ends = append(ends, e.Type+" "+e.Session+e.User)
		}
	}
	be.mu.Unlock()
	if len(ends) > 0 {
		t.Errorf("webhooks of sessions that only moved: %q", ends)
	}
	for _, p := range clients {
		if _, _, closed := p.c.CloseInfo(); closed {
			t.Errorf("%s %s: session closed", p.tr, p.user)
		}
		if sid, opens := p.watch.seen(); len(opens) > 1 {
			code, reason, _ := p.c.CloseInfo()
			p.watch.mu.Lock()
			fails := p.watch.fails
			p.watch.mu.Unlock()
			t.Errorf("%s %s: session %s opened %d times %+v; closed %d %q; failed requests %q", p.tr, p.user, sid, len(opens), opens, code, reason, fails)
		}
	}
	t.Logf("%d sessions handed off over the restarts; %d round trips during them", handedOff, total)
	if handedOff < len(clients) {
		// Each node held some of the sessions when it stopped: every
		// session moved at least once.
		t.Errorf("%d hand-offs for %d sessions", handedOff, len(clients))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
