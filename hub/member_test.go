package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// startOther serves /other, a service that is not the hub: its client
// asks, with "sub CH" and "unsub CH", and the handler subscribes its
// session through Attach, answering "ok" or "err <message>" after the
// hub's own frames.
func startOther(t *testing.T, opts hub.Options) (string, *hub.Hub) {
	t.Helper()
	h := hub.New(opts)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/other", transport.Options{}, func(s *session.Session) {
		m := h.Attach(s)
		if h.Attach(s) != m {
			panic("Attach gave two Members for one session")
		}
		s.OnMessage(func(msg string) {
			verb, ch, _ := strings.Cut(msg, " ")
			var err error
			switch verb {
			case "sub":
				err = m.Subscribe(s.Context(), ch)
			case "unsub":
				err = m.Unsubscribe(ch)
			case "channels":
				_ = s.Send("channels " + strings.Join(m.Channels(), ","))
				return
			}
			if err != nil {
				_ = s.Send("err " + err.Error())
				return
			}
			_ = s.Send("ok")
		})
	}))
	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL, h
}

// TestAttach: a session of another service gets the hub's subscribed,
// message and unsubscribed frames, the same bytes a /hub client gets.
func TestAttach(t *testing.T) {
	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			url, h := startOther(t, hub.Options{Rules: defaultRules, PingInterval: 50 * time.Millisecond})
			c := dialHub(t, url+"/other", tr)
			peer := dialHub(t, url+"/hub", client.WebSocket) // a /hub client on the same channel
			peer.send(`{"op":"subscribe","channel":"news"}`)
			peer.expect("subscribed")

			c.send("sub news")
			if got := c.raw(); !strings.HasPrefix(got, `{"op":"subscribed","channel":"news","seq":0,"epoch":"`) {
				t.Fatalf("got %s", got)
			}
			if got := c.raw(); got != "ok" {
				t.Fatalf("got %s", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i, data := range []string{`{"a":1}`, `"b"`} {
				if _, err := h.Publish(ctx, "news", json.RawMessage(data)); err != nil {
					t.Fatal(err)
				}
				want := hub.EncodeMessage("news", uint64(i+1), json.RawMessage(data))
				if got := c.raw(); got != want { // no pings: the hub sends none to a Member
					t.Fatalf("got %s, want %s", got, want)
				}
				peer.expect("message", "seq", jsonNum(i+1))
			}
			c.send("sub news") // again: subscribed with where it stands
			if got := c.raw(); !strings.HasPrefix(got, `{"op":"subscribed","channel":"news","seq":2,`) {
				t.Fatalf("got %s", got)
			}
			c.raw()
			c.send("sub chat.x")
			c.raw()
			c.raw()
			c.send("channels")
			if got := c.raw(); got != "channels chat.x,news" {
				t.Fatalf("got %s", got)
			}
			c.send("unsub news")
			if got := c.raw(); got != `{"op":"unsubscribed","channel":"news"}` {
				t.Fatalf("got %s", got)
			}
			c.raw()
			if _, err := h.Publish(ctx, "news", json.RawMessage(`3`)); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Publish(ctx, "chat.x", json.RawMessage(`4`)); err != nil {
				t.Fatal(err)
			}
			if got, want := c.raw(), hub.EncodeMessage("chat.x", 1, json.RawMessage(`4`)); got != want {
				t.Fatalf("got %s, want %s (and nothing from news)", got, want)
			}
			// Its session's end releases its subscriptions.
			waitRefs(t, h, "chat.x", func(n int) bool { return n == 1 })
			c.c.Close()
			waitRefs(t, h, "chat.x", func(n int) bool { return n == 0 })
			waitRefs(t, h, "news", func(n int) bool { return n == 1 }) // the peer's
		})
	}
}

// TestAttachRefusals: a Member's subscribes count against the hub's
// limits and rules, and its errors are returned, not sent.
func TestAttachRefusals(t *testing.T) {
	obs := &countingObserver{rttObserver: rttObserver{rtts: map[session.Transport]int{}}, refused: map[string]int{}}
	url, _ := startOther(t, hub.Options{Rules: defaultRules, PingInterval: time.Hour, MaxSubscriptions: 2,
		MaxSubscriptionsPerAddress: 3, MaxChannels: 2, Observer: obs})
	a := dialHub(t, url+"/other", client.WebSocket)
	b := dialHub(t, url+"/other", client.XHRPolling)
	steps := []struct {
		c    *hubConn
		send string
		want []string // what the client gets, prefixes
	}{
		{a, "sub nope", []string{"err " + hub.ErrUnknownChannel.Error()}},
		{a, "sub bad name", []string{"err " + hub.ErrUnknownChannel.Error()}},
		{a, "unsub news", []string{"err " + hub.ErrNotSubscribed.Error()}},
		{a, "sub chat.1", []string{`{"op":"subscribed","channel":"chat.1"`, "ok"}},
		{a, "sub chat.2", []string{`{"op":"subscribed","channel":"chat.2"`, "ok"}},
		{a, "sub chat.3", []string{"err " + hub.ErrSessionLimit.Error()}},
		{b, "sub chat.3", []string{"err " + hub.ErrTooManyChannels.Error()}},
		{b, "sub chat.2", []string{`{"op":"subscribed","channel":"chat.2"`, "ok"}},
		{b, "sub chat.1", []string{"err " + hub.ErrAddressLimit.Error()}},
		{a, "unsub chat.1", []string{`{"op":"unsubscribed","channel":"chat.1"}`, "ok"}},
		{b, "sub chat.1", []string{`{"op":"subscribed","channel":"chat.1"`, "ok"}},
	}
	for i, st := range steps {
		st.c.send(st.send)
		for _, w := range st.want {
			if got := st.c.raw(); !strings.HasPrefix(got, w) {
				t.Fatalf("step %d (%s): got %s, want %s…", i, st.send, got, w)
			}
		}
	}
	if obs.count(hub.RefusedSessionLimit) != 1 || obs.count(hub.RefusedAddressLimit) != 1 || obs.count(hub.RefusedChannelLimit) != 1 {
		t.Fatalf("refusals %v", obs.refused)
	}
}

// TestAttachEndedSession: a Member whose session ended subscribes to
// nothing.
func TestAttachEndedSession(t *testing.T) {
	h := hub.New(hub.Options{Rules: defaultRules})
	got := make(chan error, 2)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/other", transport.Options{}, func(s *session.Session) {
		m := h.Attach(s)
		_ = s.Close(3000, "bye")
		<-s.Context().Done()
		got <- m.Subscribe(context.Background(), "news")
		got <- m.Unsubscribe("news")
	}))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	c := dialHub(t, srv.URL+"/other", client.WebSocket)
	_ = c
	for range 2 {
		select {
		case err := <-got:
			if !errors.Is(err, session.ErrClosed) {
				t.Fatalf("got %v, want session.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
		}
	}
	waitRefs(t, h, "news", func(n int) bool { return n == 0 })
}
