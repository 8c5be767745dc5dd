package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// memOwners is the Store contract on a map: the reference the Redis
// implementation is tested against too (see store_redis_test.go). It
// can be taken down (every call fails) and restarted empty, which starts
// a recovery grace as Redis's store does.
type memOwners struct {
	mu         sync.Mutex
	m          map[string]string
	gen        int
	down       bool
	graceUntil time.Time
}

var errStoreDown = errors.New("store down")

// check is every call's first step (under o.mu).
func (o *memOwners) check() error {
	if o.down {
		return errStoreDown
	}
	return nil
}

// settled is Owner's and Claim's check of the recovery grace (under o.mu).
func (o *memOwners) settled() error {
	if left := time.Until(o.graceUntil); left > 0 {
		return &RecoveringError{Left: left}
	}
	return nil
}

func (o *memOwners) Owner(_ context.Context, key string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return "", err
	}
	if v := o.m[key]; v != "" {
		return ownerOf(v), nil
	}
	return "", o.settled()
}

func (o *memOwners) Claim(_ context.Context, key, node, stale string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return "", err
	}
	if err := o.settled(); err != nil {
		return "", err
	}
	if cur := o.m[key]; cur == "" || cur == node || (stale != "" && cur == stale) {
		o.m[key] = node
	}
	return ownerOf(o.m[key]), nil
}

func (o *memOwners) Keep(_ context.Context, keys []string, node string) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return nil, err
	}
	var lost []string
	for _, k := range keys {
		switch cur := o.m[k]; cur {
		case "", node:
			o.m[k] = node
		default:
			lost = append(lost, k)
		}
	}
	return lost, nil
}

func (o *memOwners) Release(_ context.Context, keys []string, node string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return err
	}
	for _, k := range keys {
		if o.m[k] == node {
			delete(o.m, k)
		}
	}
	return nil
}

func (o *memOwners) Generation(context.Context) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return "", err
	}
	return fmt.Sprint(o.gen), nil
}

// restart loses every record and starts a recovery grace.
func (o *memOwners) restart(grace time.Duration) {
	o.mu.Lock()
	clear(o.m)
	o.gen++
	o.graceUntil = time.Now().Add(grace)
	o.mu.Unlock()
}

func (o *memOwners) setDown(down bool) {
	o.mu.Lock()
	o.down = down
	o.mu.Unlock()
}

func (o *memOwners) get(k string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[k]
}

func (o *memOwners) set(k, v string) {
	o.mu.Lock()
	o.m[k] = v
	o.mu.Unlock()
}

type countingObserver struct {
	mu      sync.Mutex
	results map[string]int
	waiting chan int // each StoreWaiting delta, when the test made one
}

// StoreWaiting implements Observer: the delta goes to c.waiting, if any.
func (c *countingObserver) StoreWaiting(delta int) {
	c.mu.Lock()
	ch := c.waiting
	c.mu.Unlock()
	if ch != nil {
		ch <- delta
	}
}

// StoreUnavailable implements Observer, counted as the result
// "store_unavailable".
func (c *countingObserver) StoreUnavailable(endpoint string) {
	c.mu.Lock()
	c.results[endpoint+"/store_unavailable"]++
	c.mu.Unlock()
}

// watchWaits makes StoreWaiting's deltas readable (the channel holds
// more than any test makes).
func (c *countingObserver) watchWaits() <-chan int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = make(chan int, 64)
	return c.waiting
}

func (c *countingObserver) Forwarded(endpoint, result string, _ time.Duration) {
	c.mu.Lock()
	c.results[endpoint+"/"+result]++
	c.mu.Unlock()
}

// snapshot copies the counts: the proxy reports a request after its
// response is written, so a test may read them before they are final.
func (c *countingObserver) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.results))
	for k, v := range c.results {
		m[k] = v
	}
	return m
}

// waitCounts waits (up to 5s) until the counts are want exactly.
func (c *countingObserver) waitCounts(t *testing.T, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c.snapshot()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("forward counts %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testNode struct {
	srv  *httptest.Server
	node *Node
	h    *transport.Handler
	obs  *countingObserver
	reqs chan session.Request // the request of every session the app sees
}

// engineSession is tn's session with URL session id sid, or nil, as its
// service's cluster membership sees it, with the engine's methods that the
// tests drive the way a transport does.
func (tn *testNode) engineSession(sid string) *engine.Session {
	tn.node.mu.Lock()
	defer tn.node.mu.Unlock()
	for m := range tn.node.members {
		if s := m.svc.Session(sid); s != nil {
			return (*engine.Session)(s)
		}
	}
	return nil
}

// startNodes runs n nodes of an echo service sharing one owner store.
func startNodes(t *testing.T, n int, owners Store, secret string) []*testNode {
	t.Helper()
	return startNodesWith(t, n, owners, func(_ *transport.Options, c *Options) { c.Secret = []byte(secret) })
}

func post(t *testing.T, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestClusterForwardsToOwner(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 2, owners, "s3cret")
	a, b := nodes[0], nodes[1]
	sess := "/echo/000/abc"

	if code, body := post(t, a.srv.URL+sess+"/xhr", "", map[string]string{"X-Forwarded-For": "203.0.113.7"}); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if got := owners.get("/echo/abc"); got != a.srv.URL {
		t.Fatalf("owner after open: %q, want %q", got, a.srv.URL)
	}
	// The send and the poll land on B, which has no such session: both
	// are served by A, in order.
	if code, body := post(t, b.srv.URL+sess+"/xhr_send", `["one","two"]`, nil); code != 204 {
		t.Fatalf("send via B: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"one\",\"two\"]\n" {
		t.Fatalf("poll via B: %d %q", code, body)
	}
	if b.h.Sessions() != 0 || a.h.Sessions() != 1 {
		t.Fatalf("sessions: A %d, B %d; want 1, 0", a.h.Sessions(), b.h.Sessions())
	}
	b.obs.waitCounts(t, map[string]int{"xhr_send/ok": 1, "xhr/ok": 1})
	a.obs.waitCounts(t, map[string]int{})
	// The client opened on A directly: A saw the balancer's address and
	// its X-Forwarded-For.
	if got := <-a.reqs; !strings.HasPrefix(got.RemoteAddr, "127.0.0.1:") || got.Header.Get("X-Forwarded-For") != "203.0.113.7" {
		t.Fatalf("request of a direct session: %+v", got)
	}
}

// TestClusterForwardKeepsClientView: a session opened through a node that
// is not its owner sees the request the first node received: the same
// remote address and the balancer's X-Forwarded-* headers untouched (not
// rewritten with the forwarding node's view), on every node alike.
func TestClusterForwardKeepsClientView(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 2, owners, "s3cret")
	a, b := nodes[0], nodes[1]
	hdr := map[string]string{"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https"}

	if code, body := post(t, a.srv.URL+"/echo/000/direct/xhr", "", hdr); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	direct := <-a.reqs
	owners.set("/echo/fwd", a.srv.URL)
	if code, body := post(t, b.srv.URL+"/echo/000/fwd/xhr", "", hdr); code != 200 || body != "o\n" {
		t.Fatalf("open via B: %d %q", code, body)
	}
	fwd := <-a.reqs
	for _, r := range []session.Request{direct, fwd} {
		if r.Header.Get("X-Forwarded-For") != hdr["X-Forwarded-For"] || r.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("X-Forwarded-* seen by the session: %v", r.Header)
		}
		if !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") || strings.HasSuffix(r.RemoteAddr, ":0") {
			t.Errorf("remote address %q, want the client's as the first node saw it", r.RemoteAddr)
		}
		if r.Header.Get(ForwardHeader) != "" || r.Header.Get(RemoteHeader) != "" {
			t.Errorf("cluster headers reached the session: %v", r.Header)
		}
	}
	if want := strings.TrimPrefix(b.srv.URL, "http://"); fwd.Host != want {
		t.Errorf("host of the forwarded session %q, want the one the client used, %q", fwd.Host, want)
	}
}

func TestClusterSignature(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 2, owners, "s3cret")
	a, b := nodes[0], nodes[1]
	owners.set("/echo/abc", a.srv.URL)
	signer := &Node{opts: Options{Secret: []byte("s3cret")}}
	wrong := &Node{opts: Options{Secret: []byte("other")}}
	uri := "/echo/000/abc/xhr_send"
	now := time.Now()
	for _, tc := range []struct {
		name string
		sig  string
		want int
	}{
		{"garbage", "nonsense", 403},
		{"bad time", "x:00", 403},
		{"wrong secret", wrong.sign(newNonce(), "POST", uri, "", 0, now), 403},
		{"too old", signer.sign(newNonce(), "POST", uri, "", 0, now.Add(-time.Minute)), 403},
		{"from the future", signer.sign(newNonce(), "POST", uri, "", 0, now.Add(time.Minute)), 403},
		{"other URL", signer.sign(newNonce(), "POST", "/echo/000/other/xhr_send", "", 0, now), 403},
		{"other method", signer.sign(newNonce(), "GET", uri, "", 0, now), 403},
		{"other client address", signer.sign(newNonce(), "POST", uri, "192.0.2.1:1", 0, now), 403},
		{"the first version's form", "1700000000:" + strings.Repeat("00", 32), 403},
		// Valid: B has no such session and the store names A: the
		// send is passed on to A once (a stale owner: handoff.go),
		// which does not pass it on again, and answers 404.
		{"valid", signer.sign(newNonce(), "POST", uri, "", 0, now), 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := post(t, b.srv.URL+uri, `["x"]`, map[string]string{ForwardHeader: tc.sig})
			if code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	// The valid send, passed on once; nothing else (counted once the
	// forwarded answer is done, after the client had it).
	b.obs.waitCounts(t, map[string]int{"xhr_send/ok": 1})
}

func TestClusterOwnerGone(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 1, owners, "s3cret")
	b := nodes[0]
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	owners.set("/echo/abc", deadURL)

	// A send for the dead owner's session: unknown session.
	if code, _ := post(t, b.srv.URL+"/echo/000/abc/xhr_send", `["x"]`, nil); code != 404 {
		t.Fatalf("send: %d, want 404", code)
	}
	// A receive starts a new session here, which takes the key over.
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("receive: %d %q", code, body)
	}
	if got := owners.get("/echo/abc"); got != b.srv.URL {
		t.Fatalf("owner %q, want %q", got, b.srv.URL)
	}
	b.obs.waitCounts(t, map[string]int{"xhr_send/owner_gone": 1, "xhr/owner_gone": 1})
	// The session ends; the keep loop releases its key.
	if code, _ := post(t, b.srv.URL+"/echo/000/abc/xhr_send", `["x"]`, nil); code != 204 {
		t.Fatalf("send to the new session: %d", code)
	}
	b.engineSession("abc").End(session.CauseClient)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if owners.get("/echo/abc") == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key of an ended session was not released within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		o  Options
		ok bool
	}{
		{Options{Store: &memOwners{}, Self: "http://10.0.0.1:8081", Secret: []byte("s")}, true},
		{Options{Self: "http://10.0.0.1:8081", Secret: []byte("s")}, false},
		{Options{Store: &memOwners{}, Self: "http://10.0.0.1:8081"}, false},
		{Options{Store: &memOwners{}, Self: "10.0.0.1:8081", Secret: []byte("s")}, false},
		{Options{Store: &memOwners{}, Secret: []byte("s")}, false},
	} {
		if _, err := New(tc.o); (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.o, err)
		}
	}
}

// raceOwners: another node takes a dead owner's session over between this
// node's lookup and its claim.
type raceOwners struct {
	*memOwners
	dead, winner string
}

func (o *raceOwners) Claim(ctx context.Context, key, node, stale string) (string, error) {
	if stale == o.dead {
		o.set(key, o.winner)
	}
	return o.memOwners.Claim(ctx, key, node, stale)
}

func TestClusterTakeoverRace(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	owners := &raceOwners{memOwners: &memOwners{m: map[string]string{}}, dead: deadURL}
	nodes := startNodes(t, 2, owners, "s3cret")
	winner, late := nodes[0], nodes[1]
	owners.winner = winner.srv.URL
	if code, body := post(t, winner.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("winner's session: %d %q", code, body)
	}
	if code, _ := post(t, winner.srv.URL+"/echo/000/abc/xhr_send", `["kept"]`, nil); code != 204 {
		t.Fatalf("send to the winner: %d", code)
	}
	owners.set("/echo/abc", deadURL)
	// The late node finds the dead owner, fails to reach it, loses the
	// claim to the winner and forwards there: no second session.
	if code, body := post(t, late.srv.URL+"/echo/000/abc/xhr_send", `["x"]`, nil); code != 404 {
		t.Fatalf("send: %d %q", code, body)
	}
	if code, body := post(t, late.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "a[\"kept\"]\n" {
		t.Fatalf("poll: %d %q", code, body)
	}
	if late.h.Sessions() != 0 {
		t.Fatal("the late node opened a second session")
	}
	late.obs.waitCounts(t, map[string]int{"xhr_send/owner_gone": 1, "xhr/owner_gone": 1, "xhr/ok": 1})
}

func TestOwnerCache(t *testing.T) {
	live := ownerCache{ttl: time.Hour, m: map[string]cachedOwner{}}
	live.put("a", "http://n1")
	if o, ok := live.get("a"); !ok || o != "http://n1" {
		t.Fatalf("get after put: %q %v", o, ok)
	}
	live.drop("a")
	if _, ok := live.get("a"); ok {
		t.Fatal("get after drop")
	}
	expired := ownerCache{ttl: -time.Nanosecond, m: map[string]cachedOwner{}}
	expired.put("a", "http://n1")
	if _, ok := expired.get("a"); ok {
		t.Fatal("an expired entry was returned")
	}
	for i := range maxCachedOwners + 10 {
		live.put(fmt.Sprint(i), "http://n1")
	}
	if n := len(live.m); n > maxCachedOwners {
		t.Fatalf("%d entries, bound %d", n, maxCachedOwners)
	}
}

// frozenOwner is a node that accepts connections and never answers, as a
// stopped (SIGSTOP) or deadlocked process does: the kernel completes the
// handshake, nothing reads. It returns the node's URL.
func frozenOwner(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// startNodesWith runs n nodes of an echo service sharing one owner store,
// with options the test adjusts. Each node's app reports the request of
// every session it opens on reqs.
func startNodesWith(t testing.TB, n int, owners Store, adjust func(*transport.Options, *Options)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for range n {
		tn := &testNode{obs: &countingObserver{results: map[string]int{}}, reqs: make(chan session.Request, 100)}
		r := mux.NewRouter()
		r.SkipClean(true)
		tn.srv = httptest.NewServer(r)
		co := Options{Store: owners, Self: tn.srv.URL, Secret: []byte("s3cret"), Observer: tn.obs,
			KeepInterval: 50 * time.Millisecond, CheckInterval: 10 * time.Millisecond}
		var o transport.Options
		adjust(&o, &co)
		tn.node = mustNode(t, co)
		o.Cluster = tn.node
		tn.h = transport.New("/echo", o, func(s *session.Session) {
			select {
			case tn.reqs <- s.Request():
			default: // a test that does not read them
			}
			s.OnMessage(func(m string) { _ = s.Send(m) })
		})
		gorillamux.Mount(r, tn.h)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tn.h.Shutdown(ctx)
			tn.srv.Close()
		})
		nodes = append(nodes, tn)
	}
	return nodes
}

// TestClusterForwardTimeout: an owner that accepts connections but never
// answers (frozen) costs a forwarded request ForwardTimeout, not for ever:
// the client gets 504, the request is counted as "timeout", and the
// session stays with its owner (a slow owner is not a gone one: no second
// session is opened here). A poll may wait at its owner for a heartbeat,
// so its bound is ForwardTimeout plus the heartbeat delay.
func TestClusterForwardTimeout(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	const timeout = 300 * time.Millisecond
	b := startNodesWith(t, 1, owners, func(_ *transport.Options, c *Options) { c.ForwardTimeout = timeout })[0]
	frozen := frozenOwner(t)
	owners.set("/echo/abc", frozen)
	for _, ep := range []string{"xhr_send", "xhr_streaming"} {
		start := time.Now()
		code, body := post(t, b.srv.URL+"/echo/000/abc/"+ep, `["x"]`, nil)
		took := time.Since(start)
		if code != http.StatusGatewayTimeout {
			t.Fatalf("%s to a frozen owner: %d %q, want 504", ep, code, body)
		}
		if took < timeout || took > timeout+2*time.Second {
			t.Fatalf("%s answered after %v, want about %v", ep, took, timeout)
		}
	}
	if got := owners.get("/echo/abc"); got != frozen {
		t.Fatalf("owner after timeouts: %q, want the frozen owner still", got)
	}
	if n := b.h.Sessions(); n != 0 {
		t.Fatalf("%d sessions opened here for a slow owner's id", n)
	}
	b.obs.waitCounts(t, map[string]int{"xhr_send/timeout": 1, "xhr_streaming/timeout": 1})
}

// TestClusterForwardPollWaitsForHeartbeat: a forwarded poll may wait at
// its owner for data up to the heartbeat delay; ForwardTimeout counts
// beyond that, so a quiet session's poll is not cut at ForwardTimeout.
func TestClusterForwardPollWaitsForHeartbeat(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(o *transport.Options, c *Options) {
		c.ForwardTimeout = 100 * time.Millisecond
		o.Session.HeartbeatDelay = 400 * time.Millisecond
	})
	a, b := nodes[0], nodes[1]
	if code, body := post(t, a.srv.URL+"/echo/000/quiet/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+"/echo/000/quiet/xhr", "", nil); code != 200 || body != "h\n" {
		t.Fatalf("quiet poll via B: %d %q, want the owner's heartbeat", code, body)
	}
}

// TestClusterDialTimeoutIsNotDeath: a connection to the owner that cannot
// be set up in time (a SYN backlog under load) is a slow owner, not a dead
// one: 504, and no other node takes the live session over. Only a refused
// connection (nothing listens there) counts as the owner gone.
func TestClusterDialTimeoutIsNotDeath(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	b := startNodesWith(t, 1, owners, func(_ *transport.Options, c *Options) {
		c.Transport = &http.Transport{DialContext: (&net.Dialer{Timeout: time.Nanosecond}).DialContext}
	})[0]
	live := frozenOwner(t)
	owners.set("/echo/abc", live)
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil); code != http.StatusGatewayTimeout {
		t.Fatalf("poll with a dial timeout: %d %q, want 504", code, body)
	}
	if got := owners.get("/echo/abc"); got != live {
		t.Fatalf("owner %q after a dial timeout, want %q: a slow owner was taken for a dead one", got, live)
	}
	if n := b.h.Sessions(); n != 0 {
		t.Fatalf("a second session was opened for a live owner's id")
	}
	b.obs.waitCounts(t, map[string]int{"xhr/timeout": 1})
}

// TestClusterForwardedClaimLost: a node reached by a forwarded receive for
// a session it does not hold claims the id, and when the store names
// another owner (taken over in between) it says so with 421 instead of
// opening a second session; the forwarding node follows to that owner.
func TestClusterForwardedClaimLost(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 3, owners, func(*transport.Options, *Options) {})
	a, b, c := nodes[0], nodes[1], nodes[2]
	if code, body := post(t, c.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on C: %d %q", code, body)
	}
	if code, _ := post(t, c.srv.URL+"/echo/000/abc/xhr_send", `["kept"]`, nil); code != 204 {
		t.Fatalf("send on C: %d", code)
	}
	// B still believes A owns the session (its cache, before C took
	// it over).
	b.node.cache.put("/echo/abc", a.srv.URL)
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "a[\"kept\"]\n" {
		t.Fatalf("poll via B: %d %q", code, body)
	}
	if n := a.h.Sessions(); n != 0 {
		t.Fatalf("A opened a second session for C's id")
	}
	if got := owners.get("/echo/abc"); got != c.srv.URL {
		t.Fatalf("owner %q, want C", got)
	}
	b.obs.waitCounts(t, map[string]int{"xhr/moved": 1, "xhr/ok": 1})
}

// TestClusterStoreRestart: the store loses every record (a Redis restart
// without persistence). A request for a live session through another node
// waits out the recovery grace instead of taking the empty key: the owner
// notices the new generation within CheckInterval and puts its records
// back, and the request reaches it. No second session is opened.
func TestClusterStoreRestart(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(*transport.Options, *Options) {})
	a, b := nodes[0], nodes[1]
	if code, body := post(t, a.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if code, _ := post(t, a.srv.URL+"/echo/000/abc/xhr_send", `["before"]`, nil); code != 204 {
		t.Fatalf("send on A: %d", code)
	}
	owners.restart(2 * time.Second)
	start := time.Now()
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr_send", `["after"]`, nil); code != 204 {
		t.Fatalf("send via B right after the restart: %d %q, want 204 from the owner", code, body)
	}
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "a[\"before\",\"after\"]\n" {
		t.Fatalf("poll via B after the restart: %d %q", code, body)
	}
	t.Logf("requests through another node reached the owner %v after the restart", time.Since(start).Round(time.Millisecond))
	if n := b.h.Sessions(); n != 0 {
		t.Fatal("B opened a second session with A's id")
	}
	if got := owners.get("/echo/abc"); got != a.srv.URL {
		t.Fatalf("owner after the restart %q, want A", got)
	}
}

// TestClusterOutageWaitsForStore: while the store is unreachable a poll
// through B for A's session does not open a copy on B: it waits for the
// store, and once the store answers it reaches A's session.
func TestClusterOutageWaitsForStore(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(*transport.Options, *Options) {})
	a, b := nodes[0], nodes[1]
	if code, body := post(t, a.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if code, _ := post(t, a.srv.URL+"/echo/000/abc/xhr_send", `["alive"]`, nil); code != 204 {
		t.Fatalf("send on A: %d", code)
	}
	waits := b.obs.watchWaits()
	owners.setDown(true)
	type answer struct {
		code int
		body string
	}
	polled := make(chan answer, 1)
	go func() {
		code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil)
		polled <- answer{code, body}
	}()
	select {
	case d := <-waits:
		if d != 1 {
			t.Fatalf("first StoreWaiting delta %d, want +1", d)
		}
	case p := <-polled:
		t.Fatalf("poll via B answered during the outage: %d %q", p.code, p.body)
	case <-time.After(5 * time.Second):
		t.Fatal("poll via B not waiting for the store after 5s")
	}
	owners.setDown(false)
	select {
	case p := <-polled:
		if p.code != 200 || p.body != "a[\"alive\"]\n" {
			t.Fatalf("poll via B once the store is back: %d %q, want A's message", p.code, p.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("poll via B unanswered 10s after the store came back")
	}
	if d := <-waits; d != -1 {
		t.Fatalf("StoreWaiting delta after the wait %d, want -1", d)
	}
	if n := b.h.Sessions(); n != 0 {
		t.Fatalf("B opened %d sessions during the outage", n)
	}
	b.obs.waitCounts(t, map[string]int{"xhr/ok": 1})
}

// TestClusterOutageAnswers503: when the store stays unreachable for
// StoreWait, a request for a session B does not hold gets 503, a poll, a
// send or a new session's first request alike, and B serves nothing
// alone. Once the store is back the same requests work.
func TestClusterOutageAnswers503(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	const wait = 200 * time.Millisecond
	nodes := startNodesWith(t, 2, owners, func(_ *transport.Options, c *Options) { c.StoreWait = wait })
	a, b := nodes[0], nodes[1]
	if code, body := post(t, a.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	owners.setDown(true)
	for _, c := range []struct{ path, body string }{
		{"/echo/000/abc/xhr", ""},
		{"/echo/000/abc/xhr_send", `["lost?"]`},
		{"/echo/000/new/xhr", ""},
	} {
		start := time.Now()
		code, body := post(t, b.srv.URL+c.path, c.body, nil)
		if code != http.StatusServiceUnavailable || body != "Session owner store unavailable" {
			t.Fatalf("%s via B during the outage: %d %q, want 503", c.path, code, body)
		}
		if took := time.Since(start); took < wait {
			t.Fatalf("%s answered after %v, before StoreWait (%v)", c.path, took, wait)
		}
	}
	if n := b.h.Sessions(); n != 0 {
		t.Fatalf("B opened %d sessions during the outage", n)
	}
	b.obs.waitCounts(t, map[string]int{"xhr/store_unavailable": 2, "xhr_send/store_unavailable": 1})
	owners.setDown(false)
	if code, _ := post(t, b.srv.URL+"/echo/000/abc/xhr_send", `["after"]`, nil); code != 204 {
		t.Fatalf("send via B after the outage: %d", code)
	}
	if code, body := post(t, b.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "a[\"after\"]\n" {
		t.Fatalf("poll via B after the outage: %d %q, want A's session (the 503 send delivered nothing)", code, body)
	}
	if code, body := post(t, b.srv.URL+"/echo/000/new/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("new session via B after the outage: %d %q", code, body)
	}
	if got := owners.get("/echo/new"); got != b.srv.URL {
		t.Fatalf("owner of the new session %q, want B", got)
	}
}

// TestClusterOwnerConflictCloses: when the store names another owner for
// a session A serves (A was frozen longer than its record's TTL, and
// another node took the id over), A's keep loop closes its copy with 3012,
// and its client gets that close frame, not a session answering in turn
// with another node's.
func TestClusterOwnerConflictCloses(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(*transport.Options, *Options) {})
	a, b := nodes[0], nodes[1]
	if code, body := post(t, a.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	owners.set("/echo/abc", b.srv.URL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := a.engineSession("abc")
		if s == nil || s.Closed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A's copy still open 5s after the store named B")
		}
		time.Sleep(5 * time.Millisecond) // polling the session's state, bounded by the deadline
	}
	if code, body := post(t, a.srv.URL+"/echo/000/abc/xhr", "", nil); code != 200 || body != "c[3012,\"Session owned by another node\"]\n" {
		t.Fatalf("poll on A after the conflict: %d %q, want the close frame of its copy", code, body)
	}
	if got := owners.get("/echo/abc"); got != b.srv.URL {
		t.Fatalf("owner %q, want B still", got)
	}
}

// mustNode is New for tests.
func mustNode(t testing.TB, o Options) *Node {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cutProxy relays TCP connections to target; while cut is above zero, a
// request is not passed on: its connection is closed unread, and cut
// counts down. So an owner closes a kept-alive connection just as the
// next request goes out on it (a node beginning its shutdown closes its
// idle connections), or a new one still in its listener's backlog as the
// listener closes.
type cutProxy struct {
	ln  net.Listener
	cut atomic.Int32
	n   atomic.Int32 // connections cut
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c, target)
		}
	}()
	return p
}

func (p *cutProxy) relay(c net.Conn, target string) {
	defer c.Close()
	o, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer o.Close()
	go func() { _, _ = io.Copy(c, o); c.Close() }()
	buf := make([]byte, 32<<10)
	for {
		k, err := c.Read(buf)
		if k > 0 && bytes.HasPrefix(buf[:k], []byte("POST ")) {
			if left := p.cut.Add(-1); left >= 0 {
				p.n.Add(1)
				return // closed with the request unread
			}
			p.cut.Store(0)
		}
		if k > 0 {
			if _, werr := o.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestClusterSendSurvivesClosedKeepAlive: an owner that closes a
// connection as a forwarded send goes out on it never read that send: the
// forwarding node sends it again on a new connection (it kept the small
// body), and the client gets 204, the message delivered once. First on a
// new connection (forward tries once more, signed anew: net/http never
// does on a new one), then on the kept-alive one (net/http's Transport
// tries again by itself when the close came as it read the answer;
// forward does when it came as it wrote). Without that the client got
// 502 and sockjs-client ends its session on a failed send (seen in
// rolling restarts: the draining node's connections closing).
func TestClusterSendSurvivesClosedKeepAlive(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	var proxy *cutProxy
	nodes := startNodesWith(t, 2, owners, func(_ *transport.Options, c *Options) {
		if proxy == nil { // node A: the others reach it through the proxy
			proxy = startCutProxy(t, strings.TrimPrefix(c.Self, "http://"))
			c.Self = "http://" + proxy.ln.Addr().String()
		}
	})
	a, b := nodes[0], nodes[1]
	sess := "/echo/000/keepalive"
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	// B has no connection to A yet: the first send's is new.
	proxy.cut.Store(1)
	if code, body := post(t, b.srv.URL+sess+"/xhr_send", `["one"]`, nil); code != 204 {
		t.Fatalf("send via B on a new connection A closed: %d %q, want 204", code, body)
	}
	proxy.cut.Store(1)
	if code, body := post(t, b.srv.URL+sess+"/xhr_send", `["two"]`, nil); code != 204 {
		t.Fatalf("send via B on a kept-alive connection A closed: %d %q, want 204", code, body)
	}
	if proxy.n.Load() != 2 {
		t.Fatalf("connections cut: %d, want 2", proxy.n.Load())
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"one\",\"two\"]\n" {
		t.Fatalf("poll on A: %d %q, want each message once", code, body)
	}
}

// TestClusterLargeSendStreams: a send over sendReplayMax is not kept in
// memory by the forwarding node: it streams through to the owner whole.
func TestClusterLargeSendStreams(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 2, owners, "s3cret")
	a, b := nodes[0], nodes[1]
	sess := "/echo/000/large"
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	big := strings.Repeat("x", sendReplayMax+1000)
	if code, body := post(t, b.srv.URL+sess+"/xhr_send", `["`+big+`"]`, nil); code != 204 {
		t.Fatalf("large send via B: %d %q", code, body)
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\""+big+"\"]\n" {
		t.Fatalf("poll on A: %d, %d bytes, want the large message", code, len(body))
	}
}
