package bridge

// Tracking modes, as reported by TrackingMode.
const (
	TrackCgroup = "cgroup" // a cgroup v2 per session
	TrackProc   = "proc"   // a walk of /proc
)
