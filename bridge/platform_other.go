//go:build !linux

package bridge

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/sockjsd/sockjsd/session"
)

// The bridge is Linux-only: it starts each program as a process group
// leader with a parent-death signal, becomes the child subreaper of what
// the programs start, and tracks a session's processes through a cgroup
// or /proc. Elsewhere the package builds, so that the rest of the module
// builds and tests on a developer's machine (macOS), and New refuses.

// errNotLinux is why New refuses on other systems.
var errNotLinux = errors.New("the exec bridge needs Linux (process groups, a child subreaper, cgroups or /proc)")

const sigKill = syscall.SIGKILL

// TrackingMode says how the bridge tracks a session's processes in this
// server: on this system it cannot.
func TrackingMode() (string, error) { return "", errNotLinux }

func becomeSubreaper() error                   { return errNotLinux }
func startReaper(*slog.Logger)                 {}
func walkIfTracking()                          {}
func removeBase()                              {}
func (*proc) signalGroup(syscall.Signal) error { return nil }

// run, proc and tree exist for the portable code's sake; New refuses
// before any is made.
type run struct {
	p    *proc
	tree tree
}

type proc struct{}

type tree interface {
	count() int
	signal(sig syscall.Signal)
}

// Serve is never reached: New refuses on this system.
func (b *Bridge) Serve(s *session.Session) { _ = s.Close(CodeStartFailed, errNotLinux.Error()) }
