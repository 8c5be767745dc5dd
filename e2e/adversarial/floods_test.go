package adversarial

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHeaderFlood: 2,000 xhr sessions and 2,000 websockets opened with a
// 60 KB header the application did not ask for cost what sessions without
// it cost; a 60 KB header it asked for (Referer, User-Agent) is refused
// with 431.
func TestHeaderFlood(t *testing.T) {
	t.Parallel()
	// 2,000 websockets held open from one address: past -max-connections-per-address.
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_DISCONNECT_DELAY": "2m", "SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": "0"}})
	p := srv.Probe(t)
	base := srv.RSS(t)
	junk := strings.Repeat("j", 60<<10)
	var xhrOK, wsOK atomic.Int32
	parallel(2000, 32, func(int) {
		r, err := srv.Do("POST", "/echo/000/"+sid()+"/xhr", nil, "X-Junk", junk)
		if err == nil && r.Code == 200 && r.Body == "o\n" {
			xhrOK.Add(1)
		}
	})
	parallel(2000, 32, func(int) {
		ws, _, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", http.Header{"X-Junk": {junk}})
		if err != nil {
			return
		}
		if _, m, err := ws.ReadMessage(); err == nil && string(m) == "o" {
			wsOK.Add(1)
		}
	})
	if xhrOK.Load() != 2000 || wsOK.Load() != 2000 {
		t.Errorf("sessions opened with a 60 KB header: %d of 2000 xhr, %d of 2000 websocket", xhrOK.Load(), wsOK.Load())
	}
	// 4,000 sessions of about 20 KB (websocket) and 2 KB (xhr) each.
	srv.AssertGrowth(t, base, 160<<20)
	if r := srv.MustDo(t, "POST", "/echo/000/"+sid()+"/xhr", "", "Referer", junk); r.Code != 431 {
		t.Errorf("60 KB Referer: %d, want 431", r.Code)
	}
	if _, res, err := srv.WS(t, "/echo/000/"+sid()+"/websocket", http.Header{"User-Agent": {junk}}); err == nil || res == nil || res.StatusCode != 431 {
		t.Errorf("websocket with a 60 KB User-Agent: %v, want 431", err)
	}
	if n := srv.Metric(t, "sockjs_limit_hits_total", "limit", "request-info"); n != 2 {
		t.Errorf("request-info limit hits: %v, want 2", n)
	}
	p.Check(t)
}

// TestSessionFloodFromOneAddress: past -max-sessions new sessions get 503
// and cost nothing; the sessions already open go on.
func TestSessionFloodFromOneAddress(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_MAX_SESSIONS": "3000", "SOCKJSD_DISCONNECT_DELAY": "2m"}})
	p := srv.Probe(t) // one of the 3,000
	base := srv.RSS(t)
	var opened, refused atomic.Int32
	parallel(4000, 32, func(int) {
		r, err := srv.Do("POST", "/echo/000/"+sid()+"/xhr", nil)
		switch {
		case err != nil:
		case r.Code == 200:
			opened.Add(1)
		case r.Code == 503 && r.Body == "Too many sessions":
			refused.Add(1)
		}
	})
	if opened.Load() != 2999 || refused.Load() != 1001 {
		t.Errorf("4,000 sessions with room for 2,999: %d opened, %d refused with 503", opened.Load(), refused.Load())
	}
	srv.AssertGrowth(t, base, 64<<20)
	if n := srv.Metric(t, "sockjs_limit_hits_total", "limit", "sessions"); n != 1001 {
		t.Errorf("sessions limit hits: %v, want 1001", n)
	}
	p.Check(t)
}

// TestSlowBodies: 1,100 connections trickling xhr_send bodies into a
// server limited to 1,024 open files are cut after -body-read-timeout
// with 408, and the server accepts connections again.
func TestSlowBodies(t *testing.T) {
	t.Parallel()
	// 1,100 connections from one address: past -max-connections-per-address.
	srv := Start(t, Config{NoFile: 1024, Env: map[string]string{"SOCKJSD_BODY_READ_TIMEOUT": "2s", "SOCKJSD_DISCONNECT_DELAY": "2m",
		"SOCKJSD_MAX_CONNECTIONS_PER_ADDRESS": "0"}})
	p := srv.Probe(t)
	path := openXHR(t, srv, "/echo")
	paths := make([]string, 300) // 4 sends in flight per session at most
	for i := range paths {
		paths[i] = openXHR(t, srv, "/echo")
	}
	base := srv.RSS(t)
	const n = 1100
	var cut, dialFailed atomic.Int32
	start := time.Now()
	parallel(n, n, func(i int) {
		c := srv.Raw(t)
		_ = c.SetDeadline(time.Now().Add(40 * time.Second))
		fmt.Fprintf(c, "POST %s/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[\"", paths[i%len(paths)])
		br := bufio.NewReader(c)
		code, err := rawAnswer(br)
		if err != nil {
			dialFailed.Add(1) // not accepted before the test's deadline
			return
		}
		if code == http.StatusRequestTimeout {
			if _, err := br.ReadByte(); err != nil { // and closed
				cut.Add(1)
			}
		}
		c.Close()
	})
	t.Logf("%d slow bodies cut with 408 in %v (%d not answered)", cut.Load(), time.Since(start).Round(time.Millisecond), dialFailed.Load())
	if cut.Load() != n {
		t.Errorf("slow bodies cut with 408 and closed: %d of %d", cut.Load(), n)
	}
	if r := srv.MustDo(t, "POST", path+"/xhr_send", `["after"]`); r.Code != 204 {
		t.Errorf("send after the flood: %d", r.Code)
	}
	srv.AssertGrowth(t, base, 64<<20)
	if v := srv.Metric(t, "sockjs_limit_hits_total", "limit", "body-read-timeout"); v != n {
		t.Errorf("body-read-timeout hits: %v, want %d", v, n)
	}
	p.Check(t)
}

// TestSlowHeaders: connections that never finish their headers are cut
// after -read-header-timeout (2s here, 10s by default).
func TestSlowHeaders(t *testing.T) {
	t.Parallel()
	srv := Start(t, Config{Env: map[string]string{"SOCKJSD_READ_HEADER_TIMEOUT": "2s"}})
	p := srv.Probe(t)
	base := srv.RSS(t)
	var cut atomic.Int32
	parallel(300, 300, func(int) {
		c := srv.Raw(t)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "POST /echo/000/%s/xhr_send HTTP/1.1\r\nHost: x\r\nX-Slow: ", sid())
		if _, err := io.Copy(io.Discard, c); err == nil { // EOF: the server closed
			cut.Add(1)
		}
	})
	if cut.Load() != 300 {
		t.Errorf("slow headers cut: %d of 300", cut.Load())
	}
	srv.AssertGrowth(t, base, 32<<20)
	p.Check(t)
}
