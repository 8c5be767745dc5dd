package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// HandOff and Take on the map store, as RedisStore does them (the record
// replaces the owner in the same key).
func (o *memOwners) HandOff(_ context.Context, key, node string, state []byte, _ time.Duration) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return err
	}
	if cur := o.m[key]; cur != "" && cur != node {
		return ErrNotOwner
	}
	o.m[key] = handOffMarker + string(state)
	return nil
}

func (o *memOwners) Take(_ context.Context, key, node string) ([]byte, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return nil, "", err
	}
	cur := o.m[key]
	if !strings.HasPrefix(cur, handOffMarker) {
		return nil, ownerOf(cur), nil
	}
	o.m[key] = node
	return []byte(strings.TrimPrefix(cur, handOffMarker)), node, nil
}

// echoHandOff is the echo service's opt-in: it has no state of its own.
type echoHandOff struct{}

func (echoHandOff) Export(*session.Session) ([]byte, error) { return []byte("{}"), nil }
func (echoHandOff) Resume(s *session.Session, _ []byte) error {
	s.OnMessage(func(m string) { _ = s.Send(m) })
	return nil
}

// TestHandOffResumesElsewhere: node A hands its polling session off; the
// next poll, on B, resumes it under the same id without an open frame and
// gets what A had queued; a send that still reaches A is passed on to B;
// a forwarded request A gets for it is sent to the store's owner.
func TestHandOffResumesElsewhere(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(o *transport.Options, _ *Options) { o.HandOff = echoHandOff{} })
	a, b := nodes[0], nodes[1]
	sess := "/echo/000/abc"
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr_send", `["one","two"]`, nil); code != 204 {
		t.Fatalf("send on A: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 1 || r.Failed != 0 {
		t.Fatalf("hand-off: %+v", r)
	}
	if got := owners.get("/echo/abc"); !strings.HasPrefix(got, handOffMarker) {
		t.Fatalf("store after hand-off: %q", got)
	}
	// A poll that still reaches A: a heartbeat, to ask again.
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "h\n" {
		t.Fatalf("poll on A after hand-off: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"one\",\"two\"]\n" {
		t.Fatalf("poll on B: %d %q", code, body)
	}
	if got := owners.get("/echo/abc"); got != b.srv.URL {
		t.Fatalf("owner after the resume: %q, want B", got)
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr_send", `["three"]`, nil); code != 204 {
		t.Fatalf("send on A after the resume: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"three\"]\n" {
		t.Fatalf("poll on B: %d %q", code, body)
	}
	if a.h.Sessions() != 1 || b.h.Sessions() != 1 {
		t.Fatalf("sessions: A %d (the stub), B %d", a.h.Sessions(), b.h.Sessions())
	}
}

// TestHandOffHubSession: a hub session on xhr-polling moves from A to B.
// Message 3 was queued on A and not polled (it comes from the hand-off
// record), message 4 was published after A froze the session (it comes
// from the broker's history when B subscribes it again): B's first poll
// has both, once, and no subscribed frame; the session then follows the
// channel on B.
func TestHandOffHubSession(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	broker := hub.NewMemoryBroker(hub.MemoryBrokerOptions{History: hub.HistoryOptions{Size: 100}})
	t.Cleanup(func() { _ = broker.Close() })
	type hubNode struct {
		url string
		h   *transport.Handler
	}
	var nodes []hubNode
	for range 2 {
		r := mux.NewRouter()
		r.SkipClean(true)
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		hb := hub.New(hub.Options{Broker: broker, Rules: hub.Rules{Channels: []string{"news"}}})
		node := mustNode(t, Options{Store: owners, Self: srv.URL, Secret: []byte("s3cret"), KeepInterval: 50 * time.Millisecond, CheckInterval: 10 * time.Millisecond})
		h := transport.New("/hub", transport.Options{Cluster: node, HandOff: hb}, hb.Serve)
		gorillamux.Mount(r, h)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.Shutdown(ctx)
		})
		nodes = append(nodes, hubNode{srv.URL, h})
	}
	a, b := nodes[0], nodes[1]
	sess := "/hub/000/abc"
	poll := func(base string) string {
		t.Helper()
		code, body := post(t, base+sess+"/xhr", "", nil)
		if code != 200 {
			t.Fatalf("poll on %s: %d %q", base, code, body)
		}
		return body
	}
	publish := func(n int) {
		t.Helper()
		if _, err := broker.Publish(context.Background(), "news", json.RawMessage(strconv.Itoa(n))); err != nil {
			t.Fatal(err)
		}
	}
	if got := poll(a.url); got != "o\n" {
		t.Fatalf("open: %q", got)
	}
	if code, _ := post(t, a.url+sess+"/xhr_send", `["{\"op\":\"subscribe\",\"channel\":\"news\"}"]`, nil); code != 204 {
		t.Fatalf("subscribe: %d", code)
	}
	if got := poll(a.url); !strings.Contains(got, `\"op\":\"subscribed\"`) {
		t.Fatalf("subscribed: %q", got)
	}
	publish(1)
	publish(2)
	got := ""
	for range 5 { // the messages may come in one poll or two
		if got += poll(a.url); strings.Contains(got, `\"seq\":2,`) {
			break
		}
	}
	if !strings.Contains(got, `\"seq\":1,\"data\":1}`) || !strings.Contains(got, `\"seq\":2,\"data\":2}`) {
		t.Fatalf("messages 1 and 2 on A: %q", got)
	}
	publish(3) // queued on A: no poll is waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 1 {
		t.Fatalf("hand-off: %+v", r)
	}
	publish(4) // after the freeze: from history
	got = poll(b.url)
	want := `a["{\"op\":\"message\",\"channel\":\"news\",\"seq\":3,\"data\":3}","{\"op\":\"message\",\"channel\":\"news\",\"seq\":4,\"data\":4}"]` + "\n"
	if got != want {
		t.Fatalf("first poll on B:\n got %q\nwant %q", got, want)
	}
	publish(5)
	if got, want := poll(b.url), `a["{\"op\":\"message\",\"channel\":\"news\",\"seq\":5,\"data\":5}"]`+"\n"; got != want {
		t.Fatalf("live on B: %q, want %q", got, want)
	}
}

// takeRaceOwners orders two requests of one node for a handed-off
// session the way a rolling restart did: the poll's claim (its cached
// owner, the drained node, refused it) waits until the send (sent once
// the poll claims) has looked
// the owner up too, and that lookup answers once the poll has taken the
// record; the poll's take then returns only when the send was answered
// (at most a second later). So the send finds this node named as the
// owner while the session is not in its registry yet.
type takeRaceOwners struct {
	*memOwners
	dead                            string
	armed                           atomic.Bool
	claiming, asked, taken, release chan struct{}
	claimOnce, askOnce, takeOnce    sync.Once
}

// waitOrAfter waits for ch, at most d.
func waitOrAfter(ch <-chan struct{}, d time.Duration) {
	select {
	case <-ch:
	case <-time.After(d):
	}
}

func (o *takeRaceOwners) Claim(ctx context.Context, key, node, stale string) (string, error) {
	if o.armed.Load() && stale == o.dead {
		o.claimOnce.Do(func() { close(o.claiming) })
		waitOrAfter(o.asked, 5*time.Second)
	}
	return o.memOwners.Claim(ctx, key, node, stale)
}

func (o *takeRaceOwners) Owner(ctx context.Context, key string) (string, error) {
	if o.armed.Load() {
		o.askOnce.Do(func() { close(o.asked) })
		waitOrAfter(o.taken, 5*time.Second)
	}
	return o.memOwners.Owner(ctx, key)
}

func (o *takeRaceOwners) Take(ctx context.Context, key, node string) ([]byte, string, error) {
	state, owner, err := o.memOwners.Take(ctx, key, node)
	if o.armed.Load() {
		o.takeOnce.Do(func() { close(o.taken) })
		waitOrAfter(o.release, time.Second)
	}
	return state, owner, err
}

// TestHandOffTakeRacesSend: A hands a session off and stops; on B a poll
// takes the record and resumes the session, and a send that came at the
// same time finds B named as the owner before the session is in B's
// registry. The send must wait for the resume and be delivered, not be
// answered 404 (sockjs-client closes a session whose send failed); a poll
// in its place must not open a second session under the id.
func TestHandOffTakeRacesSend(t *testing.T) {
	owners := &takeRaceOwners{memOwners: &memOwners{m: map[string]string{}},
		claiming: make(chan struct{}), asked: make(chan struct{}), taken: make(chan struct{}), release: make(chan struct{})}
	nodes := startNodesWith(t, 2, owners, func(o *transport.Options, _ *Options) { o.HandOff = echoHandOff{} })
	a, b := nodes[0], nodes[1]
	owners.dead = a.srv.URL
	sess := "/echo/000/abc"
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	// Through B, so that B caches A as the owner.
	if code, body := post(t, b.srv.URL+sess+"/xhr_send", `["one"]`, nil); code != 204 {
		t.Fatalf("send through B: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 1 {
		t.Fatalf("hand-off: %+v", r)
	}
	a.srv.Close() // B's forwards to A are refused now
	owners.armed.Store(true)

	type answer struct {
		code int
		body string
	}
	polled, sent := make(chan answer, 1), make(chan answer, 1)
	go func() {
		code, body := post(t, b.srv.URL+sess+"/xhr", "", nil)
		polled <- answer{code, body}
	}()
	waitOrAfter(owners.claiming, 5*time.Second)
	go func() {
		code, body := post(t, b.srv.URL+sess+"/xhr_send", `["two"]`, nil)
		sent <- answer{code, body}
		close(owners.release)
	}()
	if s := <-sent; s.code != 204 {
		t.Fatalf("send racing the resume: %d %q, want 204", s.code, s.body)
	}
	p := <-polled
	if p.code != 200 || p.body != "a[\"one\",\"two\"]\n" && p.body != "a[\"one\"]\n" {
		t.Fatalf("poll that resumed the session: %d %q", p.code, p.body)
	}
	if b.h.Sessions() != 1 {
		t.Errorf("B has %d sessions, want the resumed one", b.h.Sessions())
	}
	// What the first poll did not get, the next one does: "two" once.
	if !strings.Contains(p.body, "two") {
		if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"two\"]\n" {
			t.Fatalf("next poll: %d %q", code, body)
		}
	}
}

// sweepingOwners runs the node's keep sweep right after each hand-off
// record is written, as the keep loop may.
type sweepingOwners struct {
	*memOwners
	sweep func()
}

func (o *sweepingOwners) HandOff(ctx context.Context, key, node string, state []byte, ttl time.Duration) error {
	err := o.memOwners.HandOff(ctx, key, node, state, ttl)
	if o.sweep != nil {
		o.sweep()
	}
	return err
}

// TestHandOffSweepSeesRecord: the keep loop's sweep runs just as a
// session's hand-off record replaces this node's ownership. It finds
// another value in the key, and must not take the session for a copy
// another node owns: closing it would send its backend a close and a
// session.closed webhook for a session that only moved.
func TestHandOffSweepSeesRecord(t *testing.T) {
	owners := &sweepingOwners{memOwners: &memOwners{m: map[string]string{}}}
	var logs testenv.Buffer
	a := startNodesWith(t, 1, owners, func(o *transport.Options, _ *Options) {
		o.HandOff = echoHandOff{}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})[0]
	for _, sid := range []string{"one", "two", "three"} {
		if code, body := post(t, a.srv.URL+"/echo/000/"+sid+"/xhr", "", nil); code != 200 || body != "o\n" {
			t.Fatalf("open %s: %d %q", sid, code, body)
		}
	}
	owners.sweep = func() { a.node.sweep(context.Background()) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 3 || r.Failed != 0 {
		t.Fatalf("hand-off: %+v", r)
	}
	if strings.Contains(logs.String(), "closing this copy") {
		t.Fatalf("the sweep closed handed-off sessions as copies:\n%s", logs.String())
	}
	for _, sid := range []string{"one", "two", "three"} {
		if got := owners.get("/echo/" + sid); !strings.HasPrefix(got, handOffMarker) {
			t.Errorf("%s: store %q, want its hand-off record", sid, got)
		}
	}
}
