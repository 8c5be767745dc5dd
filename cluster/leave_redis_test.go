package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/transport"
)

// leaveStoreTimeout is the StoreTimeout of the Leave tests: Leave waits
// at most that for the keep loop, then at most that for the release.
const leaveStoreTimeout = time.Second

// leaveBound is how long Shutdown (and so Leave) may take whatever Redis
// does: twice StoreTimeout (Leave's two waits), the third one slack for
// a loaded machine.
const leaveBound = 3 * leaveStoreTimeout

// recordedLogs keeps a node's log records, for checking that nothing is
// logged once Leave returned.
type recordedLogs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordedLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordedLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *recordedLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordedLogs) WithGroup(string) slog.Handler      { return l }

func (l *recordedLogs) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs[n:]...)
}

func (l *recordedLogs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// leaveStacks are the stacks of the goroutines running a keep loop (and
// the store calls it makes) or a Leave.
func leaveStacks() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cluster.(*Node).keepLoop") || strings.Contains(g, "(*member).Leave") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestLeaveRedisFrozen: with Redis stopped by SIGSTOP (the kernel takes
// the commands, nothing answers) while the keep loop waits for it, the
// service's Shutdown, which leaves the cluster, returns within
// leaveBound, with a client built as cmd/server builds it from a
// redis:// URL but without ContextTimeoutEnabled: go-redis's default
// read timeout, and none at all (read_timeout=-1). Once Redis answers
// again the keep loop returns without logging anything or acting on
// what it got.
func TestLeaveRedisFrozen(t *testing.T) {
	for _, q := range []struct{ name, query string }{
		{"default timeouts", ""},
		{"read_timeout=-1", "?read_timeout=-1"},
	} {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			opts, err := redis.ParseURL(rs.URL + q.query)
			if err != nil {
				t.Fatal(err)
			}
			if opts.ContextTimeoutEnabled {
				t.Fatal("the test's client must not end reads at context deadlines")
			}
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			logs := &recordedLogs{}
			tn := startNodesWith(t, 1, NewRedisStore(rdb, RedisStoreOptions{}), func(_ *transport.Options, c *Options) {
				c.StoreTimeout = leaveStoreTimeout
				c.Logger = slog.New(logs)
			})[0]
			for i := range 5 {
				sess := fmt.Sprintf("/echo/000/s%d", i)
				if code, body := post(t, tn.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
					t.Fatalf("open %s: %d %q", sess, code, body)
				}
			}
			if v, err := rdb.Get(context.Background(), DefaultKeyPrefix+"/echo/s0").Result(); err != nil || v != tn.srv.URL {
				t.Fatalf("owner record of s0: %q, %v; want this node", v, err)
			}

			rs.Freeze()
			// The keep loop reads the generation every CheckInterval
			// (10 ms here): it soon sends Redis a command it will not
			// read.
			deadline := time.Now().Add(10 * time.Second)
			for rs.Unread() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no command waits for the frozen Redis after 10s")
				}
				time.Sleep(5 * time.Millisecond) // polling the kernel's queues, bounded by the deadline
			}

			start := time.Now()
			done := make(chan time.Duration, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tn.h.Shutdown(ctx)
				done <- time.Since(start)
			}()
			var took time.Duration
			select {
			case took = <-done:
				t.Logf("Shutdown took %v", took.Round(time.Millisecond))
			case <-time.After(leaveBound):
				t.Errorf("Shutdown did not return within %v; the keep loop and Leave:\n%s", leaveBound, leaveStacks())
				_ = rdb.Close() // ends the reads the loop waits for
				select {
				case took = <-done:
					t.Logf("Shutdown returned %v after it was called, once the client was closed", took.Round(time.Millisecond))
				case <-time.After(30 * time.Second):
					t.Fatalf("Shutdown did not return within 30s, the client closed too; the keep loop and Leave:\n%s", leaveStacks())
				}
			}
			logged := logs.len()

			// Redis answers again: the call Leave stopped waiting for
			// returns, and the loop ends without a word.
			rs.Thaw()
			deadline = time.Now().Add(10 * time.Second)
			for leaveStacks() != "" {
				if time.Now().After(deadline) {
					t.Fatalf("the keep loop outlives Leave and a thawed Redis by 10s:\n%s", leaveStacks())
				}
				time.Sleep(5 * time.Millisecond) // polling the goroutines, bounded by the deadline
			}
			if late := logs.since(logged); len(late) > 0 {
				t.Fatalf("the node logged after Leave returned: %q", late)
			}
		})
	}
}
