//go:build linux

package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A session's processes, wherever they moved. A program that calls
// setsid(2), or whose child does, leaves its process group and with it
// every group signal; it is still the session's. Two ways to know it:
//
//   - a cgroup v2 per session (cgroupTree), where the unified hierarchy is
//     mounted and writable: the program is started inside it
//     (clone3 CLONE_INTO_CGROUP), every descendant stays in it whatever it
//     does (short of root writing cgroup.procs), cgroup.procs counts them
//     and cgroup.kill kills them all at once;
//   - else a walk of /proc (procTree): the descendants of the session's
//     processes, by PPid, recorded while alive every procWalkEvery; a
//     process re-parented to the server (its parent died) stays recorded.
//
// Which one is used is decided once per server process (treeMode).

// tree is every process of one session.
type tree interface {
	// attr prepares the start of the program inside the tree.
	attr(a *syscall.SysProcAttr)
	// started records the program's leader.
	started(pid int)
	// count is the number of live processes (zombies not included).
	count() int
	// signal sends sig to every live process of the tree.
	signal(sig syscall.Signal)
	// kill sends SIGKILL to every process until none is alive, waiting
	// at most d.
	kill(d time.Duration) error
	// owns says whether pid, alive or a zombie, is the tree's.
	owns(pid int) bool
	// seen lists the processes the tree has seen, for reaping: those
	// born after the last look are reaped by the reaper on SIGCHLD.
	seen() []int
	// close releases the tree once it is empty.
	close()
}

var mode struct {
	once sync.Once
	name string
	base string // cgroup mode: this server's directory of session cgroups
	rel  string // the same, as /proc/PID/cgroup shows it
	n    atomic.Int64
	err  error // why the cgroup mode is not used
	// failed: starting a program in its cgroup failed once; from then
	// on sessions walk /proc.
	failed atomic.Bool
}

// walking says whether sessions may be tracked by walking /proc.
func walking() bool { return mode.name == TrackProc || mode.failed.Load() }

// forceProc, set by tests through the environment, makes the bridge walk
// /proc even where cgroups are available.
const forceProcEnv = "SOCKJSD_EXEC_TRACK_PROC"

// TrackingMode says how the bridge tracks a session's processes in this
// server: TrackCgroup or TrackProc, and why not cgroups.
func TrackingMode() (string, error) {
	mode.once.Do(initMode)
	return mode.name, mode.err
}

func initMode() {
	mode.name = TrackProc
	if os.Getenv(forceProcEnv) == "1" {
		mode.err = fmt.Errorf("%s=1", forceProcEnv)
		return
	}
	base, rel, err := cgroupBase()
	if err != nil {
		mode.err = err
		return
	}
	mode.name, mode.base, mode.rel = TrackCgroup, base, rel
}

// cgroupBase finds the cgroup v2 mount and the server's own cgroup, and
// makes <own>/sockjsd-exec/<pidns>-<pid>-<starttime> for this server's
// sessions. Directories there of a server that is gone (a crash, kill -9)
// have their processes killed and are removed: what a dead server left
// behind dies when a server starts again. A directory of another pid
// namespace is left alone: its server's liveness cannot be seen here.
func cgroupBase() (base, rel string, err error) {
	mnt, err := cgroup2Mount()
	if err != nil {
		return "", "", err
	}
	own, err := ownCgroup()
	if err != nil {
		return "", "", err
	}
	st, err := startTime(os.Getpid())
	if err != nil {
		return "", "", err
	}
	top := filepath.Join(mnt, own, "sockjsd-exec")
	if err := os.MkdirAll(top, 0o755); err != nil {
		return "", "", fmt.Errorf("cgroup v2 not writable: %w", err)
	}
	ns := pidNamespace()
	name := fmt.Sprintf("%d-%d-%d", ns, os.Getpid(), st)
	base = filepath.Join(top, name)
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", "", fmt.Errorf("cgroup v2 not writable: %w", err)
	}
	if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
		return "", "", fmt.Errorf("cgroup v2: %w", err)
	}
	cleanStale(top, name, ns)
	return base, filepath.Join(own, "sockjsd-exec", name), nil
}

// cleanStale kills and removes the session cgroups of servers that are
// no longer running.
func cleanStale(top, self string, ns uint64) {
	ents, _ := os.ReadDir(top)
	for _, e := range ents {
		if !e.IsDir() || e.Name() == self {
			continue
		}
		f := strings.Split(e.Name(), "-")
		if len(f) != 3 {
			continue
		}
		n, err0 := strconv.ParseUint(f[0], 10, 64)
		pid, err1 := strconv.Atoi(f[1])
		st, err2 := strconv.ParseUint(f[2], 10, 64)
		if err0 != nil || err1 != nil || err2 != nil || n != ns {
			continue
		}
		if cur, err := startTime(pid); err == nil && cur == st {
			continue // that server is alive
		}
		dir := filepath.Join(top, e.Name())
		subs, _ := os.ReadDir(dir)
		for _, sub := range subs {
			if sub.IsDir() {
				t := &cgroupTree{dir: filepath.Join(dir, sub.Name()), fd: -1}
				_ = t.kill(2 * time.Second)
				_ = os.Remove(t.dir)
			}
		}
		_ = os.Remove(dir)
	}
}

// pidNamespace is the inode of the server's pid namespace (0 if unknown).
func pidNamespace() uint64 {
	var st syscall.Stat_t
	if syscall.Stat("/proc/self/ns/pid", &st) != nil {
		return 0
	}
	return st.Ino
}

func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if f := strings.Fields(post); len(f) > 0 && f[0] == "cgroup2" {
			if g := strings.Fields(pre); len(g) >= 5 {
				return g[4], nil
			}
		}
	}
	return "", errors.New("no cgroup v2 hierarchy mounted")
}

// ownCgroup is the server's cgroup v2 path ("0::/path").
func ownCgroup() (string, error) {
	return cgroupOf("self")
}

func cgroupOf(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("not in a cgroup v2 hierarchy")
}

// newTree makes the tree of a new session.
func newTree(session string) tree {
	mode.once.Do(initMode)
	if mode.name == TrackCgroup && !mode.failed.Load() {
		name := strconv.FormatInt(mode.n.Add(1), 10)
		dir := filepath.Join(mode.base, name)
		// MkdirAll: the server's directory goes when its last bridge
		// shuts down (removeBase), and comes back with a new bridge.
		if err := os.MkdirAll(dir, 0o755); err == nil {
			if fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err == nil {
				return &cgroupTree{dir: dir, rel: mode.rel + "/" + name, fd: fd}
			}
			_ = os.Remove(dir)
		}
	}
	return newProcTree(session)
}

// cgroupTree is a session's cgroup.
type cgroupTree struct {
	dir string // in the mounted hierarchy
	rel string // as /proc/PID/cgroup shows it
	fd  int    // open until the program started

	mu     sync.Mutex
	looked map[int]bool // every pid cgroup.procs listed
}

func (t *cgroupTree) attr(a *syscall.SysProcAttr) {
	a.UseCgroupFD, a.CgroupFD = true, t.fd
}

func (t *cgroupTree) seen() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Collect(maps.Keys(t.looked))
}

func (t *cgroupTree) started(pid int) {
	if pid > 0 {
		t.mu.Lock()
		t.looked = map[int]bool{pid: true}
		t.mu.Unlock()
	}
	if t.fd >= 0 {
		_ = syscall.Close(t.fd)
		t.fd = -1
	}
}

func (t *cgroupTree) pids() []int {
	b, err := os.ReadFile(filepath.Join(t.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, pid)
		}
	}
	t.mu.Lock()
	if t.looked == nil {
		t.looked = map[int]bool{}
	}
	for _, p := range out {
		t.looked[p] = true
	}
	t.mu.Unlock()
	return out
}

func (t *cgroupTree) count() int { return len(t.pids()) }

func (t *cgroupTree) signal(sig syscall.Signal) {
	for _, pid := range t.pids() {
		_ = syscall.Kill(pid, sig)
	}
}

func (t *cgroupTree) populated() bool {
	b, err := os.ReadFile(filepath.Join(t.dir, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("populated 1"))
}

func (t *cgroupTree) kill(d time.Duration) error {
	// cgroup.kill (Linux 5.14) kills every process, forks in flight
	// included; before it, SIGKILL each one until none is left. The
	// processes are listed first, for reapTree.
	t.pids()
	useFile := os.WriteFile(filepath.Join(t.dir, "cgroup.kill"), []byte("1"), 0) == nil
	return waitUntil(d, func() bool {
		if !t.populated() {
			return true
		}
		if !useFile {
			t.signal(syscall.SIGKILL)
		}
		return false
	})
}

func (t *cgroupTree) owns(pid int) bool {
	p, err := cgroupOf(strconv.Itoa(pid))
	return err == nil && p == t.rel
}

func (t *cgroupTree) close() {
	t.started(0)
	_ = os.Remove(t.dir)
}

// removeBase removes this server's directory of session cgroups if no
// session cgroup is left in it, so that a server that exits cleanly
// leaves nothing behind.
func removeBase() {
	if mode.name == TrackCgroup {
		_ = os.Remove(mode.base)
	}
}

// ownedByServer says whether pid is in one of this server's session
// cgroups, ended ones included.
func ownedByServer(pid int) bool {
	if mode.name != TrackCgroup {
		return false
	}
	p, err := cgroupOf(strconv.Itoa(pid))
	return err == nil && strings.HasPrefix(p, mode.rel+"/")
}

// waitUntil polls cond with a growing pause (1 ms to 20 ms) for at most
// d: the kernel gives no event for a process's end that is not our child.
func waitUntil(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("still running after %v", d)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
	return nil
}

// startTime is a process's start time (field 22 of /proc/PID/stat), which
// tells a pid from a later process given the same pid.
func startTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.start, err
}

// stat is what the bridge reads of /proc/PID/stat.
type stat struct {
	pid, ppid, pgid, sid int
	state                byte
	start                uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(pid, b)
}

func parseStat(pid int, b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, errors.New("bad /proc stat")
	}
	s := stat{pid: pid, state: f[0][0]}
	s.ppid, _ = strconv.Atoi(f[1])
	s.pgid, _ = strconv.Atoi(f[2])
	s.sid, _ = strconv.Atoi(f[3])
	s.start, _ = strconv.ParseUint(f[19], 10, 64)
	return s, nil
}

// walkProc reads every process of the system.
func walkProc() map[int]stat {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make(map[int]stat, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil {
			out[pid] = s
		}
	}
	return out
}

// children lists the server's children (any thread's), from
// /proc/PID/task/TID/children, or from every process's PPid where the
// kernel lacks that file (CONFIG_PROC_CHILDREN).
func children() []int {
	self := strconv.Itoa(os.Getpid())
	tasks, _ := os.ReadDir("/proc/" + self + "/task")
	var out []int
	for _, t := range tasks {
		f, err := os.Open("/proc/" + self + "/task/" + t.Name() + "/children")
		if errors.Is(err, os.ErrNotExist) && t.Name() == self {
			return childrenByPPid()
		}
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Split(bufio.ScanWords)
		for sc.Scan() {
			if pid, err := strconv.Atoi(sc.Text()); err == nil {
				out = append(out, pid)
			}
		}
		_ = f.Close()
	}
	return out
}

func childrenByPPid() []int {
	me := os.Getpid()
	var out []int
	for pid, s := range walkProc() {
		if s.ppid == me {
			out = append(out, pid)
		}
	}
	return out
}
