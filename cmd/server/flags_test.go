package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// allFlags is every flag the server registers, through the same path as
// parseConfig.
func allFlags(t *testing.T) []*flag.Flag {
	t.Helper()
	var flags []*flag.Flag
	old := onFlagSet
	onFlagSet = func(fs *flag.FlagSet) { fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) }) }
	defer func() { onFlagSet = old }()
	if _, err := parseConfig(nil); err != nil {
		t.Fatal(err)
	}
	if len(flags) < 10 {
		t.Fatalf("only %d flags seen", len(flags))
	}
	return flags
}

// TestHelpListsEveryFlag: -h names every flag with its environment
// variable, whoever registered it, and shows no backquotes.
func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	old := helpOutput
	helpOutput = &out
	defer func() { helpOutput = old }()
	if _, err := parseConfig([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, f := range allFlags(t) {
		if !strings.Contains(help, "\n  -"+f.Name+" ") || !strings.Contains(help, "$"+envName(f.Name)) {
			t.Errorf("-h does not list -%s with $%s", f.Name, envName(f.Name))
		}
	}
	if strings.Contains(help, "`") {
		t.Errorf("-h shows backquotes:\n%s", help)
	}
}

// TestFlagErrors: a bad value, from a flag or a variable, fails naming it
// and the form it expects; good ones pass; flags win over variables.
func TestFlagErrors(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string // all must appear; none: no error
		check   func(Config) bool
	}{
		{"duration from env", nil, map[string]string{"SOCKJSD_HEARTBEAT": "5"},
			[]string{`SOCKJSD_HEARTBEAT="5"`, "-heartbeat", "a duration such as"}, nil},
		{"duration flag", []string{"-heartbeat", "soon"}, nil,
			[]string{`"soon"`, "-heartbeat", "a duration such as"}, nil},
		{"int from env", nil, map[string]string{"SOCKJSD_MAX_SESSIONS": "many"},
			[]string{"SOCKJSD_MAX_SESSIONS", "a whole number"}, nil},
		{"int flag", []string{"-max-sessions=1e3"}, nil,
			[]string{"-max-sessions", "a whole number"}, nil},
		{"bool flag", []string{"-allow-iframe-transports=maybe"}, nil,
			[]string{"-allow-iframe-transports", "true or false"}, nil},
		{"bool from env", nil, map[string]string{"SOCKJSD_ALLOW_IFRAME_TRANSPORTS": "yes"},
			[]string{"SOCKJSD_ALLOW_IFRAME_TRANSPORTS", "true or false"}, nil},
		{"unknown log level", []string{"-log-level", "verbose"}, nil,
			[]string{"-log-level", "debug, info, warn or error"}, nil},
		{"unknown log level from env", nil, map[string]string{"SOCKJSD_LOG_LEVEL": "trace"},
			[]string{"SOCKJSD_LOG_LEVEL", "debug, info, warn or error"}, nil},
		{"two bad variables, both named", nil, map[string]string{"SOCKJSD_HEARTBEAT": "x", "SOCKJSD_MAX_SESSIONS": "y"},
			[]string{"SOCKJSD_HEARTBEAT", "SOCKJSD_MAX_SESSIONS"}, nil},
		{"unknown flag", []string{"-nope"}, nil, []string{"-nope", "-h"}, nil},
		{"stray argument", []string{"8080"}, nil, []string{`"8080"`}, nil},
		{"bare bool flag", []string{"-allow-iframe-transports"}, nil, nil,
			func(c Config) bool { return c.AllowIframe }},
		{"log level any case", []string{"-log-level", "WARN"}, nil, nil,
			func(c Config) bool { return c.logLevel().String() == "WARN" }},
		{"flag over env over default", []string{"-heartbeat", "7s"}, map[string]string{"SOCKJSD_HEARTBEAT": "3s", "SOCKJSD_RESPONSE_LIMIT": "4096"}, nil,
			func(c Config) bool {
				return c.Heartbeat == 7*time.Second && c.ResponseLimit == 4096 && c.DisconnectDelay == 5*time.Second
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			cfg, err := parseConfig(c.args)
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.check != nil && !c.check(cfg) {
					t.Errorf("config not as expected: %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %q", c.wantErr)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// plainValue is a flag.Value without Get, as a custom flag may be.
type plainValue struct{ s string }

func (p *plainValue) String() string     { return p.s }
func (p *plainValue) Set(v string) error { p.s = v; return nil }

// TestCustomFlagValue: a flag.Value that is not a flag.Getter gets its
// variable and help line too.
func TestCustomFlagValue(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var p plainValue
	fs.Var(&p, "custom", "a custom value")
	var help bytes.Buffer
	env := func(k string) (string, bool) { return "from-env", k == "SOCKJSD_CUSTOM" }
	if err := parseFlags(fs, []string{"-h"}, env, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if p.s != "from-env" || !strings.Contains(help.String(), "-custom value    $SOCKJSD_CUSTOM") {
		t.Errorf("value %q, help:\n%s", p.s, help.String())
	}
}
