package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"
)

// What -h and the errors say about every flag is derived from the FlagSet,
// so a flag registered anywhere (fs.XxxVar(&c.Field, "name", default,
// "usage")) gets its SOCKJSD_* variable, its expected form and its help
// line without more code.

// helpOutput is where -h prints; onFlagSet sees every FlagSet before it
// is parsed. Tests replace both.
var (
	helpOutput io.Writer = os.Stdout
	onFlagSet            = func(*flag.FlagSet) {}
)

// envName is the environment variable of a flag: SOCKJSD_<NAME>, upper
// case, '-' as '_'.
func envName(flagName string) string {
	return "SOCKJSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// stringForms are the string flags whose values are checked; every other
// string is taken as given.
var stringForms = map[string]struct {
	placeholder, form string
	check             func(string) error
}{
	"log-level":       {"level", "debug, info, warn or error", func(v string) error { _, err := parseLogLevel(v); return err }},
	"trusted-proxies": {"CIDRs", "comma-separated CIDRs such as 10.0.0.0/8,127.0.0.1/32", func(v string) error { _, err := parseTrustedProxies(v); return err }},
}

func parseLogLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", v)
}

// form is how a flag's value must be written, from its type.
func form(f *flag.Flag) (placeholder, expected string) {
	if sf, ok := stringForms[f.Name]; ok {
		return sf.placeholder, sf.form
	}
	v := f.Value
	switch w := v.(type) { // after parseFlags wrapped it
	case *checked:
		v = w.Value
	case *checkedBool:
		v = w.Value
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return "value", "a value"
	}
	switch g.Get().(type) {
	case bool:
		return "", "true or false"
	case time.Duration:
		return "duration", "a duration such as 250ms, 5s or 1m30s"
	case int, int64:
		return "int", "a whole number such as 100"
	case uint, uint64:
		return "uint", "a whole number, 0 or more"
	case float64:
		return "number", "a number such as 0.5"
	default:
		return "string", "text"
	}
}

// checked wraps a flag's value so that a bad one is refused naming the
// form expected instead of strconv's bare "parse error".
type checked struct {
	flag.Value
	expected string
	check    func(string) error
}

func (c *checked) Set(v string) error {
	if c.check != nil {
		if err := c.check(v); err != nil {
			return fmt.Errorf("want %s", c.expected)
		}
	}
	if err := c.Value.Set(v); err != nil {
		return fmt.Errorf("want %s", c.expected)
	}
	return nil
}

func (c *checked) Get() any {
	if g, ok := c.Value.(flag.Getter); ok {
		return g.Get()
	}
	return nil
}

// checkedBool keeps -flag without a value working for booleans.
type checkedBool struct{ checked }

func (checkedBool) IsBoolFlag() bool { return true }

// parseFlags applies the environment (lookup) and then args to fs. A bad
// value fails naming the variable or flag and the form it expects; -h
// prints every flag with its variable to help and returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), help io.Writer) error {
	onFlagSet(fs)
	fs.VisitAll(func(f *flag.Flag) {
		_, expected := form(f)
		c := checked{Value: f.Value, expected: expected}
		if sf, ok := stringForms[f.Name]; ok {
			c.check = sf.check
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = &checkedBool{c}
		} else {
			f.Value = &c
		}
	})
	// The flag package's own messages go nowhere: ours are returned.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v, ok := lookup(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (the -%s flag): %w", name, v, f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(help, fs)
			return err
		}
		return fmt.Errorf("%w (-h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every setting is a -flag (-h lists them)", fs.Arg(0))
	}
	return nil
}

// printUsage lists every flag, sorted, with its form, default and
// environment variable.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString("Usage: sockjsd [flags]\n\n")
	b.WriteString("Every flag can also be set by the environment variable shown with it;\n")
	b.WriteString("a flag on the command line wins over the variable.\n\n")
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		placeholder, _ := form(f)
		fmt.Fprintf(&b, "  -%s", f.Name)
		if placeholder != "" {
			fmt.Fprintf(&b, " %s", placeholder)
		}
		fmt.Fprintf(&b, "    $%s", envName(f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		// A backquoted word names the value for flag.PrintDefaults; here
		// the placeholder comes from the type, so the quotes go.
		fmt.Fprintf(&b, "\n        %s\n", strings.ReplaceAll(f.Usage, "`", ""))
	}
	_, _ = io.WriteString(w, b.String())
}
