package adversarial

import (
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// TestJSONPCallbackInjection: a callback that is not a plain JavaScript
// name never reaches a response; a good one is prefixed with /**/.
func TestJSONPCallbackInjection(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{})
	p := srv.Probe(t)
	for _, cb := range []string{"alert(1)//", "<script>", `a"b`, "a b", "x;alert(1)", "a\u2028b", strings.Repeat("a", 300), ""} {
		for _, ep := range []string{"jsonp", "htmlfile"} {
			r := srv.MustDo(t, "GET", "/echo/000/"+sid()+"/"+ep+"?c="+url.QueryEscape(cb), "")
			if r.Code != 500 || strings.Contains(r.Body, cb) && cb != "" {
				t.Errorf("%s callback %q: %d %q", ep, cb, r.Code, r.Body)
			}
		}
	}
	r := srv.MustDo(t, "GET", "/echo/000/"+sid()+"/jsonp?c=cb.x_1", "")
	if r.Code != 200 || !strings.HasPrefix(r.Body, `/**/cb.x_1("o");`) || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("good callback: %d %q %v", r.Code, r.Body, r.Header)
	}
	p.Check(t)
}

// TestBadIDsAndMethods: malformed session URLs are 404, wrong methods 405,
// and over-long ids count as id-length limit hits.
func TestBadIDsAndMethods(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{})
	p := srv.Probe(t)
	long := strings.Repeat("x", 65)
	ok64 := strings.Repeat("y", 64)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/echo/000/a.b/xhr", 404},
		{"POST", "/echo/0.0/abc/xhr", 404},
		{"POST", "/echo//abc/xhr", 404},
		{"POST", "/echo/000//xhr", 404},
		{"POST", "/echo/000/abc/xhr/extra", 404},
		{"POST", "/echo/000/abc/nope", 404},
		{"POST", "/echo/000/" + long + "/xhr", 404},
		{"POST", "/echo/" + long + "/abc/xhr", 404},
		{"POST", "/echo/000/" + long + "/xhr_send", 404},
		{"POST", "/echo/000/" + ok64 + "/xhr", 200},
		{"POST", "/echo/000/unknown-session/xhr_send", 404},
		{"PUT", "/echo/000/abc/xhr", 405},
		{"DELETE", "/echo/000/abc/xhr_send", 405},
		{"GET", "/echo/000/abc/xhr_send", 405},
		{"POST", "/echo/000/abc/jsonp", 405},
		{"POST", "/echo/info", 405},
		{"GET", "/echo/000/abc/websocket", 400},
		{"GET", "/echo/000/" + long + "/websocket", 404},
	} {
		if r := srv.MustDo(t, tc.method, tc.path, ""); r.Code != tc.code {
			t.Errorf("%s %.60s: %d, want %d", tc.method, tc.path, r.Code, tc.code)
		}
	}
	if n := srv.Metric(t, "sockjs_limit_hits_total", "limit", "id-length"); n != 4 {
		t.Errorf("id-length limit hits: %v, want 4", n)
	}
	p.Check(t)
}

// TestConcurrentMegabyteSends: 200 concurrent 1 MiB sends to one session
// whose client never polls: at most -max-concurrent-sends are held at a
// time (the rest get 429), the echo application's send queue overflows
// and closes the session with 3009, and memory stays bounded.
func TestConcurrentMegabyteSends(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_DISCONNECT_DELAY": "2m"}})
	p := srv.Probe(t)
	path := openXHR(t, srv, "/echo")
	base := srv.RSS(t)
	body := `["` + strings.Repeat("m", 1<<20-16) + `"]`
	var ok, tooMany, reset, other atomic.Int32
	parallel(200, 200, func(int) {
		r, err := srv.Do("POST", path+"/xhr_send", strings.NewReader(body))
		switch {
		case err != nil:
			// Refused before the body was read: the server closes
			// rather than read 1 MiB it will not use, and the client,
			// still writing, may see the reset before the 429.
			reset.Add(1)
		case r.Code == 204:
			ok.Add(1)
		case r.Code == 429:
			tooMany.Add(1)
		default:
			other.Add(1)
			t.Logf("send: %d %q", r.Code, r.Body)
		}
	})
	t.Logf("200 concurrent 1 MiB sends: %d accepted, %d refused with 429, %d reset while sending", ok.Load(), tooMany.Load(), reset.Load())
	if other.Load() != 0 || ok.Load() == 0 {
		t.Errorf("sends: %d accepted, %d 429, %d other", ok.Load(), tooMany.Load(), other.Load())
	}
	if ok.Load() > 4 {
		if r := srv.MustDo(t, "POST", path+"/xhr", ""); !strings.HasPrefix(r.Body, "a[") && r.Body != "c[3009,\"Send queue overflow\"]\n" {
			t.Errorf("poll after the sends: %.80q", r.Body)
		}
	}
	srv.AssertGrowth(t, base, 200<<20)
	p.Check(t)
}

// TestManyTinyStringBodies: 200 concurrent 1 MiB bodies of one-character
// strings, each to its own session, cost about the body budget while
// they are decoded, not several times their size.
func TestManyTinyStringBodies(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_DISCONNECT_DELAY": "2m"}})
	p := srv.Probe(t)
	paths := make([]string, 200)
	for i := range paths {
		paths[i] = openXHR(t, srv, "/echo")
	}
	base := srv.RSS(t)
	body := "[" + strings.Repeat(`"a",`, 1<<18-2) + `"a"]`
	var ok, busy, other atomic.Int32
	parallel(200, 200, func(i int) {
		r, err := srv.Do("POST", paths[i]+"/xhr_send", strings.NewReader(body))
		switch {
		case err != nil:
			other.Add(1)
		case r.Code == 204:
			ok.Add(1)
		case r.Code == 503 || r.Code == 408:
			// Waited for the budget and read the body for longer than
			// -body-read-timeout (on a loaded machine): a clear refusal.
			busy.Add(1)
		default:
			other.Add(1)
			t.Logf("send: %d %q", r.Code, r.Body)
		}
	})
	t.Logf("200 tiny-string bodies: %d accepted, %d busy (503 or 408)", ok.Load(), busy.Load())
	if other.Load() != 0 || ok.Load() == 0 {
		t.Errorf("sends: %d accepted, %d 503 or 408, %d other", ok.Load(), busy.Load(), other.Load())
	}
	// The body budget (64 MiB) and the echo application's send queues
	// (16,384 messages each, about 400 KB), then the garbage collector's
	// headroom.
	srv.AssertGrowth(t, base, 320<<20)
	p.Check(t)
}
