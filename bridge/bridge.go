package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Close codes of the sessions the bridge closes: 3000 plus the websocket
// code of the same meaning, except for 3000 itself, the protocol's "the
// application closed the session".
const (
	CodeExited       = 3000 // the program exited; the reason carries a non-zero status
	CodeBadMessage   = 3003 // a message from the client contains a newline
	CodeLineTooLong  = 3010 // the program wrote a line over MaxLineBytes
	CodeStartFailed  = 3011 // the program could not be started
	CodeTooManyProcs = 3013 // Limit: the sessions' processes reached the limit
	CodePerAddress   = 3015 // Limit: the client's address has its maximum of sessions with a program

	ReasonExited       = "Program exited"
	ReasonNewline      = "Message contains a newline"
	ReasonLineTooLong  = "Output line too long"
	ReasonStartFailed  = "Program failed to start"
	ReasonTooManyProcs = "Too many programs running"
	ReasonPerAddress   = "Too many programs for this address"
)

// Defaults for Options.
const (
	DefaultKillGrace         = 5 * time.Second
	DefaultMaxLineBytes      = 1 << 20
	DefaultMaxQueuedMessages = 256
	DefaultMaxQueuedBytes    = 256 << 10
	DefaultMaxProcs          = 100
	// DefaultMaxPerAddress is cmd/server's -exec-max-per-address; a Limit
	// from NewLimit has no bound per address.
	DefaultMaxPerAddress = 10
)

// DefaultPassEnv are the server's environment variables a program gets by
// default: enough to find programs and format text, and no secret.
var DefaultPassEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

// DefaultHeaders are the request headers a program gets by default, as
// HTTP_<NAME>. Cookie and Authorization are not among them.
var DefaultHeaders = []string{"Origin", "User-Agent", "Accept-Language", "Referer", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip"}

// Options configure a Bridge. Zero values mean the documented defaults.
type Options struct {
	// Name labels the program in logs and metrics; cmd/server uses the
	// URL prefix. It is also the program's SCRIPT_NAME.
	Name string
	// Argv is the program and its arguments (see ParseCommand). A name
	// without a slash is looked up in PATH when the Bridge is made; one
	// with a slash is relative to Dir.
	Argv []string
	// Dir is the program's working directory. Default: the server's.
	Dir string
	// Env adds KEY=VALUE variables to every program's environment.
	Env []string
	// PassEnv names the server's environment variables passed on.
	// nil means DefaultPassEnv; an empty, non-nil slice passes none.
	PassEnv []string
	// Headers names the request headers passed as HTTP_* variables.
	// nil means DefaultHeaders. Cookies reach the program only if
	// "Cookie" is listed here and the transport keeps them
	// (transport.Options.ExposeCookies).
	Headers []string
	// KillGrace is how long a program has to exit after SIGTERM before
	// every process of its session gets SIGKILL. Default 5s.
	KillGrace time.Duration
	// MaxLineBytes bounds one line of output (without its newline); a
	// longer line closes the session with 3010. Default 1 MiB.
	MaxLineBytes int
	// MaxQueuedMessages and MaxQueuedBytes bound the output sent to the
	// session and not yet taken by the client: past them the bridge stops
	// reading stdout, so a program that writes faster than its client
	// reads blocks in write(2) instead of the session overflowing (3009).
	// They must stay below the session's send queue limits, less one
	// line. Defaults 256 messages and 256 KiB.
	MaxQueuedMessages int
	MaxQueuedBytes    int
	// Procs bounds the programs running at once; share one Limit between
	// bridges for a server-wide bound. Default: a Limit of
	// DefaultMaxProcs for this bridge alone.
	Procs *Limit
	// Observer receives process events for metrics. Default: none.
	Observer Observer
	// Logger gets stderr lines and process failures. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.PassEnv == nil {
		o.PassEnv = DefaultPassEnv
	}
	if o.Headers == nil {
		o.Headers = DefaultHeaders
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxQueuedMessages <= 0 {
		o.MaxQueuedMessages = DefaultMaxQueuedMessages
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if o.Procs == nil {
		o.Procs = NewLimit(DefaultMaxProcs)
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Limit bounds the processes the sessions' programs run at once, and the
// sessions one client address may have programs for.
//
// Every process a session's program started counts, wherever it moved
// (setsid, a double fork): the bridge tracks the session's whole tree
// (TrackingMode). A session holds at least one unit from its start until
// every process of its tree is gone. A new session gets a program only
// while the processes of all sessions (plus the sessions being started)
// are fewer than the limit; past it it closes with 3013. Processes that a
// running program forks are not refused by the limit (nothing but a pids
// controller could), so the count can exceed it by what running programs
// fork; no new session starts until it is below the limit again.
type Limit struct {
	max        int
	maxPerAddr int // 0: no bound

	mu      sync.Mutex
	pending int // sessions between admission and start
	runs    map[*run]struct{}
	perAddr map[string]int
}

// NewLimit returns a Limit of n processes (at least 1), with no bound
// per address.
func NewLimit(n int) *Limit {
	return &Limit{max: max(n, 1), runs: map[*run]struct{}{}, perAddr: map[string]int{}}
}

// WithMaxPerAddress bounds the sessions with a program that one client
// address (the host of the session's RemoteAddr) may have at once; past
// it a session closes with 3015. 0 or less: no bound. It returns l; call
// it before l is used.
func (l *Limit) WithMaxPerAddress(n int) *Limit {
	l.maxPerAddr = max(n, 0)
	return l
}

// admit takes a unit for a session from addr, or says why not.
func (l *Limit) admit(addr string) (Refusal, bool) {
	walkIfTracking() // the /proc walk's counts are fresh for the check
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxPerAddr > 0 && l.perAddr[addr] >= l.maxPerAddr {
		return RefusedPerAddress, false
	}
	if l.pending+l.processesLocked() >= l.max {
		return RefusedMaxProcs, false
	}
	l.pending++
	l.perAddr[addr]++
	return 0, true
}

// started turns an admitted session's unit into its run's tree.
func (l *Limit) started(r *run) {
	l.mu.Lock()
	l.pending--
	if r != nil {
		l.runs[r] = struct{}{}
	}
	l.mu.Unlock()
}

// release frees what admit took for addr, once the run (if any) is gone.
func (l *Limit) release(r *run, addr string) {
	l.mu.Lock()
	delete(l.runs, r)
	if l.perAddr[addr]--; l.perAddr[addr] <= 0 {
		delete(l.perAddr, addr)
	}
	l.mu.Unlock()
}

func (l *Limit) processesLocked() int {
	n := 0
	for r := range l.runs {
		n += max(r.tree.count(), 1)
	}
	return n
}

// Running is the number of sessions holding a unit (being started, or
// whose tree is not empty yet).
func (l *Limit) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending + len(l.runs)
}

// Processes is the number of live processes of all sessions, as the
// limit counts them (a session counts at least one).
func (l *Limit) Processes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending + l.processesLocked()
}

// Bridge runs its program for every session given to Serve.
type Bridge struct {
	opts Options
	path string // resolved program path

	stop     chan struct{} // closed by Shutdown: every program is terminated
	stopOnce sync.Once
	mu       sync.Mutex
	runs     map[*run]struct{}
	starting int           // sessions between fork and registration in runs
	changed  chan struct{} // capacity 1: a run ended
}

// New checks the options and returns a Bridge. The program must exist
// and be executable now, so that a typo fails at start-up and not on the
// first session.
func New(opts Options) (*Bridge, error) {
	opts = opts.withDefaults()
	if len(opts.Argv) == 0 {
		return nil, errors.New("bridge: empty command")
	}
	for _, kv := range opts.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("bridge: environment addition %q is not KEY=VALUE", kv)
		}
	}
	path, err := resolve(opts.Argv[0], opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", opts.Name, err)
	}
	if err := becomeSubreaper(); err != nil {
		opts.Logger.Warn("exec: orphaned children of programs will be re-parented to init, not reaped by the server", "err", err)
	}
	m, merr := TrackingMode()
	startReaper(opts.Logger)
	if err := merr; err != nil {
		opts.Logger.Info("exec: session processes tracked by walking /proc", "mode", m, "why-not-cgroup", err)
	} else {
		opts.Logger.Debug("exec: session processes tracked by a cgroup each", "mode", m)
	}
	return &Bridge{
		opts:    opts,
		path:    path,
		stop:    make(chan struct{}),
		runs:    map[*run]struct{}{},
		changed: make(chan struct{}, 1),
	}, nil
}

// resolve finds the program: in PATH for a bare name, relative to dir
// otherwise, and checks that it is an executable file.
func resolve(name, dir string) (string, error) {
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", err
		}
		return p, nil
	}
	full := name
	if !filepath.IsAbs(name) && dir != "" {
		full = filepath.Join(dir, name)
	}
	fi, err := os.Stat(full)
	if err != nil {
		return "", err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", full)
	}
	if filepath.IsAbs(full) {
		return full, nil
	}
	abs, err := filepath.Abs(full)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// Running is the number of programs of this bridge being started or not
// yet reaped.
func (b *Bridge) Running() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.runs) + b.starting
}

func (b *Bridge) signalChanged() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// Shutdown terminates every program (SIGTERM, SIGKILL after the grace
// period) and waits until all are reaped. New sessions are refused from
// the moment it is called. If ctx ends first, what is left gets SIGKILL at
// once and Shutdown waits a little longer for it to be reaped.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stop) })
	defer removeBase()
	if b.waitIdle(ctx.Done()) {
		return nil
	}
	b.mu.Lock()
	for r := range b.runs {
		_ = r.p.signalGroup(sigKill)
		r.tree.signal(sigKill)
	}
	b.mu.Unlock()
	// SIGKILL cannot be ignored: only a process in uninterruptible
	// sleep takes longer than this.
	kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b.waitIdle(kctx.Done()) {
		return fmt.Errorf("exec %s: shutdown: grace period cut short, programs killed", b.opts.Name)
	}
	return fmt.Errorf("exec %s: shutdown: %d programs still running", b.opts.Name, b.Running())
}

func (b *Bridge) waitIdle(done <-chan struct{}) bool {
	for b.Running() > 0 {
		select {
		case <-b.changed:
		case <-done:
			return b.Running() == 0
		}
	}
	return true
}
