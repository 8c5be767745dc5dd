package cluster

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// TestClusterEndRelays: B relays a poll and a stream to A, the sessions'
// owner, and stops (its Shutdown ends the relays): A ends both answers
// normally, a heartbeat then the end, long before the poll's heartbeat
// delay, and both sessions go on on A (no close frame: a cut relay would
// have ended them with 1002).
func TestClusterEndRelays(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(*transport.Options, *Options) {})
	a, b := nodes[0], nodes[1]
	for _, sid := range []string{"poll", "stream"} {
		if code, body := post(t, a.srv.URL+"/echo/000/"+sid+"/xhr", "", nil); code != 200 || body != "o\n" {
			t.Fatalf("open %s on A: %d %q", sid, code, body)
		}
	}
	type answer struct {
		body string
		err  error
	}
	polled := make(chan answer, 1)
	go func() {
		res, err := http.Post(b.srv.URL+"/echo/000/poll/xhr", "text/plain", nil)
		if err != nil {
			polled <- answer{err: err}
			return
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		polled <- answer{string(body), err}
	}()
	// Bounded: a relay that is not ended would stream heartbeats for ever.
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, "POST", b.srv.URL+"/echo/000/stream/xhr_streaming", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if prelude, err := br.ReadString('\n'); err != nil || len(prelude) != 2049 {
		t.Fatalf("stream prelude: %d bytes, %v", len(prelude), err)
	}
	// Both relays are attached on A before B stops.
	deadline := time.Now().Add(10 * time.Second)
	for !a.engineSession("poll").Attached() || !a.engineSession("stream").Attached() {
		if time.Now().After(deadline) {
			t.Fatal("the relayed requests did not attach on A")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "h\n" {
		t.Fatalf("the relayed stream ended with %q, %v; want a heartbeat and a normal end", rest, err)
	}
	select {
	case p := <-polled:
		if p.err != nil || p.body != "h\n" {
			t.Fatalf("the relayed poll: %q, %v; want a heartbeat", p.body, p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relayed poll was not answered")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the relays ended %s after the shutdown began", took)
	}
	// The sessions go on on A.
	for _, sid := range []string{"poll", "stream"} {
		if code, _ := post(t, a.srv.URL+"/echo/000/"+sid+"/xhr_send", `["after"]`, nil); code != 204 {
			t.Fatalf("send to %s on A: %d", sid, code)
		}
		if code, body := post(t, a.srv.URL+"/echo/000/"+sid+"/xhr", "", nil); code != 200 || !strings.Contains(body, "after") {
			t.Fatalf("poll %s on A: %d %q", sid, code, body)
		}
	}
}
