package transport_test

import (
	"context"
	"encoding/json"
	"log"
	"strconv"
	"sync"

	"github.com/sockjsd/sockjsd/cluster"
	"github.com/sockjsd/sockjsd/session"
	"github.com/sockjsd/sockjsd/transport"
)

// counter is a service whose sessions count the messages they got; it
// opts in to hand-off, so that a rolling deploy keeps the counts.
type counter struct {
	mu    sync.Mutex
	count map[*session.Session]int
}

func (c *counter) serve(s *session.Session) { c.start(s, 0) }

func (c *counter) start(s *session.Session, n int) {
	c.mu.Lock()
	c.count[s] = n
	c.mu.Unlock()
	s.OnMessage(func(string) {
		c.mu.Lock()
		c.count[s]++
		n := c.count[s]
		c.mu.Unlock()
		_ = s.Send(strconv.Itoa(n))
	})
}

// Export runs on the draining node, with the session frozen: no message
// reaches OnMessage until it is handed off.
func (c *counter) Export(s *session.Session) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.count[s]
	delete(c.count, s)
	return json.Marshal(n)
}

// Resume runs on the node the session's next request reached, instead of
// the handler.
func (c *counter) Resume(s *session.Session, state []byte) error {
	var n int
	if err := json.Unmarshal(state, &n); err != nil {
		return err
	}
	c.start(s, n)
	return nil
}

// A service opts in to session hand-off with Options.HandOff, in cluster
// mode; on SIGTERM the server calls Handler.HandOff before Shutdown.
func ExampleHandOff() {
	node, err := cluster.New(cluster.Options{ /* Store: cluster.NewRedisStore(...), Self, Secret */ })
	if err != nil {
		log.Print(err) // here: no store
		return
	}
	c := &counter{count: map[*session.Session]int{}}
	h := transport.New("/count", transport.Options{Cluster: node, HandOff: c}, c.serve)

	// At shutdown: the HTTP sessions go to the other nodes first, the
	// rest (websockets) end with 1001.
	ctx := context.Background()
	r := h.HandOff(ctx)
	log.Printf("handed off %d sessions (%d could not be)", r.HandedOff, r.Failed)
	_ = h.Shutdown(ctx)
}
