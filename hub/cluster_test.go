package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var allTransports = []string{client.WebSocket, client.XHRStreaming, client.XHRPolling}

// node is one hub with its own HTTP server, on a shared or own broker.
type node struct {
	url    string
	hub    *hub.Hub
	broker hub.Broker
}

func startNode(t *testing.T, b hub.Broker) *node {
	t.Helper()
	return startNodeObserved(t, b, nil)
}

func startNodeObserved(t *testing.T, b hub.Broker, obs hub.Observer) *node {
	t.Helper()
	h := hub.New(hub.Options{Rules: defaultRules, Broker: b, PingInterval: time.Hour, HistorySize: 100, Observer: obs})
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
	hub.NewAPI(h, hub.APIOptions{}).Mount(r, "/api")
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &node{srv.URL, h, b}
}

type brokerKind struct {
	name string
	// brokers returns n brokers sharing channels: the same memory broker
	// n times, or n Redis brokers on one redis-server.
	brokers func(t *testing.T, n int, hist hub.HistoryOptions) ([]hub.Broker, *testenv.Redis)
}

var memoryKind = brokerKind{"memory", func(t *testing.T, n int, hist hub.HistoryOptions) ([]hub.Broker, *testenv.Redis) {
	b := hub.NewMemoryBroker(hub.MemoryBrokerOptions{History: hist})
	t.Cleanup(func() { b.Close() })
	out := make([]hub.Broker, n)
	for i := range out {
		out[i] = b
	}
	return out, nil
}}

var redisKind = brokerKind{"redis", func(t *testing.T, n int, hist hub.HistoryOptions) ([]hub.Broker, *testenv.Redis) {
	rs := testenv.StartRedis(t)
	out := make([]hub.Broker, n)
	for i := range out {
		out[i] = newRedisBroker(t, rs, hub.RedisBrokerOptions{History: hist, PresenceTTL: 900 * time.Millisecond, Logger: quiet})
	}
	return out, rs
}}

func newRedisBroker(t *testing.T, rs *testenv.Redis, opts hub.RedisBrokerOptions) *hub.RedisBroker {
	t.Helper()
	return newRedisBrokerAt(t, rs.Addr, opts)
}

// newRedisBrokerAt is a broker on the Redis at addr (a proxy's, say).
func newRedisBrokerAt(t *testing.T, addr string, opts hub.RedisBrokerOptions) *hub.RedisBroker {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	b, err := hub.NewRedisBroker(rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); rdb.Close() })
	return b
}

func startNodes(t *testing.T, k brokerKind, n int, hist hub.HistoryOptions) ([]*node, *testenv.Redis) {
	brokers, rs := k.brokers(t, n, hist)
	nodes := make([]*node, n)
	for i, b := range brokers {
		nodes[i] = startNode(t, b)
	}
	return nodes, rs
}

// publish publishes messages {"n":from}..{"n":to} on channel through a
// node's API.
func publish(t *testing.T, nd *node, channel string, from, to int) {
	t.Helper()
	if err := tryPublish(nd, channel, from, to); err != nil {
		t.Fatal(err)
	}
}

func tryPublish(nd *node, channel string, from, to int) error {
	for i := from; i <= to; i++ {
		res, err := http.Post(nd.url+"/api/publish", "application/json", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":{"n":%d}}`, channel, i)))
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("publish %d: %s", i, res.Status)
		}
	}
	return nil
}

// expectSeqs reads messages on channel with seq from..to, in order.
func (h *hubConn) expectSeqs(channel string, from, to uint64) {
	h.t.Helper()
	if from == 1 && h.epochs[channel] == "" {
		// Subscribed before the channel had an epoch (Redis, nothing
		// published yet): the first publish starts one, and the
		// subscriber is told which before message 1.
		if v := h.expect("subscribed", "channel", strconv.Quote(channel), "seq", "0", "recovered", "true"); v["epoch"] == "" {
			h.t.Fatalf("epoch announcement without an epoch: %v", v)
		}
	}
	for want := from; want <= to; want++ {
		h.expect("message", "channel", strconv.Quote(channel), "seq", strconv.FormatUint(want, 10))
	}
}

// waitPresence polls a node's API until the channel's count is want.
func waitPresence(t *testing.T, nd *node, channel string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, v := apiCall(t, "GET", nd.url+"/api/presence?channel="+channel, "")
		if jsonNum(v["subscribers"]) == strconv.Itoa(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence of %s: %v, want %d", channel, v, want)
		}
		time.Sleep(50 * time.Millisecond) // polling another node's heartbeat, bounded by the deadline
	}
}

// TestClusterFanOutAndPresence: a publish through node 1's API reaches
// subscribers on nodes 2 and 3 over every transport, in order; presence
// counts every node, and a dead node's count goes within seconds.
func TestClusterFanOutAndPresence(t *testing.T) {
	brokers, rs := redisKind.brokers(t, 2, hub.HistoryOptions{})
	nodes := []*node{startNode(t, brokers[0]), startNode(t, brokers[1])}
	// Node 3 has a Redis client of its own that can die with it.
	rdb3 := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1, DialTimeout: time.Second})
	b3, err := hub.NewRedisBroker(rdb3, hub.RedisBrokerOptions{PresenceTTL: 900 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b3.Close() })
	nodes = append(nodes, startNode(t, b3))

	var conns []*hubConn
	for _, nd := range nodes[1:] {
		for _, tr := range allTransports {
			c := dialHub(t, nd.url+"/hub", tr)
			c.send(`{"op":"subscribe","channel":"news"}`)
			c.expect("subscribed", "seq", "0")
			conns = append(conns, c)
		}
	}
	waitPresence(t, nodes[0], "news", 6)
	publish(t, nodes[0], "news", 1, 20)
	for _, c := range conns {
		c.expectSeqs("news", 1, 20)
	}
	_, v := apiCall(t, "GET", nodes[0].url+"/api/channels", "")
	if jsonNum(v["channels"]) != `{"news":6}` {
		t.Fatalf("channels across nodes: %v", v)
	}
	// Node 3 dies without a word: its Redis client goes first, so it
	// cannot withdraw its counts; they expire with its heartbeat.
	rdb3.Close()
	start := time.Now()
	waitPresence(t, nodes[0], "news", 3)
	t.Logf("a dead node's 3 subscribers stopped being counted after %v", time.Since(start).Round(10*time.Millisecond))
}

// TestRecovery, on both brokers: a subscriber goes away, 50 messages are
// published, it comes back (on another node) with since and gets exactly
// those 50, then live ones published while it resubscribes, with no gap
// and no duplicate; with since older than history, recovered:false.
func TestRecovery(t *testing.T) {
	for _, k := range []brokerKind{memoryKind, redisKind} {
		t.Run(k.name, func(t *testing.T) {
			nodes, _ := startNodes(t, k, 3, hub.HistoryOptions{Size: 80, TTL: time.Minute})
			for i, tr := range allTransports {
				ch := "chat." + tr
				c := dialHub(t, nodes[i].url+"/hub", tr)
				c.send(`{"op":"subscribe","channel":"` + ch + `"}`)
				sub := c.expect("subscribed", "seq", "0")
				publish(t, nodes[(i+1)%3], ch, 1, 5)
				c.expectSeqs(ch, 1, 5)
				c.c.Close()

				publish(t, nodes[(i+1)%3], ch, 6, 55) // 50 while away
				back := dialHub(t, nodes[(i+2)%3].url+"/hub", tr)
				// Live publishes race the resubscribe.
				var wg sync.WaitGroup
				var liveErr error
				wg.Add(1)
				go func() {
					defer wg.Done()
					liveErr = tryPublish(nodes[i], ch, 56, 75)
				}()
				// The epoch, when the channel had one at subscribe time
				// (the Redis broker's starts with the first publish).
				epoch := ""
				if e, ok := sub["epoch"].(string); ok {
					epoch = fmt.Sprintf(`,"epoch":%q`, e)
				}
				back.send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":5%s}`, ch, epoch))
				back.expect("subscribed", "recovered", "true")
				back.expectSeqs(ch, 6, 75)
				wg.Wait()
				if liveErr != nil {
					t.Fatal(liveErr)
				}

				// Too old: history holds 80 of 90.
				publish(t, nodes[i], ch, 76, 90)
				back.expectSeqs(ch, 76, 90)
				old := dialHub(t, nodes[i].url+"/hub", tr)
				old.send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":2}`, ch))
				old.expect("subscribed", "recovered", "false", "seq", "90")
				// Another epoch: not recoverable either.
				other := dialHub(t, nodes[i].url+"/hub", tr)
				other.send(fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":70,"epoch":"elsewhere"}`, ch))
				other.expect("subscribed", "recovered", "false")
				publish(t, nodes[(i+1)%3], ch, 91, 91)
				for _, c := range []*hubConn{back, old, other} {
					c.expectSeqs(ch, 91, 91)
				}
				// The backends' view of the same history.
				code, v := apiCall(t, "GET", nodes[i].url+"/api/history?channel="+ch+"&since=70&limit=3", "")
				if code != 200 || jsonNum(v["complete"]) != "true" || jsonNum(v["messages"]) != `[{"data":{"n":71},"seq":71},{"data":{"n":72},"seq":72},{"data":{"n":73},"seq":73}]` {
					t.Fatalf("history: %d %v", code, v)
				}
			}
		})
	}
}

// TestRedisRestart: with Redis down, publishes answer 503 and the broker
// says it is down; once Redis is back, the nodes reconnect and resubscribe
// on their own and subscribers get the new messages (announced as a new
// epoch: Redis kept nothing).
func TestRedisRestart(t *testing.T) {
	nodes, rs := startNodes(t, redisKind, 2, hub.HistoryOptions{})
	c := dialHub(t, nodes[1].url+"/hub", client.XHRStreaming)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed")
	publish(t, nodes[0], "news", 1, 3)
	c.expectSeqs("news", 1, 3)

	rs.Stop()
	if code, v := apiCall(t, "POST", nodes[0].url+"/api/publish", `{"channel":"news","data":1}`); code != 503 || v["error"] != "unavailable" {
		t.Fatalf("publish with Redis down: %d %v", code, v)
	}
	waitUp(t, nodes[1].broker.(*hub.RedisBroker), false)
	rs.Start()
	for _, nd := range nodes {
		waitUp(t, nd.broker.(*hub.RedisBroker), true)
	}
	publish(t, nodes[0], "news", 1, 3)
	c.expect("subscribed", "recovered", "false", "seq", "0")
	c.expectSeqs("news", 1, 3)
}

// TestRedisPubSubReconnectCatchesUp: when only a node's pub/sub
// connection breaks, what was published meanwhile comes from the stream,
// in order, once.
func TestRedisPubSubReconnectCatchesUp(t *testing.T) {
	nodes, rs := startNodes(t, redisKind, 2, hub.HistoryOptions{})
	c := dialHub(t, nodes[1].url+"/hub", client.WebSocket)
	c.send(`{"op":"subscribe","channel":"news"}`)
	c.expect("subscribed")
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		publish(t, nodes[0], "news", 20*round+1, 20*round+20)
		c.expectSeqs("news", uint64(20*round+1), uint64(20*round+20))
	}
}

func waitUp(t *testing.T, b *hub.RedisBroker, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for b.Up() != want {
		if time.Now().After(deadline) {
			t.Fatalf("broker Up() stayed %v", !want)
		}
		time.Sleep(20 * time.Millisecond) // polling the broker's own reconnect loop, bounded
	}
}

// TestRedisResubscribeChurn: the only subscriber leaving and a new one
// coming at once must not leave the node unsubscribed at Redis.
func TestRedisResubscribeChurn(t *testing.T) {
	nodes, _ := startNodes(t, redisKind, 1, hub.HistoryOptions{})
	c := dialHub(t, nodes[0].url+"/hub", client.WebSocket)
	for i := 1; i <= 30; i++ {
		c.send(`{"op":"subscribe","channel":"news"}`)
		c.expect("subscribed", "seq", strconv.Itoa(i-1))
		publish(t, nodes[0], "news", i, i)
		c.expectSeqs("news", uint64(i), uint64(i))
		c.send(`{"op":"unsubscribe","channel":"news"}`)
		c.expect("unsubscribed")
	}
}
