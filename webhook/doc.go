// Package webhook delivers sockjsd's lifecycle events (session.opened,
// session.closed, user.online, user.offline) to an application's backend:
// signed POSTs, at least once, in order per user, retried with backoff.
//
// It is what makes sockjsd a gateway in front of a backend in any
// language: the backend learns who connected and left from plain HTTP
// requests, without linking anything of sockjsd.
//
//	n, err := webhook.New(webhook.Options{URL: "https://app.example/hooks/sockjs", Secret: secret})
//	...
//	n.Enqueue(ctx, webhook.Event{Type: webhook.UserOnline, User: "alice", Session: sid})
//	...
//	n.Shutdown(ctx)
//
// # The POST
//
// Each event is one POST to the URL itself: the body is exactly one Event
// as JSON, signed like every request sockjsd makes to a backend
// (X-Sockjsd-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">,
// internal/sign), with the event's id also in X-Sockjsd-Event-Id. Any 2xx
// is a delivery, whatever its body; anything else, a timeout or a refused
// connection is retried.
//
// # Guarantees
//
//   - At least once: an event leaves its queue only after a 2xx. A POST
//     abandoned (Shutdown's deadline, a node killed, a lease lost) is sent
//     again later, so a receiver may see an id twice and must drop the
//     repeat; ids are 16 crypto-random bytes (NewID).
//   - In order per user: events are spread over Partitions queues by
//     OrderKey (the user, else the session); each partition has one POST
//     in flight at most, and its head blocks the rest until it is
//     delivered or given up. Partitions are delivered in parallel.
//   - Retried with exponential backoff and jitter (RetryMin 500ms doubling
//     to RetryMax 30s) for RetryFor (1h) per event; then the event is
//     dropped with one log line and counted (sockjs_webhook_dropped_total
//     {reason="expired"}), and its partition moves on. A receiver down for
//     longer than RetryFor loses one event per partition per RetryFor, not
//     the whole backlog.
//   - Bounded: Enqueue refuses with ErrQueueFull (counted, logged once per
//     episode) beyond MaxQueueBytes in memory or MaxQueueLen per Redis
//     partition; POSTs in flight are at most MaxInFlight (Partitions).
//
// # Queues
//
// Without Options.Redis, events wait in this process (MemoryQueue): one
// worker per partition, and what is left at Shutdown is lost (its count is
// logged). With Options.Redis, they wait in Redis lists (RedisQueue), one
// per partition at RedisQueueKey, which anything may push to (RPUSH, then
// PUBLISH the partition on RedisWakeChannel): the session directory's own
// scripts enqueue in the same step as their state change. Every node
// delivers; a partition is delivered by the one node holding its lease
// (RedisLeaseKey), and a node that dies loses its partitions to the others
// after LeaseTTL. RedisQueue's comment has the details.
//
// # Metrics
//
// Options.Observer is told every POST, retry, drop and refusal; NewMetrics
// implements it with Prometheus metrics named sockjs_webhook_*.
package webhook
