// Package bounded waits for a shutdown step with a limit: the Redis-backed
// parts (the hub's broker, the cluster's keep loop, the gateway's
// directory) stop waiting for a loop or a cleanup that Redis leaves
// unanswered, since go-redis ends a command's read only at the client's
// read timeout, which may be long or none.
package bounded

import "time"

// Wait waits up to d for done to be closed and reports whether it was.
func Wait(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
