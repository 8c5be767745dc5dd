package cluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClusterRealAddress: deploy/haproxy.cfg (option forwardfor) in front
// of three nodes with -trusted-proxies 127.0.0.1/32, as `make cluster`
// runs them. A client on 127.0.0.7 that writes its own X-Forwarded-For
// opens exec sessions over xhr-polling through the balancer: the program's
// REMOTE_ADDR is 127.0.0.7 (the entry haproxy appended), whichever node
// owns the session, and the polls that land on another node are forwarded
// to the owner with that address. Before: 127.0.0.1, haproxy's address,
// for every client.
func TestClusterRealAddress(t *testing.T) {
	env := startCluster(t, "-trusted-proxies", "127.0.0.1/32", "-exec", `sh -c 'echo "$REMOTE_ADDR"; exec cat'`)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}, Timeout: 5 * time.Second}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext,
		// A new connection each request: haproxy's round robin then
		// sends the polls of one session to every node.
		DisableKeepAlives: true,
	}}
	post := func(url string) string {
		t.Helper()
		req, err := http.NewRequest("POST", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", url, res.StatusCode, b)
		}
		return string(b)
	}
	for i := range 6 {
		u := fmt.Sprintf("%s/exec/000/addr-%d-%d/xhr", env.lb, i, time.Now().UnixNano())
		if got := post(u); got != "o\n" {
			t.Fatalf("session %d: open %q", i, got)
		}
		got := post(u)
		for n := 0; n < 3 && strings.TrimSpace(got) == "h"; n++ { // a heartbeat first on a slow machine
			got = post(u)
		}
		if got != `a["127.0.0.7"]`+"\n" {
			t.Errorf("session %d: %q, want the client's address 127.0.0.7", i, got)
		}
	}
}
