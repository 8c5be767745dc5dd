//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Linux process handling. Every program runs as the leader of its own
// process group (Setpgid), so that one signal reaches it and everything it
// started. The bridge never reaps a leader before it has sent its last
// signal to the group: while the leader is an unreaped zombie its pid,
// which is the group's id, cannot be given to another process, so a
// signal to -pgid can never hit a stranger.

// Constants of waitid(2) and prctl(2) that package syscall lacks.
const (
	pPID                = 1
	wEXITED             = 0x4
	wNOWAIT             = 0x1000000
	prSetChildSubreaper = 36
	siginfoSize         = 128
)

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes this process the child subreaper of its
// descendants (prctl PR_SET_CHILD_SUBREAPER): a program's children that
// outlive it are re-parented to the server instead of init, so the bridge
// reaps them with their group and none is left a zombie, even where init
// does not reap (some containers). Process-wide and idempotent.
func becomeSubreaper() error {
	subreaper.once.Do(func() {
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			subreaper.err = fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", e)
		}
	})
	return subreaper.err
}

// proc is one running program and the server's ends of its pipes.
type proc struct {
	p      *os.Process
	pid    int // also the process group id
	stdin  *os.File
	stdout *os.File
	stderr *os.File
}

// startProc starts path with argv, env and dir in a new process group,
// with three fresh pipes as its stdin, stdout and stderr.
func startProc(path string, argv, env []string, dir string, t tree) (*proc, error) {
	var files [6]*os.File // inR, inW, outR, outW, errR, errW
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
	}
	for i := 0; i < 6; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("pipe: %w", err)
		}
		files[i], files[i+1] = r, w
	}
	sys := &syscall.SysProcAttr{
		Setpgid: true,
		// If the server dies without a chance to clean up (SIGKILL,
		// a crash), the kernel kills the program too (only the
		// program: see docs/exec.md for the rest of its tree).
		Pdeathsig: syscall.SIGKILL,
	}
	t.attr(sys)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{files[0], files[3], files[5]},
		Sys:   sys,
	})
	// The child has its ends now (or never will): close ours.
	for _, i := range []int{0, 3, 5} {
		_ = files[i].Close()
		files[i] = nil
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	return &proc{p: p, pid: p.Pid, stdin: files[1], stdout: files[2], stderr: files[4]}, nil
}

// signalGroup sends sig to the program's whole process group. ESRCH (the
// group is empty) is not an error.
func (p *proc) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// waitExited blocks until the leader has exited, without reaping it.
func (p *proc) waitExited() error {
	var info [siginfoSize]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.pid), uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOWAIT, 0, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return fmt.Errorf("waitid %d: %w", p.pid, e)
		}
	}
}

// reapGroup reaps every child of the server in the program's process
// group (the leader and, with the subreaper set, its orphaned
// descendants) until none is left, and returns the leader's status.
// Call it only after SIGKILL went to the group, or it waits for the
// group's processes to exit by themselves.
func (p *proc) reapGroup() (ws syscall.WaitStatus, ok bool) {
	for {
		var st syscall.WaitStatus
		pid, err := syscall.Wait4(-p.pid, &st, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: no child of ours is left in the group
			_ = p.p.Release()
			return ws, ok
		}
		if pid == p.pid {
			ws, ok = st, true
		}
	}
}

// reapTree reaps the tree's processes that the server inherited and that
// are zombies now; call it once the tree is empty. One still exiting, or
// that the tree never saw, is reaped by the reaper on its SIGCHLD.
func reapTree(t tree) {
	me := os.Getpid()
	for _, pid := range t.seen() {
		if s, err := readStat(pid); err == nil && s.state == 'Z' && s.ppid == me && t.owns(pid) {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
	}
	kickReaper()
}
