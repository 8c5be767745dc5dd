package transport_test

// Limits on what one client can make the server hold (issue 9): ids,
// request info kept per session, receive queue bytes, concurrent sends,
// body read time.

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
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
	before := heapAlloc()
	for i := 0; i < n; i++ {
		if r := do(t, "POST", base+"/000/"+newSID()+"/xhr?token=abc", "", "X-Junk", junk, "User-Agent", "ua"); r.code != 200 {
			t.Fatalf("session %d: %d", i, r.code)
		}
	}
	per := (int64(heapAlloc()) - int64(before)) / n
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
