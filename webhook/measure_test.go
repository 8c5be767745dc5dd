package webhook_test

import (
	"os"
	"testing"
	"time"
)

// TestMeasureWebhook logs webhook deliveries per second to a receiver on
// 127.0.0.1 that checks every signature, with the memory queue and with
// the Redis queue (one node), events spread over 1,000 users so that every
// partition is busy. A measurement, not a test: it runs only when
// SOCKJSD_MEASURE=1, without -race.
func TestMeasureWebhook(t *testing.T) {
	if os.Getenv("SOCKJSD_MEASURE") != "1" {
		t.Skip("a measurement, not a test: set SOCKJSD_MEASURE=1")
	}
	if raceEnabled {
		t.Skip("a measurement: the race detector would distort it")
	}
	const users, perUser = 1000, 20
	for _, k := range []kind{memoryKind, redisKind} {
		r := newReceiver(t)
		o := fast(r.url())
		o.MaxQueueLen = users * perUser
		o = k.opts(t, o)
		n := start(t, o)
		t0 := time.Now()
		ids := enqueueUsers(t, n, users, perUser)
		enqueued := time.Since(t0)
		r.waitAll(5*time.Minute, ids)
		d := time.Since(t0)
		t.Logf("%s queue: %d events (%d users) delivered in %v: %.0f deliveries/s (enqueue %.0f/s)",
			k.name, len(ids), users, d.Round(time.Millisecond), float64(len(ids))/d.Seconds(), float64(len(ids))/enqueued.Seconds())
	}
}
