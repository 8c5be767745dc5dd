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
