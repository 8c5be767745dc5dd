package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// presence is a channel's subscriber count on n's API.
func (n *node) presence(channel string) string {
	return jsonOf(apiDo(n.url+"/api/presence?channel="+channel, "").body["subscribers"])
}

// TestClusterHubFanOut: a publish through the API of node 1 reaches
// subscribers connected straight to nodes 2 and 3 over websocket,
// xhr-streaming and xhr-polling, in order; presence and /api/channels on
// every node count all six; when node 3 dies, its three stop being
// counted within seconds.
func TestClusterHubFanOut(t *testing.T) {
	env := startCluster(t)
	var subs []*hubConn
	for _, n := range env.nodes[1:] {
		for _, tr := range hubTransports {
			h := mustDialHub(t, n.url, tr)
			if err := h.send(`{"op":"subscribe","channel":"news"}`); err != nil {
				t.Fatal(err)
			}
			h.expect(t, "subscribed", "channel", `"news"`, "seq", "0")
			subs = append(subs, h)
		}
	}
	for _, n := range env.nodes {
		waitFor(t, 15*time.Second, n.name+" to count 6 subscribers of news", func() bool { return n.presence("news") == "6" })
		if r := apiDo(n.url+"/api/channels", ""); r.code != 200 || jsonOf(r.body["channels"]) != `{"news":6}` {
			t.Fatalf("%s /api/channels: %d %v %v", n.name, r.code, r.body, r.err)
		}
	}
	for i := 1; i <= 50; i++ {
		mustPublish(t, env.nodes[0].url, "news", i, i)
	}
	for _, h := range subs {
		h.expectNumbered(t, "news", 1, 50, 0)
	}
	env.nodes[2].p.kill()
	start := time.Now()
	waitFor(t, 20*time.Second, "node1 to stop counting node3's subscribers", func() bool { return env.nodes[0].presence("news") == "3" })
	t.Logf("a dead node's 3 subscribers stopped being counted after %v", time.Since(start).Round(10*time.Millisecond))
	mustPublish(t, env.nodes[0].url, "news", 51, 51)
	for _, h := range subs[:3] {
		h.expectNumbered(t, "news", 51, 51, 0)
	}
}

// feedSub is one subscriber of the kill test: it follows channel "feed"
// through the balancer, and whenever its session dies it reconnects
// through the balancer and resubscribes with since and epoch.
type feedSub struct {
	tr     string
	epoch  string
	last   uint64
	data   map[uint64]string // data by seq
	closes map[string]int    // why its sessions ended
	err    error
}

var errGone = errors.New("session gone")

// run subscribes, reports the first subscribe on ready, and follows the
// channel until it has seen seq target (0: not known yet) or ctx ends.
func (s *feedSub) run(ctx context.Context, lb string, target *atomic.Uint64, ready chan<- error) {
	first := true
	defer func() {
		if first {
			ready <- s.err
		}
	}()
	for dials := 0; ; dials++ {
		if ctx.Err() != nil || dials > 100 {
			s.err = fmt.Errorf("%s: gave up at seq %d after %d dials: %v", s.tr, s.last, dials, ctx.Err())
			return
		}
		h, err := dialHub(ctx, lb, s.tr)
		if err != nil {
			if first {
				s.err = err
				return
			}
			// The balancer may still send a request to the dead node
			// until its health check marks it down: try again shortly
			// (a retry's pause, bounded by ctx and the dial count).
			s.closes["dial failed"]++
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		sub := `{"op":"subscribe","channel":"feed"}`
		if !first {
			sub = fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":%d,"epoch":%q}`, s.last, s.epoch)
		}
		err = h.send(sub)
		if err == nil {
			err = s.follow(ctx, h, &first, target, ready)
		}
		h.close()
		switch {
		case err == nil:
			return
		case errors.Is(err, errGone), errors.Is(err, client.ErrClosed):
			if first {
				s.err = fmt.Errorf("%s: session gone before the first subscribe: %w", s.tr, err)
				return
			}
		default:
			s.err = err
			return
		}
	}
}

func (s *feedSub) follow(ctx context.Context, h *hubConn, first *bool, target *atomic.Uint64, ready chan<- error) error {
	subscribed := false
	for {
		if t := target.Load(); subscribed && t > 0 && s.last >= t {
			return nil
		}
		// Short reads, so that the target set meanwhile is seen.
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		v, err := h.recv(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			continue
		case errors.Is(err, errSessionLost):
			s.closes["lost session"]++
			return errGone
		case errors.Is(err, client.ErrClosed):
			code, reason := h.c.CloseInfo()
			s.closes[fmt.Sprintf("%d %s", code, reason)]++
			return errGone
		case err != nil:
			return fmt.Errorf("%s: at seq %d: %w", s.tr, s.last, err)
		}
		switch v["op"] {
		case "subscribed":
			if subscribed {
				return fmt.Errorf("%s: unasked %v at seq %d", s.tr, v, s.last)
			}
			subscribed = true
			if *first {
				s.epoch, _ = v["epoch"].(string)
				s.last = uint64(v["seq"].(float64))
				*first = false
				ready <- nil
			} else if v["recovered"] != true || v["epoch"] != s.epoch {
				return fmt.Errorf("%s: resubscribed with since %d: %v", s.tr, s.last, v)
			}
		case "message":
			seq := uint64(v["seq"].(float64))
			if !subscribed || seq != s.last+1 {
				return fmt.Errorf("%s: message seq %d after seq %d (subscribed: %v)", s.tr, seq, s.last, subscribed)
			}
			s.last = seq
			s.data[seq] = jsonOf(v["data"])
		default:
			return fmt.Errorf("%s: unexpected %v", s.tr, v)
		}
	}
}

// TestClusterHubNodeKilled: 300 hub subscribers (a third per transport)
// follow a channel through the balancer while a publisher posts numbered
// messages through the balancer's API; one node is killed with SIGKILL
// part-way. Every subscriber whose session died reconnects through the
// balancer and resumes with since; in the end every subscriber has every
// message of the channel, each acknowledged publish among them, exactly
// once and in order.
func TestClusterHubNodeKilled(t *testing.T) {
	const perTransport, publishes, killAt = 100, 100, 30
	env := startCluster(t, "-hub-history-size", "1000")
	// The channel's epoch starts with its first publish: the subscribers
	// get it with their subscribe, to resume with.
	mustPublish(t, env.lb, "feed", 0, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var target atomic.Uint64
	ready := make(chan error, 3*perTransport)
	var subs []*feedSub
	var wg sync.WaitGroup
	for i := range 3 * perTransport {
		s := &feedSub{tr: hubTransports[i%3], data: map[uint64]string{}, closes: map[string]int{}}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, env.lb, &target, ready)
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	for range subs {
		if err := <-ready; err != nil {
			t.Fatalf("subscribe through the balancer: %v", err)
		}
	}
	for _, s := range subs {
		if s.last != 1 {
			t.Fatalf("%s subscribed at seq %d, want 1", s.tr, s.last)
		}
	}
	t.Logf("%d subscribers through the balancer", len(subs))

	// Publish, one every 30 ms, through the balancer; kill node 3 part-way.
	acked := map[uint64]string{} // seq 1 came before the subscribes
	var maxAcked uint64 = 1
	failed := map[string]int{}
	tick := time.NewTicker(30 * time.Millisecond) // the publisher's pace, not a synchronisation
	defer tick.Stop()
	var killed time.Time
	for n := 1; n <= publishes || maxAcked == 1 || failed["last"] > 0; n++ {
		if n > publishes+20 {
			t.Fatalf("the last publishes kept failing: %v", failed)
		}
		<-tick.C
		if n == killAt {
			env.nodes[2].p.kill()
			killed = time.Now()
		}
		r := publishN(env.lb, "feed", n)
		delete(failed, "last")
		if r.err != nil || r.code != 200 {
			failed[fmt.Sprintf("%d %v %v", r.code, r.body["error"], r.err)]++
			failed["last"] = 1
			continue
		}
		seq := uint64(r.body["seq"].(float64))
		if seq <= maxAcked {
			t.Fatalf("publish %d acknowledged with seq %d after seq %d", n, seq, maxAcked)
		}
		acked[seq], maxAcked = fmt.Sprintf(`{"n":%d}`, n), seq
	}
	target.Store(maxAcked)
	t.Logf("%d publishes acknowledged, up to seq %d; failed: %v", len(acked), maxAcked, failed)
	if len(acked) < publishes-10 {
		t.Fatalf("only %d of %d publishes acknowledged", len(acked), publishes)
	}
	wg.Wait()
	t.Logf("every subscriber done %v after the kill", time.Since(killed).Round(time.Millisecond))

	reconnects := map[string]int{}
	why := map[string]int{}
	for _, s := range subs {
		if s.err != nil {
			t.Fatal(s.err)
		}
		if s.last < maxAcked {
			t.Fatalf("%s stopped at seq %d of %d", s.tr, s.last, maxAcked)
		}
		for seq, data := range acked {
			if s.data[seq] != data {
				t.Fatalf("%s: seq %d is %s, acknowledged as %s", s.tr, seq, s.data[seq], data)
			}
		}
		for k, v := range s.closes {
			why[s.tr+": "+k] += v
			if k != "dial failed" {
				reconnects[s.tr] += v
			}
		}
	}
	var lines []string
	for k, v := range why {
		lines = append(lines, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(lines)
	t.Logf("sessions ended, by transport and reason: %s", strings.Join(lines, "; "))
	for _, tr := range hubTransports {
		if reconnects[tr] == 0 {
			t.Errorf("no %s subscriber reconnected: the killed node served none?", tr)
		}
	}
}

// TestClusterHubRedisRestart: redis-server stops mid-run and starts again
// (empty). Publishes through the API and from browsers during the outage
// are refused with 503 / "unavailable"; no node restarts; once Redis is
// back the same sessions get the later publishes, announced as a new
// epoch (recovered:false: Redis kept nothing).
func TestClusterHubRedisRestart(t *testing.T) {
	env := startCluster(t)
	var subs []*hubConn
	for _, n := range env.nodes[1:] {
		for _, tr := range hubTransports {
			h := mustDialHub(t, n.url, tr)
			if err := h.send(`{"op":"subscribe","channel":"news"}`); err != nil {
				t.Fatal(err)
			}
			h.expect(t, "subscribed", "seq", "0")
			subs = append(subs, h)
		}
	}
	chat := subs[0] // a browser that may publish to chat.room
	if err := chat.send(`{"op":"subscribe","channel":"chat.room"}`); err != nil {
		t.Fatal(err)
	}
	chat.expect(t, "subscribed", "channel", `"chat.room"`)
	pids := map[string]int{}
	for _, n := range env.nodes {
		pids[n.name] = n.p.cmd.Process.Pid
	}
	api := env.nodes[0].url
	for i := 1; i <= 10; i++ {
		mustPublish(t, api, "news", i, i)
	}
	for _, h := range subs {
		h.expectNumbered(t, "news", 1, 10, 0)
	}

	env.redis.Stop()
	down := time.Now()
	// Every publish while Redis is away: 503 unavailable, never anything
	// else, until every node says it is not ready.
	refused := 0
	waitFor(t, 20*time.Second, "every node's /readyz to say not ready", func() bool {
		r := publishN(api, "news", 100+refused)
		if r.err != nil || r.code != 503 || r.body["error"] != "unavailable" {
			t.Fatalf("publish with Redis down: %d %v %v, want 503 unavailable", r.code, r.body, r.err)
		}
		refused++
		for _, n := range env.nodes {
			if status(n.url+"/readyz") != 503 {
				return false
			}
		}
		return true
	})
	// And after: still refused, quickly (no waiting on Redis's timeouts
	// for ever).
	var slowest time.Duration
	for range 5 {
		start := time.Now()
		r := publishN(api, "news", 100+refused)
		if r.err != nil || r.code != 503 || r.body["error"] != "unavailable" {
			t.Fatalf("publish with Redis down: %d %v %v, want 503 unavailable", r.code, r.body, r.err)
		}
		d := time.Since(start)
		if d > 10*time.Second {
			t.Errorf("a publish with Redis down took %v to be refused", d)
		}
		slowest = max(slowest, d)
		refused++
	}
	for _, n := range env.nodes {
		if status(n.url+"/healthz") != 200 {
			t.Fatalf("%s /healthz failed while Redis is down", n.name)
		}
		if v := n.metric(t, "sockjs_broker_up"); v != 0 {
			t.Errorf("%s sockjs_broker_up = %v with Redis down", n.name, v)
		}
	}
	if err := chat.send(`{"op":"publish","channel":"chat.room","data":"during"}`); err != nil {
		t.Fatal(err)
	}
	chat.expect(t, "error", "code", `"unavailable"`, "channel", `"chat.room"`)
	t.Logf("%d API publishes refused with 503 while Redis was down (once every node said not ready, in %v at most)", refused, slowest.Round(time.Millisecond))

	env.redis.Start()
	up := time.Now()
	for _, n := range env.nodes {
		waitFor(t, 20*time.Second, n.name+" to be ready again", func() bool {
			return status(n.url+"/readyz") == 200 && n.metric(t, "sockjs_broker_up") == 1
		})
	}
	t.Logf("Redis down for %v; every node ready again %v after it restarted",
		up.Sub(down).Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	for _, n := range env.nodes {
		select {
		case <-n.p.done:
			t.Fatalf("%s exited", n.name)
		default:
		}
		if n.p.cmd.Process.Pid != pids[n.name] {
			t.Fatalf("%s was restarted", n.name)
		}
	}
	// Redis lost the channel: its seq starts again, in a new epoch, which
	// each subscriber is told of before the first message.
	for i := 1; i <= 10; i++ {
		mustPublish(t, api, "news", 1000+i, i)
	}
	for _, h := range subs {
		h.expect(t, "subscribed", "channel", `"news"`, "recovered", "false", "seq", "0")
		h.expectNumbered(t, "news", 1, 10, 1000)
	}
	if err := chat.send(`{"op":"publish","channel":"chat.room","data":"after"}`); err != nil {
		t.Fatal(err)
	}
	// The browser's own publish: acknowledged, and delivered to it (in
	// either order). The channel had no message before the outage, so
	// there is no epoch change to announce.
	got := map[string]string{}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		v, err := chat.recv(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after the browser's publish: %v", err)
		}
		got[jsonOf(v["op"])] = jsonOf(v)
	}
	if got[`"published"`] != `{"channel":"chat.room","op":"published","seq":1}` ||
		got[`"message"`] != `{"channel":"chat.room","data":"after","op":"message","seq":1}` {
		t.Fatalf("after the browser's publish: %v", got)
	}
}
