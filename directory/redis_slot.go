package directory

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds of the retries while the directory's slot migrates between
// Redis Cluster nodes (see eval).
const (
	slotRetryMin = 5 * time.Millisecond
	slotRetryMax = 100 * time.Millisecond
	// slotRetryFor bounds the retries of one call (the caller's ctx may
	// bound them sooner). Moving one slot takes a MIGRATE round trip per
	// ten keys (redis-cli's default pipeline): about a second for 100,000
	// sessions' keys on a LAN.
	slotRetryFor = 5 * time.Second
)

// eval runs s with the generation key as its one declared key. The
// scripts touch other keys of the slot without declaring them, so on
// Redis Cluster, while the slot migrates, Redis refuses them; each script
// checks that first (its probe), before any write, so a refused call
// changed nothing and is retried here, with a growing pause, until the
// migration ends, ctx ends or slotRetryFor passes. Other errors return at
// once.
func (d *Redis) eval(ctx context.Context, s *redis.Script, args ...any) *redis.Cmd {
	start := time.Now()
	pause := slotRetryMin
	for {
		cmd := s.Run(ctx, d.rdb, []string{d.genK}, args...)
		if !slotMoving(cmd.Err()) || time.Since(start)+pause > slotRetryFor {
			return cmd
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return cmd
		case <-t.C:
		}
		pause = min(2*pause, slotRetryMax)
	}
}

// slotMoving reports whether err is Redis Cluster refusing a script's
// undeclared key because its slot is migrating ("Script attempted to
// access a non local key in a cluster node script"), or TRYAGAIN.
func slotMoving(err error) bool {
	if err == nil {
		return false
	}
	return strings.Contains(err.Error(), "non local key") || redis.IsTryAgainError(err)
}
