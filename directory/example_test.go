package directory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sockjsd/sockjsd/directory"
	"github.com/sockjsd/sockjsd/webhook"
)

// printQueue prints the events it is given: a stand-in for the webhook
// delivery's queue.
type printQueue struct{}

func (printQueue) Enqueue(_ context.Context, e webhook.Event) error {
	line := e.Type + " " + e.Session + " " + e.User
	if e.Code != 0 {
		line += fmt.Sprintf(" %d %s", e.Code, e.Reason)
	}
	fmt.Println(line)
	return nil
}

// The proxy adds each session it accepts and removes it when it ends; the
// directory answers who is online and enqueues the lifecycle webhooks. A
// user who comes back inside OfflineDelay (a page reload) never goes
// offline. On many nodes, NewRedis takes NewMemory's place.
func Example() {
	dir := directory.NewMemory(directory.MemoryOptions{
		Events:       printQueue{},
		OfflineDelay: 50 * time.Millisecond,
	})
	ctx := context.Background()

	_ = dir.Add(ctx, directory.Entry{ID: "s1", Service: "/chat", User: "u1", Transport: "websocket", Node: "n1"})
	_ = dir.Remove(ctx, "s1", 1000, "Normal closure") // a reload...
	_ = dir.Add(ctx, directory.Entry{ID: "s2", Service: "/chat", User: "u1", Transport: "websocket", Node: "n1"})

	sessions, _ := dir.ByUser(ctx, "u1")
	fmt.Println(len(sessions), "session of u1 on", sessions[0].Node)

	// Close sends the offlines still pending at once.
	_ = dir.Remove(ctx, "s2", 1001, "Going away")
	_ = dir.Close()
	// Output:
	// session.opened s1 u1
	// user.online s1 u1
	// session.closed s1 u1 1000 Normal closure
	// session.opened s2 u1
	// 1 session of u1 on n1
	// session.closed s2 u1 1001 Going away
	// user.offline  u1
}
