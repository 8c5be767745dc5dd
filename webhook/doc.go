// Package webhook delivers sockjsd's lifecycle events (session.opened,
// session.closed, user.online, user.offline) to an application's backend:
// signed POSTs, at least once, in order per user, retried with backoff.
package webhook
