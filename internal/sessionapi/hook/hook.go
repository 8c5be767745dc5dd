// Package hook holds the transport side of a session, which package
// session fills in at init. It exists only to break the import cycle
// between session (which cannot import sessionapi, since sessionapi names
// session's types) and sessionapi: read these through package sessionapi,
// whose functions are typed.
package hook

// Each slot holds a method expression of *session.Session; see the
// function of the same name in package sessionapi for what it does.
var (
	Serve           any
	ServeConn       any
	ConnLost        any
	Deliver         any
	End             any
	CloseFor        any
	Closed          any
	HasOnMessage    any
	Attached        any
	Written         any
	AcquireSendSlot any
	ReleaseSendSlot any
)
