package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/sockjsd/sockjsd/bridge"
	"github.com/sockjsd/sockjsd/metrics"
	"github.com/sockjsd/sockjsd/transport"
)

// ExecConfig configures the exec bridge: programs run one per session
// (docs/exec.md).
type ExecConfig struct {
	Commands          multiFlag
	Prefix            string
	Dir               string
	Env               multiFlag
	PassEnv           string
	Headers           string
	KillGrace         time.Duration
	MaxProcs          int
	MaxPerAddress     int
	MaxLineBytes      int
	MaxQueuedMessages int
	MaxQueuedBytes    int
	Pages             string
}

func (c *ExecConfig) register(fs *flag.FlagSet) {
	fs.Var(&c.Commands, "exec", "program run for every session, 'CMD [ARGS]' mounted at -exec-prefix, or '/prefix=CMD [ARGS]'; repeatable (several in SOCKJSD_EXEC: one per line)")
	fs.StringVar(&c.Prefix, "exec-prefix", "/exec", "URL prefix of an -exec program given without one")
	fs.StringVar(&c.Dir, "exec-dir", "", "working directory of -exec programs (empty: the server's)")
	fs.Var(&c.Env, "exec-env", "KEY=VALUE added to the environment of -exec programs; repeatable (in SOCKJSD_EXEC_ENV: one per line)")
	fs.StringVar(&c.PassEnv, "exec-pass-env", strings.Join(bridge.DefaultPassEnv, ","), "comma-separated server environment variables passed to -exec programs (no others are)")
	fs.StringVar(&c.Headers, "exec-headers", strings.Join(bridge.DefaultHeaders, ","), "comma-separated request headers passed to -exec programs as HTTP_*; listing Cookie also keeps cookies in the request")
	fs.DurationVar(&c.KillGrace, "exec-kill-grace", bridge.DefaultKillGrace, "time a program has after SIGTERM before every process of its session gets SIGKILL")
	fs.IntVar(&c.MaxProcs, "exec-max-procs", bridge.DefaultMaxProcs, "processes of -exec programs running at once (each program and everything it started, wherever it moved), all services together; a new session starts only below it, else closes with 3013")
	fs.IntVar(&c.MaxPerAddress, "exec-max-per-address", bridge.DefaultMaxPerAddress, "sessions with a program one client address may have at once, all -exec services together; past it new sessions close with 3015 (0: no bound)")
	fs.IntVar(&c.MaxLineBytes, "exec-max-line-bytes", bridge.DefaultMaxLineBytes, "longest line a program may write; a longer one closes its session with 3010")
	fs.IntVar(&c.MaxQueuedMessages, "exec-max-queued-messages", bridge.DefaultMaxQueuedMessages, "output messages queued for a client before stdout is no longer read (back-pressure on the program)")
	fs.StringVar(&c.Pages, "exec-pages", "", "directory of static pages for -exec programs, served at /exec-pages/ (examples/exec has three)")
	fs.IntVar(&c.MaxQueuedBytes, "exec-max-queued-bytes", bridge.DefaultMaxQueuedBytes, "output bytes queued for a client before stdout is no longer read (back-pressure on the program)")
}

// multiFlag is a repeatable string flag. A value with newlines (from an
// environment variable) is several values. Values from the environment
// and from the command line add up.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, "\n") }

func (m *multiFlag) Set(v string) error {
	for _, line := range strings.Split(v, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			*m = append(*m, line)
		}
	}
	return nil
}

// execPagesPath is where -exec-pages is served.
const execPagesPath = "/exec-pages/"

// execMount is what mountExec made: the SockJS services and the bridges
// to shut down after them.
type execMount struct {
	handlers []*transport.Handler
	bridges  []*bridge.Bridge
}

// shutdown terminates every program and waits until all are reaped.
func (e *execMount) shutdown(ctx context.Context) error {
	if e == nil {
		return nil
	}
	var errs []error
	for _, b := range e.bridges {
		errs = append(errs, b.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// splitExec splits an -exec value into its prefix and command: a first
// word that starts with '/' and contains '=' is "prefix=program".
func splitExec(v, defaultPrefix string) (prefix, cmd string) {
	first, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	if strings.HasPrefix(first, "/") {
		if p, rest, ok := strings.Cut(strings.TrimSpace(v), "="); ok && len(p) < len(first) {
			return p, rest
		}
	}
	return defaultPrefix, v
}

// mountExec builds one SockJS service per -exec program. It fails on a
// bad command or a program that cannot be found, so that the server does
// not start with a broken service.
func mountExec(r *mux.Router, cfg Config, opts transport.Options, m *metrics.Metrics, log *slog.Logger) (*execMount, error) {
	ec := cfg.Exec
	if ec.Pages != "" {
		r.PathPrefix(execPagesPath).Handler(http.StripPrefix(execPagesPath, http.FileServer(http.Dir(ec.Pages))))
	}
	if len(ec.Commands) == 0 {
		return &execMount{}, nil
	}
	so := opts.Session.WithDefaults()
	if ec.MaxQueuedMessages >= so.SendQueueMessages || ec.MaxQueuedBytes+ec.MaxLineBytes > so.SendQueueBytes {
		return nil, fmt.Errorf("-exec-max-queued-messages (%d) must be below -send-queue-messages (%d), and -exec-max-queued-bytes + -exec-max-line-bytes (%d) at most -send-queue-bytes (%d)",
			ec.MaxQueuedMessages, so.SendQueueMessages, ec.MaxQueuedBytes+ec.MaxLineBytes, so.SendQueueBytes)
	}
	headers := splitList(ec.Headers)
	passEnv := splitList(ec.PassEnv)
	if passEnv == nil {
		passEnv = []string{}
	}
	if headers == nil {
		headers = []string{}
	}
	for _, h := range headers {
		if strings.EqualFold(h, "Cookie") {
			// Configured on purpose: cookies reach the program. Over
			// iframe transports that is a CSRF hole (docs/exec.md).
			opts.ExposeCookies = true
		}
	}
	var obs bridge.Observer = bridge.NopObserver{}
	if m != nil {
		obs = m.Exec()
	}
	limit := bridge.NewLimit(ec.MaxProcs).WithMaxPerAddress(ec.MaxPerAddress)
	out := &execMount{}
	seen := map[string]bool{}
	for _, v := range ec.Commands {
		prefix, cmd := splitExec(v, ec.Prefix)
		prefix = strings.TrimSuffix(prefix, "/")
		if !strings.HasPrefix(prefix, "/") || seen[prefix] {
			return nil, fmt.Errorf("-exec %q: prefix %q is not a path or is used twice", v, prefix)
		}
		seen[prefix] = true
		argv, err := bridge.ParseCommand(cmd)
		if err != nil {
			return nil, fmt.Errorf("-exec %q: %w", v, err)
		}
		b, err := bridge.New(bridge.Options{
			Name: prefix, Argv: argv, Dir: ec.Dir, Env: ec.Env, PassEnv: passEnv, Headers: headers,
			KillGrace: ec.KillGrace, MaxLineBytes: ec.MaxLineBytes,
			MaxQueuedMessages: ec.MaxQueuedMessages, MaxQueuedBytes: ec.MaxQueuedBytes,
			Procs: limit, Observer: obs, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("-exec %q: %w", v, err)
		}
		log.Info("exec: program mounted", "prefix", prefix, "program", argv[0], "dir", ec.Dir) // not the arguments: they may hold a secret
		out.bridges = append(out.bridges, b)
		out.handlers = append(out.handlers, transport.New(prefix, opts, b.Serve))
	}
	return out, nil
}
