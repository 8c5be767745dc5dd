package cluster

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/hub"
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
