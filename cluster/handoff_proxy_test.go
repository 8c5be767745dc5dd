package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/proxy"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
	"github.com/sockjsd/sockjsd/webhook"
)

// echoBackend is a proxied service's backend: it accepts every session as
// user u1 with meta {"n":1} and a welcome, and echoes each message as
// "echo:"+m. A message "slow" is answered only once hold is closed.
type echoBackend struct {
	srv      *httptest.Server
	channels string // the connect answer's channels, JSON
	hold     chan struct{}
	arrived  chan struct{} // closed when "slow" came

	mu       sync.Mutex
	session  string   // the opaque id of the last connect
	connects int      //
	closes   int      //
	got      []string // every message, in the order requests came
	bad      []string // requests without the user or meta
}

func newEchoBackend(t *testing.T) *echoBackend {
	b := &echoBackend{hold: make(chan struct{}), arrived: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *echoBackend) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Session  string          `json:"session"`
		User     string          `json:"user"`
		Meta     json.RawMessage `json:"meta"`
		Messages []string        `json:"messages"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	b.mu.Lock()
	switch r.URL.Path {
	case "/connect":
		b.connects++
		b.session = req.Session
		b.mu.Unlock()
		_, _ = io.WriteString(w, `{"user":"u1","meta":{"n":1},"messages":["welcome"],"channels":`+cmp.Or(b.channels, "[]")+`}`)
		return
	case "/close":
		b.closes++
		b.mu.Unlock()
		return
	}
	if req.User != "u1" || string(req.Meta) != `{"n":1}` {
		b.bad = append(b.bad, req.User+" "+string(req.Meta))
	}
	b.got = append(b.got, req.Messages...)
	b.mu.Unlock()
	ans := struct {
		Messages []string `json:"messages"`
	}{}
	for _, m := range req.Messages {
		if m == "slow" {
			close(b.arrived)
			select {
			case <-b.hold:
			case <-time.After(10 * time.Second): // bounded: the test fails on the missing echo
			}
		}
		ans.Messages = append(ans.Messages, "echo:"+m)
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func (b *echoBackend) counts() (connects, closes int, got, bad []string, session string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connects, b.closes, slices.Clone(b.got), slices.Clone(b.bad), b.session
}

// eventLog is a webhook queue that keeps the events.
type eventLog struct {
	mu  sync.Mutex
	evs []webhook.Event
}

func (l *eventLog) Enqueue(_ context.Context, e webhook.Event) error {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
	return nil
}

func (l *eventLog) types() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		out = append(out, e.Type)
	}
	return out
}

// exportSignal tells when Export starts, so that the backend can answer
// the request in flight only then.
type exportSignal struct {
	*proxy.HandOff
	started chan struct{}
}

func (e exportSignal) Export(s *session.Session) ([]byte, error) {
	close(e.started)
	return e.HandOff.Export(s)
}

// TestHandOffProxySession: a proxied session on xhr-polling moves from A
// to B while a message request is in flight and another message waits
// for it. Export waits for the answer, which B's first polls deliver; the
// waiting message goes to the backend from B. Every message reaches the
// backend once, in order, with the user and meta of the connect; every
// answer reaches the page once, in order; the backend sees one connect
// and no close, and the directory emits no event for the move. The
// server API asked on A reaches the session on B.
func TestHandOffProxySession(t *testing.T) {
	be := newEchoBackend(t)
	events := &eventLog{}
	dir := directory.NewMemory(directory.MemoryOptions{Events: events, OfflineDelay: -1})
	t.Cleanup(func() { _ = dir.Close() })
	exporting := make(chan struct{})
	nodes := startProxyNodes(t, be.srv.URL, dir, nil, func(ho *proxy.HandOff) transport.HandOff { return exportSignal{ho, exporting} })
	a, b := nodes[0], nodes[1]
	collect, send := pollingPage(t, "/px/000/abc")
	collect(a.url, 1) // the open frame's poll, then the welcome
	send(a.url, `["m1","m2"]`)
	collect(a.url, 3)
	send(a.url, `["slow"]`)
	select {
	case <-be.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend did not get slow")
	}
	send(a.url, `["m3"]`) // waits for slow's answer, on A
	done := make(chan transport.HandOffResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- a.h.HandOff(ctx)
	}()
	select {
	case <-exporting:
	case <-time.After(10 * time.Second):
		t.Fatal("Export did not start")
	}
	close(be.hold) // slow's answer comes while Export waits for it
	if r := <-done; r.HandedOff != 1 || r.Failed != 0 {
		t.Fatalf("hand-off: %+v", r)
	}
	collect(b.url, 5)
	send(b.url, `["m4"]`)
	collect(b.url, 6)

	_, _, _, _, id := be.counts()
	req, _ := http.NewRequest("POST", a.url+"/api/send", bytes.NewBufferString(`{"session":"`+id+`","data":"pushed"}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(ans), `"sessions":1`) {
		t.Fatalf("/api/send on A: %d %s", res.StatusCode, ans)
	}
	page := collect(b.url, 7)
	want := []string{"welcome", "echo:m1", "echo:m2", "echo:slow", "echo:m3", "echo:m4", "pushed"}
	if !slices.Equal(page, want) {
		t.Errorf("page got %q, want %q", page, want)
	}
	connects, closes, got, bad, _ := be.counts()
	if connects != 1 || closes != 0 || !slices.Equal(got, []string{"m1", "m2", "slow", "m3", "m4"}) || len(bad) > 0 {
		t.Errorf("backend: %d connects, %d closes, messages %q, without user or meta %q", connects, closes, got, bad)
	}
	if e, ok, _ := dir.Lookup(context.Background(), id); !ok || e.Node != b.url {
		t.Errorf("directory: %+v %v, want node B", e, ok)
	}
	if got := events.types(); !slices.Equal(got, []string{webhook.SessionOpened, webhook.UserOnline}) {
		t.Errorf("events: %q", got)
	}
}

type proxyNode struct {
	url string
	h   *transport.Handler
}

// startProxyNodes runs two nodes A and B serving /px from the backend at
// base, sharing an owners store and dir. attach, when set, makes each
// node's Options.Attach (a hub of its own); wrapA wraps A's hand-off.
func startProxyNodes(t *testing.T, base string, dir proxy.Directory, attach func() func(*session.Session) proxy.Subscriber, wrapA func(*proxy.HandOff) transport.HandOff) []proxyNode {
	t.Helper()
	owners := &memOwners{m: map[string]string{}}
	var nodes []proxyNode
	for i := range 2 {
		r := mux.NewRouter()
		r.SkipClean(true)
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		po := proxy.Options{Secret: []byte("backend secret"), Node: srv.URL, Directory: dir}
		if attach != nil {
			po.Attach = attach()
		}
		gw, err := proxy.New(po)
		if err != nil {
			t.Fatal(err)
		}
		serve, err := gw.Service("/px", base)
		if err != nil {
			t.Fatal(err)
		}
		ho, err := gw.HandOff("/px")
		if err != nil {
			t.Fatal(err)
		}
		var tho transport.HandOff = ho
		if i == 0 && wrapA != nil {
			tho = wrapA(ho)
		}
		node := mustNode(t, Options{Store: owners, Self: srv.URL, Secret: []byte("s3cret"), KeepInterval: 50 * time.Millisecond, CheckInterval: 10 * time.Millisecond})
		// Heartbeats every second bound each empty poll of collect.
		h := transport.New("/px", transport.Options{Cluster: node, HandOff: tho, Session: session.Options{HeartbeatDelay: time.Second}}, serve)
		gorillamux.Mount(r, h)
		proxy.NewAPI(gw, proxy.APIOptions{Key: "k", NodeSecret: []byte("s3cret")}).Mount(r, "/api")
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.Shutdown(ctx)
			_ = gw.Shutdown(ctx)
		})
		nodes = append(nodes, proxyNode{srv.URL, h})
	}
	return nodes
}

// pollingPage is an xhr-polling page of session sess: collect polls a
// node until the page got want messages in all (the first poll opens the
// session) and returns them; send posts a body of messages.
func pollingPage(t *testing.T, sess string) (collect func(base string, want int) []string, send func(base, body string)) {
	var page []string // every message the page got, in order
	collect = func(base string, want int) []string {
		t.Helper()
		for range 20 { // each poll ends with a message or a heartbeat (1s): bounded
			if len(page) >= want {
				return page
			}
			code, body := post(t, base+sess+"/xhr", "", nil)
			if code != 200 {
				t.Fatalf("poll on %s: %d %q", base, code, body)
			}
			if strings.HasPrefix(body, "a") {
				var ms []string
				if err := json.Unmarshal([]byte(body[1:]), &ms); err != nil {
					t.Fatalf("poll on %s: %q", base, body)
				}
				page = append(page, ms...)
			}
		}
		t.Fatalf("page got %q, want %d messages", page, want)
		return nil
	}
	send = func(base, body string) {
		t.Helper()
		if code, got := post(t, base+sess+"/xhr_send", body, nil); code != 204 {
			t.Fatalf("send %s on %s: %d %q", body, base, code, got)
		}
	}
	return collect, send
}

// TestHandOffProxyHubSession: a proxied session its backend subscribed to
// a hub channel moves from A to B. Message 3 was queued on A and not
// polled (it comes in the hand-off record), message 4 was published after
// A froze the session (it comes from the broker's history when B
// subscribes the session again): B's first polls have both, once, and no
// subscribed frame; the session then follows the channel on B. The
// backend sees one connect and no close.
func TestHandOffProxyHubSession(t *testing.T) {
	be := newEchoBackend(t)
	be.channels = `["news"]`
	broker := hub.NewMemoryBroker(hub.MemoryBrokerOptions{History: hub.HistoryOptions{Size: 100}})
	t.Cleanup(func() { _ = broker.Close() })
	attach := func() func(*session.Session) proxy.Subscriber {
		hb := hub.New(hub.Options{Broker: broker, Rules: hub.Rules{Channels: []string{"news"}}})
		return func(s *session.Session) proxy.Subscriber { return hb.Attach(s) }
	}
	nodes := startProxyNodes(t, be.srv.URL, nil, attach, nil)
	a, b := nodes[0], nodes[1]
	collect, _ := pollingPage(t, "/px/000/abc")
	publish := func(n int) {
		t.Helper()
		if _, err := broker.Publish(context.Background(), "news", json.RawMessage(strconv.Itoa(n))); err != nil {
			t.Fatal(err)
		}
	}
	msg := func(n int) string {
		return `{"op":"message","channel":"news","seq":` + strconv.Itoa(n) + `,"data":` + strconv.Itoa(n) + `}`
	}
	page := collect(a.url, 2) // subscribed, welcome
	if !strings.Contains(page[0], `"op":"subscribed"`) || page[1] != "welcome" {
		t.Fatalf("open on A: %q", page)
	}
	publish(1)
	publish(2)
	collect(a.url, 4)
	publish(3) // queued on A: no poll is waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 1 || r.Failed != 0 {
		t.Fatalf("hand-off: %+v", r)
	}
	publish(4) // after the freeze: from history
	collect(b.url, 6)
	publish(5)
	page = collect(b.url, 7)
	if want := []string{msg(1), msg(2), msg(3), msg(4), msg(5)}; !slices.Equal(page[2:], want) {
		t.Errorf("page got %q, want %q after subscribed and welcome", page[2:], want)
	}
	if connects, closes, _, _, _ := be.counts(); connects != 1 || closes != 0 {
		t.Errorf("backend: %d connects, %d closes", connects, closes)
	}
}
