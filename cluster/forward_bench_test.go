package cluster

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

// BenchmarkForward is one xhr-polling echo round trip (an xhr_send, then
// the poll that gets the echo) on a session node A owns, sent to A itself
// (local) or to B, which forwards both requests to A (forwarded). The
// difference per op is what forwarding two requests costs, on both nodes
// together; allocs/op counts both nodes and the client.
func BenchmarkForward(b *testing.B) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(b, 2, owners, func(_ *transport.Options, c *Options) {
		c.KeepInterval, c.CheckInterval = time.Second, time.Second
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	do := func(url, body string) (int, string) {
		resp, err := client.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(got)
	}
	run := 0
	for _, bc := range []struct {
		name string
		via  *testNode
	}{{"local", nodes[0]}, {"forwarded", nodes[1]}} {
		b.Run(bc.name, func(b *testing.B) {
			run++ // a session of its own for each run (-count)
			sid := fmt.Sprintf("bench-%s-%d", bc.name, run)
			sess := nodes[0].srv.URL + "/echo/000/" + sid
			if code, body := do(sess+"/xhr", ""); code != 200 || body != "o\n" {
				b.Fatalf("open: %d %q", code, body)
			}
			via := bc.via.srv.URL + "/echo/000/" + sid
			b.ReportAllocs()
			for b.Loop() {
				if code, body := do(via+"/xhr_send", `["x"]`); code != 204 {
					b.Fatalf("send: %d %q", code, body)
				}
				if code, body := do(via+"/xhr", ""); code != 200 || body != "a[\"x\"]\n" {
					b.Fatalf("poll: %d %q", code, body)
				}
			}
		})
	}
}
