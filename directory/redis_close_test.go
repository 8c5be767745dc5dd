package directory_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// closeBound is how long Close may take whatever Redis does: its one
// bounded wait (1 s), and a second of slack for a loaded machine.
const closeBound = 2 * time.Second

// dirStacks are the stacks of the goroutines running a directory's loop
// (and the Redis calls it makes) or its Close.
func dirStacks() string {
	return testenv.Stacks("directory.(*Redis).loop", "directory.(*Redis).Close")
}

// TestRedisDirectoryCloseRedisFrozen: with Redis stopped by SIGSTOP (the
// kernel takes the commands, nothing answers) while the refresh and
// reaping loop waits for it, Close returns within closeBound, with a
// client built from a redis:// URL without ContextTimeoutEnabled:
// go-redis's default read timeout, and none at all (read_timeout=-1).
// Once Redis answers again (or, closeClient, once the caller closed the
// client after Close, failing the call the loop waits for) the loop
// returns without logging anything, counting drops or sending anything
// more.
func TestRedisDirectoryCloseRedisFrozen(t *testing.T) {
	for _, q := range []struct {
		name, query string
		closeClient bool
	}{
		{"default timeouts", "", false},
		{"read_timeout=-1", "?read_timeout=-1", false},
		{"read_timeout=-1, client closed after Close", "?read_timeout=-1", true},
	} {
		t.Run(q.name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			rdb := rs.URLClient(q.query)
			logs := &testenv.Logs{}
			d, err := directory.NewRedis(rdb, directory.RedisOptions{
				Prefix: "c:", Node: "a", TTL: 600 * time.Millisecond, ReapInterval: 20 * time.Millisecond,
				OfflineDelay: 50 * time.Millisecond, Events: true, Logger: slog.New(logs),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Close() })
			ctx := context.Background()
			for i := range 20 {
				if err := d.Add(ctx, directory.Entry{ID: fmt.Sprint("s", i), User: fmt.Sprint("u", i%5), Service: "/echo"}); err != nil {
					t.Fatal(err)
				}
			}
			// Two closed: their users' offlines are due to the reaper.
			for _, id := range []string{"s0", "s5"} {
				if err := d.Remove(ctx, id, 3000, "Go away!"); err != nil {
					t.Fatal(err)
				}
			}
			if e, ok, err := d.Lookup(ctx, "s1"); err != nil || !ok || e.Node != "a" {
				t.Fatalf("Lookup(s1) = %+v, %v, %v; want this node's record", e, ok, err)
			}

			// The loop reaps every 20 ms and refreshes every 200 ms: it
			// soon sends Redis a command it will not read.
			rs.FreezeQueued()

			start := time.Now()
			testenv.ReturnsWithin(t, "Close", closeBound, func() { _ = d.Close() },
				func() { _ = rdb.Close() }, dirStacks) // closing the client ends the reads the loop waits for
			logged, dropped := logs.Len(), d.Dropped()

			// The call Close stopped waiting for fails (the client is
			// closed) or Redis answers it: the loop ends without a word.
			if q.closeClient {
				_ = rdb.Close()
			}
			rs.Thaw()
			testenv.WaitStacksGone(t, "the directory's loop", "directory.(*Redis).loop", "directory.(*Redis).Close")
			t.Logf("the loop returned %v after Close was called", time.Since(start).Round(time.Millisecond))
			if late := logs.Since(logged); len(late) > 0 {
				t.Fatalf("the directory logged after Close returned: %q", late)
			}
			if n := d.Dropped(); n != dropped {
				t.Fatalf("Dropped() went from %d to %d after Close returned", dropped, n)
			}
			if err := d.Add(ctx, directory.Entry{ID: "late"}); err != directory.ErrClosed {
				t.Fatalf("Add after Close: %v, want ErrClosed", err)
			}
		})
	}
}
