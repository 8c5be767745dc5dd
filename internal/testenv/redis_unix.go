//go:build unix

package testenv

import (
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Freeze stops the server's process with SIGSTOP until Thaw: the kernel
// still accepts connections (up to the listen backlog) and takes what is
// written on them, and nothing is answered, as from a Redis that hangs.
// Stop (and the test's end) kills a frozen server all the same.
func (r *Redis) Freeze() { r.signal(syscall.SIGSTOP) }

// Thaw resumes a server stopped by Freeze.
func (r *Redis) Thaw() { r.signal(syscall.SIGCONT) }

// FreezeQueued freezes the server and waits (up to 10 s, polling the
// kernel's socket queues) until a client has sent it a command it will
// not read: from then on, a caller is waiting for a Redis that hangs.
//
// A freeze can also land after the server read a command and before it
// answered: its caller then waits for ever (with read_timeout=-1) and
// may send nothing more, which the queues cannot show. So a freeze that
// finds nothing queued within a second is thawed (the answer goes out)
// and tried again.
func (r *Redis) FreezeQueued() {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.Freeze()
		try := time.Now().Add(time.Second)
		for r.Unread() == 0 && time.Now().Before(try) {
			time.Sleep(5 * time.Millisecond) // polling the kernel's queues, bounded by try
		}
		if r.Unread() > 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatal("no command waits for the frozen Redis after 10s")
		}
		r.Thaw()
	}
}

// URLClient is a go-redis client of the server built from its URL and
// query as a -redis URL is parsed (go-redis's ParseURL), without
// ContextTimeoutEnabled: a read ends only at the client's read timeout,
// as with a library user's own client. Closed when the test ends.
func (r *Redis) URLClient(query string) *redis.Client {
	r.t.Helper()
	opts, err := redis.ParseURL(r.URL + query)
	if err != nil {
		r.t.Fatal(err)
	}
	if opts.ContextTimeoutEnabled {
		r.t.Fatal("the test's client must not end reads at context deadlines")
	}
	c := redis.NewClient(opts)
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}
