package transport_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/transport"
)

// TestStreamRollover: a streaming answer that reaches ResponseLimit ends,
// and the next one carries on where it stopped, every message once and in
// order, whether the answer was taken over from net/http (the default:
// chunks written straight to the connection, which closes after it) or
// left with net/http (NoHijack).
func TestStreamRollover(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		for _, ep := range []struct{ name, method, prefix string }{
			{"xhr_streaming", "POST", ""},
			{"eventsource", "GET", "data: "},
			{"htmlfile?c=cb", "GET", "<script>\np("},
		} {
			t.Run(fmt.Sprintf("%s/nohijack=%v", ep.name, noHijack), func(t *testing.T) {
				base := newSuiteServer(t, transport.Options{ResponseLimit: 2048, NoHijack: noHijack}) + "/echo"
				url := base + "/000/" + newSID()
				const total = 40
				msg := func(i int) string { return fmt.Sprintf("%03d%s", i, strings.Repeat("x", 125)) }
				next := 0
				for stream := 0; next < total; stream++ {
					if stream > total {
						t.Fatal("no progress across streams")
					}
					res, br := openStream(t, ep.method, url+"/"+ep.name)
					if res.Close == noHijack {
						t.Fatalf("Connection: close is %v with NoHijack %v", res.Close, noHijack)
					}
					if stream == 0 {
						frameLine(t, br, ep.prefix) // the open frame
						for i := 0; i < total; i++ {
							if r := do(t, "POST", url+"/xhr_send", `["`+msg(i)+`"]`); r.code != 204 {
								t.Fatalf("send %d: %d", i, r.code)
							}
						}
					}
					for next < total {
						f, ok := tryFrameLine(br, ep.prefix)
						if !ok {
							break // this answer reached its limit
						}
						for _, m := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(f, `a["`), `"]`), `","`) {
							if m != msg(next) {
								t.Fatalf("stream %d: got %.8q…, want message %d", stream, m, next)
							}
							next++
						}
					}
					res.Body.Close()
				}
			})
		}
	}
}

// frameLine reads up to the next frame and checks it is the open frame.
func frameLine(t *testing.T, br *bufio.Reader, prefix string) {
	t.Helper()
	if f, ok := tryFrameLine(br, prefix); !ok || f != "o" {
		t.Fatalf("first frame %q, want o", f)
	}
}

// tryFrameLine returns the next SockJS frame of a streaming body (after
// the transport's prefix, up to the end of its line), skipping preludes
// and heartbeats; false at the end of the answer.
func tryFrameLine(br *bufio.Reader, prefix string) (string, bool) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", false
		}
		line = strings.TrimRight(line, "\r\n")
		if prefix == "<script>\np(" {
			// htmlfile: the frame is a JS string on the line after
			// "<script>", p("...");
			if !strings.HasPrefix(line, "p(") {
				continue
			}
			s := strings.TrimSuffix(strings.TrimPrefix(line, "p("), ");")
			var f string
			if _, err := fmt.Sscanf(s, "%q", &f); err != nil {
				return "", false
			}
			if f == "h" {
				continue
			}
			return f, true
		}
		line = strings.TrimPrefix(line, prefix)
		if line == "" || line == "h" || strings.Trim(line, "h") == "" {
			continue
		}
		return line, true
	}
}

// openStream starts a streaming request and returns its answer.
func openStream(t *testing.T, method, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 {
		t.Fatalf("%s %s: %d", method, url, res.StatusCode)
	}
	return res, bufio.NewReader(res.Body)
}

// TestStreamEveryFrameEnds: with a limit every frame reaches, each
// streaming answer carries one frame and ends, and the client, closing
// its connection at once, reconnects 200 times: no message is lost and
// the session never takes the end of an answer for the client leaving
// (which would close it with 1002).
func TestStreamEveryFrameEnds(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("nohijack=%v", noHijack), func(t *testing.T) {
			base := newSuiteServer(t, transport.Options{ResponseLimit: 1, NoHijack: noHijack}) + "/echo"
			url := base + "/000/" + newSID()
			res, br := openStream(t, "POST", url+"/xhr_streaming")
			frameLine(t, br, "")
			if f, ok := tryFrameLine(br, ""); ok {
				t.Fatalf("after the open frame: %q, want the end of the answer", f)
			}
			res.Body.Close()
			for i := 0; i < 200; i++ {
				if r := do(t, "POST", url+"/xhr_send", fmt.Sprintf(`["%d"]`, i)); r.code != 204 {
					t.Fatalf("send %d: %d", i, r.code)
				}
				res, br := openStream(t, "POST", url+"/xhr_streaming")
				if f, ok := tryFrameLine(br, ""); !ok || f != fmt.Sprintf(`a["%d"]`, i) {
					t.Fatalf("answer %d: %q", i, f)
				}
				if f, ok := tryFrameLine(br, ""); ok {
					t.Fatalf("answer %d goes on: %q", i, f)
				}
				res.Body.Close()
			}
		})
	}
}
