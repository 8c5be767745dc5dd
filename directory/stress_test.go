package directory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/webhook"
)

// TestConcurrentChurn: sessions of ten users come and go from eight
// goroutines (on two nodes for Redis); every user's events, in order,
// follow the state machine: online right after the opened that found
// them offline, offline only with no session left, and everyone offline
// at the end.
func TestConcurrentChurn(t *testing.T) {
	for _, k := range []kind{memoryKind, redisKind} {
		t.Run(k.name, func(t *testing.T) {
			nodes := 1
			if k.multi {
				nodes = 2
			}
			w := k.start(t)(t, nodes)
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 40 {
						d := w.dirs[(g+i)%nodes]
						id := fmt.Sprintf("g%d-%d", g, i)
						user := fmt.Sprintf("u%d", (g*7+i)%10)
						if err := d.Add(ctx, directory.Entry{ID: id, User: user}); err != nil {
							t.Error(err)
							return
						}
						if i%3 != 0 { // some overlap with the next ones
							if err := d.Remove(ctx, id, 1000, ""); err != nil {
								t.Error(err)
								return
							}
						} else {
							defer func() {
								if err := d.Remove(ctx, id, 1000, ""); err != nil {
									t.Error(err)
								}
							}()
						}
					}
				})
			}
			wg.Wait()
			sentinel(t, w)
			for key, evs := range byKey(w.ev.snapshot()) {
				if key == "u:sentinel" {
					continue
				}
				sessions, online := map[string]bool{}, false
				for i, e := range evs {
					switch e.Type {
					case webhook.SessionOpened:
						if sessions[e.Session] {
							t.Fatalf("%s: %s opened twice", key, e.Session)
						}
						sessions[e.Session] = true
						if !online {
							if i+1 >= len(evs) || evs[i+1].Type != webhook.UserOnline || evs[i+1].Session != e.Session {
								t.Fatalf("%s: no online right after %s found them offline:\n%s", key, e.Session, dump(evs))
							}
						}
					case webhook.UserOnline:
						if online {
							t.Fatalf("%s: online twice:\n%s", key, dump(evs))
						}
						online = true
					case webhook.SessionClosed:
						if !sessions[e.Session] {
							t.Fatalf("%s: %s closed but not open", key, e.Session)
						}
						delete(sessions, e.Session)
					case webhook.UserOffline:
						if !online || len(sessions) > 0 {
							t.Fatalf("%s: offline with %d sessions (online %v):\n%s", key, len(sessions), online, dump(evs))
						}
						online = false
					}
				}
				if online || len(sessions) > 0 {
					t.Errorf("%s: at the end online %v with %d sessions", key, online, len(sessions))
				}
			}
			unique(t, w.ev.snapshot())
		})
	}
}
