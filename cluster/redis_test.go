package cluster

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// startRedis runs a throw-away redis-server (testenv.StartRedis: a free
// loopback port, no persistence, ready when it answers PING) and returns
// a client for it.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	rs := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
