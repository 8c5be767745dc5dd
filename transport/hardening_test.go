package transport_test

// Limits on what one client can make the server hold (issue 9): ids,
// request info kept per session, receive queue bytes, concurrent sends,
// body read time.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

func TestLongIDsAre404(t *testing.T) {
	base := serveOne(t, transport.Options{}, services.Echo)
	long := strings.Repeat("x", transport.DefaultMaxIDBytes+1)
	ok := strings.Repeat("x", transport.DefaultMaxIDBytes)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/000/" + long + "/xhr", 404},
		{"/" + long + "/" + newSID() + "/xhr", 404},
		{"/000/" + ok + "/xhr", 200},
		{"/" + ok + "/" + newSID() + "/xhr", 200},
	} {
		if r := do(t, "POST", base+tc.path, ""); r.code != tc.code {
			t.Errorf("POST %s: %d, want %d", tc.path[:20], r.code, tc.code)
		}
	}
	if r := do(t, "GET", base+"/000/"+long+"/websocket", "", "Upgrade", "websocket", "Connection", "Upgrade"); r.code != 404 {
		t.Errorf("websocket with a long id: %d", r.code)
	}
}

// TestSessionKeepsOnlyAllowedRequestInfo: a 60 KB header the application
// did not ask for costs a session nothing; one it asked for is bounded.
func TestSessionKeepsOnlyAllowedRequestInfo(t *testing.T) {
	got := make(chan *session.Session, 1)
	base := serveOne(t, transport.Options{Session: session.Options{DisconnectDelay: time.Minute}}, func(s *session.Session) {
		select {
		case got <- s:
		default:
		}
		<-s.Context().Done()
	})
	junk := strings.Repeat("j", 60<<10)
	const n = 300
	before := testenv.HeapAfterGC()
	for i := 0; i < n; i++ {
		if r := do(t, "POST", base+"/000/"+newSID()+"/xhr?token=abc", "", "X-Junk", junk, "User-Agent", "ua"); r.code != 200 {
			t.Fatalf("session %d: %d", i, r.code)
		}
	}
	per := (int64(testenv.HeapAfterGC()) - int64(before)) / n
	t.Logf("heap per session with a 60 KB header: %d bytes", per)
	if per > 16<<10 {
		t.Fatalf("each session holds %d bytes: the 60 KB header is kept", per)
	}
	req := (<-got).Request()
	if req.Header.Get("X-Junk") != "" || req.Header.Get("User-Agent") != "ua" || req.Query.Get("token") != "abc" {
		t.Fatalf("request info: header %v query %v", req.Header, req.Query)
	}

	// Past the byte cap on what is kept: 431, over HTTP and websocket.
	for _, p := range []string{"/xhr", "/xhr_streaming"} {
		if r := do(t, "POST", base+"/000/"+newSID()+p, "", "Referer", junk); r.code != 431 {
			t.Fatalf("%s with a 60 KB Referer: %d %q", p, r.code, r.body)
		}
		if r := do(t, "POST", base+"/000/"+newSID()+p+"?token="+junk, ""); r.code != 431 {
			t.Fatalf("%s with a 60 KB query: %d", p, r.code)
		}
	}
	if r := do(t, "GET", base+"/000/"+newSID()+"/jsonp?c=x&t="+junk, ""); r.code != 431 {
		t.Fatalf("jsonp with a 60 KB query: %d", r.code)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	_, res, err := d.Dial(wsURL(base)+"/000/"+newSID()+"/websocket", http.Header{"User-Agent": {junk}})
	if err == nil || res == nil || res.StatusCode != 431 {
		t.Fatalf("websocket with a 60 KB User-Agent must get 431: %v", err)
	}
}

// stuck is an application that never reads.
func stuck(s *session.Session) { <-s.Context().Done() }

// TestConcurrentSendsPerSessionBounded: sends waiting for an application
// that does not read are bounded per session; the others get 429.
func TestConcurrentSendsPerSessionBounded(t *testing.T) {
	base := serveOne(t, transport.Options{MaxConcurrentSends: 2, Session: session.Options{RecvQueueMessages: 1}}, stuck)
	url := base + "/000/" + newSID()
	do(t, "POST", url+"/xhr", "")
	if r := do(t, "POST", url+"/xhr_send", `["fills the queue"]`); r.code != 204 {
		t.Fatalf("first send: %d", r.code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 6
	codes := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", url+"/xhr_send", strings.NewReader(`["waits"]`))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return // cancelled at the end
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	for i := 0; i < n-2; i++ {
		select {
		case c := <-codes:
			if c != http.StatusTooManyRequests {
				t.Fatalf("send past the limit: %d, want 429", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d sends past the limit were refused", i, n-2)
		}
	}
}

// TestDecodePeakBounded: concurrent 1 MiB bodies of tiny strings cost
// about their own size while they are decoded, not several times it.
func TestDecodePeakBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measures heap under load; skipped under -short")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	drain := func(s *session.Session) {
		for {
			if _, err := s.Recv(context.Background()); err != nil {
				return
			}
		}
	}
	base := serveOne(t, transport.Options{}, drain)
	body := "[" + strings.Repeat(`"a",`, (1<<20)/4-2) + `"a"]`
	const n = 24
	urls := make([]string, n)
	for i := range urls {
		urls[i] = base + "/000/" + newSID()
		do(t, "POST", urls[i]+"/xhr", "")
	}
	before := testenv.HeapAfterGC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Post(u+"/xhr_send", "text/plain", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != 204 {
				t.Errorf("send: %d", res.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(before)
	t.Logf("peak heap growth for %d concurrent 1 MiB bodies of tiny strings: %d MiB", n, growth>>20)
	// The bodies themselves (n MiB on each side of the loopback) plus
	// some; decoding all at once into []string takes 5 times more.
	if growth > 4*n<<20 {
		t.Fatalf("peak heap growth %d MiB for %d MiB of bodies", growth>>20, n)
	}
}

// TestWebSocketBackPressureInBytes: a websocket client whose application
// does not read can put about RecvQueueBytes in the server, then the
// server stops reading and the client's writes block.
func TestWebSocketBackPressureInBytes(t *testing.T) {
	base := serveOne(t, transport.Options{}, stuck)
	c := dialWS(t, wsURL(base)+"/000/"+newSID()+"/websocket")
	wsRead(t, c)
	msg := `["` + strings.Repeat("x", 1000<<10) + `"]`
	written := 0
	for written < 128<<20 {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			break // blocked: the server stopped reading
		}
		written += len(msg)
	}
	t.Logf("written before the server stopped reading: %d MiB", written>>20)
	// 1 MiB queued, one message being delivered, socket buffers.
	if written > 24<<20 {
		t.Fatalf("the server read %d MiB for an application that reads nothing", written>>20)
	}
}

// slowSend opens a raw connection and starts an xhr_send whose body of
// length n never finishes arriving (one byte is sent). It returns the
// connection's reader for the answer.
func slowSend(t *testing.T, base, sid string, n int) (net.Conn, *bufio.Reader) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s/000/%s/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[", u.Path, sid, n)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// TestSlowBodyIsCut: a body that does not arrive within BodyReadTimeout
// gets 408 and its connection is closed.
func TestSlowBodyIsCut(t *testing.T) {
	base := serveOne(t, transport.Options{BodyReadTimeout: 300 * time.Millisecond}, services.Echo)
	sid := newSID()
	do(t, "POST", base+"/000/"+sid+"/xhr", "")
	start := time.Now()
	_, br := slowSend(t, base, sid, 100)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("slow body got no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: %d, want 408", res.StatusCode)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection of a cut body must be closed")
	}
	t.Logf("cut after %v", time.Since(start))
	// The session is fine.
	if r := do(t, "POST", base+"/000/"+sid+"/xhr_send", `["ok"]`); r.code != 204 {
		t.Fatalf("send after the cut: %d", r.code)
	}
	if r := do(t, "POST", base+"/000/"+sid+"/xhr", ""); r.body != "a[\"ok\"]\n" {
		t.Fatalf("poll after the cut: %q", r.body)
	}
}

// TestBodyBudget: while bodies hold the service's body budget (here one
// waiting for an application that does not read), another body waits no
// longer than BodyReadTimeout and gets 503.
func TestBodyBudget(t *testing.T) {
	budget := transport.NewBodyBudget(100)
	base := serveOne(t, transport.Options{BodyReadTimeout: 300 * time.Millisecond, BodyBudget: budget,
		Session: session.Options{RecvQueueMessages: 1}}, stuck)
	a, b := base+"/000/"+newSID(), base+"/000/"+newSID()
	do(t, "POST", a+"/xhr", "")
	do(t, "POST", b+"/xhr", "")
	do(t, "POST", a+"/xhr_send", `["fills the queue"]`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", a+"/xhr_send", strings.NewReader(`["`+strings.Repeat("w", 56)+`"]`))
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for budget.InUse() != 60 {
		if time.Now().After(deadline) {
			t.Fatalf("the waiting body holds %d bytes of budget, want 60", budget.InUse())
		}
		runtime.Gosched()
	}
	if r := do(t, "POST", b+"/xhr_send", `["`+strings.Repeat("x", 50)+`"]`); r.code != 503 {
		t.Fatalf("send past the budget: %d %q", r.code, r.body)
	}
	if r := do(t, "POST", b+"/xhr_send", `["fits"]`); r.code != 204 {
		t.Fatalf("send within the budget: %d %q", r.code, r.body)
	}
}
