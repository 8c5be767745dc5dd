package bounded

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	if !Wait(closed, time.Hour) {
		t.Error("Wait on a closed channel: false")
	}
	if Wait(make(chan struct{}), time.Millisecond) {
		t.Error("Wait on a channel never closed: true")
	}
}
