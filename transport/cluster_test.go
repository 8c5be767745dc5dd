package transport

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/internal/sessionapi"
	"github.com/sockjsd/sockjsd/session"
)

// memOwners is the Owners contract on a map: the reference the Redis
// implementation is tested against too (see cluster/owners_test.go).
type memOwners struct {
	mu sync.Mutex
	m  map[string]string
}

func (o *memOwners) Owner(_ context.Context, key string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[key], nil
}

func (o *memOwners) Claim(_ context.Context, key, node, stale string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.m[key]; cur == "" || cur == node || (stale != "" && cur == stale) {
		o.m[key] = node
	}
	return o.m[key], nil
}

func (o *memOwners) Keep(context.Context, []string, string) error { return nil }

func (o *memOwners) Release(_ context.Context, keys []string, node string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if o.m[k] == node {
			delete(o.m, k)
		}
	}
	return nil
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
	srv     *httptest.Server
	h       *Handler
	obs     *countingObserver
	remotes chan string // RemoteAddr of every session the app sees
}

// startNodes runs n nodes of an echo service sharing one owner store.
func startNodes(t *testing.T, n int, owners Owners, secret string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		tn := &testNode{obs: &countingObserver{results: map[string]int{}}, remotes: make(chan string, 100)}
		r := mux.NewRouter()
		r.SkipClean(true)
		tn.srv = httptest.NewUnstartedServer(r)
		tn.srv.Start()
		tn.h = New("/echo", Options{Cluster: ClusterOptions{
			Owners: owners, Self: tn.srv.URL, Secret: []byte(secret), Observer: tn.obs, KeepInterval: 50 * time.Millisecond,
		}}, func(s *session.Session) {
			tn.remotes <- s.Request().RemoteAddr
			for {
				m, err := s.Recv(context.Background())
				if err != nil || s.Send(m) != nil {
					return
				}
			}
		})
		tn.h.Mount(r)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tn.h.Shutdown(ctx.Done())
			tn.srv.Close()
		})
		nodes[i] = tn
	}
	return nodes
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
	if b.h.Registry().Len() != 0 || a.h.Registry().Len() != 1 {
		t.Fatalf("sessions: A %d, B %d; want 1, 0", a.h.Registry().Len(), b.h.Registry().Len())
	}
	b.obs.waitCounts(t, map[string]int{"xhr_send/ok": 1, "xhr/ok": 1})
	a.obs.waitCounts(t, map[string]int{})
	// The client opened on A directly: A saw the balancer's address only.
	if got := <-a.remotes; !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("remote address: %q", got)
	}

	// A session opened through B (owner A per the store) keeps the
	// client's address: B appends it to X-Forwarded-For, A trusts that
	// because the request is signed.
	owners.set("/echo/fwd", a.srv.URL)
	if code, body := post(t, b.srv.URL+"/echo/000/fwd/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open via B: %d %q", code, body)
	}
	if got := <-a.remotes; got != "127.0.0.1:0" {
		t.Fatalf("remote address of a forwarded session: %q, want the forwarding node's view 127.0.0.1:0", got)
	}
}

func TestClusterSignature(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodes(t, 2, owners, "s3cret")
	a, b := nodes[0], nodes[1]
	owners.set("/echo/abc", a.srv.URL)
	signer := &cluster{opts: ClusterOptions{Secret: []byte("s3cret")}}
	wrong := &cluster{opts: ClusterOptions{Secret: []byte("other")}}
	uri := "/echo/000/abc/xhr_send"
	now := time.Now()
	for _, tc := range []struct {
		name string
		sig  string
		want int
	}{
		{"garbage", "nonsense", 403},
		{"bad time", "x:00", 403},
		{"wrong secret", wrong.sign("POST", uri, now), 403},
		{"too old", signer.sign("POST", uri, now.Add(-time.Minute)), 403},
		{"from the future", signer.sign("POST", uri, now.Add(time.Minute)), 403},
		{"other URL", signer.sign("POST", "/echo/000/other/xhr_send", now), 403},
		{"other method", signer.sign("GET", uri, now), 403},
		// Valid: served by B itself, never forwarded again, so the
		// unknown session gets 404 although the store names A.
		{"valid", signer.sign("POST", uri, now), 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := post(t, b.srv.URL+uri, `["x"]`, map[string]string{ForwardHeader: tc.sig})
			if code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	if got := b.obs.snapshot(); len(got) != 0 {
		t.Fatalf("signed or refused requests were forwarded: %v", got)
	}
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
	sessionapi.End(b.h.Registry().Get("abc"), session.ReasonClient)
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

func TestClusterOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o  ClusterOptions
		ok bool
	}{
		{ClusterOptions{}, true},
		{ClusterOptions{Owners: &memOwners{}, Self: "http://10.0.0.1:8081", Secret: []byte("s")}, true},
		{ClusterOptions{Owners: &memOwners{}, Self: "http://10.0.0.1:8081"}, false},
		{ClusterOptions{Owners: &memOwners{}, Self: "10.0.0.1:8081", Secret: []byte("s")}, false},
		{ClusterOptions{Owners: &memOwners{}, Secret: []byte("s")}, false},
	} {
		if err := tc.o.validate(); (err == nil) != tc.ok {
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
	if late.h.Registry().Len() != 0 {
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
