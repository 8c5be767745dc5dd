package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pires/go-proxyproto"
)

func TestClientAddr(t *testing.T) {
	tp, err := parseTrustedProxies("127.0.0.1/32, 10.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		xff  []string
		real string
		want string // "" for none
	}{
		{nil, "", ""},
		{[]string{"203.0.113.9"}, "", "203.0.113.9"},
		// The client may write anything on the left: the rightmost entry
		// that is not a trusted proxy is the one the proxy saw.
		{[]string{"1.1.1.1, 198.51.100.7"}, "", "198.51.100.7"},
		{[]string{"1.1.1.1, 198.51.100.7, 10.1.2.3"}, "", "198.51.100.7"},
		{[]string{"1.1.1.1", "198.51.100.7, 127.0.0.1"}, "", "198.51.100.7"},
		{[]string{"[2001:db8::5]:443, 10.0.0.1"}, "", "2001:db8::5"},
		// Every entry a proxy: the leftmost reached is the client.
		{[]string{"10.0.0.2, 127.0.0.1"}, "", "10.0.0.2"},
		// Junk stops the walk at the last good entry.
		{[]string{"junk, 127.0.0.1"}, "", "127.0.0.1"},
		{[]string{"junk"}, "192.0.2.4", "192.0.2.4"},
		{nil, "192.0.2.4", "192.0.2.4"},
		{nil, "junk", ""},
	}
	for _, c := range cases {
		h := http.Header{}
		for _, v := range c.xff {
			h.Add("X-Forwarded-For", v)
		}
		if c.real != "" {
			h.Set("X-Real-IP", c.real)
		}
		a, ok := tp.clientAddr(h)
		got := ""
		if ok {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("XFF %q X-Real-IP %q: %q, want %q", c.xff, c.real, got, c.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/2"} {
		if _, err := parseConfig([]string{"-trusted-proxies", bad}); err == nil {
			t.Errorf("-trusted-proxies %q accepted", bad)
		}
	}
	t.Setenv("SOCKJSD_TRUSTED_PROXIES", "192.0.2.0/24")
	c, err := parseConfig(nil)
	if err != nil || len(c.trustedProxies()) != 1 || !c.trustedProxies().contains(netip.MustParseAddr("192.0.2.77")) {
		t.Errorf("SOCKJSD_TRUSTED_PROXIES: %v %v", c.trustedProxies(), err)
	}
}

// execFirst opens a session of the exec service at /exec through a
// connection that pre (nil: nothing) writes to first, with hdr, and
// returns the frame after the open frame, or the error of the handshake.
// The session stays open until the test ends.
func execFirst(t *testing.T, addr string, hdr http.Header, pre func(net.Conn) error) (string, error) {
	t.Helper()
	return execFirstOver(t, "ws", nil, addr, hdr, pre)
}

// execFirstOver is execFirst over scheme ws or wss (with tc): pre writes
// to the TCP connection before the TLS handshake.
func execFirstOver(t *testing.T, scheme string, tc *tls.Config, addr string, hdr http.Header, pre func(net.Conn) error) (string, error) {
	t.Helper()
	d := preDialer(tc, pre)
	ws, _, err := d.Dial(scheme+"://"+addr+"/exec/000/a/websocket", hdr)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { _ = ws.Close() })
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "o" {
		t.Fatalf("open frame %q %v", m, err)
	}
	_, m, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(m), nil
}

// preDialer dials websockets (over TLS with tc) through connections that
// pre (nil: nothing) writes to first: a PROXY header.
func preDialer(tc *tls.Config, pre func(net.Conn) error) *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: tc,
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err == nil && pre != nil {
				if err = pre(c); err != nil {
					c.Close()
				}
			}
			return c, err
		}}
}

// remoteAddrOf is the REMOTE_ADDR that printRemote prints in a session
// opened by execFirst.
func remoteAddrOf(t *testing.T, addr string, hdr http.Header, pre func(net.Conn) error) (string, error) {
	t.Helper()
	m, err := execFirst(t, addr, hdr, pre)
	if err != nil {
		return "", err
	}
	var lines []string
	if !strings.HasPrefix(m, "a") || json.Unmarshal([]byte(m[1:]), &lines) != nil || len(lines) != 1 {
		t.Fatalf("frame %q, want one line", m)
	}
	return strings.TrimSpace(lines[0]), nil
}

const printRemote = `sh -c 'echo "$REMOTE_ADDR"; exec cat'`

func proxyV1(src string) func(net.Conn) error {
	return func(c net.Conn) error {
		_, err := c.Write([]byte("PROXY TCP4 " + src + " 127.0.0.1 40000 8081\r\n"))
		return err
	}
}

func proxyV2(src string) func(net.Conn) error {
	return func(c net.Conn) error {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, c.RemoteAddr())
		_, err := h.WriteTo(c)
		return err
	}
}

// TestTrustedProxyAddress: from a peer in -trusted-proxies, the session's
// address (here the exec bridge's REMOTE_ADDR) is the client's, from
// X-Forwarded-For, X-Real-IP or a PROXY header v1 or v2. Before, it was
// always the peer's, 127.0.0.1.
func TestTrustedProxyAddress(t *testing.T) {
	_, addr := startServer(t, "-exec", printRemote, "-trusted-proxies", "127.0.0.0/8")
	for _, c := range []struct {
		name string
		hdr  http.Header
		pre  func(net.Conn) error
		want string
	}{
		{"no header", nil, nil, "127.0.0.1"},
		{"X-Forwarded-For", http.Header{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9"}}, nil, "203.0.113.9"},
		{"X-Real-IP", http.Header{"X-Real-Ip": {"203.0.113.10"}}, nil, "203.0.113.10"},
		{"PROXY v1", nil, proxyV1("192.0.2.1"), "192.0.2.1"},
		{"PROXY v2", nil, proxyV2("192.0.2.2"), "192.0.2.2"},
		// A proxy chain: haproxy with send-proxy behind another that set
		// X-Forwarded-For; the PROXY header's source is trusted too.
		{"PROXY v2 from a trusted proxy, then X-Forwarded-For", http.Header{"X-Forwarded-For": {"203.0.113.11"}}, proxyV2("127.0.0.9"), "203.0.113.11"},
	} {
		got, err := remoteAddrOf(t, addr, c.hdr, c.pre)
		if err != nil || got != c.want {
			t.Errorf("%s: REMOTE_ADDR %q %v, want %q", c.name, got, err, c.want)
		}
	}
}

// TestUntrustedProxyHeaders: from a peer outside -trusted-proxies,
// X-Forwarded-For and X-Real-IP are ignored and a PROXY header closes the
// connection. (Before: the headers were ignored from everyone, and a PROXY
// header was a malformed request, 400.)
func TestUntrustedProxyHeaders(t *testing.T) {
	_, addr := startServer(t, "-exec", printRemote, "-trusted-proxies", "192.0.2.0/24")
	for _, hdr := range []http.Header{
		{"X-Forwarded-For": {"203.0.113.9"}},
		{"X-Real-Ip": {"203.0.113.10"}},
	} {
		if got, err := remoteAddrOf(t, addr, hdr, nil); err != nil || got != "127.0.0.1" {
			t.Errorf("%v: REMOTE_ADDR %q %v, want the peer's 127.0.0.1", hdr, got, err)
		}
	}
	for name, pre := range map[string]func(net.Conn) error{"v1": proxyV1("192.0.2.1"), "v2": proxyV2("192.0.2.2")} {
		if got, err := remoteAddrOf(t, addr, nil, pre); err == nil {
			t.Errorf("PROXY %s from an untrusted peer: session opened with REMOTE_ADDR %q", name, got)
		}
	}
}

// TestExecPerAddressBehindProxy: -exec-max-per-address 1 behind a trusted
// proxy counts each client on its own address: two clients of the proxy
// each get a program, a second session of the first is refused with 3015.
// Before: every client of the proxy was 127.0.0.1, and the second client
// was refused.
func TestExecPerAddressBehindProxy(t *testing.T) {
	srv, addr := startServer(t, "-exec", printRemote, "-exec-max-per-address", "1", "-trusted-proxies", "127.0.0.1")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.exec.shutdown(ctx)
	})
	from := func(a string) http.Header { return http.Header{"X-Forwarded-For": {a}} }
	for _, c := range []struct{ xff, want string }{
		{"203.0.113.1", `a["203.0.113.1"]`},
		{"203.0.113.2", `a["203.0.113.2"]`},
		{"203.0.113.1", `c[3015,"Too many programs for this address"]`},
	} {
		if m, err := execFirst(t, addr, from(c.xff), nil); err != nil || m != c.want {
			t.Errorf("X-Forwarded-For %s: %q %v, want %s", c.xff, m, err, c.want)
		}
	}
}

// TestGatewayRemoteBehindProxy: the gateway's connect carries the client's
// address from a trusted proxy's X-Forwarded-For in "remote". Before: the
// proxy's, 127.0.0.1.
func TestGatewayRemoteBehindProxy(t *testing.T) {
	remotes := make(chan string, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/connect") {
			var body struct{ Remote string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			remotes <- body.Remote
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(backend.Close)
	_, addr := startServer(t, "-proxy", "/chat="+backend.URL, "-proxy-secret", "gateway-test-secret", "-trusted-proxies", "127.0.0.1/32")
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/chat/000/a/websocket", http.Header{"X-Forwarded-For": {"203.0.113.5"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	select {
	case r := <-remotes:
		if r != "203.0.113.5" {
			t.Errorf("connect remote %q, want 203.0.113.5", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connect within 10s")
	}
}
