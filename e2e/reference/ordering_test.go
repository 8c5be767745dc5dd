package reference

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// countingTransport counts requests by path suffix: poll cycles and
// streaming rollovers.
type countingTransport struct {
	receives, sends atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/xhr_send"):
		c.sends.Add(1)
	case strings.HasSuffix(r.URL.Path, "/xhr"), strings.HasSuffix(r.URL.Path, "/xhr_streaming"):
		c.receives.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestOrdering: 10,000 numbered messages each way, 16 in flight, over
// websocket, xhr-streaming (4 KiB response limit: hundreds of rollovers)
// and xhr-polling, arrive complete, in order, exactly once.
func TestOrdering(t *testing.T) {
	const n = 10000
	type verdict struct {
		got int
		err error
	}
	verdicts := make(chan verdict, 3)
	// The service checks what the client sends and answers each message
	// with its own numbered one. The client keeps a window of messages in
	// flight, so the exchange takes many poll cycles and streaming
	// rollovers instead of one big batch.
	app := func(s *session.Session) {
		ctx, cancel := context.WithTimeout(s.Context(), 2*time.Minute)
		defer cancel()
		for i := 0; i < n; i++ {
			m, err := s.Recv(ctx)
			if err != nil {
				verdicts <- verdict{i, err}
				return
			}
			if want := "c-" + strconv.Itoa(i); m != want {
				verdicts <- verdict{i, fmt.Errorf("server got %q, want %q", m, want)}
				return
			}
			if err := s.Send("s-" + strconv.Itoa(i)); err != nil {
				verdicts <- verdict{i, err}
				return
			}
		}
		verdicts <- verdict{n, nil}
		<-s.Context().Done() // keep the session until the client closes it
	}
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/ordered", transport.Options{ResponseLimit: 4096}, app))
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, tr := range []string{client.WebSocket, client.XHRStreaming, client.XHRPolling} {
		t.Run(tr, func(t *testing.T) {
			ct := &countingTransport{}
			start := time.Now()
			c, err := client.Dial(context.Background(), srv.URL+"/ordered", client.Options{
				Transports: []string{tr},
				HTTPClient: &http.Client{Transport: ct},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const window = 16
			inFlight := make(chan struct{}, window)
			sendErr := make(chan error, 1)
			go func() {
				for i := 0; i < n; i++ {
					inFlight <- struct{}{} // released by each answer
					if err := c.Send("c-" + strconv.Itoa(i)); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- nil
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for i := 0; i < n; i++ {
				m, err := c.Recv(ctx)
				if err != nil {
					code, reason, _ := c.CloseInfo()
					t.Fatalf("client: message %d: %v (close %d %q)", i, err, code, reason)
				}
				if want := "s-" + strconv.Itoa(i); m != want {
					t.Fatalf("client got %q, want %q (lost, duplicated or reordered)", m, want)
				}
				<-inFlight
			}
			if err := <-sendErr; err != nil {
				t.Fatal(err)
			}
			select {
			case v := <-verdicts:
				if v.err != nil || v.got != n {
					t.Fatalf("server side: %d in order, then %v", v.got, v.err)
				}
			case <-ctx.Done():
				t.Fatal("server did not receive every message in time")
			}
			d := time.Since(start)
			t.Logf("%-14s %d messages each way in %v: %.0f msgs/s; %d receiving requests (polls/rollovers), %d xhr_send requests",
				tr, n, d.Round(time.Millisecond), 2*n/d.Seconds(), ct.receives.Load(), ct.sends.Load())
		})
	}
}
