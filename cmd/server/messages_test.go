package main

import (
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/transport"
)

func TestMessageFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		timeout time.Duration
	}{
		{"defaults", "", nil, transport.DefaultMessageReadTimeout},
		{"flag", "", []string{"-message-read-timeout", "2s", "-message-budget-bytes", "1048576"}, 2 * time.Second},
		{"env", "3s", nil, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("SOCKJSD_MESSAGE_READ_TIMEOUT", tc.env)
			}
			c, err := parseConfig(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			o := c.transportOptions()
			if o.MessageReadTimeout != tc.timeout || o.MessageBudget == nil || o.MessageBudget == o.BodyBudget {
				t.Fatalf("timeout %v (want %v), budget %p (bodies' %p)", o.MessageReadTimeout, tc.timeout, o.MessageBudget, o.BodyBudget)
			}
		})
	}
}

// TestMessageBudgetBelowMessageSize: a budget smaller than
// -max-message-bytes is refused at start.
func TestMessageBudgetBelowMessageSize(t *testing.T) {
	if _, err := parseConfig([]string{"-message-budget-bytes", "1000", "-max-message-bytes", "2000"}); err == nil {
		t.Fatal("a message budget below -max-message-bytes was accepted")
	}
	if _, err := parseConfig([]string{"-message-budget-bytes", "2000", "-max-message-bytes", "2000"}); err != nil {
		t.Fatalf("a budget of exactly -max-message-bytes: %v", err)
	}
}
