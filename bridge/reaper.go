//go:build linux

package bridge

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The server's side of every session's processes: the leaders that runs
// reap themselves, the /proc walker of procTrees, and the reaper of the
// orphans the server inherits as child subreaper.

// procWalkEvery is how often procTrees record the descendants of their
// processes. A process that is born, re-parents and calls setsid within
// one interval is not recorded; it is then found as an unclaimed child of
// the server (see walk).
const procWalkEvery = 100 * time.Millisecond

var reg struct {
	mu       sync.Mutex
	leaders  map[int]bool // leaders of live runs: their runs reap them
	starting int          // programs being started, leader not registered yet
	trees    map[*procTree]struct{}
	walking  bool
	once     sync.Once
	kick     chan struct{}
	log      *slog.Logger
}

// startReaper starts, once per process, the goroutine that reaps the
// server's orphaned children: on SIGCHLD, and when a run ends.
func startReaper(log *slog.Logger) {
	reg.once.Do(func() {
		reg.leaders = map[int]bool{}
		reg.trees = map[*procTree]struct{}{}
		reg.kick = make(chan struct{}, 1)
		reg.log = log
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGCHLD)
		go func() {
			for {
				select {
				case <-ch:
				case <-reg.kick:
				}
				sweep()
			}
		}()
	})
}

// kickReaper asks for a sweep.
func kickReaper() {
	select {
	case reg.kick <- struct{}{}:
	default:
	}
}

// beginStart and endStart bracket the start of a program: meanwhile a
// zombie child could be a leader not registered yet, so sweep leaves
// every child alone.
func beginStart() {
	reg.mu.Lock()
	reg.starting++
	reg.mu.Unlock()
}

func endStart(leader int) {
	reg.mu.Lock()
	reg.starting--
	if leader > 0 {
		reg.leaders[leader] = true
	}
	reg.mu.Unlock()
	kickReaper()
}

// leaderReaped forgets a leader its run has reaped.
func leaderReaped(pid int) {
	reg.mu.Lock()
	delete(reg.leaders, pid)
	reg.mu.Unlock()
}

// sweep reaps every zombie child of the server that is a session's
// process and not a live run's leader: a process that left its group and
// was re-parented to the server is reaped when it exits, not when its
// session ends. A child the server started otherwise (os/exec elsewhere
// in the process) is left alone: it is in no session cgroup, no procTree
// and in the server's own session.
func sweep() {
	self, _ := readStat(os.Getpid())
	for _, pid := range children() {
		s, err := readStat(pid)
		if err != nil || s.state != 'Z' {
			continue
		}
		reg.mu.Lock()
		skip := reg.leaders[pid] || reg.starting > 0
		reg.mu.Unlock()
		if skip || !sessionProcess(s, self) {
			continue
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// sessionProcess says whether the server's child s belongs to a session.
func sessionProcess(s, self stat) bool {
	if ownedByServer(s.pid) {
		return true
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for t := range reg.trees {
		if t.has(s.pid) || s.pgid == t.pgid {
			return true
		}
	}
	// Without cgroups: a child of the server in a session or process
	// group of its own that no tree recorded escaped one.
	return walking() && s.sid != self.sid && s.pgid != self.pgid
}

// procTree is a session's processes found by walking /proc.
type procTree struct {
	session string         // SOCKJS_SESSION_ID in the program's environment
	pgid    int            // the leader's group
	members map[int]uint64 // pid → start time, zombies included; under reg.mu
	alive   int            // members not zombies at the last walk
}

func newProcTree(session string) *procTree {
	return &procTree{session: session, members: map[int]uint64{}}
}

func (t *procTree) attr(*syscall.SysProcAttr) {}

func (t *procTree) started(pid int) {
	st, _ := startTime(pid)
	reg.mu.Lock()
	t.pgid = pid
	t.members[pid] = st
	t.alive = 1
	reg.trees[t] = struct{}{}
	if !reg.walking {
		reg.walking = true
		go walker()
	}
	reg.mu.Unlock()
}

func (t *procTree) count() int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return t.alive
}

func (t *procTree) seen() []int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return slices.Collect(maps.Keys(t.members))
}

func (t *procTree) owns(pid int) bool {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return t.has(pid)
}

// has is owns with reg.mu held.
func (t *procTree) has(pid int) bool {
	_, ok := t.members[pid]
	return ok
}

func (t *procTree) signal(sig syscall.Signal) {
	reg.mu.Lock()
	pids := make(map[int]uint64, len(t.members))
	for p, st := range t.members {
		pids[p] = st
	}
	reg.mu.Unlock()
	for p, st := range pids {
		// The start time tells the member from a stranger that got its
		// pid; what is left between the check and kill(2) is a race the
		// kernel's pid allocation (cycling through pid_max) makes remote.
		if cur, err := startTime(p); err == nil && cur == st {
			_ = syscall.Kill(p, sig)
		}
	}
	_ = syscall.Kill(-t.pgid, sig)
}

func (t *procTree) kill(d time.Duration) error {
	return waitUntil(d, func() bool {
		strays := freshWalk()
		if t.count() == 0 && strays == 0 {
			return true
		}
		t.signal(syscall.SIGKILL)
		return false
	})
}

func (t *procTree) close() {
	reg.mu.Lock()
	delete(reg.trees, t)
	reg.mu.Unlock()
}

// walkIfTracking walks /proc now if any procTree is open.
func walkIfTracking() {
	reg.mu.Lock()
	n := len(reg.trees)
	reg.mu.Unlock()
	if n > 0 {
		freshWalk()
	}
}

// walks coalesces walks: many sessions ending or starting at once share
// one walk of /proc instead of each making its own.
var walks struct {
	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // walks started
	completed uint64 // the last walk completed
	strays    int    // what it returned
}

// freshWalk returns the result of a walk that started after the call:
// it joins the next walk, or makes it.
func freshWalk() int {
	walks.mu.Lock()
	defer walks.mu.Unlock()
	if walks.cond == nil {
		walks.cond = sync.NewCond(&walks.mu)
	}
	want := walks.started + 1
	for walks.completed < want {
		if walks.running {
			walks.cond.Wait()
			continue
		}
		walks.running = true
		walks.started++
		gen := walks.started
		walks.mu.Unlock()
		n := walk()
		walks.mu.Lock()
		walks.running = false
		walks.completed, walks.strays = gen, n
		walks.cond.Broadcast()
	}
	return walks.strays
}

// walker walks /proc every procWalkEvery while any procTree is open.
func walker() {
	tick := time.NewTicker(procWalkEvery)
	defer tick.Stop()
	for range tick.C {
		reg.mu.Lock()
		if len(reg.trees) == 0 {
			reg.walking = false
			reg.mu.Unlock()
			return
		}
		reg.mu.Unlock()
		freshWalk()
	}
}

// walk updates every procTree from /proc: members that are gone are
// dropped, the children of members and the processes of the leader's
// group are added. A live child of the server that no tree claims, in a
// session of its own, is a program's descendant that left its session
// before any walk saw it: it is its session's if its environment still
// names the session (SOCKJS_SESSION_ID), and otherwise gets SIGKILL, as
// its session would have given it at the end (the reaper then reaps it).
// walk returns the number of such strays it killed.
func walk() (strays int) {
	all := walkProc()
	kids := map[int][]int{}
	for pid, s := range all {
		kids[s.ppid] = append(kids[s.ppid], pid)
	}
	self := all[os.Getpid()]
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.starting == 0 && walking() {
	next:
		for _, c := range kids[self.pid] {
			s := all[c]
			if s.state == 'Z' || reg.leaders[c] || s.sid == self.sid || s.pgid == self.pgid {
				continue
			}
			for t := range reg.trees {
				if t.has(c) {
					continue next
				}
			}
			id := sessionIDOf(c)
			for t := range reg.trees {
				if id != "" && t.session == id {
					t.members[c] = s.start
					continue next
				}
			}
			if cur, err := startTime(c); err == nil && cur == s.start {
				_ = syscall.Kill(c, syscall.SIGKILL)
				if reg.log != nil {
					reg.log.Warn("exec: killed a process that left its session unrecorded", "pid", c)
				}
			}
			strays++
		}
	}
	for t := range reg.trees {
		for p, st := range t.members {
			if s, ok := all[p]; !ok || s.start != st {
				delete(t.members, p)
			}
		}
		queue := make([]int, 0, len(t.members))
		for p := range t.members {
			queue = append(queue, p)
		}
		for pid, s := range all {
			if _, in := t.members[pid]; !in && s.pgid == t.pgid && s.state != 'Z' {
				t.members[pid] = s.start
				queue = append(queue, pid)
			}
		}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, c := range kids[p] {
				if _, in := t.members[c]; !in {
					t.members[c] = all[c].start
					queue = append(queue, c)
				}
			}
		}
		t.alive = 0
		for p := range t.members {
			if all[p].state != 'Z' {
				t.alive++
			}
		}
	}
	return strays
}

// sessionIDOf is SOCKJS_SESSION_ID in the environment pid started with.
func sessionIDOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("SOCKJS_SESSION_ID=")); ok {
			return string(v)
		}
	}
	return ""
}
