// Package client is a SockJS client for Go programs and tests. It talks to
// any SockJS 0.3 server (this one, sockjs-node, igm/sockjs-go, Spring), so
// a Go program can be a peer of the same services a browser uses, and a test
// or a load generator can reach a server over each transport a browser
// might end up on.
//
// Dial reads the service's /info, then tries websocket, xhr-streaming and
// xhr-polling in turn (Options.Transports sets the order and the allowed
// set) and returns a *Conn on the first that brings the open frame within
// Options.ConnectTimeout. The Conn offers the same API whatever it got:
// Send and Recv messages, Close, Done, and CloseInfo for the code and
// reason it ended with. GetInfo reads /info alone.
//
//	c, err := client.Dial(ctx, "http://127.0.0.1:8081/echo", client.Options{})
//	if err != nil {
//		return err // wraps ErrNoTransport, with each transport's reason
//	}
//	defer c.Close()
//	_ = c.Send("hello")
//	msg, err := c.Recv(ctx)
//
// # Guarantees
//
//   - Messages are sent and received in order. Over HTTP the client keeps
//     one receiving request and one send request in flight at a time, as
//     the protocol requires, batching what is queued meanwhile.
//   - It never reconnects on its own: a broken or silent connection
//     (Options.ReadTimeout, 60 s by default, past the server's 25 s
//     heartbeats) closes it with 1006, because a new session could not
//     carry on the old one's messages. A server's close frame closes it
//     with the server's code.
//   - Every queue is bounded (RecvQueue, SendQueue, MaxFrameBytes): when
//     the program falls behind in calling Recv, the client stops reading
//     the network; when the network falls behind Send, Send waits.
//   - Close returns only after every goroutine of the connection ended.
//
// docs/client.md has the fallback rules, every option and the load
// generator built on this package (cmd/loadgen).
package client
