package main

import (
	"flag"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockjsd/sockjsd/internal/connlimit"
)

// Connection caps (issue 20, item 4): -max-connections and
// -max-connections-per-address bound the connections the listener holds.
// A connection past a cap is refused as soon as it is accepted, before
// any HTTP parsing and without a goroutine: it gets a fixed 503 (written
// within 50 ms into the fresh socket's empty buffer, so it does not wait)
// and is closed. A client whose request was already in flight may see a
// reset instead of the 503; either way it is refused at once.
const (
	DefaultMaxConnections           = 50_000
	DefaultMaxConnectionsPerAddress = 1_000
)

var connRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

// ConnConfig holds the connection caps' flags.
type ConnConfig struct {
	MaxConnections           int
	MaxConnectionsPerAddress int
}

func (c *ConnConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxConnections, "max-connections", DefaultMaxConnections, "connections open at once, server-wide (more: 503 and closed at accept; 0: no cap)")
	fs.IntVar(&c.MaxConnectionsPerAddress, "max-connections-per-address", DefaultMaxConnectionsPerAddress, "connections open at once from one client address (more: 503 and closed at accept; 0: no cap)")
}

// connAddress is the address a connection is counted under: the TCP
// peer's IP, or "" (not counted per address) for a trusted proxy, whose
// connections carry many clients (-trusted-proxies): a balancer in front
// of the node must not be held to one client's share.
func connAddress(trusted trustedProxies) func(net.Conn) string {
	return func(c net.Conn) string {
		ip := connlimit.PeerIP(c)
		if a, err := netip.ParseAddr(ip); err == nil && trusted.contains(a) {
			return ""
		}
		return ip
	}
}

// connLimiter is the listener wrapper of the caps, with its metrics on
// reg; run gives it the listener.
func connLimiter(c ConnConfig, trusted trustedProxies, reg prometheus.Registerer) *connlimit.Listener {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sockjs_connections_refused_total",
		Help: "Connections refused at accept by -max-connections (max_connections) or -max-connections-per-address (per_address).",
	}, []string{"reason"})
	for _, r := range []string{connlimit.ReasonMax, connlimit.ReasonPerAddress} {
		refused.WithLabelValues(r)
	}
	l := &connlimit.Listener{
		Max:        c.MaxConnections,
		PerAddress: c.MaxConnectionsPerAddress,
		Key:        connAddress(trusted),
		Refusal:    connRefusal,
		OnRefuse:   func(reason string) { refused.WithLabelValues(reason).Inc() },
	}
	reg.MustRegister(refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sockjs_connections_open",
		Help: "Connections accepted by the listener and not yet closed (websockets included).",
	}, func() float64 { return float64(l.Open()) }))
	return l
}
