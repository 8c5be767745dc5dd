package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
		// The channel had no epoch at subscribe: its first publish
		// starts one, and each subscriber is told which.
		h.expect(t, "subscribed", "seq", "0", "recovered", "true")
		h.expectNumbered(t, "news", 1, 50, 0)
	}
	env.nodes[2].p.Kill()
	start := time.Now()
	waitFor(t, 20*time.Second, "node1 to stop counting node3's subscribers", func() bool { return env.nodes[0].presence("news") == "3" })
	t.Logf("a dead node's 3 subscribers stopped being counted after %v", time.Since(start).Round(10*time.Millisecond))
	mustPublish(t, env.nodes[0].url, "news", 51, 51)
	for _, h := range subs[:3] {
		h.expectNumbered(t, "news", 51, 51, 0)
	}
}

// feedSub is one subscriber that follows a channel through the balancer,
// and whenever its session dies reconnects through the balancer and
// resubscribes with since and epoch. A strict one (the kill test) stops
// with err at the first reset or seq out of order; a lenient one (the
// chaos test) takes recovered:false as the new position, notes what is
// wrong in anomalies, records everything it saw in events and carries on.
type feedSub struct {
	tr       string
	channel  string // "feed" when empty
	lenient  bool
	maxDials int       // sessions it may open; 100 when 0
	start    time.Time // lenient: anomalies say when they came, from this

	epoch  string
	last   uint64
	data   map[uint64]string // strict: data by seq
	closes map[string]int    // why its sessions ended
	err    error

	events    []feedEvent   // lenient: every position and message, in order
	anomalies []string      // lenient: what was wrong, in order
	lost      []lostSession // sessions that showed a second open frame
	fails     []string      // failed requests of its sessions (sessionWatch)
	gaps      int           // lenient: unannounced seq jumps
	gapped    uint64        // lenient: messages they skipped
	backwards int           // lenient: seqs seen again (duplicates or unannounced new epochs)
}

// feedEvent is a subscribed that set a lenient subscriber's position (its
// first, or one with recovered:false), or a message.
type feedEvent struct {
	at    time.Time
	reset bool
	epoch string
	seq   uint64
	data  string // a message's
}

// lostSession is a session of an xhr transport whose receiving requests
// brought a second open frame: the client saw two sessions under one id.
type lostSession struct {
	sid   string
	opens []openSeen
}

// feedTarget is where a subscriber may stop: seq in epoch ("": any).
type feedTarget struct {
	epoch string
	seq   uint64
}

// feedGoal is the feedTarget of a channel's subscribers, set once, when
// the publisher knows it. Its ctx ends when it is set (or the test's ctx
// ends), so that a subscriber waiting for a message learns of it at once.
type feedGoal struct {
	p   atomic.Pointer[feedTarget]
	ctx context.Context
	set context.CancelFunc
}

func newFeedGoal(ctx context.Context) *feedGoal {
	g := &feedGoal{}
	g.ctx, g.set = context.WithCancel(ctx)
	return g
}

// Store sets the target and wakes the subscribers that wait for a message.
func (g *feedGoal) Store(t *feedTarget) {
	g.p.Store(t)
	g.set()
}

func (g *feedGoal) Load() *feedTarget { return g.p.Load() }

var (
	errGone  = errors.New("session gone")
	errRetry = errors.New("subscribe refused for now")
)

// run subscribes, reports the first subscribe on ready, and follows the
// channel until it has reached target (nil: not known yet) or ctx ends.
func (s *feedSub) run(ctx context.Context, lb string, target *feedGoal, ready chan<- error) {
	channel, maxDials := cmp.Or(s.channel, "feed"), cmp.Or(s.maxDials, 100)
	first := true
	defer func() {
		if first {
			ready <- s.err
		}
	}()
	for dials := 0; ; dials++ {
		if ctx.Err() != nil || dials > maxDials {
			s.err = fmt.Errorf("%s: gave up at seq %d of epoch %q after %d dials: %v", s.tr, s.last, s.epoch, dials, ctx.Err())
			return
		}
		h, err := dialHub(ctx, lb, s.tr)
		if err != nil {
			if first && !s.lenient {
				s.err = err
				return
			}
			// The balancer may still send a request to the dead node
			// until its health check marks it down: try again shortly
			// (a retry's pause, bounded by ctx and the dial count).
			s.closes["dial failed"]++
			pause(ctx, 100*time.Millisecond)
			continue
		}
		sub := fmt.Sprintf(`{"op":"subscribe","channel":%q}`, channel)
		if !first {
			sub = fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":%d,"epoch":%q}`, channel, s.last, s.epoch)
		}
		err = h.send(sub)
		if err == nil {
			err = s.follow(ctx, h, &first, target, ready)
		}
		h.close()
		h.watch.mu.Lock()
		s.fails = append(s.fails, h.watch.fails...)
		h.watch.mu.Unlock()
		if sid, opens := h.watch.seen(); len(opens) > 1 {
			s.lost = append(s.lost, lostSession{sid, opens})
		}
		switch {
		case err == nil:
			return
		case errors.Is(err, errRetry):
			pause(ctx, 100*time.Millisecond)
		case errors.Is(err, errGone), errors.Is(err, client.ErrClosed):
			if first && !s.lenient {
				s.err = fmt.Errorf("%s: session gone before the first subscribe: %w", s.tr, err)
				return
			}
		default:
			s.err = err
			return
		}
	}
}

// pause waits d or until ctx ends: a retry's pause, not a synchronisation.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// anomaly stops a strict subscriber with what went wrong (the error it
// returns); a lenient one notes it and goes on (nil).
func (s *feedSub) anomaly(format string, args ...any) error {
	err := fmt.Errorf("%s: "+format, append([]any{s.tr}, args...)...)
	if !s.lenient {
		return err
	}
	s.anomalies = append(s.anomalies, fmt.Sprintf("%s +%.2fs", err, time.Since(s.start).Seconds()))
	return nil
}

func (s *feedSub) record(ev feedEvent) {
	if s.lenient {
		ev.at = time.Now()
		s.events = append(s.events, ev)
	}
}

func (s *feedSub) follow(ctx context.Context, h *hubConn, first *bool, target *feedGoal, ready chan<- error) error {
	subscribed := false
	for {
		t := target.Load()
		if subscribed && t != nil && (t.epoch == "" || t.epoch == s.epoch) && s.last >= t.seq {
			return nil
		}
		// The next message; while the target is not known, or until
		// it becomes known: then it is checked again above. The target
		// is read once: read again here, a target set in between sent
		// a subscriber already at it to wait on ctx for a message that
		// never came (make test failed so once, after 4 minutes).
		wait := ctx
		if t == nil {
			wait = target.ctx
		}
		v, err := h.recv(wait)
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) && target.Load() != nil:
			continue
		case errors.Is(err, errSessionLost):
			s.closes["lost session"]++
			return errGone
		case errors.Is(err, client.ErrClosed):
			code, reason, _ := h.c.CloseInfo()
			s.closes[fmt.Sprintf("%d %s", code, reason)]++
			return errGone
		case err != nil:
			return fmt.Errorf("%s: at seq %d: %w", s.tr, s.last, err)
		}
		switch v["op"] {
		case "subscribed":
			epoch, _ := v["epoch"].(string)
			seq := uint64(v["seq"].(float64))
			switch {
			case *first && !subscribed:
				s.epoch, s.last = epoch, seq
				s.record(feedEvent{reset: true, epoch: epoch, seq: seq})
				*first = false
				ready <- nil
			case !subscribed && v["recovered"] == true && epoch == s.epoch:
				// Resumed: the messages after since follow.
			case subscribed && v["recovered"] == true && s.epoch == "" && s.last == 0 && seq == 0:
				// The channel had no epoch when we subscribed; its
				// first publish starts one, and we are told which.
				s.epoch = epoch
			case s.lenient && v["recovered"] == false:
				// History no longer reaches back (asked), or the
				// channel's epoch changed (unasked): a new position.
				s.epoch, s.last = epoch, seq
				s.record(feedEvent{reset: true, epoch: epoch, seq: seq})
			case subscribed:
				if err := s.anomaly("unasked %v at seq %d", v, s.last); err != nil {
					return err
				}
			default:
				if err := s.anomaly("resubscribed with since %d of epoch %q: %v", s.last, s.epoch, v); err != nil {
					return err
				}
				s.epoch, s.last = epoch, seq
				s.record(feedEvent{reset: true, epoch: epoch, seq: seq})
			}
			subscribed = true
		case "message":
			seq := uint64(v["seq"].(float64))
			data := jsonOf(v["data"])
			var err error
			switch {
			case !subscribed:
				err = s.anomaly("message seq %d before subscribed (at seq %d)", seq, s.last)
			case seq <= s.last:
				s.backwards++
				err = s.anomaly("seq %d again after seq %d of epoch %q (duplicate or unannounced new epoch)", seq, s.last, s.epoch)
			case seq > s.last+1:
				s.gaps, s.gapped = s.gaps+1, s.gapped+seq-s.last-1
				err = s.anomaly("seq %d after seq %d of epoch %q: %d missing, unannounced", seq, s.last, s.epoch, seq-s.last-1)
			}
			if err != nil {
				return err
			}
			s.last = max(s.last, seq)
			s.record(feedEvent{epoch: s.epoch, seq: seq, data: data})
			if s.data != nil {
				s.data[seq] = data
			}
		case "error":
			if s.lenient && v["code"] == "unavailable" && !subscribed {
				// The broker is down: the subscribe is refused, try again.
				s.closes["subscribe unavailable"]++
				return errRetry
			}
			if err := s.anomaly("unexpected %v", v); err != nil {
				return err
			}
		default:
			if err := s.anomaly("unexpected %v", v); err != nil {
				return err
			}
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

	// Bounds, not synchronisation: generous, for a machine loaded by
	// other test suites (unloaded, the whole test takes 13-20 s).
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	target := newFeedGoal(ctx)
	ready := make(chan error, 3*perTransport)
	var subs []*feedSub
	var wg sync.WaitGroup
	for i := range 3 * perTransport {
		s := &feedSub{tr: hubTransports[i%3], data: map[uint64]string{}, closes: map[string]int{}}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, env.lb, target, ready)
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
			env.nodes[2].p.Kill()
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
	target.Store(&feedTarget{seq: maxAcked})
	t.Logf("%d publishes acknowledged, up to seq %d; failed: %v", len(acked), maxAcked, failed)
	if len(acked) < publishes-10 {
		t.Fatalf("only %d of %d publishes acknowledged", len(acked), publishes)
	}
	// Every subscriber returns once it has the last acknowledged seq,
	// or when ctx ends, with an error saying where it stopped.
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
		pids[n.name] = n.p.Cmd.Process.Pid
	}
	api := env.nodes[0].url
	for i := 1; i <= 10; i++ {
		mustPublish(t, api, "news", i, i)
	}
	for _, h := range subs {
		h.expect(t, "subscribed", "seq", "0", "recovered", "true") // the epoch the first publish started
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
		case <-n.p.Done():
			t.Fatalf("%s exited", n.name)
		default:
		}
		if n.p.Cmd.Process.Pid != pids[n.name] {
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
	// either order). The channel had no message before the outage, so it
	// had no epoch: its first publish starts one, announced to the
	// subscriber (recovered:true, nothing missed) right before message 1.
	got := map[string]string{}
	var order []string
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		v, err := chat.recv(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after the browser's publish: %v (so far %v)", err, got)
		}
		op, _ := v["op"].(string)
		if op == "subscribed" {
			delete(v, "epoch") // random
		}
		got[op] = jsonOf(v)
		order = append(order, op)
	}
	if got["published"] != `{"channel":"chat.room","op":"published","seq":1}` ||
		got["subscribed"] != `{"channel":"chat.room","op":"subscribed","recovered":true,"seq":0}` ||
		got["message"] != `{"channel":"chat.room","data":"after","op":"message","seq":1}` ||
		slices.Index(order, "subscribed") > slices.Index(order, "message") {
		t.Fatalf("after the browser's publish: %v", got)
	}
}
