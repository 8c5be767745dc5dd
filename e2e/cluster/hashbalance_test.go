package cluster

import (
	"testing"
)

// hashBalance is the alternative backend balancing deploy/haproxy.cfg
// describes: each request goes to the node its session id hashes to (the
// path up to the fourth slash, /<prefix>/<server>/<session>, for
// one-segment prefixes), so a session's requests reach its owner and none
// is forwarded while the nodes stay the same.
var hashBalance = []string{"balance uri path-only depth 3", "hash-type consistent"}

// TestClusterHashBalance: behind haproxy hashing the session's path, the
// real sockjs-client echoes over each HTTP transport as behind round robin,
// and no node forwards a request (every one lands on its session's owner).
func TestClusterHashBalance(t *testing.T) {
	need(t, "node")
	env := startCluster(t)
	lb := env.startHAProxyOn(env.nodes, freePort(t), hashBalance...)
	for _, tr := range []string{"xhr-polling", "xhr-streaming", "eventsource"} {
		t.Run(tr, func(t *testing.T) {
			before := env.forwarded(t)
			nodeBurst(t, lb+"/echo", tr, messages).check(t, tr, messages)
			if n := env.forwarded(t) - before; n != 0 {
				t.Errorf("%v requests forwarded behind the session hash, want 0", n)
			}
		})
	}
}

// forwarded is the requests the nodes forwarded to another node, all
// endpoints and results.
func (e *clusterEnv) forwarded(t *testing.T) float64 {
	t.Helper()
	sum := 0.0
	for _, n := range e.nodes {
		sum += n.metric(t, "sockjs_cluster_forwarded_requests_total")
	}
	return sum
}
