package cluster

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chaosSeedEnv overrides the chaos test's random seed (the order of its
// events and the nodes they hit), to replay a run.
const chaosSeedEnv = "SOCKJSD_CHAOS_SEED"

const (
	chaosChannels     = 4                      // subscribers and publishes spread over these
	chaosPublishers   = 8                      // per node, each one publish in flight at most
	chaosPublishEvery = 120 * time.Millisecond // per publisher: 3 nodes × 8 × 8.3/s = 200/s in all
	chaosHistory      = 150                    // per channel: 3-5 s, so seq 1 soon leaves it (a pub/sub gap must be caught up from the middle)
	chaosEventPace    = 3 * time.Second        // one event starts at most this often
	chaosReadyWait    = 20 * time.Second       // the cluster must be ready again within this after an event
	chaosConverge     = 20 * time.Second       // subscribers must reach the last publish within this
)

// chaosAck is an acknowledged publish: 200 with its seq. life is the
// Redis life it was made in (0 the first, +1 per restart), -1 when a
// restart overlapped the request.
type chaosAck struct {
	channel string
	seq     uint64
	data    string
	life    int
}

// redisLives tells which Redis life a request ran in: restarts begun and
// restarts completed.
type redisLives struct{ stops, starts atomic.Int64 }

// TestClusterChaos: 300 hub subscribers (a third per transport of the Go
// client) follow four channels through haproxy, resuming with since after
// every lost session, while publishers post about 200 messages/s through
// every node's API, recording each acknowledged publish. Meanwhile, in a
// seeded random order ($SOCKJSD_CHAOS_SEED replays one), Redis's pub/sub
// connections are killed, redis-server restarts empty (at once, and
// after 2 s down), a node is frozen
// for 3 s (SIGSTOP, SIGCONT) and a node is killed with -9 and started
// again; after each event the cluster must be ready again within 20 s.
// Then every subscriber must have each acknowledged publish of its channel
// exactly once and in order, unless an explicit recovered:false covers it;
// no session may show a second open frame unless its owner was killed
// meanwhile (else two nodes served it); and the test's goroutines return
// to where they were.
func TestClusterChaos(t *testing.T) {
	need(t, "redis-server", "haproxy")
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(chaosSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("$%s=%q: %v", chaosSeedEnv, v, err)
		}
	}
	t.Logf("chaos seed %d (replay with %s=%d)", seed, chaosSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32|1))

	// Owner records outlive a 3 s freeze: a stopped node is slow, not gone
	// (docs/cluster.md), and must find its sessions still its own when it
	// resumes. A killed node's sessions are taken over at once anyway:
	// nothing listens at its address.
	//
	// Sessions outlive a receiving request held up by a frozen node in its
	// path (3 s, then the backlog): with the default 5 s disconnect delay
	// such a session may expire, and its client's next request opens a
	// new one under the same id. That is the protocol's "session lost",
	// not two nodes serving it, but from outside it looks the same (a
	// second open frame), so the delay is long enough here that a second
	// open can only mean a second copy or a killed owner.
	env := startCluster(t, "-hub-history-size", strconv.Itoa(chaosHistory), "-cluster-owner-ttl", "10s", "-disconnect-delay", "20s")
	t0 := time.Now()
	since := func(at time.Time) string { return fmt.Sprintf("+%.2fs", at.Sub(t0).Seconds()) }
	closeIdle := func() {
		hubHTTP.CloseIdleConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	}
	closeIdle()
	baseGoroutines := runtime.NumGoroutine()

	var lives redisLives
	var acksMu sync.Mutex
	acks := map[string][]chaosAck{}
	ackByData := map[string]chaosAck{}
	addAck := func(a chaosAck) {
		acksMu.Lock()
		acks[a.channel] = append(acks[a.channel], a)
		ackByData[a.data] = a
		acksMu.Unlock()
	}
	// Each channel's epoch starts with its first publish: the subscribers
	// get it with their subscribe, to resume with.
	channels := make([]string, chaosChannels)
	for i := range channels {
		channels[i] = fmt.Sprintf("chaos%d", i)
		data := fmt.Sprintf(`{"p":-1,"n":%d}`, i)
		r := apiDo(env.lb+"/api/publish", fmt.Sprintf(`{"channel":%q,"data":%s}`, channels[i], data))
		if r.err != nil || r.code != 200 || jsonOf(r.body["seq"]) != "1" {
			t.Fatalf("first publish on %s: %d %v %v", channels[i], r.code, r.body, r.err)
		}
		addAck(chaosAck{channels[i], 1, data, 0})
	}

	// Subscribers: their own context, cancelled when they are given up on.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	targets := map[string]*feedGoal{}
	for _, ch := range channels {
		targets[ch] = newFeedGoal(ctx)
	}
	var subs []*feedSub
	var wg sync.WaitGroup
	ready := make(chan error, 3*100)
	for i := range 3 * 100 {
		s := &feedSub{
			tr: hubTransports[i%3], channel: channels[(i/3)%len(channels)], lenient: true, maxDials: 300,
			closes: map[string]int{}, start: t0,
		}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, env.lb, targets[s.channel], ready)
		}()
	}
	subsDone := make(chan struct{})
	go func() { wg.Wait(); close(subsDone) }()
	defer func() { cancel(); <-subsDone }()
	subscribeBy := time.NewTimer(60 * time.Second)
	defer subscribeBy.Stop()
	for range subs {
		select {
		case err := <-ready:
			if err != nil {
				t.Fatalf("subscribe through the balancer: %v", err)
			}
		case <-subscribeBy.C:
			t.Fatal("300 subscribes took over 60s")
		}
	}
	t.Logf("%s: %d subscribers through the balancer on %d channels", since(time.Now()), len(subs), len(channels))

	// Publishers: a few per node, each on its node's API, paced, until
	// told to stop or 120 s passed.
	stopPublishing := make(chan struct{})
	var pubWG sync.WaitGroup
	var refusedMu sync.Mutex
	refused := map[string]int{}
	for i, n := range env.nodes {
		for w := range chaosPublishers {
			pubWG.Add(1)
			go func() {
				defer pubWG.Done()
				tick := time.NewTicker(chaosPublishEvery) // the publishers' pace, not a synchronisation
				defer tick.Stop()
				end := time.NewTimer(120 * time.Second)
				defer end.Stop()
				for k := 0; ; k++ {
					select {
					case <-stopPublishing:
						return
					case <-end.C:
						return
					case <-tick.C:
					}
					ch := channels[(k+w)%len(channels)]
					data := fmt.Sprintf(`{"p":%d,"w":%d,"n":%d}`, i, w, k)
					started := lives.starts.Load()
					r := apiDo(n.url+"/api/publish", fmt.Sprintf(`{"channel":%q,"data":%s}`, ch, data))
					if r.err != nil || r.code != 200 {
						refusedMu.Lock()
						refused[fmt.Sprintf("%s: %d %v", n.name, r.code, r.body["error"])]++
						refusedMu.Unlock()
						continue
					}
					life := int(started)
					if lives.stops.Load() != started {
						life = -1
					}
					addAck(chaosAck{ch, uint64(r.body["seq"].(float64)), data, life})
				}
			}()
		}
	}
	stopPublishers := sync.OnceFunc(func() { close(stopPublishing); pubWG.Wait() })
	defer stopPublishers()

	// The chaos: each kind of event, more than once, in a random order.
	kinds := []string{"pubsub-kill", "pubsub-kill", "pubsub-outage", "pubsub-outage", "redis-restart", "redis-restart", "redis-outage",
		"node-stop", "node-stop", "node-kill", "node-kill"}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	kills := map[string][]time.Time{} // when each node was killed
	var timeline []string
	pace := time.NewTicker(chaosEventPace) // the chaos's pace, not a synchronisation
	defer pace.Stop()
	for _, kind := range kinds {
		<-pace.C
		n := env.nodes[rng.IntN(len(env.nodes))]
		at := time.Now()
		what := kind
		switch kind {
		case "pubsub-kill":
			what += " (" + env.redis.do("CLIENT", "KILL", "TYPE", "pubsub") + " connections)"
		case "pubsub-outage":
			// The pub/sub connections are killed and new connections
			// refused for half a second: the nodes' subscriptions stay
			// down that long (a plain kill is over in a millisecond, as
			// go-redis reconnects at once), and must catch up after.
			c, err := env.redis.dial()
			if err != nil {
				t.Fatalf("redis-server: %v", err)
			}
			what += " (" + c.do("CONFIG", "SET", "maxclients", "1") + ", " + c.do("CLIENT", "KILL", "TYPE", "pubsub") + " connections"
			outage := time.NewTimer(500 * time.Millisecond) // the outage's length, not a synchronisation
			<-outage.C
			what += ", " + c.do("CONFIG", "SET", "maxclients", "10000") + ")"
			c.Close()
		case "redis-restart":
			lives.stops.Add(1)
			env.redis.Restart()
			lives.starts.Add(1)
		case "redis-outage":
			// Down for 2 s, then back empty: requests for sessions a
			// node does not hold wait for it meanwhile.
			lives.stops.Add(1)
			env.redis.Stop()
			down := time.NewTimer(2 * time.Second) // the outage's length, not a synchronisation
			<-down.C
			env.redis.Start()
			lives.starts.Add(1)
		case "node-stop":
			what += " " + n.name
			pid := n.p.Cmd.Process.Pid
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("SIGSTOP %s: %v", n.name, err)
			}
			frozen := time.NewTimer(3 * time.Second) // the freeze's length, not a synchronisation
			<-frozen.C
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatalf("SIGCONT %s: %v", n.name, err)
			}
		case "node-kill":
			what += " " + n.name
			kills[n.name] = append(kills[n.name], time.Now())
			n.p.Kill()
			down := time.NewTimer(time.Second) // the outage's length, not a synchronisation
			<-down.C
			env.startNode(n)
		}
		readyAt, ok := chaosReady(env, chaosReadyWait)
		line := fmt.Sprintf("%s %s, ready again after %v", since(at), what, readyAt.Sub(at).Round(10*time.Millisecond))
		if !ok {
			line = fmt.Sprintf("%s %s: NOT ready again within %v", since(at), what, chaosReadyWait)
			t.Errorf("after %s the cluster was not ready again within %v", what, chaosReadyWait)
		}
		t.Log(line)
		timeline = append(timeline, line)
	}
	// A calm end: the last publishes come after the last event, so every
	// subscriber has something to reach in the final Redis life.
	<-pace.C
	stopPublishers()
	t.Logf("publishes not acknowledged, by node and answer: %v", refused)
	nAcks := 0
	for _, ch := range channels {
		nAcks += len(acks[ch])
		r := apiDo(env.nodes[0].url+"/api/history?limit=1&since=0&channel="+ch, "")
		if r.err != nil || r.code != 200 {
			t.Fatalf("history of %s: %d %v %v", ch, r.code, r.body, r.err)
		}
		targets[ch].Store(&feedTarget{epoch: r.body["epoch"].(string), seq: uint64(r.body["seq"].(float64))})
	}
	t.Logf("%s: %d publishes acknowledged (%.0f/s); waiting up to %v for every subscriber to reach the last",
		since(time.Now()), nAcks, float64(nAcks)/time.Since(t0).Seconds(), chaosConverge)
	converge := time.AfterFunc(chaosConverge, cancel)
	<-subsDone
	converge.Stop()
	t.Logf("%s: subscribers done", since(time.Now()))

	checkChaos(t, subs, acks, ackByData, kills, since)
	if t.Failed() {
		t.Logf("chaos timeline (seed %d):\n  %s", seed, strings.Join(timeline, "\n  "))
	}

	// Every goroutine of the subscribers and publishers is gone (bounded
	// wait: connections close asynchronously).
	deadline := time.Now().Add(15 * time.Second)
	for {
		closeIdle()
		if runtime.NumGoroutine() <= baseGoroutines {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines 15s after the end, %d before the subscribers:\n%s",
				runtime.NumGoroutine(), baseGoroutines, tail(string(buf[:runtime.Stack(buf, true)]), 20000))
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the count, bounded by the deadline
	}
	t.Logf("whole test %v after the cluster started", time.Since(t0).Round(100*time.Millisecond))
}

// chaosReady polls until every node's /readyz and the balancer's /healthz
// answer 200, or d passes; it returns when it was ready and whether it was.
func chaosReady(env *clusterEnv, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		ok := status(env.lb+"/healthz") == 200
		for _, n := range env.nodes {
			ok = ok && status(n.url+"/readyz") == 200
		}
		if ok {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Now(), false
		}
		time.Sleep(20 * time.Millisecond) // polling readiness, bounded by the deadline
	}
}

// chaosFinding is what is wrong with one subscriber.
type chaosFinding struct {
	kind, what string
}

// checkChaos checks what every subscriber saw against the acknowledged
// publishes and the kills, reports per transport, and fails the test with
// each subscriber's first finding.
func checkChaos(t *testing.T, subs []*feedSub, acks map[string][]chaosAck, ackByData map[string]chaosAck,
	kills map[string][]time.Time, since func(time.Time) string) {
	t.Helper()
	// Which Redis life each epoch is: the life of the acknowledged
	// publishes delivered in it (by majority, should a subscriber have
	// mistaken a new epoch for the old one).
	votes := map[string]map[int]int{}
	for _, s := range subs {
		for _, ev := range s.events {
			if a, ok := ackByData[ev.data]; ok && !ev.reset && a.life >= 0 {
				if votes[ev.epoch] == nil {
					votes[ev.epoch] = map[int]int{}
				}
				votes[ev.epoch][a.life]++
			}
		}
	}
	epochLife := map[string]int{}
	for e, v := range votes {
		best := -1
		for life, n := range v {
			if best < 0 || n > v[best] || n == v[best] && life < best {
				best = life
			}
		}
		epochLife[e] = best
	}

	type stats struct {
		delivered, resets, reconnects, dialFailed, lostOK, servedTwice, bad int
		gaps, gapped, backwards, missing, dups                              int
	}
	per := map[string]*stats{}
	kindCount := map[string]int{}
	examples := map[string][]string{} // a few findings of each kind, whatever came first
	var firsts []string
	for i, s := range subs {
		st := per[s.tr]
		if st == nil {
			st = &stats{}
			per[s.tr] = st
		}
		st.gaps += s.gaps
		st.gapped += int(s.gapped)
		st.backwards += s.backwards
		var found []chaosFinding
		for _, a := range s.anomalies {
			kind := "protocol"
			switch {
			case strings.Contains(a, "unannounced"):
				kind = "unannounced gap"
			case strings.Contains(a, "again after"):
				kind = "duplicate or backwards seq"
			}
			found = append(found, chaosFinding{kind, a})
		}
		// Delivered: each publish at most once, at its acknowledged seq.
		type lifeState struct {
			upTo uint64
			got  map[uint64]string
		}
		lifeOf := map[int]*lifeState{}
		firstLife, lastLife := -1, -1
		seen := map[string]uint64{}
		for k, ev := range s.events {
			if ev.reset {
				if k > 0 {
					st.resets++
				}
			} else {
				st.delivered++
				if prev, dup := seen[ev.data]; dup {
					st.dups++
					found = append(found, chaosFinding{"duplicate delivery", fmt.Sprintf("%s %s: publish %s delivered twice (seq %d, then seq %d)", s.tr, since(ev.at), ev.data, prev, ev.seq)})
				}
				seen[ev.data] = ev.seq
				if a, ok := ackByData[ev.data]; ok && a.seq != ev.seq {
					found = append(found, chaosFinding{"wrong seq", fmt.Sprintf("%s %s: publish %s delivered as seq %d, acknowledged as seq %d", s.tr, since(ev.at), ev.data, ev.seq, a.seq)})
				}
			}
			life, ok := epochLife[ev.epoch]
			if !ok {
				continue
			}
			if firstLife < 0 {
				firstLife = life
			}
			lastLife = max(lastLife, life)
			ls := lifeOf[life]
			if ls == nil {
				ls = &lifeState{got: map[uint64]string{}}
				lifeOf[life] = ls
			}
			ls.upTo = max(ls.upTo, ev.seq)
			if !ev.reset {
				ls.got[ev.seq] = ev.data
			}
		}
		// Each acknowledged publish of its channel: delivered, or covered
		// by the subscriber's start or a recovered:false.
		missing := 0
		var firstMissing string
		for _, a := range acks[s.channel] {
			if _, ok := seen[a.data]; ok || a.life < 0 || firstLife < 0 || a.life < firstLife || a.life < lastLife {
				continue
			}
			var why string
			if ls := lifeOf[a.life]; ls == nil {
				why = "in a Redis life it never saw"
			} else if d, ok := ls.got[a.seq]; ok {
				why = fmt.Sprintf("its seq came with %s", d)
			} else if a.seq > ls.upTo {
				why = fmt.Sprintf("it stopped at seq %d", ls.upTo)
			} else {
				continue // before a recovered:false, or in a gap reported above
			}
			if missing++; missing == 1 {
				firstMissing = fmt.Sprintf("acknowledged seq %d (%s, Redis life %d) never delivered: %s", a.seq, a.data, a.life, why)
			}
		}
		st.missing += missing
		if missing > 0 {
			found = append(found, chaosFinding{"acknowledged publish missing", fmt.Sprintf("%s: %s (%d such)", s.tr, firstMissing, missing)})
		}
		if s.err != nil {
			found = append(found, chaosFinding{"did not converge", s.err.Error()})
		}
		// A second open frame: the client saw a second session under the
		// same id. Fine only if the owner (the node that sent the first)
		// was killed in between: else two live nodes served one id. In
		// between starts when the first open's request went out, not when
		// the open was read: the owner may have written it and died.
		for _, l := range s.lost {
			first, second := l.opens[0], l.opens[1]
			killed := slices.ContainsFunc(kills[first.server], func(k time.Time) bool { return k.After(first.sent) && !k.After(second.at) })
			if killed {
				st.lostOK++
				continue
			}
			st.servedTwice++
			found = append(found, chaosFinding{"session served twice", fmt.Sprintf("%s: session %s opened by %s at %s (its request sent at %s), opened again by %s at %s, %s not killed in between",
				s.tr, l.sid, cmp.Or(first.server, "?"), since(first.at), since(first.sent), cmp.Or(second.server, "?"), since(second.at), cmp.Or(first.server, "?"))})
		}
		for k, v := range s.closes {
			switch k {
			case "dial failed", "subscribe unavailable":
				st.dialFailed += v
			default:
				st.reconnects += v
			}
		}
		if len(found) > 0 {
			st.bad++
			kinds := map[string]bool{}
			var names []string
			for _, f := range found {
				if !kinds[f.kind] {
					kinds[f.kind] = true
					kindCount[f.kind]++
					names = append(names, f.kind)
					if len(examples[f.kind]) < 8 {
						examples[f.kind] = append(examples[f.kind], fmt.Sprintf("subscriber %d (%s): %s", i, s.channel, f.what))
					}
				}
			}
			firsts = append(firsts, fmt.Sprintf("subscriber %d (%s, %s): %s [%d findings: %s]", i, s.tr, s.channel, found[0].what, len(found), strings.Join(names, ", ")))
		}
	}
	for _, tr := range hubTransports {
		st := per[tr]
		t.Logf("%-13s delivered %d, recovered:false resets %d, reconnects %d (dial/subscribe retries %d), sessions lost with their killed owner %d; "+
			"FINDINGS: sessions served twice %d, unannounced gaps %d (%d messages), seqs seen again %d, publishes delivered twice %d, acknowledged publishes never delivered %d; %d subscribers with findings",
			tr, st.delivered, st.resets, st.reconnects, st.dialFailed, st.lostOK,
			st.servedTwice, st.gaps, st.gapped, st.backwards, st.dups, st.missing, st.bad)
	}
	if len(firsts) == 0 {
		return
	}
	var kinds []string
	for k, v := range kindCount {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(kinds)
	const show = 100
	more, bad := "", len(firsts)
	if len(firsts) > show {
		more = fmt.Sprintf("\n  … and %d more", len(firsts)-show)
		firsts = firsts[:show]
	}
	t.Errorf("%d of %d subscribers saw the cluster break a promise (subscribers per kind of finding: %s); each one's first finding:\n  %s%s",
		bad, len(subs), strings.Join(kinds, ", "), strings.Join(firsts, "\n  "), more)
	for _, k := range slices.Sorted(maps.Keys(examples)) {
		t.Logf("first findings of kind %q:\n  %s", k, strings.Join(examples[k], "\n  "))
	}
}
