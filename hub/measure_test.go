package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
	"github.com/sockjsd/sockjsd/hub"
)

// TestMeasureCluster logs, in one run so that the ratios hold on a loaded
// machine: the Redis round trip a publish costs (against the memory
// broker), and fan-out to 300 subscribers (a third per transport) on one
// node against spread over three nodes on Redis.
func TestMeasureCluster(t *testing.T) {
	if raceEnabled {
		t.Skip("a measurement: the race detector would distort it")
	}
	ctx := context.Background()
	rsNodes, _ := startNodes(t, redisKind, 3, hub.HistoryOptions{})
	mem := hub.NewMemoryBroker(hub.MemoryBrokerOptions{})
	defer mem.Close()

	perPublish := func(b hub.Broker) time.Duration {
		const n = 2000
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := b.Publish(ctx, "rtt", json.RawMessage(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start) / n
	}
	redisRTT, memRTT := perPublish(rsNodes[0].broker), perPublish(mem)
	t.Logf("publish, one at a time: Redis broker %v, memory broker %v (%.0fx)", redisRTT, memRTT, float64(redisRTT)/float64(memRTT))

	one := fanOut(t, rsNodes[:1], "chat.fan1")
	three := fanOut(t, rsNodes, "chat.fan3")
	t.Logf("fan-out, 300 subscribers x 500 publishes: 1 node %s; 3 nodes %s; deliveries/s ratio 3/1 = %.2f",
		one, three, three.rate/one.rate)
}

type fanResult struct {
	rate     float64 // deliveries per second
	p50, p99 time.Duration
}

func (r fanResult) String() string {
	return fmt.Sprintf("%.0f deliveries/s, publish-to-delivery p50 %v p99 %v", r.rate, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
}

// fanOut: 300 subscribers spread over nodes; 500 publishes through the
// first node's broker, paced in bursts of 10; every subscriber must get
// every message in order.
func fanOut(t *testing.T, nodes []*node, channel string) fanResult {
	const subs, msgs = 300, 500
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * subs}}
	conns := make([]*client.Conn, subs)
	for i := range conns {
		c, err := client.Dial(context.Background(), nodes[i%len(nodes)].url+"/hub", client.Options{Transports: []string{allTransports[(i/len(nodes))%3]}, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.Send(`{"op":"subscribe","channel":"` + channel + `"}`)
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := c.Recv(rctx)
		cancel()
		if err != nil || !strings.Contains(m, `"subscribed"`) {
			t.Fatalf("subscribe: %q %v", m, err)
		}
		conns[i] = c
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, subs)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			mine := make([]time.Duration, 0, msgs)
			for want := uint64(1); want <= msgs; {
				m, err := c.Recv(ctx)
				if err != nil {
					errs <- err
					return
				}
				var v struct {
					Op   string
					Seq  uint64
					Data struct{ T int64 }
				}
				_ = json.Unmarshal([]byte(m), &v)
				if v.Op != "message" {
					continue
				}
				if v.Seq != want {
					errs <- fmt.Errorf("seq %d, want %d", v.Seq, want)
					return
				}
				mine = append(mine, time.Since(time.Unix(0, v.Data.T)))
				want++
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	start := time.Now()
	for i := 0; i < msgs; i++ {
		data := `{"T":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`
		if _, err := nodes[0].hub.Publish(context.Background(), channel, json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(2 * time.Millisecond) // pacing the load, not synchronisation
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(lat)
	return fanResult{float64(subs*msgs) / elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100]}
}
