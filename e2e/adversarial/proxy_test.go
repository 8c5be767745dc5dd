package adversarial

import (
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/pires/go-proxyproto"
)

// Behind a proxy: 15 clients behind one address (the balancer's), 100 hub
// channels each. Before -trusted-proxies every client had the proxy's
// address, and the per-address limit (1,000 by default) applied to all of
// them together: 1,000 accepted and 500 refused. Now each client is counted
// on its own address when the proxy is trusted, and a client that is not a
// trusted proxy cannot pick its address with a header.

const behind, channelsEach = 15, 100

// subscribeEach subscribes 15 clients (dial) to 100 channels each.
func subscribeEach(t *testing.T, tag string, dial func(i int) (*hubWS, error)) (subscribed, addrLimited int64) {
	t.Helper()
	ok, limited, other, first := subscribeFlood(t, behind, behind, channelsEach, tag, dial)
	if other != 0 {
		t.Errorf("%s: %d other answers, first %v", tag, other, first)
	}
	t.Logf("%s: %d clients × %d channels: %d subscribed, %d refused by the address limit", tag, behind, channelsEach, ok, limited)
	return ok, limited
}

func xff(i int) http.Header {
	return http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i+1)}}
}

func proxyV1(src string) func(net.Conn) error {
	return func(c net.Conn) error {
		_, err := fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 8090\r\n", src)
		return err
	}
}

func proxyV2(src string) func(net.Conn) error {
	return func(c net.Conn) error {
		_, err := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, c.RemoteAddr()).WriteTo(c)
		return err
	}
}

// TestHubBehindProxy: with -trusted-proxies 127.0.0.1/32, 15 clients
// behind the trusted 127.0.0.1, each named by X-Forwarded-For, and 15 more
// each named by a PROXY header (v1 and v2), get all their 1,500
// subscriptions; 15 clients from the untrusted 127.0.0.2, each claiming
// another address in X-Forwarded-For, share the limit of 127.0.0.2: 1,000
// subscribed, 500 refused; a PROXY header from 127.0.0.2 closes the
// connection. Before (and still without the flag): 1,000 subscribed and
// 500 refused for the 15 clients of the proxy.
func TestHubBehindProxy(t *testing.T) {
	t.Parallel()
	t.Run("without -trusted-proxies", func(t *testing.T) {
		t.Parallel()
		srv := Start(t, Config{})
		ok, limited := subscribeEach(t, "xff", func(i int) (*hubWS, error) { return srv.dialHubWS(t, "127.0.0.1", "", xff(i), nil) })
		if ok != 1000 || limited != behind*channelsEach-1000 {
			t.Errorf("%d subscribed, %d refused; want the proxy's address to take 1,000 and refuse 500", ok, limited)
		}
	})
	t.Run("with -trusted-proxies", func(t *testing.T) {
		t.Parallel()
		srv := Start(t, Config{Env: map[string]string{"SOCKJSD_TRUSTED_PROXIES": "127.0.0.1/32"}})
		p := srv.Probe(t)
		if ok, limited := subscribeEach(t, "xff", func(i int) (*hubWS, error) { return srv.dialHubWS(t, "127.0.0.1", "", xff(i), nil) }); ok != behind*channelsEach || limited != 0 {
			t.Errorf("X-Forwarded-For from the trusted proxy: %d subscribed, %d refused; want every one subscribed", ok, limited)
		}
		if ok, limited := subscribeEach(t, "proxy", func(i int) (*hubWS, error) {
			src := fmt.Sprintf("198.51.100.%d", i+1)
			pre := proxyV1(src)
			if i%2 == 1 {
				pre = proxyV2(src)
			}
			return srv.dialHubWS(t, "127.0.0.1", "", nil, pre)
		}); ok != behind*channelsEach || limited != 0 {
			t.Errorf("PROXY v1/v2 from the trusted proxy: %d subscribed, %d refused; want every one subscribed", ok, limited)
		}
		if ok, limited := subscribeEach(t, "spoof", func(i int) (*hubWS, error) { return srv.dialHubWS(t, "127.0.0.2", "", xff(i), nil) }); ok != 1000 || limited != behind*channelsEach-1000 {
			t.Errorf("X-Forwarded-For from the untrusted 127.0.0.2: %d subscribed, %d refused; want 1,000 and 500 (one address)", ok, limited)
		}
		if v := srv.Metric(t, "sockjs_hub_refused_total", "reason", "address_limit"); v != behind*channelsEach-1000 {
			t.Errorf("address_limit refusals counted: %v, want %d", v, behind*channelsEach-1000)
		}
		for name, pre := range map[string]func(net.Conn) error{"v1": proxyV1("198.51.100.200"), "v2": proxyV2("198.51.100.201")} {
			if _, err := srv.dialHubWS(t, "127.0.0.2", "", nil, pre); err == nil {
				t.Errorf("PROXY %s from the untrusted 127.0.0.2: a session opened", name)
			}
		}
		p.Check(t)
	})
}
