package session

import "github.com/sockjsd/sockjsd/internal/sessionapi/hook"

// The transport side of a session is unexported, so that an application
// sees only its API; this module's transports reach it through
// internal/sessionapi, which these hooks feed. Package initialisation runs
// this before any importer of session, so the hooks are never seen unset.
func init() {
	hook.Serve = (*Session).serve
	hook.ServeConn = (*Session).serveConn
	hook.ConnLost = (*Session).connLost
	hook.Deliver = (*Session).deliver
	hook.End = (*Session).finish
	hook.CloseFor = (*Session).closeWith
	hook.Closed = (*Session).isClosed
	hook.HasOnMessage = (*Session).hasOnMessage
	hook.Attached = (*Session).isAttached
	hook.Written = (*Session).Written
	hook.AcquireSendSlot = (*Session).acquireSendSlot
	hook.ReleaseSendSlot = (*Session).releaseSendSlot
}
