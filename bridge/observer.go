package bridge

import "time"

// ExitClass classifies how a program ended, for metrics.
type ExitClass uint8

// How programs end.
const (
	ExitOK     ExitClass = iota // exit status 0
	ExitError                   // exit status 1-255
	ExitSignal                  // killed by a signal (its own crash, or the bridge's SIGTERM/SIGKILL)
	NumExitClasses
)

var exitNames = [NumExitClasses]string{"ok", "error", "signal"}

func (c ExitClass) String() string {
	if c < NumExitClasses {
		return exitNames[c]
	}
	return "unknown"
}

// Refusal says why a session got no program.
type Refusal uint8

// Why a session got no program.
const (
	RefusedMaxProcs    Refusal = iota // the Limit was reached (close 3013)
	RefusedStartFailed                // fork/exec failed (close 3011)
	RefusedPerAddress                 // the client's address reached its bound (close 3015)
	NumRefusals
)

var refusalNames = [NumRefusals]string{"max_procs", "start_failed", "per_address"}

func (r Refusal) String() string {
	if r < NumRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// Observer receives process events. name is Options.Name. Implementations
// must be safe for concurrent use.
type Observer interface {
	// ProcessStarted: a program was started; latency is the time fork and
	// exec took.
	ProcessStarted(name string, latency time.Duration)
	// ProcessExited: a program was reaped.
	ProcessExited(name string, class ExitClass, lifetime time.Duration)
	// ProcessKilled: the program was still running when the grace
	// period after SIGTERM ran out, and every process of its session got
	// SIGKILL.
	ProcessKilled(name string)
	// ProcessRefused: a session got no program.
	ProcessRefused(name string, why Refusal)
}

// NopObserver ignores every event.
type NopObserver struct{}

func (NopObserver) ProcessStarted(string, time.Duration)           {}
func (NopObserver) ProcessExited(string, ExitClass, time.Duration) {}
func (NopObserver) ProcessKilled(string)                           {}
func (NopObserver) ProcessRefused(string, Refusal)                 {}
