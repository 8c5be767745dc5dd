// Package services holds the demonstration services that the SockJS
// protocol test suite expects, so that cmd/server, the protocol suite and
// this module's tests all run the very same code.
//
// Echo and Close are session handlers, the two smallest services there are:
// Echo answers every message with itself (on the goroutine that received
// it, through Session.OnMessage, so an idle echo session holds no goroutine
// of its own); Close closes each session as it opens, with 3000 "Go away!".
// Protocol builds the four services of the suite from one transport.Options:
//
//   - /echo and /close, with every transport on;
//   - /disabled_websocket_echo, with websocket off (and /info saying so);
//   - /cookie_needed_echo, which sets a JSESSIONID cookie for sticky load
//     balancers.
//
// Demo is /echo again at DemoPrefix with the service ping on, for the demo
// page: /echo itself sends nothing a client did not send, as the suite and
// other SockJS clients expect. Mount mounts any of them on a gorilla/mux
// router.
//
// docs/protocol.md tells how to run the official suite against the server.
package services
