package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Relays: a receiving request (a poll, a streaming answer) that reached
// this node for a session another node owns is relayed to the owner for
// as long as the owner answers it: up to the heartbeat delay for an idle
// poll, up to -response-limit for a stream, which for an idle stream may
// be for ever. When this node stops, its shutdown waits for the requests
// in flight, relays included, and cuts them when its time is up; a cut
// relay costs the page its session (a poll cut mid-wait ends it with 1002
// on its owner, a stream cut mid-answer leaves the client unsure which
// frames it missed). So at shutdown (EndRelays) the node asks each owner
// to end the answer it relays normally, as a stream ends at its limit: a
// heartbeat, then the end of the answer. The client asks again, through
// the balancer, which no longer sends it here, and the session goes on.
//
// The request is the relayed one's URL with releaseParam added, signed
// as a forwarded request is (the MAC covers the request URI, so the
// parameter cannot be added to another node's request), without a body.
// The owner answers 204 when it ended a receiver, 404 when none was
// attached (it may not have attached yet: EndRelays asks again).

// releaseParam marks a signed request as a release (see above).
const releaseParam = "sockjsd-release"

// releaseRetry is how often EndRelays asks again for relays still in
// flight: a relay whose request had not reached its session when it was
// first asked (or that began meanwhile) is released within this.
const releaseRetry = 200 * time.Millisecond

// relay is a receiving request this node relays to its session's owner.
type relay struct {
	m     *member
	owner *url.URL
	uri   string // the request URI as relayed
}

// relays are a node's relays in flight.
type relays struct {
	mu sync.Mutex
	m  map[*relay]struct{}
}

func (rs *relays) add(rl *relay) {
	rs.mu.Lock()
	if rs.m == nil {
		rs.m = make(map[*relay]struct{})
	}
	rs.m[rl] = struct{}{}
	rs.mu.Unlock()
}

func (rs *relays) drop(rl *relay) {
	rs.mu.Lock()
	delete(rs.m, rl)
	rs.mu.Unlock()
}

// of returns the relays of member m in flight.
func (rs *relays) of(m *member) []*relay {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []*relay
	for rl := range rs.m {
		if rl.m == m {
			out = append(out, rl)
		}
	}
	return out
}

// EndRelays implements transport.ClusterRelays: it asks the owners of
// the sessions whose receiving requests this member relays to end those
// answers normally, and asks again every releaseRetry for relays still
// in flight (new ones too) until none is left or ctx ends. Shutdown
// calls it while the server waits for its requests in flight.
func (m *member) EndRelays(ctx context.Context) {
	t := time.NewTicker(releaseRetry)
	defer t.Stop()
	start, asked := time.Now(), map[*relay]bool{}
	defer func() {
		if len(asked) > 0 {
			m.svc.Logger().Info("sockjs: cluster: relayed requests ended by their owners", "prefix", m.prefix,
				"relays", len(asked), "left", len(m.n.relays.of(m)), "took", time.Since(start).Round(time.Millisecond))
		}
	}()
	for {
		rls := m.n.relays.of(m)
		if len(rls) == 0 {
			return
		}
		for _, rl := range rls {
			asked[rl] = true
		}
		var wg sync.WaitGroup
		for _, rl := range rls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.n.release(ctx, rl); err != nil {
					m.warn("ending a relayed request", err)
				}
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// release asks rl's owner to end the answer it relays.
func (n *Node) release(ctx context.Context, rl *relay) error {
	uri := rl.uri
	if strings.Contains(uri, "?") {
		uri += "&" + releaseParam
	} else {
		uri += "?" + releaseParam
	}
	// Bounded as a forwarded request's answer is: the owner answers at
	// once, 204 or 404.
	ctx, cancel := context.WithTimeout(ctx, n.opts.ForwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rl.owner.Scheme+"://"+rl.owner.Host+uri, http.NoBody)
	if err != nil {
		return err
	}
	const remote = "cluster"
	req.Header.Set(RemoteHeader, remote)
	req.Header.Set(ForwardHeader, n.sign(newNonce(), req.Method, req.URL.RequestURI(), remote, 0, time.Now()))
	res, err := n.opts.Transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s: %w", rl.owner.Host, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusNotFound {
		// 403: the nodes do not share the secret, or their clocks
		// are too far apart; the relay is cut at shutdown then.
		return fmt.Errorf("%s answered a release with %s", rl.owner.Host, res.Status)
	}
	return nil
}

// released answers a release request another node signed (forwarded has
// checked the signature): the session's attached receiver ends its
// answer, 204; 404 when none is attached here.
func (m *member) released(w http.ResponseWriter, sid string) {
	if m.svc.Release(sid) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusNotFound)
}
