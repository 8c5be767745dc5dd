// Package cluster runs a SockJS service on several nodes behind a plain
// round-robin load balancer, with no sticky sessions.
//
// An HTTP session (xhr-polling, xhr-streaming, eventsource, htmlfile,
// jsonp-polling) lives on the node that created it: that node records
// itself as the session's owner in a shared Store (RedisStore on Redis).
// A request for the session that lands on another node is forwarded to
// the owner over HTTP, signed with the cluster secret, and relayed back
// frame by frame; ordering and exactly-once delivery stay the owner's.
// Websocket sessions are one connection and never involve the cluster.
//
// A Node is this process's membership: pass it as
// transport.Options.Cluster to every service that should be clustered.
// Its guarantees at the store's edges:
//   - once the store is reachable, at most one node serves a session id:
//     within Options.CheckInterval of the store coming back (a reconnect,
//     or a restart that lost every record) each node writes its records
//     back, and a node that finds another owner recorded for a session it
//     serves closes its copy with CodeOwnerConflict;
//   - after the store lost its records, ids without a record are not free
//     during the store's recovery grace, so a live session is not taken
//     over before its owner has put its record back;
//   - a slow owner (stopped, paused, overloaded) is not a gone one: a
//     forwarded request gets 504 after Options.ForwardTimeout and the
//     session stays with its owner; only a refused connection, or a record
//     that expired, lets another node take an id over.
//
// Metrics counts forwarded requests for Prometheus; Ping is a readiness
// check. docs/cluster.md has the operator's view.
package cluster
