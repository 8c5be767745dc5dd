package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/e2e/internal/procs"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/webhook"
)

const webhookSecret = "webhook-secret-3b9f02"

// received is one event as the receiver first got it.
type received struct {
	webhook.Event
	at time.Time
}

// receiver takes webhooks: each POST's signature (with webhookSecret)
// and X-Sockjsd-Event-Id are checked, repeats of an id are dropped
// (delivery is at least once) and counted.
type receiver struct {
	t   *testing.T
	srv *server

	mu     sync.Mutex
	posts  int
	dups   int
	seen   map[string]bool
	events []received // in the order they first came
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, seen: map[string]bool{}}
	r.srv = newServer(t, http.HandlerFunc(r.serve))
	return r
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, ok := readSignedWith(rc.t, []byte(webhookSecret), w, r)
	if !ok {
		return
	}
	var e webhook.Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" {
		rc.t.Errorf("webhook body %q: %v", body, err)
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	if h := r.Header.Get(webhook.EventIDHeader); h != e.ID {
		rc.t.Errorf("%s is %q, the event's id %q", webhook.EventIDHeader, h, e.ID)
	}
	rc.mu.Lock()
	rc.posts++
	if rc.seen[e.ID] {
		rc.dups++
	} else {
		rc.seen[e.ID] = true
		rc.events = append(rc.events, received{e, time.Now()})
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// find is the events (after dedup) for which match holds.
func (rc *receiver) find(match func(webhook.Event) bool) []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []received
	for _, e := range rc.events {
		if match(e.Event) {
			out = append(out, e)
		}
	}
	return out
}

func (rc *receiver) count(match func(webhook.Event) bool) int { return len(rc.find(match)) }

// byUser is each user's events, in the order they came.
func (rc *receiver) byUser() map[string][]webhook.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]webhook.Event{}
	for _, e := range rc.events {
		if e.User != "" {
			out[e.User] = append(out[e.User], e.Event)
		}
	}
	return out
}

// checkSequences: every user's events, in the order they came, are a
// valid life: a session opens once and closes once after, user.online
// only while offline and with a session, user.offline only without one.
func checkSequences(t *testing.T, users map[string][]webhook.Event) {
	t.Helper()
	for u, evs := range users {
		live, online := map[string]bool{}, false
		for i, e := range evs {
			bad := ""
			switch e.Type {
			case webhook.SessionOpened:
				bad = map[bool]string{true: "opened twice"}[live[e.Session]]
				live[e.Session] = true
			case webhook.SessionClosed:
				bad = map[bool]string{false: "closed while not open"}[live[e.Session]]
				delete(live, e.Session)
			case webhook.UserOnline:
				if online || len(live) == 0 {
					bad = "online while online or without a session"
				}
				online = true
			case webhook.UserOffline:
				if !online || len(live) > 0 {
					bad = "offline while offline or with a session"
				}
				online = false
			}
			if bad != "" {
				var seq []string
				for _, e := range evs {
					seq = append(seq, e.Type+" "+e.Session)
				}
				t.Fatalf("user %s: event %d (%s %s): %s; their events:\n%s", u, i, e.Type, e.Session, bad, strings.Join(seq, "\n"))
			}
		}
	}
}

// hasFlag reports whether the sockjsd binary has flag name.
// webhookDown is how long the receiver is down in the second part of
// TestWebhooks: 30s as issue 16 asks, or SOCKJSD_E2E_WEBHOOK_DOWN.
func webhookDown(t *testing.T) time.Duration {
	if v := os.Getenv("SOCKJSD_E2E_WEBHOOK_DOWN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOCKJSD_E2E_WEBHOOK_DOWN=%q: %v", v, err)
		}
		return d
	}
	return 30 * time.Second
}

func isType(typ string) func(webhook.Event) bool {
	return func(e webhook.Event) bool { return e.Type == typ }
}

// TestWebhooks: redis-server and three nodes with -webhook. 300 sessions
// of 100 users; node 2 holds all the sessions of users u0-u29, one of
// each of u30-u59. kill -9 node 2: every one of its sessions gets
// session.closed 1006 "Node lost"; u10-u29 get user.offline, each id
// once after dedup, in time; u0-u9, who reconnect to a live node inside
// the window (u0-u4 at once, u5-u9 after their session.closed came), and
// u30-u99, who kept sessions, get none. Then the receiver refuses
// connections for 30s while sessions open and close: once it is back, it
// gets every event, in order per user.
func TestWebhooks(t *testing.T) {
	need(t)
	redis := testenv.StartRedis(t)
	const delay = 3 * time.Second
	b := newBackend(t)
	rc := newReceiver(t)
	args := []string{"-redis", redis.URL, "-cluster-secret", clusterSecret, "-proxy", "/app=" + b.base(),
		"-webhook", rc.srv.url(), "-webhook-secret", webhookSecret, "-disconnect-delay", delay.String()}
	// The directory's TTL: how soon a dead node's sessions are closed.
	// The server's default (-proxy-directory-ttl), so that the bound the
	// issue sets (disconnect delay + 10 s) is met as shipped.
	const ttl = 6 * time.Second
	var nodes []*sockjsd
	for i := range 3 {
		nodes = append(nodes, startSockjsd(t, fmt.Sprintf("node%d", i+1), args...))
	}
	victim := nodes[1]
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)

	// 300 sessions: u0-u29 all on node 2, u30-u59 one on each node,
	// u60-u99 on nodes 1 and 3.
	type sess struct {
		tag, user string
		node      *sockjsd
		c         *client.Conn
	}
	var all []*sess
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	slots := make(chan struct{}, 16)
	for u := range 100 {
		for k := range 3 {
			var n *sockjsd
			switch {
			case u < 30:
				n = victim
			case u < 60:
				n = nodes[k]
			default:
				n = nodes[[]int{0, 2}[(u+k)%2]]
			}
			s := &sess{tag: fmt.Sprintf("u%d-%d", u, k), user: fmt.Sprint("u", u), node: n}
			tp := client.WebSocket
			if (u+k)%10 == 0 {
				tp = client.XHRStreaming
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				c, err := client.Dial(t.Context(), n.url+"/app?user="+s.user+"&tag="+s.tag, client.Options{Transports: []string{tp}, HTTPClient: hc})
				if err != nil {
					errs <- fmt.Errorf("%s on %s: %w", s.tag, n.name, err)
					return
				}
				s.c = c
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range all {
			_ = s.c.Close()
		}
	})
	// Every session accepted and announced.
	victimSessions := map[string]bool{}
	for _, s := range all {
		w := b.session(t, s.tag)
		if w.Node != s.node.url {
			t.Fatalf("%s: connect from node %q, want %q", s.tag, w.Node, s.node.url)
		}
		if s.node == victim {
			victimSessions[w.Session] = true
		}
	}
	procs.WaitFor(t, 20*time.Second, "300 session.opened and 100 user.online", func() bool {
		return rc.count(isType(webhook.SessionOpened)) == 300 && rc.count(isType(webhook.UserOnline)) == 100
	})

	// kill -9 node 2.
	killed := time.Now()
	victim.p.Kill()
	reconnect := func(u int) {
		tag := fmt.Sprintf("u%d-back", u)
		c := dial(t, hc, nodes[0].url+"/app?user=u"+fmt.Sprint(u)+"&tag="+tag, client.WebSocket)
		_ = c.Send("back")
		if m := recvWithin(t, c, 5*time.Second); m != "back" {
			t.Fatalf("%s: echo %q", tag, m)
		}
		all = append(all, &sess{tag: tag, user: fmt.Sprint("u", u), node: nodes[0], c: c})
	}
	for u := range 5 {
		reconnect(u)
	}
	closedOf := func(user string) func(webhook.Event) bool {
		return func(e webhook.Event) bool { return e.Type == webhook.SessionClosed && e.User == user }
	}
	var windows []string
	for u := 5; u < 10; u++ {
		user := fmt.Sprint("u", u)
		procs.WaitFor(t, ttl+10*time.Second, "the session.closed of "+user+"'s sessions", func() bool { return rc.count(closedOf(user)) == 3 })
		reconnect(u)
		last := rc.find(closedOf(user))[2]
		windows = append(windows, time.Since(last.at).Round(time.Millisecond).String())
	}
	t.Logf("u5-u9 reconnected %s after their last session.closed came (disconnect delay %v)", strings.Join(windows, ", "), delay)

	// Every session of node 2 closed as lost; u10-u29 offline in time.
	bound := delay + 10*time.Second
	isOffline := isType(webhook.UserOffline)
	procs.WaitFor(t, bound, "u10-u29's user.offline", func() bool { return rc.count(isOffline) == 20 })
	offlineTook := time.Since(killed)
	var lastClosed time.Duration
	for _, e := range rc.find(isType(webhook.SessionClosed)) {
		if !victimSessions[e.Session] {
			t.Fatalf("session.closed of %s (user %s), not a session of the killed node", e.Session, e.User)
		}
		if e.Code != 1006 || e.Reason != "Node lost" {
			t.Fatalf("session.closed of %s: %d %q, want 1006 \"Node lost\"", e.Session, e.Code, e.Reason)
		}
		lastClosed = max(lastClosed, e.at.Sub(killed))
	}
	if n := rc.count(isType(webhook.SessionClosed)); n != len(victimSessions) {
		t.Fatalf("%d session.closed, want one for each of the killed node's %d sessions", n, len(victimSessions))
	}
	offline := map[string]bool{}
	for _, e := range rc.find(isOffline) {
		offline[e.User] = true
	}
	for u := range 100 {
		if want := u >= 10 && u < 30; offline[fmt.Sprint("u", u)] != want {
			t.Fatalf("user u%d: user.offline %v, want %v", u, !want, want)
		}
	}
	checkSequences(t, rc.byUser())
	rc.mu.Lock()
	posts, dups := rc.posts, rc.dups
	rc.mu.Unlock()
	t.Logf("after kill -9 of a node with %d sessions: every session.closed (1006 Node lost) within %v, the 20 user.offline within %v (directory TTL %v; bound: disconnect delay %v + 10s); %d POSTs, %d repeats dropped",
		len(victimSessions), lastClosed.Round(time.Millisecond), offlineTook.Round(time.Millisecond), ttl, delay, posts, dups)

	// The receiver refuses connections while sessions open and close.
	// So far: 300 opened, 100 online, the closed, 20 offline, and the
	// reconnects' 10 opened.
	before := 300 + 100 + len(victimSessions) + 20 + 10
	procs.WaitFor(t, 10*time.Second, fmt.Sprint(before, " events"), func() bool {
		return len(rc.find(func(webhook.Event) bool { return true })) == before
	})
	down := webhookDown(t)
	rc.srv.stop()
	downAt := time.Now()
	live := []*sockjsd{nodes[0], nodes[2]}
	var fresh []string
	for i := range 20 {
		user := fmt.Sprint("w", i)
		c := dial(t, hc, live[i%2].url+"/app?user="+user+"&tag="+user, []string{client.WebSocket, client.XHRPolling}[i%2])
		_ = c.Send("hi")
		if m := recvWithin(t, c, 5*time.Second); m != "hi" {
			t.Fatalf("%s: echo %q", user, m)
		}
		_ = c.Close()
		fresh = append(fresh, user)
	}
	// u60-u69 leave: their three sessions each close.
	for _, s := range all {
		if u := strings.TrimPrefix(s.user, "u"); len(u) == 2 && u[0] == '6' {
			_ = s.c.Close()
		}
	}
	procs.WaitFor(t, down+10*time.Second, "a webhook POST refused", func() bool {
		return nodes[0].metric(t, "sockjs_webhook_deliveries_total", `outcome="unreachable"`)+
			nodes[2].metric(t, "sockjs_webhook_deliveries_total", `outcome="unreachable"`) > 0
	})
	// The outage itself: its length is the scenario, not a wait for
	// anything.
	time.Sleep(time.Until(downAt.Add(down)))
	if got := len(rc.find(func(webhook.Event) bool { return true })); got != before {
		t.Fatalf("%d events arrived while the receiver was down", got-before)
	}
	rc.srv.start()
	back := time.Now()
	// Each new user: opened, online, closed, offline; each of u60-u69:
	// three closed, then offline.
	want := before + 20*4 + 10*4
	procs.WaitFor(t, webhook.DefaultRetryMax+15*time.Second, fmt.Sprintf("%d events after the receiver came back", want-before), func() bool {
		return len(rc.find(func(webhook.Event) bool { return true })) == want
	})
	caughtUp := time.Since(back)
	users := rc.byUser()
	for _, u := range fresh {
		var types []string
		for _, e := range users[u] {
			types = append(types, e.Type)
		}
		if w := []string{webhook.SessionOpened, webhook.UserOnline, webhook.SessionClosed, webhook.UserOffline}; !slices.Equal(types, w) {
			t.Fatalf("user %s: events %v, want %v", u, types, w)
		}
	}
	for u := 60; u < 70; u++ {
		evs := users[fmt.Sprint("u", u)]
		var types []string
		for _, e := range evs[len(evs)-4:] {
			types = append(types, e.Type)
		}
		if w := []string{webhook.SessionClosed, webhook.SessionClosed, webhook.SessionClosed, webhook.UserOffline}; !slices.Equal(types, w) {
			t.Fatalf("user u%d: last events %v, want %v", u, types, w)
		}
	}
	checkSequences(t, users)
	rc.mu.Lock()
	posts, dups = rc.posts, rc.dups
	rc.mu.Unlock()
	t.Logf("receiver down %v: the %d events of meanwhile all came %v after it returned, in order per user; %d POSTs in all, %d repeats dropped",
		down, want-before, caughtUp.Round(time.Millisecond), posts, dups)
}
