package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/client"
)

// TestClusterNginx: deploy/nginx.conf in front of three nodes, as
// TestClusterNodeClient runs haproxy.cfg: the real sockjs-client under node
// echoes 1,000 messages in order, exactly once, over each HTTP transport
// through nginx (round robin, no stickiness, buffering off), landing on
// every node; then websocket echoes through it (the Upgrade map) with the Go
// client.
func TestClusterNginx(t *testing.T) {
	need(t, "node", "nginx")
	env := startCluster(t)
	env.lb = env.startNginx(env.nodes)
	for _, tr := range []string{"xhr-polling", "xhr-streaming", "eventsource"} {
		t.Run(tr, func(t *testing.T) {
			env.t = t
			before := env.landing()
			nodeBurst(t, env.lb+"/echo", tr, messages).check(t, tr, messages)
			env.checkAllNodes(before)
		})
	}
	env.t = t
	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, env.lb+"/echo", client.Options{Transports: []string{client.WebSocket}})
		if err != nil {
			t.Fatalf("websocket through nginx: %v", err)
		}
		defer c.Close()
		if tr := c.Transport(); tr != client.WebSocket {
			t.Fatalf("transport %q, want websocket", tr)
		}
		for i := range 100 {
			want := fmt.Sprintf("ws %d", i)
			if err := c.Send(want); err != nil {
				t.Fatal(err)
			}
			got, err := c.Recv(ctx)
			if err != nil || got != want {
				t.Fatalf("echo %d: %q, %v; want %q", i, got, err, want)
			}
		}
	})
	env.checkNoSecret()
}
