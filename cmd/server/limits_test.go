package main

import (
	"testing"
	"time"
)

func TestLimitFlags(t *testing.T) {
	t.Setenv("SOCKJSD_BODY_READ_TIMEOUT", "3s")
	t.Setenv("SOCKJSD_KEEP_HEADERS", "X-Token, user-agent")
	c, err := parseConfig([]string{"-max-concurrent-sends", "2", "-recv-queue-bytes", "4096"})
	if err != nil {
		t.Fatal(err)
	}
	o := c.transportOptions()
	if o.BodyReadTimeout != 3*time.Second || o.MaxConcurrentSends != 2 || o.Session.RecvQueueBytes != 4096 {
		t.Fatalf("limits from flags and env: %+v", c.Limits)
	}
	if len(o.KeepHeaders) != 2 || o.KeepHeaders[0] != "X-Token" || o.KeepHeaders[1] != "user-agent" {
		t.Fatalf("keep headers: %q", o.KeepHeaders)
	}
	if o.BodyBudget == nil || o.MaxIDBytes != 64 || o.MaxRequestInfoBytes != 8<<10 {
		t.Fatalf("defaults: budget %v, id %d, request info %d", o.BodyBudget, o.MaxIDBytes, o.MaxRequestInfoBytes)
	}
	t.Setenv("SOCKJSD_KEEP_HEADERS", "")
	c, _ = parseConfig(nil)
	if o := c.transportOptions(); o.KeepHeaders == nil || len(o.KeepHeaders) != 0 {
		t.Fatalf("an empty -keep-headers keeps no header, got %q", o.KeepHeaders)
	}
}
