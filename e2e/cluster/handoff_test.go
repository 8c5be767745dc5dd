package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sockjsd/sockjsd/client"
)

// publisher publishes {"n":i} on channel through the balancer at a steady
// pace until stopped, and keeps what was acknowledged.
type publisher struct {
	mu      sync.Mutex
	acked   map[uint64]string // seq -> data
	max     uint64
	failed  map[string]int
	stop    chan struct{}
	stopped chan struct{}
}

func startPublisher(t *testing.T, lb, channel string, every time.Duration, first uint64) *publisher {
	p := &publisher{acked: map[uint64]string{}, max: first, failed: map[string]int{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(every) // the publisher's pace, not a synchronisation
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			r := publishN(lb, channel, n)
			p.mu.Lock()
			if r.err != nil || r.code != 200 {
				p.failed[fmt.Sprintf("%d %v %v", r.code, r.body["error"], r.err)]++
			} else {
				seq := uint64(r.body["seq"].(float64))
				if seq <= p.max {
					t.Errorf("publish %d acknowledged with seq %d after seq %d", n, seq, p.max)
				}
				p.acked[seq], p.max = fmt.Sprintf(`{"n":%d}`, n), seq
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *publisher) halt() {
	close(p.stop)
	<-p.stopped
}

// drain stops n with SIGTERM, waits for it to exit, and returns its
// drain's log line ("" if it logged none).
func (e *clusterEnv) drain(n *node) string {
	e.t.Helper()
	if err := n.p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-n.p.Done():
	case <-time.After(60 * time.Second):
		e.t.Fatalf("%s did not exit within 60s of SIGTERM", n.name)
	}
	for _, l := range strings.Split(n.p.Out.String(), "\n") {
		if strings.Contains(l, "drain: sessions handed off") {
			return l
		}
	}
	return ""
}

var handedOffRe = regexp.MustCompile(`handed_off=(\d+) failed=(\d+) took=(\S+)`)

// TestClusterRollingHandOff: 300 hub subscribers on xhr-polling,
// xhr-streaming, eventsource and websocket (75 each) follow a channel through the balancer while
// a publisher posts 20 messages a second; the three nodes are restarted
// one at a time (SIGTERM, then a new process on the same port). The HTTP
// subscribers' sessions are handed off and resumed on other nodes: they
// see no close and no second open frame. The websocket subscribers are
// closed with 1001, reconnect and resume with since. Every subscriber
// gets every acknowledged publish exactly once, in order.
func TestClusterRollingHandOff(t *testing.T) {
	const perTransport = 75
	env := startCluster(t, "-hub-history-size", "2000", "-drain-delay", "3s")
	// env.lb is deploy/haproxy.cfg as shipped: its check, /readyz?local,
	// takes a draining node out within its drain delay, so the hand-off
	// meets only the requests already on their way.
	mustPublish(t, env.lb, "feed", 0, 1) // the channel's epoch starts

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	target := newFeedGoal(ctx)
	trs := []string{client.WebSocket, client.XHRStreaming, client.XHRPolling, client.EventSource}
	subs, wait := startFeedSubs(t, ctx, env.lb, target, trs, perTransport)
	pub := startPublisher(t, env.lb, "feed", 50*time.Millisecond, 1)
	handedOff := 0
	for _, n := range env.nodes {
		line := env.drain(n)
		m := handedOffRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s logged no drain line; output:\n%s", n.name, tail(n.p.Out.String(), 3000))
		}
		h, _ := strconv.Atoi(m[1])
		handedOff += h
		t.Logf("%s: %s", n.name, line[strings.Index(line, "handed_off="):])
		env.startNode(n)
	}
	pub.halt()
	pub.mu.Lock()
	maxAcked, acked := pub.max, pub.acked
	t.Logf("%d publishes acknowledged, up to seq %d; failed: %v", len(acked), maxAcked, pub.failed)
	pub.mu.Unlock()
	target.Store(&feedTarget{seq: maxAcked})
	wait()

	why := map[string]int{}
	for _, s := range subs {
		if s.err != nil {
			t.Error(s.err)
			continue
		}
		for seq, data := range acked {
			if s.data[seq] != data {
				t.Errorf("%s: seq %d is %q, acknowledged as %s", s.tr, seq, s.data[seq], data)
				break
			}
		}
		for k, v := range s.closes {
			why[s.tr+": "+k] += v
		}
		if s.tr != client.WebSocket {
			if len(s.closes) > 0 || len(s.lost) > 0 {
				t.Errorf("%s subscriber saw its session end: closes %v, lost %v, failed requests %v", s.tr, s.closes, s.lost, s.fails)
			}
		}
	}
	var lines []string
	for k, v := range why {
		lines = append(lines, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(lines)
	t.Logf("%d sessions handed off; sessions ended, by transport and reason: %s", handedOff, strings.Join(lines, "; "))
	if handedOff == 0 {
		t.Errorf("no session was handed off")
	}
}

// rollingRestart drains and restarts every node in turn and returns the
// sessions they handed off, as their drain lines say.
func (e *clusterEnv) rollingRestart() int {
	t := e.t
	t.Helper()
	handedOff := 0
	for _, n := range e.nodes {
		line := e.drain(n)
		m := handedOffRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s logged no drain line; output:\n%s", n.name, tail(n.p.Out.String(), 3000))
		}
		h, _ := strconv.Atoi(m[1])
		handedOff += h
		t.Logf("%s: %s", n.name, line[strings.Index(line, "handed_off="):])
		e.startNode(n)
	}
	return handedOff
}

// followed is one page subscriber's record (testdata/hubfollow.js).
type followed struct {
	Transport string            `json:"transport"`
	Used      string            `json:"used"`
	Last      uint64            `json:"last"`
	Data      map[string]string `json:"data"`
	Closes    []string          `json:"closes"`
	Errors    []string          `json:"errors"`
}

// TestClusterRollingHandOffBrowser: the real sockjs-client in Chromium,
// one hub session per HTTP transport (a page has six connections per
// host), through the balancer, while the three nodes are restarted one at
// a time and a publisher posts 20 messages a second: no close event, no
// unasked subscribed, and every acknowledged publish exactly once, in
// order.
func TestClusterRollingHandOffBrowser(t *testing.T) {
	need(t)
	dist := filepath.Join("..", "..", "web", "sockjs-client", "node_modules", "sockjs-client", "dist", "sockjs.min.js")
	if _, err := os.Stat(dist); err != nil {
		t.Skipf("sockjs-client is not installed in web/sockjs-client (run `make deps-client`): %v", err)
	}
	env := startCluster(t, "-hub-history-size", "2000", "-drain-delay", "3s")
	// env.lb is deploy/haproxy.cfg as shipped: its check, /readyz?local,
	// takes a draining node out within its drain delay, so the hand-off
	// meets only the requests already on their way.
	ctx := startChromium(t)
	followJS, err := os.ReadFile(filepath.Join("testdata", "hubfollow.js"))
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, env.lb, "feed", 0, 1)
	load := fmt.Sprintf(`new Promise(function (resolve, reject) {
		var s = document.createElement('script');
		s.src = '/sockjs-client/sockjs.min.js';
		s.onload = function () { (0, eval)(%q); resolve(typeof SockJS + ' ' + typeof hubFollow); };
		s.onerror = reject;
		document.head.appendChild(s);
	})`, string(followJS))
	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(env.lb+"/healthz")); err != nil {
		t.Fatal(err)
	}
	loaded, err := chromedp.Run(step, chromedp.Evaluate[string](load, chromedp.EvalAwaitPromise))
	if err != nil || loaded != "function function" {
		t.Fatalf("load the client through the balancer: %q, %v", loaded, err)
	}
	transports := []string{"xhr-polling", "xhr-streaming", "eventsource", "jsonp-polling", "iframe-htmlfile"}
	js := fmt.Sprintf(`hubFollow(SockJS, %q, %s, "feed", 30000)`, env.lb+"/hub", jsonOf(transports))
	if _, err := chromedp.Run(step, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	pub := startPublisher(t, env.lb, "feed", 50*time.Millisecond, 1)
	handedOff := env.rollingRestart()
	pub.halt()
	maxAcked, acked := pub.max, pub.acked
	t.Logf("%d sessions handed off; %d publishes acknowledged, up to seq %d; failed: %v", handedOff, len(acked), maxAcked, pub.failed)
	var subs []followed
	waitFor(t, 30*time.Second, "every page subscriber to reach the last acknowledged seq", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[[]followed](`hubFollowed()`))
		if err != nil {
			t.Fatal(err)
		}
		subs = s
		for _, f := range subs {
			if f.Last < maxAcked {
				return false
			}
		}
		return true
	})
	for _, f := range subs {
		if f.Used != f.Transport || len(f.Closes) > 0 || len(f.Errors) > 0 {
			t.Errorf("%s (used %s): closes %v, errors %v", f.Transport, f.Used, f.Closes, f.Errors)
		}
		for seq, data := range acked {
			if got := f.Data[strconv.FormatUint(seq, 10)]; got != data {
				t.Errorf("%s: seq %d is %q, acknowledged as %s", f.Transport, seq, got, data)
				break
			}
		}
	}
}

// TestClusterKilledMidHandOff: a node is killed (SIGKILL) in the middle of
// its hand-off, right after its drain delay. Its HTTP sessions either
// resume on another node (handed off before the kill) or end with a close
// code (the others: their owner is gone); subscribers whose session ended
// reconnect and resume with since. Nothing is delivered twice, nothing
// acknowledged is missed.
func TestClusterKilledMidHandOff(t *testing.T) {
	// Enough sessions on the node that its hand-off takes tens of
	// milliseconds, for the kill to land in the middle.
	const perTransport = 150
	env := startCluster(t, "-hub-history-size", "2000", "-drain-delay", "1s")
	mustPublish(t, env.lb, "feed", 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	target := newFeedGoal(ctx)
	trs := []string{client.XHRPolling, client.XHRStreaming}
	subs, wait := startFeedSubs(t, ctx, env.lb, target, trs, perTransport)
	pub := startPublisher(t, env.lb, "feed", 50*time.Millisecond, 1)
	victim := env.nodes[2]
	if err := victim.p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Kill the node once its hand-off has stored its first records (a
	// watch on Redis, every millisecond; a hundred sessions take tens of
	// milliseconds to hand off), and count what it had stored by then.
	// A fast hand-off can also be over, its records taken and the node
	// gone, between two looks: then the kill cuts nothing (logged below)
	// and what follows must hold all the same.
	deadline := time.Now().Add(30 * time.Second)
watch:
	for env.handOffRecords(victim)[0] == 0 {
		select {
		case <-victim.p.Done():
			break watch
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never began its hand-off", victim.name)
		}
		time.Sleep(time.Millisecond) // a bounded watch, not a synchronisation
	}
	victim.p.Kill()
	out := victim.p.Out.String()
	finished := strings.Contains(out, "drain: sessions handed off")
	counts := env.handOffRecords(victim)
	t.Logf("killed %s with %d sessions handed off and %d not yet", victim.name, counts[0], counts[1])
	// Let the publisher run on a while, so that every session's next
	// requests meet the dead node's records.
	resumed := 0.0
	waitFor(t, 30*time.Second, "the other nodes to resume some of the killed node's sessions", func() bool {
		resumed = env.nodes[0].metric(t, "sockjs_sessions_resumed_total") + env.nodes[1].metric(t, "sockjs_sessions_resumed_total")
		return resumed > 0
	})
	pub.halt()
	maxAcked, acked := pub.max, pub.acked
	target.Store(&feedTarget{seq: maxAcked})
	wait()
	closed := 0
	why := map[string]int{}
	for _, s := range subs {
		if s.err != nil {
			t.Error(s.err)
			continue
		}
		for seq, data := range acked {
			if s.data[seq] != data {
				t.Errorf("%s: seq %d is %q, acknowledged as %s", s.tr, seq, s.data[seq], data)
				break
			}
		}
		if len(s.closes) > 0 {
			closed++
		}
		for k, v := range s.closes {
			why[s.tr+": "+k] += v
		}
	}
	if counts[1] == 0 {
		t.Logf("the kill came after the last hand-off: nothing was cut in the middle this time")
	}
	t.Logf("hand-off finished before the kill: %v; %v sessions resumed elsewhere, %d subscribers saw their session end (%v); %d publishes acknowledged, failed: %v",
		finished, resumed, closed, why, len(acked), pub.failed)
}

// handOffRecords counts, in Redis, the hub sessions n has handed off (not
// yet taken) and those it still owns.
func (e *clusterEnv) handOffRecords(n *node) [2]int {
	v := e.redis.do("EVAL", `local h, o = 0, 0
for _, k in ipairs(redis.call('KEYS', 'sockjsd:owner:/hub/*')) do
  local v = redis.call('GET', k)
  if v and string.sub(v, 1, 8) == 'handoff\n' then h = h + 1 elseif v == ARGV[1] then o = o + 1 end
end
return h * 1000000 + o`, "0", n.url)
	x, err := strconv.Atoi(strings.TrimPrefix(v, ":"))
	if err != nil {
		return [2]int{}
	}
	return [2]int{x / 1000000, x % 1000000}
}

// startFeedSubs runs perTransport subscribers of the feed on each of trs
// through lb, and returns once every one has subscribed; wait returns
// when they have all reached target (or ctx ended). Those still running
// when the test ends are stopped.
func startFeedSubs(t *testing.T, ctx context.Context, lb string, target *feedGoal, trs []string, perTransport int) (subs []*feedSub, wait func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan error, len(trs)*perTransport)
	var wg sync.WaitGroup
	for i := range len(trs) * perTransport {
		s := &feedSub{tr: trs[i%len(trs)], data: map[uint64]string{}, closes: map[string]int{}}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, lb, target, ready)
		}()
	}
	for range subs {
		if err := <-ready; err != nil {
			cancel()
			wg.Wait()
			t.Fatalf("subscribe through the balancer: %v", err)
		}
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return subs, wg.Wait
}
