package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// HandOff and Take on the map store, as RedisStore does them (the record
// replaces the owner in the same key).
func (o *memOwners) HandOff(_ context.Context, key, node string, state []byte, _ time.Duration) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return err
	}
	if cur := o.m[key]; cur != "" && cur != node {
		return ErrNotOwner
	}
	o.m[key] = handOffMarker + string(state)
	return nil
}

func (o *memOwners) Take(_ context.Context, key, node string) ([]byte, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(); err != nil {
		return nil, "", err
	}
	cur := o.m[key]
	if !strings.HasPrefix(cur, handOffMarker) {
		return nil, ownerOf(cur), nil
	}
	o.m[key] = node
	return []byte(strings.TrimPrefix(cur, handOffMarker)), node, nil
}

// echoHandOff is the echo service's opt-in: it has no state of its own.
type echoHandOff struct{}

func (echoHandOff) Export(*session.Session) ([]byte, error) { return []byte("{}"), nil }
func (echoHandOff) Resume(s *session.Session, _ []byte) error {
	s.OnMessage(func(m string) { _ = s.Send(m) })
	return nil
}

// TestHandOffResumesElsewhere: node A hands its polling session off; the
// next poll, on B, resumes it under the same id without an open frame and
// gets what A had queued; a send that still reaches A is passed on to B;
// a forwarded request A gets for it is sent to the store's owner.
func TestHandOffResumesElsewhere(t *testing.T) {
	owners := &memOwners{m: map[string]string{}}
	nodes := startNodesWith(t, 2, owners, func(o *transport.Options, _ *Options) { o.HandOff = echoHandOff{} })
	a, b := nodes[0], nodes[1]
	sess := "/echo/000/abc"
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "o\n" {
		t.Fatalf("open on A: %d %q", code, body)
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr_send", `["one","two"]`, nil); code != 204 {
		t.Fatalf("send on A: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := a.h.HandOff(ctx); r.HandedOff != 1 || r.Failed != 0 {
		t.Fatalf("hand-off: %+v", r)
	}
	if got := owners.get("/echo/abc"); !strings.HasPrefix(got, handOffMarker) {
		t.Fatalf("store after hand-off: %q", got)
	}
	// A poll that still reaches A: a heartbeat, to ask again.
	if code, body := post(t, a.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "h\n" {
		t.Fatalf("poll on A after hand-off: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"one\",\"two\"]\n" {
		t.Fatalf("poll on B: %d %q", code, body)
	}
	if got := owners.get("/echo/abc"); got != b.srv.URL {
		t.Fatalf("owner after the resume: %q, want B", got)
	}
	if code, body := post(t, a.srv.URL+sess+"/xhr_send", `["three"]`, nil); code != 204 {
		t.Fatalf("send on A after the resume: %d %q", code, body)
	}
	if code, body := post(t, b.srv.URL+sess+"/xhr", "", nil); code != 200 || body != "a[\"three\"]\n" {
		t.Fatalf("poll on B: %d %q", code, body)
	}
	if a.h.Sessions() != 1 || b.h.Sessions() != 1 {
		t.Fatalf("sessions: A %d (the stub), B %d", a.h.Sessions(), b.h.Sessions())
	}
}
