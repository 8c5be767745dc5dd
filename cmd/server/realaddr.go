package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// trustedProxies are the peers (-trusted-proxies) whose word on the
// client's address is taken: X-Forwarded-For, X-Real-IP and the PROXY
// protocol. From every other peer those are ignored (the headers) or
// refused (a PROXY header closes the connection), so a client cannot
// pick its own address and leave its per-address limits.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads "CIDR,CIDR,…"; a bare address is its own /32
// (or /128).
func parseTrustedProxies(v string) (trustedProxies, error) {
	var t trustedProxies
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			t = append(t, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		t = append(t, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return t, nil
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostAddr is the address of "host:port" or of a bare address.
func hostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// clientAddr is the client's address of a request whose peer is trusted:
// the rightmost X-Forwarded-For entry that is not itself a trusted proxy
// (entries to its left are the client's own word), else X-Real-IP, else
// nothing. When every entry is a trusted proxy, the leftmost one the walk
// reached (it stops at an entry that is not an address) is the client.
func (t trustedProxies) clientAddr(h http.Header) (netip.Addr, bool) {
	var last netip.Addr
	xff := h.Values("X-Forwarded-For")
walk:
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, ok := hostAddr(parts[j])
			if !ok {
				break walk // junk: what is left of it is not a proxy's word
			}
			if !t.contains(a) {
				return a, true
			}
			last = a
		}
	}
	if last.IsValid() {
		return last, true
	}
	if a, ok := hostAddr(h.Get("X-Real-IP")); ok {
		return a, true
	}
	return netip.Addr{}, false
}

// handler rewrites r.RemoteAddr to the client's address when the peer is
// a trusted proxy, so that everything after it (per-address limits, the
// session's Request.RemoteAddr, logs, the exec bridge's REMOTE_ADDR, the
// gateway, the cluster's signed X-Sockjsd-Remote) sees the client. The
// port is the proxy's: the client's is not known. A request another node
// forwarded is rewritten again by the cluster from its signed header,
// which wins over anything here.
func (t trustedProxies) handler(next http.Handler) http.Handler {
	if len(t) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, port, err := net.SplitHostPort(r.RemoteAddr)
		if err == nil {
			if peer, ok := hostAddr(host); ok && t.contains(peer) {
				if a, ok := t.clientAddr(r.Header); ok {
					r2 := *r
					r2.RemoteAddr = net.JoinHostPort(a.String(), port)
					r = &r2
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// listener accepts the PROXY protocol, v1 and v2 (haproxy's send-proxy and
// send-proxy-v2), from trusted peers, where it is optional; a PROXY header
// from any other peer fails the connection's first read, and net/http
// closes it. Without -trusted-proxies the listener is left as it is.
func (t trustedProxies) listener(ln net.Listener, headerTimeout time.Duration) net.Listener {
	if len(t) == 0 {
		return ln
	}
	return proxiedListener{&proxyproto.Listener{
		Listener: socketReadsListener{ln},
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if a, ok := hostAddr(o.Upstream.String()); ok && t.contains(a) {
				return proxyproto.USE, nil
			}
			return proxyproto.REJECT, nil
		},
		ReadHeaderTimeout: headerTimeout,
	}}
}
