package testenv

// Helpers for tests of shutdown paths: what was logged, which goroutines
// are left, and whether a call returns within its bound.

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logs is a slog.Handler that keeps every record's message, for tests
// that check what a component logged, or that it logged nothing after
// some point.
type Logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}

func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *Logs) WithGroup(string) slog.Handler      { return l }

// Len is how many records were logged so far.
func (l *Logs) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// Since is the messages of the records logged after the first n.
func (l *Logs) Since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs[n:]...)
}

// Stacks is the stacks of the goroutines whose stack mentions any of
// funcs, for a test's failure message when something does not return.
func Stacks(funcs ...string) string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}

// ReturnsWithin runs f (what it is: "Close", "Shutdown") on a goroutine
// and waits up to bound for it to return. Past bound the test fails with
// stacks(), unblock is called (closing the client whose reads f waits
// for) and f gets 30 s more, past which the test stops. It returns how
// long f took.
func ReturnsWithin(t testing.TB, what string, bound time.Duration, f, unblock func(), stacks func() string) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		f()
		done <- time.Since(start)
	}()
	select {
	case took := <-done:
		t.Logf("%s took %v", what, took.Round(time.Millisecond))
		return took
	case <-time.After(bound):
		t.Errorf("%s did not return within %v:\n%s", what, bound, stacks())
	}
	unblock()
	select {
	case took := <-done:
		t.Logf("%s returned %v after it was called, once unblocked", what, took.Round(time.Millisecond))
		return took
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return within 30s, unblocked too:\n%s", what, stacks())
		return 0
	}
}

// WaitStacksGone waits (10 s at most, then fails the test) until no
// goroutine's stack mentions any of funcs: what a component started, and
// any call its Close stopped waiting for, has ended.
func WaitStacksGone(t testing.TB, what string, funcs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for Stacks(funcs...) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("%s outlives its end by 10s:\n%s", what, Stacks(funcs...))
		}
		time.Sleep(5 * time.Millisecond) // polling the goroutines, bounded by the deadline
	}
}
