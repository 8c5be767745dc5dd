// Package hub is a pub/sub hub over SockJS: browsers subscribe to channels
// over whatever transport they could open, and backends publish through an
// HTTP API (or Hub.Publish in the same process).
//
// New builds a Hub; its Serve method is the session handler, mounted like
// any other service with transport.New, and NewAPI gives the backends' HTTP
// API (publish, broadcast, channels, presence, history) to mount next to it:
//
//	h := hub.New(hub.Options{Rules: hub.Rules{Channels: []string{"news", "chat.*"}}})
//	hub.NewAPI(h, hub.APIOptions{Key: apiKey}).Mount(r, "/api")
//	gorillamux.Mount(r, transport.New("/hub", transport.Options{}, h.Serve))
//
// The protocol is one JSON object per SockJS message ({"op":"subscribe",
// "channel":"news"} from the client, {"op":"message","channel":"news",
// "seq":7,"data":…} from the server); protocol.go lists every message, and
// the browser side is hub-client.js, served by package web.
//
// # Brokers
//
// Messages go through a Broker, which numbers each channel's messages,
// keeps their recent history and carries them to every node with
// subscribers. MemoryBroker (NewMemoryBroker, the default) serves one
// process. RedisBroker (NewRedisBroker) lets many nodes share channels, so
// that a publish on any node reaches subscribers on every node; the hub
// itself does not know which it runs on.
//
// # Guarantees
//
//   - A channel's messages reach each subscriber in publish order, with a
//     sequence number that counts from 1 within the channel's epoch.
//   - A subscriber that comes back (a new session, maybe on another node)
//     subscribes with the last seq it saw and gets the messages it missed
//     from history, then live ones, with no gap and no duplicate
//     ("recovered":true). When history no longer reaches back, or the
//     channel started a new epoch (the broker forgot it), it is told so
//     ("recovered":false) with the position to resume from: the page
//     reloads its state instead of silently missing messages.
//   - Everything is bounded: subscriptions per session and per client
//     address, channels per node, the size of a publish, history by count,
//     age and (in memory) bytes. A subscriber too slow for a busy channel
//     is closed with 3009 rather than buffered without end.
//   - Rules say which channels exist and who may publish; with a
//     TokenSecret, subscribing needs a token signed by the backend
//     (SignToken) naming the channel.
//
// # Backends, tokens, other services
//
// Options.Hooks lets a backend decide subscribes and browser publishes
// and answer rpc ops (NewHTTPHooks: signed JSON POSTs, the wire in
// docs/hub.md). With a TokenSecret, a session is closed with
// CodeTokenExpired at its token's exp unless a refresh op replaced it.
// Attach subscribes a session of another service to channels, by the
// server's decision: it gets the same frames a hub client gets.
//
// docs/hub.md has the protocol, the API's status codes, recovery, the limits
// and what the Redis broker keeps.
package hub
