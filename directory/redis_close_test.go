package directory_test

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

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/internal/testenv"
)

// closeBound is how long Close may take whatever Redis does: its one
// bounded wait (1 s), and a second of slack for a loaded machine.
const closeBound = 2 * time.Second

// closeLogs keeps a directory's log records, for checking that nothing
// is logged once Close returned.
type closeLogs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *closeLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *closeLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *closeLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *closeLogs) WithGroup(string) slog.Handler      { return l }

func (l *closeLogs) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs[n:]...)
}

func (l *closeLogs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// dirStacks are the stacks of the goroutines running a directory's loop
// (and the Redis calls it makes) or its Close.
func dirStacks() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "directory.(*Redis).loop") || strings.Contains(g, "directory.(*Redis).Close") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
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
			opts, err := redis.ParseURL(rs.URL + q.query)
			if err != nil {
				t.Fatal(err)
			}
			if opts.ContextTimeoutEnabled {
				t.Fatal("the test's client must not end reads at context deadlines")
			}
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			logs := &closeLogs{}
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

			rs.Freeze()
			// The loop reaps every 20 ms and refreshes every 200 ms: it
			// soon sends Redis a command it will not read.
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
				_ = d.Close()
				done <- time.Since(start)
			}()
			var took time.Duration
			select {
			case took = <-done:
				t.Logf("Close took %v", took.Round(time.Millisecond))
			case <-time.After(closeBound):
				t.Errorf("Close did not return within %v; the loop and Close:\n%s", closeBound, dirStacks())
				_ = rdb.Close() // ends the reads the loop waits for
				select {
				case took = <-done:
					t.Logf("Close returned %v after it was called, once the client was closed", took.Round(time.Millisecond))
				case <-time.After(30 * time.Second):
					t.Fatalf("Close did not return within 30s, the client closed too; the loop and Close:\n%s", dirStacks())
				}
			}
			logged, dropped := logs.len(), d.Dropped()

			// The call Close stopped waiting for fails (the client is
			// closed) or Redis answers it: the loop ends without a word.
			if q.closeClient {
				_ = rdb.Close()
			}
			rs.Thaw()
			deadline = time.Now().Add(10 * time.Second)
			for dirStacks() != "" {
				if time.Now().After(deadline) {
					t.Fatalf("the loop outlives Close and a thawed Redis by 10s:\n%s", dirStacks())
				}
				time.Sleep(5 * time.Millisecond) // polling the goroutines, bounded by the deadline
			}
			t.Logf("the loop returned %v after Close was called", time.Since(start).Round(time.Millisecond))
			if late := logs.since(logged); len(late) > 0 {
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
