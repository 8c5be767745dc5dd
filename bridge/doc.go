// Package bridge runs a program per SockJS session, as websocketd does for
// websockets, but over every SockJS transport: a browser that could only
// open a poll talks to the same program as one on a websocket.
//
// The program's stdio is the session:
//
//   - each line it writes to stdout is one message to the client;
//   - each message from the client is one line on its stdin (a message
//     containing a newline closes the session with 3003, rather than reach
//     the program as two lines a client could forge);
//   - its stderr goes to the server log, with the session's id;
//   - its exit closes the session (3000, the status in the reason) after
//     every line it wrote, and the session's close ends the program.
//
// New checks the options and finds the program once; Bridge.Serve is the
// session handler, mounted with transport.New; Bridge.Shutdown ends every
// program at server shutdown. ParseCommand splits a command line without a
// shell. Several bridges can share one Limit on the programs running at
// once, and an Observer (package metrics has one) counts starts, exits,
// kills and refusals.
//
// # Guarantees
//
//   - No process outlives its session, and none is left unreaped: every
//     process the program started is the session's wherever it moved
//     (setsid, a double fork), tracked with a cgroup v2 per session where
//     the hierarchy is writable, else by walking /proc (TrackingMode);
//     all of them get SIGTERM when the session ends and SIGKILL after
//     Options.KillGrace, and the session's unit of the Limit is freed
//     only when none is left. The server makes itself the child
//     subreaper (PR_SET_CHILD_SUBREAPER), so what outlives its parent is
//     re-parented to it and reaped when it exits, also in a container
//     whose init does not reap. If the server is killed outright, only
//     the program gets SIGKILL (Pdeathsig); with cgroups, the next server
//     started in the same cgroup kills what is left.
//   - Output is never read faster than the client takes it: past
//     Options.MaxQueuedMessages or MaxQueuedBytes not yet written to the
//     client, the bridge stops reading stdout and the program blocks in
//     write(2), instead of the session overflowing with 3009.
//   - A line is bounded (Options.MaxLineBytes, 3010 past it), the
//     processes running at once are bounded (Options.Procs, 3013 past it:
//     every process of every session counts), so are the sessions with a
//     program per client address (Limit.WithMaxPerAddress, 3015 past it),
//     and a program that cannot start closes its session with 3011.
//   - The program sees only the environment it is given: Options.Env, the
//     server variables named in PassEnv, the request headers named in
//     Headers as HTTP_* variables, and CGI-style request variables.
//
// A process that uses the bridge should start no other child process in
// a session of its own (os/exec with Setsid): without cgroups
// (TrackProc), the bridge takes such a child for a program's process that
// escaped, kills it and reaps it. Other children (in the server's session)
// are left alone in both modes.
//
// Linux only: it relies on process groups, waitid(2),
// PR_SET_CHILD_SUBREAPER, and cgroup v2 or /proc. docs/exec.md has the flags of cmd/server -exec,
// the environment, the security notes and measurements.
package bridge
