package main

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestNewRedisClient: -redis takes one server or a Redis Cluster, and a
// bad URL's error says what is wrong without echoing a password. Every
// client ends a command at its context's deadline
// (ContextTimeoutEnabled), whatever the URL's read_timeout.
func TestNewRedisClient(t *testing.T) {
	cases := []struct {
		url     string
		where   string // "" for an error
		errHas  string
		cluster func(t *testing.T, o *redis.ClusterOptions)
	}{
		{url: "redis://127.0.0.1:6379/2", where: "127.0.0.1:6379/2"},
		{url: "redis://h", where: "h:6379/0"},
		{url: "redis://h?read_timeout=-1", where: "h:6379/0"},
		{url: "rediss://h:6380/1?read_timeout=5s", where: "h:6380/1"},
		{url: "redis+cluster://h1:7000?read_timeout=-1", where: "cluster h1:7000"},
		{url: "redis+cluster://h1:7000,h2:7001,h3", where: "cluster h1:7000,h2:7001,h3:6379"},
		{url: "redis+cluster://[::1]:7000,[::1]", where: "cluster [::1]:7000,[::1]:6379"},
		{url: "rediss+cluster://u:s3cret@h1:7000,h2:7001/0?dial_timeout=3&read_timeout=2s", where: "cluster h1:7000,h2:7001",
			cluster: func(t *testing.T, o *redis.ClusterOptions) {
				if o.Username != "u" || o.Password != "s3cret" || o.TLSConfig == nil || o.TLSConfig.ServerName != "h1" ||
					o.DialTimeout != 3*time.Second || o.ReadTimeout != 2*time.Second {
					t.Errorf("options %+v", o)
				}
			}},
		{url: "redis+cluster://:s3cret@h1:7000/1", errHas: "only database 0"},
		{url: "redis+cluster://h1:7000,,h2", errHas: "none empty"},
		{url: "redis+cluster://", errHas: "none empty"},
		{url: "redis+cluster://h1:7000?nope=1", errHas: "nope"},
		{url: "redis+cluster://:s3cret@h1:7000?%zz", errHas: "query"},
		{url: "redis://:s3cret@h1:port/0", errHas: "not a redis"},
		{url: "http://h1:7000", errHas: "not a redis"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			rdb, where, err := newRedisClient(c.url)
			if c.where == "" {
				if err == nil {
					rdb.Close()
					t.Fatalf("no error, client for %s", where)
				}
				if !strings.Contains(err.Error(), c.errHas) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q: want it to name %q and not the password", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			if where != c.where {
				t.Errorf("where = %q, want %q", where, c.where)
			}
			cc, isCluster := rdb.(*redis.ClusterClient)
			if isCluster != strings.Contains(c.url, "+cluster") {
				t.Fatalf("client %T for %s", rdb, c.url)
			}
			if c, ok := rdb.(*redis.Client); ok && !c.Options().ContextTimeoutEnabled {
				t.Errorf("%s: the client does not end commands at their contexts' deadlines (ContextTimeoutEnabled)", c.Options().Addr)
			}
			if isCluster {
				o := cc.Options()
				if !o.ContextTimeoutEnabled {
					t.Error("the cluster client does not end commands at their contexts' deadlines (ContextTimeoutEnabled)")
				}
				if got := "cluster " + strings.Join(o.Addrs, ","); got != c.where {
					t.Errorf("seeds %v", o.Addrs)
				}
				if c.cluster != nil {
					c.cluster(t, o)
				}
			}
		})
	}
}
