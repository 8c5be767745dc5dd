package main

import (
	"strings"
	"testing"
)

// TestNewRedisClient: -redis's client is redisclient.New's (its URL forms,
// options and errors are tested there); its errors name the flag and never
// the password, and where names the Redis without credentials.
func TestNewRedisClient(t *testing.T) {
	for _, c := range []struct{ url, where, err string }{
		{url: "redis://:s3cret@127.0.0.1:6379/2", where: "127.0.0.1:6379/2"},
		{url: "rediss+cluster://u:s3cret@h1:7000,h2", where: "cluster h1:7000,h2:6379"},
		{url: "redis://:s3cret@h1:port/0", err: "-redis: not a redis"},
		{url: "redis+cluster://:s3cret@h1:7000/1", err: "-redis: a Redis Cluster has only database 0"},
	} {
		rdb, where, err := newRedisClient(c.url)
		if c.err != "" {
			if err == nil {
				rdb.Close()
				t.Errorf("%s: no error", c.url)
			} else if !strings.HasPrefix(err.Error(), c.err) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: error %q, want it to start with %q and not name the password", c.url, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		rdb.Close()
		if where != c.where {
			t.Errorf("%s: where %q, want %q", c.url, where, c.where)
		}
	}
}
