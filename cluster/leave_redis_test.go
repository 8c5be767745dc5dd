package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

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

// leaveStacks are the stacks of the goroutines running a keep loop (and
// the store calls it makes) or a Leave.
func leaveStacks() string { return testenv.Stacks("cluster.(*Node).keepLoop", "(*member).Leave") }

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
			rdb := rs.URLClient(q.query)
			logs := &testenv.Logs{}
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

			// The keep loop reads the generation every CheckInterval
			// (10 ms here): it soon sends Redis a command it will not
			// read.
			rs.FreezeQueued()

			testenv.ReturnsWithin(t, "Shutdown", leaveBound, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tn.h.Shutdown(ctx)
			}, func() { _ = rdb.Close() }, leaveStacks) // closing the client ends the reads the loop waits for
			logged := logs.Len()

			// Redis answers again: the call Leave stopped waiting for
			// returns, and the loop ends without a word.
			rs.Thaw()
			testenv.WaitStacksGone(t, "the keep loop", "cluster.(*Node).keepLoop", "(*member).Leave")
			if late := logs.Since(logged); len(late) > 0 {
				t.Fatalf("the node logged after Leave returned: %q", late)
			}
		})
	}
}
