package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// frameLog is a connection that records the frames a session writes.
type frameLog struct {
	mu    sync.Mutex
	msgs  []string
	close *engine.Frame
	wrote chan struct{}
	gone  chan struct{}
}

func (r *frameLog) WriteFrame(f *engine.Frame) (bool, error) {
	r.mu.Lock()
	r.msgs = append(r.msgs, f.Messages...)
	if f.Kind == engine.FrameClose {
		r.close = f
	}
	r.mu.Unlock()
	select {
	case r.wrote <- struct{}{}:
	default:
	}
	return false, nil
}

func (r *frameLog) Gone() <-chan struct{} { return r.gone }

// fuzzMarker is sent after the fuzzed messages: its answer is the last.
const fuzzMarker = `{"op":"unsubscribe","channel":"fuzz-marker"}`

// FuzzClientMessage: whatever a browser sends the hub (up to 8 messages,
// one a line), the hub answers each with JSON objects that have an op,
// never panics (a panic in the handler closes the session with 3000), and
// goes on answering: the marker sent after them is answered.
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"op":"subscribe","channel":"news"}`,
		`{"op":"subscribe","channel":"news","since":0,"epoch":"e"}` + "\n" + `{"op":"unsubscribe","channel":"news"}`,
		`{"op":"subscribe","channel":"chat.a"}` + "\n" + `{"op":"publish","channel":"chat.a","data":{"x":[1,2]}}`,
		`{"op":"publish","channel":"news","data":1}`,
		`{"op":"publish","channel":"chat.a"}`,
		`{"op":"rpc","method":"m","id":1,"data":null}`,
		`{"op":"refresh","token":"x.y.z"}`,
		`{"op":"pong","id":1}`, `{"op":"pong","id":"x"}`, `{"op":"pong","id":99999999999999999999}`,
		`{"op":"nope"}`, `{"op":""}`, `{}`, `[]`, `null`, `"op"`, `{"op":1}`, `{"op":"subscribe","channel":"` + strings.Repeat("a", 200) + `"}`,
		`{"op":"subscribe","channel":"bad channel"}`, `{"op":"subscribe","channel":"news","since":-1}`, `{"op":"subscribe","channel":"news","since":1e99}`,
		`{"op":"subscribe","op":"publish","channel":"chat.x","data":"dup keys"}`, "{\"op\":\"subscribe\",\"channel\":\"\xff\"}", ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		msgs := strings.SplitN(in, "\n", 8)
		mb := NewMemoryBroker(MemoryBrokerOptions{})
		defer mb.Close()
		h := New(Options{Broker: mb, Rules: Rules{Channels: []string{"*"}, BrowserPublish: []string{"chat.*"}}, Logger: slog.New(slog.DiscardHandler)})
		reg := engine.NewRegistry(engine.Options{}, 0)
		es, err := reg.Create(engine.WebSocket, engine.Request{Query: url.Values{}, RemoteAddr: "192.0.2.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		rec := &frameLog{wrote: make(chan struct{}, 1), gone: make(chan struct{})}
		served := make(chan struct{})
		go func() { es.Serve(rec); close(served) }()
		defer func() {
			es.CloseWith(1000, "done", engine.CauseServer)
			<-served
			es.End(engine.CauseServer)
		}()
		h.Serve((*session.Session)(es))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = es.Deliver(ctx, append(msgs, fuzzMarker))
		answered := func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.close != nil {
				t.Fatalf("session closed %d %q on %q", rec.close.Code, rec.close.Reason, in)
			}
			marked := false
			for _, m := range rec.msgs {
				var v struct{ Op string }
				if err := json.Unmarshal([]byte(m), &v); err != nil || v.Op == "" {
					t.Fatalf("answer %q to %q is not a JSON object with an op", m, in)
				}
				marked = marked || strings.Contains(m, `"fuzz-marker"`)
			}
			return marked
		}
		for !answered() {
			select {
			case <-rec.wrote:
			case <-ctx.Done():
				t.Fatalf("no answer to the marker after %q", in)
			}
		}
	})
}
