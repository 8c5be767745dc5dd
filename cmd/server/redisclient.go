package main

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/redisclient"
)

// newRedisClient builds the client of -redis (redisclient.New: one server
// for redis:// and rediss://, a Redis Cluster for redis+cluster:// and
// rediss+cluster://, with ContextTimeoutEnabled and, on a cluster,
// FollowFailover). Every user of -redis builds its client here, so that all
// of them reach the same Redis the same way. where says which Redis, for
// logs, without credentials.
func newRedisClient(raw string) (rdb redis.UniversalClient, where string, err error) {
	rdb, err = redisclient.New(raw)
	if err != nil {
		return nil, "", fmt.Errorf("-redis: %w", err)
	}
	return rdb, redisclient.Where(rdb), nil
}
